// Viewer messaging (spec 5.11): broadcast, extension_broadcast, whisper_self, pusher_broadcast.
// Each handler parses the body, calls one MessagingService function, and renders {}.
#include <boost/json/value.hpp>

#include "core/broadcast/messaging_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

using Send = core::Result<void> (core::broadcast::MessagingService::*)(
    const core::auth::Identity&, const boost::json::value&);

Handler Messaging(Send send) {
  return [send](const Call& call) -> core::Result<std::string> {
    auto body = call.JsonBody();
    if (!body) return std::move(body).error();
    auto sent = (call.services.messaging->*send)(call.who(), *body);
    if (!sent) return std::move(sent).error();
    return std::string("{}");
  };
}

}  // namespace

void RegisterMessagingRoutes(Router& router) {
  using core::broadcast::MessagingService;
  const std::string p = kApiPrefix;
  auto broadcast = Messaging(&MessagingService::Broadcast);
  router.Add(Method::kPost, p + "broadcast", Auth::kRequired, broadcast);
  // The DOCS page says GET; MEDKit sends POST. Both carry the body (spec 5.11).
  router.Add(Method::kGet, p + "broadcast", Auth::kRequired, broadcast);
  router.Add(Method::kPost, p + "extension_broadcast", Auth::kRequired,
             Messaging(&MessagingService::ExtensionBroadcast));
  router.Alias(p + "broadcast_extension", p + "extension_broadcast");
  router.Add(Method::kPost, p + "whisper_self", Auth::kRequired,
             Messaging(&MessagingService::WhisperSelf));
  router.Add(Method::kPost, p + "pusher_broadcast", Auth::kRequired,
             Messaging(&MessagingService::PusherBroadcast));
}

}  // namespace medkit::http
