// In-process API tests of the poll routes (spec 5.8): vote, vote_logs, vote_config,
// vote_modifier through Router::Dispatch, with the memory store and a FakeClock. Every endpoint,
// every role, every refusal (with the data read back unchanged), body forms, and the
// vote_update events.
#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "app/app.h"
#include "app/config.h"
#include "core/auth/jwt.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "http/message.h"
#include "http/router.h"

namespace medkit::app {
namespace {

namespace json = boost::json;
using http::Request;
using http::Response;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr std::string_view kClient = "ext1";
constexpr std::string_view kSecret = "ext1-twitch-secret";
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

AppConfig BaseConfig(std::string_view stage) {
  AppConfig config;
  config.stage = std::string(stage);
  config.store = "memory";
  config.signing_key_b64 = core::auth::Base64Encode("server-signing-key");
  config.extensions.push_back(ExtensionConfig{
      std::string(kClient), core::auth::Base64Encode(kSecret), "owner1", {"admin1"}});
  return config;
}

json::value Body(const Response& response) {
  boost::system::error_code ec;
  json::value v = json::parse(response.body, ec);
  return ec ? json::value() : v;
}

json::value Zeros() {
  return json::parse(R"({"stddev":0,"mean":0,"sum":0,"count":0,"specific":[0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"decay":{}})");
}

class PollApiTest : public ::testing::Test {
 protected:
  PollApiTest() : clock_(kStartMs) {}
  // Production: admins are validated only when listed (admin1) or the owner.
  void SetUp() override { Start(BaseConfig("production")); }

  void Start(const AppConfig& config) {
    app_.reset();
    auto app = App::Create(config, clock_);
    ASSERT_TRUE(app.has_value()) << app.error().message;
    app_ = std::move(*app);
  }

  Response Call(std::string_view method, std::string_view target,
                std::string_view authorization = {}, std::string_view body = {}) {
    Request request;
    request.method = http::ParseMethod(method);
    http::ParseTarget(target, request);
    request.authorization = std::string(authorization);
    request.body = std::string(body);
    request.remote_ip = "203.0.113.77";
    request.content_type = "application/x-www-form-urlencoded; charset=UTF-8";
    return app_->router().Dispatch(request);
  }

  std::string Token(std::string_view role, std::string_view channel = "chan1",
                    std::string_view user = "user1") const {
    json::object claims;
    claims["exp"] = clock_.NowSeconds() + 365 * 86400;
    claims["role"] = role;
    claims["channel_id"] = channel;
    if (!user.empty()) claims["user_id"] = user;
    claims["opaque_user_id"] = user.empty() ? std::string("Aanon") : "U" + std::string(user);
    return std::string(kClient) + " " + core::auth::SignHs256(claims, kSecret);
  }
  std::string Viewer(std::string_view user, std::string_view channel = "chan1") const {
    return Token("viewer", channel, user);
  }

  static void ExpectError(const Response& r, int status, std::string_view reason) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value body = Body(r);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body.at("reason"), json::value(json::string_view(reason))) << r.body;
  }
  json::value Stats(std::string_view poll = "p", std::string_view channel = "chan1") {
    Response r = Call("GET", "/v1/e/vote?id=" + std::string(poll), Viewer("reader", channel));
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r);
  }
  json::value VoteOk(std::string_view token, std::string_view body, std::string_view poll = "p") {
    Response r = Call("POST", "/v1/e/vote?id=" + std::string(poll), token, body);
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r);
  }
  json::value Logs(std::string_view poll = "p") {
    Response r = Call("GET", "/v1/e/vote_logs?id=" + std::string(poll), Token("backend"));
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r);
  }

  core::FakeClock clock_;
  std::unique_ptr<App> app_;
};

