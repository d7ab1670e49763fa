// Viewer messaging core: encoding (plain, compressed, fragmented; the MEDKit client's decoder
// inverted), the fanout (envelope, targets, vote_update throttling with the fake clock, bus
// events), the per-caller rate limiter, and MessagingService's roles and refusals.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "core/broadcast/messaging_service.h"
#include "core/broadcast/rate_limiter.h"
#include "core/broadcast/viewer_fanout.h"
#include "core/broadcast/viewer_message.h"
#include "core/clock.h"
#include "core/events/event_bus.h"

namespace medkit::core::broadcast {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;

class RecordingSink : public ViewerSink {
 public:
  void Deliver(const ViewerMessagePtr& m) override {
    std::lock_guard lock(mu_);
    messages_.push_back(m);
  }
  std::vector<ViewerMessagePtr> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::vector<ViewerMessagePtr> Named(const std::string& suffix) const {
    std::vector<ViewerMessagePtr> out;
    for (const auto& m : messages()) {
      if (m->event.size() >= suffix.size() &&
          m->event.compare(m->event.size() - suffix.size(), suffix.size(), suffix) == 0) {
        out.push_back(m);
      }
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<ViewerMessagePtr> messages_;
};

std::string RandomText(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s;
  const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  for (size_t i = 0; i < n; ++i) s.push_back(alphabet[rng() % (sizeof alphabet - 1)]);
  return s;
}

TEST(EncodeParts, SmallJsonIsSentPlain) {
  auto parts = EncodeParts(R"({"event":"x","data":{}})", EncodeLimits{});
  ASSERT_TRUE(parts);
  ASSERT_EQ(parts->size(), 1u);
  EXPECT_EQ(parts->front(), R"({"event":"x","data":{}})");
}

TEST(EncodeParts, LargeCompressibleJsonIsOneCompressedPart) {
  std::string json = "{\"data\":\"" + std::string(20000, 'a') + "\"}";
  auto parts = EncodeParts(json, EncodeLimits{});
  ASSERT_TRUE(parts);
  ASSERT_EQ(parts->size(), 1u);
  EXPECT_NE(parts->front()[0], '{');
  EXPECT_NE(parts->front()[0], '<');
  auto back = DecodeParts(*parts);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, json);
}

TEST(EncodeParts, IncompressibleJsonIsFragmentedUnderThePartCap) {
  std::string json = "{\"data\":\"" + RandomText(20 * 1024, 7) + "\"}";
  EncodeLimits limits;
  auto parts = EncodeParts(json, limits);
  ASSERT_TRUE(parts);
  ASSERT_GE(parts->size(), 4u);
  for (size_t i = 0; i < parts->size(); ++i) {
    const std::string& p = (*parts)[i];
    EXPECT_LE(p.size(), limits.max_part_bytes);
    std::string header = "<" + std::to_string(i) + "," + std::to_string(parts->size()) + ">";
    EXPECT_EQ(p.substr(0, header.size()), header);
  }
  auto back = DecodeParts(*parts);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, json);
  // Out of order, as the client's buffer allows.
  std::vector<std::string> reversed(parts->rbegin(), parts->rend());
  auto again = DecodeParts(reversed);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, json);
}

TEST(EncodeParts, RefusesPastTheEncodedLimit) {
  std::string json = "{\"data\":\"" + RandomText(100 * 1024, 3) + "\"}";
  auto parts = EncodeParts(json, EncodeLimits{});
  ASSERT_FALSE(parts);
  EXPECT_EQ(parts.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(parts.error().message, "message too large");
}

TEST(EncodeParts, FragmentHeadersWidenWithTheCount) {
  EncodeLimits limits;
  limits.max_part_bytes = 40;
  limits.compress_at_bytes = 10;
  std::string json = "{\"d\":\"" + RandomText(2000, 9) + "\"}";
  auto parts = EncodeParts(json, limits);
  ASSERT_TRUE(parts);
  ASSERT_GT(parts->size(), 10u);  // two-digit counts
  for (const auto& p : *parts) EXPECT_LE(p.size(), 40u);
  auto back = DecodeParts(*parts);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, json);
}

TEST(Envelope, QuotesTheEventName) {
  EXPECT_EQ(Envelope("sandbox:c:a\"b", "[1]"), R"({"event":"sandbox:c:a\"b","data":[1]})");
}

