// In-process API tests of the trivia routes (spec 5.9): the real app on the memory store with a
// FakeClock, driven through Router::Dispatch. Every endpoint, every role, and refusals that
// leave the data unchanged. The scoring formula itself is tested in trivia_service_test.cc.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "app/app.h"
#include "app/config.h"
#include "core/auth/jwt.h"
#include "core/clock.h"
#include "http/message.h"
#include "http/router.h"

namespace medkit::app {
namespace {

namespace json = boost::json;
using core::FakeClock;
using http::Request;
using http::Response;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr std::string_view kClient = "ext1";
constexpr std::string_view kSecret = "ext1-twitch-secret";
constexpr std::string_view kServerKey = "server-signing-key";
constexpr std::string_view kOwner = "owner1";
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

AppConfig BaseConfig(std::string_view stage) {
  AppConfig config;
  config.stage = std::string(stage);
  config.store = "memory";
  config.signing_key_b64 = core::auth::Base64Encode(kServerKey);
  config.extensions.push_back(ExtensionConfig{
      std::string(kClient), core::auth::Base64Encode(kSecret), std::string(kOwner), {"admin1"}});
  return config;
}

json::value Body(const Response& response) {
  boost::system::error_code ec;
  json::value v = json::parse(response.body, ec);
  return ec ? json::value() : v;
}

json::value J(std::string_view text) { return json::parse(text); }

class TriviaApiTest : public ::testing::Test {
 protected:
  TriviaApiTest() : clock_(kStartMs) {}

  void SetUp() override { Start("sandbox"); }

  void Start(std::string_view stage) {
    app_.reset();
    auto app = App::Create(BaseConfig(stage), clock_);
    ASSERT_TRUE(app.has_value()) << app.error().message;
    app_ = std::move(*app);
  }

  Response Call(
      std::string_view method, std::string_view target, std::string_view auth,
      std::string_view body = {},
      std::string_view content_type = "application/x-www-form-urlencoded; charset=UTF-8") {
    Request request;
    request.method = http::ParseMethod(method);
    http::ParseTarget(target, request);
    request.authorization = std::string(auth);
    request.body = std::string(body);
    request.content_type = std::string(content_type);
    return app_->router().Dispatch(request);
  }

  // Asserts 200 and returns the parsed body.
  json::value Ok(std::string_view method, std::string_view target, std::string_view auth,
                 std::string_view body = {}) {
    Response r = Call(method, target, auth, body);
    EXPECT_EQ(r.status, 200) << method << " " << target << " " << body << ": " << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    return Body(r);
  }

  // Production tokens carry no allowed_stage; sandbox ones may (both are accepted in sandbox).
  std::string Token(std::string_view role, std::string_view channel, std::string_view user) const {
    json::object claims;
    claims["exp"] = clock_.NowSeconds() + 3600;
    claims["role"] = role;
    claims["channel_id"] = channel;
    if (!user.empty()) claims["user_id"] = user;
    claims["opaque_user_id"] = user.empty() ? std::string("Aanon") : "U" + std::string(user);
    return std::string(kClient) + " " + core::auth::SignHs256(claims, kSecret);
  }

  static void ExpectError(const Response& r, int status, std::string_view reason) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value body = Body(r);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body.at("reason"), json::value(json::string_view(reason))) << r.body;
  }

  std::string Admin() const { return Token("admin", "chan1", "admin1"); }

  // A question "q1" with options a, b created by a validated admin.
  void MakeQuestion() {
    EXPECT_EQ(Ok("POST", "/v1/e/curated_poll_edit", Admin(),
                 R"({"id":"q1","name":"First","short_name":"1st","description":"d"})"),
              J("{}"));
    Ok("POST", "/v1/e/curated_poll_edit_option", Admin(),
       R"({"id":"q1","option":{"id":"a","name":"A","short_name":"a","description":""}})");
    Ok("POST", "/v1/e/curated_poll_edit_option", Admin(),
       R"({"id":"q1","option":{"id":"b","name":"B","short_name":"b","description":""}})");
  }

  FakeClock clock_;
  std::unique_ptr<App> app_;
};

