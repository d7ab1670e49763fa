// Game/PIN linking (spec 5.2): gamelink/token (alias gamelink/pin), the legacy pin /
// unauthed/pin, validate_pin / unauthed/validate_pin, pin_token_exists and DELETE pin. Parses,
// calls LinkService, renders.
#include <boost/json.hpp>

#include "core/gamelink/link_service.h"
#include "core/kv/json_util.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {
namespace json = boost::json;

namespace {

// The body as an object ("Invalid body" otherwise).
core::Result<json::object> ObjectBody(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) {
    return core::MakeError(core::Errc::kInvalidArgument, "Invalid body", "expected a JSON object");
  }
  return std::move(body->get_object());
}

core::Result<std::string> NewPin(const Call& call, bool both_names) {
  // spec 5.2 [N]: 400 "Bad request" when the Authorization header is over 1,024 characters.
  if (call.request.authorization.size() > call.services.links->limits().max_authorization_bytes) {
    return core::MakeError(
        core::Errc::kInvalidArgument, "Bad request",
        "Authorization header longer than " +
            std::to_string(call.services.links->limits().max_authorization_bytes) + " characters");
  }
  // The body ({} or "{}") carries nothing; it is not required.
  auto pin = call.services.links->CreatePin(call.who());
  if (!pin) return std::move(pin).error();
  json::object out;
  if (both_names) out["pin"] = *pin;
  out["token"] = *pin;
  return json::serialize(out);
}

core::Result<std::string> GameLinkToken(const Call& call) { return NewPin(call, false); }
core::Result<std::string> GameLinkPin(const Call& call) { return NewPin(call, true); }

core::Result<std::string> PendingPin(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  auto pending = call.services.links->CreatePendingToken(core::kv::IdField(*body, "identifier"));
  if (!pending) return std::move(pending).error();
  json::object out;
  out["token"] = pending->token;
  out["pin"] = pending->pin;
  return json::serialize(out);
}

core::Result<std::string> ValidatePin(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  if (auto done = call.services.links->ValidatePin(call.who(), core::kv::IdField(*body, "pin"));
      !done) {
    return std::move(done).error();
  }
  return std::string("{}");
}

core::Result<std::string> UnauthedValidatePin(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  if (auto ok = call.services.links->CheckPending(core::kv::IdField(*body, "identifier"),
                                                  core::kv::IdField(*body, "pin"),
                                                  core::kv::IdField(*body, "jwt"));
      !ok) {
    return std::move(ok).error();
  }
  return std::string("{}");
}

core::Result<std::string> PinTokenExists(const Call& call) {
  auto exists = call.services.links->TokenExists(call.who());
  if (!exists) return std::move(exists).error();
  return std::string(*exists ? R"({"exists":true})" : R"({"exists":false})");
}

core::Result<std::string> RevokePins(const Call& call) {
  if (auto done = call.services.links->RevokeAll(call.who()); !done) {
    return std::move(done).error();
  }
  return std::string("{}");
}

}  // namespace

void RegisterLinkRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kPost, p + "gamelink/token", Auth::kRequired, GameLinkToken);
  router.Add(Method::kPost, p + "gamelink/pin", Auth::kRequired, GameLinkPin);
  router.Add(Method::kPost, p + "pin", Auth::kNone, PendingPin);
  router.Add(Method::kPost, p + "unauthed/pin", Auth::kNone, PendingPin);
  router.Add(Method::kPost, p + "validate_pin", Auth::kRequired, ValidatePin);
  router.Add(Method::kPost, p + "unauthed/validate_pin", Auth::kNone, UnauthedValidatePin);
  router.Add(Method::kGet, p + "pin_token_exists", Auth::kRequired, PinTokenExists);
  router.Add(Method::kDelete, p + "pin", Auth::kRequired, RevokePins);
}

}  // namespace medkit::http
