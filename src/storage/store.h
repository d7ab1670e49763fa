// Store: the one storage seam. A small abstract key-value interface (in the spirit of
// leveldb::DB) with one atomic primitive, Apply(batch), and reads. Implementations:
// MemoryStore (tests), RocksDbStore (embedded default), later a Redis Cluster store.
//
// Contract (every implementation passes store_conformance_test.cc):
//  * Keys and values are arbitrary byte strings.
//  * Every stored entry carries a version and an optional absolute expiry (ms since epoch,
//    0 = never). An entry whose expiry is <= the store clock's NowMs() is invisible to every
//    read and to expectations, exactly as if it had been deleted.
//  * Apply() is atomic: either every operation of the batch takes effect or none does, and no
//    reader observes a partial batch. Expectations are checked inside the same atomic step
//    (compare-and-set); if one fails, nothing is written and the error is Errc::kConflict.
//  * Versions are strictly increasing per key across writes (also across restarts), so an
//    ExpectVersion taken from a Get detects any write in between.
//  * Durability: a successful Apply() is visible to every reader at once. It survives a crash
//    of the process once FlushWrites() has returned success afterwards (RocksDB keeps WAL
//    records in a process buffer until then, so one write() serves a whole pipelined batch;
//    Redis has them in its AOF when the reply arrives). The HTTP server calls FlushWrites()
//    before it sends any response, so no client is ever told of a write a crash could lose.
//  * All methods are thread-safe.
//
// Mapping onto Redis Cluster (see ARCHITECTURE.md): keys of one batch share a hash tag (one
// scope = one slot), Apply() is a Lua script that checks the expectations and applies the ops
// (SET with PXAT, DEL, INCRBY), the version lives beside the value, and Scan is a sorted-set
// index per prefix.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace medkit::storage {

using core::Result;

struct Entry {
  std::string value;
  uint64_t version = 0;
  int64_t expires_at_ms = 0;  // 0 = never expires
};

struct KeyEntry {
  std::string key;
  Entry entry;
};

class WriteBatch {
 public:
  enum class Kind { kPut, kDelete, kAdd };
  struct Op {
    Kind kind;
    std::string key;
    std::string value;          // kPut
    int64_t delta = 0;          // kAdd
    int64_t expires_at_ms = 0;  // kPut, kAdd: the entry's new expiry (0 = never)
  };
  struct Expectation {
    std::string key;
    uint64_t version;  // 0 = the key must be absent (or expired)
  };

  // Sets key to value.
  WriteBatch& Put(std::string key, std::string value, int64_t expires_at_ms = 0);
  // Removes key (no error if absent).
  WriteBatch& Delete(std::string key);
  // Adds delta to the integer counter at key (absent = 0); the counter is stored as its
  // decimal text, so Get returns e.g. "42". Fails with kInvalidArgument if the current value
  // is not an integer. The new value is reported in ApplyResult::counters.
  WriteBatch& Add(std::string key, int64_t delta, int64_t expires_at_ms = 0);
  // The batch applies only if key currently has this version (0: is absent).
  WriteBatch& ExpectVersion(std::string key, uint64_t version);

  const std::vector<Op>& ops() const { return ops_; }
  const std::vector<Expectation>& expectations() const { return expectations_; }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<Op> ops_;
  std::vector<Expectation> expectations_;
};

struct ApplyResult {
  std::vector<int64_t> counters;  // one value per kAdd op, in batch order
  uint64_t version = 0;           // the version every key written by the batch now has
};

// Applies one batch op to the staged state of its key, as every engine must: Put replaces,
// Delete clears, Add parses the current value as an integer counter (absent = 0), adds with
// an overflow check and appends the new value to result.counters. Shared by the engines.
Result<void> ApplyOpToSlot(const WriteBatch::Op& op, uint64_t version, std::optional<Entry>& slot,
                           ApplyResult& result);

class Store {
 public:
  virtual ~Store() = default;

  // The live entry at key, or nullopt if absent or expired.
  virtual Result<std::optional<Entry>> Get(std::string_view key) = 0;

  // Get() for many keys; the result has one slot per key, in order.
  virtual Result<std::vector<std::optional<Entry>>> MultiGet(
      std::span<const std::string> keys) = 0;

  // Applies the batch atomically (see the contract above).
  virtual Result<ApplyResult> Apply(const WriteBatch& batch) = 0;

  // Live entries whose key starts with prefix and is > start_after (byte order), ascending,
  // at most limit of them.
  virtual Result<std::vector<KeyEntry>> Scan(std::string_view prefix, std::string_view start_after,
                                             size_t limit) = 0;

  // Makes every write applied so far durable against a crash of the process (one write() of
  // the buffered WAL records; cheap when nothing is pending). Thread-safe.
  virtual Result<void> FlushWrites() { return {}; }

  // Makes every write applied so far durable against an OS crash (fsync of the WAL).
  virtual Result<void> Sync() = 0;

  // A short name for logs and metrics ("memory", "rocksdb").
  virtual std::string_view Name() const = 0;

  // Conveniences built on the primitives above.
  Result<void> Put(std::string key, std::string value, int64_t expires_at_ms = 0);
  Result<void> Delete(std::string key);
};

}  // namespace medkit::storage
