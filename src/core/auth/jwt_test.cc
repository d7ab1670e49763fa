#include "core/auth/jwt.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace medkit::core::auth {
namespace {

constexpr int64_t kNow = 1'700'000'000;
constexpr std::string_view kSecret = "medkit-test-secret";

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

VerifyOptions Options(int64_t now = kNow, int64_t leeway = 60) {
  VerifyOptions options;
  options.now_seconds = now;
  options.leeway_seconds = leeway;
  return options;
}

Result<boost::json::object> Verify(std::string_view token, std::string_view key = kSecret,
                                   const VerifyOptions& options = Options()) {
  const std::array<std::string_view, 1> keys = {key};
  return VerifyHs256(token, keys, options);
}

// Asserts that result failed with kUnauthenticated and exactly message.
void ExpectRefused(const Result<boost::json::object>& result, std::string_view message) {
  ASSERT_FALSE(result.has_value()) << "expected refusal: " << message;
  EXPECT_EQ(result.error().code, Errc::kUnauthenticated);
  EXPECT_EQ(result.error().message, message);
}

boost::json::object Claims(int64_t exp) {
  return boost::json::object{{"user_id", "12345"}, {"role", "viewer"}, {"exp", exp}};
}

// Builds header.payload.signature from raw JSON texts, signed with HS256 under key.
std::string RawToken(std::string_view header_json, std::string_view payload_json,
                     std::string_view key = kSecret) {
  std::string input = Base64UrlEncode(header_json) + "." + Base64UrlEncode(payload_json);
  return input + "." + Base64UrlEncode(HmacSha256(key, input));
}

std::vector<std::string> Split(std::string_view token) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = token.find('.', start);
    parts.emplace_back(token.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Base64

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << encoded;
    EXPECT_EQ(*decoded, plain);

    std::string unpadded(encoded);
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    EXPECT_EQ(Base64UrlEncode(plain), unpadded);
    auto url_decoded = Base64UrlDecode(unpadded);
    ASSERT_TRUE(url_decoded.has_value()) << unpadded;
    EXPECT_EQ(*url_decoded, plain);
    // Standard decoding also accepts the unpadded form.
    auto std_unpadded = Base64Decode(unpadded);
    ASSERT_TRUE(std_unpadded.has_value()) << unpadded;
    EXPECT_EQ(*std_unpadded, plain);
  }
}

TEST(Base64Test, AlphabetsDifferOnlyInLastTwoSymbols) {
  const std::string bytes("\xfb\xff\xbf", 3);
  EXPECT_EQ(Base64Encode(bytes), "+/+/");
  EXPECT_EQ(Base64UrlEncode(bytes), "-_-_");
  EXPECT_EQ(Base64Encode(std::string_view("\xfb\xff", 2)), "+/8=");
  EXPECT_EQ(Base64UrlEncode(std::string_view("\xfb\xff", 2)), "-_8");
  auto std_decoded = Base64Decode("+/+/");
  ASSERT_TRUE(std_decoded.has_value());
  EXPECT_EQ(*std_decoded, bytes);
  auto url_decoded = Base64UrlDecode("-_-_");
  ASSERT_TRUE(url_decoded.has_value());
  EXPECT_EQ(*url_decoded, bytes);
}

TEST(Base64Test, RoundTripsRandomBytes) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t length = 0; length <= 100; ++length) {
    for (int round = 0; round < 5; ++round) {
      std::string bytes;
      for (size_t i = 0; i < length; ++i) bytes.push_back(static_cast<char>(byte(rng)));
      auto std_decoded = Base64Decode(Base64Encode(bytes));
      ASSERT_TRUE(std_decoded.has_value());
      EXPECT_EQ(*std_decoded, bytes);
      const std::string url = Base64UrlEncode(bytes);
      EXPECT_EQ(url.find_first_of("=+/"), std::string::npos);
      auto url_decoded = Base64UrlDecode(url);
      ASSERT_TRUE(url_decoded.has_value());
      EXPECT_EQ(*url_decoded, bytes);
    }
  }
}