TEST_F(PollApiTest, EveryPollRouteIsRegisteredAndNeedsAToken) {
  const std::string backend = Token("backend");
  struct Route {
    std::string_view method, target, body;
    int status;
  };
  const Route routes[] = {
      {"GET", "/v1/e/vote?id=p", "", 200},
      {"POST", "/v1/e/vote?id=p", R"({"value":1})", 200},
      {"DELETE", "/v1/e/vote?id=p", "", 200},
      {"GET", "/v1/e/vote_logs?id=p", "", 200},
      {"GET", "/v1/e/vote_config?id=p", "", 404},
      {"POST", "/v1/e/vote_config", R"({"id":"p","config":{}})", 200},
      {"POST", "/v1/e/vote_modifier?id=p", R"({"user":"u","add":1})", 200},
  };
  for (const auto& route : routes) {
    SCOPED_TRACE(std::string(route.method) + " " + std::string(route.target));
    Response r = Call(route.method, route.target, backend, route.body);
    EXPECT_EQ(r.status, route.status) << r.body;
    EXPECT_TRUE(Body(r).is_object()) << r.body;
    ExpectError(Call(route.method, route.target, "", route.body), 401,
                "missing Authorization header");
  }
}

TEST_F(PollApiTest, VoteGetAndReplace) {
  EXPECT_EQ(Stats(), Zeros());
  json::value a = VoteOk(Viewer("a"), R"({"value":1})");  // the MEDKit 2.4.18 body
  EXPECT_EQ(a.at("vote"), 1);
  EXPECT_EQ(a.at("count"), 1);
  VoteOk(Viewer("b"), R"({"value":3,"count":2})");
  json::value replaced = VoteOk(Viewer("a"), R"({"value":5})");
  EXPECT_EQ(replaced, json::parse(R"({"stddev":1.1547005383792515,"mean":3.6666666666666665,
      "sum":11,"count":3,"specific":[0,0,0,2,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0],"decay":{},"vote":5})"));
  json::value mine = Body(Call("GET", "/v1/e/vote?id=p", Viewer("b")));
  EXPECT_EQ(mine.at("vote"), 3);
  EXPECT_EQ(mine.at("sum"), 11);
  EXPECT_FALSE(Stats().as_object().contains("vote"));
  // value omitted means 0; count 0 means 1; a JSON string holding JSON is parsed again.
  EXPECT_EQ(VoteOk(Viewer("c"), R"({})").at("vote"), 0);
  EXPECT_EQ(VoteOk(Viewer("d"), R"({"value":2,"count":0})").at("specific").at(2), 1);
  EXPECT_EQ(VoteOk(Viewer("e"), R"("{\"value\":7}")").at("vote"), 7);
  EXPECT_EQ(Stats().at("count"), 6);
  // No id means the poll "default".
  VoteOk(Viewer("a"), R"({"value":4})", "");
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote", Viewer("z"))).at("sum"), 4);
  EXPECT_EQ(Stats("default").at("sum"), 4);
}

TEST_F(PollApiTest, VoteRefusalsLeaveTheDataUnchanged) {
  VoteOk(Viewer("a"), R"({"value":2})");
  const json::value before = Stats();
  const std::string v = Viewer("a");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"({"value":129})"), 400, "Value out of bounds");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"({"value":-129})"), 400, "Value out of bounds");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"({"value":1.5})"), 400, "Value out of bounds");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"({"value":1,"count":31})"), 400,
              "Count out of bounds");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"({"value":1,"count":-1})"), 400,
              "Count out of bounds");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"({"value":"3"})"), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, R"([1])"), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/vote?id=p", v, ""), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/vote?id=a.b", v, R"({"value":1})"), 400, "Invalid poll id");
  ExpectError(Call("POST", "/v1/e/vote?id=" + std::string(65, 'x'), v, R"({"value":1})"), 400,
              "Invalid poll id");
  ExpectError(Call("GET", "/v1/e/vote?id=a%20b", v), 400, "Invalid poll id");
  EXPECT_EQ(Stats(), before);
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote?id=p", v)).at("vote"), 2);
  EXPECT_EQ(Logs().at("result").as_array().size(), 1u);
}

