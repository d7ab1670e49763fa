// In-process API tests of the game-code, user_ids and datastream routes (spec 5.10, 5.13,
// 5.14): the real app on the memory store with a FakeClock, driven through Router::Dispatch.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
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

json::value Body(const Response& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  return ec ? json::value() : v;
}

class CodeApiTest : public ::testing::Test {
 protected:
  CodeApiTest() : clock_(kStartMs) {}
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
  // Authorization for ext1 signed with the extension secret (no allowed_stage: accepted by both
  // stages). user "" = a viewer who has not shared identity.
  std::string Token(std::string_view role, std::string_view user, std::string_view channel = "c1") {
    json::object claims;
    claims["exp"] = clock_.NowSeconds() + 86400;
    claims["role"] = role;
    claims["channel_id"] = channel;
    if (!user.empty()) claims["user_id"] = user;
    claims["opaque_user_id"] = user.empty() ? std::string("Aanon") : "U" + std::string(user);
    return std::string(kClient) + " " + core::auth::SignHs256(claims, kSecret);
  }
  static void Expect(const Response& r, int status, std::string_view body) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(Body(r), json::parse(body)) << r.body;
  }
  static void ExpectReason(const Response& r, int status, std::string_view reason) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value b = Body(r);
    ASSERT_TRUE(b.is_object()) << r.body;
    EXPECT_EQ(b.at("reason"), json::value(json::string_view(reason))) << r.body;
  }

  core::FakeClock clock_;
  std::unique_ptr<App> app_;
};

constexpr std::string_view kZeros = R"({"eligible":[0,0,0,0,0,0,0,0,0,0]})";
constexpr std::string_view kNone = R"({"redeemed":[[],[],[],[],[],[],[],[],[],[]]})";

TEST_F(CodeApiTest, UploadMarkRedeemDelete) {
  const std::string backend = Token("backend", "dev");
  const std::string v1 = Token("viewer", "201"), v2 = Token("viewer", "202");
  Expect(
      Call("PUT", "/v1/e/codes", backend,
           R"({"codes":[["p0","p1"],["h0"]],"names":["Pistol skin","Fancy Hat"],"indices":[0,3]})"),
      200, "{}");
  Expect(Call("GET", "/v1/e/codes", backend), 200,
         R"({"names":["Pistol skin","","","Fancy Hat"]})");
  Expect(Call("POST", "/v1/e/codes/mark_from_list", backend,
              R"({"prize_limits":[2,1],"prizes":[0,3],"users":["201",202]})"),
         200, "{}");
  Expect(Call("GET", "/v1/e/codes/eligible", v1), 200, R"({"eligible":[2,0,0,1,0,0,0,0,0,0]})");
  Expect(Call("GET", "/v1/e/codes/eligibility", v2), 200, R"({"eligible":[2,0,0,1,0,0,0,0,0,0]})");
  Expect(Call("POST", "/v1/e/codes/redeem", v1, R"({"all_prizes":0})"), 200,
         R"({"code":"p0","all_prizes":["p0"]})");
  Expect(Call("POST", "/v1/e/codes/redeem", v2, R"({"prize":0})"), 200,
         R"({"code":"p1","all_prizes":["p1"]})");
  // Exhausted: 400, eligibility unchanged.
  ExpectReason(Call("POST", "/v1/e/codes/redeem", v1, R"({"all_prizes":0})"), 400, "no codes left");
  Expect(Call("GET", "/v1/e/codes/eligible", v1), 200, R"({"eligible":[1,0,0,1,0,0,0,0,0,0]})");
  Expect(Call("POST", "/v1/e/codes/redeem", v1, R"({"all_prizes":"3"})"), 200,
         R"({"code":"h0","all_prizes":["h0"]})");
  ExpectReason(Call("POST", "/v1/e/codes/redeem", v1, R"({"all_prizes":3})"), 400, "not eligible");
  ExpectReason(Call("POST", "/v1/e/codes/redeem", v1, R"({"nothing":3})"), 400, "Invalid body");
  ExpectReason(Call("POST", "/v1/e/codes/redeem", v1, R"({"all_prizes":10})"), 400,
               "Value out of bounds");
  Expect(Call("GET", "/v1/e/codes/redeemed", v1), 200,
         R"({"redeemed":[["p0"],[],[],["h0"],[],[],[],[],[],[]]})");
  Expect(Call("GET", "/v1/e/codes/redeemed", v2), 200,
         R"({"redeemed":[["p1"],[],[],[],[],[],[],[],[],[]]})");
  Expect(Call("DELETE", "/v1/e/codes", backend), 200, R"({"distributed":[2,0,0,1]})");
  Expect(Call("GET", "/v1/e/codes", backend), 200, R"({"names":[]})");
  Expect(Call("DELETE", "/v1/e/codes", backend), 200, R"({"distributed":[]})");
}

