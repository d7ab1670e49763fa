// Authenticator (spec 4): Authorization header parsing, the choice of verification keys per
// stage, stage binding, role mapping, validated admins and owner broadcasters, expiry (with
// the per-thread token cache) and sandbox token minting. Tokens are crafted with SignHs256.
#include "core/auth/authenticator.h"

#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/auth/extension_registry.h"
#include "core/auth/identity.h"
#include "core/auth/jwt.h"
#include "core/clock.h"
#include "core/result.h"

namespace medkit::core::auth {
namespace {

namespace json = boost::json;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kNow = kStartMs / 1000;
constexpr std::string_view kExtSecret = "ext1-secret-bytes";
constexpr std::string_view kExt2Secret = "ext2-secret-bytes";
constexpr std::string_view kServerKey = "server-signing-key";
constexpr std::string_view kOwner = "owner1";
constexpr std::string_view kAdmin = "admin1";

// Claims of a valid token (one hour left) with the given role; callers add or remove fields.
json::object Claims(std::string_view role = "viewer", int64_t exp = kNow + 3600) {
  json::object claims;
  claims["exp"] = exp;
  claims["role"] = role;
  claims["channel_id"] = "chan1";
  claims["opaque_user_id"] = "Uuser1";
  claims["user_id"] = "user1";
  return claims;
}

std::string Header(std::string_view client_id, std::string_view token) {
  return std::string(client_id) + " " + std::string(token);
}

// Asserts that result failed with code (and message, when given).
template <class T>
void ExpectError(const Result<T>& result, Errc code, std::optional<std::string_view> message = {}) {
  ASSERT_FALSE(result.has_value()) << "expected an error";
  EXPECT_EQ(result.error().code, code) << result.error().message;
  if (message) {
    EXPECT_EQ(result.error().message, *message);
  }
}

template <class T>
std::string ErrorText(const Result<T>& result) {
  return result ? std::string("ok") : result.error().message;
}

// A registry with ext1 (owner owner1, administrator admin1) and ext2 (no owner, no admins),
// and one authenticator per stage over it.
class AuthenticatorTest : public ::testing::Test {
 protected:
  AuthenticatorTest() : clock_(kStartMs) {
    EXPECT_TRUE(registry_.Add("ext1", Base64Encode(kExtSecret), std::string(kOwner),
                              {std::string(kAdmin)}));
    EXPECT_TRUE(registry_.Add("ext2", Base64Encode(kExt2Secret), "", {}));
  }

  Authenticator Make(Stage stage, std::string_view server_key = kServerKey,
                     int64_t sandbox_ttl = 7 * 86400) {
    AuthOptions options;
    options.stage = stage;
    options.server_key = std::string(server_key);
    options.sandbox_token_ttl_seconds = sandbox_ttl;
    return Authenticator(options, registry_, clock_);
  }

  // Authenticates "client <token of claims signed with key>".
  static Result<Identity> Auth(const Authenticator& auth, std::string_view client,
                               const json::object& claims, std::string_view key) {
    return auth.Authenticate(Header(client, SignHs256(claims, key)));
  }