TEST_F(PollApiTest, EveryRoleMayVoteAndRead) {
  const std::string tokens[] = {Token("viewer"),
                                Token("moderator", "chan1", "mod1"),
                                Token("broadcaster", "chan1", "chan1"),
                                Token("admin", "chan1", "admin9"),
                                Token("admin", "chan1", "admin1"),
                                Token("backend", "chan1", "svc"),
                                Token("external", "chan1", "ext")};
  int64_t n = 0;
  for (const auto& token : tokens) {
    json::value r = VoteOk(token, R"({"value":1})");
    EXPECT_EQ(r.at("count"), ++n);
  }
  EXPECT_EQ(Stats().at("count"), 7);
}

TEST_F(PollApiTest, PrivilegedEndpointsRefuseOtherRoles) {
  VoteOk(Viewer("a"), R"({"value":2})");
  ASSERT_EQ(Call("POST", "/v1/e/vote_config", Token("backend"),
                 R"({"id":"p","config":{"prompt":"kept"}})")
                .status,
            200);
  const json::value stats = Stats();
  const json::value config = Body(Call("GET", "/v1/e/vote_config?id=p", Viewer("a")));
  const json::value logs = Logs();
  const std::string viewer = Viewer("a"), moderator = Token("moderator");
  for (const auto& token : {viewer, moderator}) {
    ExpectError(Call("DELETE", "/v1/e/vote?id=p", token), 403, kRefused);
    ExpectError(Call("POST", "/v1/e/vote_config", token, R"({"id":"p","config":{}})"), 403,
                kRefused);
    ExpectError(Call("POST", "/v1/e/vote_modifier?id=p", token, R"({"user":"a","add":5})"), 403,
                kRefused);
    ExpectError(Call("GET", "/v1/e/vote_logs?id=p", token), 403, kRefused);
  }
  // vote_logs: backend or a validated admin only.
  ExpectError(Call("GET", "/v1/e/vote_logs?id=p", Token("broadcaster", "chan1", "chan1")), 403,
              kRefused);
  ExpectError(Call("GET", "/v1/e/vote_logs?id=p", Token("admin", "chan1", "admin9")), 403,
              kRefused);
  EXPECT_EQ(Call("GET", "/v1/e/vote_logs?id=p", Token("admin", "chan1", "admin1")).status, 200);
  EXPECT_EQ(Call("GET", "/v1/e/vote_logs?id=p", Token("admin", "chan1", "owner1")).status, 200);
  EXPECT_EQ(Call("GET", "/v1/e/vote_logs?id=p", Token("external")).status, 200);
  EXPECT_EQ(Stats(), stats);
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote_config?id=p", Viewer("a"))), config);
  EXPECT_EQ(Logs(), logs);
  // Broadcaster, any admin and backend manage the poll.
  for (const auto& token : {Token("broadcaster", "chan1", "chan1"),
                            Token("admin", "chan1", "admin9"), Token("backend")}) {
    EXPECT_EQ(Call("POST", "/v1/e/vote_modifier?id=p", token, R"({"user":"a","add":0})").status,
              200);
    EXPECT_EQ(Call("POST", "/v1/e/vote_config", token, R"({"id":"p","config":{}})").status, 200);
    EXPECT_EQ(Call("DELETE", "/v1/e/vote?id=p", token).status, 200);
  }
}