TEST_F(TriviaApiTest, FullRunThroughEveryEndpoint) {
  MakeQuestion();
  const std::string admin = Admin();
  const std::string v1 = Token("viewer", "100", "201");
  const std::string v2 = Token("viewer", "200", "202");
  const std::string bc = Token("broadcaster", "100", "100");

  // Editors see the inactive question, viewers do not.
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", admin), J(R"({"questions":[{"id":"q1","name":"First",
      "short_name":"1st","description":"d","options":[
      {"id":"a","name":"A","short_name":"a","description":""},
      {"id":"b","name":"B","short_name":"b","description":""}],"state":"state-inactive"}]})"));
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", v1), J(R"({"questions":[]})"));
  ExpectError(Call("GET", "/v1/e/curated_poll?id=q1", v1), 404, "Not Found");

  // Option edits answer with the question; DELETE carries a JSON body.
  json::value q = Ok("POST", "/v1/e/curated_poll_edit_option", admin,
                     R"({"id":"q1","option":{"id":"c","name":"C","short_name":"c",
                         "description":"","order":3}})");
  EXPECT_EQ(q.at("options").as_array().size(), 3u);
  q = Ok("DELETE", "/v1/e/curated_poll_edit_option", admin, R"({"question":"q1","option":"c"})");
  EXPECT_EQ(q.at("options").as_array().size(), 2u);
  EXPECT_EQ(q.at("state"), "state-inactive");

  EXPECT_EQ(
      Ok("POST", "/v1/e/curated_poll_state?id=q1", admin, R"({"transition":"state-unlocked"})"),
      J(R"({"state":"state-unlocked"})"));

  // Teams: POST without body or Content-Type.
  EXPECT_EQ(Ok("GET", "/v1/e/team_membership", v1), J(R"({"id":""})"));
  Response joined = Call("POST", "/v1/e/team_membership", v1, "", "");
  EXPECT_EQ(joined.status, 200) << joined.body;
  EXPECT_EQ(Body(joined), J(R"({"id":"100"})"));
  EXPECT_EQ(Ok("GET", "/v1/e/team_membership", v1), J(R"({"id":"100"})"));
  EXPECT_EQ(Ok("GET", "/v1/e/team_membership", bc), J(R"({"id":"100"})"));

  EXPECT_EQ(Ok("POST", "/v1/e/curated_poll", v1, R"({"question_id":"q1","vote":"a"})"), J("{}"));
  Ok("POST", "/v1/e/curated_poll", v2, R"({"question_id":"q1","vote":"a"})");
  Ok("POST", "/v1/e/curated_poll", v2, R"({"question_id":"q1","vote":"b"})");
  Ok("POST", "/v1/e/curated_poll", bc, R"({"question_id":"q1","vote":"a"})");
  EXPECT_EQ(Ok("GET", "/v1/e/team_membership", v2), J(R"({"id":"200"})"));
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll?id=q1", v2).at("results"),
            J(R"({"you":"b","counts":{"a":1,"b":1},"percentages":{"a":0.5,"b":0.5}})"));

  Ok("POST", "/v1/e/curated_poll_state?id=q1", admin, R"({"transition":"state-locked"})");
  ExpectError(Call("POST", "/v1/e/curated_poll", v1, R"({"question_id":"q1","vote":"b"})"), 400,
              "poll is closed");
  EXPECT_EQ(Ok("POST", "/v1/e/curated_poll_state?id=q1", admin,
               R"({"transition":"state-results","winner":"a"})"),
            J(R"({"state":"state-results"})"));
  json::value list = Ok("GET", "/v1/e/curated_poll", v1);
  EXPECT_EQ(list.at("questions").at(0).at("results"),
            J(R"({"you":"a","winner":"a","counts":{"a":1,"b":1},
                  "percentages":{"a":0.5,"b":0.5}})"));
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll_leaderboard", v2), J(R"({"leaderboard":[
      {"team_id":"100","combined_score":2000,"questions":{"q1":{"question_id":"q1",
        "broadcaster_correct":true,"team_participation":1,"team_participants":1,
        "percent_correct":1,"team_votes":1,"score_values":[1000,1000]}}},
      {"team_id":"200","combined_score":0,"questions":{"q1":{"question_id":"q1",
        "broadcaster_correct":false,"team_participation":1,"team_participants":1,
        "percent_correct":0,"team_votes":1,"score_values":[0,0]}}}]})"));

  EXPECT_EQ(Ok("DELETE", "/v1/e/curated_poll_edit", admin, R"({"id":"q1"})"), J("{}"));
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", admin), J(R"({"questions":[]})"));
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll_leaderboard", v2), J(R"({"leaderboard":[
      {"team_id":"100","combined_score":0,"questions":{}},
      {"team_id":"200","combined_score":0,"questions":{}}]})"));
}

