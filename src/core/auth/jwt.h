// HS256 JSON Web Tokens: the only algorithm MEDKit uses (Twitch extension tokens, developer
// backend tokens and the server's own tokens are all HS256 with a shared secret).
//
// Verification pins the algorithm to HS256: the header's "alg" must be exactly "HS256"
// ("none", "HS512", "RS256", ... are refused), the token must have three base64url segments
// (no padding), the signature is compared in constant time, and "exp" (seconds) is required and
// must be in the future (with a small leeway). Thread-safe; keeps per-thread OpenSSL contexts.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"

namespace medkit::core::auth {

// Standard base64 (RFC 4648 section 4) with padding; Decode accepts missing padding and
// refuses any other character.
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);
// base64url (RFC 4648 section 5) without padding, as JWT segments use.
std::string Base64UrlEncode(std::string_view bytes);
Result<std::string> Base64UrlDecode(std::string_view text);

struct VerifyOptions {
  int64_t now_seconds = 0;
  int64_t leeway_seconds = 60;  // allowed clock skew for exp
};

// Verifies token against each key in turn (raw key bytes, i.e. an extension secret after
// base64 decoding) and returns the claims of the first key that matches.
// Errors (all Errc::kUnauthenticated): "malformed token", "unsupported token algorithm",
// "invalid token signature", "token has no exp claim", "token expired".
Result<boost::json::object> VerifyHs256(std::string_view token,
                                        std::span<const std::string_view> keys,
                                        const VerifyOptions& options);

// Signs claims with HS256. The header is {"alg":"HS256","typ":"JWT"}. The payload segment is
// made safe for the browser's atob (MEDKit JS decodes it with atob, which refuses '-' and
// '_'): '>', '?', '~', DEL and every non-ASCII character are written as \uXXXX escapes, and if
// the segment would still contain '-' or '_' a "nonce" claim is added and varied until it
// does not. The result therefore always has a payload segment free of '-' and '_'.
std::string SignHs256(const boost::json::object& claims, std::string_view key);

// HMAC-SHA256 of data with key (raw bytes). Exposed for tests and other signers.
std::string HmacSha256(std::string_view key, std::string_view data);

}  // namespace medkit::core::auth
