#include "core/auth/jwt.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

namespace medkit::core::auth {
namespace {

// ---------------------------------------------------------------------------------------------
// Base64

constexpr std::string_view kStdAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr uint8_t kInvalid = 0xff;

// Maps each byte to its 6-bit value in alphabet, or kInvalid.
constexpr std::array<uint8_t, 256> MakeDecodeTable(std::string_view alphabet) {
  std::array<uint8_t, 256> table{};
  for (auto& entry : table) entry = kInvalid;
  for (size_t i = 0; i < alphabet.size(); ++i) {
    table[static_cast<unsigned char>(alphabet[i])] = static_cast<uint8_t>(i);
  }
  return table;
}

constexpr std::array<uint8_t, 256> kStdDecode = MakeDecodeTable(kStdAlphabet);
constexpr std::array<uint8_t, 256> kUrlDecode = MakeDecodeTable(kUrlAlphabet);

std::string EncodeWith(std::string_view bytes, std::string_view alphabet, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
    out.push_back(alphabet[(n >> 18) & 0x3f]);
    out.push_back(alphabet[(n >> 12) & 0x3f]);
    out.push_back(alphabet[(n >> 6) & 0x3f]);
    out.push_back(alphabet[n & 0x3f]);
  }
  const size_t rest = bytes.size() - i;
  if (rest == 1) {
    const uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    out.push_back(alphabet[(n >> 18) & 0x3f]);
    out.push_back(alphabet[(n >> 12) & 0x3f]);
    if (pad) out.append("==");
  } else if (rest == 2) {
    const uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8);
    out.push_back(alphabet[(n >> 18) & 0x3f]);
    out.push_back(alphabet[(n >> 12) & 0x3f]);
    out.push_back(alphabet[(n >> 6) & 0x3f]);
    if (pad) out.push_back('=');
  }
  return out;
}

// Decodes unpadded text (no '=' may remain) with table. Refuses any character outside the
// alphabet, a length of 1 mod 4 (no whole byte), and non-zero leftover bits in the last symbol,
// so every byte string has exactly one accepted encoding (no signature malleability).
Result<std::string> DecodeUnpadded(std::string_view text, const std::array<uint8_t, 256>& table,
                                   std::string_view error_message) {
  if (text.size() % 4 == 1) return MakeError(Errc::kInvalidArgument, std::string(error_message));
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const uint8_t v = table[static_cast<unsigned char>(c)];
    if (v == kInvalid) return MakeError(Errc::kInvalidArgument, std::string(error_message));
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // 2 or 4 bits left over after a partial group; they must be zero.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return MakeError(Errc::kInvalidArgument, std::string(error_message));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256 via the OpenSSL 3 EVP_MAC API

constexpr size_t kSha256Size = 32;
// Bound on the number of distinct keys cached per thread; the whole cache is dropped when full.
constexpr size_t kMaxCachedKeys = 64;

// The HMAC implementation, fetched once and never freed (contexts created from it may be
// released by thread-exit destructors at any time).
EVP_MAC* HmacMac() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Returns a context initialised with key and SHA-256, owned by this thread's cache, or null on
// OpenSSL failure. Callers must not update it directly: they duplicate it per computation.
EVP_MAC_CTX* KeyedContext(std::string_view key) {
  thread_local std::unordered_map<std::string, MacCtxPtr, StringHash, std::equal_to<>> cache;
  if (auto it = cache.find(key); it != cache.end()) return it->second.get();

  EVP_MAC* mac = HmacMac();
  if (mac == nullptr) return nullptr;
  MacCtxPtr ctx(EVP_MAC_CTX_new(mac));
  if (!ctx) return nullptr;
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  // An empty string_view may have a null data(); OpenSSL wants a real pointer for a key.
  static const unsigned char kEmptyKey[1] = {0};
  const auto* key_bytes =
      key.empty() ? kEmptyKey : reinterpret_cast<const unsigned char*>(key.data());
  if (EVP_MAC_init(ctx.get(), key_bytes, key.size(), params) != 1) return nullptr;

  if (cache.size() >= kMaxCachedKeys) cache.clear();
  return cache.emplace(std::string(key), std::move(ctx)).first->second.get();
}

// ---------------------------------------------------------------------------------------------
// JWT helpers

constexpr std::string_view kHeaderJson = R"({"alg":"HS256","typ":"JWT"})";
constexpr int kMaxJsonDepth = 16;
constexpr int kMaxNonceTries = 1000;

Error Unauthenticated(std::string_view message) {
  return MakeError(Errc::kUnauthenticated, std::string(message));
}

// Parses text as a JSON object (strict JSON, depth-limited). Returns false for anything else.
bool ParseObject(std::string_view text, boost::json::object& out) {
  boost::json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(text, ec, {}, options);
  if (ec || !value.is_object()) return false;
  out = std::move(value.as_object());
  return true;
}

// Reads "exp" (seconds; int64, uint64 or finite double) and decides expiry: expired when
// now > exp + leeway. has_exp is false when exp is missing or not such a number.
struct ExpCheck {
  bool has_exp = false;
  bool expired = false;
};

ExpCheck CheckExp(const boost::json::object& claims, const VerifyOptions& options) {
  ExpCheck check;
  const boost::json::value* exp = claims.if_contains("exp");
  if (exp == nullptr) return check;
  // now - leeway, computed without overflow.
  const __int128 limit =
      static_cast<__int128>(options.now_seconds) - static_cast<__int128>(options.leeway_seconds);
  if (const int64_t* i = exp->if_int64()) {
    check.has_exp = true;
    check.expired = limit > static_cast<__int128>(*i);
  } else if (const uint64_t* u = exp->if_uint64()) {
    check.has_exp = true;
    check.expired = limit > static_cast<__int128>(*u);
  } else if (const double* d = exp->if_double()) {
    if (!std::isfinite(*d)) return check;
    check.has_exp = true;
    check.expired = static_cast<long double>(limit) > static_cast<long double>(*d);
  }
  return check;
}

void AppendUnicodeEscape(std::string& out, uint32_t unit) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.append("\\u");
  out.push_back(kHex[(unit >> 12) & 0xf]);
  out.push_back(kHex[(unit >> 8) & 0xf]);
  out.push_back(kHex[(unit >> 4) & 0xf]);
  out.push_back(kHex[unit & 0xf]);
}