TEST_F(TriviaApiTest, RolesEditingIsForEditorsOnly) {
  MakeQuestion();
  const std::string before = Call("GET", "/v1/e/curated_poll", Admin()).body;
  struct Edit {
    std::string_view method, target, body;
  };
  const Edit edits[] = {
      {"POST", "/v1/e/curated_poll_edit", R"({"id":"q2"})"},
      {"DELETE", "/v1/e/curated_poll_edit", R"({"id":"q1"})"},
      {"POST", "/v1/e/curated_poll_edit_option", R"({"id":"q1","option":{"id":"z"}})"},
      {"DELETE", "/v1/e/curated_poll_edit_option", R"({"question":"q1","option":"a"})"},
      {"POST", "/v1/e/curated_poll_state?id=q1", R"({"transition":"state-unlocked"})"},
  };
  // Viewers, moderators and broadcasters of other channels may not edit.
  for (const std::string& who : {Token("viewer", "100", "201"), Token("moderator", "100", "203"),
                                 Token("broadcaster", "100", "100")}) {
    for (const auto& e : edits) {
      SCOPED_TRACE(std::string(e.method) + " " + std::string(e.target));
      ExpectError(Call(e.method, e.target, who, e.body), 403, kRefused);
    }
  }
  EXPECT_EQ(Call("GET", "/v1/e/curated_poll", Admin()).body, before);
  // The owner broadcaster and backend may; any admin in the sandbox.
  Ok("POST", "/v1/e/curated_poll_edit", Token("broadcaster", "owner1", "owner1"), R"({"id":"q2"})");
  Ok("POST", "/v1/e/curated_poll_edit", Token("backend", "1", "1"), R"({"id":"q3"})");
  Ok("POST", "/v1/e/curated_poll_edit", Token("admin", "1", "someone"), R"({"id":"q4"})");
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", Admin()).at("questions").as_array().size(), 4u);
  // Admins and backends do not vote or join teams.
  Ok("POST", "/v1/e/curated_poll_state?id=q1", Admin(), R"({"transition":"state-unlocked"})");
  ExpectError(Call("POST", "/v1/e/curated_poll", Admin(), R"({"question_id":"q1","vote":"a"})"),
              403, kRefused);
  ExpectError(Call("POST", "/v1/e/team_membership", Token("backend", "1", "1"), "", ""), 403,
              kRefused);
}

TEST_F(TriviaApiTest, ProductionNeedsAValidatedAdmin) {
  Start("production");
  const std::string stranger = Token("admin", "chan1", "someone");
  ExpectError(Call("POST", "/v1/e/curated_poll_edit", stranger, R"({"id":"q1"})"), 403, kRefused);
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", Admin()), J(R"({"questions":[]})"));
  MakeQuestion();
  ExpectError(Call("POST", "/v1/e/curated_poll_state?id=q1", stranger,
                   R"({"transition":"state-unlocked"})"),
              403, kRefused);
  // A non-validated admin reads like a viewer: no inactive questions.
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", stranger), J(R"({"questions":[]})"));
  EXPECT_EQ(Ok("GET", "/v1/e/curated_poll", Admin()).at("questions").as_array().size(), 1u);
}