  FakeClock clock_;
  ExtensionRegistry registry_;
};

// ---------------------------------------------------------------------------------------------
// Header parsing (spec 4.1)

TEST_F(AuthenticatorTest, AcceptsHeaderVariants) {
  Authenticator auth = Make(Stage::kProduction);
  const std::string jwt = SignHs256(Claims(), kExtSecret);
  const std::string accepted[] = {
      "ext1 " + jwt,
      "\"ext1 " + jwt + "\"",
      "  \"ext1 " + jwt + "\"  ",
      "\" ext1 " + jwt + " \"",
      "Bearer ext1 " + jwt,
      "bearer ext1 " + jwt,
      "BEARER   ext1 " + jwt,
      "ext1 Bearer " + jwt,
      "ext1 bearer    " + jwt,
      "ext1      " + jwt,
      "\text1\t" + jwt + "\t",
      "   ext1 " + jwt + "   ",
  };
  for (const auto& header : accepted) {
    auto id = auth.Authenticate(header);
    ASSERT_TRUE(id.has_value()) << header << ": " << ErrorText(id);
    EXPECT_EQ(id->client_id, "ext1") << header;
    EXPECT_EQ(id->user_id, "user1") << header;
  }
}

TEST_F(AuthenticatorTest, MissingHeaderIsUnauthenticated) {
  Authenticator auth = Make(Stage::kSandbox);
  for (std::string_view header : {"", "   ", "\t", "\"\"", "\"  \""}) {
    SCOPED_TRACE(std::string("header: [") + std::string(header) + "]");
    ExpectError(auth.Authenticate(header), Errc::kUnauthenticated, "missing Authorization header");
  }
}

TEST_F(AuthenticatorTest, MalformedHeaderIsUnauthenticated) {
  Authenticator auth = Make(Stage::kSandbox);
  const std::string jwt = SignHs256(Claims(), kServerKey);
  const std::string malformed[] = {
      "ext1",                     // no token
      jwt,                        // no client id
      "Bearer",                   // nothing at all
      "Bearer " + jwt,            // the token read as client id, no token
      "ext1 " + jwt + " extra",   // a third word
      "ext1 " + jwt + " " + jwt,  // two tokens
      "ext1 Bearer",              // "Bearer" alone is not a token
  };
  for (const auto& header : malformed) {
    SCOPED_TRACE(header);
    auto id = auth.Authenticate(header);
    ASSERT_FALSE(id.has_value());
    EXPECT_EQ(id.error().code, Errc::kUnauthenticated);
  }
  ExpectError(auth.Authenticate("ext1"), Errc::kUnauthenticated,
              "malformed Authorization header: expected '<client_id> <jwt>'");
  ExpectError(auth.Authenticate("ext1 not-a-jwt"), Errc::kUnauthenticated, "malformed token");
  ExpectError(auth.Authenticate("ext1 a.b.c"), Errc::kUnauthenticated);
}

// ---------------------------------------------------------------------------------------------
// Verification keys per stage (spec 4.2)

TEST_F(AuthenticatorTest, ProductionRefusesUnknownClient) {
  Authenticator auth = Make(Stage::kProduction);
  // Whatever the key, an unregistered client id is refused before the signature is looked at.
  for (std::string_view key : {kServerKey, kExtSecret, std::string_view("anything")}) {
    ExpectError(Auth(auth, "nosuch", Claims(), key), Errc::kUnauthenticated,
                "No such extension found");
  }
}

TEST_F(AuthenticatorTest, ProductionVerifiesExtensionSecretThenServerKey) {
  // authenticator.h: the extension's secret, then the server's own key (its PIN and GameLink
  // tokens); the client id must be a configured extension.
  Authenticator auth = Make(Stage::kProduction);
  auto by_secret = Auth(auth, "ext1", Claims(), kExtSecret);
  ASSERT_TRUE(by_secret.has_value()) << ErrorText(by_secret);
  EXPECT_EQ(by_secret->client_id, "ext1");
  auto by_server_key = Auth(auth, "ext1", Claims("broadcaster"), kServerKey);
  ASSERT_TRUE(by_server_key.has_value()) << ErrorText(by_server_key);
  EXPECT_EQ(by_server_key->role, Role::kBroadcaster);

  // A sandbox token of this same server is still refused by its stage claim.
  json::object sandbox = Claims();
  sandbox["allowed_stage"] = "sandbox";
  ExpectError(Auth(auth, "ext1", sandbox, kServerKey), Errc::kForbidden);

  ExpectError(Auth(auth, "ext1", Claims(), kExt2Secret), Errc::kUnauthenticated,
              "invalid token signature");
  ExpectError(Auth(auth, "ext2", Claims(), kExtSecret), Errc::kUnauthenticated,
              "invalid token signature");
  ExpectError(Auth(auth, "ext1", Claims(), "random-key"), Errc::kUnauthenticated,
              "invalid token signature");
  // The base64 text of the secret is not the key; the decoded bytes are.
  ExpectError(Auth(auth, "ext1", Claims(), Base64Encode(kExtSecret)), Errc::kUnauthenticated,
              "invalid token signature");

  // Without a server key only the extension secrets verify.
  Authenticator keyless = Make(Stage::kProduction, /*server_key=*/"");
  EXPECT_TRUE(Auth(keyless, "ext1", Claims(), kExtSecret).has_value());
  ExpectError(Auth(keyless, "ext1", Claims(), kServerKey), Errc::kUnauthenticated,
              "invalid token signature");
}

TEST_F(AuthenticatorTest, SandboxVerifiesExtensionSecretOrServerKey) {
  Authenticator auth = Make(Stage::kSandbox);
  auto by_secret = Auth(auth, "ext1", Claims(), kExtSecret);
  ASSERT_TRUE(by_secret.has_value()) << ErrorText(by_secret);
  auto by_server_key = Auth(auth, "ext1", Claims("broadcaster"), kServerKey);
  ASSERT_TRUE(by_server_key.has_value()) << ErrorText(by_server_key);
  EXPECT_EQ(by_server_key->role, Role::kBroadcaster);

  // Any client id works with the server's key in the sandbox.
  auto unknown = Auth(auth, "whatever-client", Claims(), kServerKey);
  ASSERT_TRUE(unknown.has_value()) << ErrorText(unknown);
  EXPECT_EQ(unknown->client_id, "whatever-client");

  // But not with another extension's secret, or a random key.
  ExpectError(Auth(auth, "ext1", Claims(), kExt2Secret), Errc::kUnauthenticated,
              "invalid token signature");
  ExpectError(Auth(auth, "whatever-client", Claims(), kExtSecret), Errc::kUnauthenticated,
              "invalid token signature");
  ExpectError(Auth(auth, "ext1", Claims(), "random-key"), Errc::kUnauthenticated,
              "invalid token signature");
}

TEST_F(AuthenticatorTest, SandboxWithoutServerKeyAcceptsOnlyExtensionSecrets) {
  Authenticator auth = Make(Stage::kSandbox, /*server_key=*/"");
  ASSERT_TRUE(Auth(auth, "ext1", Claims(), kExtSecret).has_value());
  ExpectError(Auth(auth, "ext1", Claims(), kServerKey), Errc::kUnauthenticated);
  ExpectError(Auth(auth, "unknown", Claims(), kServerKey), Errc::kUnauthenticated);
  // An empty HMAC key must not become a usable key.
  ExpectError(Auth(auth, "unknown", Claims(), ""), Errc::kUnauthenticated);
}

// ---------------------------------------------------------------------------------------------
// Stage binding (spec 4.5)

TEST_F(AuthenticatorTest, ProductionRefusesEveryAllowedStage) {
  Authenticator auth = Make(Stage::kProduction);
  for (std::string_view stage : {"sandbox", "testing", "production", "staging", ""}) {
    SCOPED_TRACE(std::string("allowed_stage: ") + std::string(stage));
    json::object claims = Claims();
    claims["allowed_stage"] = stage;
    auto id = Auth(auth, "ext1", claims, kExtSecret);
    ASSERT_FALSE(id.has_value());
    EXPECT_EQ(id.error().code, Errc::kForbidden);
    EXPECT_EQ(id.error().message, "User was unauthorized to access this resource");
    EXPECT_EQ(id.error().info, "Allowed stage mismatch");
  }
  auto plain = Auth(auth, "ext1", Claims(), kExtSecret);
  ASSERT_TRUE(plain.has_value()) << ErrorText(plain);
  EXPECT_EQ(plain->allowed_stage, "");
}

TEST_F(AuthenticatorTest, SandboxAcceptsNoneSandboxOrTesting) {
  Authenticator auth = Make(Stage::kSandbox);
  auto none = Auth(auth, "ext1", Claims(), kExtSecret);  // a Twitch-hosted test token
  ASSERT_TRUE(none.has_value()) << ErrorText(none);
  for (std::string_view stage : {"sandbox", "testing"}) {
    json::object claims = Claims();
    claims["allowed_stage"] = stage;
    for (std::string_view key : {kExtSecret, kServerKey}) {
      auto id = Auth(auth, "ext1", claims, key);
      ASSERT_TRUE(id.has_value()) << stage << ": " << ErrorText(id);
      EXPECT_EQ(id->allowed_stage, stage);
    }
  }
  for (std::string_view stage : {"production", "staging", "Sandbox", ""}) {
    SCOPED_TRACE(std::string("allowed_stage: ") + std::string(stage));
    json::object claims = Claims();
    claims["allowed_stage"] = stage;
    auto id = Auth(auth, "ext1", claims, kServerKey);
    ASSERT_FALSE(id.has_value());
    EXPECT_EQ(id.error().code, Errc::kForbidden);
    EXPECT_EQ(id.error().info, "Allowed stage mismatch");
  }
}

// ---------------------------------------------------------------------------------------------
// Claims, roles, privileges (spec 4.3, 4.4)

TEST_F(AuthenticatorTest, CopiesClaims) {
  Authenticator auth = Make(Stage::kProduction);
  json::object claims = Claims("viewer", kNow + 100);
  claims["channel_id"] = 12345;  // numbers read as their decimal text
  claims["user_id"] = 678;
  claims["opaque_user_id"] = "U678";
  auto id = Auth(auth, "ext1", claims, kExtSecret);
  ASSERT_TRUE(id.has_value()) << ErrorText(id);
  EXPECT_EQ(id->client_id, "ext1");
  EXPECT_EQ(id->channel_id, "12345");
  EXPECT_EQ(id->user_id, "678");
  EXPECT_EQ(id->opaque_user_id, "U678");
  EXPECT_EQ(id->expires_at_s, kNow + 100);
  EXPECT_EQ(id->ViewerKey(), "678");

  claims.erase("user_id");
  auto anonymous = Auth(auth, "ext1", claims, kExtSecret);
  ASSERT_TRUE(anonymous.has_value()) << ErrorText(anonymous);
  EXPECT_EQ(anonymous->user_id, "");
  EXPECT_EQ(anonymous->ViewerKey(), "U678");
}

TEST_F(AuthenticatorTest, MapsRoles) {
  struct Case {
    std::optional<std::string_view> claim;
    Role role;
  };
  const Case cases[] = {
      {"viewer", Role::kViewer},
      {"moderator", Role::kViewer},
      {"broadcaster", Role::kBroadcaster},
      {"admin", Role::kAdmin},
      {"backend", Role::kBackend},
      {"external", Role::kBackend},
      {"superuser", Role::kViewer},
      {"Admin", Role::kViewer},
      {"", Role::kViewer},
      {std::nullopt, Role::kViewer},
  };
  for (Stage stage : {Stage::kSandbox, Stage::kProduction}) {
    Authenticator auth = Make(stage);
    for (const auto& c : cases) {
      const std::string name = c.claim ? std::string(*c.claim) : "(absent)";
      SCOPED_TRACE(std::string(StageName(stage)) + " role " + name);
      json::object claims = Claims();
      if (c.claim) {
        claims["role"] = *c.claim;
      } else {
        claims.erase("role");
      }
      auto id = Auth(auth, "ext1", claims, kExtSecret);
      ASSERT_TRUE(id.has_value()) << ErrorText(id);
      EXPECT_EQ(id->role, c.role);
      EXPECT_EQ(id->role_claim, c.claim.value_or(""));
      EXPECT_EQ(id->IsPrivileged(), c.role == Role::kAdmin || c.role == Role::kBackend);
    }
  }
}

TEST_F(AuthenticatorTest, ProductionValidatesAdminsAgainstOwnerAndAdminList) {
  Authenticator auth = Make(Stage::kProduction);
  struct Case {
    std::string_view client;
    std::string_view role;
    std::optional<std::string_view> user_id;
    bool validated;
  };
  const Case cases[] = {
      {"ext1", "admin", kOwner, true},
      {"ext1", "admin", kAdmin, true},
      {"ext1", "admin", "stranger", false},
      {"ext1", "admin", "", false},
      {"ext1", "admin", std::nullopt, false},
      {"ext1", "backend", kOwner, false},  // validated_admin is about admin tokens only
      {"ext1", "broadcaster", kOwner, false},
      {"ext2", "admin", kOwner, false},  // owner1 owns ext1, not ext2
      {"ext2", "admin", "", false},      // ext2 has no owner: "" must not match it
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.client) + " " + std::string(c.role) + " user " +
                 std::string(c.user_id.value_or("(absent)")));
    json::object claims = Claims(c.role);
    if (c.user_id) {
      claims["user_id"] = *c.user_id;
    } else {
      claims.erase("user_id");
    }
    auto id = Auth(auth, c.client, claims, c.client == "ext1" ? kExtSecret : kExt2Secret);
    ASSERT_TRUE(id.has_value()) << ErrorText(id);
    EXPECT_EQ(id->validated_admin, c.validated);
  }
}

