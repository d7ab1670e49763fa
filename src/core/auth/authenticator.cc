#include "core/auth/authenticator.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <boost/json.hpp>
#include <random>
#include <unordered_map>

#include "core/auth/jwt.h"
#include "core/kv/json_util.h"

namespace medkit::core::auth {
namespace json = boost::json;

namespace {

std::atomic<uint64_t> next_instance_id{1};

// Two generations: new entries go to `current`; when it holds half the capacity it becomes
// `previous` (the old previous is dropped). A hit in `previous` moves the entry back to
// `current`, so tokens in steady use are never evicted (an approximate LRU at O(1) per call).
struct TokenCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, Identity> current, previous;

  const Identity* Find(const std::string& key) {
    if (auto it = current.find(key); it != current.end()) return &it->second;
    auto old = previous.find(key);
    if (old == previous.end()) return nullptr;
    auto node = previous.extract(old);
    return &current.insert(std::move(node)).position->second;
  }
  void Erase(const std::string& key) {
    current.erase(key);
    previous.erase(key);
  }
  void Insert(std::string key, const Identity& identity, size_t capacity) {
    if (current.size() >= std::max<size_t>(1, capacity / 2)) {
      previous = std::move(current);
      current = {};
    }
    current.insert_or_assign(std::move(key), identity);
  }
};

TokenCache& ThreadTokenCache(uint64_t owner) {
  thread_local TokenCache cache;
  if (cache.owner != owner) {
    cache.current.clear();
    cache.previous.clear();
    cache.owner = owner;
  }
  return cache;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

Role RoleFromClaim(std::string_view role) {
  if (role == "broadcaster") return Role::kBroadcaster;
  if (role == "admin") return Role::kAdmin;
  if (role == "backend" || role == "external") return Role::kBackend;
  return Role::kViewer;  // viewer, moderator, and anything unknown
}

// exp in seconds, clamped to [0, INT64_MAX / 2] so arithmetic on it cannot overflow.
int64_t ClaimExp(const json::object& claims) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 2;
  auto it = claims.find("exp");
  if (it == claims.end()) return 0;
  const json::value& v = it->value();
  if (v.is_int64()) return std::clamp<int64_t>(v.get_int64(), 0, kMax);
  if (v.is_uint64()) return v.get_uint64() > static_cast<uint64_t>(kMax) ? kMax
                                                                          : static_cast<int64_t>(v.get_uint64());
  if (v.is_double()) {
    double d = v.get_double();
    if (!(d > 0)) return 0;
    return d >= static_cast<double>(kMax) ? kMax : static_cast<int64_t>(d);
  }
  return 0;
}

Error Unauthenticated(std::string message) {
  return MakeError(Errc::kUnauthenticated, std::move(message));
}

}  // namespace

Authenticator::Authenticator(AuthOptions options, const ExtensionRegistry& registry,
                             const Clock& clock)
    : options_(std::move(options)),
      registry_(registry),
      clock_(clock),
      instance_id_(next_instance_id.fetch_add(1)) {}

Result<Identity> Authenticator::Authenticate(std::string_view authorization) const {
  std::string_view header = Trim(authorization);
  if (header.size() >= 2 && header.front() == '"' && header.back() == '"') {
    header = Trim(header.substr(1, header.size() - 2));
  }
  if (header.empty()) return Unauthenticated("missing Authorization header");

  TokenCache& cache = ThreadTokenCache(instance_id_);
  std::string key(header);
  if (const Identity* hit = cache.Find(key)) {
    if (clock_.NowSeconds() - options_.leeway_seconds <= hit->expires_at_s) {
      if (hit->link_id.empty()) return *hit;
      Identity linked = *hit;
      if (auto ok = CheckLink(linked); !ok) return std::move(ok).error();
      return linked;
    }
    cache.Erase(key);
  }

  std::string_view rest = header;
  auto split = [](std::string_view& s) {
    size_t end = s.find_first_of(" \t");
    std::string_view word = s.substr(0, end);
    s = end == std::string_view::npos ? std::string_view{} : Trim(s.substr(end));
    return word;
  };
  std::string_view client_id = split(rest);
  if (EqualsNoCase(client_id, "bearer")) client_id = split(rest);
  std::string_view token = rest;
  if (token.size() > 7 && EqualsNoCase(token.substr(0, 7), "bearer ")) token = Trim(token.substr(7));
  if (client_id.empty() || token.empty() || token.find_first_of(" \t") != std::string_view::npos) {
    return Unauthenticated("malformed Authorization header: expected '<client_id> <jwt>'");
  }

  auto identity = Verify(client_id, token);
  if (!identity) return identity;
  if (identity->link_id.empty()) {
    cache.Insert(std::move(key), *identity, options_.token_cache_per_thread);
    if (on_verified_) on_verified_(*identity);
    return identity;
  }
  // A link token: the cache keeps the claims as verified; the link is checked on every use.
  Identity linked = *identity;
  if (auto ok = CheckLink(linked); !ok) return std::move(ok).error();
  cache.Insert(std::move(key), *identity, options_.token_cache_per_thread);
  if (on_verified_) on_verified_(linked);
  return linked;
}

