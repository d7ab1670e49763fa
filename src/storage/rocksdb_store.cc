#include "storage/rocksdb_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/slice.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <system_error>
#include <utility>

namespace medkit::storage {

namespace {

using core::Errc;
using core::Error;
using core::MakeError;

constexpr size_t kHeaderSize = 16;  // version u64 LE + expires_at_ms i64 LE
constexpr size_t kStripeCount = 1024;
constexpr uint64_t kVersionReserveChunk = uint64_t{1} << 20;
constexpr uint64_t kPeriodicCompactionSeconds = 24 * 60 * 60;
constexpr char kMetaFamily[] = "medkit_meta";
constexpr char kHighWaterKey[] = "version_high_water";

void AppendFixed64(std::string* dst, uint64_t value) {
  for (int i = 0; i < 8; ++i) dst->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t ReadFixed64(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

std::string EncodeEntry(const Entry& entry) {
  std::string out;
  out.reserve(kHeaderSize + entry.value.size());
  AppendFixed64(&out, entry.version);
  AppendFixed64(&out, static_cast<uint64_t>(entry.expires_at_ms));
  out.append(entry.value);
  return out;
}

Result<Entry> DecodeEntry(std::string_view raw) {
  if (raw.size() < kHeaderSize) return MakeError(Errc::kInternal, "corrupt stored entry header");
  Entry entry;
  entry.version = ReadFixed64(raw.data());
  entry.expires_at_ms = static_cast<int64_t>(ReadFixed64(raw.data() + 8));
  entry.value.assign(raw.substr(kHeaderSize));
  return entry;
}

bool IsLive(int64_t expires_at_ms, int64_t now_ms) {
  return expires_at_ms == 0 || expires_at_ms > now_ms;
}

// Decodes raw and returns it if it is live at now_ms.
Result<std::optional<Entry>> DecodeLive(std::string_view raw, int64_t now_ms) {
  auto entry = DecodeEntry(raw);
  if (!entry) return std::move(entry).error();
  if (!IsLive(entry->expires_at_ms, now_ms)) return std::optional<Entry>();
  return std::optional<Entry>(std::move(*entry));
}

Error StatusError(const rocksdb::Status& status) {
  return MakeError(Errc::kInternal, "rocksdb: " + status.ToString());
}

Error ClosedError() { return MakeError(Errc::kUnavailable, "store is closed"); }

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// The smallest key greater than every key starting with prefix, or "" if there is none
// (prefix empty or all \xff).
std::string PrefixSuccessor(std::string_view prefix) {
  std::string out(prefix);
  while (!out.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(out.back());
    if (last != 0xff) {
      ++last;
      return out;
    }
    out.pop_back();
  }
  return out;
}

uint64_t SystemNowMicros() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// Drops entries that are expired according to the injected clock. Stateless apart from the
// clock, so one instance is safely shared by concurrent compactions.
class ExpiryCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  explicit ExpiryCompactionFilter(const core::Clock& clock) : clock_(clock) {}

  bool Filter(int /*level*/, const rocksdb::Slice& /*key*/, const rocksdb::Slice& value,
              std::string* /*new_value*/, bool* /*value_changed*/) const override {
    if (value.size() < kHeaderSize) return false;  // keep what we cannot interpret
    const auto expires_at_ms = static_cast<int64_t>(ReadFixed64(value.data() + 8));
    return !IsLive(expires_at_ms, clock_.NowMs());
  }

  const char* Name() const override { return "medkit.ExpiryCompactionFilter"; }

 private:
  const core::Clock& clock_;
};

// Memtable insert hints: keys that share everything up to their last \x1f (the services'
// separator) share one remembered insert position. Keys that are rewritten over and over
// ("...st", the running sums of a poll, on every vote) or that arrive in time order (vote logs,
// accumulate entries: "...<ms>\x1f<seq>") then land next to the previous insert without a
// search from the top of the skip list. Keys without a separator are inserted normally. Each
// distinct prefix costs one splice (~250 bytes) in the memtable's arena, counted in its size
// (vote logs make one per poll per millisecond); keys with random suffixes under one prefix
// (viewer records) cost about what a plain insert does.
class InsertHintPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "medkit.InsertHintPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    const std::string_view view(key.data(), key.size());
    return rocksdb::Slice(key.data(), view.rfind('\x1f') + 1);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return std::string_view(key.data(), key.size()).find('\x1f') != std::string_view::npos;
  }
};

}  // namespace