TEST_F(AuthenticatorTest, SandboxValidatesEveryAdmin) {
  Authenticator auth = Make(Stage::kSandbox);
  for (std::string_view client : {"ext1", "ext2", "unknown-client"}) {
    json::object claims = Claims("admin");
    claims["user_id"] = "stranger";
    auto id = Auth(auth, client, claims, kServerKey);
    ASSERT_TRUE(id.has_value()) << client << ": " << ErrorText(id);
    EXPECT_TRUE(id->validated_admin) << client;
  }
  auto viewer = Auth(auth, "ext1", Claims("viewer"), kServerKey);
  ASSERT_TRUE(viewer.has_value());
  EXPECT_FALSE(viewer->validated_admin);
}

TEST_F(AuthenticatorTest, OwnerBroadcaster) {
  struct Case {
    std::string_view client;
    std::string_view role;
    std::string_view channel;
    std::string_view user;
    bool owner;
  };
  const Case cases[] = {
      {"ext1", "broadcaster", kOwner, kOwner, true},
      {"ext1", "broadcaster", kOwner, "", true},       // by channel
      {"ext1", "broadcaster", "chan9", kOwner, true},  // by user id
      {"ext1", "broadcaster", "chan9", "user9", false},
      {"ext1", "viewer", kOwner, kOwner, false},  // only broadcaster tokens
      {"ext1", "admin", kOwner, kOwner, false},
      {"ext2", "broadcaster", kOwner, kOwner, false},  // not ext2's owner
      {"ext2", "broadcaster", "", "", false},          // ext2 has no owner
  };
  for (Stage stage : {Stage::kSandbox, Stage::kProduction}) {
    Authenticator auth = Make(stage);
    for (const auto& c : cases) {
      SCOPED_TRACE(std::string(StageName(stage)) + " " + std::string(c.client) + " " +
                   std::string(c.role) + " channel " + std::string(c.channel) + " user " +
                   std::string(c.user));
      json::object claims = Claims(c.role);
      claims["channel_id"] = c.channel;
      if (c.user.empty()) {
        claims.erase("user_id");
      } else {
        claims["user_id"] = c.user;
      }
      auto id = Auth(auth, c.client, claims, c.client == "ext1" ? kExtSecret : kExt2Secret);
      ASSERT_TRUE(id.has_value()) << ErrorText(id);
      EXPECT_EQ(id->owner_broadcaster, c.owner);
    }
  }
  // Sandbox, unregistered client: there is no owner to match.
  Authenticator sandbox = Make(Stage::kSandbox);
  json::object claims = Claims("broadcaster");
  claims["channel_id"] = kOwner;
  auto id = Auth(sandbox, "unknown", claims, kServerKey);
  ASSERT_TRUE(id.has_value());
  EXPECT_FALSE(id->owner_broadcaster);
}