TEST_F(CodeApiTest, RolesAndRefusalsChangeNothing) {
  const std::string backend = Token("backend", "dev");
  Expect(Call("PUT", "/v1/e/codes", backend, R"({"codes":[["a"]],"names":["A"]})"), 200, "{}");
  for (const std::string& who : {Token("viewer", "201"), Token("broadcaster", "c1")}) {
    ExpectReason(Call("PUT", "/v1/e/codes", who, R"({"codes":[["b"]],"names":["B"]})"), 403,
                 kRefused);
    ExpectReason(Call("GET", "/v1/e/codes", who), 403, kRefused);
    ExpectReason(Call("DELETE", "/v1/e/codes", who), 403, kRefused);
    ExpectReason(Call("POST", "/v1/e/codes/mark_from_list", who,
                      R"({"prize_limits":[1],"prizes":[0],"users":["201"]})"),
                 403, kRefused);
    ExpectReason(Call("POST", "/v1/e/codes/mark_from_poll", who,
                      R"({"prize_limits":[1],"prizes":[0],"correct":1,"id":"q"})"),
                 403, kRefused);
  }
  ExpectReason(Call("PUT", "/v1/e/codes", backend, R"({"codes":[["a"]],"indices":[10]})"), 400,
               "Value out of bounds");
  ExpectReason(
      Call("PUT", "/v1/e/codes", backend, R"({"codes":[[")" + std::string(64, 'x') + R"("]]})"),
      400, "Invalid code");
  ExpectReason(Call("POST", "/v1/e/codes/mark_from_list", backend,
                    R"({"prize_limits":[1],"prizes":[0],"users":[{"id":1}]})"),
               400, "Invalid body");
  ExpectReason(Call("POST", "/v1/e/codes/mark_from_poll", backend,
                    R"({"prize_limits":[1],"prizes":[0],"id":"q"})"),
               400, "Invalid body");
  Expect(Call("GET", "/v1/e/codes", backend), 200, R"({"names":["A"]})");
  Expect(Call("GET", "/v1/e/codes/eligible", Token("viewer", "201")), 200, kZeros);
  // A viewer who has not shared identity: nothing to read, nothing to redeem.
  const std::string anon = Token("viewer", "");
  Expect(Call("GET", "/v1/e/codes/eligible", anon), 200, kZeros);
  Expect(Call("GET", "/v1/e/codes/redeemed", anon), 200, kNone);
  ExpectReason(Call("POST", "/v1/e/codes/redeem", anon, R"({"all_prizes":0})"), 400,
               "user id required");
}

TEST_F(CodeApiTest, ProductionNeedsValidatedAdmin) {
  Start(BaseConfig("production"));
  const std::string body = R"({"codes":[["a"]],"names":["A"]})";
  ExpectReason(Call("PUT", "/v1/e/codes", Token("admin", "someone"), body), 403, kRefused);
  Expect(Call("GET", "/v1/e/codes", Token("admin", "admin1")), 200, R"({"names":[]})");
  Expect(Call("PUT", "/v1/e/codes", Token("admin", "admin1"), body), 200, "{}");
  Expect(Call("GET", "/v1/e/codes", Token("admin", "owner1")), 200, R"({"names":["A"]})");
}

