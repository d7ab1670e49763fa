// Game linking (spec 5.2, 7.3): how a game gets a broadcaster token for a channel.
//
// Current flow: the broadcaster's page calls POST gamelink/token (CreatePin) and shows the PIN;
// the game sends it in GameLink `authenticate` (RedeemPin) and gets an access JWT (role
// broadcaster, the linked channel, 7 days) and a refresh token (365 days, rotated on every
// use: Refresh returns a new one and the old one stops working). Legacy flow: POST pin
// (CreatePendingToken) returns a PIN and a token that is not usable until the broadcaster
// calls validate_pin (ValidatePin) with that PIN, which binds it to the broadcaster's channel.
//
// Every token this service issues carries a "gl" claim naming its link; Authenticator calls
// CheckLink (through Authenticator::SetLinkCheck) for every request made with such a token,
// so DELETE pin (RevokeAll) takes effect at once for access tokens, pending tokens and refresh
// tokens of the channel. Links and PINs live in the Store (PINs expire after 5 minutes and are
// single use; compared case-insensitively). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::auth {
class Authenticator;
}

namespace medkit::core::gamelink {

struct LinkLimits {
  int64_t pin_ttl_ms = 5LL * 60 * 1000;
  int64_t access_ttl_seconds = 7LL * 86400;
  int64_t refresh_ttl_ms = 365LL * 86400 * 1000;
  size_t max_authorization_bytes = 1024;  // gamelink/token: 400 "Bad request" beyond
};

// What a successful GameLink authentication gives the game (7.3).
struct GameSession {
  std::string jwt;      // access token: role broadcaster, channel_id, "gl" claim
  std::string refresh;  // the new refresh token
  std::string client_id;
  std::string channel_id;
  std::string user_id;  // the broadcaster's user id
  std::string game_id;  // as the game sent it ("" when none)
  std::string twitch_name;  // the channel's display name if known, else the channel id
};

class LinkService {
 public:
  // auth mints the tokens (with the server's key) and must outlive the service.
  LinkService(storage::Store& store, const Clock& clock, const auth::Authenticator& auth,
              LinkLimits limits);
  ~LinkService();

  // POST gamelink/token (alias gamelink/pin): broadcaster only (403 otherwise). A fresh
  // 6-character PIN of the alphabet A-H J-K M-N P-Z 2-4 6-9, bound to the caller's client,
  // channel and user, valid pin_ttl_ms, single use.
  Result<std::string> CreatePin(const auth::Identity& who);

  // GameLink authenticate {"pin", "client_id", "game_id"?}: 400 "The provided PIN is invalid
  // or expired" unless the PIN is live and was made for client_id. Consumes the PIN.
  Result<GameSession> RedeemPin(std::string_view client_id, std::string_view pin,
                                std::string_view game_id);
  // GameLink authenticate {"refresh", ...}: 400 "Invalid refresh token" unless live, of
  // client_id and not revoked. Rotates: the token given stops working.
  Result<GameSession> Refresh(std::string_view client_id, std::string_view refresh,
                              std::string_view game_id);

  // POST pin / unauthed/pin {"identifier": client_id}: a PIN and a pending token (role
  // broadcaster) that authenticates nothing until ValidatePin binds it.
  struct PendingToken {
    std::string token;
    std::string pin;
  };
  Result<PendingToken> CreatePendingToken(std::string_view client_id);
  // POST validate_pin {"pin"}: broadcaster; binds the pending token of that PIN to the
  // caller's channel (and user). 400 for an unknown or expired PIN.
  Result<void> ValidatePin(const auth::Identity& who, std::string_view pin);
  // POST unauthed/validate_pin {"identifier", "pin"} or {"identifier", "jwt"}: ok while the
  // PIN is live, or once the pending token has been validated; 401 otherwise.
  Result<void> CheckPending(std::string_view client_id, std::string_view pin,
                            std::string_view jwt);
  // GET pin_token_exists: broadcaster; whether a validated game link exists for its channel.
  Result<bool> TokenExists(const auth::Identity& who);
  // DELETE pin: broadcaster; revokes every link (access, pending and refresh tokens) of its
  // (client, channel).
  Result<void> RevokeAll(const auth::Identity& who);

  // For Authenticator: a token with a "gl" claim is usable only while its link is; a pending
  // link is refused until validated, then acts on the validated channel (who is updated).
  Result<void> CheckLink(auth::Identity& who) const;

  const LinkLimits& limits() const { return limits_; }

 private:
  struct Impl;  // the link cache
  struct Link;
  std::string Key(std::string_view client_id, char kind, std::string_view rest) const;
  Result<GameSession> IssueSession(std::string_view client_id, const std::string& link_id,
                                   const Link& link, std::string refresh);
  void Invalidate(std::string_view client_id, std::string_view link_id) const;

  storage::Store& store_;
  const Clock& clock_;
  const auth::Authenticator& auth_;
  LinkLimits limits_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace medkit::core::gamelink
