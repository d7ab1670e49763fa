// GameLinkService on the memory store with a FakeClock: one response per request with its
// request id, authentication, state pushes, and the poll push cadence of spec 7.5 made
// deterministic (no push at create; one when a delayed poll turns active; at most one a second
// while votes change; exactly one expired; none after delete; untracked after 5 idle minutes).
#include "core/gamelink/gamelink_service.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/auth/authenticator.h"
#include "core/auth/extension_registry.h"
#include "core/broadcast/messaging_service.h"
#include "core/broadcast/viewer_fanout.h"
#include "core/events/event_bus.h"
#include "core/kv/document_service.h"
#include "core/poll/poll_service.h"
#include "storage/memory_store.h"

namespace medkit::core::gamelink {
namespace {

namespace json = boost::json;

class FakeOutput : public GameLinkOutput {
 public:
  void Send(std::string envelope) override { sent.push_back(json::parse(envelope)); }
  void Subscribe(const std::string& topic) override { topics.insert(topic); }
  void Unsubscribe(const std::string& topic) override { topics.erase(topic); }
  std::vector<json::value> sent;
  std::set<std::string> topics;
};

class FakePublisher : public GamePublisher {
 public:
  void Publish(const std::string& topic, std::string envelope) override {
    pushes.emplace_back(topic, json::parse(envelope));
  }
  bool Active() const override { return true; }
  // Poll pushes to the poll's own topic.
  std::vector<json::value> PollPushes(const std::string& topic) const {
    std::vector<json::value> out;
    for (const auto& [t, v] : pushes) {
      if (t == topic) out.push_back(v);
    }
    return out;
  }
  std::vector<std::pair<std::string, json::value>> pushes;
};

class GameLinkTest : public ::testing::Test {
 protected:
  GameLinkTest() : clock_(1'800'000'000'000) {
    store_ = std::make_unique<storage::MemoryStore>(clock_);
    auth::AuthOptions options;
    options.stage = auth::Stage::kSandbox;
    options.server_key = "server-key-for-tests";
    auth_ = std::make_unique<auth::Authenticator>(options, registry_, clock_);
    docs_ = std::make_unique<kv::DocumentService>(*store_, clock_, auth::Stage::kSandbox,
                                                  kv::DocLimits{}, &bus_);
    polls_ = std::make_unique<poll::PollService>(*store_, clock_, auth::Stage::kSandbox,
                                                 poll::PollLimits{}, &bus_);
    fanout_ = std::make_unique<broadcast::ViewerFanout>(&bus_, clock_, broadcast::FanoutOptions{});
    messaging_ = std::make_unique<broadcast::MessagingService>(*fanout_, clock_,
                                                               broadcast::MessagingLimits{});
    GameLinkDeps deps;
    deps.auth = auth_.get();
    deps.documents = docs_.get();
    deps.polls = polls_.get();
    deps.messaging = messaging_.get();
    deps.clock = &clock_;
    service_ = std::make_unique<GameLinkService>(deps, GameLinkLimits{}, &bus_, &publisher_);
    conn_ = std::make_unique<GameLinkConnection>(*service_, "ext", out_);
  }

  std::string Token(std::string_view channel) const {
    auth::MintRequest m;
    m.client_id = "ext";
    m.role = "broadcaster";
    m.channel_id = std::string(channel);
    m.user_id = std::string(channel);
    m.allowed_stage = "sandbox";
    return auth_->Mint(m, "server-key-for-tests");
  }

  // Sends one request and returns the one response it got.
  json::value Call(std::string_view action, std::string_view target, std::string data,
                   int id = 7) {
    size_t before = out_.sent.size();
    std::string text = "{\"action\":\"" + std::string(action) + "\",\"params\":{\"request_id\":" +
                       std::to_string(id) +
                       (target.empty() ? std::string() : ",\"target\":\"" + std::string(target) + "\"") +
                       "},\"data\":" + data + "}";
    conn_->OnMessage(text);
    EXPECT_EQ(out_.sent.size(), before + 1) << "exactly one response to " << text;
    json::value r = out_.sent.back();
    EXPECT_EQ(r.at("meta").at("request_id").as_int64(), id);
    EXPECT_EQ(r.at("meta").at("action").as_string(), action);
    return r;
  }
  void Authenticate(std::string_view channel = "chan") {
    auto r = Call("authenticate", "", "{\"jwt\":\"" + Token(channel) + "\",\"client_id\":\"ext\"}");
    ASSERT_TRUE(r.as_object().contains("data")) << json::serialize(r);
  }
  void Vote(std::string_view poll, std::string_view viewer, int value) {
    poll::PollRef ref{"ext", "chan", std::string(poll)};
    ASSERT_TRUE(polls_->VoteAs(ref, viewer, viewer, "U" + std::string(viewer), value, 1));
  }
  std::vector<std::string> Statuses(const std::string& poll) const {
    std::vector<std::string> out;
    for (const auto& p : publisher_.PollPushes(TopicPoll("ext", "chan", poll))) {
      out.push_back(std::string(p.at("data").at("poll").at("status").as_string()) + ":" +
                    std::to_string(p.at("data").at("count").as_int64()));
    }
    return out;
  }
  void TickAfter(int64_t ms) {
    clock_.AdvanceMs(ms);
    service_->Tick();
  }

