// PubSubQueue: what the Twitch Extension PubSub transport has yet to post, and when it may.
//
// Messages are queued per destination, the unit of Twitch's rate limit: (client id, channel)
// for "broadcast" and "whisper-<id>" messages (a whisper counts against the channel it is
// routed through) and (client id, global) for extension-wide messages, a separate pool.
//
// Per destination:
//   - Rate: a token bucket of `burst` tokens refilled at `per_minute` tokens a minute, in exact
//     integer arithmetic on the injected clock. Each POST (each part of a message) takes one.
//     The defaults follow what Twitch enforces in practice (spec 6.3; twitchdev/issues#612):
//     a pool of 100 that refills at 1 a second.
//   - Order: one POST in flight at a time, so messages go out in publication order and the
//     parts ("<i,n>" fragments) of one message are posted contiguously and in order.
//   - Coalescing: a queued message that has not started (no part posted or in flight) and whose
//     coalesce_key equals a newly queued message's is removed; the new one goes to the back.
//     What is delivered stays in publication order and the latest state always goes out.
//     Messages with an empty coalesce_key (custom events) are never coalesced.
//   - Bound: at most `queue_limit` custom messages wait; past that the oldest not-started
//     custom message is dropped (counted). State messages are bounded by coalescing (one per
//     key) and are never dropped for room.
//   - Retries: a POST answered 429, 5xx, or not answered (network error, timeout) is retried
//     with exponential backoff (backoff_initial_ms doubling to backoff_max_ms), and no earlier
//     than a 429's Ratelimit-Reset (unix seconds, capped at max_reset_wait_ms); after
//     max_tries attempts the message is dropped. Any other 4xx is retried with the same
//     backoff up to max_rejected_tries attempts, then dropped. A message whose part is dropped
//     is dropped whole (a client cannot join an incomplete set of fragments). After a drop for
//     429/5xx/network errors the next message waits out the backoff; after a 4xx it does not.
//
// Thread-safe: Enqueue is called on publishing threads, NextBatch/OnResult/NextWakeMs on the
// transport's thread; one mutex guards everything and no call blocks on anything else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/broadcast/viewer_message.h"
#include "core/clock.h"

namespace medkit::core::broadcast {

struct PubSubQueueOptions {
  int64_t burst = 100;         // tokens a quiet destination has; at least 1
  int64_t per_minute = 60;     // refill, tokens a minute; at least 1
  size_t queue_limit = 100;    // custom messages waiting per destination; at least 1
  int max_tries = 8;           // 429 / 5xx / network error: attempts before dropping
  int max_rejected_tries = 3;  // other 4xx: attempts before dropping
  int64_t backoff_initial_ms = 1000;
  int64_t backoff_max_ms = 60'000;
  int64_t max_reset_wait_ms = 120'000;  // a Ratelimit-Reset further away is capped to this
};

// One POST to make: part `part` of `message`. `ticket` identifies it to OnResult.
struct PubSubSend {
  uint64_t ticket = 0;
  ViewerMessagePtr message;
  size_t part = 0;
  int attempt = 1;  // 1 for the first try of this part
};

// How a POST ended. status: the HTTP status, 0 when no response came (connect/read/write
// error, timeout). ratelimit_reset_s: the response's Ratelimit-Reset header (unix seconds),
// 0 when absent.
struct PubSubOutcome {
  int status = 0;
  int64_t ratelimit_reset_s = 0;
};

// What OnResult did with the message.
enum class PubSubDisposition {
  kNextPart,  // the part went out; the next part of the message is queued
  kSent,      // the last part went out: the message is delivered
  kRetry,     // the part will be posted again (after a backoff)
  kDropped,   // given up: the message is dropped
  kUnknown,   // no such ticket in flight (already resolved)
};

class PubSubQueue {
 public:
  // clock must outlive the queue. Options are clamped to their minimums.
  PubSubQueue(const Clock& clock, PubSubQueueOptions options);
  PubSubQueue(const PubSubQueue&) = delete;
  PubSubQueue& operator=(const PubSubQueue&) = delete;

