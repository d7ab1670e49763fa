// LinkService (spec 5.2, 7.3) on the memory store with a FakeClock, wired to a real
// Authenticator through SetLinkCheck: PIN format, case, expiry and single use (also under
// concurrent redeems), the access token's claims in both stages, refresh rotation, the legacy
// pending-token flow, pin_token_exists, and revocation of every kind of token.
#include "core/gamelink/link_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/auth/authenticator.h"
#include "core/auth/extension_registry.h"
#include "core/auth/jwt.h"
#include "core/clock.h"
#include "storage/memory_store.h"

namespace medkit::core::gamelink {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr std::string_view kServerKey = "link-test-server-key";
constexpr int64_t kMinuteMs = 60'000;

Identity Who(Role role, std::string channel = "chan1", std::string user = "",
             std::string client = "ext1") {
  Identity who;
  who.client_id = std::move(client);
  who.role = role;
  who.role_claim = std::string(auth::RoleName(role));
  who.channel_id = channel;
  who.user_id = user.empty() ? channel : user;
  who.opaque_user_id = "U" + who.user_id;
  return who;
}

// The payload of a JWT (no verification).
json::object Claims(const std::string& jwt) {
  size_t a = jwt.find('.');
  size_t b = jwt.find('.', a + 1);
  auto payload = auth::Base64UrlDecode(jwt.substr(a + 1, b - a - 1));
  EXPECT_TRUE(payload.has_value());
  return json::parse(*payload).as_object();
}

class LinkTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(Stage::kSandbox); }

  void Make(Stage stage) {
    service_.reset();
    auth_.reset();
    registry_ = auth::ExtensionRegistry();
    ASSERT_TRUE(registry_.Add("ext1", auth::Base64Encode("ext1-secret"), "owner1", {}).has_value());
    auth::AuthOptions options;
    options.stage = stage;
    options.server_key = std::string(kServerKey);
    auth_ = std::make_unique<auth::Authenticator>(options, registry_, clock_);
    store_ = std::make_unique<storage::MemoryStore>(clock_);
    service_ = std::make_unique<LinkService>(*store_, clock_, *auth_, LinkLimits{});
    auth_->SetLinkCheck([s = service_.get()](Identity& who) { return s->CheckLink(who); });
  }

  std::string Pin(const Identity& who) {
    auto pin = service_->CreatePin(who);
    EXPECT_TRUE(pin.has_value()) << (pin ? "" : pin.error().message);
    return pin ? *pin : "";
  }
  Result<Identity> Use(const std::string& jwt, const std::string& client = "ext1") {
    return auth_->Authenticate(client + " " + jwt);
  }

  FakeClock clock_;
  auth::ExtensionRegistry registry_;
  std::unique_ptr<auth::Authenticator> auth_;
  std::unique_ptr<storage::MemoryStore> store_;
  std::unique_ptr<LinkService> service_;
};

TEST_F(LinkTest, PinFormatAndAlphabet) {
  const std::regex format("^[A-HJ-KM-NP-Z2-46-9]{6}$");
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    std::string pin = Pin(Who(Role::kBroadcaster));
    EXPECT_TRUE(std::regex_match(pin, format)) << pin;
    seen.insert(pin);
  }
  EXPECT_GT(seen.size(), 190u);  // random, not a counter
}

TEST_F(LinkTest, OnlyBroadcastersMakePins) {
  for (Role role : {Role::kViewer, Role::kAdmin, Role::kBackend}) {
    auto pin = service_->CreatePin(Who(role));
    ASSERT_FALSE(pin.has_value());
    EXPECT_EQ(pin.error().code, Errc::kForbidden);
  }
  auto no_channel = service_->CreatePin(Who(Role::kBroadcaster, ""));
  ASSERT_FALSE(no_channel.has_value());
  EXPECT_EQ(no_channel.error().code, Errc::kInvalidArgument);
}

