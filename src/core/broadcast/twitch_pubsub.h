// Twitch Extension PubSub requests (spec 6.3): one Helix `POST /extensions/pubsub` per
// transported part of a ViewerMessage. Pure functions, no I/O: the HTTP transport
// (http/twitch_pubsub_client.cc) sends what these build.
//
//   Client-Id: <client id>
//   Authorization: Bearer <JWT, HS256 with the extension secret>
//   Content-Type: application/json
//   {"target":["broadcast"],"broadcaster_id":"<channel>","is_global_broadcast":false,
//    "message":"<part>"}                                   (or target ["whisper-<id>"])
//   {"target":["global"],"is_global_broadcast":true,"message":"<part>"}   (global)
//
// JWT claims: exp (now + ttl), user_id (the extension owner), role "external", channel_id (the
// channel, "all" for a global message), pubsub_perms {"send": [<the target>]}.
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/auth/extension_registry.h"
#include "core/broadcast/viewer_message.h"

namespace medkit::core::broadcast {

inline constexpr int64_t kPubSubJwtTtlSeconds = 60;

// The Twitch target of a message: "global" for an extension-wide one, else its target
// ("broadcast" or "whisper-<id>").
std::string PubSubTarget(const ViewerMessage& message);

// The claims of the JWT that authorizes posting message (see above).
boost::json::object PubSubClaims(const ViewerMessage& message, const auth::ExtensionInfo& extension,
                                 int64_t now_seconds, int64_t ttl_seconds = kPubSubJwtTtlSeconds);

// The request body for part `part` of message (part < message.parts.size()).
std::string PubSubBody(const ViewerMessage& message, size_t part);

struct PubSubRequest {
  std::vector<std::pair<std::string, std::string>> headers;  // in the order above
  std::string body;
};

// The whole request for part `part` of message, signed with extension.secret (raw bytes).
PubSubRequest BuildPubSubRequest(const ViewerMessage& message, size_t part,
                                 const auth::ExtensionInfo& extension, int64_t now_seconds);

}  // namespace medkit::core::broadcast
