// In-process API tests (Dragonfly BaseFamilyTest style): the real app, built by App::Create
// with the memory store and a FakeClock, driven through Router::Dispatch without sockets.
// Also ParseTarget (the request-target decoder) and the config file loader.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "app/app.h"
#include "core/events/event_bus.h"
#include "app/config.h"
#include "core/auth/jwt.h"
#include "core/clock.h"
#include "core/result.h"
#include "http/message.h"
#include "http/router.h"

namespace medkit::app {
namespace {

namespace json = boost::json;
using core::Errc;
using core::FakeClock;
using http::Request;
using http::Response;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr std::string_view kClient = "ext1";
constexpr std::string_view kSecret = "ext1-twitch-secret";
constexpr std::string_view kServerKey = "server-signing-key";
constexpr std::string_view kOwner = "owner1";
constexpr std::string_view kRemoteIp = "203.0.113.77";

template <class T>
std::string ErrorText(const core::Result<T>& result) {
  return result ? std::string("ok") : result.error().message;
}

AppConfig BaseConfig(std::string_view stage) {
  AppConfig config;
  config.stage = std::string(stage);
  config.store = "memory";
  config.signing_key_b64 = core::auth::Base64Encode(kServerKey);
  config.extensions.push_back(ExtensionConfig{
      std::string(kClient), core::auth::Base64Encode(kSecret), std::string(kOwner), {"admin1"}});
  return config;
}

// The parsed JSON body of a response (null when it is not JSON).
json::value Body(const Response& response) {
  boost::system::error_code ec;
  json::value v = json::parse(response.body, ec);
  return ec ? json::value() : v;
}

std::optional<std::string> HeaderOf(const Response& response, std::string_view name) {
  for (const auto& [k, v] : response.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() : clock_(kStartMs) {}

  void SetUp() override { Start(BaseConfig("sandbox")); }

  void Start(const AppConfig& config) {
    app_.reset();
    auto app = App::Create(config, clock_);
    ASSERT_TRUE(app.has_value()) << ErrorText(app);
    app_ = std::move(*app);
  }

  // One request through the router. authorization is the whole header value ("" for none).
  Response Call(std::string_view method, std::string_view target,
                std::string_view authorization = {}, std::string_view body = {}) {
    Request request;
    request.method = http::ParseMethod(method);
    http::ParseTarget(target, request);
    request.authorization = std::string(authorization);
    request.body = std::string(body);
    request.remote_ip = std::string(kRemoteIp);
    request.content_type = "application/x-www-form-urlencoded; charset=UTF-8";  // as MEDKit sends
    return app_->router().Dispatch(request);
  }

  // An Authorization header for ext1 signed with the extension secret (valid for a year).
  std::string Token(std::string_view role, std::string_view channel = "chan1",
                    std::string_view user = "user1", std::string_view allowed_stage = {}) const {
    json::object claims;
    claims["exp"] = clock_.NowSeconds() + 365 * 86400;
    claims["role"] = role;
    claims["channel_id"] = channel;
    if (!user.empty()) claims["user_id"] = user;
    claims["opaque_user_id"] = user.empty() ? std::string("Aanon") : "U" + std::string(user);
    if (!allowed_stage.empty()) claims["allowed_stage"] = allowed_stage;
    return std::string(kClient) + " " + core::auth::SignHs256(claims, kSecret);
  }

  // POST authtoken and the Authorization header for the token it returns.
  std::string SandboxToken(std::string_view body_json, std::string_view client = kClient) {
    Response r = Call("POST", "/v1/e/authtoken", {}, body_json);
    EXPECT_EQ(r.status, 200) << r.body;
    json::value body = Body(r);
    if (!body.is_object() || !body.as_object().contains("token")) return {};
    return std::string(client) + " " + std::string(body.at("token").as_string());
  }

  // Asserts status and a {"reason": reason} body.
  static void ExpectError(const Response& r, int status, std::string_view reason) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value body = Body(r);
    ASSERT_TRUE(body.is_object()) << r.body;
    ASSERT_TRUE(body.as_object().contains("reason")) << r.body;
    EXPECT_EQ(body.at("reason"), json::value(json::string_view(reason))) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
  }

  FakeClock clock_;
  std::unique_ptr<App> app_;
};

// ---------------------------------------------------------------------------------------------
// Route table

TEST_F(ApiTest, EveryRouteIsRegistered) {
  const std::string backend = Token("backend", "chan1", "user1");
  struct Route {
    std::string_view method;
    std::string_view path;
    bool auth;
    std::string_view body;
  };
  const Route routes[] = {
      {"GET", "/healthz", false, ""},
      {"GET", "/metrics", false, ""},
      {"POST", "/v1/e/authtoken", false, R"({"app_id":"ext1","channel_id":"1","role":"viewer"})"},
      {"GET", "/v1/e/user_info", true, ""},
      {"GET", "/v1/e/all_state", true, ""},
      {"GET", "/v1/e/extension_state", true, ""},
      {"POST", "/v1/e/extension_state", true, "{}"},
      {"PATCH", "/v1/e/extension_state", true, "[]"},
      {"GET", "/v1/e/channel_state", true, ""},
      {"POST", "/v1/e/channel_state", true, "{}"},
      {"PATCH", "/v1/e/channel_state", true, "[]"},
      {"GET", "/v1/e/viewer_state", true, ""},
      {"POST", "/v1/e/viewer_state", true, "{}"},
      {"PATCH", "/v1/e/viewer_state", true, "[]"},
      {"GET", "/v1/e/extension_viewer_state", true, ""},
      {"POST", "/v1/e/extension_viewer_state", true, "{}"},
      {"PATCH", "/v1/e/extension_viewer_state", true, "[]"},
      {"GET", "/v1/e/extension_hidden_state", true, ""},
      {"POST", "/v1/e/extension_hidden_state", true, "{}"},
      {"PATCH", "/v1/e/extension_hidden_state", true, "[]"},
      {"GET", "/v1/e/config", true, ""},
      {"GET", "/v1/e/config/channel", true, ""},
      {"POST", "/v1/e/config/channel", true, "{}"},
      {"PATCH", "/v1/e/config/channel", true, "[]"},
      {"GET", "/v1/e/config/extension", true, ""},
      {"POST", "/v1/e/config/extension", true, "{}"},
      {"PATCH", "/v1/e/config/extension", true, "[]"},
      {"GET", "/v1/e/all_config", true, ""},
      {"GET", "/v1/e/channel_config", true, ""},
      {"POST", "/v1/e/channel_config", true, "{}"},
      {"PATCH", "/v1/e/channel_config", true, "[]"},
      {"GET", "/v1/e/extension_config", true, ""},
      {"POST", "/v1/e/extension_config", true, "{}"},
      {"PATCH", "/v1/e/extension_config", true, "[]"},
  };
  for (const auto& route : routes) {
    SCOPED_TRACE(std::string(route.method) + " " + std::string(route.path));
    Response r =
        Call(route.method, route.path, route.auth ? std::string_view(backend) : "", route.body);
    EXPECT_EQ(r.status, 200) << r.body;
    if (route.path != "/metrics") {
      EXPECT_TRUE(Body(r).is_object()) << r.body;
    }
    if (route.auth) {
      // Authenticated routes refuse a request without a token.
      ExpectError(Call(route.method, route.path, "", route.body), 401,
                  "missing Authorization header");
    }
  }
}

TEST_F(ApiTest, HealthAndMetrics) {
  Response health = Call("GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(Body(health), json::parse(R"({"status":"ok"})"));

  Call("GET", "/v1/e/channel_state", Token("viewer"));
  Response metrics = Call("GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type, "text/plain; version=0.0.4");
  EXPECT_NE(metrics.body.find(
                R"(medkit_http_requests_total{route="GET /v1/e/channel_state",status="200"} 1)"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("medkit_store_operations_total{store=\"memory\",op=\"get\"}"),
            std::string::npos)
      << metrics.body;
}

TEST_F(ApiTest, AliasesServeTheSameDocuments) {
  const std::string backend = Token("backend");
  EXPECT_EQ(Call("POST", "/v1/e/channel_config", backend, R"({"via":"alias"})").status, 200);
  EXPECT_EQ(Body(Call("GET", "/v1/e/config/channel", backend)), json::parse(R"({"via":"alias"})"));
  EXPECT_EQ(Call("POST", "/v1/e/config/extension", backend, R"({"ext":1})").status, 200);
  EXPECT_EQ(Body(Call("GET", "/v1/e/extension_config", backend)), json::parse(R"({"ext":1})"));
  EXPECT_EQ(
      Call("PATCH", "/v1/e/extension_config", backend, R"([{"op":"add","path":"/more","value":2}])")
          .status,
      200);
  const json::value expected =
      json::parse(R"({"channel":{"via":"alias"},"extension":{"ext":1,"more":2}})");
  EXPECT_EQ(Body(Call("GET", "/v1/e/config", backend)), expected);
  EXPECT_EQ(Body(Call("GET", "/v1/e/all_config", backend)), expected);
}

TEST_F(ApiTest, UnknownPathIs404) {
  const std::string viewer = Token("viewer");
  for (std::string_view path :
       {"/", "/v1/e/", "/v1/e/nope", "/v1/e/authenticate", "/v1/e/config/other",
        "/v1/e/channel_state/extra", "/v1/channel_state", "/V1/E/CHANNEL_STATE"}) {
    SCOPED_TRACE(path);
    ExpectError(Call("GET", path, viewer), 404, "Not Found");
    ExpectError(Call("POST", path, "", "{}"), 404, "Not Found");
  }
}

TEST_F(ApiTest, WrongMethodIs405) {
  const std::string backend = Token("backend");
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"DELETE", "/v1/e/channel_state"},
      {"PUT", "/v1/e/channel_state"},
      {"POST", "/v1/e/all_state"},
      {"PATCH", "/v1/e/config"},
      {"POST", "/v1/e/all_config"},
      {"GET", "/v1/e/authtoken"},
      {"POST", "/v1/e/user_info"},
      {"POST", "/healthz"},
      {"DELETE", "/metrics"},
      {"BREW", "/v1/e/channel_state"},
  };
  for (const auto& [method, path] : cases) {
    SCOPED_TRACE(std::string(method) + " " + std::string(path));
    ExpectError(Call(method, path, backend, "{}"), 405, "Method Not Allowed");
  }
}

TEST_F(ApiTest, HeadAndTrailingSlash) {
  const std::string viewer = Token("viewer");
  EXPECT_EQ(Call("HEAD", "/v1/e/channel_state", viewer).status, 200);
  EXPECT_EQ(Call("HEAD", "/healthz").status, 200);
  EXPECT_EQ(Call("GET", "/v1/e/channel_state/", viewer).status, 200);
  EXPECT_EQ(Call("GET", "/v1/e/config/channel/", viewer).status, 200);
}

TEST_F(ApiTest, OptionsPreflightIs204Everywhere) {
  for (std::string_view path :
       {"/v1/e/channel_state", "/v1/e/authtoken", "/v1/e/nope", "/", "/healthz"}) {
    SCOPED_TRACE(path);
    Response r = Call("OPTIONS", path);  // no Authorization: preflights never carry one
    EXPECT_EQ(r.status, 204);
    EXPECT_TRUE(r.body.empty()) << r.body;
    auto methods = HeaderOf(r, "Access-Control-Allow-Methods");
    ASSERT_TRUE(methods.has_value());
    for (std::string_view m : {"GET", "POST", "PATCH", "DELETE", "OPTIONS"}) {
      EXPECT_NE(methods->find(m), std::string::npos) << *methods;
    }
    auto headers = HeaderOf(r, "Access-Control-Allow-Headers");
    ASSERT_TRUE(headers.has_value());
    EXPECT_NE(headers->find("Authorization"), std::string::npos);
    EXPECT_NE(headers->find("Content-Type"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// Error bodies (spec 3.4)

TEST_F(ApiTest, ErrorBodiesAreReasonObjects) {
  ExpectError(Call("GET", "/v1/e/channel_state"), 401, "missing Authorization header");
  ExpectError(Call("GET", "/v1/e/channel_state", "ext1"), 401,
              "malformed Authorization header: expected '<client_id> <jwt>'");
  ExpectError(Call("GET", "/v1/e/channel_state", "ext1 a.b.c"), 401, "malformed token");
  ExpectError(Call("GET", "/v1/e/extension_hidden_state", Token("viewer")), 403,
              "The JWT role is not allowed to perform this operation.");
  ExpectError(Call("POST", "/v1/e/channel_state", Token("viewer"), "{}"), 403,
              "The JWT role is not allowed to perform this operation.");
  ExpectError(Call("POST", "/v1/e/channel_state", Token("broadcaster"), "{"), 400,
              "Malformed json body");
  ExpectError(Call("POST", "/v1/e/channel_state", Token("broadcaster"), ""), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/channel_state", Token("broadcaster"), " \r\n"), 400,
              "Invalid body");
  ExpectError(Call("POST", "/v1/e/channel_state", Token("broadcaster"), "[1]"), 400,
              "Malformed input body");
  ExpectError(Call("PATCH", "/v1/e/channel_state", Token("broadcaster"), "7"), 400,
              "Malformed input body");
  ExpectError(Call("GET", "/v1/e/extension_viewer_state", Token("viewer", "chan1", "")), 400,
              "user id required");

  // Errors with info carry it beside the reason, and nothing else.
  Response stage = Call("GET", "/v1/e/channel_state", Token("viewer", "chan1", "u", "production"));
  ExpectError(stage, 403, "User was unauthorized to access this resource");
  EXPECT_EQ(Body(stage), json::parse(R"({"reason":"User was unauthorized to access this resource",)"
                                     R"("info":"Allowed stage mismatch"})"));
}

TEST_F(ApiTest, ProductionStageBinding) {
  Start(BaseConfig("production"));
  Response sandbox_token = Call("GET", "/v1/e/user_info", Token("viewer", "c", "u", "sandbox"));
  ExpectError(sandbox_token, 403, "User was unauthorized to access this resource");
  EXPECT_EQ(Body(sandbox_token).at("info"), "Allowed stage mismatch");
  EXPECT_EQ(Call("GET", "/v1/e/user_info", Token("viewer")).status, 200);

  // Unknown client ids are refused in production.
  std::string header = Token("viewer");
  header.replace(0, kClient.size(), "other");
  ExpectError(Call("GET", "/v1/e/user_info", header), 401, "No such extension found");
}

// ---------------------------------------------------------------------------------------------
// Session routes (spec 5.1)

TEST_F(ApiTest, UserInfoReportsTheFakeClock) {
  Response r = Call("GET", "/v1/e/user_info", Token("viewer"));
  ASSERT_EQ(r.status, 200) << r.body;
  json::value body = Body(r);
  EXPECT_EQ(body.at("server_time"), kStartMs);
  EXPECT_EQ(body.at("ip_address"), "203.0.113.0");
  EXPECT_EQ(body.at("registered"), false);
  EXPECT_EQ(body.at("visualization_id"), "");

  clock_.AdvanceMs(12'345);
  EXPECT_EQ(Body(Call("GET", "/v1/e/user_info", Token("viewer"))).at("server_time"),
            kStartMs + 12'345);
}

TEST_F(ApiTest, UserInfoMasksTheAddress) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"198.51.100.23", "198.51.100.0"},
      {"::ffff:198.51.100.23", "198.51.100.0"},
      {"2001:db8:1:2::17", "2001:db8:1:2::0"},
  };
  for (const auto& [ip, masked] : cases) {
    Request request;
    request.method = http::Method::kGet;
    http::ParseTarget("/v1/e/user_info", request);
    request.authorization = Token("viewer");
    request.remote_ip = std::string(ip);
    Response r = app_->router().Dispatch(request);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Body(r).at("ip_address"), json::value(json::string_view(masked))) << ip;
  }
}

TEST_F(ApiTest, AuthTokenTokensWork) {
  const std::string broadcaster =
      SandboxToken(R"({"app_id":"ext1","channel_id":"123","role":"broadcaster","user_id":"999"})");
  ASSERT_FALSE(broadcaster.empty());
  EXPECT_EQ(Call("GET", "/v1/e/user_info", broadcaster).status, 200);
  EXPECT_EQ(Call("POST", "/v1/e/channel_state", broadcaster, R"({"live":true})").status, 200);

  // "extension_id" works as well as "app_id"; numbers are accepted for ids.
  const std::string viewer =
      SandboxToken(R"({"extension_id":"ext1","channel_id":123,"role":"viewer","user_id":5})");
  ASSERT_FALSE(viewer.empty());
  EXPECT_EQ(Body(Call("GET", "/v1/e/channel_state", viewer)), json::parse(R"({"live":true})"));
  ExpectError(Call("POST", "/v1/e/channel_state", viewer, "{}"), 403,
              "The JWT role is not allowed to perform this operation.");

  // A client id the server does not know works in the sandbox, bound to that client id.
  const std::string dev =
      SandboxToken(R"({"app_id":"dev-client","channel_id":"1","role":"viewer"})", "dev-client");
  EXPECT_EQ(Call("GET", "/v1/e/user_info", dev).status, 200);
  std::string rebound = dev;
  rebound.replace(0, std::string_view("dev-client").size(), "ext1");
  EXPECT_EQ(Call("GET", "/v1/e/user_info", rebound).status, 401);

  // Sandbox tokens are admins when asked for, and validated in the sandbox.
  const std::string admin =
      SandboxToken(R"({"app_id":"ext1","channel_id":"1","role":"admin","user_id":"7"})");
  EXPECT_EQ(Call("POST", "/v1/e/extension_hidden_state", admin, R"({"s":1})").status, 200);
}

TEST_F(ApiTest, AuthTokenRoleFromQueryAndUserIds) {
  // ?role= is the fallback when the body has none.
  const std::string admin = SandboxToken(R"({"app_id":"ext1","channel_id":"1","user_id":"7"})");
  EXPECT_EQ(Call("GET", "/v1/e/extension_hidden_state", admin).status, 403);  // viewer
  Response by_query = Call("POST", "/v1/e/authtoken?role=admin", {},
                           R"({"app_id":"ext1","channel_id":"1","user_id":"7"})");
  ASSERT_EQ(by_query.status, 200) << by_query.body;
  EXPECT_EQ(Call("GET", "/v1/e/extension_hidden_state",
                 "ext1 " + std::string(Body(by_query).at("token").as_string()))
                .status,
            200);

  Response many = Call("POST", "/v1/e/authtoken", {},
                       R"({"app_id":"ext1","channel_id":"1","role":"viewer","user_id":"a",)"
                       R"("user_ids":["b","c"]})");
  ASSERT_EQ(many.status, 200) << many.body;
  const json::value many_body = Body(many);
  const json::array& tokens = many_body.at("tokens").as_array();
  ASSERT_EQ(tokens.size(), 3u);
  const char* users[] = {"a", "b", "c"};
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string header = "ext1 " + std::string(tokens[i].as_string());
    ASSERT_EQ(
        Call("POST", "/v1/e/viewer_state", header, std::string(R"({"me":")") + users[i] + "\"}")
            .status,
        200);
  }
  // Each token wrote its own viewer's document.
  EXPECT_EQ(Body(Call("GET", "/v1/e/viewer_state", Token("viewer", "1", "b"))),
            json::parse(R"({"me":"b"})"));

  // Anonymous: one token.
  Response anonymous = Call("POST", "/v1/e/authtoken", {}, R"({"app_id":"ext1","channel_id":"1"})");
  ASSERT_EQ(anonymous.status, 200);
  EXPECT_TRUE(Body(anonymous).as_object().contains("token"));
}

TEST_F(ApiTest, AuthTokenRefusesBadBodies) {
  ExpectError(Call("POST", "/v1/e/authtoken", {}, R"({"channel_id":"1"})"), 400,
              "No such extension found");
  ExpectError(Call("POST", "/v1/e/authtoken", {}, "[1,2]"), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/authtoken", {}, ""), 400, "Invalid body");
  ExpectError(Call("POST", "/v1/e/authtoken", {}, R"({"app_id":"ext1","user_ids":"a"})"), 400,
              "Invalid body");
  json::array ids;
  for (int i = 0; i < 1001; ++i) ids.emplace_back(std::to_string(i));
  json::object body{{"app_id", "ext1"}, {"user_ids", ids}};
  ExpectError(Call("POST", "/v1/e/authtoken", {}, json::serialize(body)), 400,
              "Too many ids specified");
}

TEST_F(ApiTest, AuthTokenIsNotFoundInProduction) {
  Start(BaseConfig("production"));
  ExpectError(
      Call("POST", "/v1/e/authtoken", {}, R"({"app_id":"ext1","channel_id":"1","role":"viewer"})"),
      404, "Not Found");
  ExpectError(Call("POST", "/v1/e/authtoken", {}, ""), 404, "Not Found");
}

TEST_F(ApiTest, SandboxTokensExpire) {
  AppConfig config = BaseConfig("sandbox");
  config.sandbox_token_ttl_seconds = 600;
  Start(config);
  const std::string token = SandboxToken(R"({"app_id":"ext1","channel_id":"1","user_id":"u"})");
  EXPECT_EQ(Call("GET", "/v1/e/user_info", token).status, 200);
  clock_.AdvanceMs((600 + 60) * 1000);  // exp + leeway: still good
  EXPECT_EQ(Call("GET", "/v1/e/user_info", token).status, 200);
  clock_.AdvanceMs(1000);
  ExpectError(Call("GET", "/v1/e/user_info", token), 401, "token expired");
}

// ---------------------------------------------------------------------------------------------
// State and config through the API

TEST_F(ApiTest, StateRoundTripAndAllState) {
  const std::string viewer = Token("viewer", "chan1", "u1");
  const std::string broadcaster = Token("broadcaster", "chan1", "chan1");
  const std::string backend = Token("backend", "chan1", std::string(kOwner));
  EXPECT_EQ(Call("POST", "/v1/e/extension_state", backend, R"({"e":1})").status, 200);
  EXPECT_EQ(Call("POST", "/v1/e/channel_state", broadcaster, R"({"c":2})").status, 200);
  EXPECT_EQ(Call("POST", "/v1/e/viewer_state", viewer, R"({"v":3})").status, 200);
  EXPECT_EQ(Call("PATCH", "/v1/e/extension_viewer_state", viewer, R"({"ev":4})").status, 200);
  Response write =
      Call("PATCH", "/v1/e/channel_state", broadcaster, R"([{"op":"add","path":"/d","value":5}])");
  EXPECT_EQ(write.status, 200);
  EXPECT_EQ(Body(write), json::parse("{}"));  // writes answer {}

  EXPECT_EQ(Body(Call("GET", "/v1/e/all_state", viewer)),
            json::parse(R"({"extension":{"e":1},"channel":{"c":2,"d":5},"viewer":{"v":3},)"
                        R"("extension_viewer":{"ev":4}})"));

  // Backend reads of other users' extension-viewer state.
  EXPECT_EQ(Body(Call("GET", "/v1/e/extension_viewer_state?user_ids=u1,nobody", backend)),
            json::parse(R"({"u1":{"ev":4}})"));
  EXPECT_EQ(Body(Call("GET", "/v1/e/extension_viewer_state?userID=u1", backend)),
            json::parse(R"({"ev":4})"));
  ExpectError(Call("GET", "/v1/e/extension_viewer_state?user_ids=u1", viewer), 403,
              "The JWT role is not allowed to perform this operation.");
}

TEST_F(ApiTest, ConcurrentPatchesThroughTheRouter) {
  // 4 threads x 100 appends to one channel state through Dispatch. A 409 is retried, as a
  // client would; every 200 must be in the document exactly once.
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  const std::string broadcaster = Token("broadcaster");
  ASSERT_EQ(Call("POST", "/v1/e/channel_state", broadcaster, R"({"log":[]})").status, 200);
  std::atomic<int> conflicts{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string patch =
            R"([{"op":"add","path":"/log/-","value":)" + std::to_string(t * 1000 + i) + "}]";
        while (true) {
          Response r = Call("PATCH", "/v1/e/channel_state", broadcaster, patch);
          if (r.status == 200) break;
          if (r.status != 409) {
            other.fetch_add(1);
            break;
          }
          conflicts.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(other.load(), 0);
  const json::value doc = Body(Call("GET", "/v1/e/channel_state", broadcaster));
  const json::array& log = doc.at("log").as_array();
  EXPECT_EQ(log.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int64_t> unique;
  for (const auto& v : log) unique.insert(v.as_int64());
  EXPECT_EQ(unique.size(), log.size());

  // The metrics saw every PATCH.
  const std::string metrics = Call("GET", "/metrics").body;
  const std::string line = R"(medkit_http_requests_total{route="PATCH /v1/e/channel_state",)"
                           R"(status="200"} )" +
                           std::to_string(kThreads * kPerThread) + "\n";
  EXPECT_NE(metrics.find(line), std::string::npos) << metrics;
}

TEST_F(ApiTest, BodiesParseWhateverTheEncoding) {
  const std::string broadcaster = Token("broadcaster");
  // A JSON string holding JSON (double JSON.stringify, spec 3.1) is parsed once more.
  EXPECT_EQ(Call("POST", "/v1/e/channel_state", broadcaster, R"("{\"twice\":true}")").status, 200);
  EXPECT_EQ(Body(Call("GET", "/v1/e/channel_state", broadcaster)),
            json::parse(R"({"twice":true})"));
}

TEST_F(ApiTest, DocumentsExpireThroughTheApi) {
  const std::string broadcaster = Token("broadcaster");
  const std::string backend = Token("backend");
  ASSERT_EQ(Call("POST", "/v1/e/channel_state", broadcaster, R"({"a":1})").status, 200);
  ASSERT_EQ(Call("POST", "/v1/e/extension_hidden_state", backend, R"({"h":1})").status, 200);
  ASSERT_EQ(Call("POST", "/v1/e/config/channel", broadcaster, R"({"c":1})").status, 200);

  clock_.AdvanceMs(30 * kDayMs - 1);
  EXPECT_EQ(Body(Call("GET", "/v1/e/channel_state", broadcaster)), json::parse(R"({"a":1})"));
  clock_.AdvanceMs(2);  // 30 days + 1 ms after the write
  Response expired = Call("GET", "/v1/e/channel_state", broadcaster);
  EXPECT_EQ(expired.status, 200);
  EXPECT_EQ(expired.body, "{}");
  EXPECT_EQ(Body(Call("GET", "/v1/e/all_state", broadcaster)).at("channel"), json::parse("{}"));
  // Hidden state and config stay.
  EXPECT_EQ(Body(Call("GET", "/v1/e/extension_hidden_state", backend)), json::parse(R"({"h":1})"));
  EXPECT_EQ(Body(Call("GET", "/v1/e/config/channel", broadcaster)), json::parse(R"({"c":1})"));
}

TEST_F(ApiTest, ConfiguredLimitsApply) {
  AppConfig config = BaseConfig("sandbox");
  config.limits.state_max_bytes = 64;
  config.limits.max_depth = 5;
  Start(config);
  const std::string broadcaster = Token("broadcaster");
  ExpectError(Call("POST", "/v1/e/channel_state", broadcaster,
                   R"({"v":")" + std::string(60, 'x') + R"("})"),
              400, "document too large");
  ExpectError(
      Call("POST", "/v1/e/channel_state", broadcaster, R"({"a":{"b":{"c":{"d":{"e":{}}}}}})"), 400,
      "JSON nesting too deep (limit 5)");
  EXPECT_EQ(
      Call("POST", "/v1/e/channel_state", broadcaster, R"({"a":{"b":{"c":{"d":{}}}}})").status,
      200);
}

TEST_F(ApiTest, QueryValuesAreDecoded) {
  const std::string backend = Token("backend");
  const std::string viewer = Token("viewer", "chan1", "a b");
  ASSERT_EQ(Call("POST", "/v1/e/extension_viewer_state", viewer, R"({"x":1})").status, 200);
  EXPECT_EQ(Body(Call("GET", "/v1/e/extension_viewer_state?userID=a%20b", backend)),
            json::parse(R"({"x":1})"));
  EXPECT_EQ(Body(Call("GET", "/v1/e/extension_viewer_state?user_ids=a%20b%2Cz", backend)),
            json::parse(R"({"a b":{"x":1}})"));
}

// ---------------------------------------------------------------------------------------------
// ParseTarget

TEST(ParseTargetTest, SplitsPathAndQuery) {
  Request r;
  http::ParseTarget("/v1/e/vote?id=poll1&value=2", r);
  EXPECT_EQ(r.path, "/v1/e/vote");
  ASSERT_EQ(r.query.size(), 2u);
  EXPECT_EQ(r.query[0], (std::pair<std::string, std::string>{"id", "poll1"}));
  EXPECT_EQ(r.query[1], (std::pair<std::string, std::string>{"value", "2"}));
  EXPECT_EQ(r.Query("id"), "poll1");
  EXPECT_EQ(r.Query("missing"), std::nullopt);

  http::ParseTarget("/plain", r);  // reuse clears the old query
  EXPECT_EQ(r.path, "/plain");
  EXPECT_TRUE(r.query.empty());
}

TEST(ParseTargetTest, DecodesPercentEscapes) {
  Request r;
  http::ParseTarget("/v1/e/a%20b%2Fc?k%65y=%41%62%2c%2C&u=%E2%9C%93", r);
  EXPECT_EQ(r.path, "/v1/e/a b/c");
  ASSERT_EQ(r.query.size(), 2u);
  EXPECT_EQ(r.query[0].first, "key");
  EXPECT_EQ(r.query[0].second, "Ab,,");
  EXPECT_EQ(r.query[1].second, "\xE2\x9C\x93");
}

TEST(ParseTargetTest, KeepsInvalidEscapesAndPlus) {
  Request r;
  http::ParseTarget("/p%zz%?a=%zz&b=50%&c=%4&d=%4g&e=a+b&f=%2B&g=100%25", r);
  EXPECT_EQ(r.path, "/p%zz%");
  EXPECT_EQ(r.Query("a"), "%zz");
  EXPECT_EQ(r.Query("b"), "50%");
  EXPECT_EQ(r.Query("c"), "%4");
  EXPECT_EQ(r.Query("d"), "%4g");
  EXPECT_EQ(r.Query("e"), "a+b");  // '+' is not a space (MEDKit does not encode)
  EXPECT_EQ(r.Query("f"), "+");
  EXPECT_EQ(r.Query("g"), "100%");
}

TEST(ParseTargetTest, EscapeAtTheVeryEnd) {
  Request r;
  http::ParseTarget("/x?v=%41", r);
  EXPECT_EQ(r.Query("v"), "A");
  http::ParseTarget("/x%41", r);
  EXPECT_EQ(r.path, "/xA");
}

TEST(ParseTargetTest, RepeatedAndOddKeys) {
  Request r;
  http::ParseTarget("/x?id=1&id=2&&flag&=v&empty=&id=3", r);
  EXPECT_EQ(r.Query("id"), "1");  // the first value wins
  std::vector<std::string> ids;
  for (const auto& [k, v] : r.query) {
    if (k == "id") ids.push_back(v);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(r.Query("flag"), "");
  EXPECT_EQ(r.Query(""), "v");
  EXPECT_EQ(r.Query("empty"), "");
  // Values may hold '=' and unencoded ',' (user_ids lists).
  http::ParseTarget("/x?user_ids=a,b,c&expr=a=b", r);
  EXPECT_EQ(r.Query("user_ids"), "a,b,c");
  EXPECT_EQ(r.Query("expr"), "a=b");
}

TEST(ParseTargetTest, DropsTheFragment) {
  Request r;
  http::ParseTarget("/v1/e/x?a=1#frag", r);
  EXPECT_EQ(r.path, "/v1/e/x");
  EXPECT_EQ(r.Query("a"), "1");
  http::ParseTarget("/v1/e/y#frag?a=1", r);
  EXPECT_EQ(r.path, "/v1/e/y");
  // The '?' inside the fragment still starts the query for this parser; only the path matters.
}

// ---------------------------------------------------------------------------------------------
// Config file and validation

// A file with the given text in a fresh temp dir, removed on destruction.
class TempConfigFile {
 public:
  explicit TempConfigFile(std::string_view text) {
    std::string pattern = (std::filesystem::temp_directory_path() / "medkit_cfg_XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) dir_ = pattern;
    path_ = dir_ + "/medkit.json";
    std::ofstream(path_) << text;
  }
  ~TempConfigFile() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  TempConfigFile(const TempConfigFile&) = delete;
  TempConfigFile& operator=(const TempConfigFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

core::Result<void> Load(std::string_view text, AppConfig& config) {
  TempConfigFile file(text);
  config.config_file = file.path();
  return LoadConfigFile(config);
}

core::Result<void> Load(std::string_view text) {
  AppConfig config;
  return Load(text, config);
}

TEST(ConfigFileTest, NoFileIsFine) {
  AppConfig config;
  EXPECT_TRUE(LoadConfigFile(config).has_value());
  EXPECT_TRUE(Validate(config).has_value());
}

TEST(ConfigFileTest, AppliesEveryKey) {
  AppConfig config;
  const std::string secret = core::auth::Base64Encode("s3cret");
  auto loaded = Load(R"({
    "stage": "production",
    "extensions": [
      {"client_id": "abc123", "secret": ")" +
                         secret + R"(", "owner_id": "11111",
       "admin_ids": ["22222", "33333"]},
      {"client_id": "def456", "secret": ")" +
                         secret + R"("}
    ],
    "signing_key": "c2lnbmluZw==",
    "state_ttl_seconds": 3600,
    "sandbox_token_ttl_seconds": 900,
    "idle_timeout_seconds": 30,
    "sync_writes": true,
    "limits": {"state_bytes": 1000, "config_bytes": 2000, "json_depth": 10, "batch_ids": 50,
               "body_bytes": 4096, "header_bytes": 2048}
  })",
                     config);
  ASSERT_TRUE(loaded.has_value()) << ErrorText(loaded);
  EXPECT_EQ(config.stage, "production");
  ASSERT_EQ(config.extensions.size(), 2u);
  EXPECT_EQ(config.extensions[0].client_id, "abc123");
  EXPECT_EQ(config.extensions[0].secret_b64, secret);
  EXPECT_EQ(config.extensions[0].owner_id, "11111");
  EXPECT_EQ(config.extensions[0].admin_ids, (std::vector<std::string>{"22222", "33333"}));
  EXPECT_EQ(config.extensions[1].client_id, "def456");
  EXPECT_TRUE(config.extensions[1].owner_id.empty());
  EXPECT_TRUE(config.extensions[1].admin_ids.empty());
  EXPECT_EQ(config.signing_key_b64, "c2lnbmluZw==");
  EXPECT_EQ(config.limits.state_ttl_ms, 3600 * 1000);
  EXPECT_EQ(config.sandbox_token_ttl_seconds, 900);
  EXPECT_EQ(config.idle_timeout_seconds, 30);
  EXPECT_TRUE(config.sync_writes);
  EXPECT_EQ(config.limits.state_max_bytes, 1000u);
  EXPECT_EQ(config.limits.config_max_bytes, 2000u);
  EXPECT_EQ(config.limits.max_depth, 10u);
  EXPECT_EQ(config.limits.max_batch_ids, 50u);
  EXPECT_EQ(config.max_body_bytes, 4096u);
  EXPECT_EQ(config.max_header_bytes, 2048u);
  EXPECT_TRUE(Validate(config).has_value()) << ErrorText(Validate(config));
}

TEST(ConfigFileTest, UnnamedKeysKeepTheirValues) {
  AppConfig config;
  config.store = "memory";
  config.port = 7000;
  const AppConfig defaults;
  auto loaded = Load(R"({"limits": {"state_bytes": 123}})", config);
  ASSERT_TRUE(loaded.has_value()) << ErrorText(loaded);
  EXPECT_EQ(config.limits.state_max_bytes, 123u);
  EXPECT_EQ(config.limits.config_max_bytes, defaults.limits.config_max_bytes);
  EXPECT_EQ(config.limits.state_ttl_ms, defaults.limits.state_ttl_ms);
  EXPECT_EQ(config.stage, "sandbox");
  EXPECT_EQ(config.store, "memory");
  EXPECT_EQ(config.port, 7000);
  EXPECT_EQ(config.sandbox_token_ttl_seconds, defaults.sandbox_token_ttl_seconds);
}

TEST(ConfigFileTest, LimitsReachTheApp) {
  FakeClock clock(kStartMs);
  AppConfig config;
  config.store = "memory";
  ASSERT_TRUE(Load(R"({"limits": {"state_bytes": 20}, "state_ttl_seconds": 10,
                       "signing_key": ")" +
                       core::auth::Base64Encode(kServerKey) + R"("})",
                   config)
                  .has_value());
  auto app = App::Create(config, clock);
  ASSERT_TRUE(app.has_value()) << ErrorText(app);
  json::object claims{{"exp", clock.NowSeconds() + 3600},
                      {"role", "broadcaster"},
                      {"channel_id", "c"},
                      {"user_id", "c"}};
  Request request;
  request.method = http::Method::kPost;
  http::ParseTarget("/v1/e/channel_state", request);
  request.authorization = "any " + core::auth::SignHs256(claims, kServerKey);
  request.body = R"({"too":"long for twenty bytes"})";
  Response big = (*app)->router().Dispatch(request);
  EXPECT_EQ(big.status, 400) << big.body;
  request.body = R"({"ok":1})";
  EXPECT_EQ((*app)->router().Dispatch(request).status, 200);
  request.method = http::Method::kGet;
  request.body.clear();
  EXPECT_EQ((*app)->router().Dispatch(request).body, R"({"ok":1})");
  clock.AdvanceMs(10'000);  // state_ttl_seconds
  EXPECT_EQ((*app)->router().Dispatch(request).body, "{}");
}

TEST(ConfigFileTest, RefusesUnknownKeys) {
  for (std::string_view text : {R"({"stages": "sandbox"})", R"({"limits": {"state_byte": 1}})",
                                R"({"store": "memory"})", R"({"port": 1})"}) {
    auto loaded = Load(text);
    ASSERT_FALSE(loaded.has_value()) << text;
    EXPECT_EQ(loaded.error().code, Errc::kInvalidArgument);
    EXPECT_NE(loaded.error().message.find("unknown"), std::string::npos) << loaded.error().message;
  }
}

// "unknown keys are refused so typos do not pass silently" (docs/configuration.md) should hold
// inside an extension entry too: a misspelt "admin_ids" or "owner_id" silently drops every
// administrator or the owner.
TEST(ConfigFileTest, RefusesUnknownKeysInsideAnExtension) {
  const std::string secret = core::auth::Base64Encode("s3cret");
  for (std::string_view typo : {"admin_id", "owner", "secret_b64"}) {
    SCOPED_TRACE(typo);
    AppConfig config;
    auto loaded = Load(R"({"extensions": [{"client_id": "abc", "secret": ")" + secret + R"(", ")" +
                           std::string(typo) + R"(": "x"}]})",
                       config);
    EXPECT_FALSE(loaded.has_value())
        << "accepted; owner_id=\""
        << (config.extensions.empty() ? "" : config.extensions[0].owner_id) << "\"";
  }
}

TEST(ConfigFileTest, RefusesBadTypes) {
  const std::string secret = core::auth::Base64Encode("s3cret");
  const std::string bad[] = {
      R"({"extensions": {}})",
      R"({"extensions": ["abc"]})",
      R"({"extensions": [{"client_id": 5, "secret": ")" + secret + R"("}]})",
      R"({"extensions": [{"client_id": "abc", "secret": true}]})",
      R"({"extensions": [{"client_id": "abc", "secret": ")" + secret + R"(", "owner_id": 1}]})",
      R"({"extensions": [{"client_id": "abc", "secret": ")" + secret + R"(", "admin_ids": "1"}]})",
      R"({"extensions": [{"client_id": "abc", "secret": ")" + secret + R"(", "admin_ids": [1]}]})",
      R"({"extensions": [{"client_id": "abc"}]})",
      R"({"extensions": [{"secret": ")" + secret + R"("}]})",
      R"({"signing_key": 5})",
      R"({"stage": ["production"]})",
      R"({"state_ttl_seconds": -1})",
      R"({"state_ttl_seconds": "10"})",
      R"({"state_ttl_seconds": 1.5})",
      R"({"sandbox_token_ttl_seconds": null})",
      R"({"idle_timeout_seconds": false})",
      R"({"sync_writes": "yes"})",
      R"({"sync_writes": 1})",
      R"({"limits": []})",
      R"({"limits": {"state_bytes": "big"}})",
      R"({"limits": {"json_depth": -3}})",
      R"({"limits": {"body_bytes": 1e6}})",
  };
  for (const auto& text : bad) {
    SCOPED_TRACE(text);
    auto loaded = Load(text);
    ASSERT_FALSE(loaded.has_value());
    EXPECT_EQ(loaded.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(loaded.error().message.rfind("config: ", 0), 0u) << loaded.error().message;
  }
}

// Numbers that do not fit the field they set are wrapped instead of refused:
// state_ttl_seconds = 2^64-1 becomes state_ttl_ms = -1000 (every state document is born
// expired), and idle_timeout_seconds = 2^32 becomes 0.
TEST(ConfigFileTest, RefusesNumbersThatDoNotFit) {
  for (std::string_view text : {R"({"state_ttl_seconds": 18446744073709551615})",
                                R"({"state_ttl_seconds": 9223372036854775807})",
                                R"({"idle_timeout_seconds": 4294967296})"}) {
    SCOPED_TRACE(text);
    AppConfig config;
    auto loaded = Load(text, config);
    if (loaded.has_value()) loaded = Validate(config);
    EXPECT_FALSE(loaded.has_value()) << "accepted: state_ttl_ms=" << config.limits.state_ttl_ms
                                     << " idle_timeout_seconds=" << config.idle_timeout_seconds;
  }
}

TEST(ConfigFileTest, RefusesUnreadableOrNonObjectFiles) {
  for (std::string_view text : {"", "not json", "[1,2]", "\"text\"", "{\"a\":"}) {
    auto loaded = Load(text);
    ASSERT_FALSE(loaded.has_value()) << text;
    EXPECT_EQ(loaded.error().code, Errc::kInvalidArgument);
  }
  AppConfig config;
  config.config_file = "/nonexistent/dir/medkit.json";
  auto missing = LoadConfigFile(config);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("cannot read"), std::string::npos);
}

TEST(ConfigValidateTest, ChecksNamesAndRanges) {
  auto refused = [](AppConfig config, std::string_view why) {
    auto r = Validate(config);
    EXPECT_FALSE(r.has_value()) << why;
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << why;
    }
  };
  AppConfig ok;
  EXPECT_TRUE(Validate(ok).has_value());

  AppConfig c = ok;
  c.stage = "testing";
  refused(c, "stage testing");
  c = ok;
  c.stage = "Production";
  refused(c, "stage spelling");
  c = ok;
  c.store = "redis";
  refused(c, "store redis");
  c = ok;
  c.port = 65536;
  refused(c, "port 65536");
  c = ok;
  c.port = -1;
  refused(c, "port -1");
  c = ok;
  c.limits.max_depth = 1;
  refused(c, "json_depth 1");
  c = ok;
  c.limits.max_depth = 1001;
  refused(c, "json_depth 1001");

  c = ok;
  c.limits.max_depth = 2;
  EXPECT_TRUE(Validate(c).has_value());
  c.limits.max_depth = 1000;
  EXPECT_TRUE(Validate(c).has_value());
  c = ok;
  c.port = 0;
  EXPECT_TRUE(Validate(c).has_value());
}

TEST(ConfigValidateTest, ProductionNeedsAnExtension) {
  AppConfig config;
  config.stage = "production";
  auto r = Validate(config);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("production"), std::string::npos) << r.error().message;

  // Also when the stage comes from the file.
  AppConfig from_file;
  ASSERT_TRUE(Load(R"({"stage": "production"})", from_file).has_value());
  EXPECT_FALSE(Validate(from_file).has_value());

  config.extensions.push_back({"abc", core::auth::Base64Encode("s"), "", {}});
  EXPECT_TRUE(Validate(config).has_value());

  // App::Create validates too.
  FakeClock clock;
  AppConfig memory;
  memory.store = "memory";
  memory.stage = "production";
  auto app = App::Create(memory, clock);
  EXPECT_FALSE(app.has_value());
}

TEST(ConfigValidateTest, CreateRefusesBadSecrets) {
  FakeClock clock;
  AppConfig config = BaseConfig("sandbox");
  config.extensions[0].secret_b64 = "not base64!";
  EXPECT_FALSE(App::Create(config, clock).has_value());
  config = BaseConfig("sandbox");
  config.signing_key_b64 = "@@@";
  EXPECT_FALSE(App::Create(config, clock).has_value());
}

}  // namespace
}  // namespace medkit::app

namespace medkit::app {
namespace {

// Every channel-state write (POST and PATCH) publishes channel_state_update with the whole new
// document for that channel; other stores publish nothing; refused writes publish nothing.
TEST_F(ApiTest, ChannelStateWritesPublishChannelStateUpdate) {
  core::events::EventRecorder recorder(app_->events());
  std::string broadcaster = Token("broadcaster", "chan7", "chan7");
  ASSERT_EQ(Call("POST", "/v1/e/channel_state", broadcaster, R"({"a":1})").status, 200);
  ASSERT_EQ(Call("PATCH", "/v1/e/channel_state", broadcaster,
                 R"([{"op":"add","path":"/b","value":2}])").status, 200);
  ASSERT_EQ(Call("POST", "/v1/e/viewer_state", Token("viewer", "chan7", "u1"), R"({"x":1})").status,
            200);
  ASSERT_EQ(Call("POST", "/v1/e/channel_state", Token("viewer", "chan7", "u1"), R"({"no":1})").status,
            403);
  auto events = recorder.events();
  ASSERT_EQ(events.size(), 2u);
  for (const auto& e : events) {
    EXPECT_EQ(e.name, "channel_state_update");
    EXPECT_EQ(e.channel_id, "chan7");
    EXPECT_EQ(e.at_ms, clock_.NowMs());
  }
  EXPECT_EQ(json::parse(events[0].payload_json), json::parse(R"({"a":1})"));
  EXPECT_EQ(json::parse(events[1].payload_json), json::parse(R"({"a":1,"b":2})"));
}

}  // namespace
}  // namespace medkit::app