  FakeClock clock_;
  events::EventBus bus_;
  auth::ExtensionRegistry registry_;
  std::unique_ptr<storage::MemoryStore> store_;
  std::unique_ptr<auth::Authenticator> auth_;
  std::unique_ptr<kv::DocumentService> docs_;
  std::unique_ptr<poll::PollService> polls_;
  std::unique_ptr<broadcast::ViewerFanout> fanout_;
  std::unique_ptr<broadcast::MessagingService> messaging_;
  FakePublisher publisher_;
  std::unique_ptr<GameLinkService> service_;
  FakeOutput out_;
  std::unique_ptr<GameLinkConnection> conn_;
};

TEST_F(GameLinkTest, RequestsBeforeAuthenticationGet401) {
  auto r = Call("get", "state", R"({"state_id":"channel"})", 12);
  EXPECT_EQ(r.at("errors").at(0).at("number").as_int64(), 401);
  EXPECT_EQ(r.at("errors").at(0).at("status").as_int64(), 401);
  EXPECT_FALSE(r.as_object().contains("data"));
  Authenticate();
  r = Call("get", "state", R"({"state_id":"channel"})", 13);
  EXPECT_EQ(json::serialize(r.at("data")), R"({"ok":true,"state":{}})");
}

TEST_F(GameLinkTest, MalformedRequestsGetOneErrorEach) {
  conn_->OnMessage("not json");
  conn_->OnMessage("[]");
  conn_->OnMessage(R"({"params":{"request_id":3}})");
  ASSERT_EQ(out_.sent.size(), 3u);
  EXPECT_EQ(out_.sent[0].at("meta").at("request_id").as_int64(), 65535);
  EXPECT_EQ(out_.sent[2].at("meta").at("request_id").as_int64(), 3);
  for (const auto& e : out_.sent) EXPECT_EQ(e.at("errors").at(0).at("number").as_int64(), 400);
}

TEST_F(GameLinkTest, StateSetIsPushedToTheStateTopic) {
  Authenticate();
  Call("subscribe", "state", R"({"topic_id":"channel"})");
  EXPECT_TRUE(out_.topics.count(TopicState("ext", "chan")));
  auto r = Call("set", "state", R"({"state_id":"channel","state":{"hello":"world"}})");
  EXPECT_EQ(json::serialize(r.at("data")), R"({"ok":true,"state":{"hello":"world"}})");
  ASSERT_EQ(publisher_.pushes.size(), 1u);
  EXPECT_EQ(publisher_.pushes[0].first, TopicState("ext", "chan"));
  EXPECT_EQ(json::serialize(publisher_.pushes[0].second.at("data")),
            R"({"state":{"hello":"world"},"topic_id":"channel"})");
  EXPECT_EQ(publisher_.pushes[0].second.at("meta").at("request_id").as_int64(), 65535);
  EXPECT_EQ(publisher_.pushes[0].second.at("meta").at("target").as_string(), "channel");
  Call("unsubscribe", "state", R"({"topic_id":"channel"})");
  EXPECT_FALSE(out_.topics.count(TopicState("ext", "chan")));
}

TEST_F(GameLinkTest, DelayedPollPushesActiveOnceThenExpiredOnce) {
  Authenticate();
  const int64_t now_s = clock_.NowMs() / 1000;
  Call("create", "poll",
       R"({"poll_id":"timed","prompt":"?","options":["yes"],"user_data":null,"config":{"startsAt":)" +
           std::to_string(now_s + 3) + R"(,"endsAt":)" + std::to_string(now_s + 5) + "}}");
  for (int i = 0; i < 20; ++i) TickAfter(100);  // 2 s: still pending
  EXPECT_TRUE(Statuses("timed").empty());
  for (int i = 0; i < 20; ++i) TickAfter(100);  // 4 s: active
  EXPECT_EQ(Statuses("timed"), (std::vector<std::string>{"active:0"}));
  for (int i = 0; i < 40; ++i) TickAfter(100);  // 8 s: expired
  EXPECT_EQ(Statuses("timed"), (std::vector<std::string>{"active:0", "expired:0"}));
  // Stopping an expired poll again pushes nothing.
  Call("reconfigure", "poll", R"({"poll_id":"timed","config":{"endsAt":-1}})");
  for (int i = 0; i < 20; ++i) TickAfter(100);
  EXPECT_EQ(Statuses("timed").size(), 2u);
}

TEST_F(GameLinkTest, VotesArePushedAtMostOnceASecondAndTheEndOnce) {
  Authenticate();
  Call("create", "poll", R"({"poll_id":"p","prompt":"?","options":["a","b"]})");
  service_->Tick();
  EXPECT_TRUE(Statuses("p").empty()) << "no push at create";
  Vote("p", "v1", 0);
  Vote("p", "v2", 1);
  TickAfter(300);
  EXPECT_TRUE(Statuses("p").empty()) << "within a second of the last push (create)";
  TickAfter(800);
  EXPECT_EQ(Statuses("p"), (std::vector<std::string>{"active:2"}));
  Vote("p", "v3", 1);
  TickAfter(200);
  EXPECT_EQ(Statuses("p").size(), 1u);
  TickAfter(900);
  EXPECT_EQ(Statuses("p"), (std::vector<std::string>{"active:2", "active:3"}));
  TickAfter(2000);  // no votes: no pushes
  EXPECT_EQ(Statuses("p").size(), 2u);
  auto pushes = publisher_.PollPushes(TopicPoll("ext", "chan", "p"));
  EXPECT_EQ(json::serialize(pushes[1].at("data").at("results")), "[1,2]");
  // The wildcard topic gets the same pushes.
  EXPECT_EQ(publisher_.PollPushes(TopicPoll("ext", "chan", "*")).size(), 2u);

  Call("reconfigure", "poll", R"({"poll_id":"p","config":{"endsAt":-1}})");
  TickAfter(100);
  EXPECT_EQ(Statuses("p"), (std::vector<std::string>{"active:2", "active:3", "expired:3"}));
  Call("reconfigure", "poll", R"({"poll_id":"p","config":{"endsAt":-1}})");
  TickAfter(1500);
  EXPECT_EQ(Statuses("p").size(), 3u);
  auto get = Call("get", "poll", R"({"poll_id":"p"})");
  EXPECT_EQ(get.at("data").at("poll").at("status").as_string(), "expired");
  EXPECT_EQ(get.at("data").at("count").as_int64(), 3);
}

TEST_F(GameLinkTest, DeleteStopsPushesAndIdlePollsAreForgotten) {
  Authenticate();
  Call("create", "poll", R"({"poll_id":"d","prompt":"?","options":["a"]})");
  Call("create", "poll", R"({"poll_id":"idle","prompt":"?","options":["a"]})");
  Vote("d", "v1", 0);
  Call("delete", "poll", R"({"poll_id":"d"})");
  TickAfter(1500);
  EXPECT_TRUE(Statuses("d").empty());
  EXPECT_EQ(service_->counts().tracked_polls, 1u);
  TickAfter(5 * 60 * 1000);
  EXPECT_EQ(service_->counts().tracked_polls, 0u);
}

TEST_F(GameLinkTest, RestVotesOnAPollNoGameCreatedArePushedToo) {
  Authenticate();
  Call("subscribe", "poll", R"({"topic_id":"*"})");
  Vote("rest-poll", "v1", 4);
  TickAfter(100);
  EXPECT_EQ(Statuses("rest-poll"), (std::vector<std::string>{"active:1"}));
  auto push = publisher_.PollPushes(TopicPoll("ext", "chan", "rest-poll"));
  EXPECT_EQ(json::serialize(push[0].at("data").at("results")), "[0]") << "never empty";
}

TEST_F(GameLinkTest, ReauthenticationReplacesTheBinding) {
  Authenticate("chan");
  Call("subscribe", "state", R"({"topic_id":"channel"})");
  Authenticate("other");
  EXPECT_TRUE(out_.topics.empty());
  EXPECT_EQ(conn_->identity().channel_id, "other");
}

}  // namespace
}  // namespace medkit::core::gamelink
