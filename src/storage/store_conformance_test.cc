// The Store contract (see store.h), checked against every engine with one typed suite, plus a
// few RocksDbStore-only tests (persistence across reopen, physical expiry by compaction) and a
// StoreWrapper smoke test.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/clock.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"
#include "storage/store.h"
#include "storage/store_wrapper.h"

namespace medkit::storage {
namespace {

using core::Errc;
using core::FakeClock;
using namespace std::string_literals;

template <class T>
std::string ErrorText(const Result<T>& result) {
  return result ? std::string("ok") : result.error().message;
}

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "medkit_store_XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Creates and owns the store under test.
template <class S>
class StoreHarness;

template <>
class StoreHarness<MemoryStore> {
 public:
  explicit StoreHarness(const core::Clock& clock) : store_(std::make_unique<MemoryStore>(clock)) {}
  MemoryStore& store() { return *store_; }

 private:
  std::unique_ptr<MemoryStore> store_;
};

template <>
class StoreHarness<RocksDbStore> {
 public:
  explicit StoreHarness(const core::Clock& clock, bool sync_writes = false)
      : clock_(clock), sync_writes_(sync_writes) {
    Reopen();
  }

  RocksDbStore& store() { return *store_; }

  // Closes the store (if open) and opens the same directory again.
  void Reopen() {
    store_.reset();
    RocksDbOptions options;
    options.path = dir_.path();
    // The production default: with 8 MB (16 shards of 512 KB) the data blocks a test reads
    // could evict the index partitions LargeTableIndexAndFilterStayCached counts.
    options.block_cache_bytes = 64 << 20;
    options.write_buffer_bytes = 4 << 20;
    options.sync_writes = sync_writes_;
    auto opened = RocksDbStore::Open(options, clock_);
    if (!opened) {  // every test needs the store; stop loudly rather than crash later
      std::fprintf(stderr, "RocksDbStore::Open(%s): %s\n", dir_.path().c_str(),
                   opened.error().message.c_str());
      std::abort();
    }
    store_ = std::move(*opened);
  }

  void Destroy() { store_.reset(); }

 private:
  TempDir dir_;  // declared first: removed after the store is closed
  const core::Clock& clock_;
  bool sync_writes_;
  std::unique_ptr<RocksDbStore> store_;
};

template <class S>
class StoreConformanceTest : public ::testing::Test {
 protected:
  StoreConformanceTest() : harness_(clock_) {}

  Store& store() { return harness_.store(); }

  // Get() that must succeed.
  std::optional<Entry> MustGet(std::string_view key) {
    auto result = store().Get(key);
    EXPECT_TRUE(result.has_value()) << ErrorText(result);
    return result ? *result : std::nullopt;
  }

  void MustPut(std::string key, std::string value, int64_t expires_at_ms = 0) {
    auto result = store().Put(std::move(key), std::move(value), expires_at_ms);
    ASSERT_TRUE(result.has_value()) << ErrorText(result);
  }

  uint64_t VersionOf(std::string_view key) {
    auto entry = MustGet(key);
    return entry.has_value() ? entry->version : 0;
  }

  std::vector<std::string> ScanKeys(std::string_view prefix, std::string_view start_after,
                                    size_t limit) {
    auto result = store().Scan(prefix, start_after, limit);
    EXPECT_TRUE(result.has_value()) << ErrorText(result);
    std::vector<std::string> keys;
    if (result) {
      for (const KeyEntry& item : *result) keys.push_back(item.key);
    }
    return keys;
  }

  FakeClock clock_;
  StoreHarness<S> harness_;
};

struct StoreTypeNames {
  template <class T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, MemoryStore>) return "Memory";
    return "RocksDb";
  }
};

using StoreTypes = ::testing::Types<MemoryStore, RocksDbStore>;
TYPED_TEST_SUITE(StoreConformanceTest, StoreTypes, StoreTypeNames);

TYPED_TEST(StoreConformanceTest, GetMissingIsNullopt) {
  auto result = this->store().Get("missing");
  ASSERT_TRUE(result.has_value()) << ErrorText(result);
  EXPECT_FALSE(result->has_value());
}

TYPED_TEST(StoreConformanceTest, PutThenGet) {
  this->MustPut("k", "value", 0);
  auto entry = this->MustGet("k");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, "value");
  EXPECT_GT(entry->version, 0u);
  EXPECT_EQ(entry->expires_at_ms, 0);
}

TYPED_TEST(StoreConformanceTest, EmptyValueAndLargeValue) {
  this->MustPut("empty", "");
  const std::string large(1 << 20, 'x');
  this->MustPut("large", large);
  auto empty = this->MustGet("empty");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->value, "");
  auto got = this->MustGet("large");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->value, large);
}

