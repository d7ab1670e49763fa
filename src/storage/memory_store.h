// MemoryStore: the in-process Store used by unit tests and by `--store=memory` development runs.
// Nothing is persisted; Sync() is a no-op and versions restart at 1 with every instance.
//
// Threading: all methods are thread-safe. Reads take a shared lock, Apply() takes the exclusive
// lock for the whole batch, so expectation checks and writes are one atomic step and readers
// never observe a partial batch.
//
// Expiry: entries whose expires_at_ms <= clock.NowMs() are invisible. They are removed
// physically when a later Apply() touches their key, and by a sweep of the whole map that runs
// every kSweepInterval applies (amortised O(1) per write).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "storage/store.h"

namespace medkit::storage {

class MemoryStore final : public Store {
 public:
  // clock must outlive the store.
  explicit MemoryStore(const core::Clock& clock);

  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  Result<std::optional<Entry>> Get(std::string_view key) override;
  Result<std::vector<std::optional<Entry>>> MultiGet(std::span<const std::string> keys) override;
  Result<ApplyResult> Apply(const WriteBatch& batch) override;
  Result<std::vector<KeyEntry>> Scan(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override;
  Result<void> Sync() override { return {}; }
  std::string_view Name() const override { return "memory"; }

  // Number of physically stored entries, expired ones included (tests only).
  size_t RawSizeForTest() const;

 private:
  static constexpr uint64_t kSweepInterval = 1024;

  using Map = std::map<std::string, Entry, std::less<>>;

  // The live entry at key at time now_ms, or nullptr. Caller holds mu_ (shared or exclusive).
  const Entry* FindLive(std::string_view key, int64_t now_ms) const;
  // Drops every expired entry. Caller holds mu_ exclusively.
  void SweepExpired(int64_t now_ms);

  const core::Clock& clock_;
  mutable std::shared_mutex mu_;
  Map entries_;                // guarded by mu_
  uint64_t last_version_ = 0;  // guarded by mu_
  uint64_t apply_count_ = 0;   // guarded by mu_
};

}  // namespace medkit::storage
