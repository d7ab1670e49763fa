// StoreWrapper: a Store that forwards every call to a target Store (in the style of
// leveldb::EnvWrapper). Subclass it and override one method to inject failures or observe
// calls in tests, e.g.
//
//   class FailingApply final : public StoreWrapper {
//    public:
//     using StoreWrapper::StoreWrapper;
//     Result<ApplyResult> Apply(const WriteBatch&) override {
//       return core::MakeError(core::Errc::kUnavailable, "injected");
//     }
//   };
//
// The conveniences Store::Put/Delete go through the wrapper's Apply(). The target must outlive
// the wrapper. Thread-safety is that of the target plus whatever the subclass adds.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/store.h"

namespace medkit::storage {

class StoreWrapper : public Store {
 public:
  explicit StoreWrapper(Store& target) : target_(target) {}

  Store& target() const { return target_; }

  Result<std::optional<Entry>> Get(std::string_view key) override { return target_.Get(key); }

  Result<std::vector<std::optional<Entry>>> MultiGet(std::span<const std::string> keys) override {
    return target_.MultiGet(keys);
  }

  Result<ApplyResult> Apply(const WriteBatch& batch) override { return target_.Apply(batch); }

  Result<std::vector<KeyEntry>> Scan(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override {
    return target_.Scan(prefix, start_after, limit);
  }

  Result<void> FlushWrites() override { return target_.FlushWrites(); }
  Result<void> Sync() override { return target_.Sync(); }

  std::string_view Name() const override { return target_.Name(); }

 private:
  Store& target_;
};

}  // namespace medkit::storage
