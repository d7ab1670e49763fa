#include "core/rank/rank_service.h"

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <charconv>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace medkit::core::rank {
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr int kMaxWriteAttempts = 32;
constexpr size_t kScanPage = 1024;

Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
}

// A generation id: the start time and 64 random bits, in hex (never contains kSep).
std::string NewGeneration(int64_t now_ms) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[48];
  auto* end = std::to_chars(buf, buf + 20, static_cast<uint64_t>(now_ms), 16).ptr;
  *end++ = '.';
  end = std::to_chars(end, buf + sizeof(buf), rng(), 16).ptr;
  return std::string(buf, end);
}

std::string DataPrefix(const std::string& prefix, std::string_view generation) {
  std::string out = prefix;
  out.append("d").push_back(kSep);
  out.append(generation).push_back(kSep);
  return out;
}

std::string ViewerKey(const std::string& prefix, std::string_view generation,
                      std::string_view viewer) {
  std::string out = DataPrefix(prefix, generation);
  out.append("v").push_back(kSep);
  out.append(viewer);
  return out;
}

std::string CounterPrefix(const std::string& prefix, std::string_view generation) {
  std::string out = DataPrefix(prefix, generation);
  out.append("k").push_back(kSep);
  return out;
}

bool IsLive(const std::optional<storage::Entry>& gen, const std::optional<storage::Entry>& last) {
  return gen && last && gen->value == last->value;
}

}  // namespace

RankService::RankService(storage::Store& store, const Clock& clock, auth::Stage stage,
                         RankLimits limits)
    : store_(store), clock_(clock), stage_(stage), limits_(limits) {
  limits_.data_ttl_ms = std::max(limits_.data_ttl_ms, limits_.ttl_ms);
}

Result<std::string> RankService::Prefix(const Identity& who, std::string_view id) const {
  if (id.empty()) id = "default";
  if (id.size() > limits_.max_id_bytes) {
    return MakeError(Errc::kInvalidArgument, "rank id too long",
                     "limit " + std::to_string(limits_.max_id_bytes) + " bytes");
  }
  if (HasControl(id))
    return MakeError(Errc::kInvalidArgument, "rank id contains control characters");
  const bool global = id.starts_with("global");
  if (!global) {
    if (who.channel_id.empty()) return MakeError(Errc::kInvalidArgument, "channel id required");
    if (HasControl(who.channel_id)) {
      return MakeError(Errc::kInvalidArgument, "channel id contains control characters");
    }
  }
  std::string key;
  key.reserve(48 + id.size());
  key.append("r").push_back(kSep);
  key.append(auth::StageName(stage_)).push_back(kSep);
  key.append(who.client_id).push_back(kSep);
  if (!global) key.append(who.channel_id);
  key.push_back(kSep);
  key.append(id).push_back(kSep);
  return key;
}

