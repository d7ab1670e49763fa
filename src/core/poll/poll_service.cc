#include "core/poll/poll_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstring>
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

}  // namespace

namespace detail {

// value -> units held, sorted by value; a small vector (one entry for a one-vote poll) instead
// of a node-based map, since one of these is kept in memory per voter.
class Units {
 public:
  using Item = std::pair<int64_t, int64_t>;
  int64_t& operator[](int64_t value) {
    auto it = std::lower_bound(items_.begin(), items_.end(), value,
                               [](const Item& item, int64_t v) { return item.first < v; });
    if (it == items_.end() || it->first != value) it = items_.insert(it, Item{value, 0});
    return it->second;
  }
  void clear() { items_.clear(); }
  size_t size() const { return items_.size(); }
  std::vector<Item>::const_iterator begin() const { return items_.begin(); }
  std::vector<Item>::const_iterator end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
};

// One viewer's votes in one generation: "G|adds|last|value:units,value:units".
struct VoteRecord {
  uint64_t gen = 0;
  int64_t adds = 0;  // Σ vote_modifier add
  std::optional<int64_t> last;
  Units units;

  int64_t Weight() const { return std::max<int64_t>(0, 1 + adds); }
  int64_t TotalUnits() const {
    int64_t n = 0;
    for (const auto& [v, u] : units) n += u;
    return n;
  }
};

}  // namespace detail

namespace {

using Record = detail::VoteRecord;

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

namespace {

// Appends the decimal text of v (std::to_chars: same digits as fmt's "{}", a fraction of the
// cost; fmt::join over the 32 counters was ~13k instructions per call).
void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto* end = std::to_chars(buf, buf + sizeof(buf), v).ptr;
  out.append(buf, end);
}

// A bounded text buffer on the stack for the hot renderers below. Their output is at most ~820
// bytes by construction (34 int64 of <= 20 characters, two doubles, labels); Put never writes
// past the buffer in any case.
class StackText {
 public:
  void Put(std::string_view s) {
    const size_t n = std::min(s.size(), static_cast<size_t>(end_ - p_));
    std::memcpy(p_, s.data(), n);
    p_ += n;
  }
  void Put(char c) {
    if (p_ != end_) *p_++ = c;
  }
  void Int(int64_t v) {
    char b[24];
    Put(std::string_view(b, static_cast<size_t>(std::to_chars(b, b + sizeof(b), v).ptr - b)));
  }
  void Uint(uint64_t v) {
    char b[24];
    Put(std::string_view(b, static_cast<size_t>(std::to_chars(b, b + sizeof(b), v).ptr - b)));
  }
  // Integral values as integers, others in fmt's shortest round-trip form (fmt kept for the
  // doubles so the text is unchanged: to_chars would pick "1e-04" where fmt writes "0.0001").
  void Number(double d) {
    if (!std::isfinite(d)) {
      Put('0');
    } else if (d == std::floor(d) && std::fabs(d) < 9e15) {
      Int(static_cast<int64_t>(d));
    } else {
      char b[64];
      auto r = fmt::format_to_n(b, sizeof(b), "{}", d);
      Put(std::string_view(b, std::min(r.size, sizeof(b))));
    }
  }
  std::string_view view() const { return std::string_view(buf_, static_cast<size_t>(p_ - buf_)); }

 private:
  char buf_[1024];
  char* p_ = buf_;
  char* const end_ = buf_ + sizeof(buf_);
};

// The statistics fields (every vote renders them twice: the response and the vote_update
// event).
void AppendStatsJsonFields(std::string& out, const PollStats& stats) {
  StackText t;
  t.Put("\"stddev\":");
  t.Number(stats.StdDev());
  t.Put(",\"mean\":");
  t.Number(stats.Mean());
  t.Put(",\"sum\":");
  t.Int(stats.sum);
  t.Put(",\"count\":");
  t.Int(stats.count);
  t.Put(",\"specific\":[");
  for (size_t i = 0; i < stats.specific.size(); ++i) {
    if (i) t.Put(',');
    t.Int(stats.specific[i]);
  }
  t.Put(']');
  out.append(t.view());
}

}  // namespace

std::string StatsJsonFields(const PollStats& stats) {
  // Hot path (every vote response and vote_update): one buffer, no temporaries.
  std::string out;
  out.reserve(160);
  AppendStatsJsonFields(out, stats);
  return out;
}

