// In-process API tests of the PIN and purchase routes (spec 5.2, 5.12): the real app on the
// memory store with a FakeClock (so the 5-minute PIN expiry is tested without waiting),
// driven through Router::Dispatch.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <regex>
#include <string>
#include <string_view>

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

AppConfig BaseConfig(std::string_view stage) {
  AppConfig config;
  config.stage = std::string(stage);
  config.store = "memory";
  config.signing_key_b64 = core::auth::Base64Encode("server-signing-key");
  config.extensions.push_back(ExtensionConfig{
      std::string(kClient), core::auth::Base64Encode(kSecret), "owner1", {"admin1"}});
  return config;
}

json::value Body(const Response& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  return ec ? json::value() : v;
}

class LinkApiTest : public ::testing::Test {
 protected:
  LinkApiTest() : clock_(kStartMs) {}
  void SetUp() override { Start(BaseConfig("sandbox")); }
  void Start(const AppConfig& config) {
    app_.reset();
    auto app = App::Create(config, clock_);
    ASSERT_TRUE(app.has_value());
    app_ = std::move(*app);
  }
  Response Call(std::string_view method, std::string_view target, std::string_view auth = {},
                std::string_view body = {}) {
    Request request;
    request.method = http::ParseMethod(method);
    http::ParseTarget(target, request);
    request.authorization = std::string(auth);
    request.body = std::string(body);
    request.content_type = "application/x-www-form-urlencoded; charset=UTF-8";
    return app_->router().Dispatch(request);
  }
  std::string Token(std::string_view role, std::string_view user, std::string_view channel,
                    json::object extra = {}) {
    json::object claims;
    claims["exp"] = clock_.NowSeconds() + 86400;
    claims["role"] = role;
    claims["channel_id"] = channel;
    claims["user_id"] = user;
    claims["opaque_user_id"] = "U" + std::string(user);
    for (auto& kv : extra) claims[kv.key()] = kv.value();
    return std::string(kClient) + " " + core::auth::SignHs256(claims, kSecret);
  }
  static void Expect(const Response& r, int status, std::string_view body) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(Body(r), json::parse(body)) << r.body;
  }

  core::FakeClock clock_;
  std::unique_ptr<App> app_;
};

TEST_F(LinkApiTest, GameLinkTokenAndPinAlias) {
  std::string b = Token("broadcaster", "c1", "c1");
  Response r = Call("POST", "/v1/e/gamelink/token", b, R"("{}")");
  ASSERT_EQ(r.status, 200) << r.body;
  json::object o = Body(r).as_object();
  ASSERT_EQ(o.size(), 1u);
  EXPECT_TRUE(std::regex_match(std::string(o.at("token").as_string()),
                               std::regex("^[A-HJ-KM-NP-Z2-46-9]{6}$")));
  Response alias = Call("POST", "/v1/e/gamelink/pin", b, "{}");
  ASSERT_EQ(alias.status, 200) << alias.body;
  EXPECT_EQ(Body(alias).at("pin"), Body(alias).at("token"));
  Expect(Call("POST", "/v1/e/gamelink/token", Token("viewer", "v1", "c1"), "{}"), 403,
         R"({"reason":"The JWT role is not allowed to perform this operation."})");
  std::string big = Token("broadcaster", "c1", "c1", {{"pad", std::string(900, 'x')}});
  ASSERT_GT(big.size(), 1024u);
  Response refused = Call("POST", "/v1/e/gamelink/token", big, "{}");
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(Body(refused).at("reason"), "Bad request");
}

