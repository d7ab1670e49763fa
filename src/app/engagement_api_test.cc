// In-process API tests of json_store, accumulate and rank (spec 5.5, 5.6, 5.7): the real app
// built by App::Create with the memory store and a FakeClock, driven through Router::Dispatch.
// Every endpoint, role and refusal; data is read back unchanged after each refusal.
#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "app/app.h"
#include "app/config.h"
#include "core/auth/jwt.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "core/result.h"
#include "http/message.h"
#include "http/router.h"

namespace medkit::app {
namespace {

namespace json = boost::json;
using core::FakeClock;
using http::Request;
using http::Response;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kHourMs = 3600LL * 1000;
constexpr std::string_view kClient = "ext1";
constexpr std::string_view kSecret = "ext1-twitch-secret";
constexpr std::string_view kServerKey = "server-signing-key";
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

AppConfig BaseConfig(std::string_view stage) {
  AppConfig config;
  config.stage = std::string(stage);
  config.store = "memory";
  config.signing_key_b64 = core::auth::Base64Encode(kServerKey);
  config.extensions.push_back(ExtensionConfig{
      std::string(kClient), core::auth::Base64Encode(kSecret), "owner1", {"admin1"}});
  return config;
}

json::value Body(const Response& response) {
  boost::system::error_code ec;
  json::value v = json::parse(response.body, ec);
  return ec ? json::value() : v;
}

class EngagementApiTest : public ::testing::Test {
 protected:
  EngagementApiTest() : clock_(kStartMs) {}
  void SetUp() override { Start("sandbox"); }

  void Start(std::string_view stage) {
    app_.reset();
    auto app = App::Create(BaseConfig(stage), clock_);
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
    request.remote_ip = "203.0.113.7";
    request.content_type = "application/x-www-form-urlencoded; charset=UTF-8";
    return app_->router().Dispatch(request);
  }

  // Authorization header for ext1, signed with the extension secret (no allowed_stage claim,
  // so it works in both stages).
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

  static void ExpectOk(const Response& r, std::string_view body) {
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Body(r), json::parse(body)) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
  }
  static void ExpectError(const Response& r, int status, std::string_view reason) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value body = Body(r);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body.at("reason"), json::value(json::string_view(reason))) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
  }

  FakeClock clock_;
  std::unique_ptr<App> app_;
};

// ---------------------------------------------------------------------------------------------

TEST_F(EngagementApiTest, EveryRouteIsRegisteredAndNeedsAToken) {
  const std::string backend = Token("backend");
  struct Route {
    std::string_view method, target, body;
  };
  const Route routes[] = {
      {"POST", "/v1/e/json_store?id=k", "{}"},
      {"GET", "/v1/e/json_store?id=k", ""},
      {"POST", "/v1/e/accumulate?id=b", "{}"},
      {"GET", "/v1/e/accumulate?id=b&start=0", ""},
      {"POST", "/v1/e/rank?id=r", R"({"key":"x"})"},
      {"GET", "/v1/e/rank?id=r", ""},
      {"DELETE", "/v1/e/rank?id=r", ""},
  };
  for (const auto& route : routes) {
    SCOPED_TRACE(std::string(route.method) + " " + std::string(route.target));
    EXPECT_EQ(Call(route.method, route.target, backend, route.body).status, 200);
    ExpectError(Call(route.method, route.target, "", route.body), 401,
                "missing Authorization header");
  }
  EXPECT_EQ(Call("DELETE", "/v1/e/json_store?id=k", backend).status, 405);
  EXPECT_EQ(Call("PATCH", "/v1/e/accumulate?id=b", backend, "{}").status, 405);
  EXPECT_EQ(Call("PUT", "/v1/e/rank?id=r", backend, "{}").status, 405);
}

// ---------------------------------------------------------------------------------------------
// json_store

