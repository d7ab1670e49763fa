// LinkService: PINs, links, refresh tokens and revocation over the Store.
//
// Keys (one prefix per stage and extension, so a PIN or link of one client is invisible to
// another):
//   gl␟<stage>␟<client>␟p␟<PIN>                 PIN record {"k":"game"|"pending",...}, 5 min
//   gl␟<stage>␟<client>␟l␟<link>                link record {"s":"active"|"pending",...}
//   gl␟<stage>␟<client>␟c␟<channel>␟l␟<link>    channel index of links (for revoke, exists)
//   gl␟<stage>␟<client>␟c␟<channel>␟p␟<PIN>     channel index of unredeemed game PINs
//   gl␟<stage>␟<client>␟r␟<sha256(refresh)>     refresh token -> link id, 365 days
// Single use: a redeem deletes the PIN with ExpectVersion(the version it read), so of two
// concurrent redeems exactly one Apply succeeds. Refresh rotation likewise deletes the old
// token's key under an expectation. Revocation deletes the link records; access, pending and
// refresh tokens all resolve to a link, so they all stop working at once.
#include "core/gamelink/link_service.h"

#include <openssl/rand.h>

#include <boost/json.hpp>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/auth/authenticator.h"
#include "core/auth/jwt.h"
#include "core/kv/json_util.h"

namespace medkit::core::gamelink {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr std::string_view kAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ234679";
constexpr size_t kPinLength = 6;
constexpr size_t kRefreshBytes = 32;
constexpr size_t kCacheCapacity = 1 << 16;
constexpr int kAttempts = 8;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // RAND_bytes fails only without an entropy source; refuse to issue predictable secrets.
    return {};
  }
  return out;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// A fresh PIN: each character drawn uniformly from kAlphabet (rejection sampling).
std::string NewPin() {
  std::string pin;
  while (pin.size() < kPinLength) {
    std::string bytes = RandomBytes(16);
    if (bytes.empty()) return {};
    for (unsigned char c : bytes) {
      if (c >= 240 || pin.size() == kPinLength) continue;  // 240 = 8 * 30
      pin.push_back(kAlphabet[c % kAlphabet.size()]);
    }
  }
  return pin;
}

// The canonical (upper-case) form of a PIN a caller typed, or "" if it cannot be one.
std::string NormalizePin(std::string_view pin) {
  if (pin.size() != kPinLength) return {};
  std::string out;
  for (char c : pin) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (kAlphabet.find(c) == std::string_view::npos) return {};
    out.push_back(c);
  }
  return out;
}

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Error InvalidPin() {
  return MakeError(Errc::kInvalidArgument, "The provided PIN is invalid or expired");
}
Error InvalidRefresh() { return MakeError(Errc::kInvalidArgument, "Invalid refresh token"); }
Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}

Result<void> CheckChannel(const Identity& who) {
  if (who.channel_id.empty()) return MakeError(Errc::kInvalidArgument, "channel id required");
  for (unsigned char c : who.channel_id) {
    if (c < 0x20 || c == 0x7f) {
      return MakeError(Errc::kInvalidArgument, "channel id contains control characters");
    }
  }
  return {};
}

Result<json::object> ParseRecord(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return MakeError(Errc::kInternal, "corrupt game link record");
  return std::move(v.get_object());
}

std::string Field(const json::object& o, std::string_view name) { return kv::IdField(o, name); }

}  // namespace

// A link as stored (the "l" record).
struct LinkService::Link {
  bool active = false;
  std::string channel_id;
  std::string user_id;
  std::string game_id;

  std::string Serialize() const {
    json::object o;
    o["s"] = active ? "active" : "pending";
    o["ch"] = channel_id;
    o["u"] = user_id;
    if (!game_id.empty()) o["g"] = game_id;
    return json::serialize(o);
  }
  static Result<Link> Parse(const std::string& text) {
    auto o = ParseRecord(text);
    if (!o) return std::move(o).error();
    Link link;
    link.active = Field(*o, "s") == "active";
    link.channel_id = Field(*o, "ch");
    link.user_id = Field(*o, "u");
    link.game_id = Field(*o, "g");
    return link;
  }
};