std::string VoteViewJson(const VoteView& view) {
  std::string out;
  out.reserve(192);
  out.push_back('{');
  AppendStatsJsonFields(out, view.stats);
  out.append(",\"decay\":{}");
  if (view.vote) {
    out.append(",\"vote\":");
    AppendInt(out, *view.vote);
  }
  out.push_back('}');
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
// Keys and in-memory state

struct PollService::Keys {
  PollRef ref;
  std::string prefix, gen, cfg, stats, gc;

  Keys(PollRef r, std::string p) : ref(std::move(r)), prefix(std::move(p)) {
    gen = prefix + "gen";
    cfg = prefix + "cfg";
    stats = prefix + "st";
    gc = prefix + "gc";
  }
  std::string RecordPrefix() const { return prefix + "v" + kSep; }
  std::string Record(std::string_view viewer) const { return RecordPrefix().append(viewer); }
  std::string LogPrefix() const { return prefix + "log" + kSep; }
};

// Everything about one poll except its viewer records: what `Load` reads back after a restart.
struct PollService::Head {
  uint64_t gen = 0;           // current generation (0: the poll never existed)
  int64_t live_until_ms = 0;  // generation `gen` is live while now < live_until_ms
  std::optional<PollConfig> config;
  PollStats stats;  // running sums of generation `gen`
  bool gc = false;  // records of older generations may remain in the store

  bool LiveAt(int64_t now_ms) const { return gen > 0 && now_ms < live_until_ms; }
};

struct PollService::Hot {
  std::mutex mu;
  bool loaded = false;  // guarded by mu; head reflects the store
  bool dead = false;    // guarded by mu; evicted from the table: look it up again
  Head head;            // guarded by mu
  // Records of generation head.gen (guarded by mu). When `complete`, every record of the
  // generation is here (the generation began in this process and nothing was evicted), so a
  // miss means "no record" without a store read.
  std::unordered_map<std::string, Record> records;
  bool complete = false;
  std::atomic<uint64_t> last_use{0};
};

struct PollService::HotTable {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<Hot>> polls;  // guarded by mu; key: prefix
  std::atomic<uint64_t> tick{0};
  std::atomic<int64_t> records{0};  // Σ records.size() over all polls
};

PollService::PollService(storage::Store& store, const Clock& clock, auth::Stage stage,
                         PollLimits limits, events::EventBus* events)
    : store_(store), clock_(clock), stage_(stage), limits_(limits), events_(events) {
  std::random_device rd;
  boot_id_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  table_ = std::make_unique<HotTable>();
}

PollService::~PollService() = default;

size_t PollService::CachedRecords() const {
  return static_cast<size_t>(std::max<int64_t>(0, table_->records.load()));
}

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

namespace {

// "G|n|s|q|c0,c1,...,c31": the running sums of generation G.
std::string SerializeStats(uint64_t gen, const PollStats& s) {
  StackText t;
  t.Uint(gen);
  for (int64_t v : {s.count, s.sum, s.sum_squares}) {
    t.Put('|');
    t.Int(v);
  }
  t.Put('|');
  for (int i = 0; i < kSpecificSize; ++i) {
    if (i) t.Put(',');
    t.Int(s.specific[static_cast<size_t>(i)]);
  }
  return std::string(t.view());
}

// Appends v in base `base`, zero-padded on the left to at least `width` digits (fmt's
// "{:0<width>d}" / "{:0<width>x}" for non-negative values).
void AppendPadded(std::string& out, uint64_t v, int base, size_t width) {
  char buf[24];
  auto* end = std::to_chars(buf, buf + sizeof(buf), v, base).ptr;
  const size_t len = static_cast<size_t>(end - buf);
  if (len < width) out.append(width - len, '0');
  out.append(buf, len);
}

// P log␟<ms, 16 digits>␟<boot id, 16 hex><seq, >= 8 hex>
std::string LogKey(std::string key, int64_t now_ms, uint64_t boot_id, uint64_t seq) {
  if (now_ms >= 0) {
    AppendPadded(key, static_cast<uint64_t>(now_ms), 10, 16);
  } else {
    key += fmt::format("{:016d}", now_ms);
  }
  key.push_back(kSep);
  AppendPadded(key, boot_id, 16, 16);
  AppendPadded(key, seq, 16, 8);
  return key;
}

// {"identifier":..,"opaque":..,"value":..,"timestamp":..}, as json::serialize of that object.
std::string LogJson(std::string_view identifier, std::string_view opaque, int64_t value,
                    int64_t timestamp) {
  std::string out = "{\"identifier\":";
  out += json::serialize(json::string(identifier));
  out += ",\"opaque\":";
  out += json::serialize(json::string(opaque));
  out += ",\"value\":";
  AppendInt(out, value);
  out += ",\"timestamp\":";
  AppendInt(out, timestamp);
  out.push_back('}');
  return out;
}

std::optional<PollStats> ParseStats(std::string_view text, uint64_t& gen) {
  PollStats s;
  int64_t* fields[3] = {&s.count, &s.sum, &s.sum_squares};
  size_t bar = text.find('|');
  if (bar == std::string_view::npos || !ParseU64(text.substr(0, bar), gen)) return std::nullopt;
  text.remove_prefix(bar + 1);
  for (int64_t* field : fields) {
    bar = text.find('|');
    if (bar == std::string_view::npos || !ParseI64(text.substr(0, bar), *field)) {
      return std::nullopt;
    }
    text.remove_prefix(bar + 1);
  }
  for (int i = 0; i < kSpecificSize; ++i) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    if (!ParseI64(item, s.specific[static_cast<size_t>(i)])) return std::nullopt;
    if (i + 1 < kSpecificSize && comma == std::string_view::npos) return std::nullopt;
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  return s;
}

PollStats Plus(PollStats base, const PollStats& add, const PollStats& remove) {
  base.count += add.count - remove.count;
  base.sum += add.sum - remove.sum;
  base.sum_squares += add.sum_squares - remove.sum_squares;
  for (size_t i = 0; i < static_cast<size_t>(kSpecificSize); ++i) {
    base.specific[i] += add.specific[i] - remove.specific[i];
  }
  return base;
}

}  // namespace

Result<void> PollService::Load(const Keys& keys, Hot& hot) {
  std::vector<std::string> read = {keys.gen, keys.stats, keys.cfg, keys.gc};
  auto entries = store_.MultiGet(read);
  if (!entries) return std::move(entries).error();
  auto& e = *entries;
  Head h;
  if (e[0] && !ParseU64(e[0]->value, h.gen)) {
    return MakeError(Errc::kInternal, "corrupt poll generation");
  }
  if (h.gen > 0 && e[1]) {  // the sums: present (not expired) and of this generation = live
    uint64_t stats_gen = 0;
    auto stats = ParseStats(e[1]->value, stats_gen);
    if (!stats) return MakeError(Errc::kInternal, "corrupt poll statistics");
    if (stats_gen == h.gen) {
      h.stats = *stats;
      h.live_until_ms = e[1]->expires_at_ms == 0 ? INT64_MAX : e[1]->expires_at_ms;
    }
  }
  h.gc = e[3].has_value();
  if (h.gen > 0 && e[2]) {
    std::string_view text = e[2]->value;
    size_t bar = text.find('|');
    uint64_t cfg_gen = 0;
    if (bar != std::string_view::npos && ParseU64(text.substr(0, bar), cfg_gen) &&
        cfg_gen == h.gen) {
      boost::system::error_code ec;
      json::value v = json::parse(text.substr(bar + 1), ec);
      if (ec) return MakeError(Errc::kInternal, "corrupt poll configuration");
      auto config = ParsePollConfig(v, PollConfig{}, keys.ref.poll_id, 0, limits_);
      if (!config) return MakeError(Errc::kInternal, "corrupt poll configuration");
      h.config = std::move(*config);
    }
  }
  hot.head = std::move(h);
  // Generation 0 has no records; any other may have records on disk that are not in memory.
  table_->records -= static_cast<int64_t>(hot.records.size());
  hot.records.clear();
  hot.complete = hot.head.gen == 0;
  hot.loaded = true;
  return {};
}

void PollService::MaybeEvict() {
  const int64_t max_records = static_cast<int64_t>(limits_.max_cached_records);
  HotTable& t = *table_;
  std::lock_guard lock(t.mu);
  const bool too_many_records = t.records.load() > max_records;
  const bool too_many_polls = t.polls.size() > limits_.max_cached_polls;
  if (!too_many_records && !too_many_polls) return;
  // Least recently used first, until three quarters of each limit.
  std::vector<std::pair<uint64_t, std::string>> order;
  order.reserve(t.polls.size());
  for (const auto& [prefix, hot] : t.polls) order.emplace_back(hot->last_use.load(), prefix);
  std::sort(order.begin(), order.end());
  for (const auto& [use, prefix] : order) {
    const bool records_ok = t.records.load() <= max_records / 4 * 3;
    const bool polls_ok = t.polls.size() <= limits_.max_cached_polls / 4 * 3;
    if (records_ok && polls_ok) break;
    auto it = t.polls.find(prefix);
    std::unique_lock hot_lock(it->second->mu, std::try_to_lock);
    if (!hot_lock.owns_lock()) continue;  // in use right now
    Hot& hot = *it->second;
    t.records -= static_cast<int64_t>(hot.records.size());
    hot.records.clear();
    hot.complete = false;
    if (!polls_ok) {
      hot.dead = true;  // a thread holding this pointer re-acquires from the table
      hot_lock.unlock();
      t.polls.erase(it);
    }
  }
}

Result<PollService::Locked> PollService::Lock(const Keys& keys) {
  MaybeEvict();
  HotTable& t = *table_;
  for (;;) {
    std::shared_ptr<Hot> hot;
    {
      std::lock_guard lock(t.mu);
      auto& slot = t.polls[keys.prefix];
      if (!slot) slot = std::make_shared<Hot>();
      hot = slot;
    }
    hot->last_use.store(t.tick.fetch_add(1, std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
    std::unique_lock lock(hot->mu);
    if (hot->dead) continue;
    if (!hot->loaded) {
      if (auto ok = Load(keys, *hot); !ok) return std::move(ok).error();
    }
    return Locked{std::move(hot), std::move(lock)};
  }
}

Result<Record> PollService::RecordOf(const Keys& keys, Hot& hot, std::string_view viewer) {
  if (!hot.head.LiveAt(clock_.NowMs())) return Record{};
  if (auto it = hot.records.find(std::string(viewer)); it != hot.records.end()) return it->second;
  if (hot.complete) return Record{};
  auto stored = store_.Get(keys.Record(viewer));
  if (!stored) return std::move(stored).error();
  if (!*stored) return Record{};
  auto record = ParseRecord((*stored)->value);
  if (!record) return MakeError(Errc::kInternal, "corrupt vote record");
  if (record->gen != hot.head.gen) return Record{};  // stale: an older generation
  hot.records.emplace(std::string(viewer), *record);
  ++table_->records;
  return std::move(*record);
}

void PollService::Remember(Hot& hot, bool fresh, std::string_view viewer, Record record) {
  if (fresh) {
    table_->records -= static_cast<int64_t>(hot.records.size());
    hot.records.clear();
    hot.complete = true;
  }
  auto [it, inserted] = hot.records.insert_or_assign(std::string(viewer), std::move(record));
  if (inserted) ++table_->records;
}

bool PollService::BeginWrite(const Keys& keys, const Head& current, int64_t now_ms, Head& next,
                             storage::WriteBatch& batch) const {
  next = current;
  if (current.LiveAt(now_ms)) return false;
  // A new generation: votes, configuration and sums start empty; the old generation's viewer
  // records (stale from now on) are removed in bounded steps by Cleanup().
  next.gen = current.gen + 1;
  next.config.reset();
  next.stats = PollStats{};
  batch.Put(keys.gen, std::to_string(next.gen));
  batch.Delete(keys.cfg);
  if (current.gen > 0) {
    batch.Put(keys.gc, std::to_string(next.gen) + "|");
    next.gc = true;
  }
  return true;
}

void PollService::Cleanup(const Keys& keys, Hot& hot) {
  if (!hot.head.gc) return;
  // Best effort: any failure leaves the marker, and a later write continues. Runs under the
  // poll's lock, so no vote of this poll writes a record meanwhile.
  auto marker = store_.Get(keys.gc);
  if (!marker) return;
  if (!*marker) {
    hot.head.gc = false;
    return;
  }
  std::string_view text = (*marker)->value;
  size_t bar = text.find('|');
  uint64_t target = 0;
  if (bar == std::string_view::npos || !ParseU64(text.substr(0, bar), target)) {
    if (store_.Apply(storage::WriteBatch().Delete(keys.gc))) hot.head.gc = false;
    return;
  }
  const std::string record_prefix = keys.RecordPrefix();
  std::string start = text.substr(bar + 1).empty()
                          ? std::string()
                          : record_prefix + std::string(text.substr(bar + 1));
  auto page = store_.Scan(record_prefix, start, limits_.cleanup_batch);
  if (!page) return;
  storage::WriteBatch batch;
  for (const auto& [key, entry] : *page) {
    auto record = ParseRecord(entry.value);
    if (record && record->gen >= target) continue;
    batch.Delete(key);
  }
  const bool done = page->size() < limits_.cleanup_batch;
  if (done) {
    batch.Delete(keys.gc);
  } else {
    batch.Put(keys.gc,
              std::to_string(target) + "|" + page->back().key.substr(record_prefix.size()));
  }
  if (store_.Apply(batch) && done) hot.head.gc = false;
}

void PollService::Publish(const PollRef& ref, const PollStats& stats) const {
  if (events_ == nullptr) return;
  std::string payload = "{\"id\":" + json::serialize(json::string(ref.poll_id)) + ",\"stats\":{" +
                        StatsJsonFields(stats) + "}}";
  events_->Publish(events::Event{ref.client_id, ref.channel_id, "vote_update:" + ref.poll_id,
                                 std::move(payload), clock_.NowMs()});
}

// ---------------------------------------------------------------------------------------------
// Scope-level operations. Each runs under its poll's lock: it reads the in-memory state,
// computes the new one, applies ONE atomic batch, and only then updates memory.

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
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  Hot& hot = *locked->hot;
  const int64_t now_ms = clock_.NowMs();
  const PollConfig config =
      hot.head.LiveAt(now_ms) ? hot.head.config.value_or(PollConfig{}) : PollConfig{};
  if (config.user_id_voting && user_id.empty()) {
    return MakeError(Errc::kForbidden, "user id required",
                     "this poll only accepts viewers who shared their identity");
  }
  if (config.disabled || config.StatusAt(now_ms / 1000) != PollStatus::kActive) return Closed();

  auto previous = RecordOf(keys, hot, viewer);
  if (!previous) return std::move(previous).error();
  Record next = *previous;
  if (config.total_votes_per_user <= 1) {
    next.units.clear();  // one vote per viewer: the new one replaces the old
    next.units[value] = count;
  } else {
    if (count > config.total_votes_per_user) {
      return MakeError(Errc::kInvalidArgument, "Count out of bounds");
    }
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
  Head head;
  const bool fresh = BeginWrite(keys, hot.head, now_ms, head, batch);
  next.gen = head.gen;
  head.stats = Plus(head.stats, Contribution(next), Contribution(*previous));
  head.live_until_ms = now_ms + limits_.retention_ms;
  batch.Put(keys.Record(viewer), SerializeRecord(next));
  batch.Put(keys.stats, SerializeStats(head.gen, head.stats), head.live_until_ms);

  batch.Put(LogKey(keys.LogPrefix(), now_ms, boot_id_,
                   log_seq_.fetch_add(1, std::memory_order_relaxed)),
            LogJson(user_id.empty() ? (opaque_id.empty() ? viewer : opaque_id) : user_id,
                    opaque_id, value, now_ms),
            now_ms + limits_.retention_ms);

  if (auto applied = store_.Apply(batch); !applied) return std::move(applied).error();
  hot.head = std::move(head);
  Remember(hot, fresh, viewer, std::move(next));
  Publish(ref, hot.head.stats);
  Cleanup(keys, hot);
  return VoteView{hot.head.stats, value};
}

Result<void> PollService::AddModifierTo(const PollRef& ref, std::string_view user, int64_t add) {
  if (auto ok = CheckText(user, kMaxUserBytes, "user"); !ok) return std::move(ok).error();
  if (add < -limits_.max_modifier_add || add > limits_.max_modifier_add) {
    return InvalidBody(fmt::format("add must be in -{0}..{0}", limits_.max_modifier_add));
  }
  const Keys keys(ref, Prefix(ref));
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  Hot& hot = *locked->hot;
  const int64_t now_ms = clock_.NowMs();
  auto previous = RecordOf(keys, hot, user);
  if (!previous) return std::move(previous).error();
  Record next = *previous;
  next.adds += add;
  if (next.adds < -limits_.max_modifier_weight || next.adds + 1 > limits_.max_modifier_weight) {
    return InvalidBody(
        fmt::format("a user's weight must stay within 0..{}", limits_.max_modifier_weight));
  }
  storage::WriteBatch batch;
  Head head;
  const bool fresh = BeginWrite(keys, hot.head, now_ms, head, batch);
  next.gen = head.gen;
  const PollStats before = Contribution(*previous), after = Contribution(next);
  head.stats = Plus(head.stats, after, before);
  head.live_until_ms = now_ms + limits_.retention_ms;
  batch.Put(keys.Record(user), SerializeRecord(next));
  batch.Put(keys.stats, SerializeStats(head.gen, head.stats), head.live_until_ms);
  if (auto applied = store_.Apply(batch); !applied) return std::move(applied).error();
  hot.head = std::move(head);
  Remember(hot, fresh, user, std::move(next));
  if (!(after == before)) Publish(ref, hot.head.stats);
  Cleanup(keys, hot);
  return {};
}

Result<void> PollService::WriteConfig(const PollRef& ref, const PollConfig& config, bool reset) {
  const Keys keys(ref, Prefix(ref));
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  Hot& hot = *locked->hot;
  const int64_t now_ms = clock_.NowMs();
  Head current = hot.head;
  if (reset) current.live_until_ms = 0;  // CreatePoll: always a new generation
  storage::WriteBatch batch;
  Head head;
  const bool fresh = BeginWrite(keys, current, now_ms, head, batch);
  head.config = config;
  head.live_until_ms = now_ms + limits_.retention_ms;
  batch.Put(keys.cfg, std::to_string(head.gen) + "|" + PollConfigJson(config, now_ms / 1000));
  batch.Put(keys.stats, SerializeStats(head.gen, head.stats), head.live_until_ms);
  if (auto applied = store_.Apply(batch); !applied) return std::move(applied).error();
  hot.head = std::move(head);
  if (fresh) {
    table_->records -= static_cast<int64_t>(hot.records.size());
    hot.records.clear();
    hot.complete = true;
  }
  Cleanup(keys, hot);
  return {};
}

Result<void> PollService::CreatePoll(const PollRef& ref, const PollConfig& config) {
  return WriteConfig(ref, config, /*reset=*/true);
}

Result<void> PollService::ConfigurePoll(const PollRef& ref, const PollConfig& config) {
  return WriteConfig(ref, config, /*reset=*/false);
}

Result<PollSnapshot> PollService::ReadPoll(const PollRef& ref) {
  const Keys keys(ref, Prefix(ref));
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  const Head& head = locked->hot->head;
  PollSnapshot snap;
  if (!head.LiveAt(clock_.NowMs())) return snap;
  snap.config = head.config;
  if (snap.config) snap.status = snap.config->StatusAt(clock_.NowSeconds());
  snap.stats = head.stats;
  return snap;
}

Result<VoteView> PollService::ViewOf(const PollRef& ref, std::string_view viewer) {
  const Keys keys(ref, Prefix(ref));
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  Hot& hot = *locked->hot;
  VoteView view;
  if (!hot.head.LiveAt(clock_.NowMs())) return view;
  view.stats = hot.head.stats;
  if (!viewer.empty()) {
    auto record = RecordOf(keys, hot, viewer);
    if (!record) return std::move(record).error();
    view.vote = record->last;
  }
  return view;
}

Result<std::optional<PollConfig>> PollService::ConfigOf(const PollRef& ref) {
  const Keys keys(ref, Prefix(ref));
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  const Head& head = locked->hot->head;
  if (!head.LiveAt(clock_.NowMs())) return std::optional<PollConfig>{};
  return head.config;
}

Result<void> PollService::DeletePoll(const PollRef& ref) {
  const Keys keys(ref, Prefix(ref));
  auto locked = Lock(keys);
  if (!locked) return std::move(locked).error();
  Hot& hot = *locked->hot;
  if (hot.head.gen > 0) {
    Head head;
    head.gen = hot.head.gen + 1;
    head.gc = true;
    storage::WriteBatch batch;
    batch.Put(keys.gen, std::to_string(head.gen));
    batch.Delete(keys.cfg);
    batch.Delete(keys.stats);
    batch.Put(keys.gc, std::to_string(head.gen) + "|");
    if (auto applied = store_.Apply(batch); !applied) return std::move(applied).error();
    hot.head = std::move(head);
    table_->records -= static_cast<int64_t>(hot.records.size());
    hot.records.clear();
    hot.complete = true;  // generation head.gen has no records yet
    Cleanup(keys, hot);
  }
  Publish(ref, PollStats{});
  return {};
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
  std::string_view viewer = who.ViewerKey();
  if (!CheckText(viewer, kMaxUserBytes, "user id")) viewer = {};
  return ViewOf(*ref, viewer);
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
  return ConfigOf(*ref);
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
