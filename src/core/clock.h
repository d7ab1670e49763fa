// Clock seam: everything time-dependent (token expiry, document expiry, server_time) reads
// time through a Clock so tests can drive it (Envoy-style injected time source).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace medkit::core {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch. Thread-safe.
  virtual int64_t NowMs() const = 0;
  int64_t NowSeconds() const { return NowMs() / 1000; }
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that only moves when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t NowMs() const override { return now_ms_.load(std::memory_order_relaxed); }
  void SetMs(int64_t ms) { now_ms_.store(ms, std::memory_order_relaxed); }
  void AdvanceMs(int64_t delta) { now_ms_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_ms_;
};

// A clock that is the system clock plus an adjustable offset: lets a running server be moved
// forward in time by tests (--clock-offset-ms / the test-only admin hook).
class OffsetClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return base_.NowMs() + offset_ms_.load(std::memory_order_relaxed);
  }
  void AdvanceMs(int64_t delta) { offset_ms_.fetch_add(delta, std::memory_order_relaxed); }
  int64_t OffsetMs() const { return offset_ms_.load(std::memory_order_relaxed); }

 private:
  SystemClock base_;
  std::atomic<int64_t> offset_ms_{0};
};

}  // namespace medkit::core
