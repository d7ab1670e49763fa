// DatastreamService (spec 5.13): events published and queued per channel in order, the bound,
// the lifetime, and refusals that leave the queue unchanged.
#include "core/datastream/datastream_service.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/events/event_bus.h"
#include "storage/memory_store.h"

namespace medkit::core::datastream {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;

Identity Viewer(std::string channel = "chan", std::string client = "ext") {
  Identity id;
  id.client_id = std::move(client);
  id.role = Role::kViewer;
  id.channel_id = std::move(channel);
  id.opaque_user_id = "Aanon";
  return id;
}

class DatastreamTest : public ::testing::Test {
 protected:
  DatastreamTest() : store_(clock_), recorder_(bus_) { Reset({}); }
  void Reset(DatastreamLimits limits) {
    service_ =
        std::make_unique<DatastreamService>(store_, clock_, auth::Stage::kSandbox, limits, &bus_);
  }
  std::vector<QueuedEvent> Pending(std::string channel = "chan", int64_t after = 0) {
    auto p = service_->Pending("ext", channel, after, 10000);
    EXPECT_TRUE(p);
    return p ? *p : std::vector<QueuedEvent>{};
  }
  static std::string Payload(std::string_view event, int64_t ts) {
    return "{\"event\":" + std::string(event) + ",\"timestamp\":" + std::to_string(ts) + "}";
  }

  FakeClock clock_{1'700'000'000'000};
  storage::MemoryStore store_;
  events::EventBus bus_;
  events::EventRecorder recorder_;
  std::unique_ptr<DatastreamService> service_;
};

TEST_F(DatastreamTest, PublishesAndQueuesInOrder) {
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(service_->Post(Viewer(), json::parse("{\"n\":" + std::to_string(i) + "}")));
    clock_.AdvanceMs(1000);
  }
  auto events = recorder_.Named("datastream");
  ASSERT_EQ(events.size(), 6u);
  auto queued = Pending();
  ASSERT_EQ(queued.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    std::string want = Payload("{\"n\":" + std::to_string(i) + "}", 1'700'000'000 + i);
    EXPECT_EQ(events[i].payload_json, want);
    EXPECT_EQ(events[i].client_id, "ext");
    EXPECT_EQ(events[i].channel_id, "chan");
    EXPECT_EQ(queued[i].seq, i + 1);
    EXPECT_EQ(queued[i].payload_json, want);
  }
  auto after = Pending("chan", 4);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].seq, 5);
  EXPECT_TRUE(Pending("other").empty());
  auto other_client = service_->Pending("ext2", "chan", 0, 100);
  EXPECT_TRUE(other_client->empty());
}

TEST_F(DatastreamTest, QueueIsBounded) {
  DatastreamLimits limits;
  limits.max_events = 5;
  Reset(limits);
  for (int i = 1; i <= 8; ++i) {
    ASSERT_TRUE(service_->Post(Viewer(), json::parse("{\"n\":" + std::to_string(i) + "}")));
  }
  auto queued = Pending();
  ASSERT_EQ(queued.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(queued[i].seq, 4 + i);
    EXPECT_EQ(queued[i].payload_json,
              Payload("{\"n\":" + std::to_string(4 + i) + "}", 1'700'000'000));
  }
  EXPECT_EQ(recorder_.Named("datastream").size(), 8u);
}

TEST_F(DatastreamTest, EntriesExpire) {
  ASSERT_TRUE(service_->Post(Viewer(), json::parse("{\"a\":1}")));
  clock_.AdvanceMs(4 * 60 * 1000);
  ASSERT_TRUE(service_->Post(Viewer(), json::parse("{\"a\":2}")));
  clock_.AdvanceMs(60 * 1000);  // 5 minutes after the first
  auto queued = Pending();
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].seq, 2);
  clock_.AdvanceMs(4 * 60 * 1000);
  EXPECT_TRUE(Pending().empty());
  // The sequence goes on (the counter outlives the entries).
  ASSERT_TRUE(service_->Post(Viewer(), json::parse("{\"a\":3}")));
  EXPECT_EQ(Pending().at(0).seq, 3);
}

TEST_F(DatastreamTest, RefusalsChangeNothing) {
  auto r = service_->Post(Viewer(), json::parse("[1,2]"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message, "Malformed input body");
  r = service_->Post(Viewer(""), json::parse("{}"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "channel id required");
  std::string big = "{\"x\":\"" + std::string(16 * 1024, 'a') + "\"}";
  r = service_->Post(Viewer(), json::parse(big));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "datastream event too large");
  std::string fits = "{\"x\":\"" + std::string(16 * 1024 - 8, 'a') + "\"}";
  ASSERT_EQ(fits.size(), 16u * 1024);
  EXPECT_TRUE(service_->Post(Viewer(), json::parse(fits)));
  EXPECT_EQ(Pending().size(), 1u);
  EXPECT_EQ(recorder_.Named("datastream").size(), 1u);
}

TEST_F(DatastreamTest, ConcurrentPostsGetDistinctSequences) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        ASSERT_TRUE(service_->Post(Viewer(), json::parse("{\"t\":" + std::to_string(t) + "}")));
      }
    });
  }
  for (auto& t : threads) t.join();
  auto queued = Pending();
  ASSERT_EQ(queued.size(), 800u);
  for (size_t i = 0; i < queued.size(); ++i) EXPECT_EQ(queued[i].seq, static_cast<int64_t>(i + 1));
}

}  // namespace
}  // namespace medkit::core::datastream
