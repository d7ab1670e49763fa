#include "core/poll/poll_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>
#include <random>

namespace medkit::core::poll {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
// A vote conflicts only with a write of the same viewer or a generation change, so a retry
// almost always succeeds; the bound only stops a pathological loop.
constexpr int kMaxAttempts = 64;
constexpr size_t kMaxUserBytes = 256;
constexpr size_t kLogPage = 1000;

Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}
Error InvalidBody(std::string info) {
  return MakeError(Errc::kInvalidArgument, "Invalid body", std::move(info));
}
Error Closed() { return MakeError(Errc::kInvalidArgument, "poll is closed"); }
Error Unacceptable(std::string info) {
  return MakeError(Errc::kInvalidArgument, "unacceptable vote", std::move(info));
}

bool ParseI64(std::string_view s, int64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}
bool ParseU64(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string FormatNumber(double d) {
  if (!std::isfinite(d)) return "0";
  if (d == std::floor(d) && std::fabs(d) < 9e15) return std::to_string(static_cast<int64_t>(d));
  return fmt::format("{}", d);
}

Result<void> CheckText(std::string_view s, size_t max, const char* what) {
  if (s.empty()) return MakeError(Errc::kInvalidArgument, std::string(what) + " required");
  if (s.size() > max) return MakeError(Errc::kInvalidArgument, std::string(what) + " is too long");
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      return MakeError(Errc::kInvalidArgument, std::string(what) + " contains control characters");
    }
  }
  return {};
}

// One viewer's votes in one generation: "G|adds|last|value:units,value:units".
struct Record {
  uint64_t gen = 0;
  int64_t adds = 0;  // Σ vote_modifier add
  std::optional<int64_t> last;
  std::map<int64_t, int64_t> units;  // value -> units held

  int64_t Weight() const { return std::max<int64_t>(0, 1 + adds); }
  int64_t TotalUnits() const {
    int64_t n = 0;
    for (const auto& [v, u] : units) n += u;
    return n;
  }
};

std::optional<Record> ParseRecord(std::string_view text) {
  Record r;
  std::string_view fields[4];
  for (int i = 0; i < 3; ++i) {
    size_t bar = text.find('|');
    if (bar == std::string_view::npos) return std::nullopt;
    fields[i] = text.substr(0, bar);
    text.remove_prefix(bar + 1);
  }
  fields[3] = text;
  if (!ParseU64(fields[0], r.gen) || !ParseI64(fields[1], r.adds)) return std::nullopt;
  if (!fields[2].empty()) {
    int64_t last = 0;
    if (!ParseI64(fields[2], last)) return std::nullopt;
    r.last = last;
  }
  std::string_view list = fields[3];
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    size_t colon = item.find(':');
    int64_t v = 0, u = 0;
    if (colon == std::string_view::npos || !ParseI64(item.substr(0, colon), v) ||
        !ParseI64(item.substr(colon + 1), u)) {
      return std::nullopt;
    }
    r.units[v] += u;
  }
  return r;
}

std::string SerializeRecord(const Record& r) {
  std::string out = std::to_string(r.gen);
  out.push_back('|');
  out += std::to_string(r.adds);
  out.push_back('|');
  if (r.last) out += std::to_string(*r.last);
  out.push_back('|');
  bool first = true;
  for (const auto& [v, u] : r.units) {
    if (u == 0) continue;
    if (!first) out.push_back(',');
    first = false;
    out += std::to_string(v);
    out.push_back(':');
    out += std::to_string(u);
  }
  return out;
}

// What a record adds to the running sums: each unit counts Weight() times.
PollStats Contribution(const Record& r) {
  PollStats s;
  const int64_t w = r.Weight();
  for (const auto& [v, u] : r.units) {
    const int64_t n = w * u;
    s.count += n;
    s.sum += n * v;
    s.sum_squares += n * v * v;
    if (v >= 0 && v < kSpecificSize) s.specific[static_cast<size_t>(v)] += n;
  }
  return s;
}

// Integral JSON number (int64, uint64 or an integral double).
std::optional<int64_t> AsInt(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    double d = v.get_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
      return static_cast<int64_t>(d);
    }
  }
  return std::nullopt;
}

const char* const kCounterNames[3] = {"n", "s", "q"};
constexpr size_t kCounterCount = 3 + kSpecificSize;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Model helpers

