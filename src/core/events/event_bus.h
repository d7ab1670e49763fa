// The in-process event bus owned by the core. Services publish what viewers or games must hear
// about (a channel-state write, a vote changing a poll, a json_store write, a datastream post);
// the transports of later issues (Twitch PubSub, the Pusher-protocol socket, GameLink)
// subscribe and deliver. Publish() calls every subscriber synchronously on the publishing
// thread, so a subscriber must be quick (queue the event and return). Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace medkit::core::events {

struct Event {
  std::string client_id;
  std::string channel_id;  // empty: extension-wide (every channel of the extension)
  // Viewer event name without the "<stage>:<client_id>:" envelope prefix, e.g.
  // "channel_state_update", "vote_update:<poll>", "json_store_update:<key>"; or a game-side
  // name such as "datastream".
  std::string name;
  std::string payload_json;  // the event's data, serialized JSON
  int64_t at_ms = 0;
  std::string target;   // viewer target: "" (broadcast) or "whisper-<opaque user id>"
  bool viewers = true;  // delivered to viewers (ViewerFanout)
  bool games = true;    // delivered to games (GameLink)
};

class EventBus {
 public:
  using Handler = std::function<void(const Event&)>;

  // Returns an id for Unsubscribe().
  uint64_t Subscribe(Handler handler);
  void Unsubscribe(uint64_t id);
  void Publish(const Event& event) const;

 private:
  using Handlers = std::vector<std::pair<uint64_t, Handler>>;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;  // guarded by mu_
  // Copy-on-write: Publish() takes a snapshot pointer under the lock and calls outside it.
  std::shared_ptr<const Handlers> handlers_ = std::make_shared<Handlers>();  // guarded by mu_
};

// A subscriber that keeps every event it sees, for tests.
class EventRecorder {
 public:
  explicit EventRecorder(EventBus& bus);
  ~EventRecorder();
  std::vector<Event> events() const;
  // Events whose name is name (in publication order).
  std::vector<Event> Named(const std::string& name) const;

 private:
  EventBus& bus_;
  uint64_t id_;
  mutable std::mutex mu_;
  std::vector<Event> events_;  // guarded by mu_
};

}  // namespace medkit::core::events