  // The destination a message is rate-limited under (exposed for tests and logs).
  static std::string DestinationKey(const ViewerMessage& message);

  // Queues a message (coalescing and bounding as described above).
  void Enqueue(ViewerMessagePtr message);

  // The POSTs that may start now, at most max_sends, each from a different destination,
  // destinations that became ready earliest first. Each takes one token of its destination and
  // stays in flight until OnResult reports its ticket.
  std::vector<PubSubSend> NextBatch(size_t max_sends);

  // Reports how the POST of `ticket` ended: a 2xx is delivered, the rest as described above.
  PubSubDisposition OnResult(uint64_t ticket, const PubSubOutcome& outcome);

  // When NextBatch may next return something that it would not return now (clock ms):
  // <= now if something is ready, kNever if nothing waits (everything queued is in flight,
  // or nothing is queued).
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  int64_t NextWakeMs() const;

  struct Counts {
    uint64_t queued = 0;            // messages accepted by Enqueue
    uint64_t sent = 0;              // messages delivered (every part answered 2xx)
    uint64_t parts_sent = 0;        // POSTs answered 2xx
    uint64_t failed = 0;            // POSTs that failed (non-2xx or no response)
    uint64_t retried = 0;           // failed POSTs that will be tried again
    uint64_t coalesced = 0;         // messages superseded by a newer one with the same key
    uint64_t dropped_overflow = 0;  // custom messages dropped past queue_limit
    uint64_t dropped_failed = 0;    // messages dropped after failing too often
    uint64_t waiting = 0;           // gauge: messages queued now (in flight included)
    uint64_t in_flight = 0;         // gauge: POSTs in flight now
    uint64_t destinations = 0;      // gauge: destinations tracked (idle ones until refilled)
  };
  Counts counts() const;

  // Messages queued (not yet delivered or dropped) for one destination, in order. For tests.
  std::vector<ViewerMessagePtr> QueuedForTest(const std::string& destination) const;

 private:
  struct Entry {
    ViewerMessagePtr message;
    size_t next_part = 0;  // parts before it were delivered
    int tries = 0;         // failed attempts of next_part
  };
  struct Destination {
    std::deque<Entry> queue;
    size_t custom = 0;          // entries with an empty coalesce_key
    int64_t units = 0;          // tokens × 60000
    int64_t units_at_ms = 0;    // when units was computed
    int64_t not_before_ms = 0;  // backoff: no POST before this
    uint64_t in_flight = 0;     // ticket in flight, 0 when none
    bool scheduled = false;     // in ready_
    std::pair<int64_t, uint64_t> ready_key{0, 0};
  };
  using DestMap = std::map<std::string, Destination>;

  int64_t RefilledUnits(const Destination& d, int64_t now_ms) const;
  int64_t EligibleAtMs(const Destination& d, int64_t now_ms) const;
  void Schedule(DestMap::iterator it, int64_t now_ms);  // requires mu_
  void Unschedule(Destination& d);                      // requires mu_
  void Prune(int64_t now_ms);                           // requires mu_
  void Backoff(Destination& d, const Entry& e, const PubSubOutcome& outcome, int64_t now_ms);

  const Clock& clock_;
  PubSubQueueOptions options_;
  int64_t burst_units_;

  mutable std::mutex mu_;
  DestMap destinations_;  // guarded by mu_
  // Destinations with waiting work and nothing in flight, by (eligible time, order).
  std::map<std::pair<int64_t, uint64_t>, DestMap::iterator> ready_;  // guarded by mu_
  std::map<uint64_t, DestMap::iterator> tickets_;                    // guarded by mu_
  uint64_t next_ticket_ = 1;                                         // guarded by mu_
  uint64_t next_order_ = 1;                                          // guarded by mu_
  int64_t last_prune_ms_ = 0;                                        // guarded by mu_
  Counts counts_;  // guarded by mu_ (gauges computed on read)
};

}  // namespace medkit::core::broadcast
