// Turns an Authorization header into a verified Identity (spec 4), and mints the server's own
// tokens (sandbox authtoken, the `medkit token` command).
//
// Verification keys: the extension's secret when the extension is configured, then the
// server's signing key. In production the extension must be configured (unknown client id =>
// 401 "No such extension found"); in the sandbox any client id works with the server's tokens.
// Stage binding (spec 4.5): production refuses every token that carries allowed_stage; the
// sandbox accepts tokens without it (Twitch-hosted test) or with "sandbox"/"testing".
// Thread-safe. Verified tokens are cached per thread until they expire.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/extension_registry.h"
#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/result.h"

namespace medkit::core::auth {

struct AuthOptions {
  Stage stage = Stage::kSandbox;
  std::string server_key;                         // raw bytes; signs the server's own tokens
  int64_t leeway_seconds = 60;                    // clock skew allowed on exp
  int64_t sandbox_token_ttl_seconds = 7 * 86400;  // authtoken tokens (MEDKit re-fetches at 25 min)
  // Verified tokens remembered per thread (two generations of half this size each: a token
  // used in the current or the previous generation skips the HMAC). A stream-sized audience
  // (100,000+ viewers voting within seconds) must fit.
  size_t token_cache_per_thread = 262'144;
};

// Body of POST authtoken (spec 5.1).
struct SandboxTokenRequest {
  std::string client_id;  // "app_id" or "extension_id"
  std::string channel_id;
  std::string role;  // copied without enum validation
  std::string user_id;
  std::vector<std::string> user_ids;
};

// Claims for a token minted by this server or by `medkit token`.
struct MintRequest {
  std::string client_id;
  std::string role;
  std::string channel_id;
  std::string user_id;         // may be empty (anonymous)
  std::string opaque_user_id;  // empty: derived from user_id ("U" + id) or anonymous ("A...")
  std::string allowed_stage;   // empty: no claim (production tokens)
  std::string link_id;         // empty: no claim; else the "gl" claim (LinkService tokens)
  int64_t ttl_seconds = 3600;
};

class Authenticator {
 public:
  Authenticator(AuthOptions options, const ExtensionRegistry& registry, const Clock& clock);

  // Parses "<client_id> <jwt>" (surrounding quotes and a leading "Bearer " tolerated) and
  // verifies the token. 401 for a missing/malformed header, bad or expired token, unknown
  // extension; 403 (info "Allowed stage mismatch") for a token of the other stage.
  Result<Identity> Authenticate(std::string_view authorization) const;

  // POST authtoken: one token per identity asked for (user_id, then each of user_ids; an
  // anonymous token when neither is given). Sandbox only: production gets kNotFound.
  Result<std::vector<std::string>> MintSandboxTokens(const SandboxTokenRequest& request) const;

  // Signs the claims of request with key (raw bytes).
  std::string Mint(const MintRequest& request, std::string_view key) const;
  // Mint() with the server's own signing key (PIN and GameLink tokens).
  std::string MintWithServerKey(const MintRequest& request) const {
    return Mint(request, options_.server_key);
  }

  // Called with the identity of each newly verified token (a miss of the per-thread cache), on
  // the request's thread, after verification succeeded; it must be quick and thread-safe (the
  // user_ids directory records user ids through it). Set once before serving.
  using VerifiedHook = std::function<void(const Identity&)>;
  void SetVerifiedHook(VerifiedHook hook) { on_verified_ = std::move(hook); }

  // Called for every authenticated request whose token carries a "gl" claim (link_id), on a
  // cache hit as on a fresh verification, before the request is served; an error refuses the
  // request (the hook's error is returned). The hook may rewrite the identity (a validated
  // pending token acts on the channel it was bound to). Tokens without the claim never call
  // it. Without a hook, tokens with the claim are refused. Must be thread-safe and quick.
  // Set once before serving.
  using LinkCheck = std::function<Result<void>(Identity&)>;
  void SetLinkCheck(LinkCheck check) { link_check_ = std::move(check); }

  Stage stage() const { return options_.stage; }
  const ExtensionRegistry& registry() const { return registry_; }
  const Clock& clock() const { return clock_; }

 private:
  Result<Identity> Verify(std::string_view client_id, std::string_view token) const;

  AuthOptions options_;
  const ExtensionRegistry& registry_;
  const Clock& clock_;
  uint64_t instance_id_;  // keys the per-thread token cache
  Result<void> CheckLink(Identity& identity) const;

  VerifiedHook on_verified_;
  LinkCheck link_check_;
};

}  // namespace medkit::core::auth