class RocksDbStore::Impl {
 public:
  Impl(const RocksDbOptions& options, const core::Clock& clock)
      : options_(options), clock_(clock), filter_(clock) {
    write_options_.disableWAL = false;
    write_options_.sync = options.sync_writes;
  }

  ~Impl() { (void)Close(); }

  Result<void> Open() {
    rocksdb::DBOptions db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.max_background_jobs = 2;
    db_options.keep_log_file_num = 5;
    // Insert hints (below) are ignored by concurrent memtable writes.
    db_options.allow_concurrent_memtable_write = false;
    // Group commit: WAL records wait in RocksDB's buffer until FlushWrites(), which the server
    // calls once per batch of responses (see store.h).
    db_options.manual_wal_flush = !options_.sync_writes;
    // The meta family is written rarely; bound the WAL so its memtable is flushed and old WAL
    // files can be recycled.
    db_options.max_total_wal_size =
        std::max<uint64_t>(uint64_t{64} << 20, 2 * uint64_t{options_.write_buffer_bytes});

    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.cache_index_and_filter_blocks = true;
    table.pin_l0_filter_and_index_blocks_in_cache = true;
    // Partitioned index and filters. With one monolithic index block and one filter block per
    // SST, a file of ~1M small entries (one poll's voters after a burst) has a 2.5 MB index and
    // a 1.5 MB filter; both are larger than one shard of the block cache (64 MB / 64 shards),
    // so the cache drops them as soon as they are released and every point lookup that reaches
    // the file re-reads and decompresses megabytes: throughput fell from ~30k to 0-130 req/s
    // (see docs/performance.md). Partitions are metadata_block_size (4 KB) each and are cached
    // like data blocks (high priority); only the small top-level index stays pinned.
    table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
    table.partition_filters = true;
    table.metadata_block_size = 4096;
    table.pin_top_level_index_and_filter = true;
    table.cache_index_and_filter_blocks_with_high_priority = true;
    std::shared_ptr<rocksdb::TableFactory> table_factory(rocksdb::NewBlockBasedTableFactory(table));

    const auto supported = rocksdb::GetSupportedCompressions();
    const bool has_lz4 =
        std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end();

    rocksdb::ColumnFamilyOptions data_options;
    data_options.write_buffer_size = options_.write_buffer_bytes;
    data_options.compression = has_lz4 ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
    data_options.level_compaction_dynamic_level_bytes = true;
    data_options.table_factory = table_factory;
    data_options.compaction_filter = &filter_;
    data_options.periodic_compaction_seconds = kPeriodicCompactionSeconds;
    data_options.memtable_insert_with_hint_prefix_extractor =
        std::make_shared<InsertHintPrefix>();

    rocksdb::ColumnFamilyOptions meta_options;
    meta_options.write_buffer_size = 1 << 20;
    meta_options.table_factory = table_factory;

    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, data_options},
        {kMetaFamily, meta_options},
    };
    rocksdb::DB* db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(db_options, options_.path, families, &handles_, &db);
    if (!status.ok()) return StatusError(status);
    db_.reset(db);
    data_ = handles_[0];
    meta_ = handles_[1];

    rocksdb::PinnableSlice mark_value;
    status = db_->Get(rocksdb::ReadOptions(), meta_, kHighWaterKey, &mark_value);
    uint64_t mark = 0;
    if (status.ok()) {
      if (mark_value.size() != 8) {
        return MakeError(Errc::kInternal, "corrupt version high-water mark");
      }
      mark = ReadFixed64(mark_value.data());
    } else if (!status.IsNotFound()) {
      return StatusError(status);
    }
    reserved_version_.store(mark);
    next_version_.store(std::max(mark + 1, SystemNowMicros()));
    return {};
  }

  Result<void> Close() {
    if (db_ == nullptr) return {};
    rocksdb::Status first = db_->FlushWAL(/*sync=*/true);
    for (rocksdb::ColumnFamilyHandle* handle : handles_) {
      rocksdb::Status status = db_->DestroyColumnFamilyHandle(handle);
      if (first.ok()) first = status;
    }
    handles_.clear();
    data_ = meta_ = nullptr;
    rocksdb::Status status = db_->Close();
    if (first.ok()) first = status;
    db_.reset();
    if (!first.ok()) return StatusError(first);
    return {};
  }

  Result<std::optional<Entry>> Get(std::string_view key) {
    if (db_ == nullptr) return ClosedError();
    rocksdb::PinnableSlice raw;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), data_, ToSlice(key), &raw);
    if (status.IsNotFound()) return std::optional<Entry>();
    if (!status.ok()) return StatusError(status);
    return DecodeLive(ToView(raw), clock_.NowMs());
  }

  Result<std::vector<std::optional<Entry>>> MultiGet(std::span<const std::string> keys) {
    if (db_ == nullptr) return ClosedError();
    std::vector<rocksdb::Slice> slices;
    slices.reserve(keys.size());
    for (const std::string& key : keys) slices.push_back(ToSlice(key));
    return ReadMany(slices, /*sorted=*/false, clock_.NowMs());
  }

  Result<ApplyResult> Apply(const WriteBatch& batch) {
    if (db_ == nullptr) return ClosedError();
    ApplyResult result;
    if (batch.ops().empty() && batch.expectations().empty()) return result;

    // Every distinct key of the batch, sorted; states[i] / touched[i] belong to keys[i].
    std::vector<std::string_view> keys;
    keys.reserve(batch.ops().size() + batch.expectations().size());
    for (const WriteBatch::Op& op : batch.ops()) keys.push_back(op.key);
    for (const WriteBatch::Expectation& expectation : batch.expectations()) {
      keys.push_back(expectation.key);
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    auto index_of = [&keys](std::string_view key) {
      return static_cast<size_t>(std::lower_bound(keys.begin(), keys.end(), key) - keys.begin());
    };

    // Lock the stripes of all keys in ascending order (no deadlock between batches).
    std::vector<size_t> stripe_ids;
    stripe_ids.reserve(keys.size());
    for (std::string_view key : keys) {
      stripe_ids.push_back(std::hash<std::string_view>{}(key) % kStripeCount);
    }
    std::sort(stripe_ids.begin(), stripe_ids.end());
    stripe_ids.erase(std::unique(stripe_ids.begin(), stripe_ids.end()), stripe_ids.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(stripe_ids.size());
    for (size_t id : stripe_ids) locks.emplace_back(stripes_[id]);

    const int64_t now_ms = clock_.NowMs();
    std::vector<rocksdb::Slice> slices;
    slices.reserve(keys.size());
    for (std::string_view key : keys) slices.push_back(ToSlice(key));
    // Only keys with an expectation or a counter Add need their current value; plain puts and
    // deletes are written blind.
    std::vector<bool> needed(keys.size(), false);
    for (const WriteBatch::Expectation& e : batch.expectations()) needed[index_of(e.key)] = true;
    for (const WriteBatch::Op& op : batch.ops()) {
      if (op.kind == WriteBatch::Kind::kAdd) needed[index_of(op.key)] = true;
    }
    std::vector<rocksdb::Slice> to_read;
    std::vector<size_t> read_index;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!needed[i]) continue;
      to_read.push_back(slices[i]);
      read_index.push_back(i);
    }
    std::vector<std::optional<Entry>> states(keys.size());
    if (!to_read.empty()) {
      auto read = ReadMany(to_read, /*sorted=*/true, now_ms);
      if (!read) return std::move(read).error();
      for (size_t j = 0; j < read_index.size(); ++j) states[read_index[j]] = std::move((*read)[j]);
    }

    for (const WriteBatch::Expectation& expectation : batch.expectations()) {
      const std::optional<Entry>& current = states[index_of(expectation.key)];
      const uint64_t actual = current.has_value() ? current->version : 0;
      if (actual != expectation.version) return MakeError(Errc::kConflict, "version conflict");
    }

    // Evaluate the ops in order on the staged states; the version is stamped at commit.
    std::vector<bool> touched(keys.size(), false);
    for (const WriteBatch::Op& op : batch.ops()) {
      const size_t i = index_of(op.key);
      touched[i] = true;
      std::optional<Entry>& slot = states[i];
      if (auto applied = ApplyOpToSlot(op, 0, slot, result); !applied) {
        return std::move(applied).error();
      }
    }
    if (batch.ops().empty()) return result;

    auto version = AllocateVersion();
    if (version) result.version = *version;
    if (!version) return std::move(version).error();
    rocksdb::WriteBatch write;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!touched[i]) continue;
      rocksdb::Status status;
      if (states[i].has_value()) {
        states[i]->version = *version;
        status = write.Put(data_, slices[i], EncodeEntry(*states[i]));
      } else {
        status = write.Delete(data_, slices[i]);
      }
      if (!status.ok()) return StatusError(status);
    }
    rocksdb::Status status = db_->Write(write_options_, &write);
    if (!status.ok()) return StatusError(status);
    if (!options_.sync_writes) writes_.fetch_add(1, std::memory_order_acq_rel);
    return result;
  }

  // Every Apply() that returned before this call is in the WAL file when it returns: writes_
  // counts completed Apply() calls (their records are in RocksDB's WAL buffer), flushed_ is the
  // count that a finished FlushWAL covered. A caller whose target another thread's flush
  // already covers returns at once; otherwise it flushes (under flush_mu_, so it waits for a
  // flush in progress rather than trusting it).
  Result<void> FlushWrites() {
    const uint64_t target = writes_.load(std::memory_order_acquire);
    if (flushed_.load(std::memory_order_acquire) >= target) return {};
    std::lock_guard lock(flush_mu_);
    if (flushed_.load(std::memory_order_acquire) >= target) return {};
    if (db_ == nullptr) return ClosedError();
    const uint64_t covered = writes_.load(std::memory_order_acquire);
    rocksdb::Status status = db_->FlushWAL(/*sync=*/false);
    if (!status.ok()) return StatusError(status);
    flushed_.store(covered, std::memory_order_release);
    return {};
  }

  Result<std::vector<KeyEntry>> Scan(std::string_view prefix, std::string_view start_after,
                                     size_t limit) {
    if (db_ == nullptr) return ClosedError();
    std::vector<KeyEntry> out;
    if (limit == 0) return out;
    const int64_t now_ms = clock_.NowMs();

    rocksdb::ReadOptions read_options;
    const std::string upper = PrefixSuccessor(prefix);
    rocksdb::Slice upper_slice(upper);
    if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, data_));
    for (it->Seek(ToSlice(std::max(prefix, start_after))); it->Valid() && out.size() < limit;
         it->Next()) {
      const std::string_view key = ToView(it->key());
      if (!key.starts_with(prefix)) break;
      if (key == start_after) continue;
      auto entry = DecodeLive(ToView(it->value()), now_ms);
      if (!entry) return std::move(entry).error();
      if (!entry->has_value()) continue;
      out.push_back(KeyEntry{std::string(key), std::move(**entry)});
    }
    if (!it->status().ok()) return StatusError(it->status());
    return out;
  }

  Result<void> Sync() {
    if (db_ == nullptr) return ClosedError();
    rocksdb::Status status = db_->FlushWAL(/*sync=*/true);
    if (!status.ok()) return StatusError(status);
    return {};
  }

  Result<void> CompactForTest() {
    if (db_ == nullptr) return ClosedError();
    rocksdb::CompactRangeOptions compact_options;
    compact_options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    rocksdb::Status status = db_->CompactRange(compact_options, data_, nullptr, nullptr);
    if (!status.ok()) return StatusError(status);
    // Let automatic flushes and compactions that the writes before scheduled finish too, so
    // the files a test looks at next are the final ones.
    for (int i = 0; i < 1000; ++i) {
      uint64_t running = 0, pending = 0, flushes = 0;
      db_->GetIntProperty(data_, "rocksdb.num-running-compactions", &running);
      db_->GetIntProperty(data_, "rocksdb.compaction-pending", &pending);
      db_->GetIntProperty(data_, "rocksdb.num-running-flushes", &flushes);
      if (running == 0 && pending == 0 && flushes == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return {};
  }

  Result<size_t> RawKeyCountForTest() {
    if (db_ == nullptr) return ClosedError();
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), data_));
    size_t count = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
    if (!it->status().ok()) return StatusError(it->status());
    return count;
  }

 private:
  // Reads keys from one implicit snapshot; one slot per key, nullopt if absent or expired.
  Result<std::vector<std::optional<Entry>>> ReadMany(const std::vector<rocksdb::Slice>& keys,
                                                     bool sorted, int64_t now_ms) {
    std::vector<std::optional<Entry>> out(keys.size());
    if (keys.empty()) return out;
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), data_, keys.size(), keys.data(), values.data(),
                  statuses.data(), sorted);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) continue;
      if (!statuses[i].ok()) return StatusError(statuses[i]);
      auto entry = DecodeLive(ToView(values[i]), now_ms);
      if (!entry) return std::move(entry).error();
      out[i] = std::move(*entry);
    }
    return out;
  }

  // The next version. Guarantees that a high-water mark >= the returned version has been
  // written to the WAL before the caller writes anything carrying it.
  Result<uint64_t> AllocateVersion() {
    const uint64_t version = next_version_.fetch_add(1);
    if (version <= reserved_version_.load(std::memory_order_acquire)) return version;
    std::lock_guard lock(reserve_mu_);
    if (version <= reserved_version_.load(std::memory_order_acquire)) return version;
    const uint64_t mark = version + kVersionReserveChunk;
    std::string encoded;
    AppendFixed64(&encoded, mark);
    rocksdb::Status status = db_->Put(write_options_, meta_, kHighWaterKey, encoded);
    if (!status.ok()) return StatusError(status);
    reserved_version_.store(mark, std::memory_order_release);
    return version;
  }

  const RocksDbOptions options_;
  const core::Clock& clock_;
  ExpiryCompactionFilter filter_;  // referenced by the DB options; outlives db_
  rocksdb::WriteOptions write_options_;
  std::atomic<uint64_t> writes_{0};   // completed Apply() calls (WAL records buffered)
  std::atomic<uint64_t> flushed_{0};  // of those, how many a finished FlushWAL covered
  std::mutex flush_mu_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; destroyed in Close()
  rocksdb::ColumnFamilyHandle* data_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  std::array<std::mutex, kStripeCount> stripes_;
  std::atomic<uint64_t> next_version_{0};
  std::atomic<uint64_t> reserved_version_{0};  // highest version covered by the WAL'd mark
  std::mutex reserve_mu_;                      // serialises writes of the mark
};

