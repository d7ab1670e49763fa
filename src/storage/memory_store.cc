#include "storage/memory_store.h"

#include <algorithm>
#include <charconv>
#include <mutex>
#include <system_error>
#include <utility>

namespace medkit::storage {

namespace {

using core::Errc;
using core::MakeError;

bool IsLive(const Entry& entry, int64_t now_ms) {
  return entry.expires_at_ms == 0 || entry.expires_at_ms > now_ms;
}

// Parses the decimal text of a counter; the whole value must be an int64.
}  // namespace

MemoryStore::MemoryStore(const core::Clock& clock) : clock_(clock) {}

const Entry* MemoryStore::FindLive(std::string_view key, int64_t now_ms) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || !IsLive(it->second, now_ms)) return nullptr;
  return &it->second;
}

void MemoryStore::SweepExpired(int64_t now_ms) {
  std::erase_if(entries_, [now_ms](const auto& item) { return !IsLive(item.second, now_ms); });
}

Result<std::optional<Entry>> MemoryStore::Get(std::string_view key) {
  std::shared_lock lock(mu_);
  const Entry* live = FindLive(key, clock_.NowMs());
  if (live == nullptr) return std::optional<Entry>();
  return std::optional<Entry>(*live);
}

Result<std::vector<std::optional<Entry>>> MemoryStore::MultiGet(std::span<const std::string> keys) {
  std::vector<std::optional<Entry>> out;
  out.reserve(keys.size());
  std::shared_lock lock(mu_);
  const int64_t now_ms = clock_.NowMs();
  for (const std::string& key : keys) {
    const Entry* live = FindLive(key, now_ms);
    out.push_back(live == nullptr ? std::nullopt : std::optional<Entry>(*live));
  }
  return out;
}

Result<ApplyResult> MemoryStore::Apply(const WriteBatch& batch) {
  std::unique_lock lock(mu_);
  const int64_t now_ms = clock_.NowMs();

  for (const WriteBatch::Expectation& expectation : batch.expectations()) {
    const Entry* live = FindLive(expectation.key, now_ms);
    const uint64_t actual = live == nullptr ? 0 : live->version;
    if (actual != expectation.version) return MakeError(Errc::kConflict, "version conflict");
  }

  // Stage the new state of every touched key (nullopt = deleted); later ops of the batch see
  // the effect of earlier ones. Nothing is committed until every op has succeeded.
  std::map<std::string_view, std::optional<Entry>> staged;
  ApplyResult result;
  const uint64_t version = last_version_ + 1;
  for (const WriteBatch::Op& op : batch.ops()) {
    auto it = staged.find(op.key);
    if (it == staged.end()) {
      const Entry* live = FindLive(op.key, now_ms);
      it = staged.emplace(op.key, live == nullptr ? std::nullopt : std::optional<Entry>(*live))
               .first;
    }
    std::optional<Entry>& slot = it->second;
    if (auto applied = ApplyOpToSlot(op, version, slot, result); !applied) {
      return std::move(applied).error();
    }
  }
  if (staged.empty()) return result;

  last_version_ = version;
  result.version = version;
  for (auto& [key, slot] : staged) {
    if (slot.has_value()) {
      entries_.insert_or_assign(std::string(key), std::move(*slot));
    } else if (auto it = entries_.find(key); it != entries_.end()) {
      entries_.erase(it);
    }
  }
  if (++apply_count_ % kSweepInterval == 0) SweepExpired(now_ms);
  return result;
}

Result<std::vector<KeyEntry>> MemoryStore::Scan(std::string_view prefix,
                                                std::string_view start_after, size_t limit) {
  std::vector<KeyEntry> out;
  if (limit == 0) return out;
  std::shared_lock lock(mu_);
  const int64_t now_ms = clock_.NowMs();
  for (auto it = entries_.lower_bound(std::max(prefix, start_after));
       it != entries_.end() && out.size() < limit; ++it) {
    const std::string& key = it->first;
    if (!key.starts_with(prefix)) break;
    if (key == start_after || !IsLive(it->second, now_ms)) continue;
    out.push_back(KeyEntry{key, it->second});
  }
  return out;
}

size_t MemoryStore::RawSizeForTest() const {
  std::shared_lock lock(mu_);
  return entries_.size();
}

}  // namespace medkit::storage
