// Datastream (spec 5.13): viewers (any role) POST a JSON object for their channel's game.
//
// Each post is published on the event bus as Event{client, channel, "datastream",
// {"event": <body>, "timestamp": <unix s>}} for live GameLink subscribers, and appended to a
// bounded, durable per-channel queue in the store so GameLink delivery (next issue) can drain
// it in order after a reconnect:
//   "ds␟<stage>␟<client>␟<channel>␟n"               sequence counter (Store Add)
//   "ds␟<stage>␟<client>␟<channel>␟e␟<seq:020>"     {"event": ..., "timestamp": ...}
// A post takes a sequence number with one Add (atomic, no retries, so concurrent viewers of a
// channel never conflict), then writes its entry and deletes the entry max_events older in a
// second Apply. Entries expire ttl_ms (5 minutes) after their post; the counter lives 2 * ttl_ms
// after the last post so it cannot restart while entries exist. Between the two Applies of a
// concurrent post a reader may briefly see seq k+1 before k: Pending() returns entries by
// sequence, and a drainer should not skip a missing number younger than a moment.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::datastream {

struct DatastreamLimits {
  size_t max_event_bytes = 16 * 1024;  // serialized body
  int64_t max_events = 1000;           // kept per channel
  int64_t ttl_ms = 5LL * 60 * 1000;
};

struct QueuedEvent {
  int64_t seq = 0;
  std::string payload_json;  // {"event": <body>, "timestamp": <unix s>}
};

class DatastreamService {
 public:
  // events may be null (nothing published).
  DatastreamService(storage::Store& store, const Clock& clock, auth::Stage stage,
                    DatastreamLimits limits, events::EventBus* events);

  // POST datastream: body must be a JSON object of at most max_event_bytes; the caller's
  // token must name a channel ("channel id required").
  Result<void> Post(const auth::Identity& who, const boost::json::value& body);

  // Queued events of (client, channel) with seq > after_seq, ascending, at most limit.
  Result<std::vector<QueuedEvent>> Pending(std::string_view client_id, std::string_view channel_id,
                                           int64_t after_seq, size_t limit);

  const DatastreamLimits& limits() const { return limits_; }

 private:
  std::string Prefix(std::string_view client_id, std::string_view channel_id) const;

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  DatastreamLimits limits_;
  events::EventBus* events_;
};

}  // namespace medkit::core::datastream