class FanoutTest : public ::testing::Test {
 protected:
  FanoutTest() {
    FanoutOptions options;
    options.vote_update_interval_ms = 5000;
    fanout_ = std::make_unique<ViewerFanout>(&bus_, clock_, options);
    fanout_->AddSink(&sink_);
  }
  events::EventBus bus_;
  FakeClock clock_;
  RecordingSink sink_;
  std::unique_ptr<ViewerFanout> fanout_;
};

TEST_F(FanoutTest, PublishBuildsThePrefixedEnvelopeOnce) {
  ASSERT_TRUE(fanout_->Publish(ViewerEvent{"ext", "chan", "", "hello", false, R"({"a":1})", false}));
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->event, "sandbox:ext:hello");
  EXPECT_EQ(got[0]->target, "broadcast");
  EXPECT_EQ(got[0]->channel_id, "chan");
  EXPECT_EQ(got[0]->envelope, R"({"event":"sandbox:ext:hello","data":{"a":1}})");
  EXPECT_EQ(got[0]->parts, std::vector<std::string>{got[0]->envelope});
  EXPECT_TRUE(got[0]->coalesce_key.empty());
}

TEST_F(FanoutTest, GlobalAndWhisperTargets) {
  ASSERT_TRUE(fanout_->Publish(ViewerEvent{"ext", "", "", "all", false, "{}", false}));
  ASSERT_TRUE(fanout_->Publish(ViewerEvent{"ext", "c", "whisper-U9", "w", false, "{}", false}));
  ASSERT_TRUE(fanout_->Publish(ViewerEvent{"ext", "c", "broadcast", "sandbox:ext:raw", true, "{}", false}));
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0]->target, "global");
  EXPECT_TRUE(got[0]->global());
  EXPECT_EQ(got[1]->target, "whisper-U9");
  EXPECT_TRUE(got[1]->whisper());
  EXPECT_EQ(got[2]->event, "sandbox:ext:raw");
  EXPECT_LT(got[0]->seq, got[1]->seq);
  EXPECT_LT(got[1]->seq, got[2]->seq);
}

TEST_F(FanoutTest, BusEventsBecomeCoalescableViewerMessages) {
  bus_.Publish(events::Event{"ext", "chan", "channel_state_update", R"({"round":2})", 0});
  bus_.Publish(events::Event{"ext", "", "json_store_update:k", R"({"id":"k","value":{}})", 0});
  events::Event games_only{"ext", "chan", "datastream", "{}", 0};
  games_only.viewers = false;
  bus_.Publish(games_only);
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->envelope, R"({"event":"sandbox:ext:channel_state_update","data":{"round":2}})");
  EXPECT_FALSE(got[0]->coalesce_key.empty());
  EXPECT_EQ(got[1]->target, "global");
}

TEST_F(FanoutTest, VoteUpdatesAreThrottledAndTheLastOneIsAlwaysSent) {
  auto vote = [&](int n) {
    bus_.Publish(events::Event{"ext", "chan", "vote_update:p",
                               "{\"id\":\"p\",\"stats\":{\"count\":" + std::to_string(n) + "}}", 0});
  };
  vote(1);  // a quiet poll: out at once
  ASSERT_EQ(sink_.messages().size(), 1u);
  for (int n = 2; n <= 50; ++n) {
    clock_.AdvanceMs(50);
    vote(n);
  }
  fanout_->Tick();
  EXPECT_EQ(sink_.messages().size(), 1u);  // still inside the window
  clock_.AdvanceMs(5000);
  fanout_->Tick();
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[1]->envelope.find("\"count\":50"), std::string::npos) << got[1]->envelope;
  fanout_->Tick();
  EXPECT_EQ(sink_.messages().size(), 2u);  // nothing new: nothing more
  EXPECT_EQ(fanout_->counts().throttled, 49u);
  // Another poll has its own window.
  bus_.Publish(events::Event{"ext", "chan", "vote_update:q", "{}", 0});
  EXPECT_EQ(sink_.messages().size(), 3u);
  // Quiet for a whole window: the next update of p goes out at once again.
  clock_.AdvanceMs(6000);
  fanout_->Tick();
  vote(51);
  EXPECT_EQ(sink_.messages().size(), 4u);
}