TEST_F(EngagementApiTest, JsonStoreRoundTripRolesAndErrors) {
  const std::string viewer = Token("viewer", "chan1", "v1");
  const std::string broadcaster = Token("broadcaster", "chan1", "chan1");
  ExpectError(Call("GET", "/v1/e/json_store?id=basecamp", viewer), 404, "Not Found");
  ExpectOk(Call("POST", "/v1/e/json_store?id=basecamp", broadcaster, R"({"camp":1})"), "{}");
  ExpectOk(Call("GET", "/v1/e/json_store?id=basecamp", viewer), R"({"camp":1})");
  ExpectOk(Call("POST", "/v1/e/json_store?id=basecamp", Token("admin"), R"({"camp":2})"), "{}");
  ExpectOk(Call("GET", "/v1/e/json_store?id=basecamp", viewer), R"({"camp":2})");
  ExpectOk(Call("POST", "/v1/e/json_store?id=basecamp", Token("backend"), R"({"camp":3})"), "{}");
  ExpectOk(Call("POST", "/v1/e/json_store?id=basecamp", Token("external"), R"({"camp":4})"), "{}");
  // Refusals, each leaving the object unchanged.
  for (std::string_view role : {"viewer", "moderator"}) {
    ExpectError(Call("POST", "/v1/e/json_store?id=basecamp", Token(role), R"({"camp":0})"), 403,
                kRefused);
  }
  ExpectError(Call("POST", "/v1/e/json_store?id=basecamp", broadcaster, "[1]"), 400,
              "Malformed json body");
  ExpectError(Call("POST", "/v1/e/json_store?id=basecamp", broadcaster, "{oops"), 400,
              "Malformed json body");
  ExpectError(Call("POST", "/v1/e/json_store?id=basecamp", broadcaster, ""), 400, "Invalid body");
  const std::string big = R"({"s":")" + std::string(2040, 'x') + R"("})";
  ExpectError(Call("POST", "/v1/e/json_store?id=basecamp", broadcaster, big), 400,
              "document too large");
  ExpectError(Call("POST", "/v1/e/json_store?id=bad.id", broadcaster, "{}"), 400,
              "invalid json_store id");
  ExpectError(Call("GET", "/v1/e/json_store?id=bad%20id", viewer), 400, "invalid json_store id");
  ExpectError(Call("GET", "/v1/e/json_store?id=" + std::string(65, 'a'), viewer), 400,
              "json_store id too long");
  ExpectOk(Call("GET", "/v1/e/json_store?id=basecamp", viewer), R"({"camp":4})");
  // A double-encoded body is stored as the object.
  ExpectOk(Call("POST", "/v1/e/json_store?id=enc", broadcaster, R"("{\"a\":1}")"), "{}");
  ExpectOk(Call("GET", "/v1/e/json_store?id=enc", viewer), R"({"a":1})");
  // Default id.
  ExpectOk(Call("POST", "/v1/e/json_store", broadcaster, R"({"d":1})"), "{}");
  ExpectOk(Call("GET", "/v1/e/json_store?id=default", viewer), R"({"d":1})");
  ExpectOk(Call("GET", "/v1/e/json_store?id=", viewer), R"({"d":1})");
}

TEST_F(EngagementApiTest, JsonStoreScopesEventsAndExpiry) {
  core::events::EventRecorder recorder(app_->events());
  ExpectOk(
      Call("POST", "/v1/e/json_store?id=k", Token("broadcaster", "chan1", "chan1"), R"({"c":1})"),
      "{}");
  ExpectOk(Call("POST", "/v1/e/json_store?id=global_k", Token("backend", "chanX"), R"({"g":1})"),
           "{}");
  ExpectError(Call("GET", "/v1/e/json_store?id=k", Token("viewer", "chan2")), 404, "Not Found");
  ExpectOk(Call("GET", "/v1/e/json_store?id=global_k", Token("viewer", "chan2")), R"({"g":1})");
  ExpectError(Call("POST", "/v1/e/json_store?id=k", Token("viewer"), R"({"no":1})"), 403, kRefused);
  auto events = recorder.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].name, "json_store_update:k");
  EXPECT_EQ(events[0].channel_id, "chan1");
  EXPECT_EQ(json::parse(events[0].payload_json), json::parse(R"({"id":"k","value":{"c":1}})"));
  EXPECT_EQ(events[1].name, "json_store_update:global_k");
  EXPECT_EQ(events[1].channel_id, "");
  clock_.AdvanceMs(14 * 24 * kHourMs);
  ExpectError(Call("GET", "/v1/e/json_store?id=k", Token("viewer")), 404, "Not Found");
  ExpectError(Call("GET", "/v1/e/json_store?id=global_k", Token("viewer")), 404, "Not Found");
}

// ---------------------------------------------------------------------------------------------
// accumulate

