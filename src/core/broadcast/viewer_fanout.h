// ViewerFanout: the one place where viewer messages are made. It turns what the core publishes
// on the EventBus (channel_state_update, vote_update:<poll>, json_store_update:<key>) and what
// REST and GameLink callers broadcast into ViewerMessages (envelope built and encoded once)
// and hands each to every transport (ViewerSink): the Twitch PubSub poster, the sockets of the
// Pusher-protocol endpoint, the native viewer stream.
//
// vote_update:<poll> is throttled per (client, channel, poll): the first update of a quiet
// poll goes out at once, later ones at most once per vote_update_interval_ms, and the last
// one is always sent (Tick() sends what a window held back). Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/auth/identity.h"
#include "core/broadcast/viewer_message.h"
#include "core/clock.h"
#include "core/result.h"

namespace medkit::core::events {
class EventBus;
struct Event;
}  // namespace medkit::core::events

namespace medkit::core::broadcast {

struct FanoutOptions {
  auth::Stage stage = auth::Stage::kSandbox;
  int64_t vote_update_interval_ms = 5000;
  EncodeLimits limits;
};

// What a caller asks to send.
struct ViewerEvent {
  std::string client_id;
  std::string channel_id;  // empty: every channel of the extension (global)
  std::string target;      // "broadcast" or "whisper-<id>"; empty means "broadcast"
  std::string name;        // unprefixed event name ("start_poll")
  bool prefixed = false;   // name already is "<env>:<client_id>:<event>" (pusher_broadcast)
  std::string data_json;   // serialized JSON
  bool coalesce = false;   // a state event: a newer one supersedes an undelivered older one
};

class ViewerFanout {
 public:
  // bus may be null (no server-generated events).
  ViewerFanout(events::EventBus* bus, const Clock& clock, FanoutOptions options);
  ~ViewerFanout();
  ViewerFanout(const ViewerFanout&) = delete;
  ViewerFanout& operator=(const ViewerFanout&) = delete;

  // Sinks are added during wiring, before any event flows; not removed.
  void AddSink(ViewerSink* sink);

  // Encodes and delivers one message to every sink. Fails (nothing delivered) when the
  // message is too large to encode within the limits.
  Result<void> Publish(const ViewerEvent& event);

  // Sends the throttled vote updates whose window has passed. Call a few times a second.
  void Tick();

  // "<stage>:" prefix of every event name ("sandbox" / "production").
  const std::string& stage_name() const { return stage_name_; }
  const FanoutOptions& options() const { return options_; }

  struct Counts {
    uint64_t published = 0;  // messages delivered to the sinks
    uint64_t throttled = 0;  // vote updates held back (superseded or sent later by Tick)
    uint64_t refused = 0;    // too large
  };
  Counts counts() const;

 private:
  void OnBusEvent(const events::Event& event);
  Result<void> Deliver(const ViewerEvent& event, int64_t now_ms);

  struct Throttle {
    int64_t last_sent_ms = 0;
    std::optional<ViewerEvent> pending;
  };

  events::EventBus* bus_;
  const Clock& clock_;
  FanoutOptions options_;
  std::string stage_name_;
  uint64_t subscription_ = 0;
  std::vector<ViewerSink*> sinks_;

  mutable std::mutex mu_;
  uint64_t next_seq_ = 1;                    // guarded by mu_
  std::map<std::string, Throttle> votes_;    // guarded by mu_; key client|channel|name
  Counts counts_;                            // guarded by mu_
};

}  // namespace medkit::core::broadcast
