#include "core/events/event_bus.h"

#include <algorithm>

namespace medkit::core::events {

uint64_t EventBus::Subscribe(Handler handler) {
  std::lock_guard lock(mu_);
  uint64_t id = next_id_++;
  auto next = std::make_shared<Handlers>(*handlers_);
  next->emplace_back(id, std::move(handler));
  handlers_ = std::move(next);
  return id;
}

void EventBus::Unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<Handlers>(*handlers_);
  next->erase(std::remove_if(next->begin(), next->end(),
                             [id](const auto& h) { return h.first == id; }),
              next->end());
  handlers_ = std::move(next);
}

void EventBus::Publish(const Event& event) const {
  std::shared_ptr<const Handlers> snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = handlers_;
  }
  for (const auto& h : *snapshot) h.second(event);
}

EventRecorder::EventRecorder(EventBus& bus) : bus_(bus) {
  id_ = bus_.Subscribe([this](const Event& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  });
}

EventRecorder::~EventRecorder() { bus_.Unsubscribe(id_); }

std::vector<Event> EventRecorder::events() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::vector<Event> EventRecorder::Named(const std::string& name) const {
  std::lock_guard lock(mu_);
  std::vector<Event> out;
  for (const auto& e : events_) {
    if (e.name == name) out.push_back(e);
  }
  return out;
}

}  // namespace medkit::core::events