TYPED_TEST(StoreConformanceTest, OverwriteReplacesValueAndBumpsVersion) {
  this->MustPut("k", "one");
  const uint64_t first = this->VersionOf("k");
  this->MustPut("k", "two");
  auto entry = this->MustGet("k");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, "two");
  EXPECT_GT(entry->version, first);
}

TYPED_TEST(StoreConformanceTest, DeleteRemovesAndDeletingAbsentIsOk) {
  this->MustPut("k", "v");
  auto deleted = this->store().Delete("k");
  ASSERT_TRUE(deleted.has_value()) << ErrorText(deleted);
  EXPECT_FALSE(this->MustGet("k").has_value());
  auto again = this->store().Delete("k");
  EXPECT_TRUE(again.has_value()) << ErrorText(again);
  auto never = this->store().Delete("never-existed");
  EXPECT_TRUE(never.has_value()) << ErrorText(never);
}

TYPED_TEST(StoreConformanceTest, BatchAppliesAllOps) {
  this->MustPut("gone", "x");
  WriteBatch batch;
  batch.Put("a", "1").Put("b", "2").Delete("gone");
  auto applied = this->store().Apply(batch);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_TRUE(applied->counters.empty());
  EXPECT_EQ(this->MustGet("a")->value, "1");
  EXPECT_EQ(this->MustGet("b")->value, "2");
  EXPECT_FALSE(this->MustGet("gone").has_value());
  // All keys written by one batch share its version.
  EXPECT_EQ(this->VersionOf("a"), this->VersionOf("b"));
}

TYPED_TEST(StoreConformanceTest, FailedExpectationWritesNothing) {
  this->MustPut("a", "old");
  this->MustPut("d", "keep");
  const uint64_t version = this->VersionOf("a");
  WriteBatch batch;
  batch.Put("b", "new").Put("a", "new").Delete("d").Add("c", 1).ExpectVersion("a", version + 1);
  auto applied = this->store().Apply(batch);
  ASSERT_FALSE(applied.has_value());
  EXPECT_EQ(applied.error().code, Errc::kConflict);
  EXPECT_EQ(this->MustGet("a")->value, "old");
  EXPECT_EQ(this->VersionOf("a"), version);
  EXPECT_FALSE(this->MustGet("b").has_value());
  EXPECT_FALSE(this->MustGet("c").has_value());
  EXPECT_EQ(this->MustGet("d")->value, "keep");
}

TYPED_TEST(StoreConformanceTest, ExpectVersionSucceedsOnlyOnCurrentVersion) {
  this->MustPut("k", "v1");
  const uint64_t v1 = this->VersionOf("k");
  WriteBatch first;
  first.ExpectVersion("k", v1).Put("k", "v2");
  auto applied = this->store().Apply(first);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_EQ(this->MustGet("k")->value, "v2");

  WriteBatch stale;
  stale.ExpectVersion("k", v1).Put("k", "v3");
  auto conflict = this->store().Apply(stale);
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code, Errc::kConflict);
  EXPECT_EQ(this->MustGet("k")->value, "v2");
}

TYPED_TEST(StoreConformanceTest, ExpectationOnOtherKeyGuardsTheBatch) {
  this->MustPut("guard", "g");
  const uint64_t guard_version = this->VersionOf("guard");
  WriteBatch ok;
  ok.ExpectVersion("guard", guard_version).Put("data", "1");
  ASSERT_TRUE(this->store().Apply(ok).has_value());
  EXPECT_EQ(this->VersionOf("guard"), guard_version);  // expectations do not write

  this->MustPut("guard", "moved");
  WriteBatch stale;
  stale.ExpectVersion("guard", guard_version).Put("data", "2");
  auto conflict = this->store().Apply(stale);
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code, Errc::kConflict);
  EXPECT_EQ(this->MustGet("data")->value, "1");
}

TYPED_TEST(StoreConformanceTest, ExpectationsOnlyBatchChecksWithoutWriting) {
  this->MustPut("k", "v");
  const uint64_t version = this->VersionOf("k");
  WriteBatch ok;
  ok.ExpectVersion("k", version).ExpectVersion("absent", 0);
  EXPECT_TRUE(this->store().Apply(ok).has_value());
  EXPECT_EQ(this->VersionOf("k"), version);
  WriteBatch bad;
  bad.ExpectVersion("k", 0);
  auto conflict = this->store().Apply(bad);
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code, Errc::kConflict);
}

TYPED_TEST(StoreConformanceTest, ExpectAbsentOnAbsentKeySucceeds) {
  WriteBatch batch;
  batch.ExpectVersion("k", 0).Put("k", "created");
  auto applied = this->store().Apply(batch);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_EQ(this->MustGet("k")->value, "created");
}