TEST_F(LinkTest, RedeemGivesAnAccessTokenForTheChannel) {
  std::string pin = Pin(Who(Role::kBroadcaster, "chan1", "user9"));
  auto session = service_->RedeemPin("ext1", pin, "Mystery Fun House");
  ASSERT_TRUE(session.has_value()) << session.error().message;
  EXPECT_EQ(session->channel_id, "chan1");
  EXPECT_EQ(session->user_id, "user9");
  EXPECT_EQ(session->client_id, "ext1");
  EXPECT_EQ(session->game_id, "Mystery Fun House");
  EXPECT_EQ(session->twitch_name, "chan1");
  EXPECT_EQ(session->refresh.size(), 64u);

  json::object claims = Claims(session->jwt);
  EXPECT_EQ(claims.at("role"), "broadcaster");
  EXPECT_EQ(claims.at("channel_id"), "chan1");
  EXPECT_EQ(claims.at("user_id"), "user9");
  EXPECT_EQ(claims.at("opaque_user_id"), "Uuser9");
  EXPECT_EQ(claims.at("allowed_stage"), "sandbox");
  EXPECT_EQ(claims.at("exp").as_int64(), clock_.NowSeconds() + 7 * 86400);
  ASSERT_TRUE(claims.contains("gl"));
  EXPECT_FALSE(claims.at("gl").as_string().empty());

  auto who = Use(session->jwt);
  ASSERT_TRUE(who.has_value()) << who.error().message;
  EXPECT_EQ(who->role, Role::kBroadcaster);
  EXPECT_EQ(who->channel_id, "chan1");
  EXPECT_EQ(who->link_id, std::string(claims.at("gl").as_string()));
}

TEST_F(LinkTest, ProductionTokensHaveNoAllowedStage) {
  Make(Stage::kProduction);
  std::string pin = Pin(Who(Role::kBroadcaster));
  auto session = service_->RedeemPin("ext1", pin, "");
  ASSERT_TRUE(session.has_value());
  json::object claims = Claims(session->jwt);
  EXPECT_FALSE(claims.contains("allowed_stage"));
  auto who = Use(session->jwt);
  ASSERT_TRUE(who.has_value()) << who.error().message;
  EXPECT_EQ(who->channel_id, "chan1");
}

TEST_F(LinkTest, PinIsCaseInsensitiveAndSingleUse) {
  std::string pin = Pin(Who(Role::kBroadcaster));
  std::string lower;
  for (char c : pin) lower.push_back(static_cast<char>(std::tolower(c)));
  ASSERT_TRUE(service_->RedeemPin("ext1", lower, "").has_value());
  auto again = service_->RedeemPin("ext1", pin, "");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(again.error().message, "The provided PIN is invalid or expired");
}

TEST_F(LinkTest, PinOfAnotherClientOrMalformedIsRefused) {
  std::string pin = Pin(Who(Role::kBroadcaster));
  for (std::string_view bad : {"", "ABC", "ABCDEFG", "ABCDE1", "ABCDEO", "IIIIII"}) {
    EXPECT_FALSE(service_->RedeemPin("ext1", bad, "").has_value()) << bad;
  }
  EXPECT_FALSE(service_->RedeemPin("ext2", pin, "").has_value());
  EXPECT_TRUE(service_->RedeemPin("ext1", pin, "").has_value());  // not consumed by those
}

TEST_F(LinkTest, PinExpiresAfterFiveMinutes) {
  std::string kept = Pin(Who(Role::kBroadcaster));
  std::string late = Pin(Who(Role::kBroadcaster));
  clock_.AdvanceMs(5 * kMinuteMs - 1);
  EXPECT_TRUE(service_->RedeemPin("ext1", kept, "").has_value());
  clock_.AdvanceMs(1);
  auto expired = service_->RedeemPin("ext1", late, "");
  ASSERT_FALSE(expired.has_value());
  EXPECT_EQ(expired.error().message, "The provided PIN is invalid or expired");
}

