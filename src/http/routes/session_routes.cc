// Session and identity (spec 5.1): POST authtoken (sandbox token minting), GET user_info.
#include <boost/json.hpp>

#include "core/auth/authenticator.h"
#include "core/clock.h"
#include "core/kv/json_util.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {
namespace json = boost::json;

namespace {

core::Result<std::string> AuthToken(const Call& call) {
  if (call.services.auth->stage() != core::auth::Stage::kSandbox) {
    return core::MakeError(core::Errc::kNotFound, "Not Found");
  }
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) return core::MakeError(core::Errc::kInvalidArgument, "Invalid body");
  const json::object& o = body->get_object();
  core::auth::SandboxTokenRequest req;
  req.client_id = core::kv::IdField(o, "app_id");
  if (req.client_id.empty()) req.client_id = core::kv::IdField(o, "extension_id");
  req.channel_id = core::kv::IdField(o, "channel_id");
  req.role = core::kv::IdField(o, "role");
  if (req.role.empty()) req.role = std::string(call.request.Query("role").value_or(""));
  req.user_id = core::kv::IdField(o, "user_id");
  if (auto it = o.find("user_ids"); it != o.end()) {
    if (!it->value().is_array()) {
      return core::MakeError(core::Errc::kInvalidArgument, "Invalid body", "user_ids is not a list");
    }
    for (const auto& u : it->value().get_array()) {
      if (u.is_string()) req.user_ids.emplace_back(u.get_string());
    }
    if (req.user_ids.size() > 1000) {
      return core::MakeError(core::Errc::kInvalidArgument, "Too many ids specified");
    }
  }
  auto tokens = call.services.auth->MintSandboxTokens(req);
  if (!tokens) return std::move(tokens).error();
  json::object out;
  if (tokens->size() == 1) {
    out["token"] = tokens->front();
  } else {
    json::array list;
    for (auto& t : *tokens) list.emplace_back(std::move(t));
    out["tokens"] = std::move(list);
  }
  return json::serialize(out);
}

// The caller's address with the last IPv4 octet (or the last IPv6 group) zeroed, as the hosted
// service does (GL-IT asserts a.b.c.0).
std::string MaskedIp(std::string ip) {
  if (ip.rfind("::ffff:", 0) == 0) ip = ip.substr(7);
  size_t dot = ip.rfind('.');
  if (dot != std::string::npos) return ip.substr(0, dot) + ".0";
  size_t colon = ip.rfind(':');
  if (colon != std::string::npos) return ip.substr(0, colon) + ":0";
  return ip;
}

core::Result<std::string> UserInfo(const Call& call) {
  json::object out;
  out["ip_address"] = MaskedIp(call.request.remote_ip);
  out["registered"] = false;
  out["visualization_id"] = "";
  out["server_time"] = call.services.clock->NowMs();
  return json::serialize(out);
}

}  // namespace

void RegisterSessionRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kPost, p + "authtoken", Auth::kNone, AuthToken);
  router.Add(Method::kGet, p + "user_info", Auth::kRequired, UserInfo);
}

}  // namespace medkit::http