TYPED_TEST(StoreConformanceTest, ExpectAbsentOnPresentKeyConflicts) {
  this->MustPut("k", "exists");
  WriteBatch batch;
  batch.ExpectVersion("k", 0).Put("k", "clobber");
  auto applied = this->store().Apply(batch);
  ASSERT_FALSE(applied.has_value());
  EXPECT_EQ(applied.error().code, Errc::kConflict);
  EXPECT_EQ(this->MustGet("k")->value, "exists");
}

TYPED_TEST(StoreConformanceTest, ExpectAbsentOnExpiredKeySucceeds) {
  const int64_t now = this->clock_.NowMs();
  this->MustPut("k", "short-lived", now + 100);
  const uint64_t old_version = this->VersionOf("k");
  this->clock_.AdvanceMs(100);

  WriteBatch stale;  // the expired entry's version is gone with it
  stale.ExpectVersion("k", old_version).Put("k", "x");
  auto conflict = this->store().Apply(stale);
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code, Errc::kConflict);

  WriteBatch batch;
  batch.ExpectVersion("k", 0).Put("k", "fresh");
  auto applied = this->store().Apply(batch);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  auto entry = this->MustGet("k");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, "fresh");
  EXPECT_EQ(entry->expires_at_ms, 0);
  EXPECT_GT(entry->version, old_version);
}

TYPED_TEST(StoreConformanceTest, AddCreatesAndUpdatesCounter) {
  WriteBatch create;
  create.Add("c", 5);
  auto first = this->store().Apply(create);
  ASSERT_TRUE(first.has_value()) << ErrorText(first);
  EXPECT_EQ(first->counters, std::vector<int64_t>{5});
  EXPECT_EQ(this->MustGet("c")->value, "5");

  WriteBatch again;
  again.Add("c", 5);
  auto second = this->store().Apply(again);
  ASSERT_TRUE(second.has_value()) << ErrorText(second);
  EXPECT_EQ(second->counters, std::vector<int64_t>{10});

  WriteBatch negative;
  negative.Add("c", -17);
  auto third = this->store().Apply(negative);
  ASSERT_TRUE(third.has_value()) << ErrorText(third);
  EXPECT_EQ(third->counters, std::vector<int64_t>{-7});
  EXPECT_EQ(this->MustGet("c")->value, "-7");

  WriteBatch zero;
  zero.Add("z", 0);
  auto fourth = this->store().Apply(zero);
  ASSERT_TRUE(fourth.has_value()) << ErrorText(fourth);
  EXPECT_EQ(fourth->counters, std::vector<int64_t>{0});
  EXPECT_EQ(this->MustGet("z")->value, "0");
}

TYPED_TEST(StoreConformanceTest, AddWorksOnPutDecimalText) {
  this->MustPut("c", "40");
  WriteBatch batch;
  batch.Add("c", 2);
  auto applied = this->store().Apply(batch);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_EQ(applied->counters, std::vector<int64_t>{42});
}

TYPED_TEST(StoreConformanceTest, OpsOnOneKeyApplyInBatchOrder) {
  WriteBatch batch;
  batch.Add("c", 1)
      .Add("c", 2)
      .Add("other", 10)
      .Put("p", "100")
      .Add("p", 1)
      .Put("d", "x")
      .Delete("d");
  auto applied = this->store().Apply(batch);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_EQ(applied->counters, (std::vector<int64_t>{1, 3, 10, 101}));
  EXPECT_EQ(this->MustGet("c")->value, "3");
  EXPECT_EQ(this->MustGet("other")->value, "10");
  EXPECT_EQ(this->MustGet("p")->value, "101");
  EXPECT_FALSE(this->MustGet("d").has_value());

  WriteBatch reset;
  reset.Delete("c").Add("c", 7);
  auto second = this->store().Apply(reset);
  ASSERT_TRUE(second.has_value()) << ErrorText(second);
  EXPECT_EQ(second->counters, std::vector<int64_t>{7});
}

