#include "core/gamecode/code_service.h"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <thread>
#include <unordered_set>

namespace medkit::core::gamecode {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr int64_t kChunkSlots = 1024;
// Optimistic retries. Conflicts come from the same user's concurrent redeems or from an admin
// changing the sets, so a few rounds suffice; the yield lets the winner finish.
constexpr int kMaxAttempts = 64;
constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxRedeemedScan = 1'000'000;

Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}
Error Bad(std::string reason, std::string info = {}) {
  return MakeError(Errc::kInvalidArgument, std::move(reason), std::move(info));
}

bool HasControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

Result<void> CheckUserId(std::string_view id) {
  if (id.empty()) return Bad("user id required");
  if (id.size() > kMaxIdBytes) return Bad("user id is too long");
  if (HasControl(id)) return Bad("user id contains control characters");
  return {};
}

std::string Pad(uint64_t n, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", width, static_cast<unsigned long long>(n));
  return buf;
}

std::optional<int64_t> AsInt(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    double d = v.get_double();
    if (d >= -9e15 && d <= 9e15 && d == static_cast<double>(static_cast<int64_t>(d))) {
      return static_cast<int64_t>(d);
    }
  }
  return std::nullopt;
}

int64_t ParseCounter(const std::optional<storage::Entry>& entry) {
  if (!entry) return 0;
  int64_t n = 0;
  const std::string& s = entry->value;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  return ec == std::errc() ? n : 0;
}

// Keys (see the header).
std::string MetaKey(const std::string& p) { return p + "m"; }
std::string GenKey(const std::string& p) { return p + "g"; }
std::string SetPrefix(const std::string& p, uint64_t gen) {
  return p + "s" + kSep + Pad(gen, 12) + kSep;
}
std::string ChunkKey(const std::string& p, uint64_t gen, int64_t chunk) {
  return SetPrefix(p, gen) + "c" + kSep + Pad(static_cast<uint64_t>(chunk), 8);
}
std::string CounterKey(const std::string& p, uint64_t gen) { return SetPrefix(p, gen) + "n"; }
std::string UserPrefix(const std::string& p, std::string_view user) {
  std::string k = p + "u";
  k.push_back(kSep);
  k.append(user).push_back(kSep);
  return k;
}
std::string EligKey(const std::string& p, std::string_view user, int index) {
  return UserPrefix(p, user) + "e" + kSep + Pad(static_cast<uint64_t>(index), 2);
}
std::string RedeemedPrefix(const std::string& p, std::string_view user) {
  return UserPrefix(p, user) + "r" + kSep;
}
std::string RedeemedSetPrefix(const std::string& p, std::string_view user, int index) {
  return RedeemedPrefix(p, user) + Pad(static_cast<uint64_t>(index), 2) + kSep;
}
std::string RedeemedKey(const std::string& p, std::string_view user, int index, uint64_t gen,
                        int64_t slot) {
  return RedeemedSetPrefix(p, user, index) + Pad(gen, 12) + kSep +
         Pad(static_cast<uint64_t>(slot), 8);
}

}  // namespace

CodeService::CodeService(storage::Store& store, const Clock& clock, auth::Stage stage,
                         CodeLimits limits)
    : store_(store), clock_(clock), stage_(stage), limits_(limits) {
  limits_.max_sets = std::clamp(limits_.max_sets, 1, 100);
}

std::string CodeService::Prefix(const Identity& who) const {
  std::string p = "gc";
  p.push_back(kSep);
  p.append(auth::StageName(stage_)).push_back(kSep);
  p.append(who.client_id).push_back(kSep);
  return p;
}

Result<void> CodeService::CheckAdmin(const Identity& who) const {
  if (who.role == Role::kBackend || who.validated_admin) return {};
  return Refused();
}

