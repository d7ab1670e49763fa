#include "core/accumulate/accumulate_service.h"

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <random>
#include <utility>
#include <vector>

namespace medkit::core::accumulate {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr int kMaxWriteAttempts = 8;
constexpr size_t kTimeDigits = 16;
constexpr int64_t kMaxTime = 9'999'999'999'999'999;  // 16 digits
// A page is extended past max_read_entries only to finish one millisecond; this bounds it.
constexpr size_t kMaxGroupFactor = 16;

Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
}

void AppendPadded(std::string& out, uint64_t value, int base, size_t width) {
  char buf[24];
  auto* end = std::to_chars(buf, buf + sizeof(buf), value, base).ptr;
  size_t len = static_cast<size_t>(end - buf);
  if (len < width) out.append(width - len, '0');
  out.append(buf, len);
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

AccumulateService::AccumulateService(storage::Store& store, const Clock& clock, auth::Stage stage,
                                     AccumulateLimits limits)
    // The top bit is left clear so the counter does not wrap within a process's lifetime.
    : store_(store), clock_(clock), stage_(stage), limits_(limits), seq_(RandomSeed() >> 1) {}

Result<int64_t> AccumulateService::ParseStart(std::optional<std::string_view> text) {
  if (!text) return int64_t{0};
  std::string_view s = *text;
  bool negative = !s.empty() && s.front() == '-';
  if (negative) s.remove_prefix(1);
  if (s.empty() || s.size() > 18 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return MakeError(Errc::kInvalidArgument, "Malformed start parameter");
  }
  int64_t value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value);
  return negative ? int64_t{0} : value;
}

Result<std::string> AccumulateService::Prefix(const Identity& who, std::string_view id) const {
  if (id.empty()) id = "default";
  if (id.size() > limits_.max_id_bytes) {
    return MakeError(Errc::kInvalidArgument, "accumulate id too long",
                     "limit " + std::to_string(limits_.max_id_bytes) + " bytes");
  }
  if (HasControl(id)) {
    return MakeError(Errc::kInvalidArgument, "accumulate id contains control characters");
  }
  if (HasControl(who.channel_id)) {
    return MakeError(Errc::kInvalidArgument, "channel id contains control characters");
  }
  std::string key;
  key.reserve(40 + id.size());
  key.append("a").push_back(kSep);
  key.append(auth::StageName(stage_)).push_back(kSep);
  key.append(who.client_id).push_back(kSep);
  key.append(id).push_back(kSep);
  return key;
}

Result<void> AccumulateService::Append(const Identity& who, std::string_view id,
                                       const json::value& data) {
  if (!data.is_object()) {
    return MakeError(Errc::kInvalidArgument, "Malformed json body",
                     "the body must be a JSON object");
  }
  auto prefix = Prefix(who, id);
  if (!prefix) return std::move(prefix).error();
  std::string data_text = json::serialize(data);
  if (data_text.size() >= limits_.data_size_limit) {
    return MakeError(Errc::kInvalidArgument, "accumulate payload too large",
                     "the serialized object must be under " +
                         std::to_string(limits_.data_size_limit) + " bytes, got " +
                         std::to_string(data_text.size()));
  }
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    const int64_t now_ms = clock_.NowMs();
    const uint64_t seq = seq_.fetch_add(1, std::memory_order_relaxed);
    std::string stamp;
    AppendPadded(stamp, static_cast<uint64_t>(std::clamp<int64_t>(now_ms, 0, kMaxTime)), 10,
                 kTimeDigits);
    stamp.push_back(kSep);
    AppendPadded(stamp, seq, 16, 16);

    std::string entry = "{\"observed\":" + std::to_string(now_ms);
    entry.append(",\"channel_id\":").append(json::serialize(json::string(who.channel_id)));
    entry.append(",\"opaque_user_id\":").append(json::serialize(json::string(who.opaque_user_id)));
    entry.append(",\"user_id\":").append(json::serialize(json::string(who.user_id)));
    entry.append(",\"data\":").append(data_text).push_back('}');

    std::string all_key = *prefix;
    all_key.append("a").push_back(kSep);
    all_key.append(stamp);
    std::string channel_key = *prefix;
    channel_key.append("c").push_back(kSep);
    channel_key.append(who.channel_id).push_back(kSep);
    channel_key.append(stamp);

    const int64_t expires_at_ms = now_ms + limits_.entry_ttl_ms;
    storage::WriteBatch batch;
    batch.ExpectVersion(all_key, 0);
    batch.ExpectVersion(channel_key, 0);
    batch.Put(all_key, entry, expires_at_ms);
    batch.Put(std::move(channel_key), std::move(entry), expires_at_ms);
    auto applied = store_.Apply(batch);
    if (applied) return {};
    // A key taken already (another process's sequence in the same millisecond): new seq.
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<std::string> AccumulateService::Read(const Identity& who, std::string_view id,
                                            int64_t start_ms) {
  if (who.role == Role::kViewer) return Refused();
  auto prefix = Prefix(who, id);
  if (!prefix) return std::move(prefix).error();
  std::string scan_prefix = *prefix;
  if (who.role == Role::kBroadcaster) {
    scan_prefix.append("c").push_back(kSep);
    scan_prefix.append(who.channel_id).push_back(kSep);
  } else {
    scan_prefix.append("a").push_back(kSep);
  }
  // Exclusive lower bound: every key of a later millisecond sorts after "<start>\x20", every key
  // of millisecond <start> ("<start>\x1f<seq>") before it.
  std::string after = scan_prefix;
  AppendPadded(after, static_cast<uint64_t>(std::clamp<int64_t>(start_ms, 0, kMaxTime)), 10,
               kTimeDigits);
  after.push_back('\x20');

  const size_t page = std::max<size_t>(limits_.max_read_entries, 1);
  auto observed_of = [&](const storage::KeyEntry& e) {
    return std::string_view(e.key).substr(scan_prefix.size(), kTimeDigits);
  };
  auto scanned = store_.Scan(scan_prefix, after, page + 1);
  if (!scanned) return std::move(scanned).error();
  std::vector<storage::KeyEntry> entries = std::move(*scanned);
  if (entries.size() > page) {
    // Never end a page in the middle of a millisecond: start = latest is exclusive.
    const std::string boundary(observed_of(entries[page]));
    entries.pop_back();
    size_t keep = entries.size();
    while (keep > 0 && observed_of(entries[keep - 1]) == boundary) --keep;
    if (keep > 0) {
      entries.resize(keep);
    } else {
      // The whole page is one millisecond: return that millisecond whole (bounded).
      const size_t cap = page * kMaxGroupFactor;
      while (entries.size() < cap) {
        auto more =
            store_.Scan(scan_prefix, entries.back().key, std::min(page, cap - entries.size()));
        if (!more) return std::move(more).error();
        bool done = more->size() < std::min(page, cap - entries.size());
        for (auto& e : *more) {
          if (observed_of(e) != boundary) {
            done = true;
            break;
          }
          entries.push_back(std::move(e));
        }
        if (done) break;
      }
    }
  }
  std::string out = R"({"data":[)";
  int64_t latest = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out.push_back(',');
    out.append(entries[i].entry.value);
  }
  if (!entries.empty()) {
    std::string_view digits = observed_of(entries.back());
    std::from_chars(digits.data(), digits.data() + digits.size(), latest);
  }
  out.append(R"(],"latest":)").append(std::to_string(latest)).push_back('}');
  return out;
}

}  // namespace medkit::core::accumulate