Result<RankAnswer> RankService::Answer(const Identity& who, std::string_view id,
                                       std::string_view answer) {
  if (answer.size() > limits_.max_answer_bytes) {
    return MakeError(Errc::kInvalidArgument, "rank key too long",
                     "limit " + std::to_string(limits_.max_answer_bytes) + " bytes");
  }
  const std::string& viewer = who.ViewerKey();
  if (viewer.empty()) return MakeError(Errc::kInvalidArgument, "user id required");
  if (HasControl(viewer))
    return MakeError(Errc::kInvalidArgument, "user id contains control characters");
  auto prefix = Prefix(who, id);
  if (!prefix) return std::move(prefix).error();
  const std::string gen_key = *prefix + "g";
  const std::string last_key = *prefix + "l";
  const std::vector<std::string> meta_keys = {gen_key, last_key};

  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    auto meta = store_.MultiGet(meta_keys);
    if (!meta) return std::move(meta).error();
    const auto& gen = (*meta)[0];
    const auto& last = (*meta)[1];
    const int64_t now_ms = clock_.NowMs();
    const int64_t data_expiry = now_ms + limits_.data_ttl_ms;
    const int64_t last_expiry = now_ms + limits_.ttl_ms;

    storage::WriteBatch batch;
    RankAnswer result;
    if (IsLive(gen, last)) {
      const std::string& generation = gen->value;
      const std::string record_key = ViewerKey(*prefix, generation, viewer);
      auto record = store_.Get(record_key);
      if (!record) return std::move(record).error();
      const std::string counters = CounterPrefix(*prefix, generation);
      batch.ExpectVersion(gen_key, gen->version);
      batch.ExpectVersion(record_key, *record ? (*record)->version : 0);
      if (*record) {
        result.replaced = true;
        result.original = (*record)->value;
      }
      if (!result.replaced || result.original != answer) {
        if (result.replaced) batch.Add(counters + result.original, -1, data_expiry);
        batch.Add(counters + std::string(answer), 1, data_expiry);
      }
      batch.Put(record_key, std::string(answer), data_expiry);
      batch.Put(last_key, generation, last_expiry);
      // Keep the generation key alive as long as the rank is in use (a rare write: answers
      // racing with it retry once).
      if (gen->expires_at_ms != 0 && gen->expires_at_ms - now_ms < limits_.data_ttl_ms / 2) {
        batch.Put(gen_key, generation, data_expiry);
      }
    } else {
      // Not live (new, expired or deleted): start a new generation. Both expectations make
      // sure no other answer started or refreshed one since the read.
      const std::string generation = NewGeneration(now_ms);
      batch.ExpectVersion(gen_key, gen ? gen->version : 0);
      batch.ExpectVersion(last_key, last ? last->version : 0);
      batch.Put(gen_key, generation, data_expiry);
      batch.Put(last_key, generation, last_expiry);
      batch.Put(ViewerKey(*prefix, generation, viewer), std::string(answer), data_expiry);
      batch.Add(CounterPrefix(*prefix, generation) + std::string(answer), 1, data_expiry);
    }
    auto applied = store_.Apply(batch);
    if (applied) return result;
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<std::string> RankService::Read(const Identity& who, std::string_view id) {
  const bool may_read = who.role != Role::kViewer || stage_ == auth::Stage::kSandbox;
  if (!may_read) return Refused();
  auto prefix = Prefix(who, id);
  if (!prefix) return std::move(prefix).error();
  const std::vector<std::string> meta_keys = {*prefix + "g", *prefix + "l"};
  auto meta = store_.MultiGet(meta_keys);
  if (!meta) return std::move(meta).error();
  if (!IsLive((*meta)[0], (*meta)[1])) return std::string(R"({"data":[]})");

  // Bounded heap of the best `top` (score desc, key asc); its front is the worst kept entry.
  using Scored = std::pair<int64_t, std::string>;
  auto better = [](const Scored& a, const Scored& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::vector<Scored> heap;
  const std::string counters = CounterPrefix(*prefix, (*meta)[0]->value);
  std::string after;
  for (;;) {
    auto page = store_.Scan(counters, after, kScanPage);
    if (!page) return std::move(page).error();
    for (auto& kv : *page) {
      int64_t score = 0;
      const std::string& text = kv.entry.value;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), score);
      if (ec != std::errc() || score <= 0) continue;
      Scored item{score, kv.key.substr(counters.size())};
      if (heap.size() < limits_.top) {
        heap.push_back(std::move(item));
        std::push_heap(heap.begin(), heap.end(), better);
      } else if (limits_.top > 0 && better(item, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = std::move(item);
        std::push_heap(heap.begin(), heap.end(), better);
      }
    }
    if (page->size() < kScanPage) break;
    after = page->back().key;
  }
  std::sort(heap.begin(), heap.end(), better);
  std::string out = R"({"data":[)";
  for (size_t i = 0; i < heap.size(); ++i) {
    if (i) out.push_back(',');
    out.append(R"({"key":)").append(boost::json::serialize(boost::json::string(heap[i].second)));
    out.append(R"(,"score":)").append(std::to_string(heap[i].first)).push_back('}');
  }
  out.append("]}");
  return out;
}

Result<void> RankService::Clear(const Identity& who, std::string_view id) {
  if (who.role == Role::kViewer) return Refused();
  auto prefix = Prefix(who, id);
  if (!prefix) return std::move(prefix).error();
  storage::WriteBatch batch;
  batch.Delete(*prefix + "g");
  batch.Delete(*prefix + "l");
  auto applied = store_.Apply(batch);
  if (!applied) return std::move(applied).error();
  return {};
}

}  // namespace medkit::core::rank