TEST_F(FanoutTest, TooLargeIsRefusedAndNothingDelivered) {
  std::string data = "\"" + RandomText(120 * 1024, 5) + "\"";
  auto sent = fanout_->Publish(ViewerEvent{"ext", "c", "", "big", false, data, false});
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().message, "message too large");
  EXPECT_TRUE(sink_.messages().empty());
  EXPECT_EQ(fanout_->counts().refused, 1u);
}

TEST(RateLimiter, BurstThenRefillAtTheRate) {
  FakeClock clock;
  RateLimiter limiter(clock, RateLimit{5, 60});  // 5 at once, one a second
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Allow("a")) << i;
  EXPECT_FALSE(limiter.Allow("a"));
  EXPECT_EQ(limiter.RetryAfterMs("a"), 1000);
  EXPECT_TRUE(limiter.Allow("b"));  // keys are independent
  clock.AdvanceMs(999);
  EXPECT_FALSE(limiter.Allow("a"));
  clock.AdvanceMs(2);
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_FALSE(limiter.Allow("a"));
  clock.AdvanceMs(60'000);  // full again, and forgotten at the next prune
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_LE(limiter.size(), 2u);
}

TEST(RateLimiter, ZeroBurstDisablesTheLimit) {
  FakeClock clock;
  RateLimiter limiter(clock, RateLimit{0, 0});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.Allow("a"));
}

Identity Who(Role role, std::string channel = "chan", std::string user = "u1") {
  Identity who;
  who.client_id = "ext";
  who.role = role;
  who.channel_id = std::move(channel);
  who.user_id = user;
  who.opaque_user_id = "U" + user;
  return who;
}

class MessagingTest : public ::testing::Test {
 protected:
  explicit MessagingTest(auth::Stage stage = auth::Stage::kSandbox) {
    FanoutOptions options;
    options.stage = stage;
    fanout_ = std::make_unique<ViewerFanout>(nullptr, clock_, options);
    fanout_->AddSink(&sink_);
    MessagingLimits limits;
    limits.per_caller = RateLimit{10, 60};
    limits.max_data_bytes = 64 * 1024;
    messaging_ = std::make_unique<MessagingService>(*fanout_, clock_, limits);
  }
  static json::value Body(const char* text) { return json::parse(text); }

  FakeClock clock_;
  RecordingSink sink_;
  std::unique_ptr<ViewerFanout> fanout_;
  std::unique_ptr<MessagingService> messaging_;
};

TEST_F(MessagingTest, BroadcasterBroadcastsToItsChannel) {
  auto sent = messaging_->Broadcast(Who(Role::kBroadcaster),
                                    Body(R"({"event":"go","data":{"n":1}})"));
  ASSERT_TRUE(sent) << sent.error().message;
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->channel_id, "chan");
  EXPECT_EQ(got[0]->target, "broadcast");
  EXPECT_EQ(got[0]->envelope, R"({"event":"sandbox:ext:go","data":{"n":1}})");
}

TEST_F(MessagingTest, BroadcastDefaultsAndWhispers) {
  ASSERT_TRUE(messaging_->Broadcast(Who(Role::kBackend, ""), Body(R"({"user_id":"c2"})")));
  ASSERT_TRUE(messaging_->Broadcast(Who(Role::kAdmin), Body(R"({"target":"whisper-U5","event":"w","data":[1]})")));
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->envelope, R"({"event":"sandbox:ext:default","data":{}})");
  EXPECT_EQ(got[0]->channel_id, "c2");
  EXPECT_EQ(got[1]->target, "whisper-U5");
  EXPECT_EQ(got[1]->channel_id, "chan");
}

TEST_F(MessagingTest, RefusalsDeliverNothing) {
  struct Case {
    Identity who;
    const char* body;
    Errc code;
  };
  std::vector<Case> cases = {
      {Who(Role::kViewer), R"({"event":"x"})", Errc::kForbidden},
      {Who(Role::kBroadcaster), R"({"event":"x","user_id":"other"})", Errc::kForbidden},
      {Who(Role::kBroadcaster), R"([1,2])", Errc::kInvalidArgument},
      {Who(Role::kBroadcaster), R"({"event":7})", Errc::kInvalidArgument},
      {Who(Role::kBroadcaster), R"({"target":"everyone"})", Errc::kInvalidArgument},
      {Who(Role::kBroadcaster), R"({"target":"whisper-"})", Errc::kInvalidArgument},
      {Who(Role::kBroadcaster), R"({"event":"a\nb"})", Errc::kInvalidArgument},
      {Who(Role::kBackend, ""), R"({"event":"x"})", Errc::kInvalidArgument},  // no channel
  };
  for (const auto& c : cases) {
    auto sent = messaging_->Broadcast(c.who, Body(c.body));
    ASSERT_FALSE(sent) << c.body;
    EXPECT_EQ(sent.error().code, c.code) << c.body;
  }
  std::string big = R"({"data":")" + std::string(70 * 1024, 'x') + "\"}";
  auto sent = messaging_->Broadcast(Who(Role::kBroadcaster), json::parse(big));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().message, "message too large");
  EXPECT_TRUE(sink_.messages().empty());
}

