#include "core/broadcast/messaging_service.h"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

namespace medkit::core::broadcast {

namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

Error Invalid(std::string message, std::string info = {}) {
  return MakeError(Errc::kInvalidArgument, std::move(message), std::move(info));
}

Result<const json::object*> BodyObject(const json::value& body) {
  const auto* object = body.if_object();
  if (object == nullptr) return Invalid("Invalid body", "the body must be a JSON object");
  return object;
}

// An optional string field: nullopt when absent, an error when of another type.
Result<std::optional<std::string>> StringField(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  if (!v->is_string()) return Invalid("Invalid body", std::string(name) + " must be a string");
  return std::optional<std::string>(std::string(v->get_string()));
}

bool CleanText(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Result<std::string> EventName(const json::object& o, size_t max_bytes) {
  auto event = StringField(o, "event");
  if (!event) return std::move(event).error();
  std::string name = event->value_or("default");
  if (name.empty()) name = "default";
  if (name.size() > max_bytes || !CleanText(name)) {
    return Invalid("Invalid event name", "1 to " + std::to_string(max_bytes) +
                                             " printable characters");
  }
  return name;
}

// "broadcast" (the default) or "whisper-<id>".
Result<std::string> Target(const json::object& o) {
  auto target = StringField(o, "target");
  if (!target) return std::move(target).error();
  std::string t = target->value_or("broadcast");
  if (t.empty() || t == "broadcast") return std::string("broadcast");
  if (t.rfind("whisper-", 0) == 0 && t.size() > 8 && t.size() <= 128 && CleanText(t)) return t;
  return Invalid("Invalid target", "target must be \"broadcast\" or \"whisper-<opaque user id>\"");
}

Result<std::string> Data(const json::object& o, size_t max_bytes) {
  const json::value* v = o.if_contains("data");
  std::string text = v == nullptr ? std::string("{}") : json::serialize(*v);
  if (text.size() > max_bytes) {
    return Invalid("message too large", "data is " + std::to_string(text.size()) +
                                            " bytes; the limit is " + std::to_string(max_bytes));
  }
  return text;
}

// The channel a broadcast goes to: the body's user_id (the channel, spec 5.11), which a
// broadcaster may only set to its own channel; else the token's channel.
Result<std::string> Channel(const Identity& who, const json::object& o) {
  auto named = StringField(o, "user_id");
  if (!named) return std::move(named).error();
  std::string channel = named->value_or("");
  if (channel.empty()) channel = who.channel_id;
  if (who.role == Role::kBroadcaster && channel != who.channel_id) {
    return MakeError(Errc::kForbidden, "role is not authorized",
                     "a broadcaster may only broadcast to its own channel");
  }
  if (channel.empty()) return Invalid("channel required", "set user_id to the channel id");
  if (channel.size() > 64 || !CleanText(channel)) return Invalid("Invalid channel id");
  return channel;
}

Error NotAuthorized() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}

}  // namespace

MessagingService::MessagingService(ViewerFanout& fanout, const Clock& clock,
                                   MessagingLimits limits)
    : fanout_(fanout), limits_(limits), per_caller_(clock, limits.per_caller) {}

Result<void> MessagingService::Limit(const Identity& who) {
  std::string key = who.client_id + '\x1f' + std::string(auth::RoleName(who.role)) + '\x1f' +
                    who.channel_id + '\x1f' + who.ViewerKey();
  if (per_caller_.Allow(key)) return {};
  int64_t retry_ms = per_caller_.RetryAfterMs(key);
  return MakeError(Errc::kRateLimited, "Too many messages",
                   "retry in " + std::to_string((retry_ms + 999) / 1000) + " s");
}

Result<void> MessagingService::Send(ViewerEvent event) {
  if (event.data_json.size() > limits_.max_data_bytes) {
    return Invalid("message too large", "data is " + std::to_string(event.data_json.size()) +
                                            " bytes; the limit is " +
                                            std::to_string(limits_.max_data_bytes));
  }
  return fanout_.Publish(event);
}