TEST_F(EngagementApiTest, AccumulateRolesShapesAndErrors) {
  ExpectOk(Call("POST", "/v1/e/accumulate?id=b", Token("viewer", "chan1", "v1"), R"({"n":1})"),
           "{}");
  clock_.AdvanceMs(10);
  ExpectOk(Call("POST", "/v1/e/accumulate?id=b", Token("viewer", "chan2", ""), R"({"n":2})"), "{}");
  clock_.AdvanceMs(10);
  ExpectOk(
      Call("POST", "/v1/e/accumulate?id=b", Token("broadcaster", "chan1", "chan1"), R"({"n":3})"),
      "{}");
  const std::string e1 = R"({"observed":1700000000000,"channel_id":"chan1",)"
                         R"("opaque_user_id":"Uv1","user_id":"v1","data":{"n":1}})";
  const std::string e2 = R"({"observed":1700000000010,"channel_id":"chan2",)"
                         R"("opaque_user_id":"Aanon","user_id":"","data":{"n":2}})";
  const std::string e3 = R"({"observed":1700000000020,"channel_id":"chan1",)"
                         R"("opaque_user_id":"Uchan1","user_id":"chan1","data":{"n":3}})";
  const std::string broadcaster = Token("broadcaster", "chan1", "chan1");
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=0", broadcaster),
           R"({"data":[)" + e1 + "," + e3 + R"(],"latest":1700000000020})");
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b", broadcaster),  // missing start = 0
           R"({"data":[)" + e1 + "," + e3 + R"(],"latest":1700000000020})");
  for (std::string_view role : {"admin", "backend"}) {
    ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=0", Token(role, "other")),
             R"({"data":[)" + e1 + "," + e2 + "," + e3 + R"(],"latest":1700000000020})");
  }
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=1700000000010", Token("admin")),
           R"({"data":[)" + e3 + R"(],"latest":1700000000020})");
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=1700000000020", Token("admin")),
           R"({"data":[],"latest":0})");
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=0", Token("broadcaster", "chan9", "chan9")),
           R"({"data":[],"latest":0})");
  // Refusals and errors; the buffer is unchanged afterwards.
  ExpectError(Call("GET", "/v1/e/accumulate?id=b&start=0", Token("viewer")), 403, kRefused);
  ExpectError(Call("GET", "/v1/e/accumulate?id=b&start=0", Token("moderator")), 403, kRefused);
  for (std::string_view start : {"undefined", "", "1.5", "abc", "1e3"}) {
    ExpectError(Call("GET", "/v1/e/accumulate?id=b&start=" + std::string(start), broadcaster), 400,
                "Malformed start parameter");
  }
  ExpectError(Call("POST", "/v1/e/accumulate?id=b", Token("viewer"), "[1]"), 400,
              "Malformed json body");
  ExpectError(Call("POST", "/v1/e/accumulate?id=b", Token("viewer"), "{bad"), 400,
              "Malformed json body");
  const std::string big = R"({"s":")" + std::string(248, 'x') + R"("})";  // 256 bytes
  ExpectError(Call("POST", "/v1/e/accumulate?id=b", Token("viewer"), big), 400,
              "accumulate payload too large");
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=0", Token("admin")),
           R"({"data":[)" + e1 + "," + e2 + "," + e3 + R"(],"latest":1700000000020})");
  // Default id; 24 h per-entry expiry.
  ExpectOk(Call("POST", "/v1/e/accumulate", Token("viewer", "chan1", "v1"), R"({"d":1})"), "{}");
  EXPECT_EQ(Body(Call("GET", "/v1/e/accumulate?id=default&start=0", broadcaster))
                .at("data")
                .as_array()
                .size(),
            1u);
  clock_.AdvanceMs(24 * kHourMs);
  ExpectOk(Call("GET", "/v1/e/accumulate?id=b&start=0", Token("admin")),
           R"({"data":[],"latest":0})");
}

// ---------------------------------------------------------------------------------------------
// rank