// The link cache: the state of every link a token was recently checked against. Entries are
// dropped (and the generation bumped) by every change this process makes to a link, so a miss
// that read the store before a change cannot insert what it read after it.
struct LinkService::Impl {
  struct Cached {
    bool exists = false;
    Link link;
    int64_t expires_at_ms = 0;  // 0: never (a link that does not exist stays gone)
  };
  mutable std::shared_mutex mu;
  std::unordered_map<std::string, Cached> links;  // guarded by mu
  uint64_t generation = 0;                        // guarded by mu
};

LinkService::LinkService(storage::Store& store, const Clock& clock, const auth::Authenticator& auth,
                         LinkLimits limits)
    : store_(store), clock_(clock), auth_(auth), limits_(limits), impl_(std::make_unique<Impl>()) {}

LinkService::~LinkService() = default;

std::string LinkService::Key(std::string_view client_id, char kind, std::string_view rest) const {
  std::string key = "gl";
  key.push_back(kSep);
  key.append(auth::StageName(auth_.stage())).push_back(kSep);
  key.append(client_id).push_back(kSep);
  key.push_back(kind);
  key.push_back(kSep);
  key.append(rest);
  return key;
}

namespace {
std::string IndexRest(std::string_view channel, char kind, std::string_view id) {
  std::string rest(channel);
  rest.push_back(kSep);
  rest.push_back(kind);
  rest.push_back(kSep);
  rest.append(id);
  return rest;
}
std::string RefreshHash(std::string_view refresh) {
  return Hex(auth::HmacSha256("medkit-gamelink-refresh", refresh));
}
}  // namespace

Result<std::string> LinkService::CreatePin(const Identity& who) {
  if (who.role != Role::kBroadcaster) return Refused();
  if (auto ok = CheckChannel(who); !ok) return std::move(ok).error();
  const int64_t now = clock_.NowMs();
  json::object record;
  record["k"] = "game";
  record["ch"] = who.channel_id;
  record["u"] = who.user_id.empty() ? who.channel_id : who.user_id;
  const std::string text = json::serialize(record);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string pin = NewPin();
    if (pin.empty()) return MakeError(Errc::kInternal, "no randomness for a PIN");
    std::string key = Key(who.client_id, 'p', pin);
    storage::WriteBatch batch;
    batch.ExpectVersion(key, 0);  // a live PIN is never reissued
    batch.Put(key, text, now + limits_.pin_ttl_ms);
    batch.Put(Key(who.client_id, 'c', IndexRest(who.channel_id, 'p', pin)), "",
              now + limits_.pin_ttl_ms);
    auto applied = store_.Apply(batch);
    if (applied) return pin;
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return MakeError(Errc::kUnavailable, "could not allocate a PIN, try again");
}

Result<GameSession> LinkService::IssueSession(std::string_view client_id,
                                              const std::string& link_id, const Link& link,
                                              std::string refresh) {
  auth::MintRequest mint;
  mint.client_id = std::string(client_id);
  mint.role = "broadcaster";
  mint.channel_id = link.channel_id;
  mint.user_id = link.user_id;
  mint.link_id = link_id;
  if (auth_.stage() == auth::Stage::kSandbox) mint.allowed_stage = "sandbox";
  mint.ttl_seconds = limits_.access_ttl_seconds;
  GameSession session;
  session.jwt = auth_.MintWithServerKey(mint);
  session.refresh = std::move(refresh);
  session.client_id = std::string(client_id);
  session.channel_id = link.channel_id;
  session.user_id = link.user_id;
  session.game_id = link.game_id;
  session.twitch_name = link.channel_id;  // no Helix lookup here (spec 12 item 17)
  return session;
}