TEST(Base64Test, DecodeRefusesInvalidInput) {
  const std::string_view bad[] = {
      "Zm9v-_",  // base64url symbols
      "Zm9v_w",
      "Zm-v",
      "Zm9v YmFy",  // whitespace
      "Zm9v\nYmFy",
      "Zm9vYmFy\n",
      " Zm9v",
      "Zm9v\t",
      "Zg=",  // padding that does not complete the quantum
      "Zg===",
      "Zm9v=",
      "Zm9v==",
      "=Zm9",
      "Zm=9",
      "Z===",
      "====",
      "==",
      "Z",  // a single leftover symbol carries no byte
      "Zm9vY",
      "Zh==",  // non-zero leftover bits (non-canonical)
      "Zm9=",
      "Zh",
      "*m9v",
      std::string_view("Zm\0v", 4),
      "Zm9v\xc3\xa9",
  };
  for (std::string_view text : bad) {
    auto decoded = Base64Decode(text);
    EXPECT_FALSE(decoded.has_value()) << "accepted: " << text;
    if (!decoded.has_value()) {
      EXPECT_EQ(decoded.error().code, Errc::kInvalidArgument);
    }
  }
}

TEST(Base64Test, UrlDecodeRefusesInvalidInput) {
  const std::string_view bad[] = {
      "Zg==",  // padding
      "Zm8=", "Zm9v=",   "=",      "Zm9v+w", "Zm9v/w",
      "+/+/", "Zm9v Yg", "Zm9v\n", "Z",      "Zm9vY",
      "Zh",   "Zm9",     "*m9v",   "Zm9v.",  std::string_view("Zm\0v", 4),
  };
  for (std::string_view text : bad) {
    auto decoded = Base64UrlDecode(text);
    EXPECT_FALSE(decoded.has_value()) << "accepted: " << text;
    if (!decoded.has_value()) {
      EXPECT_EQ(decoded.error().code, Errc::kInvalidArgument);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256

TEST(HmacSha256Test, Rfc4231Vectors) {
  // Test case 2.
  EXPECT_EQ(Hex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 1.
  EXPECT_EQ(Hex(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 6: key longer than the block size.
  EXPECT_EQ(Hex(HmacSha256(std::string(131, '\xaa'),
                           "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256Test, EmptyKeyAndData) {
  // Reference values from Python's hmac module.
  EXPECT_EQ(Hex(HmacSha256("", "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_EQ(Hex(HmacSha256("", "abc")),
            "fd7adb152c05ef80dccf50a1fa4c05d5a3ec6da95575fc312ae7c5d091836351");
}

TEST(HmacSha256Test, StableAcrossCacheEvictionAndRepeatedUse) {
  const std::string expected = HmacSha256("Jefe", "what do ya want for nothing?");
  // Repeated use of the cached context must not carry state between calls.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(HmacSha256("Jefe", "what do ya want for nothing?"), expected);
    EXPECT_NE(HmacSha256("Jefe", "other data"), expected);
  }
  // More distinct keys than the cache holds.
  std::vector<std::string> first_pass;
  for (int i = 0; i < 200; ++i) {
    first_pass.push_back(HmacSha256("key-" + std::to_string(i), "data"));
  }
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(HmacSha256("key-" + std::to_string(i), "data"), first_pass[i]);
  }
  EXPECT_EQ(HmacSha256("Jefe", "what do ya want for nothing?"), expected);
}

TEST(HmacSha256Test, ThreadsAgree) {
  std::vector<std::string> expected;
  for (int k = 0; k < 8; ++k) expected.push_back(HmacSha256("k" + std::to_string(k), "payload"));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 500; ++round) {
        const int k = (round + t) % 8;
        if (HmacSha256("k" + std::to_string(k), "payload") != expected[k]) ++mismatches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int count : mismatches) EXPECT_EQ(count, 0);
}

// ---------------------------------------------------------------------------------------------
// VerifyHs256 / SignHs256

TEST(JwtTest, SignThenVerify) {
  const boost::json::object claims = Claims(kNow + 3600);
  const std::string token = SignHs256(claims, kSecret);
  const auto parts = Split(token);
  ASSERT_EQ(parts.size(), 3u);
  auto header = Base64UrlDecode(parts[0]);
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(*header, R"({"alg":"HS256","typ":"JWT"})");

  auto verified = Verify(token);
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(*verified, claims);
}

TEST(JwtTest, SignMatchesPyJwtForPlainAsciiClaims) {
  // jwt.encode({'sub':'user-1','role':'viewer','exp':4102444800}, b'medkit-test-secret',
  //            algorithm='HS256') with PyJWT 2.6.0.
  const boost::json::object claims{{"sub", "user-1"}, {"role", "viewer"}, {"exp", 4102444800}};
  EXPECT_EQ(SignHs256(claims, kSecret),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
            "eyJzdWIiOiJ1c2VyLTEiLCJyb2xlIjoidmlld2VyIiwiZXhwIjo0MTAyNDQ0ODAwfQ."
            "2EtAtCjEWuewSbvQjColEeW1QMLXX8P8I7fucYitSwM");
}

TEST(JwtTest, AcceptsExternallyProducedToken) {
  // Produced with PyJWT 2.6.0:
  // jwt.encode({'user_id':'12345','channel_id':'67890','role':'broadcaster',
  //             'opaque_user_id':'U12345','exp':4102444800,
  //             'pubsub_perms':{'listen':['broadcast'],'send':['*']}},
  //            b'ext-secret-for-tests', algorithm='HS256')
  constexpr std::string_view kToken =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJ1c2VyX2lkIjoiMTIzNDUiLCJjaGFubmVsX2lkIjoiNjc4OTAiLCJyb2xlIjoiYnJvYWRjYXN0ZXIiLCJvcGFx"
      "dWVfdXNlcl9pZCI6IlUxMjM0NSIsImV4cCI6NDEwMjQ0NDgwMCwicHVic3ViX3Blcm1zIjp7Imxpc3RlbiI6WyJi"
      "cm9hZGNhc3QiXSwic2VuZCI6WyIqIl19fQ."
      "1QSQKw3lkT4BRx0Lgi-LoXBTy04ndt3X4BeHHh_-St8";
  auto verified = Verify(kToken, "ext-secret-for-tests");
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  const boost::json::object expected{
      {"user_id", "12345"},
      {"channel_id", "67890"},
      {"role", "broadcaster"},
      {"opaque_user_id", "U12345"},
      {"exp", 4102444800},
      {"pubsub_perms", boost::json::object{{"listen", boost::json::array{"broadcast"}},
                                           {"send", boost::json::array{"*"}}}},
  };
  EXPECT_EQ(*verified, expected);
  ExpectRefused(Verify(kToken, "ext-secret-for-test"), "invalid token signature");
}

TEST(JwtTest, RefusesExpiredToken) {
  // Expired when now > exp + leeway.
  ExpectRefused(Verify(SignHs256(Claims(kNow - 61), kSecret)), "token expired");
  ExpectRefused(Verify(SignHs256(Claims(kNow - 3600), kSecret)), "token expired");
  ExpectRefused(Verify(SignHs256(Claims(kNow - 1), kSecret), kSecret, Options(kNow, 0)),
                "token expired");
  ExpectRefused(Verify(SignHs256(Claims(-1), kSecret)), "token expired");
}

TEST(JwtTest, AcceptsExpWithinLeeway) {
  EXPECT_TRUE(Verify(SignHs256(Claims(kNow - 60), kSecret)).has_value());
  EXPECT_TRUE(Verify(SignHs256(Claims(kNow - 30), kSecret)).has_value());
  EXPECT_TRUE(Verify(SignHs256(Claims(kNow), kSecret), kSecret, Options(kNow, 0)).has_value());
  EXPECT_TRUE(Verify(SignHs256(Claims(kNow + 1), kSecret), kSecret, Options(kNow, 0)).has_value());
}

TEST(JwtTest, ExpNumberKinds) {
  // Unsigned and floating-point exp values are accepted as numbers of seconds.
  boost::json::object claims = Claims(0);
  claims["exp"] = static_cast<uint64_t>(UINT64_MAX);
  EXPECT_TRUE(Verify(SignHs256(claims, kSecret)).has_value());
  claims["exp"] = static_cast<double>(kNow) + 0.5;
  EXPECT_TRUE(Verify(SignHs256(claims, kSecret)).has_value());
  claims["exp"] = static_cast<double>(kNow) - 61.0;
  ExpectRefused(Verify(SignHs256(claims, kSecret)), "token expired");
  // Extreme now/leeway values must not overflow.
  claims["exp"] = INT64_MAX;
  EXPECT_TRUE(
      Verify(SignHs256(claims, kSecret), kSecret, Options(INT64_MAX, INT64_MAX)).has_value());
  claims["exp"] = INT64_MIN;
  ExpectRefused(Verify(SignHs256(claims, kSecret), kSecret, Options(INT64_MAX, INT64_MIN)),
                "token expired");
}

TEST(JwtTest, RefusesMissingOrNonNumericExp) {
  boost::json::object claims{{"user_id", "12345"}};
  ExpectRefused(Verify(SignHs256(claims, kSecret)), "token has no exp claim");
  claims["exp"] = "4102444800";
  ExpectRefused(Verify(SignHs256(claims, kSecret)), "token has no exp claim");
  claims["exp"] = nullptr;
  ExpectRefused(Verify(SignHs256(claims, kSecret)), "token has no exp claim");
  claims["exp"] = true;
  ExpectRefused(Verify(SignHs256(claims, kSecret)), "token has no exp claim");
  // A nested exp does not count.
  claims.erase("exp");
  claims["inner"] = boost::json::object{{"exp", 4102444800}};
  ExpectRefused(Verify(SignHs256(claims, kSecret)), "token has no exp claim");
}

TEST(JwtTest, RefusesWrongSecret) {
  const std::string token = SignHs256(Claims(kNow + 3600), kSecret);
  ExpectRefused(Verify(token, "another-secret"), "invalid token signature");
  ExpectRefused(Verify(token, ""), "invalid token signature");
}

TEST(JwtTest, MultipleKeysSecondMatches) {
  const boost::json::object claims = Claims(kNow + 3600);
  const std::string token = SignHs256(claims, "second-key");
  const std::array<std::string_view, 3> keys = {"first-key", "second-key", "third-key"};
  auto verified = VerifyHs256(token, keys, Options());
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(*verified, claims);

  const std::array<std::string_view, 2> wrong = {"first-key", "third-key"};
  ExpectRefused(VerifyHs256(token, wrong, Options()), "invalid token signature");
}

TEST(JwtTest, NoKeysMeansInvalidSignature) {
  const std::string token = SignHs256(Claims(kNow + 3600), kSecret);
  ExpectRefused(VerifyHs256(token, std::span<const std::string_view>(), Options()),
                "invalid token signature");
}

TEST(JwtTest, RefusesAlgNone) {
  const std::string payload = Base64UrlEncode(boost::json::serialize(Claims(kNow + 3600)));
  const std::string header = Base64UrlEncode(R"({"alg":"none","typ":"JWT"})");
  // Unsecured JWT form: empty signature.
  ExpectRefused(Verify(header + "." + payload + "."), "unsupported token algorithm");
  // With a valid HS256 signature over the same input.
  const std::string input = header + "." + payload;
  ExpectRefused(Verify(input + "." + Base64UrlEncode(HmacSha256(kSecret, input))),
                "unsupported token algorithm");
  // Case variants are not HS256 either.
  ExpectRefused(Verify(RawToken(R"({"alg":"None"})", R"({"exp":4102444800})")),
                "unsupported token algorithm");
}

TEST(JwtTest, RefusesOtherAlgorithms) {
  const std::string payload_json = boost::json::serialize(Claims(kNow + 3600));
  // HS512 header with a genuine HMAC-SHA512 signature.
  {
    const std::string input =
        Base64UrlEncode(R"({"alg":"HS512","typ":"JWT"})") + "." + Base64UrlEncode(payload_json);
    unsigned char mac[64];
    size_t mac_len = 0;
    ASSERT_NE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA512", nullptr, kSecret.data(), kSecret.size(),
                        reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
                        sizeof(mac), &mac_len),
              nullptr);
    ASSERT_EQ(mac_len, 64u);
    const std::string token =
        input + "." +
        Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(mac), mac_len));
    ExpectRefused(Verify(token), "unsupported token algorithm");
  }
  // Other algorithm names, even with a valid HS256 signature.
  for (std::string_view header :
       {R"({"alg":"HS512","typ":"JWT"})", R"({"alg":"RS256"})", R"({"alg":"hs256"})",
        R"({"alg":"HS256 "})", R"({"alg":""})", R"({"typ":"JWT"})", R"({"alg":null})",
        R"({"alg":256})", R"({"alg":["HS256"]})", R"({})"}) {
    ExpectRefused(Verify(RawToken(header, payload_json)), "unsupported token algorithm");
  }
  // typ is optional and not interpreted.
  EXPECT_TRUE(Verify(RawToken(R"({"alg":"HS256"})", payload_json)).has_value());
  EXPECT_TRUE(Verify(RawToken(R"({"typ":"jwt","alg":"HS256"})", payload_json)).has_value());
}

TEST(JwtTest, RefusesTamperedPayload) {
  const std::string token = SignHs256(Claims(kNow + 3600), kSecret);
  auto parts = Split(token);
  ASSERT_EQ(parts.size(), 3u);
  boost::json::object forged = Claims(kNow + 3600);
  forged["role"] = "broadcaster";
  const std::string forged_token =
      parts[0] + "." + Base64UrlEncode(boost::json::serialize(forged)) + "." + parts[2];
  ExpectRefused(Verify(forged_token), "invalid token signature");

  // Extending the expiry is equally refused.
  const std::string extended = parts[0] + "." +
                               Base64UrlEncode(boost::json::serialize(Claims(kNow + 99999))) + "." +
                               parts[2];
  ExpectRefused(Verify(extended), "invalid token signature");
}

TEST(JwtTest, RefusesTamperedSignature) {
  const std::string token = SignHs256(Claims(kNow + 3600), kSecret);
  const size_t sig = token.rfind('.') + 1;
  std::string flipped = token;
  flipped[sig] = flipped[sig] == 'A' ? 'B' : 'A';
  ExpectRefused(Verify(flipped), "invalid token signature");

  // Truncated or extended signatures (canonically encoded) have the wrong length.
  auto mac = Base64UrlDecode(token.substr(sig));
  ASSERT_TRUE(mac.has_value());
  ASSERT_EQ(mac->size(), 32u);
  const std::string input = token.substr(0, sig);
  ExpectRefused(Verify(input + Base64UrlEncode(mac->substr(0, 31))), "invalid token signature");
  ExpectRefused(Verify(input + Base64UrlEncode(*mac + '\0')), "invalid token signature");
  ExpectRefused(Verify(input + Base64UrlEncode(*mac + *mac)), "invalid token signature");
  // The same MAC in a non-canonical encoding (non-zero leftover bits) is malformed.
  std::string loose = token;
  char& last = loose.back();
  last = last == 'A' ? 'B' : static_cast<char>(last + 1);
  EXPECT_FALSE(Verify(loose).has_value());
  // Empty signature.
  ExpectRefused(Verify(token.substr(0, sig)), "invalid token signature");
}

TEST(JwtTest, RefusesMalformedTokens) {
  const std::string token = SignHs256(Claims(kNow + 3600), kSecret);
  const auto parts = Split(token);
  ASSERT_EQ(parts.size(), 3u);
  const std::string& h = parts[0];
  const std::string& p = parts[1];
  const std::string& s = parts[2];

  const std::vector<std::string> malformed = {
      "",
      ".",
      "..",
      "...",
      h,
      h + "." + p,                                // two segments
      h + "." + p + "." + s + "." + s,            // four segments
      h + "." + p + "." + s + ".",                // trailing dot
      "." + p + "." + s,                          // empty header
      h + "." + p + "*" + "." + s,                // bad base64 character
      h + "." + p + "." + s + "=",                // padding
      h + "=." + p + "." + s,                     // padding on the header
      h + "." + p + "." + s.substr(0, 42) + "+",  // standard base64 symbols
      h + "." + p + "." + s.substr(0, 42) + "/",
      h + " ." + p + "." + s,                                      // whitespace
      Base64UrlEncode("not json") + "." + p + "." + s,             // non-JSON header
      Base64UrlEncode(R"(["HS256"])") + "." + p + "." + s,         // header not an object
      Base64UrlEncode(R"({"alg":"HS256",})") + "." + p + "." + s,  // trailing comma
  };
  for (const std::string& bad : malformed) {
    SCOPED_TRACE(bad);
    ExpectRefused(Verify(bad), "malformed token");
  }

  // The payload is only parsed once the signature holds, so a payload that does not match the
  // signature is reported as such whatever its content.
  ExpectRefused(Verify(h + ".." + s), "invalid token signature");
  ExpectRefused(Verify(h + "." + Base64UrlEncode("[]") + "." + s), "invalid token signature");

  // Correctly signed payloads that are not JSON objects.
  const std::string header = R"({"alg":"HS256","typ":"JWT"})";
  for (std::string_view payload :
       {R"([{"exp":4102444800}])", R"("exp")", "4102444800", "null", "not json",
        R"({"exp":4102444800)", R"({"exp":4102444800} {})", ""}) {
    ExpectRefused(Verify(RawToken(header, payload)), "malformed token");
  }
  // Payload nesting beyond the parser's depth limit.
  std::string deep = R"({"exp":4102444800,"a":)";
  for (int i = 0; i < 64; ++i) deep += "[";
  for (int i = 0; i < 64; ++i) deep += "]";
  deep += "}";
  ExpectRefused(Verify(RawToken(header, deep)), "malformed token");
  // Invalid UTF-8 inside a JSON string.
  ExpectRefused(Verify(RawToken(header, "{\"exp\":4102444800,\"x\":\"\xff\"}")), "malformed token");
  // Critical header extensions are not implemented, so they are refused.
  ExpectRefused(
      Verify(RawToken(R"({"alg":"HS256","crit":["b64"],"b64":false})", R"({"exp":4102444800})")),
      "malformed token");
}

TEST(JwtTest, SignKeepsCallerNonce) {
  boost::json::object claims = Claims(kNow + 3600);
  claims["nonce"] = "caller";
  auto verified = Verify(SignHs256(claims, kSecret));
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(*verified, claims);
}

TEST(JwtTest, SignedPayloadIsAtobSafe) {
  // Pieces chosen to exercise every escape: bytes whose base64 would produce '+' or '/'
  // ('>', '?', '~', DEL, multi-byte UTF-8) as well as characters JSON itself escapes.
  const std::vector<std::string> pieces = {
      "a",
      "Z",
      "9",
      ">",
      "?",
      "~",
      "\x7f",
      "\xc3\xa9" /* é */,
      "\xf0\x9f\x98\x80" /* 😀 */,
      "\xe4\xb8\xad" /* 中 */,
      "\xef\xbf\xbf" /* U+FFFF */,
      "\xf4\x8f\xbf\xbf" /* U+10FFFF */,
      "-",
      "_",
      "+",
      "/",
      "\"",
      "\\",
      "\n",
      "\x01",
      " ",
      "=",
      "?"
      "?>",
      "~~~",
  };
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<size_t> pick(0, pieces.size() - 1);
  std::uniform_int_distribution<int> length(0, 12);
  std::uniform_int_distribution<int64_t> number(-1'000'000'000'000, 1'000'000'000'000);
  const auto random_text = [&] {
    std::string text;
    for (int n = length(rng); n > 0; --n) text += pieces[pick(rng)];
    return text;
  };

  for (int i = 0; i < 2000; ++i) {
    boost::json::object claims{
        {"user_id", random_text()},
        {"channel_id", random_text()},
        {"role", "viewer"},
        {"exp", kNow + 3600},
        {"n", number(rng)},
        {"list", boost::json::array{random_text(), number(rng), true, nullptr}},
        {"nested", boost::json::object{{random_text() + "k", random_text()}}},
    };
    if (i % 7 == 0) claims["nonce"] = random_text();
    const std::string token = SignHs256(claims, kSecret);
    const auto parts = Split(token);
    ASSERT_EQ(parts.size(), 3u);
    const std::string& payload_seg = parts[1];
    ASSERT_EQ(payload_seg.find_first_of("-_"), std::string::npos) << payload_seg;

    // atob accepts the segment once padded: it is standard base64.
    std::string padded = payload_seg;
    while (padded.size() % 4 != 0) padded.push_back('=');
    auto decoded = Base64Decode(padded);
    ASSERT_TRUE(decoded.has_value()) << padded;
    for (char c : *decoded) {
      const auto b = static_cast<unsigned char>(c);
      ASSERT_TRUE(b < 0x7f && b != '>' && b != '?' && b != '~') << *decoded;
    }
    boost::system::error_code ec;
    boost::json::value parsed = boost::json::parse(*decoded, ec);
    ASSERT_FALSE(ec) << *decoded;
    ASSERT_TRUE(parsed.is_object());
    boost::json::object round_trip = parsed.as_object();
    if (!claims.contains("nonce") && round_trip.contains("nonce")) {
      EXPECT_TRUE(round_trip["nonce"].is_string());
      round_trip.erase("nonce");
    }
    ASSERT_EQ(round_trip, claims) << *decoded;

    auto verified = Verify(token);
    ASSERT_TRUE(verified.has_value()) << verified.error().message;
  }
}

TEST(JwtTest, SignEscapesNonAsciiAsUtf16) {
  const boost::json::object claims{{"s", "\xc3\xa9\xf0\x9f\x98\x80>?~\x7f"}, {"exp", 1}};
  const auto parts = Split(SignHs256(claims, kSecret));
  ASSERT_EQ(parts.size(), 3u);
  auto decoded = Base64UrlDecode(parts[1]);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, R"({"s":"\u00e9\ud83d\ude00\u003e\u003f\u007e\u007f","exp":1})");
}

}  // namespace
}  // namespace medkit::core::auth
