#include "core/broadcast/pubsub_queue.h"

#include <algorithm>

namespace medkit::core::broadcast {

namespace {

constexpr int64_t kUnitsPerToken = 60'000;  // one token, in (tokens a minute × ms)
constexpr int64_t kPruneEveryMs = 10'000;

PubSubQueueOptions Clamped(PubSubQueueOptions o) {
  o.burst = std::clamp<int64_t>(o.burst, 1, 1'000'000);
  o.per_minute = std::clamp<int64_t>(o.per_minute, 1, 60'000'000);
  o.queue_limit = std::max<size_t>(o.queue_limit, 1);
  o.max_tries = std::max(o.max_tries, 1);
  o.max_rejected_tries = std::max(o.max_rejected_tries, 1);
  o.backoff_initial_ms = std::max<int64_t>(o.backoff_initial_ms, 1);
  o.backoff_max_ms = std::max(o.backoff_max_ms, o.backoff_initial_ms);
  o.max_reset_wait_ms = std::max<int64_t>(o.max_reset_wait_ms, 0);
  return o;
}

bool Retryable(int status) {
  return status == 0 || status == 408 || status == 429 || status >= 500;
}

}  // namespace

PubSubQueue::PubSubQueue(const Clock& clock, PubSubQueueOptions options)
    : clock_(clock), options_(Clamped(options)), burst_units_(options_.burst * kUnitsPerToken) {}

std::string PubSubQueue::DestinationKey(const ViewerMessage& m) {
  std::string key = m.client_id;
  key.push_back('\x1f');
  if (m.global()) {
    key.push_back('g');
  } else {
    key.append("c:").append(m.channel_id);
  }
  return key;
}

int64_t PubSubQueue::RefilledUnits(const Destination& d, int64_t now_ms) const {
  int64_t elapsed = now_ms - d.units_at_ms;
  if (elapsed <= 0) return d.units;
  int64_t missing = burst_units_ - d.units;
  if (missing <= 0) return burst_units_;
  // Compared before multiplying, so a clock jump cannot overflow.
  if (elapsed >= missing / options_.per_minute + 1) return burst_units_;
  return std::min(burst_units_, d.units + elapsed * options_.per_minute);
}

int64_t PubSubQueue::EligibleAtMs(const Destination& d, int64_t now_ms) const {
  int64_t units = RefilledUnits(d, now_ms);
  int64_t at = now_ms;
  if (units < kUnitsPerToken) {
    at = now_ms + (kUnitsPerToken - units + options_.per_minute - 1) / options_.per_minute;
  }
  return std::max(at, d.not_before_ms);
}

void PubSubQueue::Schedule(DestMap::iterator it, int64_t now_ms) {
  Destination& d = it->second;
  if (d.scheduled || d.in_flight != 0 || d.queue.empty()) return;
  d.ready_key = {EligibleAtMs(d, now_ms), next_order_++};
  ready_.emplace(d.ready_key, it);
  d.scheduled = true;
}

void PubSubQueue::Unschedule(Destination& d) {
  if (!d.scheduled) return;
  ready_.erase(d.ready_key);
  d.scheduled = false;
}

void PubSubQueue::Prune(int64_t now_ms) {
  if (now_ms - last_prune_ms_ < kPruneEveryMs && destinations_.size() < 100'000) return;
  last_prune_ms_ = now_ms;
  for (auto it = destinations_.begin(); it != destinations_.end();) {
    const Destination& d = it->second;
    if (d.queue.empty() && d.in_flight == 0 && !d.scheduled && d.not_before_ms <= now_ms &&
        RefilledUnits(d, now_ms) >= burst_units_) {
      it = destinations_.erase(it);  // idle and full again: as good as new
    } else {
      ++it;
    }
  }
}

void PubSubQueue::Enqueue(ViewerMessagePtr message) {
  if (!message) return;
  int64_t now = clock_.NowMs();
  std::lock_guard lock(mu_);
  Prune(now);
  ++counts_.queued;
  if (message->parts.empty()) {  // nothing to transport
    ++counts_.sent;
    return;
  }
  auto [it, inserted] = destinations_.try_emplace(DestinationKey(*message));
  Destination& d = it->second;
  if (inserted) {
    d.units = burst_units_;
    d.units_at_ms = now;
  }
  auto started = [&d](size_t i) {
    return i == 0 && (d.in_flight != 0 || d.queue[0].next_part > 0);
  };
  const bool custom = message->coalesce_key.empty();
  if (!custom) {
    for (size_t i = 0; i < d.queue.size(); ++i) {
      if (!started(i) && d.queue[i].message->coalesce_key == message->coalesce_key) {
        d.queue.erase(d.queue.begin() + static_cast<std::ptrdiff_t>(i));
        ++counts_.coalesced;
        break;  // there is never more than one not-started message per key
      }
    }
  }
  d.queue.push_back(Entry{std::move(message)});
  if (custom) ++d.custom;
  // The bound counts custom messages that have not started; the one being posted is past it.
  size_t waiting_custom = d.custom;
  if (started(0) && d.queue[0].message->coalesce_key.empty()) --waiting_custom;
  if (custom && waiting_custom > options_.queue_limit) {
    for (size_t i = 0; i < d.queue.size(); ++i) {
      if (!started(i) && d.queue[i].message->coalesce_key.empty()) {
        d.queue.erase(d.queue.begin() + static_cast<std::ptrdiff_t>(i));
        --d.custom;
        ++counts_.dropped_overflow;
        break;
      }
    }
  }
  Schedule(it, now);
}

std::vector<PubSubSend> PubSubQueue::NextBatch(size_t max_sends) {
  int64_t now = clock_.NowMs();
  std::vector<PubSubSend> out;
  std::lock_guard lock(mu_);
  Prune(now);
  while (out.size() < max_sends && !ready_.empty() && ready_.begin()->first.first <= now) {
    DestMap::iterator it = ready_.begin()->second;
    Destination& d = it->second;
    Unschedule(d);
    if (d.queue.empty() || d.in_flight != 0) continue;  // not expected; nothing to do
    int64_t units = RefilledUnits(d, now);
    if (units < kUnitsPerToken) {  // not expected: eligibility is computed exactly
      d.not_before_ms = std::max(d.not_before_ms, now + 1);  // never spin on it
      Schedule(it, now);
      continue;
    }
    d.units = units - kUnitsPerToken;
    d.units_at_ms = now;
    uint64_t ticket = next_ticket_++;
    d.in_flight = ticket;
    tickets_.emplace(ticket, it);
    const Entry& e = d.queue.front();
    out.push_back(PubSubSend{ticket, e.message, e.next_part, e.tries + 1});
  }
  return out;
}

void PubSubQueue::Backoff(Destination& d, const Entry& e, const PubSubOutcome& outcome,
                          int64_t now_ms) {
  if (outcome.status == 429) {
    // Twitch says the bucket is empty: so is ours, and nothing goes out before its reset.
    d.units = 0;
    d.units_at_ms = now_ms;
    int64_t reset_ms = outcome.ratelimit_reset_s * 1000;
    if (outcome.ratelimit_reset_s > 0 && reset_ms > now_ms) {
      d.not_before_ms = std::min(reset_ms, now_ms + options_.max_reset_wait_ms);
      return;
    }
  }
  int64_t delay = options_.backoff_initial_ms;
  for (int i = 1; i < e.tries && delay < options_.backoff_max_ms; ++i) delay *= 2;
  d.not_before_ms = now_ms + std::min(delay, options_.backoff_max_ms);
}

PubSubDisposition PubSubQueue::OnResult(uint64_t ticket, const PubSubOutcome& outcome) {
  int64_t now = clock_.NowMs();
  std::lock_guard lock(mu_);
  auto t = tickets_.find(ticket);
  if (t == tickets_.end()) return PubSubDisposition::kUnknown;
  DestMap::iterator it = t->second;
  tickets_.erase(t);
  Destination& d = it->second;
  d.in_flight = 0;
  if (d.queue.empty()) return PubSubDisposition::kUnknown;  // not expected: started entries stay
  Entry& e = d.queue.front();
  auto pop = [&d] {
    if (d.queue.front().message->coalesce_key.empty()) --d.custom;
    d.queue.pop_front();
  };
  PubSubDisposition result;
  if (outcome.status >= 200 && outcome.status < 300) {
    ++counts_.parts_sent;
    e.tries = 0;
    if (++e.next_part >= e.message->parts.size()) {
      pop();
      ++counts_.sent;
      result = PubSubDisposition::kSent;
    } else {
      result = PubSubDisposition::kNextPart;
    }
  } else {
    ++counts_.failed;
    ++e.tries;
    bool retryable = Retryable(outcome.status);
    int limit = retryable ? options_.max_tries : options_.max_rejected_tries;
    // After a drop, only a busy or unreachable Twitch is a reason for the next message to wait.
    if (e.tries < limit || retryable) Backoff(d, e, outcome, now);
    if (e.tries >= limit) {
      pop();
      ++counts_.dropped_failed;
      result = PubSubDisposition::kDropped;
    } else {
      ++counts_.retried;
      result = PubSubDisposition::kRetry;
    }
  }
  Schedule(it, now);
  return result;
}

int64_t PubSubQueue::NextWakeMs() const {
  std::lock_guard lock(mu_);
  return ready_.empty() ? kNever : ready_.begin()->first.first;
}

PubSubQueue::Counts PubSubQueue::counts() const {
  std::lock_guard lock(mu_);
  Counts c = counts_;
  c.in_flight = tickets_.size();
  c.destinations = destinations_.size();
  for (const auto& [key, d] : destinations_) c.waiting += d.queue.size();
  return c;
}

std::vector<ViewerMessagePtr> PubSubQueue::QueuedForTest(const std::string& destination) const {
  std::lock_guard lock(mu_);
  std::vector<ViewerMessagePtr> out;
  auto it = destinations_.find(destination);
  if (it == destinations_.end()) return out;
  for (const Entry& e : it->second.queue) out.push_back(e.message);
  return out;
}

}  // namespace medkit::core::broadcast