Result<GameSession> LinkService::RedeemPin(std::string_view client_id, std::string_view pin,
                                           std::string_view game_id) {
  std::string code = NormalizePin(pin);
  if (code.empty() || client_id.empty()) return InvalidPin();
  const std::string pin_key = Key(client_id, 'p', code);
  auto entry = store_.Get(pin_key);
  if (!entry) return std::move(entry).error();
  if (!*entry) return InvalidPin();
  auto record = ParseRecord((*entry)->value);
  if (!record) return std::move(record).error();
  if (Field(*record, "k") != "game") return InvalidPin();

  Link link;
  link.active = true;
  link.channel_id = Field(*record, "ch");
  link.user_id = Field(*record, "u");
  link.game_id = std::string(game_id);
  std::string link_id = Hex(RandomBytes(16));
  std::string refresh = Hex(RandomBytes(kRefreshBytes));
  if (link_id.empty() || refresh.empty()) return MakeError(Errc::kInternal, "no randomness");
  const int64_t expires = clock_.NowMs() + limits_.refresh_ttl_ms;

  storage::WriteBatch batch;
  batch.ExpectVersion(pin_key, (*entry)->version);  // single use: one redeem wins
  batch.Delete(pin_key);
  batch.Delete(Key(client_id, 'c', IndexRest(link.channel_id, 'p', code)));
  batch.Put(Key(client_id, 'l', link_id), link.Serialize(), expires);
  batch.Put(Key(client_id, 'c', IndexRest(link.channel_id, 'l', link_id)), "", expires);
  batch.Put(Key(client_id, 'r', RefreshHash(refresh)), link_id, expires);
  auto applied = store_.Apply(batch);
  if (!applied) {
    if (applied.error().code == Errc::kConflict) return InvalidPin();
    return std::move(applied).error();
  }
  return IssueSession(client_id, link_id, link, std::move(refresh));
}

Result<GameSession> LinkService::Refresh(std::string_view client_id, std::string_view refresh,
                                         std::string_view game_id) {
  if (client_id.empty() || refresh.size() != 2 * kRefreshBytes || !IsHex(refresh)) {
    return InvalidRefresh();
  }
  const std::string refresh_key = Key(client_id, 'r', RefreshHash(refresh));
  auto token = store_.Get(refresh_key);
  if (!token) return std::move(token).error();
  if (!*token) return InvalidRefresh();
  const std::string link_id = (*token)->value;
  const std::string link_key = Key(client_id, 'l', link_id);
  auto entry = store_.Get(link_key);
  if (!entry) return std::move(entry).error();
  if (!*entry) return InvalidRefresh();  // revoked or expired
  auto link = Link::Parse((*entry)->value);
  if (!link) return std::move(link).error();
  if (!link->active) return InvalidRefresh();
  if (!game_id.empty()) link->game_id = std::string(game_id);

  std::string next = Hex(RandomBytes(kRefreshBytes));
  if (next.empty()) return MakeError(Errc::kInternal, "no randomness");
  const int64_t expires = clock_.NowMs() + limits_.refresh_ttl_ms;
  storage::WriteBatch batch;
  batch.ExpectVersion(refresh_key, (*token)->version);  // rotation: the old token works once
  batch.ExpectVersion(link_key, (*entry)->version);     // not revoked meanwhile
  batch.Delete(refresh_key);
  batch.Put(Key(client_id, 'r', RefreshHash(next)), link_id, expires);
  batch.Put(link_key, link->Serialize(), expires);
  batch.Put(Key(client_id, 'c', IndexRest(link->channel_id, 'l', link_id)), "", expires);
  auto applied = store_.Apply(batch);
  if (!applied) {
    if (applied.error().code == Errc::kConflict) return InvalidRefresh();
    return std::move(applied).error();
  }
  Invalidate(client_id, link_id);  // its expiry moved
  return IssueSession(client_id, link_id, *link, std::move(next));
}