TEST_F(CodeApiTest, MarkFromPoll) {
  const std::string backend = Token("backend", "dev", "c1");
  Expect(Call("PUT", "/v1/e/codes", backend, R"({"codes":[["w0","w1","w2"]],"names":["Win"]})"),
         200, "{}");
  for (auto [user, value] :
       std::vector<std::pair<std::string, int>>{{"301", 3}, {"302", 2}, {"303", 3}, {"", 3}}) {
    EXPECT_EQ(Call("POST", "/v1/e/vote?id=quiz", Token("viewer", user),
                   R"({"value":)" + std::to_string(value) + "}")
                  .status,
              200);
  }
  const int64_t cutoff = clock_.NowSeconds();
  clock_.AdvanceMs(2000);
  EXPECT_EQ(Call("POST", "/v1/e/vote?id=quiz", Token("viewer", "302"), R"({"value":3})").status,
            200);
  Expect(
      Call("POST", "/v1/e/codes/mark_from_poll", backend,
           R"({"prize_limits":[1],"prizes":[0],"correct":3,"poll_id":"quiz","cutoff_timestamp":)" +
               std::to_string(cutoff) + "}"),
      200, "{}");
  Expect(Call("GET", "/v1/e/codes/eligible", Token("viewer", "301")), 200,
         R"({"eligible":[1,0,0,0,0,0,0,0,0,0]})");
  Expect(Call("GET", "/v1/e/codes/eligible", Token("viewer", "303")), 200,
         R"({"eligible":[1,0,0,0,0,0,0,0,0,0]})");
  Expect(Call("GET", "/v1/e/codes/eligible", Token("viewer", "302")), 200, kZeros);
  // "id" spelling, no cutoff: 302's last vote counts now.
  Expect(Call("POST", "/v1/e/codes/mark_from_poll", backend,
              R"({"prize_limits":[2],"prizes":[0],"correct":3,"id":"quiz"})"),
         200, "{}");
  Expect(Call("GET", "/v1/e/codes/eligible", Token("viewer", "302")), 200,
         R"({"eligible":[2,0,0,0,0,0,0,0,0,0]})");
  Expect(Call("GET", "/v1/e/codes/eligible", Token("viewer", "301")), 200,
         R"({"eligible":[3,0,0,0,0,0,0,0,0,0]})");
  ExpectReason(Call("POST", "/v1/e/codes/mark_from_poll", backend,
                    R"({"prize_limits":[1],"prizes":[0],"correct":3})"),
               400, "poll id required");
}