TEST_F(PollApiTest, DeleteClearsVotesAndConfigButNotLogs) {
  VoteOk(Viewer("a"), R"({"value":2})");
  VoteOk(Viewer("b"), R"({"value":3})");
  ASSERT_EQ(
      Call("POST", "/v1/e/vote_config", Token("backend"), R"({"id":"p","config":{"prompt":"x"}})")
          .status,
      200);
  Response r = Call("DELETE", "/v1/e/vote?id=p", Token("broadcaster", "chan1", "chan1"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json::parse("{}"));
  EXPECT_EQ(Stats(), Zeros());
  EXPECT_FALSE(Body(Call("GET", "/v1/e/vote?id=p", Viewer("a"))).as_object().contains("vote"));
  ExpectError(Call("GET", "/v1/e/vote_config?id=p", Viewer("a")), 404, "Not Found");
  const json::value log_body = Logs();
  const json::array& logs = log_body.at("result").as_array();
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(logs[0], json::parse(R"({"identifier":"a","opaque":"Ua","value":2,"timestamp":)" +
                                 std::to_string(clock_.NowMs()) + "}"));
  EXPECT_EQ(logs[1].at("identifier"), "b");
  // Deleting a missing poll is fine; a later vote recreates the poll.
  EXPECT_EQ(Call("DELETE", "/v1/e/vote?id=never", Token("backend")).status, 200);
  EXPECT_EQ(VoteOk(Viewer("a"), R"({"value":9})").at("count"), 1);
}

TEST_F(PollApiTest, VoteConfigRoundTripAndLimits) {
  const std::string backend = Token("backend");
  ExpectError(Call("GET", "/v1/e/vote_config?id=p", Viewer("a")), 404, "Not Found");
  const int64_t now_s = clock_.NowSeconds();
  std::string body = R"({"id":"p","config":{"userIDVoting":true,"distinctOptionsPerUser":2,
      "totalVotesPerUser":3,"votesPerOption":2,"prompt":"Best?","options":["a","b"],
      "userData":{"k":[1,2]},"startsAt":)" +
                     std::to_string(now_s + 10) + R"(,"endsAt":)" + std::to_string(now_s + 20) +
                     "}}";
  ASSERT_EQ(Call("POST", "/v1/e/vote_config", backend, body).status, 200);
  json::value expected = json::parse(R"({"userIDVoting":true,"distinctOptionsPerUser":2,
      "totalVotesPerUser":3,"votesPerOption":2,"global":false,"disabled":false,"prompt":"Best?",
      "options":["a","b"],"userData":{"k":[1,2]},"startsAt":)" +
                                     std::to_string(now_s + 10) + R"(,"endsAt":)" +
                                     std::to_string(now_s + 20) + R"(,"status":"pending"})");
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote_config?id=p", Viewer("a"))), expected);
  ExpectError(Call("POST", "/v1/e/vote?id=p", Viewer("a"), R"({"value":1})"), 400,
              "poll is closed");
  clock_.AdvanceMs(10'000);
  expected.as_object()["status"] = "active";
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote_config?id=p", Viewer("a"))), expected);
  ExpectError(Call("POST", "/v1/e/vote?id=p", Viewer(""), R"({"value":1})"), 403,
              "user id required");
  VoteOk(Viewer("a"), R"({"value":1})");
  VoteOk(Viewer("a"), R"({"value":2,"count":2})");
  ExpectError(Call("POST", "/v1/e/vote?id=p", Viewer("a"), R"({"value":3})"), 400,
              "unacceptable vote");
  EXPECT_EQ(Stats().at("count"), 3);
  clock_.AdvanceMs(10'000);
  ExpectError(Call("POST", "/v1/e/vote?id=p", Viewer("b"), R"({"value":1})"), 400,
              "poll is closed");
  expected.as_object()["status"] = "expired";
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote_config?id=p", Viewer("a"))), expected);
  // Invalid configurations change nothing.
  for (std::string_view bad :
       {R"({"id":"p","config":{"prompt":1}})", R"({"id":"p","config":{"startsAt":5,"endsAt":4}})",
        R"({"id":"p","config":{"global":true}})", R"({"id":"p"})", R"({"id":7,"config":{}})",
        R"({"id":"p.q","config":{}})", R"({"id":"p","config":{"totalVotesPerUser":2000}})"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(Call("POST", "/v1/e/vote_config", backend, bad).status, 400);
  }
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote_config?id=p", Viewer("a"))), expected);
  // The id may come as ?id= too; global configs need a global id.
  EXPECT_EQ(Call("POST", "/v1/e/vote_config?id=q", backend, R"({"config":{"prompt":"Q"}})").status,
            200);
  EXPECT_EQ(Body(Call("GET", "/v1/e/vote_config?id=q", Viewer("a"))).at("prompt"), "Q");
  EXPECT_EQ(
      Call("POST", "/v1/e/vote_config", backend, R"({"id":"global-q","config":{"global":true}})")
          .status,
      200);
}

TEST_F(PollApiTest, VoteModifierReweightsAUser) {
  VoteOk(Viewer("a"), R"({"value":4})");
  VoteOk(Viewer("b"), R"({"value":1})");
  ASSERT_EQ(
      Call("POST", "/v1/e/vote_modifier?id=p", Token("backend"), R"({"user":"a","add":2})").status,
      200);
  json::value s = Stats();
  EXPECT_EQ(s.at("count"), 4);
  EXPECT_EQ(s.at("sum"), 13);
  EXPECT_EQ(s.at("specific").at(4), 3);
  for (std::string_view bad : {R"({"add":1})", R"({"user":"a"})", R"({"user":"a","add":"x"})",
                               R"({"user":"","add":1})", R"({"user":"a","add":1.5})", "[]"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(Call("POST", "/v1/e/vote_modifier?id=p", Token("backend"), bad).status, 400);
  }
  EXPECT_EQ(Stats(), s);
}

TEST_F(PollApiTest, GlobalPollsAreExtensionWide) {
  VoteOk(Viewer("a", "chan1"), R"({"value":1})", "global-x");
  VoteOk(Viewer("b", "chan2"), R"({"value":2})", "global-x");
  VoteOk(Viewer("a", "chan1"), R"({"value":1})", "local");
  EXPECT_EQ(Stats("global-x", "chan3").at("count"), 2);
  EXPECT_EQ(Stats("local", "chan1").at("count"), 1);
  EXPECT_EQ(Stats("local", "chan2").at("count"), 0);
}

TEST_F(PollApiTest, VotesAndDeletesPublishVoteUpdate) {
  core::events::EventRecorder recorder(app_->events());
  VoteOk(Viewer("a"), R"({"value":2})");
  VoteOk(Viewer("b"), R"({"value":3,"count":2})", "global-g");
  // Refusals publish nothing.
  ExpectError(Call("POST", "/v1/e/vote?id=p", Viewer("a"), R"({"value":500})"), 400,
              "Value out of bounds");
  ExpectError(Call("DELETE", "/v1/e/vote?id=p", Viewer("a")), 403, kRefused);
  ASSERT_EQ(Call("DELETE", "/v1/e/vote?id=p", Token("backend")).status, 200);
  auto events = recorder.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].name, "vote_update:p");
  EXPECT_EQ(events[0].client_id, "ext1");
  EXPECT_EQ(events[0].channel_id, "chan1");
  EXPECT_EQ(events[0].at_ms, clock_.NowMs());
  EXPECT_EQ(json::parse(events[0].payload_json), json::parse(R"({"id":"p","stats":{"stddev":0,
      "mean":2,"sum":2,"count":1,"specific":[0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0]}})"));
  EXPECT_EQ(events[1].name, "vote_update:global-g");
  EXPECT_EQ(events[1].channel_id, "");
  EXPECT_EQ(json::parse(events[1].payload_json).at("stats").at("count"), 2);
  EXPECT_EQ(events[2].name, "vote_update:p");
  EXPECT_EQ(json::parse(events[2].payload_json).at("stats").at("count"), 0);
}

}  // namespace
}  // namespace medkit::app