TYPED_TEST(StoreConformanceTest, AddOnNonIntegerFailsAndWritesNothing) {
  this->MustPut("text", "abc");
  this->MustPut("counter", "1");
  const uint64_t text_version = this->VersionOf("text");
  WriteBatch batch;
  batch.Put("side", "effect").Add("counter", 1).Add("text", 1);
  auto applied = this->store().Apply(batch);
  ASSERT_FALSE(applied.has_value());
  EXPECT_EQ(applied.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(applied.error().message, "value is not an integer counter");
  EXPECT_FALSE(this->MustGet("side").has_value());
  EXPECT_EQ(this->MustGet("counter")->value, "1");
  EXPECT_EQ(this->MustGet("text")->value, "abc");
  EXPECT_EQ(this->VersionOf("text"), text_version);

  for (const std::string& bad :
       {""s, " 1"s, "1 "s, "+1"s, "1.5"s, "0x10"s, "99999999999999999999"s}) {
    this->MustPut("bad", bad);
    WriteBatch add;
    add.Add("bad", 1);
    auto result = this->store().Apply(add);
    ASSERT_FALSE(result.has_value()) << "value '" << bad << "'";
    EXPECT_EQ(result.error().code, Errc::kInvalidArgument) << "value '" << bad << "'";
  }
}

TYPED_TEST(StoreConformanceTest, AddOverflowFails) {
  this->MustPut("c", std::to_string(INT64_MAX));
  WriteBatch batch;
  batch.Add("c", 1);
  auto applied = this->store().Apply(batch);
  ASSERT_FALSE(applied.has_value());
  EXPECT_EQ(applied.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(this->MustGet("c")->value, std::to_string(INT64_MAX));
}

TYPED_TEST(StoreConformanceTest, AddOnExpiredCounterRestartsFromZeroWithNewExpiry) {
  const int64_t now = this->clock_.NowMs();
  WriteBatch first;
  first.Add("c", 40, now + 1000);
  ASSERT_TRUE(this->store().Apply(first).has_value());
  EXPECT_EQ(this->MustGet("c")->expires_at_ms, now + 1000);

  this->clock_.AdvanceMs(1000);
  WriteBatch second;
  second.Add("c", 2, now + 5000);
  auto applied = this->store().Apply(second);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_EQ(applied->counters, std::vector<int64_t>{2});
  auto entry = this->MustGet("c");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, "2");
  EXPECT_EQ(entry->expires_at_ms, now + 5000);
}

TYPED_TEST(StoreConformanceTest, ExpiryHidesEntryFromEveryRead) {
  const int64_t now = this->clock_.NowMs();
  this->MustPut("p/expiring", "e", now + 1000);
  this->MustPut("p/forever", "f");

  auto before = this->MustGet("p/expiring");
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->expires_at_ms, now + 1000);
  this->clock_.AdvanceMs(999);
  EXPECT_TRUE(this->MustGet("p/expiring").has_value());
  EXPECT_EQ(this->ScanKeys("p/", "", 10), (std::vector<std::string>{"p/expiring", "p/forever"}));

  this->clock_.AdvanceMs(1);  // now == expires_at_ms: expired
  EXPECT_FALSE(this->MustGet("p/expiring").has_value());
  EXPECT_EQ(this->ScanKeys("p/", "", 10), std::vector<std::string>{"p/forever"});
  const std::vector<std::string> keys = {"p/expiring", "p/forever"};
  auto many = this->store().MultiGet(keys);
  ASSERT_TRUE(many.has_value()) << ErrorText(many);
  ASSERT_EQ(many->size(), 2u);
  EXPECT_FALSE((*many)[0].has_value());
  ASSERT_TRUE((*many)[1].has_value());
  EXPECT_EQ((*many)[1]->value, "f");

  this->clock_.AdvanceMs(1'000'000);
  EXPECT_FALSE(this->MustGet("p/expiring").has_value());
}

TYPED_TEST(StoreConformanceTest, PutWithPastExpiryIsInvisible) {
  this->MustPut("k", "v", this->clock_.NowMs() - 1);
  EXPECT_FALSE(this->MustGet("k").has_value());
}

TYPED_TEST(StoreConformanceTest, OverwriteClearsExpiry) {
  const int64_t now = this->clock_.NowMs();
  this->MustPut("k", "v1", now + 10);
  this->MustPut("k", "v2");
  this->clock_.AdvanceMs(100);
  auto entry = this->MustGet("k");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, "v2");
  EXPECT_EQ(entry->expires_at_ms, 0);
}

TYPED_TEST(StoreConformanceTest, ScanHonoursPrefixStartAfterAndLimit) {
  for (const char* key : {"a/3", "a/1", "b/1", "a", "a/2", "a0", "a/10", "0"}) {
    this->MustPut(key, std::string("v-") + key);
  }
  EXPECT_EQ(this->ScanKeys("a/", "", 100), (std::vector<std::string>{"a/1", "a/10", "a/2", "a/3"}));
  EXPECT_EQ(this->ScanKeys("a/", "a/10", 100), (std::vector<std::string>{"a/2", "a/3"}));
  EXPECT_EQ(this->ScanKeys("a/", "a/15", 100), (std::vector<std::string>{"a/2", "a/3"}));
  EXPECT_EQ(this->ScanKeys("a/", "", 2), (std::vector<std::string>{"a/1", "a/10"}));
  EXPECT_EQ(this->ScanKeys("a/", "a/3", 100), std::vector<std::string>{});
  EXPECT_EQ(this->ScanKeys("a/", "b", 100), std::vector<std::string>{});
  EXPECT_EQ(this->ScanKeys("a/", "0", 100),
            (std::vector<std::string>{"a/1", "a/10", "a/2", "a/3"}));
  EXPECT_EQ(this->ScanKeys("a/", "", 0), std::vector<std::string>{});
  EXPECT_EQ(this->ScanKeys("", "", 100),
            (std::vector<std::string>{"0", "a", "a/1", "a/10", "a/2", "a/3", "a0", "b/1"}));
  EXPECT_EQ(this->ScanKeys("a", "a/3", 100), (std::vector<std::string>{"a0"}));
  EXPECT_EQ(this->ScanKeys("c", "", 100), std::vector<std::string>{});

  auto full = this->store().Scan("b/", "", 10);
  ASSERT_TRUE(full.has_value()) << ErrorText(full);
  ASSERT_EQ(full->size(), 1u);
  EXPECT_EQ((*full)[0].key, "b/1");
  EXPECT_EQ((*full)[0].entry.value, "v-b/1");
  EXPECT_GT((*full)[0].entry.version, 0u);

  // Paging with start_after = last key of the previous page visits every key once.
  std::vector<std::string> paged;
  std::string cursor;
  for (;;) {
    auto page = this->ScanKeys("a/", cursor, 1);
    if (page.empty()) break;
    paged.push_back(page[0]);
    cursor = page[0];
  }
  EXPECT_EQ(paged, (std::vector<std::string>{"a/1", "a/10", "a/2", "a/3"}));
}