TEST_F(AuthenticatorTest, ExtensionIdClaimMustMatchClientId) {
  for (Stage stage : {Stage::kSandbox, Stage::kProduction}) {
    Authenticator auth = Make(stage);
    json::object claims = Claims();
    claims["extension_id"] = "ext2";
    ExpectError(Auth(auth, "ext1", claims, kExtSecret), Errc::kUnauthenticated,
                "token was not issued for this extension");
    claims["extension_id"] = "ext1";
    EXPECT_TRUE(Auth(auth, "ext1", claims, kExtSecret).has_value());
    claims["extension_id"] = "";  // empty: no binding
    EXPECT_TRUE(Auth(auth, "ext1", claims, kExtSecret).has_value());
  }
  Authenticator sandbox = Make(Stage::kSandbox);
  json::object claims = Claims();
  claims["extension_id"] = "client-a";
  EXPECT_TRUE(Auth(sandbox, "client-a", claims, kServerKey).has_value());
  ExpectError(Auth(sandbox, "client-b", claims, kServerKey), Errc::kUnauthenticated);
}

// ---------------------------------------------------------------------------------------------
// Expiry, leeway and the per-thread cache

TEST_F(AuthenticatorTest, ExpiryHonoursLeeway) {
  Authenticator auth = Make(Stage::kProduction);  // default leeway 60 s
  EXPECT_TRUE(Auth(auth, "ext1", Claims("viewer", kNow), kExtSecret).has_value());
  EXPECT_TRUE(Auth(auth, "ext1", Claims("viewer", kNow - 1), kExtSecret).has_value());
  EXPECT_TRUE(Auth(auth, "ext1", Claims("viewer", kNow - 60), kExtSecret).has_value());
  ExpectError(Auth(auth, "ext1", Claims("viewer", kNow - 61), kExtSecret), Errc::kUnauthenticated,
              "token expired");

  json::object no_exp = Claims();
  no_exp.erase("exp");
  ExpectError(Auth(auth, "ext1", no_exp, kExtSecret), Errc::kUnauthenticated,
              "token has no exp claim");
}