Result<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(const RocksDbOptions& options,
                                                         const core::Clock& clock) {
  if (options.path.empty()) return MakeError(Errc::kInvalidArgument, "rocksdb path is empty");
  auto impl = std::make_unique<Impl>(options, clock);
  auto opened = impl->Open();
  if (!opened) return std::move(opened).error();
  return std::unique_ptr<RocksDbStore>(new RocksDbStore(std::move(impl)));
}

RocksDbStore::RocksDbStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RocksDbStore::~RocksDbStore() = default;

Result<std::optional<Entry>> RocksDbStore::Get(std::string_view key) { return impl_->Get(key); }

Result<std::vector<std::optional<Entry>>> RocksDbStore::MultiGet(
    std::span<const std::string> keys) {
  return impl_->MultiGet(keys);
}

Result<ApplyResult> RocksDbStore::Apply(const WriteBatch& batch) { return impl_->Apply(batch); }

Result<std::vector<KeyEntry>> RocksDbStore::Scan(std::string_view prefix,
                                                 std::string_view start_after, size_t limit) {
  return impl_->Scan(prefix, start_after, limit);
}

Result<void> RocksDbStore::FlushWrites() { return impl_->FlushWrites(); }
Result<void> RocksDbStore::Sync() { return impl_->Sync(); }

Result<void> RocksDbStore::Close() { return impl_->Close(); }

Result<void> RocksDbStore::CompactForTest() { return impl_->CompactForTest(); }

Result<size_t> RocksDbStore::RawKeyCountForTest() { return impl_->RawKeyCountForTest(); }

uint64_t RocksDbStore::TakeMetadataBlockReadsForTest() {
  thread_local bool counting = false;
  rocksdb::PerfContext* context = rocksdb::get_perf_context();
  uint64_t reads = 0;
  if (counting) {
    reads = context->index_block_read_count + context->filter_block_read_count;
  } else {
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
    counting = true;
  }
  context->Reset();
  return reads;
}

}  // namespace medkit::storage