TYPED_TEST(StoreConformanceTest, ScanLimitCountsOnlyLiveEntries) {
  const int64_t now = this->clock_.NowMs();
  this->MustPut("s/1", "x", now + 10);
  this->MustPut("s/2", "x", now + 10);
  this->MustPut("s/3", "x");
  this->MustPut("s/4", "x");
  this->clock_.AdvanceMs(10);
  EXPECT_EQ(this->ScanKeys("s/", "", 1), std::vector<std::string>{"s/3"});
  EXPECT_EQ(this->ScanKeys("s/", "", 5), (std::vector<std::string>{"s/3", "s/4"}));
}

TYPED_TEST(StoreConformanceTest, MultiGetKeepsRequestOrder) {
  this->MustPut("x", "1");
  this->MustPut("y", "2");
  const std::vector<std::string> keys = {"y", "missing", "x", "y"};
  auto result = this->store().MultiGet(keys);
  ASSERT_TRUE(result.has_value()) << ErrorText(result);
  ASSERT_EQ(result->size(), 4u);
  ASSERT_TRUE((*result)[0].has_value());
  EXPECT_EQ((*result)[0]->value, "2");
  EXPECT_FALSE((*result)[1].has_value());
  ASSERT_TRUE((*result)[2].has_value());
  EXPECT_EQ((*result)[2]->value, "1");
  ASSERT_TRUE((*result)[3].has_value());
  EXPECT_EQ((*result)[3]->value, "2");
  EXPECT_EQ((*result)[0]->version, this->VersionOf("y"));

  auto none = this->store().MultiGet(std::span<const std::string>());
  ASSERT_TRUE(none.has_value()) << ErrorText(none);
  EXPECT_TRUE(none->empty());
}

TYPED_TEST(StoreConformanceTest, BinaryKeysAndValues) {
  const std::string nul_key("k\0a", 3);
  const std::string nul_prefix("k\0", 2);
  const std::string high_key("k\xff", 2);
  const std::string all_high("\xff\xff", 2);
  const std::string all_high_longer("\xff\xff\x00", 3);
  const std::string binary_value("\0\xff\x01\0", 4);
  this->MustPut("k", "plain");
  this->MustPut(nul_key, binary_value);
  this->MustPut(high_key, "high");
  this->MustPut(all_high, "ff");
  this->MustPut(all_high_longer, "ff0");
  this->MustPut("\xff", "single");

  EXPECT_EQ(this->MustGet("k")->value, "plain");
  EXPECT_EQ(this->MustGet(nul_key)->value, binary_value);
  EXPECT_FALSE(this->MustGet(nul_prefix).has_value());
  EXPECT_EQ(this->MustGet(high_key)->value, "high");

  EXPECT_EQ(this->ScanKeys("k", "", 10), (std::vector<std::string>{"k", nul_key, high_key}));
  EXPECT_EQ(this->ScanKeys(nul_prefix, "", 10), std::vector<std::string>{nul_key});
  EXPECT_EQ(this->ScanKeys("k", "k", 10), (std::vector<std::string>{nul_key, high_key}));
  EXPECT_EQ(this->ScanKeys(all_high, "", 10),
            (std::vector<std::string>{all_high, all_high_longer}));
  EXPECT_EQ(this->ScanKeys("\xff", "", 10),
            (std::vector<std::string>{"\xff", all_high, all_high_longer}));

  WriteBatch batch;
  batch.ExpectVersion(nul_prefix, 0).Add(nul_prefix, 3);
  ASSERT_TRUE(this->store().Apply(batch).has_value());
  EXPECT_EQ(this->MustGet(nul_prefix)->value, "3");
  EXPECT_EQ(this->MustGet("k")->value, "plain");
}