Result<void> MessagingService::Broadcast(const Identity& who, const json::value& body) {
  if (who.role == Role::kViewer) return NotAuthorized();
  auto o = BodyObject(body);
  if (!o) return std::move(o).error();
  auto target = Target(**o);
  if (!target) return std::move(target).error();
  auto name = EventName(**o, limits_.max_event_bytes);
  if (!name) return std::move(name).error();
  auto channel = Channel(who, **o);
  if (!channel) return std::move(channel).error();
  auto data = Data(**o, limits_.max_data_bytes);
  if (!data) return std::move(data).error();
  if (auto ok = Limit(who); !ok) return ok;
  return fanout_.Publish(ViewerEvent{who.client_id, std::move(*channel), std::move(*target),
                                     std::move(*name), false, std::move(*data), false});
}

Result<void> MessagingService::ExtensionBroadcast(const Identity& who, const json::value& body) {
  bool allowed = who.IsPrivileged() || (who.role == Role::kBroadcaster && who.owner_broadcaster);
  if (!allowed) return NotAuthorized();
  auto o = BodyObject(body);
  if (!o) return std::move(o).error();
  auto target = Target(**o);
  if (!target) return std::move(target).error();
  if (*target != "broadcast") {
    return Invalid("Invalid target", "extension_broadcast goes to every channel; send whispers "
                                     "with broadcast, which names the channel");
  }
  auto name = EventName(**o, limits_.max_event_bytes);
  if (!name) return std::move(name).error();
  auto data = Data(**o, limits_.max_data_bytes);
  if (!data) return std::move(data).error();
  if (auto ok = Limit(who); !ok) return ok;
  return fanout_.Publish(ViewerEvent{who.client_id, "", "broadcast", std::move(*name), false,
                                     std::move(*data), false});
}

Result<void> MessagingService::WhisperSelf(const Identity& who, const json::value& body) {
  auto o = BodyObject(body);
  if (!o) return std::move(o).error();
  if (who.opaque_user_id.empty() || who.channel_id.empty()) {
    return Invalid("user id required", "the token names no viewer or no channel");
  }
  auto name = EventName(**o, limits_.max_event_bytes);
  if (!name) return std::move(name).error();
  auto data = Data(**o, limits_.max_data_bytes);
  if (!data) return std::move(data).error();
  if (auto ok = Limit(who); !ok) return ok;
  return fanout_.Publish(ViewerEvent{who.client_id, who.channel_id,
                                     "whisper-" + who.opaque_user_id, std::move(*name), false,
                                     std::move(*data), false});
}

Result<void> MessagingService::PusherBroadcast(const Identity& who, const json::value& body) {
  if (fanout_.options().stage != auth::Stage::kSandbox) {
    return MakeError(Errc::kNotFound, "Not Found", "pusher_broadcast exists in the sandbox only");
  }
  if (who.role != Role::kBroadcaster && who.role != Role::kAdmin) return NotAuthorized();
  auto o = BodyObject(body);
  if (!o) return std::move(o).error();
  auto event = StringField(**o, "event");
  if (!event) return std::move(event).error();
  if (!*event || (*event)->empty() || (*event)->size() > limits_.max_event_bytes + 128 ||
      !CleanText(**event)) {
    return Invalid("Invalid event name", "event must be \"<env>:<client_id>:<name>\"");
  }
  auto target = Target(**o);
  if (!target) return std::move(target).error();
  auto channel = Channel(who, **o);
  if (!channel) return std::move(channel).error();
  auto data = Data(**o, limits_.max_data_bytes);
  if (!data) return std::move(data).error();
  if (auto ok = Limit(who); !ok) return ok;
  return fanout_.Publish(ViewerEvent{who.client_id, std::move(*channel), std::move(*target),
                                     std::move(**event), true, std::move(*data), false});
}

}  // namespace medkit::core::broadcast
