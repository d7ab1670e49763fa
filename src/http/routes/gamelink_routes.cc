// REST hooks of GameLink: POST matchmaking/invite (spec 12.21: matchmaking invites come from an
// admin/test hook), which pushes a matchmaking update to the channel's subscribed games.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/gamelink/gamelink_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

core::Result<std::string> PostInvite(const Call& call) {
  const auto& who = call.who();
  if (who.role == core::auth::Role::kViewer) {
    return core::MakeError(core::Errc::kForbidden,
                           "The JWT role is not allowed to perform this operation.");
  }
  if (call.services.gamelink == nullptr) {
    return core::MakeError(core::Errc::kNotFound, "Not Found", "GameLink is off");
  }
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  std::string channel = who.channel_id;
  if (const auto* o = body->if_object()) {
    if (const auto* c = o->if_contains("channel_id"); c && c->is_string() && who.IsPrivileged()) {
      channel = std::string(c->get_string());
    }
  }
  if (channel.empty()) {
    return core::MakeError(core::Errc::kInvalidArgument, "channel required",
                           "set channel_id (admin, backend) or use a token with a channel");
  }
  auto sent = call.services.gamelink->Invite(who.client_id, channel, *body);
  if (!sent) return std::move(sent).error();
  return std::string("{}");
}

}  // namespace

void RegisterGameLinkRoutes(Router& router) {
  router.Add(Method::kPost, std::string(kApiPrefix) + "matchmaking/invite", Auth::kRequired,
             PostInvite);
}

}  // namespace medkit::http