TYPED_TEST(StoreConformanceTest, VersionsStrictlyIncrease) {
  uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string key = "v/" + std::to_string(i % 7);
    this->MustPut(key, std::to_string(i));
    const uint64_t version = this->VersionOf(key);
    EXPECT_GT(version, last);
    last = version;
  }
  // Delete and re-create: the new entry's version is above every earlier one.
  this->MustPut("r", "1");
  const uint64_t before = this->VersionOf("r");
  ASSERT_TRUE(this->store().Delete("r").has_value());
  this->MustPut("r", "2");
  EXPECT_GT(this->VersionOf("r"), before);
  // A failed batch does not move a key's version.
  WriteBatch failing;
  failing.Put("r", "3").ExpectVersion("r", 1);
  EXPECT_FALSE(this->store().Apply(failing).has_value());
  WriteBatch next;
  next.Add("r", 1);
  const uint64_t current = this->VersionOf("r");
  ASSERT_TRUE(this->store().Apply(next).has_value());
  EXPECT_GT(this->VersionOf("r"), current);
}

// A JSON-ish document {"count":N}, updated read-modify-write with optimistic concurrency.
int64_t CountOf(const std::string& json) {
  const size_t colon = json.find(':');
  int64_t value = -1;
  if (colon == std::string::npos) return value;
  std::from_chars(json.data() + colon + 1, json.data() + json.size(), value);
  return value;
}

TYPED_TEST(StoreConformanceTest, ConcurrentOptimisticIncrementsAreExact) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 500;
  Store& store = this->store();
  std::atomic<int> errors{0};
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        for (;;) {
          auto current = store.Get("doc");
          if (!current) {
            ++errors;
            return;
          }
          uint64_t version = 0;
          int64_t count = 0;
          if (current->has_value()) {
            version = (*current)->version;
            count = CountOf((*current)->value);
          }
          WriteBatch batch;
          batch.ExpectVersion("doc", version)
              .Put("doc", "{\"count\":" + std::to_string(count + 1) + "}");
          auto applied = store.Apply(batch);
          if (applied) break;
          if (applied.error().code != Errc::kConflict) {
            ++errors;
            return;
          }
          ++conflicts;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  auto final_doc = this->MustGet("doc");
  ASSERT_TRUE(final_doc.has_value());
  EXPECT_EQ(CountOf(final_doc->value), kThreads * kIncrements);
}

TYPED_TEST(StoreConformanceTest, ConcurrentAddsAreExact) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 500;
  Store& store = this->store();
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIncrements; ++i) {
        WriteBatch batch;
        batch.Add("hits", 1).Add("thread/" + std::to_string(t), 1);
        if (!store.Apply(batch)) ++errors;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(this->MustGet("hits")->value, std::to_string(kThreads * kIncrements));
  EXPECT_EQ(this->ScanKeys("thread/", "", 100).size(), static_cast<size_t>(kThreads));
}

TYPED_TEST(StoreConformanceTest, SyncAndName) {
  this->MustPut("k", "v");
  auto synced = this->store().Sync();
  EXPECT_TRUE(synced.has_value()) << ErrorText(synced);
  EXPECT_FALSE(this->store().Name().empty());
}

// ---- RocksDbStore only ----

class RocksDbStoreTest : public ::testing::Test {
 protected:
  RocksDbStoreTest() : harness_(clock_) {}

  FakeClock clock_;
  StoreHarness<RocksDbStore> harness_;
};

TEST_F(RocksDbStoreTest, ReopenKeepsDataAndVersionsKeepIncreasing) {
  const int64_t now = clock_.NowMs();
  ASSERT_TRUE(harness_.store().Put("k", "persisted").has_value());
  ASSERT_TRUE(harness_.store().Put("ttl", "soon", now + 1000).has_value());
  WriteBatch counter;
  counter.Add("c", 41);
  ASSERT_TRUE(harness_.store().Apply(counter).has_value());
  auto before = harness_.store().Get("k");
  ASSERT_TRUE(before.has_value() && before->has_value());
  const uint64_t version_before = (*before)->version;
  auto counter_before = harness_.store().Get("c");
  ASSERT_TRUE(counter_before.has_value() && counter_before->has_value());
  const uint64_t highest_before = (*counter_before)->version;

  harness_.Reopen();
  RocksDbStore& store = harness_.store();
  auto after = store.Get("k");
  ASSERT_TRUE(after.has_value()) << ErrorText(after);
  ASSERT_TRUE(after->has_value());
  EXPECT_EQ((*after)->value, "persisted");
  EXPECT_EQ((*after)->version, version_before);
  auto ttl = store.Get("ttl");
  ASSERT_TRUE(ttl.has_value() && ttl->has_value());
  EXPECT_EQ((*ttl)->expires_at_ms, now + 1000);

  WriteBatch more;
  more.Add("c", 1);
  auto applied = store.Apply(more);
  ASSERT_TRUE(applied.has_value()) << ErrorText(applied);
  EXPECT_EQ(applied->counters, std::vector<int64_t>{42});
  ASSERT_TRUE(store.Put("k", "rewritten").has_value());
  auto rewritten = store.Get("k");
  ASSERT_TRUE(rewritten.has_value() && rewritten->has_value());
  EXPECT_GT((*rewritten)->version, highest_before);
  ASSERT_TRUE(store.Put("new", "n").has_value());
  auto fresh = store.Get("new");
  ASSERT_TRUE(fresh.has_value() && fresh->has_value());
  EXPECT_GT((*fresh)->version, highest_before);

  // A second restart right away (no time for the clock seed to help much) still increases.
  const uint64_t last = (*fresh)->version;
  harness_.Reopen();
  ASSERT_TRUE(harness_.store().Put("new", "again").has_value());
  auto again = harness_.store().Get("new");
  ASSERT_TRUE(again.has_value() && again->has_value());
  EXPECT_GT((*again)->version, last);
}

