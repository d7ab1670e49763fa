// AccumulateService (spec 5.6) on the memory store and on RocksDB, with a FakeClock: entry
// shape, time order (also within one millisecond), the exclusive start, channel filtering by
// role, the size limit, expiry, paging that never splits a millisecond, and `start` parsing.
#include "core/accumulate/accumulate_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"

namespace medkit::core::accumulate {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr int64_t kStart = 1'700'000'000'000;
constexpr int64_t kHourMs = 3600LL * 1000;

Identity Who(Role role, std::string channel = "chan1", std::string user = "u1",
             std::string client = "ext1") {
  Identity who;
  who.client_id = std::move(client);
  who.role = role;
  who.channel_id = std::move(channel);
  who.user_id = std::move(user);
  who.opaque_user_id = who.user_id.empty() ? "Aanon" : "U" + who.user_id;
  return who;
}

struct Page {
  std::vector<json::value> data;
  int64_t latest = -1;
};

class AccumulateTest : public ::testing::TestWithParam<std::string> {
 protected:
  AccumulateTest() : clock_(kStart) {}
  void SetUp() override {
    if (GetParam() == "rocksdb") {
      dir_ = std::filesystem::temp_directory_path() /
             ("accumulate_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter_));
      std::filesystem::remove_all(dir_);
      storage::RocksDbOptions options;
      options.path = dir_.string();
      auto db = storage::RocksDbStore::Open(options, clock_);
      ASSERT_TRUE(db.has_value()) << db.error().message;
      store_ = std::move(*db);
    } else {
      store_ = std::make_unique<storage::MemoryStore>(clock_);
    }
    Make({});
  }
  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Make(AccumulateLimits limits) {
    service_ = std::make_unique<AccumulateService>(*store_, clock_, Stage::kSandbox, limits);
  }
  void Post(const Identity& who, std::string_view id, std::string_view data) {
    auto r = service_->Append(who, id, json::parse(data));
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  }
  Page Get(const Identity& who, std::string_view id, int64_t start) {
    auto r = service_->Read(who, id, start);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    Page page;
    if (!r) return page;
    json::value v = json::parse(*r);
    EXPECT_EQ(v.as_object().size(), 2u) << *r;
    for (const auto& e : v.at("data").as_array()) page.data.push_back(e);
    page.latest = v.at("latest").as_int64();
    return page;
  }
  // The "n" member of each entry's data.
  static std::vector<int64_t> Ns(const Page& page) {
    std::vector<int64_t> out;
    for (const auto& e : page.data) out.push_back(e.at("data").at("n").as_int64());
    return out;
  }

  static inline int counter_ = 0;
  FakeClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<AccumulateService> service_;
  const Identity admin_ = Who(Role::kAdmin, "chanA", "admin1");
};

INSTANTIATE_TEST_SUITE_P(Stores, AccumulateTest, ::testing::Values("memory", "rocksdb"));

TEST_P(AccumulateTest, EntryShape) {
  Post(Who(Role::kViewer, "chan1", "42"), "buf", R"({"x":[1,"two"]})");
  Identity anonymous = Who(Role::kViewer, "chan1", "");
  anonymous.opaque_user_id = "Aopaque";
  clock_.AdvanceMs(5);
  Post(anonymous, "buf", "{}");
  Page page = Get(admin_, "buf", 0);
  ASSERT_EQ(page.data.size(), 2u);
  EXPECT_EQ(page.data[0], json::parse(R"({"observed":1700000000000,"channel_id":"chan1",
      "opaque_user_id":"U42","user_id":"42","data":{"x":[1,"two"]}})"));
  EXPECT_EQ(page.data[1], json::parse(R"({"observed":1700000000005,"channel_id":"chan1",
      "opaque_user_id":"Aopaque","user_id":"","data":{}})"));
  EXPECT_EQ(page.latest, kStart + 5);
  // Field order as documented.
  EXPECT_EQ(json::serialize(page.data[1]),
            R"({"observed":1700000000005,"channel_id":"chan1","opaque_user_id":"Aopaque",)"
            R"("user_id":"","data":{}})");
}

TEST_P(AccumulateTest, EmptyBufferReadsAsEmpty) {
  EXPECT_EQ(*service_->Read(admin_, "none", 0), R"({"data":[],"latest":0})");
  EXPECT_EQ(*service_->Read(Who(Role::kBroadcaster), "none", 0), R"({"data":[],"latest":0})");
}

TEST_P(AccumulateTest, TimeOrderAndEqualTimestamps) {
  // Three entries in one millisecond, then one earlier-sorting user a millisecond later.
  for (int n = 0; n < 3; ++n)
    Post(Who(Role::kViewer, "chan1", "z" + std::to_string(n)), "b",
         R"({"n":)" + std::to_string(n) + "}");
  clock_.AdvanceMs(1);
  Post(Who(Role::kViewer, "chan1", "a"), "b", R"({"n":3})");
  clock_.AdvanceMs(1000);
  Post(Who(Role::kViewer, "chan1", "a"), "b", R"({"n":4})");
  Page page = Get(admin_, "b", 0);
  EXPECT_EQ(Ns(page), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(page.latest, kStart + 1001);
  // Reads are deterministic.
  EXPECT_EQ(*service_->Read(admin_, "b", 0), *service_->Read(admin_, "b", 0));
}

TEST_P(AccumulateTest, StartIsAnExclusiveLowerBound) {
  for (int n = 0; n < 4; ++n) {
    Post(Who(Role::kViewer), "b", R"({"n":)" + std::to_string(n) + "}");
    if (n != 1) clock_.AdvanceMs(10);  // n=1 and n=2 share a millisecond
  }
  EXPECT_EQ(Ns(Get(admin_, "b", 0)), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Ns(Get(admin_, "b", kStart - 1)), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Ns(Get(admin_, "b", kStart)), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Ns(Get(admin_, "b", kStart + 9)), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Ns(Get(admin_, "b", kStart + 10)), (std::vector<int64_t>{3}));
  Page last = Get(admin_, "b", kStart + 20);
  EXPECT_TRUE(last.data.empty());
  EXPECT_EQ(last.latest, 0);
  EXPECT_EQ(Ns(Get(admin_, "b", -5)), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(Get(admin_, "b", INT64_MAX).data.empty());
}

TEST_P(AccumulateTest, ChannelFilteringByRole) {
  Post(Who(Role::kViewer, "chan1", "a"), "b", R"({"n":1})");
  clock_.AdvanceMs(1);
  Post(Who(Role::kViewer, "chan2", "b"), "b", R"({"n":2})");
  clock_.AdvanceMs(1);
  Post(Who(Role::kBroadcaster, "chan1", "chan1"), "b", R"({"n":3})");
  clock_.AdvanceMs(1);
  Post(Who(Role::kViewer, "chan1", "a", "ext2"), "b", R"({"n":99})");  // another extension
  EXPECT_EQ(Ns(Get(Who(Role::kBroadcaster, "chan1", "chan1"), "b", 0)),
            (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(Ns(Get(Who(Role::kBroadcaster, "chan2", "chan2"), "b", 0)), (std::vector<int64_t>{2}));
  EXPECT_TRUE(Get(Who(Role::kBroadcaster, "chan3", "chan3"), "b", 0).data.empty());
  EXPECT_EQ(Ns(Get(Who(Role::kAdmin, "chan9"), "b", 0)), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Ns(Get(Who(Role::kBackend, ""), "b", 0)), (std::vector<int64_t>{1, 2, 3}));
  auto viewer = service_->Read(Who(Role::kViewer), "b", 0);
  ASSERT_FALSE(viewer.has_value());
  EXPECT_EQ(viewer.error().code, Errc::kForbidden);
  EXPECT_EQ(viewer.error().message, "The JWT role is not allowed to perform this operation.");
  // Buffers are separate.
  EXPECT_TRUE(Get(admin_, "other", 0).data.empty());
  EXPECT_EQ(Ns(Get(Who(Role::kAdmin, "x", "y", "ext2"), "b", 0)), (std::vector<int64_t>{99}));
}

TEST_P(AccumulateTest, SizeLimitAndShape) {
  const std::string fits = R"({"s":")" + std::string(247, 'x') + R"("})";  // 255 bytes
  ASSERT_EQ(fits.size(), 255u);
  Post(Who(Role::kViewer), "b", fits);
  const std::string too_big = R"({"s":")" + std::string(248, 'x') + R"("})";  // 256 bytes
  auto r = service_->Append(Who(Role::kViewer), "b", json::parse(too_big));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message, "accumulate payload too large");
  for (std::string_view bad : {"[1]", "1", "\"s\"", "null", "true"}) {
    auto rr = service_->Append(Who(Role::kViewer), "b", json::parse(bad));
    ASSERT_FALSE(rr.has_value()) << bad;
    EXPECT_EQ(rr.error().message, "Malformed json body");
  }
  auto long_id = service_->Append(Who(Role::kViewer), std::string(65, 'i'), json::parse("{}"));
  ASSERT_FALSE(long_id.has_value());
  EXPECT_EQ(long_id.error().message, "accumulate id too long");
  auto control = service_->Read(admin_, "a\x1f", 0);
  ASSERT_FALSE(control.has_value());
  EXPECT_EQ(control.error().code, Errc::kInvalidArgument);
  Page page = Get(admin_, "b", 0);
  ASSERT_EQ(page.data.size(), 1u);
  EXPECT_EQ(page.data[0].at("data"), json::parse(fits));
}

TEST_P(AccumulateTest, DefaultId) {
  Post(Who(Role::kViewer), "", R"({"n":1})");
  EXPECT_EQ(Ns(Get(admin_, "default", 0)), (std::vector<int64_t>{1}));
  EXPECT_EQ(Ns(Get(admin_, "", 0)), (std::vector<int64_t>{1}));
}

TEST_P(AccumulateTest, EntriesExpireTwentyFourHoursAfterTheirWrite) {
  Post(Who(Role::kViewer), "b", R"({"n":1})");
  clock_.AdvanceMs(12 * kHourMs);
  Post(Who(Role::kViewer), "b", R"({"n":2})");
  clock_.AdvanceMs(12 * kHourMs - 1);
  EXPECT_EQ(Ns(Get(admin_, "b", 0)), (std::vector<int64_t>{1, 2}));
  clock_.AdvanceMs(1);
  EXPECT_EQ(Ns(Get(admin_, "b", 0)), (std::vector<int64_t>{2}));
  EXPECT_EQ(Ns(Get(Who(Role::kBroadcaster), "b", 0)), (std::vector<int64_t>{2}));
  clock_.AdvanceMs(12 * kHourMs);
  Page page = Get(admin_, "b", 0);
  EXPECT_TRUE(page.data.empty());
  EXPECT_EQ(page.latest, 0);
}

TEST_P(AccumulateTest, PagesNeverSplitAMillisecond) {
  AccumulateLimits limits;
  limits.max_read_entries = 3;
  Make(limits);
  // Millisecond groups of sizes 2, 2, 1, 5 (larger than a page), 1.
  int n = 0;
  for (int size : {2, 2, 1, 5, 1}) {
    for (int i = 0; i < size; ++i)
      Post(Who(Role::kViewer), "b", R"({"n":)" + std::to_string(n++) + "}");
    clock_.AdvanceMs(7);
  }
  Page p1 = Get(admin_, "b", 0);
  EXPECT_EQ(Ns(p1), (std::vector<int64_t>{0, 1}));  // 3 would split the second millisecond
  Page p2 = Get(admin_, "b", p1.latest);
  EXPECT_EQ(Ns(p2), (std::vector<int64_t>{2, 3, 4}));
  Page p3 = Get(admin_, "b", p2.latest);
  EXPECT_EQ(Ns(p3), (std::vector<int64_t>{5, 6, 7, 8, 9}));  // one millisecond, kept whole
  Page p4 = Get(admin_, "b", p3.latest);
  EXPECT_EQ(Ns(p4), (std::vector<int64_t>{10}));
  Page p5 = Get(admin_, "b", p4.latest);
  EXPECT_TRUE(p5.data.empty());
  EXPECT_EQ(p5.latest, 0);
  // The broadcaster index pages the same way.
  EXPECT_EQ(Ns(Get(Who(Role::kBroadcaster), "b", 0)), (std::vector<int64_t>{0, 1}));
}

TEST_P(AccumulateTest, ConcurrentAppendsAreAllKept) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(service_
                        ->Append(Who(Role::kViewer, t % 2 ? "odd" : "even"), "b",
                                 json::parse(R"({"n":)" + std::to_string(t * 1000 + i) + "}"))
                        .has_value());
      }
    });
  }
  for (auto& th : threads) th.join();
  Page all = Get(admin_, "b", 0);  // one millisecond: returned whole
  EXPECT_EQ(all.data.size(), 400u);
  std::vector<int64_t> ns = Ns(all);
  std::sort(ns.begin(), ns.end());
  EXPECT_EQ(std::unique(ns.begin(), ns.end()), ns.end());
  EXPECT_EQ(Get(Who(Role::kBroadcaster, "odd"), "b", 0).data.size(), 200u);
  EXPECT_EQ(Get(Who(Role::kBroadcaster, "even"), "b", 0).data.size(), 200u);
}

TEST(AccumulateParseStart, Values) {
  EXPECT_EQ(*AccumulateService::ParseStart(std::nullopt), 0);
  EXPECT_EQ(*AccumulateService::ParseStart("0"), 0);
  EXPECT_EQ(*AccumulateService::ParseStart("1634401498121"), 1634401498121);
  EXPECT_EQ(*AccumulateService::ParseStart("-20"), 0);
  EXPECT_EQ(*AccumulateService::ParseStart("007"), 7);
  EXPECT_EQ(*AccumulateService::ParseStart("999999999999999999"), 999999999999999999);
  for (std::string_view bad : {"", "undefined", "null", "1.5", "1e3", " 1", "1 ", "+1", "-", "0x10",
                               "1234567890123456789", "NaN"}) {
    auto r = AccumulateService::ParseStart(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(r.error().message, "Malformed start parameter");
  }
}

}  // namespace
}  // namespace medkit::core::accumulate