// Decodes one UTF-8 sequence starting at text[i] (a byte >= 0x80). On success stores the code
// point and its length; refuses overlong forms, surrogates, values above U+10FFFF and truncated
// or malformed continuation bytes.
bool DecodeUtf8(std::string_view text, size_t i, uint32_t& code_point, size_t& length) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  uint32_t min_value;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code_point = lead & 0x1f;
    min_value = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code_point = lead & 0x0f;
    min_value = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code_point = lead & 0x07;
    min_value = 0x10000;
  } else {
    return false;
  }
  if (i + length > text.size()) return false;
  for (size_t k = 1; k < length; ++k) {
    const unsigned char c = byte(i + k);
    if ((c & 0xc0) != 0x80) return false;
    code_point = (code_point << 6) | (c & 0x3f);
  }
  if (code_point < min_value || code_point > 0x10ffff) return false;
  if (code_point >= 0xd800 && code_point <= 0xdfff) return false;
  return true;
}

// Rewrites serialized JSON into pure printable-ASCII JSON whose bytes never have low six bits
// 0x3e/0x3f: '>', '?', '~', DEL and every non-ASCII character become \uXXXX escapes (UTF-16
// surrogate pairs above U+FFFF; an invalid UTF-8 byte becomes U+FFFD). Valid because boost's
// serializer only emits these bytes inside strings, where \uXXXX means the same character.
std::string AtobSafeJson(std::string_view json) {
  std::string out;
  out.reserve(json.size() + json.size() / 8);
  size_t i = 0;
  while (i < json.size()) {
    const unsigned char c = static_cast<unsigned char>(json[i]);
    if (c < 0x80) {
      if (c == '>' || c == '?' || c == '~' || c == 0x7f) {
        AppendUnicodeEscape(out, c);
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    uint32_t code_point = 0;
    size_t length = 0;
    if (!DecodeUtf8(json, i, code_point, length)) {
      AppendUnicodeEscape(out, 0xfffd);
      ++i;
      continue;
    }
    if (code_point > 0xffff) {
      const uint32_t v = code_point - 0x10000;
      AppendUnicodeEscape(out, 0xd800 + (v >> 10));
      AppendUnicodeEscape(out, 0xdc00 + (v & 0x3ff));
    } else {
      AppendUnicodeEscape(out, code_point);
    }
    i += length;
  }
  return out;
}

bool HasUrlOnlyChars(std::string_view segment) {
  return segment.find_first_of("-_") != std::string_view::npos;
}

}  // namespace

std::string Base64Encode(std::string_view bytes) { return EncodeWith(bytes, kStdAlphabet, true); }

Result<std::string> Base64Decode(std::string_view text) {
  constexpr std::string_view kMessage = "invalid base64";
  // Padding is optional, but when present it must complete the last quantum exactly.
  size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
  if (pad > 0) {
    if (text.size() % 4 != 0) return MakeError(Errc::kInvalidArgument, std::string(kMessage));
    // The last quantum now holds 4 - pad symbols (2 or 3), as padding requires; a third '='
    // or an inner one is left in text and refused as an invalid character.
    text.remove_suffix(pad);
  }
  return DecodeUnpadded(text, kStdDecode, kMessage);
}

std::string Base64UrlEncode(std::string_view bytes) {
  return EncodeWith(bytes, kUrlAlphabet, false);
}

Result<std::string> Base64UrlDecode(std::string_view text) {
  return DecodeUnpadded(text, kUrlDecode, "invalid base64url");
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  // Returns an empty string on OpenSSL failure, which no verifier accepts (fails closed).
  EVP_MAC_CTX* keyed = KeyedContext(key);
  if (keyed == nullptr) return {};
  MacCtxPtr ctx(EVP_MAC_CTX_dup(keyed));
  if (!ctx) return {};
  if (EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
      1) {
    return {};
  }
  std::string out(kSha256Size, '\0');
  size_t out_len = 0;
  if (EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &out_len,
                    out.size()) != 1 ||
      out_len != kSha256Size) {
    return {};
  }
  return out;
}