TEST_F(RocksDbStoreTest, ExplicitCloseThenCallsAreUnavailable) {
  ASSERT_TRUE(harness_.store().Put("k", "v").has_value());
  auto closed = harness_.store().Close();
  ASSERT_TRUE(closed.has_value()) << ErrorText(closed);
  EXPECT_TRUE(harness_.store().Close().has_value());  // idempotent
  auto get = harness_.store().Get("k");
  ASSERT_FALSE(get.has_value());
  EXPECT_EQ(get.error().code, Errc::kUnavailable);
  harness_.Reopen();
  auto reopened = harness_.store().Get("k");
  ASSERT_TRUE(reopened.has_value() && reopened->has_value());
  EXPECT_EQ((*reopened)->value, "v");
}

TEST_F(RocksDbStoreTest, CompactionDropsExpiredEntries) {
  RocksDbStore& store = harness_.store();
  const int64_t now = clock_.NowMs();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(store.Put("e/" + std::to_string(i), "x", now + 1000).has_value());
  }
  ASSERT_TRUE(store.Put("keep/forever", "y").has_value());
  ASSERT_TRUE(store.Put("keep/later", "z", now + 100'000).has_value());

  auto before = store.RawKeyCountForTest();
  ASSERT_TRUE(before.has_value()) << ErrorText(before);
  EXPECT_EQ(*before, 12u);
  ASSERT_TRUE(store.CompactForTest().has_value());  // nothing expired yet
  EXPECT_EQ(*store.RawKeyCountForTest(), 12u);

  clock_.AdvanceMs(1000);
  EXPECT_EQ(*store.RawKeyCountForTest(), 12u);  // invisible, but still on disk
  auto compacted = store.CompactForTest();
  ASSERT_TRUE(compacted.has_value()) << ErrorText(compacted);
  EXPECT_EQ(*store.RawKeyCountForTest(), 2u);
  EXPECT_EQ(store.Get("keep/forever")->value().value, "y");
  EXPECT_EQ(store.Get("keep/later")->value().value, "z");

  // Dropped entries stay gone after a restart (no older version resurfaces).
  harness_.Reopen();
  EXPECT_EQ(*harness_.store().RawKeyCountForTest(), 2u);
  clock_.SetMs(now);  // even if the clock goes back
  EXPECT_FALSE(harness_.store().Get("e/0")->has_value());
}

// Regression (issue 3 benchmarks): one SST whose index is larger than a block cache shard
// (512 KB with the harness's 8 MB cache, 2.5 MB in production after a million-voter burst)
// must not make every point lookup re-read its index and filter: they are partitioned, and the
// partitions stay cached. Before the fix, each Get below read the whole index from the file.
TEST_F(RocksDbStoreTest, LargeTableIndexAndFilterStayCached) {
  RocksDbStore& store = harness_.store();
  // 60k keys of ~800 bytes that differ only at the end: ~12k data blocks, a 1 MB index (the
  // stem compresses away on disk, not in the cache).
  const std::string stem(800, 'k');
  auto key_of = [&stem](int i) {
    char digits[16];
    std::snprintf(digits, sizeof(digits), "%08d", i);
    return stem + digits;
  };
  constexpr int kKeys = 60'000;
  for (int start = 0; start < kKeys; start += 1000) {
    WriteBatch batch;
    for (int i = start; i < start + 1000; ++i) batch.Put(key_of(i), "v" + std::to_string(i));
    ASSERT_TRUE(store.Apply(batch).has_value());
  }
  ASSERT_TRUE(store.CompactForTest().has_value());  // one file in the bottom level (not pinned)

  std::vector<std::string> probes;
  for (int i = 0; i < 300; ++i) probes.push_back(key_of((i * 7919) % kKeys));
  for (int i = 0; i < 100; ++i) probes.push_back(stem + "absent" + std::to_string(i));
  auto probe_all = [&] {
    for (size_t i = 0; i < probes.size(); ++i) {
      auto got = store.Get(probes[i]);
      ASSERT_TRUE(got.has_value()) << ErrorText(got);
      EXPECT_EQ(got->has_value(), i < 300) << probes[i];
    }
  };
  RocksDbStore::TakeMetadataBlockReadsForTest();  // start counting on this thread
  probe_all();                                     // warms the partitions it touches
  const uint64_t first_pass = RocksDbStore::TakeMetadataBlockReadsForTest();
  probe_all();
  const uint64_t second_pass = RocksDbStore::TakeMetadataBlockReadsForTest();
  // Warm: nothing (a few evictions tolerated) is read again; unpartitioned, every lookup of the
  // second pass read the whole index again (>= 300 reads).
  EXPECT_LT(second_pass, 20u) << "first pass " << first_pass;
}

TEST(RocksDbStoreOpenTest, SyncWritesAndBadPath) {
  FakeClock clock;
  StoreHarness<RocksDbStore> harness(clock, /*sync_writes=*/true);
  ASSERT_TRUE(harness.store().Put("k", "v").has_value());
  EXPECT_TRUE(harness.store().Sync().has_value());

  RocksDbOptions empty;
  auto no_path = RocksDbStore::Open(empty, clock);
  ASSERT_FALSE(no_path.has_value());
  EXPECT_EQ(no_path.error().code, Errc::kInvalidArgument);

  RocksDbOptions bad;
  bad.path = "/proc/medkit-cannot-create-here/db";
  auto failed = RocksDbStore::Open(bad, clock);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, Errc::kInternal);
  EXPECT_NE(failed.error().message.find("rocksdb"), std::string::npos);
}