Result<LinkService::PendingToken> LinkService::CreatePendingToken(std::string_view client_id) {
  if (client_id.empty()) return MakeError(Errc::kInvalidArgument, "identifier required");
  for (unsigned char c : client_id) {
    if (c <= 0x20 || c == 0x7f) return MakeError(Errc::kInvalidArgument, "invalid identifier");
  }
  if (auth_.stage() == auth::Stage::kProduction && auth_.registry().Find(client_id) == nullptr) {
    return MakeError(Errc::kInvalidArgument, "No such extension found");
  }
  std::string link_id = Hex(RandomBytes(16));
  if (link_id.empty()) return MakeError(Errc::kInternal, "no randomness");
  const int64_t now = clock_.NowMs();
  // The pending link lives as long as its token; validating it does not extend it.
  const int64_t link_expires = now + limits_.access_ttl_seconds * 1000;
  json::object record;
  record["k"] = "pending";
  record["l"] = link_id;
  const std::string text = json::serialize(record);
  Link link;  // pending: no channel yet
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string pin = NewPin();
    if (pin.empty()) return MakeError(Errc::kInternal, "no randomness for a PIN");
    std::string key = Key(client_id, 'p', pin);
    storage::WriteBatch batch;
    batch.ExpectVersion(key, 0);
    batch.Put(key, text, now + limits_.pin_ttl_ms);
    batch.Put(Key(client_id, 'l', link_id), link.Serialize(), link_expires);
    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code != Errc::kConflict) return std::move(applied).error();
      continue;
    }
    auth::MintRequest mint;
    mint.client_id = std::string(client_id);
    mint.role = "broadcaster";
    mint.link_id = link_id;
    if (auth_.stage() == auth::Stage::kSandbox) mint.allowed_stage = "sandbox";
    mint.ttl_seconds = limits_.access_ttl_seconds;
    return PendingToken{auth_.MintWithServerKey(mint), std::move(pin)};
  }
  return MakeError(Errc::kUnavailable, "could not allocate a PIN, try again");
}

Result<void> LinkService::ValidatePin(const Identity& who, std::string_view pin) {
  if (who.role != Role::kBroadcaster) return Refused();
  if (auto ok = CheckChannel(who); !ok) return std::move(ok).error();
  std::string code = NormalizePin(pin);
  if (code.empty()) return InvalidPin();
  const std::string pin_key = Key(who.client_id, 'p', code);
  auto entry = store_.Get(pin_key);
  if (!entry) return std::move(entry).error();
  if (!*entry) return InvalidPin();
  auto record = ParseRecord((*entry)->value);
  if (!record) return std::move(record).error();
  if (Field(*record, "k") != "pending") return InvalidPin();
  const std::string link_id = Field(*record, "l");
  const std::string link_key = Key(who.client_id, 'l', link_id);
  auto link_entry = store_.Get(link_key);
  if (!link_entry) return std::move(link_entry).error();
  if (!*link_entry) return InvalidPin();  // its token expired

  Link link;
  link.active = true;
  link.channel_id = who.channel_id;
  link.user_id = who.user_id.empty() ? who.channel_id : who.user_id;
  const int64_t expires = (*link_entry)->expires_at_ms;
  storage::WriteBatch batch;
  batch.ExpectVersion(pin_key, (*entry)->version);
  batch.ExpectVersion(link_key, (*link_entry)->version);
  batch.Delete(pin_key);
  batch.Put(link_key, link.Serialize(), expires);
  batch.Put(Key(who.client_id, 'c', IndexRest(who.channel_id, 'l', link_id)), "", expires);
  auto applied = store_.Apply(batch);
  if (!applied) {
    if (applied.error().code == Errc::kConflict) return InvalidPin();
    return std::move(applied).error();
  }
  Invalidate(who.client_id, link_id);
  return {};
}

Result<void> LinkService::CheckPending(std::string_view client_id, std::string_view pin,
                                       std::string_view jwt) {
  if (client_id.empty()) return MakeError(Errc::kInvalidArgument, "identifier required");
  const Error refused = MakeError(Errc::kUnauthenticated, "The provided PIN is invalid or expired");
  if (!pin.empty()) {
    std::string code = NormalizePin(pin);
    if (code.empty()) return refused;
    auto entry = store_.Get(Key(client_id, 'p', code));
    if (!entry) return std::move(entry).error();
    if (!*entry) return refused;
    auto record = ParseRecord((*entry)->value);
    if (!record) return std::move(record).error();
    if (Field(*record, "k") != "pending") return refused;
    return {};
  }
  if (jwt.empty()) return MakeError(Errc::kInvalidArgument, "pin or jwt required");
  // Authenticate runs CheckLink: a pending token is refused until validated.
  auto who = auth_.Authenticate(std::string(client_id) + " " + std::string(jwt));
  if (!who) return MakeError(Errc::kUnauthenticated, who.error().message);
  if (who->link_id.empty()) {
    return MakeError(Errc::kUnauthenticated, "not a token issued by POST pin");
  }
  return {};
}