TEST_F(MessagingTest, ExtensionBroadcastNeedsAPrivilegedCaller) {
  Identity owner = Who(Role::kBroadcaster);
  owner.owner_broadcaster = true;
  EXPECT_TRUE(messaging_->ExtensionBroadcast(owner, Body(R"({"event":"e"})")));
  EXPECT_TRUE(messaging_->ExtensionBroadcast(Who(Role::kBackend), Body(R"({"event":"e"})")));
  auto refused = messaging_->ExtensionBroadcast(Who(Role::kBroadcaster), Body(R"({"event":"e"})"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::kForbidden);
  auto whisper = messaging_->ExtensionBroadcast(Who(Role::kAdmin),
                                                Body(R"({"target":"whisper-U1"})"));
  ASSERT_FALSE(whisper);
  EXPECT_EQ(whisper.error().code, Errc::kInvalidArgument);
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 2u);
  for (const auto& m : got) {
    EXPECT_EQ(m->target, "global");
    EXPECT_TRUE(m->channel_id.empty());
  }
}

TEST_F(MessagingTest, WhisperSelfGoesToTheCallersOpaqueId) {
  ASSERT_TRUE(messaging_->WhisperSelf(Who(Role::kViewer, "chan", "42"), Body(R"({"event":"me"})")));
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->target, "whisper-U42");
  EXPECT_EQ(got[0]->channel_id, "chan");
}

TEST_F(MessagingTest, PusherBroadcastIsPublishedAsGiven) {
  ASSERT_TRUE(messaging_->PusherBroadcast(
      Who(Role::kBroadcaster),
      Body(R"({"data":{"x":1},"event":"sandbox:ext:ping","target":"broadcast","user_id":"chan"})")));
  auto got = sink_.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->envelope, R"({"event":"sandbox:ext:ping","data":{"x":1}})");
  auto viewer = messaging_->PusherBroadcast(Who(Role::kViewer), Body(R"({"event":"a:b:c"})"));
  ASSERT_FALSE(viewer);
  EXPECT_EQ(viewer.error().code, Errc::kForbidden);
}

TEST_F(MessagingTest, AFloodFromOneCallerIsLimited) {
  int accepted = 0;
  int limited = 0;
  for (int i = 0; i < 25; ++i) {
    auto sent = messaging_->Broadcast(Who(Role::kBroadcaster), Body(R"({"event":"f"})"));
    if (sent) {
      ++accepted;
    } else {
      EXPECT_EQ(sent.error().code, Errc::kRateLimited);
      ++limited;
    }
  }
  EXPECT_EQ(accepted, 10);
  EXPECT_EQ(limited, 15);
  // Another caller is not affected; the first one recovers at the refill rate.
  EXPECT_TRUE(messaging_->Broadcast(Who(Role::kBroadcaster, "other"), Body(R"({"event":"f"})")));
  clock_.AdvanceMs(1000);
  EXPECT_TRUE(messaging_->Broadcast(Who(Role::kBroadcaster), Body(R"({"event":"f"})")));
  EXPECT_EQ(sink_.messages().size(), 12u);
}

class ProductionMessagingTest : public MessagingTest {
 protected:
  ProductionMessagingTest() : MessagingTest(auth::Stage::kProduction) {}
};

TEST_F(ProductionMessagingTest, PusherBroadcastIsSandboxOnlyAndPrefixIsProduction) {
  auto sent = messaging_->PusherBroadcast(Who(Role::kAdmin), Body(R"({"event":"a:b:c"})"));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, Errc::kNotFound);
  ASSERT_TRUE(messaging_->Broadcast(Who(Role::kBroadcaster), Body(R"({"event":"go"})")));
  EXPECT_EQ(sink_.messages().at(0)->event, "production:ext:go");
}

}  // namespace
}  // namespace medkit::core::broadcast
