// SocketHub: the viewer sockets held by this server, and the ViewerSink that feeds them.
//
// Three kinds of stream, each upgraded from a request on the REST port (see docs/api/events.md):
//   - Pusher protocol (protocol 7) at /app/<key>: what pusher-js, and so MEDKit's listen() in
//     a sandbox page, connects to. Public channels twitch.pubsub.<client_id>.<channel_id> and
//     twitch.pubsub.<client_id>.all; events "broadcast" and "whisper-<id>" carrying
//     {"message": <part>}, exactly as MEDKit's PusherMessenger expects.
//   - Native WebSocket at /v1/e/events: authenticated with a MEDKit token (Authorization
//     header, or ?client_id=&token=); text frames holding the decoded envelope
//     {"event","data"} of every message for the token's channel, every extension-wide message,
//     and the whispers for the token's viewer only.
//   - Server-Sent Events at GET /v1/e/events without an upgrade: the same messages as the
//     native WebSocket, one "data:" record each.
//   - GameLink at /<version>/<client_id> and /<version>/<projection>/<x.y.z>/<client_id>
//     (spec 7.1): one GameLinkConnection per socket; pushes come through Publish().
//
// Every message is framed once per kind on the publishing thread, and the same bytes are
// queued to every socket that should get it. Each socket has a bounded send queue: a reader
// that falls behind by more than queue_bytes is disconnected. Sockets live on the server's
// event-loop threads (one WorkerHub per thread, no locks on the delivery path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/broadcast/viewer_message.h"
#include "core/gamelink/gamelink_service.h"

namespace medkit::core {
class Clock;
namespace auth {
class Authenticator;
}
}  // namespace medkit::core

namespace medkit::http {

struct SocketHubOptions {
  bool pusher = true;         // serve /app/<key>
  bool native_stream = true;  // serve /v1/e/events (WebSocket and SSE)
  size_t queue_bytes = 1024 * 1024;  // per socket: queued, unwritten bytes before disconnect
  int ping_seconds = 30;             // WebSocket ping / SSE comment when otherwise quiet
  int idle_timeout_seconds = 120;    // nothing received (pongs count) this long: closed
  int game_idle_timeout_seconds = 600;  // the same for GameLink sockets (spec 7.1: >= 10 min)
  size_t game_max_message_bytes = 2 * 1024 * 1024;  // a game's request (metadata logos are big)
  size_t max_subscriptions = 64;     // Pusher channels per socket
};

class SocketHub final : public core::broadcast::ViewerSink,
                        public core::gamelink::GamePublisher {
 public:
  // auth and clock must outlive the hub.
  SocketHub(SocketHubOptions options, const core::auth::Authenticator& auth,
            const core::Clock& clock);
  ~SocketHub() override;
  SocketHub(const SocketHub&) = delete;
  SocketHub& operator=(const SocketHub&) = delete;

  // Thread-safe; returns at once (the sockets' threads do the writing).
  void Deliver(const core::broadcast::ViewerMessagePtr& message) override;

  // GameLink: serve game sockets with this protocol (set before the server listens; null:
  // no GameLink). Publish() frames a push once and queues it to every subscribed game socket.
  void SetGameLink(core::gamelink::GameLinkService* service);
  void Publish(const std::string& topic, std::string envelope) override;
  bool Active() const override;

  struct Counts {
    int64_t pusher_sockets = 0;
    int64_t native_sockets = 0;
    int64_t sse_streams = 0;
    int64_t game_sockets = 0;
    uint64_t messages = 0;          // messages delivered to the hub
    uint64_t frames = 0;            // frames queued to sockets (one per socket per part)
    uint64_t slow_disconnects = 0;  // sockets closed for falling behind
    uint64_t protocol_errors = 0;   // sockets closed for a protocol violation
  };
  Counts counts() const;
  // Prometheus text for /metrics.
  void AppendMetrics(std::string& out) const;

  const SocketHubOptions& options() const;

  struct Impl;  // defined in http/ws/hub_internal.h (Asio inside)
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace medkit::http
