#include "storage/store.h"

#include <charconv>
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

Result<void> ApplyOpToSlot(const WriteBatch::Op& op, uint64_t version, std::optional<Entry>& slot,
                           ApplyResult& result) {
  switch (op.kind) {
    case WriteBatch::Kind::kPut:
      slot = Entry{op.value, version, op.expires_at_ms};
      return {};
    case WriteBatch::Kind::kDelete:
      slot.reset();
      return {};
    case WriteBatch::Kind::kAdd: {
      int64_t current = 0;
      if (slot.has_value()) {
        const std::string& text = slot->value;
        const char* last = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(text.data(), last, current);
        if (text.empty() || ec != std::errc() || ptr != last) {
          return core::MakeError(core::Errc::kInvalidArgument, "value is not an integer counter");
        }
      }
      int64_t next = 0;
      if (__builtin_add_overflow(current, op.delta, &next)) {
        return core::MakeError(core::Errc::kInvalidArgument, "counter overflow");
      }
      slot = Entry{std::to_string(next), version, op.expires_at_ms};
      result.counters.push_back(next);
      return {};
    }
  }
  return {};
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