std::string_view PollStatusName(PollStatus status) {
  switch (status) {
    case PollStatus::kPending:
      return "pending";
    case PollStatus::kActive:
      return "active";
    case PollStatus::kExpired:
      return "expired";
  }
  return "active";
}

PollStatus PollConfig::StatusAt(int64_t now_s) const {
  if (starts_at != 0 && now_s < starts_at) return PollStatus::kPending;
  if (ends_at != 0 && now_s >= ends_at) return PollStatus::kExpired;
  return PollStatus::kActive;
}

double PollStats::Mean() const {
  return count == 0 ? 0.0 : static_cast<double>(sum) / static_cast<double>(count);
}

double PollStats::StdDev() const {
  if (count < 2) return 0.0;
  // Sample variance from the running sums, exactly in integers:
  // (n·Σx² − (Σx)²) / (n·(n−1)).
  const __int128 n = count;
  const __int128 num = n * sum_squares - static_cast<__int128>(sum) * sum;
  if (num <= 0) return 0.0;
  const long double var = static_cast<long double>(num) /
                          (static_cast<long double>(n) * static_cast<long double>(n - 1));
  return static_cast<double>(std::sqrt(var));
}

std::string StatsJsonFields(const PollStats& stats) {
  std::string out;
  out.reserve(160);
  out += "\"stddev\":" + FormatNumber(stats.StdDev());
  out += ",\"mean\":" + FormatNumber(stats.Mean());
  out += ",\"sum\":" + std::to_string(stats.sum);
  out += ",\"count\":" + std::to_string(stats.count);
  out += ",\"specific\":[";
  for (int i = 0; i < kSpecificSize; ++i) {
    if (i) out.push_back(',');
    out += std::to_string(stats.specific[static_cast<size_t>(i)]);
  }
  out += "]";
  return out;
}

std::string VoteViewJson(const VoteView& view) {
  std::string out = "{" + StatsJsonFields(view.stats) + ",\"decay\":{}";
  if (view.vote) out += ",\"vote\":" + std::to_string(*view.vote);
  out += "}";
  return out;
}

std::string PollConfigJson(const PollConfig& c, int64_t now_s) {
  json::object o;
  o["userIDVoting"] = c.user_id_voting;
  o["distinctOptionsPerUser"] = c.distinct_options_per_user;
  o["totalVotesPerUser"] = c.total_votes_per_user;
  o["votesPerOption"] = c.votes_per_option;
  o["global"] = c.global;
  o["disabled"] = c.disabled;
  o["prompt"] = c.prompt;
  json::array options;
  for (const auto& option : c.options) options.emplace_back(option);
  o["options"] = std::move(options);
  boost::system::error_code ec;
  json::value user_data = json::parse(c.user_data_json, ec);
  o["userData"] = ec ? json::value(json::object()) : std::move(user_data);
  o["startsAt"] = c.starts_at;
  o["endsAt"] = c.ends_at;
  o["status"] = PollStatusName(c.StatusAt(now_s));
  return json::serialize(o);
}

bool IsGlobalPollId(std::string_view id) { return id.starts_with("global"); }

Result<std::string> NormalizePollId(std::string_view id, const PollLimits& limits) {
  if (id.empty()) return std::string("default");
  if (id.size() > limits.max_id_bytes) {
    return MakeError(Errc::kInvalidArgument, "Invalid poll id",
                     "at most " + std::to_string(limits.max_id_bytes) + " characters");
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '$';
    if (!ok) {
      return MakeError(Errc::kInvalidArgument, "Invalid poll id",
                       "only letters, digits, '-', '_' and '$' are allowed");
    }
  }
  return std::string(id);
}

