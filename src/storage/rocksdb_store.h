// RocksDbStore: the embedded, durable Store (the default engine of a single-node server).
//
// This header deliberately includes no RocksDB header (pimpl): only medkit_storage links
// RocksDB, the HTTP layer sees the Store interface alone.
//
// On-disk layout:
//  * Default column family: user key -> [version u64 LE][expires_at_ms i64 LE][payload]. User
//    keys are stored verbatim, so every byte string (\0, \xff, ...) is a valid key and Scan
//    order is plain byte order.
//  * Column family "medkit_meta": bookkeeping that must never collide with user keys; today
//    only "version_high_water" (u64 LE).
//  * Table files use partitioned indexes and bloom filters (4 KB partitions, cached in the
//    block cache like data blocks), so one large file never has an index or filter block too
//    big for a cache shard (which made every lookup re-read it; see docs/performance.md).
//  * Memtable inserts use a per-prefix hint (the key up to its last 0x1f), which makes keys
//    that are rewritten on every request or arrive in time order cheap to insert.
//
// Versions: one counter per store, strictly increasing across all keys and across restarts.
// Every Apply() that writes takes the next value for all keys it writes. Before a version v is
// handed out, a high-water mark >= v has been written to the WAL (the mark is reserved in
// chunks of 2^20, so this costs one extra small write per million versions). Because the WAL is
// replayed in order, a recovered write never carries a version above the recovered mark. At
// Open() the counter is seeded with max(mark + 1, SystemClock now in microseconds), so versions
// also look like timestamps and stay far below 2^53 (exact as JSON numbers) for centuries.
//
// Atomicity: Apply() locks the sorted, de-duplicated set of 1024 hashed key stripes of every
// key in the batch (op keys and expectation keys), reads the current entries, checks the
// expectations, evaluates the ops in order (Add sees an earlier Put/Add of the same batch) and
// commits the final state of every touched key with one rocksdb::WriteBatch. Two Apply() calls
// touching a common key are therefore serialised; disjoint ones run in parallel. Reads take no
// lock: a RocksDB write batch becomes visible atomically, and MultiGet/Scan read one implicit
// snapshot.
//
// Durability: every write goes through the WAL. Without sync_writes the WAL is flushed by hand
// (RocksDB manual_wal_flush): Apply() leaves its records in RocksDB's WAL buffer, and
// FlushWrites() writes everything buffered with one write(), after which it survives a process
// crash; Sync() also fsyncs. With sync_writes every Apply() is fsynced before it returns.
//
// Expiry: reads hide entries whose expires_at_ms <= clock.NowMs(). A compaction filter using
// the same clock drops them physically; periodic compaction (daily) makes sure cold files are
// filtered too.
//
// Threading: every method except Close() is thread-safe. Close() (and the destructor) must not
// run concurrently with other calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "storage/store.h"

namespace medkit::storage {

struct RocksDbOptions {
  std::string path;                      // database directory; created if missing
  size_t block_cache_bytes = 64 << 20;   // shared LRU block cache (also holds index/filters)
  size_t write_buffer_bytes = 32 << 20;  // memtable size
  bool sync_writes = false;              // fsync the WAL on every Apply()
};

class RocksDbStore final : public Store {
 public:
  // Opens (or creates) the database at options.path. clock must outlive the store; it decides
  // expiry for reads and for the compaction filter. Errors: kInternal with the RocksDB status.
  static Result<std::unique_ptr<RocksDbStore>> Open(const RocksDbOptions& options,
                                                    const core::Clock& clock);

  // Flushes and syncs the WAL and closes the database (ignoring errors; call Close() to see
  // them).
  ~RocksDbStore() override;

  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  Result<std::optional<Entry>> Get(std::string_view key) override;
  Result<std::vector<std::optional<Entry>>> MultiGet(std::span<const std::string> keys) override;
  Result<ApplyResult> Apply(const WriteBatch& batch) override;
  Result<std::vector<KeyEntry>> Scan(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override;
  Result<void> FlushWrites() override;
  Result<void> Sync() override;
  std::string_view Name() const override { return "rocksdb"; }

  // Syncs the WAL and closes the database. Idempotent; after it every other call fails with
  // kUnavailable. Not thread-safe against concurrent calls.
  Result<void> Close();

  // Flushes the memtable and compacts the whole key space (runs the expiry filter). Tests only.
  Result<void> CompactForTest();
  // Number of physically stored user keys, expired ones included. Tests only.
  Result<size_t> RawKeyCountForTest();
  // Index and filter blocks (partitions included) that the calling thread read from table
  // files, i.e. block cache misses, since its previous call (RocksDB's thread-local perf
  // context; the first call on a thread turns the count on and returns 0). Tests only.
  static uint64_t TakeMetadataBlockReadsForTest();

 private:
  class Impl;
  explicit RocksDbStore(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace medkit::storage