TEST_F(LinkApiTest, PendingTokenLifecycleThroughUserInfo) {
  Response made = Call("POST", "/v1/e/pin", {}, R"({"identifier":"ext1"})");
  ASSERT_EQ(made.status, 200) << made.body;
  std::string token(Body(made).at("token").as_string());
  std::string pin(Body(made).at("pin").as_string());
  std::string game = std::string(kClient) + " " + token;
  Response before = Call("GET", "/v1/e/user_info", game);
  EXPECT_EQ(before.status, 401) << before.body;
  Expect(Call("POST", "/v1/e/unauthed/validate_pin", {},
              R"({"identifier":"ext1","pin":")" + pin + R"("})"),
         200, "{}");
  EXPECT_EQ(Call("POST", "/v1/e/unauthed/validate_pin", {},
                 R"({"identifier":"ext1","jwt":")" + token + R"("})")
                .status,
            401);

  std::string b = Token("broadcaster", "c9", "c9");
  Expect(Call("GET", "/v1/e/pin_token_exists", b), 200, R"({"exists":false})");
  Expect(Call("POST", "/v1/e/validate_pin", b, R"({"pin":")" + pin + R"("})"), 200, "{}");
  Expect(Call("GET", "/v1/e/pin_token_exists", b), 200, R"({"exists":true})");
  EXPECT_EQ(Call("GET", "/v1/e/user_info", game).status, 200);
  // The game token now writes the broadcaster's channel state.
  Expect(Call("POST", "/v1/e/channel_state", game, R"({"from":"game"})"), 200, "{}");
  Expect(Call("GET", "/v1/e/channel_state", b), 200, R"({"from":"game"})");

  Expect(Call("DELETE", "/v1/e/pin", b), 200, "{}");
  Response revoked = Call("GET", "/v1/e/user_info", game);
  EXPECT_EQ(revoked.status, 401);
  EXPECT_EQ(Body(revoked).at("reason"), "token has been revoked");
  Expect(Call("GET", "/v1/e/pin_token_exists", b), 200, R"({"exists":false})");
}

TEST_F(LinkApiTest, PinsExpireAfterFiveMinutes) {
  Response a = Call("POST", "/v1/e/unauthed/pin", {}, R"({"identifier":"ext1"})");
  Response b = Call("POST", "/v1/e/pin", {}, R"({"identifier":"ext1"})");
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(b.status, 200);
  std::string pin_a(Body(a).at("pin").as_string());
  std::string pin_b(Body(b).at("pin").as_string());
  std::string broadcaster = Token("broadcaster", "c1", "c1");
  clock_.AdvanceMs(5 * 60 * 1000 - 1);
  Expect(Call("POST", "/v1/e/validate_pin", broadcaster, R"({"pin":")" + pin_a + R"("})"), 200,
         "{}");
  clock_.AdvanceMs(1);
  Expect(Call("POST", "/v1/e/unauthed/validate_pin", {},
              R"({"identifier":"ext1","pin":")" + pin_b + R"("})"),
         401, R"({"reason":"The provided PIN is invalid or expired"})");
  Expect(Call("POST", "/v1/e/validate_pin", broadcaster, R"({"pin":")" + pin_b + R"("})"), 400,
         R"({"reason":"The provided PIN is invalid or expired"})");
}

TEST_F(LinkApiTest, BitsTransactionAnswers201AndPublishes) {
  core::events::EventRecorder recorder(app_->events());
  std::string viewer = Token("viewer", "v1", "c1");
  std::string body =
      R"({"transactionId":"t-1","product":{"sku":"s1","displayName":"S","cost":{"amount":5,"type":"bits"}},)"
      R"("userId":"v1","displayName":"V","initiator":"current_user","transactionReceipt":"x"})";
  Response r = Call("POST", "/v1/e/bits/transactions", viewer, body);
  Expect(r, 201, "{}");
  EXPECT_EQ(r.content_type, "application/json");
  Expect(
      Call("POST", "/v1/e/bits/transactions", viewer, body), 409,
      R"({"reason":"transaction already recorded","info":"transactionId t-1 was recorded before"})");
  ASSERT_EQ(recorder.Named("transaction").size(), 1u);
  EXPECT_FALSE(recorder.Named("transaction")[0].viewers);
  // Coins: 5 credited; the channel config prices the sku.
  std::string b = Token("broadcaster", "c1", "c1");
  Expect(Call("POST", "/v1/e/config/channel", b, R"({"skus":{"boost":{"price":4}}})"), 200, "{}");
  Expect(Call("POST", "/v1/e/coins/purchase", viewer, R"({"sku":"boost","price":4})"), 200, "{}");
  Expect(Call("POST", "/v1/e/coins/purchase", viewer, R"({"sku":"boost","price":4})"), 400,
         R"({"reason":"Not enough coins","info":"balance 1, price 4"})");
  EXPECT_EQ(recorder.Named("transaction").size(), 2u);
}

}  // namespace
}  // namespace medkit::app