Result<CodeService::Meta> CodeService::ReadMeta(const std::string& prefix) {
  Meta meta;
  meta.sets.resize(static_cast<size_t>(limits_.max_sets));
  auto entry = store_.Get(MetaKey(prefix));
  if (!entry) return std::move(entry).error();
  if (!*entry) return meta;
  meta.version = (*entry)->version;
  boost::system::error_code ec;
  json::value v = json::parse((*entry)->value, ec);
  if (ec || !v.is_object()) return MakeError(Errc::kInternal, "stored code-set meta is corrupt");
  const int64_t now = clock_.NowMs();
  for (const auto& kv : v.get_object()) {
    int index = -1;
    std::from_chars(kv.key().data(), kv.key().data() + kv.key().size(), index);
    if (index < 0 || index >= limits_.max_sets || !kv.value().is_object()) continue;
    const json::object& o = kv.value().get_object();
    SetMeta set;
    if (auto it = o.find("name"); it != o.end() && it->value().is_string()) {
      set.name = std::string(it->value().get_string());
    }
    auto num = [&](const char* key) -> int64_t {
      auto it = o.find(key);
      if (it == o.end()) return 0;
      return AsInt(it->value()).value_or(0);
    };
    set.count = num("count");
    set.holes = num("holes");
    set.gen = static_cast<uint64_t>(num("gen"));
    set.expires_at_ms = num("exp");
    if (set.expires_at_ms != 0 && set.expires_at_ms <= now) continue;  // expired set
    meta.sets[static_cast<size_t>(index)] = std::move(set);
  }
  return meta;
}

std::string CodeService::SerializeMeta(const Meta& meta, int64_t* expires_at_ms) const {
  json::object o;
  int64_t exp = 0;
  for (size_t i = 0; i < meta.sets.size(); ++i) {
    if (!meta.sets[i]) continue;
    const SetMeta& s = *meta.sets[i];
    json::object set;
    set["name"] = s.name;
    set["count"] = s.count;
    set["holes"] = s.holes;
    set["gen"] = s.gen;
    set["exp"] = s.expires_at_ms;
    o[std::to_string(i)] = std::move(set);
    exp = std::max(exp, s.expires_at_ms);
  }
  *expires_at_ms = exp;
  return json::serialize(o);
}

Result<std::vector<std::string>> CodeService::ReadSlots(const std::string& prefix, uint64_t gen,
                                                        int64_t count) {
  std::vector<std::string> slots;
  if (count <= 0) return slots;
  slots.reserve(static_cast<size_t>(count));
  std::string chunk_prefix = SetPrefix(prefix, gen) + "c" + kSep;
  size_t chunks = static_cast<size_t>((count + kChunkSlots - 1) / kChunkSlots);
  auto entries = store_.Scan(chunk_prefix, "", chunks);
  if (!entries) return std::move(entries).error();
  for (const auto& e : *entries) {
    std::string_view text = e.entry.value;
    while (true) {
      size_t nl = text.find('\n');
      slots.emplace_back(text.substr(0, nl));
      if (nl == std::string_view::npos) break;
      text.remove_prefix(nl + 1);
    }
  }
  if (static_cast<int64_t>(slots.size()) != count) {
    return MakeError(Errc::kInternal, "stored code set is incomplete");
  }
  return slots;
}

Result<std::string> CodeService::ReadSlot(const std::string& prefix, uint64_t gen, int64_t slot) {
  auto entry = store_.Get(ChunkKey(prefix, gen, slot / kChunkSlots));
  if (!entry) return std::move(entry).error();
  if (!*entry) return std::string();
  std::string_view text = (*entry)->value;
  for (int64_t line = slot % kChunkSlots; line > 0; --line) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return std::string();
    text.remove_prefix(nl + 1);
  }
  return std::string(text.substr(0, text.find('\n')));
}