TEST_F(LinkTest, ConcurrentRedeemsOfOnePinSucceedOnce) {
  for (int round = 0; round < 20; ++round) {
    std::string pin = Pin(Who(Role::kBroadcaster));
    std::atomic<int> wins{0}, losses{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        auto s = service_->RedeemPin("ext1", pin, "");
        (s ? wins : losses).fetch_add(1);
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(losses.load(), 7);
  }
}

TEST_F(LinkTest, RefreshRotates) {
  auto first = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "game1");
  ASSERT_TRUE(first.has_value());
  clock_.AdvanceMs(1000);
  auto second = service_->Refresh("ext1", first->refresh, "");
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_NE(second->refresh, first->refresh);
  EXPECT_EQ(second->channel_id, "chan1");
  EXPECT_EQ(second->game_id, "game1");
  EXPECT_EQ(Claims(second->jwt).at("gl"), Claims(first->jwt).at("gl"));
  EXPECT_TRUE(Use(second->jwt).has_value());

  auto reused = service_->Refresh("ext1", first->refresh, "");
  ASSERT_FALSE(reused.has_value());
  EXPECT_EQ(reused.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(reused.error().message, "Invalid refresh token");
  EXPECT_FALSE(service_->Refresh("ext2", second->refresh, "").has_value());
  EXPECT_FALSE(service_->Refresh("ext1", "not-a-token", "").has_value());
  EXPECT_TRUE(service_->Refresh("ext1", second->refresh, "").has_value());
}

TEST_F(LinkTest, ConcurrentRefreshesOfOneTokenSucceedOnce) {
  auto session = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "");
  ASSERT_TRUE(session.has_value());
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      if (service_->Refresh("ext1", session->refresh, "")) wins.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
}

TEST_F(LinkTest, RefreshTokenExpiresAfter365Days) {
  auto session = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "");
  ASSERT_TRUE(session.has_value());
  clock_.AdvanceMs(365LL * 86400 * 1000);
  EXPECT_FALSE(service_->Refresh("ext1", session->refresh, "").has_value());
}

TEST_F(LinkTest, RevokeAllStopsAccessAndRefreshTokensOfTheChannelOnly) {
  auto a = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "");
  auto b = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "");
  auto other = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster, "chan2")), "");
  std::string unused_pin = Pin(Who(Role::kBroadcaster));
  ASSERT_TRUE(a && b && other);
  ASSERT_TRUE(Use(a->jwt).has_value());  // cached as live
  ASSERT_TRUE(Use(a->jwt).has_value());  // per-thread token cache hit
  auto exists = service_->TokenExists(Who(Role::kBroadcaster));
  ASSERT_TRUE(exists.has_value());
  EXPECT_TRUE(*exists);

  ASSERT_TRUE(service_->RevokeAll(Who(Role::kBroadcaster)).has_value());
  for (const auto* s : {&*a, &*b}) {
    auto refused = Use(s->jwt);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::kUnauthenticated);
    EXPECT_EQ(refused.error().message, "token has been revoked");
    EXPECT_FALSE(service_->Refresh("ext1", s->refresh, "").has_value());
  }
  EXPECT_FALSE(service_->RedeemPin("ext1", unused_pin, "").has_value());
  EXPECT_TRUE(Use(other->jwt).has_value());
  EXPECT_TRUE(service_->Refresh("ext1", other->refresh, "").has_value());
  EXPECT_FALSE(*service_->TokenExists(Who(Role::kBroadcaster)));
  EXPECT_TRUE(*service_->TokenExists(Who(Role::kBroadcaster, "chan2")));
  EXPECT_FALSE(service_->RevokeAll(Who(Role::kViewer)).has_value());
  EXPECT_FALSE(service_->TokenExists(Who(Role::kViewer)).has_value());
}

TEST_F(LinkTest, RevocationIsSeenByAFreshServiceOverTheSameStore) {
  auto a = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "");
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(service_->RevokeAll(Who(Role::kBroadcaster)).has_value());
  LinkService fresh(*store_, clock_, *auth_, LinkLimits{});
  Identity who;
  who.client_id = "ext1";
  who.link_id = std::string(Claims(a->jwt).at("gl").as_string());
  who.channel_id = "chan1";
  EXPECT_FALSE(fresh.CheckLink(who).has_value());
}