TEST_F(AuthenticatorTest, CustomLeeway) {
  AuthOptions options;
  options.stage = Stage::kProduction;
  options.leeway_seconds = 0;
  Authenticator auth(options, registry_, clock_);
  EXPECT_TRUE(Auth(auth, "ext1", Claims("viewer", kNow), kExtSecret).has_value());
  ExpectError(Auth(auth, "ext1", Claims("viewer", kNow - 1), kExtSecret), Errc::kUnauthenticated,
              "token expired");
}

TEST_F(AuthenticatorTest, CachedTokenStillExpires) {
  Authenticator auth = Make(Stage::kProduction);
  const int64_t exp = kNow + 10;
  const std::string header = Header("ext1", SignHs256(Claims("viewer", exp), kExtSecret));

  ASSERT_TRUE(auth.Authenticate(header).has_value());  // verified and cached
  ASSERT_TRUE(auth.Authenticate(header).has_value());  // cache hit

  // Up to the last millisecond of exp + leeway the token is good, from the cache as well.
  clock_.SetMs((exp + 60) * 1000 + 999);
  auto last = auth.Authenticate(header);
  ASSERT_TRUE(last.has_value()) << ErrorText(last);
  EXPECT_EQ(last->expires_at_s, exp);

  clock_.SetMs((exp + 61) * 1000);
  ExpectError(auth.Authenticate(header), Errc::kUnauthenticated, "token expired");
  // And it stays refused (nothing stale was re-cached).
  ExpectError(auth.Authenticate(header), Errc::kUnauthenticated, "token expired");
  // Quoted and Bearer spellings of the same token are refused too.
  ExpectError(auth.Authenticate("\"" + header + "\""), Errc::kUnauthenticated, "token expired");
  ExpectError(auth.Authenticate("Bearer " + header), Errc::kUnauthenticated, "token expired");
}

TEST_F(AuthenticatorTest, CachedTokenExpiresOnEveryThread) {
  Authenticator auth = Make(Stage::kProduction);
  const int64_t exp = kNow + 5;
  const std::string header = Header("ext1", SignHs256(Claims("viewer", exp), kExtSecret));
  constexpr int kThreads = 4;

  auto run_all = [&](bool expect_ok) {
    std::vector<std::thread> threads;
    std::vector<int> ok(kThreads, -1);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        int good = 0;
        for (int i = 0; i < 50; ++i) good += auth.Authenticate(header).has_value() ? 1 : 0;
        ok[t] = good;
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(ok[t], expect_ok ? 50 : 0) << "thread " << t;
  };
  run_all(true);
  ASSERT_TRUE(auth.Authenticate(header).has_value());
  clock_.AdvanceMs((5 + 61) * 1000);
  run_all(false);
  EXPECT_FALSE(auth.Authenticate(header).has_value());
}