Result<PollConfig> ParsePollConfig(const json::value& value, const PollConfig& base,
                                   std::string_view poll_id, int64_t now_s,
                                   const PollLimits& limits) {
  if (!value.is_object()) return InvalidBody("config must be an object");
  const json::object& o = value.get_object();
  PollConfig c = base;
  auto boolean = [&](const char* name, bool& out) -> Result<void> {
    auto it = o.find(name);
    if (it == o.end()) return {};
    if (!it->value().is_bool()) return InvalidBody(std::string(name) + " must be a boolean");
    out = it->value().get_bool();
    return {};
  };
  auto integer = [&](const char* name, int64_t lo, int64_t hi, int64_t& out) -> Result<void> {
    auto it = o.find(name);
    if (it == o.end()) return {};
    auto v = AsInt(it->value());
    if (!v || *v < lo || *v > hi) {
      return InvalidBody(fmt::format("{} must be an integer in {}..{}", name, lo, hi));
    }
    out = *v;
    return {};
  };
  constexpr int64_t kTimeMax = 1LL << 40;
  int64_t starts_in = 0, ends_in = 0;
  for (auto ok :
       {boolean("userIDVoting", c.user_id_voting), boolean("global", c.global),
        boolean("disabled", c.disabled),
        integer("distinctOptionsPerUser", 1, 258, c.distinct_options_per_user),
        integer("totalVotesPerUser", 1, 1024, c.total_votes_per_user),
        integer("votesPerOption", 1, 1024, c.votes_per_option),
        integer("startsAt", 0, kTimeMax, c.starts_at), integer("endsAt", -1, kTimeMax, c.ends_at),
        integer("startsIn", 0, kTimeMax, starts_in), integer("endsIn", 0, kTimeMax, ends_in)}) {
    if (!ok) return std::move(ok).error();
  }
  if (auto it = o.find("prompt"); it != o.end()) {
    if (!it->value().is_string()) return InvalidBody("prompt must be a string");
    if (it->value().get_string().size() > limits.max_prompt_bytes) {
      return InvalidBody(fmt::format("prompt is over {} bytes", limits.max_prompt_bytes));
    }
    c.prompt = std::string(it->value().get_string());
  }
  if (auto it = o.find("options"); it != o.end()) {
    if (!it->value().is_array()) return InvalidBody("options must be an array of strings");
    const json::array& a = it->value().get_array();
    if (a.size() > limits.max_options) {
      return InvalidBody(fmt::format("at most {} options", limits.max_options));
    }
    c.options.clear();
    for (const auto& option : a) {
      if (!option.is_string()) return InvalidBody("options must be an array of strings");
      if (option.get_string().size() > limits.max_option_bytes) {
        return InvalidBody(fmt::format("an option is over {} bytes", limits.max_option_bytes));
      }
      c.options.emplace_back(option.get_string());
    }
  }
  if (auto it = o.find("userData"); it != o.end()) {
    std::string text = json::serialize(it->value());
    if (text.size() > limits.max_user_data_bytes) {
      return InvalidBody(fmt::format("userData is over {} bytes", limits.max_user_data_bytes));
    }
    c.user_data_json = std::move(text);
  }
  auto absent_or_zero = [&](const char* name) {
    auto it = o.find(name);
    return it == o.end() || AsInt(it->value()) == 0;
  };
  if (c.ends_at == -1) c.ends_at = now_s;
  if (starts_in > 0 && absent_or_zero("startsAt")) c.starts_at = now_s + starts_in;
  if (ends_in > 0 && absent_or_zero("endsAt")) c.ends_at = now_s + ends_in;
  if (c.starts_at != 0 && c.ends_at != 0 && c.starts_at > c.ends_at) {
    return InvalidBody("startsAt must not be after endsAt");
  }
  if (c.global && !IsGlobalPollId(poll_id)) {
    return InvalidBody("global polls need an id starting with \"global\"");
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Keys and state

struct PollService::Keys {
  PollRef ref;
  std::string prefix, gen, live, cfg, gc;

  Keys(PollRef r, std::string p) : ref(std::move(r)), prefix(std::move(p)) {
    gen = prefix + "gen";
    live = prefix + "live";
    cfg = prefix + "cfg";
    gc = prefix + "gc";
  }
  std::string RecordPrefix() const { return prefix + "v" + kSep; }
  std::string Record(std::string_view viewer) const { return RecordPrefix().append(viewer); }
  std::string LogPrefix() const { return prefix + "log" + kSep; }
  std::string CounterPrefix(uint64_t g) const {
    return prefix + "c" + kSep + std::to_string(g) + kSep;
  }
  // n, s, q, then specific 0..31.
  std::vector<std::string> Counters(uint64_t g) const {
    std::vector<std::string> keys;
    keys.reserve(kCounterCount);
    const std::string p = CounterPrefix(g);
    for (const char* name : kCounterNames) keys.push_back(p + name);
    for (int i = 0; i < kSpecificSize; ++i) keys.push_back(p + std::to_string(i));
    return keys;
  }
};

struct PollService::State {
  uint64_t gen = 0;  // current generation (0: the poll never existed)
  uint64_t gen_version = 0;
  bool live = false;  // generation `gen` is live (not deleted, not idle past retention)
  std::optional<PollConfig> config;
  Record record;  // the viewer's record in the live generation (empty otherwise)
  uint64_t record_version = 0;
  bool gc = false;
};

struct PollService::CounterCache {
  struct Entry {
    std::array<int64_t, kCounterCount> values{};
    std::array<uint64_t, kCounterCount> versions{};
  };
  static constexpr size_t kMaxEntries = 4096;
  std::mutex mu;
  std::unordered_map<std::string, Entry> entries;  // guarded by mu; key: counter prefix
  // Bumped when the map is emptied: a load that started before must not insert (it could
  // carry values older than a merge the clear forgot).
  uint64_t generation = 0;  // guarded by mu
};

PollService::PollService(storage::Store& store, const Clock& clock, auth::Stage stage,
                         PollLimits limits, events::EventBus* events)
    : store_(store), clock_(clock), stage_(stage), limits_(limits), events_(events) {
  std::random_device rd;
  boot_id_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  counters_ = std::make_unique<CounterCache>();
}

PollService::~PollService() = default;

std::string PollService::Prefix(const PollRef& ref) const {
  std::string p;
  p.reserve(64);
  p.append("p").push_back(kSep);
  p.append(auth::StageName(stage_)).push_back(kSep);
  p.append(ref.client_id).push_back(kSep);
  p.append(ref.channel_id).push_back(kSep);
  p.append(ref.poll_id).push_back(kSep);
  return p;
}

Result<PollRef> PollService::Resolve(const Identity& who, std::string_view poll_id) const {
  auto id = NormalizePollId(poll_id, limits_);
  if (!id) return std::move(id).error();
  PollRef ref{who.client_id, {}, std::move(*id)};
  if (!IsGlobalPollId(ref.poll_id)) {
    if (auto ok = CheckText(who.channel_id, kMaxUserBytes, "channel id"); !ok) {
      return std::move(ok).error();
    }
    ref.channel_id = who.channel_id;
  }
  return ref;
}

Result<PollService::State> PollService::Load(const Keys& keys, std::string_view viewer) {
  std::vector<std::string> read = {keys.gen, keys.live, keys.cfg, keys.gc};
  if (!viewer.empty()) read.push_back(keys.Record(viewer));
  auto entries = store_.MultiGet(read);
  if (!entries) return std::move(entries).error();
  auto& e = *entries;
  State s;
  if (e[0]) {
    if (!ParseU64(e[0]->value, s.gen)) return MakeError(Errc::kInternal, "corrupt poll generation");
    s.gen_version = e[0]->version;
  }
  uint64_t live_gen = 0;
  s.live = s.gen > 0 && e[1] && ParseU64(e[1]->value, live_gen) && live_gen == s.gen;
  s.gc = e[3].has_value();
  if (s.live && e[2]) {
    std::string_view text = e[2]->value;
    size_t bar = text.find('|');
    uint64_t cfg_gen = 0;
    if (bar != std::string_view::npos && ParseU64(text.substr(0, bar), cfg_gen) &&
        cfg_gen == s.gen) {
      boost::system::error_code ec;
      json::value v = json::parse(text.substr(bar + 1), ec);
      if (ec) return MakeError(Errc::kInternal, "corrupt poll configuration");
      auto config = ParsePollConfig(v, PollConfig{}, keys.ref.poll_id, 0, limits_);
      if (!config) return MakeError(Errc::kInternal, "corrupt poll configuration");
      s.config = std::move(*config);
    }
  }
  if (!viewer.empty() && e[4]) {
    s.record_version = e[4]->version;
    auto record = ParseRecord(e[4]->value);
    if (!record) return MakeError(Errc::kInternal, "corrupt vote record");
    if (s.live && record->gen == s.gen) s.record = std::move(*record);
  }
  return s;
}

void PollService::MergeCounters(const std::string& prefix, const std::vector<size_t>& indices,
                                const std::vector<int64_t>& values, uint64_t version) {
  if (indices.size() != values.size()) return;  // cannot happen: one value per Add op
  std::lock_guard lock(counters_->mu);
  auto it = counters_->entries.find(prefix);
  if (it == counters_->entries.end()) return;  // loaded on the next read
  for (size_t j = 0; j < indices.size(); ++j) {
    size_t i = indices[j];
    if (version > it->second.versions[i]) {
      it->second.values[i] = values[j];
      it->second.versions[i] = version;
    }
  }
}

Result<PollStats> PollService::ReadStats(const Keys& keys, uint64_t gen) {
  PollStats stats;
  if (gen == 0) return stats;
  const std::string prefix = keys.CounterPrefix(gen);
  std::array<int64_t, kCounterCount> v{};
  bool cached = false;
  uint64_t ticket = 0;
  {
    std::lock_guard lock(counters_->mu);
    auto it = counters_->entries.find(prefix);
    if (it != counters_->entries.end()) {
      v = it->second.values;
      cached = true;
    }
    ticket = counters_->generation;
  }
  if (!cached) {
    auto entries = store_.MultiGet(keys.Counters(gen));
    if (!entries) return std::move(entries).error();
    CounterCache::Entry loaded;
    for (size_t i = 0; i < kCounterCount; ++i) {
      if (const auto& e = (*entries)[i]) {
        if (!ParseI64(e->value, loaded.values[i])) {
          return MakeError(Errc::kInternal, "corrupt poll counter");
        }
        loaded.versions[i] = e->version;
      }
    }
    v = loaded.values;
    std::lock_guard lock(counters_->mu);
    if (counters_->generation == ticket) {
      if (counters_->entries.size() >= CounterCache::kMaxEntries) {
        counters_->entries.clear();
        ++counters_->generation;
      } else {
        auto [it, inserted] = counters_->entries.try_emplace(prefix, loaded);
        if (!inserted) {  // a concurrent load got there first: keep the newer of each
          for (size_t i = 0; i < kCounterCount; ++i) {
            if (loaded.versions[i] > it->second.versions[i]) {
              it->second.values[i] = loaded.values[i];
              it->second.versions[i] = loaded.versions[i];
            }
          }
        }
        v = it->second.values;
      }
    }
  }
  stats.count = v[0];
  stats.sum = v[1];
  stats.sum_squares = v[2];
  for (int i = 0; i < kSpecificSize; ++i) {
    stats.specific[static_cast<size_t>(i)] = v[3 + static_cast<size_t>(i)];
  }
  return stats;
}

Result<VoteView> PollService::ViewOf(const Keys& keys, std::string_view viewer) {
  auto state = Load(keys, viewer);
  if (!state) return std::move(state).error();
  VoteView view;
  if (!state->live) return view;
  auto stats = ReadStats(keys, state->gen);
  if (!stats) return std::move(stats).error();
  view.stats = *stats;
  view.vote = state->record.last;
  return view;
}

uint64_t PollService::BeginWrite(const Keys& keys, const State& state,
                                 storage::WriteBatch& batch) const {
  batch.ExpectVersion(keys.gen, state.gen_version);
  if (state.live) return state.gen;
  // A new generation: the old one's sums go in this batch, its viewer records (stale from now
  // on) are removed in bounded steps by Cleanup().
  const uint64_t next = state.gen + 1;
  batch.Put(keys.gen, std::to_string(next));
  batch.Delete(keys.cfg);
  if (state.gen > 0) {
    for (auto& key : keys.Counters(state.gen)) batch.Delete(std::move(key));
    batch.Put(keys.gc, std::to_string(next) + "|");
  }
  return next;
}

namespace {

// Adds the counter deltas to batch (the batch's only Add ops); returns the counter indices in
// the order of those ops, which is the order of ApplyResult::counters.
std::vector<size_t> AddDeltas(storage::WriteBatch& batch, const std::vector<std::string>& counters,
                              const PollStats& now, const PollStats& before) {
  std::vector<size_t> indices;
  const int64_t d[3] = {now.count - before.count, now.sum - before.sum,
                        now.sum_squares - before.sum_squares};
  for (size_t i = 0; i < 3; ++i) {
    if (d[i] != 0) {
      batch.Add(counters[i], d[i]);
      indices.push_back(i);
    }
  }
  for (size_t i = 0; i < static_cast<size_t>(kSpecificSize); ++i) {
    int64_t delta = now.specific[i] - before.specific[i];
    if (delta != 0) {
      batch.Add(counters[3 + i], delta);
      indices.push_back(3 + i);
    }
  }
  return indices;
}

}  // namespace

void PollService::Cleanup(const Keys& keys) {
  // Best effort: any failure (a concurrent step, a record rewritten meanwhile) leaves the
  // marker, and a later request continues.
  auto marker = store_.Get(keys.gc);
  if (!marker || !*marker) return;
  std::string_view text = (*marker)->value;
  size_t bar = text.find('|');
  uint64_t target = 0;
  if (bar == std::string_view::npos || !ParseU64(text.substr(0, bar), target)) {
    (void)store_.Apply(storage::WriteBatch().Delete(keys.gc));
    return;
  }
  const std::string record_prefix = keys.RecordPrefix();
  std::string start = text.substr(bar + 1).empty()
                          ? std::string()
                          : record_prefix + std::string(text.substr(bar + 1));
  auto page = store_.Scan(record_prefix, start, limits_.cleanup_batch);
  if (!page) return;
  storage::WriteBatch batch;
  batch.ExpectVersion(keys.gc, (*marker)->version);
  for (const auto& [key, entry] : *page) {
    auto record = ParseRecord(entry.value);
    if (record && record->gen >= target) continue;
    batch.ExpectVersion(key, entry.version);
    batch.Delete(key);
  }
  if (page->size() < limits_.cleanup_batch) {
    batch.Delete(keys.gc);
  } else {
    batch.Put(keys.gc,
              std::to_string(target) + "|" + page->back().key.substr(record_prefix.size()));
  }
  (void)store_.Apply(batch);
}

void PollService::Publish(const PollRef& ref, const PollStats& stats) const {
  if (events_ == nullptr) return;
  std::string payload = "{\"id\":" + json::serialize(json::string(ref.poll_id)) + ",\"stats\":{" +
                        StatsJsonFields(stats) + "}}";
  events_->Publish(events::Event{ref.client_id, ref.channel_id, "vote_update:" + ref.poll_id,
                                 std::move(payload), clock_.NowMs()});
}

// ---------------------------------------------------------------------------------------------
// Scope-level operations

Result<VoteView> PollService::VoteAs(const PollRef& ref, std::string_view viewer,
                                     std::string_view user_id, std::string_view opaque_id,
                                     int64_t value, int64_t count) {
  if (viewer.empty()) return MakeError(Errc::kInvalidArgument, "user id required");
  if (auto ok = CheckText(viewer, kMaxUserBytes, "user id"); !ok) return std::move(ok).error();
  if (value < limits_.min_value || value > limits_.max_value) {
    return MakeError(Errc::kInvalidArgument, "Value out of bounds");
  }
  if (count == 0) count = 1;
  if (count < 0 || count > limits_.max_count) {
    return MakeError(Errc::kInvalidArgument, "Count out of bounds");
  }
  const Keys keys(ref, Prefix(ref));
  const std::string record_key = keys.Record(viewer);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto state = Load(keys, viewer);
    if (!state) return std::move(state).error();
    const PollConfig config = state->config.value_or(PollConfig{});
    const int64_t now_ms = clock_.NowMs();
    if (config.user_id_voting && user_id.empty()) {
      return MakeError(Errc::kForbidden, "user id required",
                       "this poll only accepts viewers who shared their identity");
    }
    if (config.disabled || config.StatusAt(now_ms / 1000) != PollStatus::kActive) return Closed();

    Record next = state->record;
    if (config.total_votes_per_user <= 1) {
      next.units.clear();  // one vote per viewer: the new one replaces the old
      next.units[value] = count;
    } else {
      if (count > config.total_votes_per_user)
        return MakeError(Errc::kInvalidArgument, "Count out of bounds");
      next.units[value] += count;
      if (next.TotalUnits() > config.total_votes_per_user) {
        return Unacceptable("totalVotesPerUser reached");
      }
      if (static_cast<int64_t>(next.units.size()) > config.distinct_options_per_user) {
        return Unacceptable("distinctOptionsPerUser reached");
      }
      if (next.units[value] > config.votes_per_option) {
        return Unacceptable("votesPerOption reached");
      }
    }
    next.last = value;

    storage::WriteBatch batch;
    const uint64_t gen = BeginWrite(keys, *state, batch);
    next.gen = gen;
    batch.ExpectVersion(record_key, state->record_version);
    batch.Put(record_key, SerializeRecord(next));
    const std::vector<size_t> touched =
        AddDeltas(batch, keys.Counters(gen), Contribution(next), Contribution(state->record));
    batch.Put(keys.live, std::to_string(gen), now_ms + limits_.retention_ms);

    json::object log;
    log["identifier"] = user_id.empty() ? (opaque_id.empty() ? viewer : opaque_id) : user_id;
    log["opaque"] = opaque_id;
    log["value"] = value;
    log["timestamp"] = now_ms;
    batch.Put(keys.LogPrefix() + fmt::format("{:016d}{}{:016x}{:08x}", now_ms, kSep, boot_id_,
                                             log_seq_.fetch_add(1, std::memory_order_relaxed)),
              json::serialize(log), now_ms + limits_.retention_ms);

    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code == Errc::kConflict) continue;
      return std::move(applied).error();
    }
    MergeCounters(keys.CounterPrefix(gen), touched, applied->counters, applied->version);
    auto stats = ReadStats(keys, gen);
    if (!stats) return std::move(stats).error();
    Publish(ref, *stats);
    if (state->gc || !state->live) Cleanup(keys);
    return VoteView{*stats, value};
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<void> PollService::AddModifierTo(const PollRef& ref, std::string_view user, int64_t add) {
  if (auto ok = CheckText(user, kMaxUserBytes, "user"); !ok) return std::move(ok).error();
  if (add < -limits_.max_modifier_add || add > limits_.max_modifier_add) {
    return InvalidBody(fmt::format("add must be in -{0}..{0}", limits_.max_modifier_add));
  }
  const Keys keys(ref, Prefix(ref));
  const std::string record_key = keys.Record(user);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto state = Load(keys, user);
    if (!state) return std::move(state).error();
    Record next = state->record;
    next.adds += add;
    if (next.adds < -limits_.max_modifier_weight || next.adds + 1 > limits_.max_modifier_weight) {
      return InvalidBody(
          fmt::format("a user's weight must stay within 0..{}", limits_.max_modifier_weight));
    }
    storage::WriteBatch batch;
    const uint64_t gen = BeginWrite(keys, *state, batch);
    next.gen = gen;
    const PollStats before = Contribution(state->record), after = Contribution(next);
    batch.ExpectVersion(record_key, state->record_version);
    batch.Put(record_key, SerializeRecord(next));
    const std::vector<size_t> touched = AddDeltas(batch, keys.Counters(gen), after, before);
    batch.Put(keys.live, std::to_string(gen), clock_.NowMs() + limits_.retention_ms);
    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code == Errc::kConflict) continue;
      return std::move(applied).error();
    }
    MergeCounters(keys.CounterPrefix(gen), touched, applied->counters, applied->version);
    if (!(after == before)) {
      if (auto stats = ReadStats(keys, gen)) Publish(ref, *stats);
    }
    if (state->gc || !state->live) Cleanup(keys);
    return {};
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<void> PollService::WriteConfig(const PollRef& ref, const PollConfig& config, bool reset) {
  const Keys keys(ref, Prefix(ref));
  const int64_t now_ms = clock_.NowMs();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto state = Load(keys, {});
    if (!state) return std::move(state).error();
    State effective = *state;
    if (reset) effective.live = false;
    storage::WriteBatch batch;
    const uint64_t gen = BeginWrite(keys, effective, batch);
    batch.Put(keys.cfg, std::to_string(gen) + "|" + PollConfigJson(config, now_ms / 1000));
    batch.Put(keys.live, std::to_string(gen), now_ms + limits_.retention_ms);
    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code == Errc::kConflict) continue;
      return std::move(applied).error();
    }
    if (state->gc || gen != state->gen) Cleanup(keys);
    return {};
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<void> PollService::CreatePoll(const PollRef& ref, const PollConfig& config) {
  return WriteConfig(ref, config, /*reset=*/true);
}