TEST_F(TriviaApiTest, RefusalsLeaveDataUnchanged) {
  MakeQuestion();
  const std::string admin = Admin();
  const std::string v1 = Token("viewer", "100", "201");
  Ok("POST", "/v1/e/curated_poll_state?id=q1", admin, R"({"transition":"state-unlocked"})");
  Ok("POST", "/v1/e/curated_poll", v1, R"({"question_id":"q1","vote":"a"})");
  const std::string before = Call("GET", "/v1/e/curated_poll?id=q1", admin).body;
  const std::string board = Call("GET", "/v1/e/curated_poll_leaderboard", admin).body;

  ExpectError(Call("POST", "/v1/e/curated_poll_edit", admin, ""), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/curated_poll_edit", admin, "{nope"), 400, "Malformed json body");
  ExpectError(Call("POST", "/v1/e/curated_poll_edit", admin, R"({"name":"x"})"), 400,
              "question id required");
  ExpectError(Call("DELETE", "/v1/e/curated_poll_edit", admin, ""), 400, "Invalid body");
  ExpectError(Call("DELETE", "/v1/e/curated_poll_edit", admin, "[1]"), 400, "Malformed input body");
  ExpectError(Call("DELETE", "/v1/e/curated_poll_edit", admin, R"({"id":"zz"})"), 404, "Not Found");
  ExpectError(Call("POST", "/v1/e/curated_poll_edit_option", admin, R"({"id":"q1"})"), 400,
              "Malformed input body");
  ExpectError(
      Call("POST", "/v1/e/curated_poll_edit_option", admin, R"({"id":"zz","option":{"id":"x"}})"),
      404, "Not Found");
  ExpectError(
      Call("DELETE", "/v1/e/curated_poll_edit_option", admin, R"({"question":"q1","option":"a"})"),
      400, "options can only be removed while the question is state-inactive");
  ExpectError(
      Call("DELETE", "/v1/e/curated_poll_edit_option", admin, R"({"question":"q1","option":"zz"})"),
      404, "Not Found");
  ExpectError(Call("POST", "/v1/e/curated_poll_state", admin, R"({"transition":"state-locked"})"),
              400, "question id required");
  ExpectError(Call("POST", "/v1/e/curated_poll_state?id=q1", admin, R"({"transition":"open"})"),
              400, "invalid transition");
  ExpectError(Call("POST", "/v1/e/curated_poll_state?id=q1", admin,
                   R"({"transition":"state-results","winner":"a"})"),
              400, "invalid transition");
  ExpectError(
      Call("POST", "/v1/e/curated_poll_state?id=zz", admin, R"({"transition":"state-locked"})"),
      404, "Not Found");
  ExpectError(Call("POST", "/v1/e/curated_poll", v1, R"({"question_id":"q1","vote":"zz"})"), 400,
              "unacceptable vote");
  ExpectError(Call("POST", "/v1/e/curated_poll", v1, R"({"question_id":"zz","vote":"a"})"), 404,
              "Not Found");
  ExpectError(Call("POST", "/v1/e/curated_poll", v1, R"({"vote":"a"})"), 400,
              "question id required");
  ExpectError(Call("POST", "/v1/e/curated_poll", v1, ""), 400, "Invalid body");
  ExpectError(Call("GET", "/v1/e/curated_poll?id=zz", v1), 404, "Not Found");
  ExpectError(Call("POST", "/v1/e/curated_poll", "", R"({"question_id":"q1","vote":"b"})"), 401,
              "missing Authorization header");
  // Locked, results needs a winner that is an option.
  Ok("POST", "/v1/e/curated_poll_state?id=q1", admin, R"({"transition":"state-locked"})");
  const std::string locked = Call("GET", "/v1/e/curated_poll?id=q1", admin).body;
  ExpectError(
      Call("POST", "/v1/e/curated_poll_state?id=q1", admin, R"({"transition":"state-results"})"),
      400, "winner required");
  ExpectError(Call("POST", "/v1/e/curated_poll_state?id=q1", admin,
                   R"({"transition":"state-results","winner":"zz"})"),
              400, "winner is not an option of the question");
  EXPECT_EQ(Call("GET", "/v1/e/curated_poll?id=q1", admin).body, locked);
  EXPECT_NE(before, locked);  // only the state differs
  EXPECT_EQ(Body(Call("GET", "/v1/e/curated_poll?id=q1", admin)).at("results").at("counts"),
            J(R"({"a":1,"b":0})"));
  EXPECT_EQ(Call("GET", "/v1/e/curated_poll_leaderboard", admin).body, board);
}

}  // namespace
}  // namespace medkit::app