TEST_F(AuthenticatorTest, CacheIsPerAuthenticator) {
  // A token one authenticator accepts must not leak through the per-thread cache into another
  // on the same thread (here: a production one with a different server key), and back.
  Authenticator sandbox = Make(Stage::kSandbox);
  Authenticator production = Make(Stage::kProduction, "another-server-key");
  const std::string server_token = Header("ext1", SignHs256(Claims(), kServerKey));
  json::object staged = Claims();
  staged["allowed_stage"] = "sandbox";
  const std::string staged_token = Header("ext1", SignHs256(staged, kExtSecret));

  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(sandbox.Authenticate(server_token).has_value());
    ExpectError(production.Authenticate(server_token), Errc::kUnauthenticated);
    EXPECT_TRUE(sandbox.Authenticate(staged_token).has_value());
    ExpectError(production.Authenticate(staged_token), Errc::kForbidden);
  }
}

TEST_F(AuthenticatorTest, ManyDistinctTokensStillVerifyCorrectly) {
  // More tokens than the per-thread cache holds (here 64): every one still verifies, an
  // expired one is still refused afterwards, and tokens in steady use stay cached (the
  // verified hook runs only on a cache miss).
  AuthOptions options;
  options.stage = Stage::kProduction;
  options.server_key = kServerKey;
  options.token_cache_per_thread = 64;
  Authenticator auth(options, registry_, clock_);
  int misses = 0;
  auth.SetVerifiedHook([&misses](const Identity&) { ++misses; });
  auto header_of = [](int i) {
    json::object claims = Claims("viewer", kNow + 10);
    claims["user_id"] = std::to_string(i);
    return Header("ext1", SignHs256(claims, kExtSecret));
  };
  const std::string hot = header_of(-1);
  ASSERT_TRUE(auth.Authenticate(hot).has_value());
  constexpr int kTokens = 500;
  for (int i = 0; i < kTokens; ++i) {
    auto id = auth.Authenticate(header_of(i));
    ASSERT_TRUE(id.has_value()) << i << ": " << ErrorText(id);
    ASSERT_EQ(id->user_id, std::to_string(i));
    ASSERT_TRUE(auth.Authenticate(hot).has_value());  // used all along: never evicted
  }
  EXPECT_EQ(misses, 1 + kTokens);
  auto again = auth.Authenticate(header_of(0));  // long evicted: verified again
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->user_id, "0");
  EXPECT_EQ(misses, 2 + kTokens);
  clock_.AdvanceMs(71 * 1000);
  ExpectError(auth.Authenticate(header_of(0)), Errc::kUnauthenticated, "token expired");
  ExpectError(auth.Authenticate(hot), Errc::kUnauthenticated, "token expired");
}