Result<void> PollService::ConfigurePoll(const PollRef& ref, const PollConfig& config) {
  return WriteConfig(ref, config, /*reset=*/false);
}

Result<PollSnapshot> PollService::ReadPoll(const PollRef& ref) {
  const Keys keys(ref, Prefix(ref));
  auto state = Load(keys, {});
  if (!state) return std::move(state).error();
  PollSnapshot snap;
  if (!state->live) return snap;
  snap.config = state->config;
  if (snap.config) snap.status = snap.config->StatusAt(clock_.NowSeconds());
  auto stats = ReadStats(keys, state->gen);
  if (!stats) return std::move(stats).error();
  snap.stats = *stats;
  return snap;
}

Result<void> PollService::DeletePoll(const PollRef& ref) {
  const Keys keys(ref, Prefix(ref));
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto state = Load(keys, {});
    if (!state) return std::move(state).error();
    if (state->gen > 0) {
      storage::WriteBatch batch;
      batch.ExpectVersion(keys.gen, state->gen_version);
      const uint64_t next = state->gen + 1;
      batch.Put(keys.gen, std::to_string(next));
      batch.Delete(keys.live);
      batch.Delete(keys.cfg);
      for (auto& key : keys.Counters(state->gen)) batch.Delete(std::move(key));
      batch.Put(keys.gc, std::to_string(next) + "|");
      auto applied = store_.Apply(batch);
      if (!applied) {
        if (applied.error().code == Errc::kConflict) continue;
        return std::move(applied).error();
      }
      Cleanup(keys);
    }
    Publish(ref, PollStats{});
    return {};
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<std::vector<VoteLogEntry>> PollService::ReadLogs(const PollRef& ref) {
  const Keys keys(ref, Prefix(ref));
  const std::string prefix = keys.LogPrefix();
  std::vector<VoteLogEntry> out;
  std::string after;
  while (out.size() < limits_.max_log_entries) {
    size_t want = std::min(kLogPage, limits_.max_log_entries - out.size());
    auto page = store_.Scan(prefix, after, want);
    if (!page) return std::move(page).error();
    for (auto& item : *page) out.push_back(VoteLogEntry{std::move(item.entry.value)});
    if (page->size() < want) break;
    after = std::move(page->back().key);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// REST surface

namespace {
bool MayManage(const Identity& who) { return who.role != Role::kViewer; }
}  // namespace

Result<VoteView> PollService::Get(const Identity& who, std::string_view poll_id) {
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  const Keys keys(*ref, Prefix(*ref));
  std::string_view viewer = who.ViewerKey();
  if (!CheckText(viewer, kMaxUserBytes, "user id")) viewer = {};
  return ViewOf(keys, viewer);
}

Result<VoteView> PollService::Vote(const Identity& who, std::string_view poll_id, int64_t value,
                                   int64_t count) {
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  return VoteAs(*ref, who.ViewerKey(), who.user_id, who.opaque_user_id, value, count);
}

Result<void> PollService::Delete(const Identity& who, std::string_view poll_id) {
  if (!MayManage(who)) return Refused();
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  return DeletePoll(*ref);
}

Result<std::vector<VoteLogEntry>> PollService::Logs(const Identity& who, std::string_view poll_id) {
  if (who.role != Role::kBackend && !who.validated_admin) return Refused();
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  return ReadLogs(*ref);
}

Result<std::optional<PollConfig>> PollService::GetConfig(const Identity& who,
                                                         std::string_view poll_id) {
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  const Keys keys(*ref, Prefix(*ref));
  auto state = Load(keys, {});
  if (!state) return std::move(state).error();
  return std::move(state->config);
}

Result<void> PollService::Configure(const Identity& who, std::string_view poll_id,
                                    const json::value& config) {
  if (!MayManage(who)) return Refused();
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  auto parsed = ParsePollConfig(config, PollConfig{}, ref->poll_id, clock_.NowSeconds(), limits_);
  if (!parsed) return std::move(parsed).error();
  return ConfigurePoll(*ref, *parsed);
}

Result<void> PollService::AddModifier(const Identity& who, std::string_view poll_id,
                                      std::string_view user, int64_t add) {
  if (!MayManage(who)) return Refused();
  auto ref = Resolve(who, poll_id);
  if (!ref) return std::move(ref).error();
  return AddModifierTo(*ref, user, add);
}

}  // namespace medkit::core::poll
