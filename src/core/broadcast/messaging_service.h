// The REST side of viewer messaging (spec 5.11): broadcast, extension_broadcast, whisper_self
// and pusher_broadcast. Each checks the caller's role, validates the body, applies the
// per-caller flood limit and hands one ViewerEvent to the fanout. Thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <cstddef>

#include "core/auth/identity.h"
#include "core/broadcast/rate_limiter.h"
#include "core/broadcast/viewer_fanout.h"
#include "core/result.h"

namespace medkit::core::broadcast {

struct MessagingLimits {
  size_t max_event_bytes = 256;
  size_t max_data_bytes = 256 * 1024;  // serialized data, before compression
  RateLimit per_caller;                // flood limit per calling identity
};

class MessagingService {
 public:
  MessagingService(ViewerFanout& fanout, const Clock& clock, MessagingLimits limits);

  // POST broadcast: {"target": "broadcast"|"whisper-<id>", "event", "user_id": <channel>,
  // "data"}. Broadcaster (own channel only), admin, backend.
  Result<void> Broadcast(const auth::Identity& who, const boost::json::value& body);
  // POST extension_broadcast: {"event", "data"} to every channel. Owner broadcaster, admin,
  // backend. A whisper target is refused (it would have to name a channel).
  Result<void> ExtensionBroadcast(const auth::Identity& who, const boost::json::value& body);
  // POST whisper_self: {"event", "data"} to whisper-<caller's opaque id> on its channel. Any.
  Result<void> WhisperSelf(const auth::Identity& who, const boost::json::value& body);
  // POST pusher_broadcast (sandbox only): {"data", "event" (already prefixed), "target",
  // "user_id": <channel>}; published as given. Broadcaster (own channel), admin.
  Result<void> PusherBroadcast(const auth::Identity& who, const boost::json::value& body);

  // Sends data to viewers on behalf of a game or service (GameLink broadcast): no role check,
  // no flood limit (the caller applies its own), the same size rules.
  Result<void> Send(ViewerEvent event);

 private:
  Result<void> Limit(const auth::Identity& who);

  ViewerFanout& fanout_;
  MessagingLimits limits_;
  RateLimiter per_caller_;
};

}  // namespace medkit::core::broadcast