TEST_F(EngagementApiTest, RankAnswersReplaceAndScore) {
  const std::string broadcaster = Token("broadcaster", "chan1", "chan1");
  ExpectOk(Call("GET", "/v1/e/rank?id=empty", Token("viewer")), R"({"data":[]})");
  ExpectOk(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "a"), R"({"key":"DOTA"})"),
           R"({"accepted":true})");
  ExpectOk(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "b"), R"({"key":"DOTA"})"),
           R"({"accepted":true})");
  ExpectOk(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "c"), R"({"key":"LoL"})"),
           R"({"accepted":true})");
  ExpectOk(Call("GET", "/v1/e/rank?id=game", broadcaster),
           R"({"data":[{"key":"DOTA","score":2},{"key":"LoL","score":1}]})");
  ExpectOk(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "b"), R"({"key":"LoL"})"),
           R"({"accepted":true,"original":"DOTA"})");
  ExpectOk(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "a"), R"({"key":"Chess"})"),
           R"({"accepted":true,"original":"DOTA"})");
  const std::string scores = R"({"data":[{"key":"LoL","score":2},{"key":"Chess","score":1}]})";
  for (std::string_view role : {"broadcaster", "admin", "backend", "viewer"}) {
    ExpectOk(Call("GET", "/v1/e/rank?id=game", Token(role)), scores);  // viewer: sandbox only
  }
  // Malformed answers change nothing.
  for (std::string_view body : {R"({"key":1})", R"({"key":null})", R"({"value":"x"})", "[]",
                                R"("DOTA")", "{bad", R"({"key":["x"]})"}) {
    SCOPED_TRACE(body);
    ExpectError(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "a"), body), 400,
                "Malformed json body");
  }
  ExpectError(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "a"),
                   R"({"key":")" + std::string(129, 'k') + R"("})"),
              400, "rank key too long");
  ExpectError(
      Call("POST", "/v1/e/rank?id=" + std::string(65, 'r'), Token("viewer"), R"({"key":"x"})"), 400,
      "rank id too long");
  // Viewers may not delete.
  ExpectError(Call("DELETE", "/v1/e/rank?id=game", Token("viewer")), 403, kRefused);
  ExpectOk(Call("GET", "/v1/e/rank?id=game", broadcaster), scores);
  // Other channel: its own rank. global*: one rank for all channels.
  ExpectOk(Call("GET", "/v1/e/rank?id=game", Token("broadcaster", "chan2", "chan2")),
           R"({"data":[]})");
  ExpectOk(
      Call("POST", "/v1/e/rank?id=global_game", Token("viewer", "chan2", "a"), R"({"key":"x"})"),
      R"({"accepted":true})");
  ExpectOk(Call("GET", "/v1/e/rank?id=global_game", broadcaster),
           R"({"data":[{"key":"x","score":1}]})");
  // DELETE by broadcaster, admin, backend.
  ExpectOk(Call("DELETE", "/v1/e/rank?id=game", broadcaster), "{}");
  ExpectOk(Call("GET", "/v1/e/rank?id=game", broadcaster), R"({"data":[]})");
  ExpectOk(Call("POST", "/v1/e/rank?id=game", Token("viewer", "chan1", "a"), R"({"key":"Go"})"),
           R"({"accepted":true})");
  ExpectOk(Call("DELETE", "/v1/e/rank?id=game", Token("admin")), "{}");
  ExpectOk(Call("DELETE", "/v1/e/rank?id=game", Token("backend")), "{}");
  ExpectOk(Call("GET", "/v1/e/rank?id=game", broadcaster), R"({"data":[]})");
  // A double-encoded body works; the default id is "default".
  ExpectOk(Call("POST", "/v1/e/rank", Token("viewer", "chan1", "a"), R"("{\"key\":\"y\"}")"),
           R"({"accepted":true})");
  ExpectOk(Call("GET", "/v1/e/rank?id=default", broadcaster),
           R"({"data":[{"key":"y","score":1}]})");
}

TEST_F(EngagementApiTest, RankViewerReadsOnlyInSandboxAndExpiry) {
  Start("production");
  const std::string broadcaster = Token("broadcaster", "chan1", "chan1");
  ExpectOk(Call("POST", "/v1/e/rank?id=q", Token("viewer", "chan1", "a"), R"({"key":"x"})"),
           R"({"accepted":true})");
  ExpectError(Call("GET", "/v1/e/rank?id=q", Token("viewer")), 403, kRefused);
  ExpectError(Call("GET", "/v1/e/rank?id=q", Token("moderator")), 403, kRefused);
  ExpectOk(Call("GET", "/v1/e/rank?id=q", broadcaster), R"({"data":[{"key":"x","score":1}]})");
  clock_.AdvanceMs(20 * kHourMs);
  ExpectOk(Call("POST", "/v1/e/rank?id=q", Token("viewer", "chan1", "b"), R"({"key":"y"})"),
           R"({"accepted":true})");
  clock_.AdvanceMs(20 * kHourMs);
  ExpectOk(Call("GET", "/v1/e/rank?id=q", broadcaster),
           R"({"data":[{"key":"x","score":1},{"key":"y","score":1}]})");
  clock_.AdvanceMs(4 * kHourMs);  // 24 h after the last answer
  ExpectOk(Call("GET", "/v1/e/rank?id=q", broadcaster), R"({"data":[]})");
  ExpectOk(Call("POST", "/v1/e/rank?id=q", Token("viewer", "chan1", "a"), R"({"key":"z"})"),
           R"({"accepted":true})");
  ExpectOk(Call("GET", "/v1/e/rank?id=q", broadcaster), R"({"data":[{"key":"z","score":1}]})");
}

}  // namespace
}  // namespace medkit::app