Result<bool> LinkService::TokenExists(const Identity& who) {
  if (who.role != Role::kBroadcaster) return Refused();
  if (auto ok = CheckChannel(who); !ok) return std::move(ok).error();
  std::string prefix = Key(who.client_id, 'c', IndexRest(who.channel_id, 'l', ""));
  auto found = store_.Scan(prefix, "", 1);
  if (!found) return std::move(found).error();
  return !found->empty();
}

Result<void> LinkService::RevokeAll(const Identity& who) {
  if (who.role != Role::kBroadcaster) return Refused();
  if (auto ok = CheckChannel(who); !ok) return std::move(ok).error();
  std::string channel_prefix = Key(who.client_id, 'c', who.channel_id);
  channel_prefix.push_back(kSep);
  std::string after;
  std::vector<std::string> revoked;
  for (;;) {
    auto page = store_.Scan(channel_prefix, after, 256);
    if (!page) return std::move(page).error();
    if (page->empty()) break;
    storage::WriteBatch batch;
    for (const auto& e : *page) {
      std::string_view rest = std::string_view(e.key).substr(channel_prefix.size());
      if (rest.size() < 3 || rest[1] != kSep) continue;
      std::string_view id = rest.substr(2);
      if (rest[0] == 'l') {
        batch.Delete(Key(who.client_id, 'l', id));
        revoked.emplace_back(id);
      } else if (rest[0] == 'p') {
        batch.Delete(Key(who.client_id, 'p', id));
      }
      batch.Delete(e.key);
    }
    after = page->back().key;
    if (auto applied = store_.Apply(batch); !applied) return std::move(applied).error();
    if (page->size() < 256) break;
  }
  for (const auto& id : revoked) Invalidate(who.client_id, id);
  return {};
}

void LinkService::Invalidate(std::string_view client_id, std::string_view link_id) const {
  std::string key(client_id);
  key.push_back(kSep);
  key.append(link_id);
  std::unique_lock lock(impl_->mu);
  impl_->links.erase(key);
  ++impl_->generation;
}

Result<void> LinkService::CheckLink(Identity& who) const {
  if (who.link_id.empty()) return {};
  std::string cache_key = who.client_id;
  cache_key.push_back(kSep);
  cache_key.append(who.link_id);
  const int64_t now = clock_.NowMs();

  Impl::Cached state;
  bool hit = false;
  uint64_t generation = 0;
  {
    std::shared_lock lock(impl_->mu);
    auto it = impl_->links.find(cache_key);
    if (it != impl_->links.end() &&
        (it->second.expires_at_ms == 0 || now < it->second.expires_at_ms)) {
      state = it->second;
      hit = true;
    }
    generation = impl_->generation;
  }
  if (!hit) {
    auto entry = store_.Get(Key(who.client_id, 'l', who.link_id));
    if (!entry) return std::move(entry).error();
    if (*entry) {
      auto link = Link::Parse((*entry)->value);
      if (!link) return std::move(link).error();
      state.exists = true;
      state.link = std::move(*link);
      state.expires_at_ms = (*entry)->expires_at_ms;
    }
    std::unique_lock lock(impl_->mu);
    if (impl_->generation == generation) {
      if (impl_->links.size() >= kCacheCapacity) impl_->links.clear();
      impl_->links.insert_or_assign(std::move(cache_key), state);
    }
  }
  if (!state.exists) return MakeError(Errc::kUnauthenticated, "token has been revoked");
  if (!state.link.active) {
    return MakeError(Errc::kUnauthenticated, "token is not validated yet",
                     "a broadcaster must enter its PIN with validate_pin first");
  }
  const Link& link = state.link;
  if (who.channel_id != link.channel_id) {
    // A pending token validated later: it acts on the channel it was bound to.
    who.channel_id = link.channel_id;
    who.user_id = link.user_id;
    who.opaque_user_id = "U" + link.user_id;
    const auth::ExtensionInfo* ext = auth_.registry().Find(who.client_id);
    who.owner_broadcaster = ext != nullptr && !ext->owner_id.empty() &&
                            (link.channel_id == ext->owner_id || link.user_id == ext->owner_id);
  }
  return {};
}

}  // namespace medkit::core::gamelink
