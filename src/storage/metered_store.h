// A Store that counts the operations it forwards, for /metrics. Counters are relaxed atomics.
#pragma once

#include <atomic>
#include <cstdint>

#include "storage/store.h"

namespace medkit::storage {

class MeteredStore final : public Store {
 public:
  explicit MeteredStore(Store& target) : target_(target) {}

  struct Counts {
    uint64_t gets, multi_gets, multi_get_keys, applies, apply_ops, conflicts, scans, errors;
  };

  Result<std::optional<Entry>> Get(std::string_view key) override {
    gets_.fetch_add(1, std::memory_order_relaxed);
    return Count(target_.Get(key));
  }
  Result<std::vector<std::optional<Entry>>> MultiGet(std::span<const std::string> keys) override {
    multi_gets_.fetch_add(1, std::memory_order_relaxed);
    multi_get_keys_.fetch_add(keys.size(), std::memory_order_relaxed);
    return Count(target_.MultiGet(keys));
  }
  Result<ApplyResult> Apply(const WriteBatch& batch) override {
    applies_.fetch_add(1, std::memory_order_relaxed);
    apply_ops_.fetch_add(batch.ops().size(), std::memory_order_relaxed);
    auto r = target_.Apply(batch);
    if (!r && r.error().code == core::Errc::kConflict) {
      conflicts_.fetch_add(1, std::memory_order_relaxed);
      return r;
    }
    return Count(std::move(r));
  }
  Result<std::vector<KeyEntry>> Scan(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override {
    scans_.fetch_add(1, std::memory_order_relaxed);
    return Count(target_.Scan(prefix, start_after, limit));
  }
  Result<void> FlushWrites() override { return Count(target_.FlushWrites()); }
  Result<void> Sync() override { return target_.Sync(); }
  std::string_view Name() const override { return target_.Name(); }

  Counts counts() const {
    auto l = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return Counts{l(gets_), l(multi_gets_), l(multi_get_keys_), l(applies_),
                  l(apply_ops_), l(conflicts_), l(scans_), l(errors_)};
  }

 private:
  template <class R>
  R Count(R r) {
    if (!r) errors_.fetch_add(1, std::memory_order_relaxed);
    return r;
  }

  Store& target_;
  std::atomic<uint64_t> gets_{0}, multi_gets_{0}, multi_get_keys_{0}, applies_{0}, apply_ops_{0},
      conflicts_{0}, scans_{0}, errors_{0};
};

}  // namespace medkit::storage
