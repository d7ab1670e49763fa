#include "core/broadcast/twitch_pubsub.h"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include "core/auth/jwt.h"

namespace medkit::core::broadcast {

namespace json = boost::json;

std::string PubSubTarget(const ViewerMessage& message) {
  if (message.global()) return "global";
  return message.target.empty() ? std::string("broadcast") : message.target;
}

json::object PubSubClaims(const ViewerMessage& message, const auth::ExtensionInfo& extension,
                          int64_t now_seconds, int64_t ttl_seconds) {
  json::object claims;
  claims["exp"] = now_seconds + ttl_seconds;
  claims["user_id"] = extension.owner_id;
  claims["role"] = "external";
  claims["channel_id"] = message.global() ? std::string("all") : message.channel_id;
  json::object perms;
  perms["send"] = json::array{json::value(PubSubTarget(message))};
  claims["pubsub_perms"] = std::move(perms);
  return claims;
}

std::string PubSubBody(const ViewerMessage& message, size_t part) {
  json::object body;
  body["target"] = json::array{json::value(PubSubTarget(message))};
  if (message.global()) {
    body["is_global_broadcast"] = true;
  } else {
    body["broadcaster_id"] = message.channel_id;
    body["is_global_broadcast"] = false;
  }
  body["message"] = message.parts.at(part);
  return json::serialize(body);
}

PubSubRequest BuildPubSubRequest(const ViewerMessage& message, size_t part,
                                 const auth::ExtensionInfo& extension, int64_t now_seconds) {
  PubSubRequest request;
  std::string jwt =
      auth::SignHs256(PubSubClaims(message, extension, now_seconds), extension.secret);
  request.headers.emplace_back("Client-Id", extension.client_id);
  request.headers.emplace_back("Authorization", "Bearer " + jwt);
  request.headers.emplace_back("Content-Type", "application/json");
  request.body = PubSubBody(message, part);
  return request;
}

}  // namespace medkit::core::broadcast