TEST_F(LinkTest, PendingTokenFlow) {
  auto pending = service_->CreatePendingToken("ext1");
  ASSERT_TRUE(pending.has_value()) << pending.error().message;
  EXPECT_TRUE(std::regex_match(pending->pin, std::regex("^[A-HJ-KM-NP-Z2-46-9]{6}$")));
  json::object claims = Claims(pending->token);
  EXPECT_EQ(claims.at("role"), "broadcaster");
  EXPECT_EQ(claims.at("channel_id"), "");

  auto before = Use(pending->token);
  ASSERT_FALSE(before.has_value());
  EXPECT_EQ(before.error().code, Errc::kUnauthenticated);
  EXPECT_EQ(before.error().message, "token is not validated yet");
  EXPECT_TRUE(service_->CheckPending("ext1", pending->pin, "").has_value());
  EXPECT_FALSE(service_->CheckPending("ext1", "", pending->token).has_value());
  EXPECT_FALSE(*service_->TokenExists(Who(Role::kBroadcaster, "chan7")));

  // Viewers cannot validate; a game PIN is not a pending PIN.
  EXPECT_EQ(service_->ValidatePin(Who(Role::kViewer, "chan7"), pending->pin).error().code,
            Errc::kForbidden);
  std::string game_pin = Pin(Who(Role::kBroadcaster, "chan7"));
  EXPECT_FALSE(service_->ValidatePin(Who(Role::kBroadcaster, "chan7"), game_pin).has_value());

  std::string lower;
  for (char c : pending->pin) lower.push_back(static_cast<char>(std::tolower(c)));
  ASSERT_TRUE(service_->ValidatePin(Who(Role::kBroadcaster, "chan7", "user7"), lower).has_value());
  auto after = Use(pending->token);
  ASSERT_TRUE(after.has_value()) << after.error().message;
  EXPECT_EQ(after->channel_id, "chan7");
  EXPECT_EQ(after->user_id, "user7");
  EXPECT_EQ(after->role, Role::kBroadcaster);
  EXPECT_TRUE(service_->CheckPending("ext1", "", pending->token).has_value());
  EXPECT_FALSE(service_->CheckPending("ext1", pending->pin, "").has_value());  // consumed
  EXPECT_FALSE(service_->ValidatePin(Who(Role::kBroadcaster, "chan8"), pending->pin).has_value());
  EXPECT_TRUE(*service_->TokenExists(Who(Role::kBroadcaster, "chan7")));

  ASSERT_TRUE(service_->RevokeAll(Who(Role::kBroadcaster, "chan7")).has_value());
  auto revoked = Use(pending->token);
  ASSERT_FALSE(revoked.has_value());
  EXPECT_EQ(revoked.error().message, "token has been revoked");
  EXPECT_FALSE(service_->CheckPending("ext1", "", pending->token).has_value());
}

TEST_F(LinkTest, PendingPinsAreIndependentAndExpire) {
  auto one = service_->CreatePendingToken("ext1");
  auto two = service_->CreatePendingToken("ext1");
  ASSERT_TRUE(one && two);
  EXPECT_NE(one->pin, two->pin);
  ASSERT_TRUE(service_->ValidatePin(Who(Role::kBroadcaster, "c2"), two->pin).has_value());
  EXPECT_TRUE(Use(two->token).has_value());
  clock_.AdvanceMs(5 * kMinuteMs);
  auto late = service_->ValidatePin(Who(Role::kBroadcaster, "c1"), one->pin);
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, Errc::kInvalidArgument);
  EXPECT_FALSE(service_->CheckPending("ext1", one->pin, "").has_value());
  EXPECT_FALSE(Use(one->token).has_value());
  EXPECT_TRUE(Use(two->token).has_value());
}

TEST_F(LinkTest, PendingTokenNeedsAKnownExtensionInProduction) {
  Make(Stage::kProduction);
  auto unknown = service_->CreatePendingToken("nope");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().message, "No such extension found");
  auto known = service_->CreatePendingToken("ext1");
  ASSERT_TRUE(known.has_value());
  EXPECT_FALSE(Claims(known->token).contains("allowed_stage"));
  EXPECT_FALSE(service_->CreatePendingToken("").has_value());
}

TEST_F(LinkTest, LinkTokensAreRefusedWithoutTheHook) {
  auto session = service_->RedeemPin("ext1", Pin(Who(Role::kBroadcaster)), "");
  ASSERT_TRUE(session.has_value());
  auth::Authenticator bare(auth::AuthOptions{Stage::kSandbox, std::string(kServerKey)}, registry_,
                           clock_);
  auto refused = bare.Authenticate("ext1 " + session->jwt);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::kUnauthenticated);
}

}  // namespace
}  // namespace medkit::core::gamelink