// Concurrent redeems through the router from 8 threads: no code twice, exact counts.
TEST_F(CodeApiTest, ConcurrentRedeems) {
  const std::string backend = Token("backend", "dev");
  std::string codes;
  for (int i = 0; i < 150; ++i) codes += (i ? ",\"" : "\"") + std::to_string(1000 + i) + "\"";
  Expect(Call("PUT", "/v1/e/codes", backend, R"({"codes":[[)" + codes + R"(]],"names":["x"]})"),
         200, "{}");
  std::vector<std::string> tokens;
  std::string users;
  for (int u = 0; u < 40; ++u) {
    tokens.push_back(Token("viewer", "u" + std::to_string(u)));
    users += (u ? ",\"u" : "\"u") + std::to_string(u) + "\"";
  }
  Expect(Call("POST", "/v1/e/codes/mark_from_list", backend,
              R"({"prize_limits":[5],"prizes":[0],"users":[)" + users + "]}"),
         200, "{}");
  std::mutex mu;
  std::vector<std::string> got;
  int refused = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {  // 320 redeems for 200 claims and 150 codes
        Response r =
            Call("POST", "/v1/e/codes/redeem", tokens[(t * 5 + i) % 40], R"({"all_prizes":0})");
        std::lock_guard lock(mu);
        if (r.status == 200) {
          got.emplace_back(Body(r).at("code").as_string());
        } else {
          ++refused;
          EXPECT_EQ(r.status, 400) << r.body;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(got.size(), 150u);
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 150u);
  EXPECT_EQ(refused, 170);
  int64_t left = 0;
  for (const auto& tok : tokens) {
    json::value e = Body(Call("GET", "/v1/e/codes/eligible", tok));
    left += e.at("eligible").as_array()[0].as_int64();
  }
  EXPECT_EQ(left, 200 - 150);
  Expect(Call("DELETE", "/v1/e/codes", backend), 200, R"({"distributed":[150]})");
}

TEST_F(CodeApiTest, UserIdsListsAuthenticatedUsers) {
  AppConfig config = BaseConfig("sandbox");
  config.user_ids.page_size = 2;
  Start(config);
  for (const char* user : {"105", "101", "104", "102", "103"}) {
    EXPECT_EQ(Call("GET", "/v1/e/viewer_state", Token("viewer", user)).status, 200);
  }
  EXPECT_EQ(Call("GET", "/v1/e/viewer_state", Token("viewer", "")).status, 200);  // not listed
  const std::string backend = Token("backend", "109");  // its own user id is listed too
  ExpectReason(Call("GET", "/v1/e/user_ids?cursor=0", Token("viewer", "101")), 403, kRefused);
  Expect(Call("GET", "/v1/e/user_ids?cursor=0", backend), 200,
         R"({"next":"102","results":[{"twitch_id":"101"},{"twitch_id":"102"}]})");
  Expect(Call("GET", "/v1/e/user_ids?cursor=102", backend), 200,
         R"({"next":"104","results":[{"twitch_id":"103"},{"twitch_id":"104"}]})");
  Expect(Call("GET", "/v1/e/user_ids?cursor=104", backend), 200,
         R"({"next":"0","results":[{"twitch_id":"105"},{"twitch_id":"109"}]})");
  Expect(Call("GET", "/v1/e/user_ids", backend), 200,
         R"({"next":"102","results":[{"twitch_id":"101"},{"twitch_id":"102"}]})");
  Expect(Call("GET", "/v1/e/user_ids?cursor=109", backend), 200, R"({"next":"0","results":[]})");
}

TEST_F(CodeApiTest, DatastreamPublishesInOrder) {
  core::events::EventRecorder recorder(app_->events());
  const std::string viewer = Token("viewer", "201", "c9");
  for (int i = 0; i < 6; ++i) {
    Expect(Call("POST", "/v1/e/datastream", viewer,
                R"({"spawnMonsterType":"m)" + std::to_string(i) + R"("})"),
           200, "{}");
    clock_.AdvanceMs(1000);
  }
  auto events = recorder.Named("datastream");
  ASSERT_EQ(events.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(events[i].client_id, kClient);
    EXPECT_EQ(events[i].channel_id, "c9");
    EXPECT_EQ(json::parse(events[i].payload_json),
              json::parse(R"({"event":{"spawnMonsterType":"m)" + std::to_string(i) +
                          R"("},"timestamp":)" + std::to_string(kStartMs / 1000 + i) + "}"));
  }
  ExpectReason(Call("POST", "/v1/e/datastream", viewer, "[1]"), 400, "Malformed input body");
  ExpectReason(Call("POST", "/v1/e/datastream", viewer, ""), 400, "Invalid body");
  ExpectReason(Call("POST", "/v1/e/datastream", Token("viewer", "201", ""), "{}"), 400,
               "channel id required");
  ExpectReason(
      Call("POST", "/v1/e/datastream", viewer, R"({"x":")" + std::string(17000, 'a') + R"("})"),
      400, "datastream event too large");
  EXPECT_EQ(recorder.Named("datastream").size(), 6u);
}

}  // namespace
}  // namespace medkit::app