Result<boost::json::object> VerifyHs256(std::string_view token,
                                        std::span<const std::string_view> keys,
                                        const VerifyOptions& options) {
  constexpr std::string_view kMalformed = "malformed token";
  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return Unauthenticated(kMalformed);
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) return Unauthenticated(kMalformed);
  if (token.find('.', dot2 + 1) != std::string_view::npos) return Unauthenticated(kMalformed);
  const std::string_view header_seg = token.substr(0, dot1);
  const std::string_view payload_seg = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_seg = token.substr(dot2 + 1);
  const std::string_view signing_input = token.substr(0, dot2);

  // Header: the algorithm is pinned before anything else is looked at.
  auto header_json = Base64UrlDecode(header_seg);
  if (!header_json) return Unauthenticated(kMalformed);
  boost::json::object header;
  if (!ParseObject(*header_json, header)) return Unauthenticated(kMalformed);
  const boost::json::value* alg = header.if_contains("alg");
  if (alg == nullptr || !alg->is_string() || alg->get_string() != "HS256") {
    return Unauthenticated("unsupported token algorithm");
  }
  // RFC 7515 4.1.11: critical extensions we do not implement must be refused.
  if (header.contains("crit")) return Unauthenticated(kMalformed);

  auto payload_json = Base64UrlDecode(payload_seg);
  if (!payload_json) return Unauthenticated(kMalformed);
  auto signature = Base64UrlDecode(signature_seg);
  if (!signature) return Unauthenticated(kMalformed);

  // Signature before any claim is read.
  bool signature_ok = false;
  if (signature->size() == kSha256Size) {
    for (std::string_view key : keys) {
      const std::string expected = HmacSha256(key, signing_input);
      if (expected.size() == signature->size() &&
          CRYPTO_memcmp(expected.data(), signature->data(), expected.size()) == 0) {
        signature_ok = true;
        break;
      }
    }
  }
  if (!signature_ok) return Unauthenticated("invalid token signature");

  boost::json::object claims;
  if (!ParseObject(*payload_json, claims)) return Unauthenticated(kMalformed);
  const ExpCheck exp = CheckExp(claims, options);
  if (!exp.has_exp) return Unauthenticated("token has no exp claim");
  if (exp.expired) return Unauthenticated("token expired");
  return claims;
}

std::string SignHs256(const boost::json::object& claims, std::string_view key) {
  const std::string header_seg = Base64UrlEncode(kHeaderJson);
  std::string payload_seg = Base64UrlEncode(AtobSafeJson(boost::json::serialize(claims)));
  // With the escaping above every payload byte is printable ASCII whose low six bits are never
  // 0x3e/0x3f, so base64 never emits '+'/'/' ('-'/'_' in base64url) and this loop does not run.
  // It stays as a guarantee should the serializer ever emit such a byte; if no nonce helps
  // within the bound, the (still valid) token is returned as is.
  if (HasUrlOnlyChars(payload_seg)) {
    boost::json::object varied = claims;
    for (int nonce = 0; nonce < kMaxNonceTries; ++nonce) {
      varied["nonce"] = std::to_string(nonce);
      std::string candidate = Base64UrlEncode(AtobSafeJson(boost::json::serialize(varied)));
      if (!HasUrlOnlyChars(candidate)) {
        payload_seg = std::move(candidate);
        break;
      }
    }
  }
  std::string token;
  token.reserve(header_seg.size() + payload_seg.size() + 45);
  token.append(header_seg).push_back('.');
  token.append(payload_seg);
  const std::string signature = HmacSha256(key, token);
  token.push_back('.');
  token.append(Base64UrlEncode(signature));
  return token;
}

}  // namespace medkit::core::auth