TEST_F(AuthenticatorTest, FarFutureExpiryAuthenticatesRepeatedly) {
  // exp values at the edges of the number types: valid tokens, also on the cached path.
  // (INT64_MAX and 1e300 reach `expires_at_s + leeway_seconds` / a double-to-int64 cast in
  // authenticator.cc, which a UBSan build reports; see the test report.)
  Authenticator auth = Make(Stage::kProduction);
  const json::value exps[] = {
      json::value(int64_t{4'000'000'000}), json::value(int64_t{9'223'372'036'854'775'807}),
      json::value(uint64_t{18'446'744'073'709'551'615u}), json::value(1e12)};
  for (const auto& exp : exps) {
    SCOPED_TRACE(json::serialize(exp));
    json::object claims = Claims();
    claims["exp"] = exp;
    const std::string header = Header("ext1", SignHs256(claims, kExtSecret));
    for (int i = 0; i < 3; ++i) {
      auto id = auth.Authenticate(header);
      ASSERT_TRUE(id.has_value()) << ErrorText(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Link tokens ("gl" claim, SetLinkCheck)

TEST_F(AuthenticatorTest, LinkCheckRunsForLinkTokensOnEveryUseAndOnlyForThem) {
  Authenticator auth = Make(Stage::kProduction);
  int checks = 0;
  int verified = 0;
  bool refuse = false;
  auth.SetVerifiedHook([&verified](const Identity&) { ++verified; });
  auth.SetLinkCheck([&](Identity& who) -> Result<void> {
    ++checks;
    if (refuse) return MakeError(Errc::kUnauthenticated, "token has been revoked");
    who.channel_id = "bound-" + who.link_id;
    return {};
  });
  const std::string plain = Header("ext1", SignHs256(Claims(), kExtSecret));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(auth.Authenticate(plain).has_value());
  EXPECT_EQ(checks, 0);
  EXPECT_EQ(verified, 1);

  MintRequest mint;
  mint.client_id = "ext1";
  mint.role = "broadcaster";
  mint.link_id = "L1";
  const std::string linked = Header("ext1", auth.MintWithServerKey(mint));
  for (int i = 1; i <= 3; ++i) {  // a miss, then cache hits: checked every time
    auto id = auth.Authenticate(linked);
    ASSERT_TRUE(id.has_value()) << ErrorText(id);
    EXPECT_EQ(id->link_id, "L1");
    EXPECT_EQ(id->channel_id, "bound-L1");
    EXPECT_EQ(checks, i);
  }
  EXPECT_EQ(verified, 2);
  refuse = true;
  ExpectError(auth.Authenticate(linked), Errc::kUnauthenticated, "token has been revoked");
  EXPECT_EQ(checks, 4);
  ASSERT_TRUE(auth.Authenticate(plain).has_value());
  EXPECT_EQ(checks, 4);
}

TEST_F(AuthenticatorTest, LinkTokensWithoutAHookOrWithAnEmptyClaimAreRefused) {
  Authenticator auth = Make(Stage::kProduction);
  MintRequest mint;
  mint.client_id = "ext1";
  mint.role = "broadcaster";
  mint.link_id = "L1";
  ExpectError(auth.Authenticate(Header("ext1", auth.MintWithServerKey(mint))),
              Errc::kUnauthenticated);
  auth.SetLinkCheck([](Identity&) -> Result<void> { return {}; });
  json::object claims = Claims("broadcaster");
  claims["gl"] = "";
  ExpectError(Auth(auth, "ext1", claims, kExtSecret), Errc::kUnauthenticated,
              "malformed game link claim");
  claims["gl"] = json::object();
  ExpectError(Auth(auth, "ext1", claims, kExtSecret), Errc::kUnauthenticated,
              "malformed game link claim");
}

// ---------------------------------------------------------------------------------------------
// MintSandboxTokens (spec 5.1)

TEST_F(AuthenticatorTest, MintSandboxTokensNotInProduction) {
  Authenticator auth = Make(Stage::kProduction);
  SandboxTokenRequest request;
  request.client_id = "ext1";
  request.channel_id = "chan1";
  request.role = "viewer";
  request.user_id = "user1";
  ExpectError(auth.MintSandboxTokens(request), Errc::kNotFound);
}

TEST_F(AuthenticatorTest, MintSandboxTokensNeedsClientId) {
  Authenticator auth = Make(Stage::kSandbox);
  SandboxTokenRequest request;
  request.channel_id = "chan1";
  ExpectError(auth.MintSandboxTokens(request), Errc::kInvalidArgument, "No such extension found");
}

TEST_F(AuthenticatorTest, MintedTokenAuthenticates) {
  Authenticator auth = Make(Stage::kSandbox);
  SandboxTokenRequest request;
  request.client_id = "ext1";
  request.channel_id = "chan1";
  request.role = "admin";
  request.user_id = "user7";
  auto tokens = auth.MintSandboxTokens(request);
  ASSERT_TRUE(tokens.has_value()) << ErrorText(tokens);
  ASSERT_EQ(tokens->size(), 1u);

  auto id = auth.Authenticate(Header("ext1", tokens->front()));
  ASSERT_TRUE(id.has_value()) << ErrorText(id);
  EXPECT_EQ(id->client_id, "ext1");
  EXPECT_EQ(id->role, Role::kAdmin);
  EXPECT_EQ(id->role_claim, "admin");
  EXPECT_EQ(id->channel_id, "chan1");
  EXPECT_EQ(id->user_id, "user7");
  EXPECT_EQ(id->opaque_user_id, "Uuser7");
  EXPECT_EQ(id->allowed_stage, "sandbox");
  EXPECT_EQ(id->expires_at_s, kNow + 7 * 86400);
  EXPECT_TRUE(id->validated_admin);

  // The wire claims of spec 4.3: signed with the server key, bound to the extension.
  const std::string_view keys[] = {kServerKey};
  auto claims = VerifyHs256(tokens->front(), keys, VerifyOptions{kNow, 60});
  ASSERT_TRUE(claims.has_value()) << ErrorText(claims);
  EXPECT_EQ(claims->at("iss"), "muxy");
  EXPECT_EQ(claims->at("aud"), "muxy.io");
  EXPECT_EQ(claims->at("sub"), "extensions");
  EXPECT_EQ(claims->at("iat"), kNow);
  EXPECT_EQ(claims->at("extension_id"), "ext1");
  EXPECT_EQ(claims->at("allowed_stage"), "sandbox");

  // Bound to ext1: another client id is refused.
  ExpectError(auth.Authenticate(Header("ext2", tokens->front())), Errc::kUnauthenticated);
  // Never valid in production.
  Authenticator production = Make(Stage::kProduction);
  EXPECT_FALSE(production.Authenticate(Header("ext1", tokens->front())).has_value());
}

TEST_F(AuthenticatorTest, MintedTokensForUnregisteredClient) {
  Authenticator auth = Make(Stage::kSandbox);
  SandboxTokenRequest request;
  request.client_id = "my-dev-client";
  request.channel_id = "chan1";
  request.user_id = "u1";
  auto tokens = auth.MintSandboxTokens(request);
  ASSERT_TRUE(tokens.has_value());
  auto id = auth.Authenticate(Header("my-dev-client", tokens->front()));
  ASSERT_TRUE(id.has_value()) << ErrorText(id);
  EXPECT_EQ(id->role_claim, "viewer");  // empty role => viewer
  EXPECT_EQ(id->role, Role::kViewer);
}

TEST_F(AuthenticatorTest, MintedBroadcasterUserIsTheChannel) {
  Authenticator auth = Make(Stage::kSandbox);
  SandboxTokenRequest request;
  request.client_id = "ext1";
  request.channel_id = "chan42";
  request.role = "broadcaster";
  request.user_id = "someone-else";
  auto tokens = auth.MintSandboxTokens(request);
  ASSERT_TRUE(tokens.has_value());
  ASSERT_EQ(tokens->size(), 1u);
  auto id = auth.Authenticate(Header("ext1", tokens->front()));
  ASSERT_TRUE(id.has_value()) << ErrorText(id);
  EXPECT_EQ(id->role, Role::kBroadcaster);
  EXPECT_EQ(id->user_id, "chan42");
  EXPECT_EQ(id->channel_id, "chan42");
  EXPECT_EQ(id->opaque_user_id, "Uchan42");
}

TEST_F(AuthenticatorTest, MintedTokensFollowUserIdThenUserIds) {
  Authenticator auth = Make(Stage::kSandbox);
  SandboxTokenRequest request;
  request.client_id = "ext1";
  request.channel_id = "chan1";
  request.role = "moderator";  // copied without validation
  request.user_id = "first";
  request.user_ids = {"b", "a", "c"};
  auto tokens = auth.MintSandboxTokens(request);
  ASSERT_TRUE(tokens.has_value());
  const std::vector<std::string> expected = {"first", "b", "a", "c"};
  ASSERT_EQ(tokens->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    auto id = auth.Authenticate(Header("ext1", (*tokens)[i]));
    ASSERT_TRUE(id.has_value()) << i << ": " << ErrorText(id);
    EXPECT_EQ(id->user_id, expected[i]);
    EXPECT_EQ(id->opaque_user_id, "U" + expected[i]);
    EXPECT_EQ(id->role_claim, "moderator");
    EXPECT_EQ(id->role, Role::kViewer);
  }

  // user_ids alone.
  request.user_id.clear();
  request.user_ids = {"x", "y"};
  auto only_list = auth.MintSandboxTokens(request);
  ASSERT_TRUE(only_list.has_value());
  ASSERT_EQ(only_list->size(), 2u);
  auto y = auth.Authenticate(Header("ext1", (*only_list)[1]));
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ(y->user_id, "y");
}

TEST_F(AuthenticatorTest, MintedAnonymousToken) {
  Authenticator auth = Make(Stage::kSandbox);
  SandboxTokenRequest request;
  request.client_id = "ext1";
  request.channel_id = "chan1";
  request.role = "viewer";
  auto tokens = auth.MintSandboxTokens(request);
  ASSERT_TRUE(tokens.has_value());
  ASSERT_EQ(tokens->size(), 1u);
  auto id = auth.Authenticate(Header("ext1", tokens->front()));
  ASSERT_TRUE(id.has_value()) << ErrorText(id);
  EXPECT_EQ(id->user_id, "");
  ASSERT_FALSE(id->opaque_user_id.empty());
  EXPECT_EQ(id->opaque_user_id.front(), 'A');
  EXPECT_EQ(id->ViewerKey(), id->opaque_user_id);
}

TEST_F(AuthenticatorTest, MintedTokensExpireAfterTheSandboxTtl) {
  Authenticator auth = Make(Stage::kSandbox, kServerKey, /*sandbox_ttl=*/100);
  SandboxTokenRequest request;
  request.client_id = "ext1";
  request.channel_id = "chan1";
  request.user_id = "u1";
  auto tokens = auth.MintSandboxTokens(request);
  ASSERT_TRUE(tokens.has_value());
  const std::string header = Header("ext1", tokens->front());
  auto id = auth.Authenticate(header);
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->expires_at_s, kNow + 100);
  clock_.AdvanceMs((100 + 60) * 1000);
  EXPECT_TRUE(auth.Authenticate(header).has_value());
  clock_.AdvanceMs(1000);
  ExpectError(auth.Authenticate(header), Errc::kUnauthenticated, "token expired");
}

TEST_F(AuthenticatorTest, MintHonoursExplicitClaims) {
  Authenticator auth = Make(Stage::kProduction);
  MintRequest request;
  request.client_id = "ext1";
  request.role = "backend";
  request.channel_id = "chan1";
  request.user_id = kOwner;
  request.opaque_user_id = "Ucustom";
  request.ttl_seconds = 30;
  auto id = auth.Authenticate(Header("ext1", auth.Mint(request, kExtSecret)));
  ASSERT_TRUE(id.has_value()) << ErrorText(id);  // no allowed_stage: a production token
  EXPECT_EQ(id->role, Role::kBackend);
  EXPECT_EQ(id->opaque_user_id, "Ucustom");
  EXPECT_EQ(id->expires_at_s, kNow + 30);
  EXPECT_EQ(id->allowed_stage, "");
}

}  // namespace
}  // namespace medkit::core::auth