// ---- StoreWrapper ----

class FailingApplyStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<ApplyResult> Apply(const WriteBatch& batch) override {
    ++apply_calls;
    if (fail) return core::MakeError(Errc::kUnavailable, "injected");
    return StoreWrapper::Apply(batch);
  }
  bool fail = false;
  int apply_calls = 0;
};

TEST(StoreWrapperTest, ForwardsAndAllowsInjectingFailures) {
  FakeClock clock;
  MemoryStore target(clock);
  FailingApplyStore wrapper(target);
  EXPECT_EQ(wrapper.Name(), "memory");
  ASSERT_TRUE(wrapper.Put("k", "v").has_value());  // convenience goes through Apply()
  EXPECT_EQ(wrapper.apply_calls, 1);
  EXPECT_EQ(wrapper.Get("k")->value().value, "v");
  const std::vector<std::string> keys = {"k"};
  EXPECT_EQ(wrapper.MultiGet(keys)->size(), 1u);
  EXPECT_EQ(wrapper.Scan("", "", 10)->size(), 1u);
  EXPECT_TRUE(wrapper.Sync().has_value());

  wrapper.fail = true;
  auto failed = wrapper.Delete("k");
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, Errc::kUnavailable);
  EXPECT_EQ(target.Get("k")->value().value, "v");
}

TEST(MemoryStoreTest, SweepDropsExpiredEntriesPhysically) {
  FakeClock clock;
  MemoryStore store(clock);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store.Put("e/" + std::to_string(i), "x", clock.NowMs() + 10).has_value());
  }
  EXPECT_EQ(store.RawSizeForTest(), 100u);
  clock.AdvanceMs(10);
  for (int i = 0; i < 1024; ++i) ASSERT_TRUE(store.Put("live", std::to_string(i)).has_value());
  EXPECT_EQ(store.RawSizeForTest(), 1u);
}

}  // namespace
}  // namespace medkit::storage

namespace medkit::storage {
namespace {

// ApplyResult::version is the version Get() then reports for every key the batch wrote (the
// document cache relies on it), and FlushWrites() succeeds whether or not anything is pending.
TYPED_TEST(StoreConformanceTest, ApplyReportsTheVersionItWrote) {
  WriteBatch batch;
  batch.Put("a", "1").Put("b", "2").Add("c", 5);
  auto applied = this->store().Apply(batch);
  ASSERT_TRUE(applied.has_value());
  EXPECT_GT(applied->version, 0u);
  for (const char* key : {"a", "b", "c"}) {
    auto entry = this->store().Get(key);
    ASSERT_TRUE(entry.has_value());
    ASSERT_TRUE(entry->has_value()) << key;
    EXPECT_EQ((*entry)->version, applied->version) << key;
  }
  WriteBatch again;
  again.Put("a", "3");
  auto second = this->store().Apply(again);
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->version, applied->version);
  EXPECT_TRUE(this->store().FlushWrites().has_value());
  EXPECT_TRUE(this->store().FlushWrites().has_value());
}

}  // namespace
}  // namespace medkit::storage