Result<void> Authenticator::CheckLink(Identity& identity) const {
  if (!link_check_) return Unauthenticated("game link tokens are not accepted by this server");
  return link_check_(identity);
}

Result<Identity> Authenticator::Verify(std::string_view client_id, std::string_view token) const {
  const ExtensionInfo* extension = registry_.Find(client_id);
  std::string_view keys[2];
  size_t key_count = 0;
  if (extension != nullptr) keys[key_count++] = extension->secret;
  if (options_.stage == Stage::kProduction && extension == nullptr) {
    return Unauthenticated("No such extension found");
  }
  // Spec 4.2: the extension's secret first, then the server's own key (its PIN, GameLink and
  // sandbox tokens).
  if (!options_.server_key.empty()) keys[key_count++] = options_.server_key;

  VerifyOptions verify{clock_.NowSeconds(), options_.leeway_seconds};
  auto claims = VerifyHs256(token, std::span<const std::string_view>(keys, key_count), verify);
  if (!claims) return std::move(claims).error();

  Identity id;
  id.client_id = std::string(client_id);
  id.allowed_stage = kv::IdField(*claims, "allowed_stage");
  if (claims->contains("allowed_stage")) {
    bool ok = options_.stage == Stage::kSandbox &&
              (id.allowed_stage == "sandbox" || id.allowed_stage == "testing");
    if (!ok) {
      return MakeError(Errc::kForbidden, "User was unauthorized to access this resource",
                       "Allowed stage mismatch");
    }
  }
  std::string bound_extension = kv::IdField(*claims, "extension_id");
  if (!bound_extension.empty() && bound_extension != client_id) {
    return Unauthenticated("token was not issued for this extension");
  }
  id.role_claim = kv::IdField(*claims, "role");
  id.role = RoleFromClaim(id.role_claim);
  id.channel_id = kv::IdField(*claims, "channel_id");
  id.opaque_user_id = kv::IdField(*claims, "opaque_user_id");
  id.user_id = kv::IdField(*claims, "user_id");
  id.expires_at_s = ClaimExp(*claims);
  if (auto gl = claims->find("gl"); gl != claims->end()) {
    // Only the server's own key signs link tokens; a "gl" claim must name a link.
    id.link_id = kv::IdField(*claims, "gl");
    if (id.link_id.empty()) return Unauthenticated("malformed game link claim");
  }
  if (id.role == Role::kAdmin) {
    id.validated_admin = options_.stage == Stage::kSandbox ||
                         (extension != nullptr && extension->IsAdministrator(id.user_id));
  }
  if (id.role == Role::kBroadcaster && extension != nullptr && !extension->owner_id.empty()) {
    id.owner_broadcaster =
        id.channel_id == extension->owner_id || id.user_id == extension->owner_id;
  }
  return id;
}

Result<std::vector<std::string>> Authenticator::MintSandboxTokens(
    const SandboxTokenRequest& request) const {
  if (options_.stage != Stage::kSandbox) return MakeError(Errc::kNotFound, "Not Found");
  if (request.client_id.empty()) {
    return MakeError(Errc::kInvalidArgument, "No such extension found");
  }
  std::vector<std::string> users;
  if (!request.user_id.empty()) users.push_back(request.user_id);
  for (const auto& u : request.user_ids) users.push_back(u);
  if (users.empty()) users.emplace_back();  // one anonymous token

  std::vector<std::string> tokens;
  tokens.reserve(users.size());
  for (const auto& user : users) {
    MintRequest mint;
    mint.client_id = request.client_id;
    mint.role = request.role.empty() ? "viewer" : request.role;
    mint.channel_id = request.channel_id;
    // spec 5.1: a broadcaster's user id is its channel id.
    mint.user_id = mint.role == "broadcaster" ? request.channel_id : user;
    mint.allowed_stage = "sandbox";
    mint.ttl_seconds = options_.sandbox_token_ttl_seconds;
    tokens.push_back(Mint(mint, options_.server_key));
  }
  return tokens;
}

std::string Authenticator::Mint(const MintRequest& request, std::string_view key) const {
  int64_t now = clock_.NowSeconds();
  json::object claims;
  claims["exp"] = now + request.ttl_seconds;
  claims["iat"] = now;
  claims["iss"] = "muxy";
  claims["aud"] = "muxy.io";
  claims["sub"] = "extensions";
  if (!request.allowed_stage.empty()) claims["allowed_stage"] = request.allowed_stage;
  claims["channel_id"] = request.channel_id;
  std::string opaque = request.opaque_user_id;
  if (opaque.empty()) {
    if (!request.user_id.empty()) {
      opaque = "U" + request.user_id;
    } else {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      opaque = "A" + std::to_string(rng() % 1'000'000'000'000ULL);
    }
  }
  claims["opaque_user_id"] = opaque;
  if (!request.user_id.empty()) claims["user_id"] = request.user_id;
  claims["role"] = request.role;
  claims["extension_id"] = request.client_id;
  if (!request.link_id.empty()) claims["gl"] = request.link_id;
  return SignHs256(claims, key);
}

}  // namespace medkit::core::auth