Result<std::vector<CodeSetUpload>> CodeService::ParseUpload(const json::value& body) const {
  if (!body.is_object())
    return Bad("Invalid body", "expected {\"codes\": [[...]], \"names\": [...]}");
  const json::object& o = body.get_object();
  auto codes_it = o.find("codes");
  if (codes_it == o.end() || !codes_it->value().is_array()) {
    return Bad("Invalid body", "\"codes\" must be a list of lists of codes");
  }
  const json::array& codes = codes_it->value().get_array();
  const json::array* names = nullptr;
  const json::array* indices = nullptr;
  if (auto it = o.find("names"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return Bad("Invalid body", "\"names\" must be a list");
    names = &it->value().get_array();
    if (names->size() != codes.size()) {
      return Bad("Invalid body", "\"names\" and \"codes\" differ in length");
    }
  }
  if (auto it = o.find("indices"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return Bad("Invalid body", "\"indices\" must be a list");
    indices = &it->value().get_array();
    if (indices->size() != codes.size()) {
      return Bad("Invalid body", "\"indices\" and \"codes\" differ in length");
    }
  }
  if (codes.size() > static_cast<size_t>(limits_.max_sets)) {
    return Bad("Too many code sets", "at most " + std::to_string(limits_.max_sets));
  }
  std::vector<CodeSetUpload> out;
  std::vector<bool> seen(static_cast<size_t>(limits_.max_sets), false);
  for (size_t i = 0; i < codes.size(); ++i) {
    CodeSetUpload up;
    if (indices) {
      auto index = AsInt((*indices)[i]);
      if (!index || *index < 0 || *index >= limits_.max_sets) {
        return Bad("Value out of bounds",
                   "indices must be 0.." + std::to_string(limits_.max_sets - 1));
      }
      up.index = static_cast<int>(*index);
    } else {
      up.index = static_cast<int>(i);
    }
    if (seen[static_cast<size_t>(up.index)]) {
      return Bad("Invalid body", "index " + std::to_string(up.index) + " appears twice");
    }
    seen[static_cast<size_t>(up.index)] = true;
    if (names) {
      const json::value& n = (*names)[i];
      if (!n.is_string()) return Bad("Invalid body", "each name must be a string");
      up.name = std::string(n.get_string());
      if (up.name.size() > limits_.max_name_bytes) {
        return Bad("name too long", "limit " + std::to_string(limits_.max_name_bytes) + " bytes");
      }
      if (HasControl(up.name)) return Bad("name contains control characters");
    }
    if (!codes[i].is_array()) return Bad("Invalid body", "each code set must be a list");
    const json::array& list = codes[i].get_array();
    if (list.size() > limits_.max_codes_per_set) {
      return Bad("Too many codes",
                 "a set holds at most " + std::to_string(limits_.max_codes_per_set) + " codes");
    }
    up.codes.reserve(list.size());
    for (const auto& c : list) {
      if (!c.is_string()) return Bad("Invalid body", "each code must be a string");
      std::string_view code = c.get_string();
      if (code.empty() || code.size() > limits_.max_code_bytes || HasControl(code)) {
        return Bad("Invalid code", "codes are 1.." + std::to_string(limits_.max_code_bytes) +
                                       " bytes without control characters");
      }
      up.codes.emplace_back(code);
    }
    out.push_back(std::move(up));
  }
  return out;
}

Result<MarkRequest> CodeService::ParseMark(const json::value& body) const {
  if (!body.is_object()) return Bad("Invalid body");
  const json::object& o = body.get_object();
  auto prizes = o.find("prizes");
  auto prize_limits = o.find("prize_limits");
  if (prizes == o.end() || !prizes->value().is_array() || prize_limits == o.end() ||
      !prize_limits->value().is_array()) {
    return Bad("Invalid body", "\"prizes\" and \"prize_limits\" must be lists");
  }
  const json::array& p = prizes->value().get_array();
  const json::array& l = prize_limits->value().get_array();
  if (p.size() != l.size()) {
    return Bad("Invalid body", "\"prizes\" and \"prize_limits\" differ in length");
  }
  if (p.size() > static_cast<size_t>(limits_.max_sets)) return Bad("Too many ids specified");
  MarkRequest mark;
  for (size_t i = 0; i < p.size(); ++i) {
    auto prize = AsInt(p[i]);
    auto limit = AsInt(l[i]);
    if (!prize || *prize < 0 || *prize >= limits_.max_sets) {
      return Bad("Value out of bounds", "prizes are 0.." + std::to_string(limits_.max_sets - 1));
    }
    if (!limit || *limit < 0 || *limit > limits_.max_prize_limit) {
      return Bad("Value out of bounds",
                 "prize_limits are 0.." + std::to_string(limits_.max_prize_limit));
    }
    mark.prizes.push_back(static_cast<int>(*prize));
    mark.prize_limits.push_back(*limit);
  }
  return mark;
}

Result<void> CodeService::Put(const Identity& who, const std::vector<CodeSetUpload>& sets) {
  if (auto ok = CheckAdmin(who); !ok) return ok;
  for (const auto& up : sets) {
    if (up.index < 0 || up.index >= limits_.max_sets) return Bad("Value out of bounds");
  }
  if (sets.empty()) return {};
  const std::string prefix = Prefix(who);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto meta = ReadMeta(prefix);
    if (!meta) return std::move(meta).error();
    const int64_t now = clock_.NowMs();
    Meta next = *meta;
    storage::WriteBatch batch;
    for (const auto& up : sets) {
      auto& slot = next.sets[static_cast<size_t>(up.index)];
      std::vector<std::string> slots;
      int64_t old_count = 0;
      const bool existed = slot.has_value();
      std::unordered_set<std::string_view> have;
      if (existed) {
        // Append to a live set: skip codes it has, start after slots claimed past its end.
        auto existing = ReadSlots(prefix, slot->gen, slot->count);
        if (!existing) return std::move(existing).error();
        slots = std::move(*existing);
        old_count = slot->count;
      } else {
        auto gen = store_.Apply(storage::WriteBatch().Add(GenKey(prefix), 1));
        if (!gen) return std::move(gen).error();
        slot = SetMeta{};
        slot->gen = static_cast<uint64_t>(gen->counters.front());
        slot->expires_at_ms = now + limits_.set_ttl_ms;
      }
      slot->name = up.name;
      for (const auto& s : slots) {
        if (!s.empty()) have.insert(s);
      }
      std::vector<std::string_view> added;
      for (const auto& code : up.codes) {
        if (have.insert(code).second) added.push_back(code);
      }
      if (added.empty()) continue;  // a rename
      int64_t base = old_count;
      if (existed) {
        auto counter = store_.Get(CounterKey(prefix, slot->gen));
        if (!counter) return std::move(counter).error();
        base = std::max(old_count, ParseCounter(*counter));
        // The counter must not move between this read and the write (redeems that claimed
        // past the end make holes, and the appended codes start after them).
        batch.ExpectVersion(CounterKey(prefix, slot->gen), *counter ? (*counter)->version : 0);
      }
      const int64_t new_count = base + static_cast<int64_t>(added.size());
      if (new_count > static_cast<int64_t>(limits_.max_codes_per_set)) {
        return Bad("Too many codes",
                   "a set holds at most " + std::to_string(limits_.max_codes_per_set) + " codes");
      }
      slots.resize(static_cast<size_t>(base));
      for (auto code : added) slots.emplace_back(code);
      for (int64_t chunk = old_count / kChunkSlots; chunk * kChunkSlots < new_count; ++chunk) {
        std::string text;
        const int64_t end = std::min(new_count, (chunk + 1) * kChunkSlots);
        for (int64_t i = chunk * kChunkSlots; i < end; ++i) {
          if (i > chunk * kChunkSlots) text.push_back('\n');
          text.append(slots[static_cast<size_t>(i)]);
        }
        batch.Put(ChunkKey(prefix, slot->gen, chunk), std::move(text), slot->expires_at_ms);
      }
      slot->holes += base - old_count;
      slot->count = new_count;
    }
    int64_t meta_exp = 0;
    std::string text = SerializeMeta(next, &meta_exp);
    batch.ExpectVersion(MetaKey(prefix), meta->version);
    batch.Put(MetaKey(prefix), std::move(text), meta_exp);
    auto applied = store_.Apply(batch);
    if (applied) return {};
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
    std::this_thread::yield();
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<std::vector<std::string>> CodeService::Names(const Identity& who) {
  if (auto ok = CheckAdmin(who); !ok) return std::move(ok).error();
  auto meta = ReadMeta(Prefix(who));
  if (!meta) return std::move(meta).error();
  std::vector<std::string> names;
  for (size_t i = 0; i < meta->sets.size(); ++i) {
    if (!meta->sets[i]) continue;
    names.resize(i + 1);
    names[i] = meta->sets[i]->name;
  }
  return names;
}

Result<std::vector<int64_t>> CodeService::DeleteAll(const Identity& who) {
  if (auto ok = CheckAdmin(who); !ok) return std::move(ok).error();
  const std::string prefix = Prefix(who);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto meta = ReadMeta(prefix);
    if (!meta) return std::move(meta).error();
    if (meta->version == 0) return std::vector<int64_t>{};
    storage::WriteBatch batch;
    batch.ExpectVersion(MetaKey(prefix), meta->version);
    batch.Delete(MetaKey(prefix));
    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code != Errc::kConflict) return std::move(applied).error();
      std::this_thread::yield();
      continue;
    }
    // The meta is gone, so no redeem can claim a slot any more (each claim expects the meta's
    // version): the counters are final.
    std::vector<int64_t> distributed;
    for (size_t i = 0; i < meta->sets.size(); ++i) {
      if (!meta->sets[i]) continue;
      const SetMeta& set = *meta->sets[i];
      auto counter = store_.Get(CounterKey(prefix, set.gen));
      if (!counter) return std::move(counter).error();
      distributed.resize(i + 1, 0);
      distributed[i] =
          std::max<int64_t>(0, std::min(ParseCounter(*counter), set.count) - set.holes);
      // Drop the set's chunks and counter, a page at a time.
      const std::string set_prefix = SetPrefix(prefix, set.gen);
      while (true) {
        auto page = store_.Scan(set_prefix, "", 256);
        if (!page) return std::move(page).error();
        if (page->empty()) break;
        storage::WriteBatch drop;
        for (const auto& e : *page) drop.Delete(e.key);
        if (auto done = store_.Apply(drop); !done) return std::move(done).error();
      }
    }
    return distributed;
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<void> CodeService::MarkFromList(const Identity& who, const MarkRequest& mark,
                                       const std::vector<std::string>& users) {
  if (auto ok = CheckAdmin(who); !ok) return ok;
  if (users.size() > limits_.max_users_per_mark) return Bad("Too many ids specified");
  for (int prize : mark.prizes) {
    if (prize < 0 || prize >= limits_.max_sets) return Bad("Value out of bounds");
  }
  for (const auto& user : users) {
    if (auto ok = CheckUserId(user); !ok) return ok;
  }
  const std::string prefix = Prefix(who);
  const int64_t expires_at_ms = clock_.NowMs() + limits_.set_ttl_ms;
  std::unordered_set<std::string_view> seen;
  storage::WriteBatch batch;
  for (const auto& user : users) {
    if (!seen.insert(user).second) continue;  // a user listed twice is marked once
    for (size_t i = 0; i < mark.prizes.size(); ++i) {
      if (mark.prize_limits[i] <= 0) continue;
      batch.Add(EligKey(prefix, user, mark.prizes[i]), mark.prize_limits[i], expires_at_ms);
    }
  }
  if (batch.empty()) return {};
  auto applied = store_.Apply(batch);
  if (!applied) return std::move(applied).error();
  return {};
}

Result<void> CodeService::MarkFromPoll(const Identity& who, const PollMarkRequest& request) {
  if (auto ok = CheckAdmin(who); !ok) return ok;
  if (!poll_winners_) return Bad("mark_from_poll is not supported yet");
  if (request.poll_id.empty()) return Bad("poll id required");
  auto winners = poll_winners_(who, request.poll_id, request.correct, request.cutoff_timestamp_s);
  if (!winners) return std::move(winners).error();
  // A poll can have more voters than one mark_from_list call may name: mark in batches.
  for (size_t at = 0; at < winners->size(); at += limits_.max_users_per_mark) {
    size_t end = std::min(winners->size(), at + limits_.max_users_per_mark);
    std::vector<std::string> part(winners->begin() + static_cast<ptrdiff_t>(at),
                                  winners->begin() + static_cast<ptrdiff_t>(end));
    if (auto ok = MarkFromList(who, request.mark, part); !ok) return ok;
  }
  return {};
}

Result<std::vector<int64_t>> CodeService::Eligible(const Identity& who) {
  std::vector<int64_t> out(static_cast<size_t>(limits_.max_sets), 0);
  if (who.user_id.empty()) return out;
  if (auto ok = CheckUserId(who.user_id); !ok) return std::move(ok).error();
  const std::string prefix = Prefix(who);
  std::vector<std::string> keys;
  for (int i = 0; i < limits_.max_sets; ++i) keys.push_back(EligKey(prefix, who.user_id, i));
  auto entries = store_.MultiGet(keys);
  if (!entries) return std::move(entries).error();
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = std::max<int64_t>(0, ParseCounter((*entries)[i]));
  return out;
}

Result<std::vector<std::vector<std::string>>> CodeService::Redeemed(const Identity& who) {
  std::vector<std::vector<std::string>> out(static_cast<size_t>(limits_.max_sets));
  if (who.user_id.empty()) return out;
  if (auto ok = CheckUserId(who.user_id); !ok) return std::move(ok).error();
  const std::string prefix = RedeemedPrefix(Prefix(who), who.user_id);
  auto entries = store_.Scan(prefix, "", kMaxRedeemedScan);
  if (!entries) return std::move(entries).error();
  for (const auto& e : *entries) {
    int index = -1;
    std::string_view rest = std::string_view(e.key).substr(prefix.size());
    std::from_chars(rest.data(), rest.data() + std::min<size_t>(rest.size(), 2), index);
    if (index < 0 || index >= limits_.max_sets) continue;
    out[static_cast<size_t>(index)].push_back(e.entry.value);
  }
  return out;
}

Result<RedeemResult> CodeService::Redeem(const Identity& who, int64_t prize) {
  if (auto ok = CheckUserId(who.user_id); !ok) return std::move(ok).error();
  if (prize < 0 || prize >= limits_.max_sets) {
    return Bad("Value out of bounds", "prize index is 0.." + std::to_string(limits_.max_sets - 1));
  }
  const int index = static_cast<int>(prize);
  const std::string prefix = Prefix(who);
  const std::string elig_key = EligKey(prefix, who.user_id, index);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto meta = ReadMeta(prefix);
    if (!meta) return std::move(meta).error();
    const auto& set = meta->sets[static_cast<size_t>(index)];
    auto elig = store_.Get(elig_key);
    if (!elig) return std::move(elig).error();
    if (ParseCounter(*elig) <= 0) return Bad("not eligible");
    if (!set) return Bad("no codes left");
    const std::string counter_key = CounterKey(prefix, set->gen);
    // Cheap pre-check, so an exhausted set does not take (and give back) eligibility.
    auto counter = store_.Get(counter_key);
    if (!counter) return std::move(counter).error();
    if (ParseCounter(*counter) >= set->count) return Bad("no codes left");

    const int64_t now = clock_.NowMs();
    storage::WriteBatch batch;
    batch.ExpectVersion(MetaKey(prefix), meta->version);
    batch.ExpectVersion(elig_key, (*elig)->version);
    batch.Add(elig_key, -1, now + limits_.set_ttl_ms);
    batch.Add(counter_key, 1, set->expires_at_ms);
    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code != Errc::kConflict) return std::move(applied).error();
      std::this_thread::yield();
      continue;
    }
    const int64_t slot = applied->counters[1] - 1;  // this redeem's slot, unique
    std::string code;
    if (slot < set->count) {
      auto read = ReadSlot(prefix, set->gen, slot);
      if (!read) return std::move(read).error();
      code = std::move(*read);
    }
    if (code.empty()) {
      // Exhausted by concurrent redeems (or the sets were deleted meanwhile): give the
      // eligibility back.
      auto back = store_.Apply(storage::WriteBatch().Add(elig_key, 1, now + limits_.set_ttl_ms));
      if (!back) return std::move(back).error();
      return Bad("no codes left");
    }
    if (auto put = store_.Apply(
            storage::WriteBatch().Put(RedeemedKey(prefix, who.user_id, index, set->gen, slot), code,
                                      now + limits_.set_ttl_ms));
        !put) {
      return std::move(put).error();
    }
    RedeemResult result;
    result.code = code;
    auto all = store_.Scan(RedeemedSetPrefix(prefix, who.user_id, index), "", kMaxRedeemedScan);
    if (!all) return std::move(all).error();
    for (auto& e : *all) result.all_prizes.push_back(std::move(e.entry.value));
    return result;
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

}  // namespace medkit::core::gamecode
