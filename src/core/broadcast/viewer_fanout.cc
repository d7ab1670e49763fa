#include "core/broadcast/viewer_fanout.h"

#include "core/events/event_bus.h"

namespace medkit::core::broadcast {

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string ThrottleKey(const ViewerEvent& e) {
  std::string key;
  key.reserve(e.client_id.size() + e.channel_id.size() + e.name.size() + 2);
  key.append(e.client_id).push_back('\x1f');
  key.append(e.channel_id).push_back('\x1f');
  key.append(e.name);
  return key;
}

}  // namespace

ViewerFanout::ViewerFanout(events::EventBus* bus, const Clock& clock, FanoutOptions options)
    : bus_(bus),
      clock_(clock),
      options_(std::move(options)),
      stage_name_(auth::StageName(options_.stage)) {
  if (bus_ != nullptr) {
    subscription_ = bus_->Subscribe([this](const events::Event& e) { OnBusEvent(e); });
  }
}

ViewerFanout::~ViewerFanout() {
  if (bus_ != nullptr) bus_->Unsubscribe(subscription_);
}

void ViewerFanout::AddSink(ViewerSink* sink) { sinks_.push_back(sink); }

ViewerFanout::Counts ViewerFanout::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

void ViewerFanout::OnBusEvent(const events::Event& e) {
  if (!e.viewers) return;
  ViewerEvent v;
  v.client_id = e.client_id;
  v.channel_id = e.channel_id;
  v.target = e.target.empty() ? "broadcast" : e.target;
  v.name = e.name;
  v.data_json = e.payload_json;
  v.coalesce = true;  // every server-generated viewer event carries state
  if (!StartsWith(e.name, "vote_update:") || options_.vote_update_interval_ms <= 0) {
    (void)Deliver(v, clock_.NowMs());
    return;
  }
  int64_t now = clock_.NowMs();
  {
    std::lock_guard lock(mu_);
    Throttle& t = votes_[ThrottleKey(v)];
    if (t.last_sent_ms != 0 && now - t.last_sent_ms < options_.vote_update_interval_ms) {
      t.pending = std::move(v);
      ++counts_.throttled;
      return;
    }
    t.last_sent_ms = now;
    t.pending.reset();
  }
  (void)Deliver(v, now);
}

void ViewerFanout::Tick() {
  int64_t now = clock_.NowMs();
  std::vector<ViewerEvent> due;
  {
    std::lock_guard lock(mu_);
    for (auto it = votes_.begin(); it != votes_.end();) {
      Throttle& t = it->second;
      if (now - t.last_sent_ms >= options_.vote_update_interval_ms) {
        if (t.pending) {
          due.push_back(std::move(*t.pending));
          t.pending.reset();
          t.last_sent_ms = now;
          ++it;
        } else {
          it = votes_.erase(it);  // quiet for a whole window: forget it
        }
      } else {
        ++it;
      }
    }
  }
  for (const auto& v : due) (void)Deliver(v, now);
}

Result<void> ViewerFanout::Publish(const ViewerEvent& event) {
  return Deliver(event, clock_.NowMs());
}

Result<void> ViewerFanout::Deliver(const ViewerEvent& e, int64_t now_ms) {
  auto message = std::make_shared<ViewerMessage>();
  message->client_id = e.client_id;
  message->channel_id = e.channel_id;
  if (e.target.empty() || e.target == "broadcast" || e.target == "global") {
    message->target = e.channel_id.empty() ? "global" : "broadcast";
  } else {
    message->target = e.target;
  }
  message->event = e.prefixed ? e.name : stage_name_ + ":" + e.client_id + ":" + e.name;
  message->envelope = Envelope(message->event, e.data_json);
  auto parts = EncodeParts(message->envelope, options_.limits);
  if (!parts) {
    std::lock_guard lock(mu_);
    ++counts_.refused;
    return std::move(parts).error();
  }
  message->parts = std::move(*parts);
  if (e.coalesce) {
    message->coalesce_key = message->client_id + '\x1f' + message->channel_id + '\x1f' +
                            message->target + '\x1f' + message->event;
  }
  message->at_ms = now_ms;
  {
    // Sequence numbers are taken and sinks called under one lock, so every sink sees the
    // messages in sequence order (a fragmented message is never interleaved with another).
    std::lock_guard lock(mu_);
    message->seq = next_seq_++;
    ++counts_.published;
    ViewerMessagePtr shared = std::move(message);
    for (ViewerSink* sink : sinks_) sink->Deliver(shared);
  }
  return {};
}

}  // namespace medkit::core::broadcast
