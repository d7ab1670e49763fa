// JsonStoreService (spec 5.5) on the memory store and on RocksDB, with a FakeClock: round trip,
// 404, global vs channel scope, roles, id rules, the size limit, events and expiry.
#include "core/jsonstore/json_store_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"

namespace medkit::core::jsonstore {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

Identity Who(Role role, std::string channel = "chan1", std::string user = "u1",
             std::string client = "ext1") {
  Identity who;
  who.client_id = std::move(client);
  who.role = role;
  who.channel_id = std::move(channel);
  who.user_id = std::move(user);
  who.opaque_user_id = "U" + who.user_id;
  return who;
}

class JsonStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "rocksdb") {
      dir_ = std::filesystem::temp_directory_path() /
             ("json_store_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter_));
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
  void Make(JsonStoreLimits limits, Stage stage = Stage::kSandbox) {
    service_ = std::make_unique<JsonStoreService>(*store_, clock_, stage, limits, &bus_);
  }
  void Write(const Identity& who, std::string_view id, std::string_view text) {
    auto r = service_->Write(who, id, json::parse(text));
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  }
  // The stored object, or "404" / the error message.
  std::string Read(const Identity& who, std::string_view id) {
    auto r = service_->Read(who, id);
    if (r) return *r;
    return r.error().code == Errc::kNotFound ? "404:" + r.error().message : r.error().message;
  }

  static inline int counter_ = 0;
  FakeClock clock_;
  events::EventBus bus_;
  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<JsonStoreService> service_;
};

INSTANTIATE_TEST_SUITE_P(Stores, JsonStoreTest, ::testing::Values("memory", "rocksdb"));

TEST_P(JsonStoreTest, RoundTripAndNotFound) {
  EXPECT_EQ(Read(Who(Role::kViewer), "basecamp"), "404:Not Found");
  Write(Who(Role::kBroadcaster, "chan1", "chan1"), "basecamp", R"({"a":1,"b":[true,null,"x"]})");
  EXPECT_EQ(Read(Who(Role::kViewer), "basecamp"), R"({"a":1,"b":[true,null,"x"]})");
  // A write replaces the object.
  Write(Who(Role::kBackend), "basecamp", R"({"c":{}})");
  EXPECT_EQ(Read(Who(Role::kViewer, "chan1", "u2"), "basecamp"), R"({"c":{}})");
  // Empty id = "default".
  Write(Who(Role::kAdmin), "", R"({"d":1})");
  EXPECT_EQ(Read(Who(Role::kViewer), "default"), R"({"d":1})");
  EXPECT_EQ(Read(Who(Role::kViewer), "Default"), "404:Not Found");  // ids are case-sensitive
}

TEST_P(JsonStoreTest, ChannelAndGlobalScopes) {
  Write(Who(Role::kBroadcaster, "chan1", "chan1"), "k", R"({"ch":1})");
  Write(Who(Role::kBroadcaster, "chan2", "chan2"), "k", R"({"ch":2})");
  EXPECT_EQ(Read(Who(Role::kViewer, "chan1"), "k"), R"({"ch":1})");
  EXPECT_EQ(Read(Who(Role::kViewer, "chan2"), "k"), R"({"ch":2})");
  EXPECT_EQ(Read(Who(Role::kViewer, "chan3"), "k"), "404:Not Found");
  Write(Who(Role::kBackend, ""), "global_k", R"({"g":1})");
  Write(Who(Role::kBroadcaster, "chan2", "chan2"), "global-k", R"({"g":2})");
  for (std::string channel : {"chan1", "chan2", "chan3", ""}) {
    EXPECT_EQ(Read(Who(Role::kViewer, channel), "global_k"), R"({"g":1})");
    EXPECT_EQ(Read(Who(Role::kViewer, channel), "global-k"), R"({"g":2})");
  }
  // Other extension, other stage: separate.
  EXPECT_EQ(Read(Who(Role::kViewer, "chan1", "u1", "ext2"), "k"), "404:Not Found");
  Make({}, Stage::kProduction);
  EXPECT_EQ(Read(Who(Role::kViewer, "chan1"), "k"), "404:Not Found");
  // Channel-scoped ids need a channel.
  EXPECT_EQ(Read(Who(Role::kBackend, ""), "k"), "channel id required");
}

TEST_P(JsonStoreTest, OnlyPrivilegedRolesWrite) {
  Write(Who(Role::kBroadcaster, "chan1", "chan1"), "k", R"({"v":1})");
  auto r = service_->Write(Who(Role::kViewer), "k", json::parse(R"({"v":2})"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kForbidden);
  EXPECT_EQ(r.error().message, "The JWT role is not allowed to perform this operation.");
  EXPECT_EQ(Read(Who(Role::kViewer), "k"), R"({"v":1})");
}

TEST_P(JsonStoreTest, IdRules) {
  const std::string max_id(64, 'a');
  Write(Who(Role::kAdmin), max_id, "{}");
  EXPECT_EQ(Read(Who(Role::kViewer), max_id), "{}");
  for (std::string bad : {std::string(65, 'a'), std::string("a-b"), std::string("a.b"),
                          std::string("a b"), std::string("a\x1f"), std::string("global-"),
                          std::string("global-a-b"), std::string("\xc3\xa9")}) {
    auto w = service_->Write(Who(Role::kAdmin), bad, json::parse("{}"));
    ASSERT_FALSE(w.has_value()) << bad;
    EXPECT_EQ(w.error().code, Errc::kInvalidArgument);
    auto rd = service_->Read(Who(Role::kViewer), bad);
    ASSERT_FALSE(rd.has_value()) << bad;
    EXPECT_EQ(rd.error().code, Errc::kInvalidArgument);
  }
}

TEST_P(JsonStoreTest, SizeLimit) {
  const std::string fits = R"({"s":")" + std::string(2039, 'x') + R"("})";  // 2047 bytes
  ASSERT_EQ(fits.size(), 2047u);
  Write(Who(Role::kAdmin), "k", fits);
  const std::string too_big = R"({"s":")" + std::string(2040, 'x') + R"("})";  // 2048 bytes
  auto r = service_->Write(Who(Role::kAdmin), "k", json::parse(too_big));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message, "document too large");
  for (std::string_view bad : {"[]", "1", "\"x\"", "null"}) {
    auto rr = service_->Write(Who(Role::kAdmin), "k", json::parse(bad));
    ASSERT_FALSE(rr.has_value()) << bad;
    EXPECT_EQ(rr.error().message, "Malformed json body");
  }
  EXPECT_EQ(Read(Who(Role::kViewer), "k"), fits);
  // Configurable.
  JsonStoreLimits limits;
  limits.value_size_limit = 10;
  Make(limits);
  Write(Who(Role::kAdmin), "small", R"({"a":12})");  // 8 bytes
  EXPECT_FALSE(service_->Write(Who(Role::kAdmin), "small", json::parse(R"({"a":1234})")));
}

TEST_P(JsonStoreTest, WritesPublishUpdates) {
  events::EventRecorder recorder(bus_);
  Write(Who(Role::kBroadcaster, "chan1", "chan1"), "basecamp", R"({"a":1})");
  Write(Who(Role::kBackend, "chan7"), "global_cfg", R"({"g":true})");
  (void)service_->Write(Who(Role::kViewer), "basecamp", json::parse(R"({"no":1})"));
  (void)service_->Write(Who(Role::kAdmin), "basecamp", json::parse(R"([1])"));
  auto events = recorder.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].client_id, "ext1");
  EXPECT_EQ(events[0].channel_id, "chan1");
  EXPECT_EQ(events[0].name, "json_store_update:basecamp");
  EXPECT_EQ(json::parse(events[0].payload_json),
            json::parse(R"({"id":"basecamp","value":{"a":1}})"));
  EXPECT_EQ(events[0].at_ms, clock_.NowMs());
  EXPECT_EQ(events[1].channel_id, "");  // global: extension-wide
  EXPECT_EQ(events[1].name, "json_store_update:global_cfg");
  EXPECT_EQ(json::parse(events[1].payload_json),
            json::parse(R"({"id":"global_cfg","value":{"g":true}})"));
  // Default id.
  Write(Who(Role::kAdmin), "", "{}");
  EXPECT_EQ(recorder.Named("json_store_update:default").size(), 1u);
}

TEST_P(JsonStoreTest, ExpiresFourteenDaysAfterTheLastWrite) {
  Write(Who(Role::kAdmin), "k", R"({"v":1})");
  clock_.AdvanceMs(10 * kDayMs);
  Write(Who(Role::kAdmin), "k", R"({"v":2})");  // a new insertion: 14 days from now
  clock_.AdvanceMs(14 * kDayMs - 1);
  EXPECT_EQ(Read(Who(Role::kViewer), "k"), R"({"v":2})");
  clock_.AdvanceMs(1);
  EXPECT_EQ(Read(Who(Role::kViewer), "k"), "404:Not Found");
}

}  // namespace
}  // namespace medkit::core::jsonstore
