#include "storage/store.h"

#include <utility>

namespace medkit::storage {

WriteBatch& WriteBatch::Put(std::string key, std::string value, int64_t expires_at_ms) {
  ops_.push_back(Op{Kind::kPut, std::move(key), std::move(value), 0, expires_at_ms});
  return *this;
}

WriteBatch& WriteBatch::Delete(std::string key) {
  ops_.push_back(Op{Kind::kDelete, std::move(key), {}, 0, 0});
  return *this;
}

WriteBatch& WriteBatch::Add(std::string key, int64_t delta, int64_t expires_at_ms) {
  ops_.push_back(Op{Kind::kAdd, std::move(key), {}, delta, expires_at_ms});
  return *this;
}

WriteBatch& WriteBatch::ExpectVersion(std::string key, uint64_t version) {
  expectations_.push_back(Expectation{std::move(key), version});
  return *this;
}

Result<void> Store::Put(std::string key, std::string value, int64_t expires_at_ms) {
  WriteBatch batch;
  batch.Put(std::move(key), std::move(value), expires_at_ms);
  auto r = Apply(batch);
  if (!r) return std::move(r).error();
  return {};
}

Result<void> Store::Delete(std::string key) {
  WriteBatch batch;
  batch.Delete(std::move(key));
  auto r = Apply(batch);
  if (!r) return std::move(r).error();
  return {};
}

}  // namespace medkit::storage
