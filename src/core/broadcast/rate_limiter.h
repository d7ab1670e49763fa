// A token bucket per key (a caller, a channel), on the injected clock: `burst` tokens at most,
// refilled at `per_minute` tokens a minute. Keys idle long enough to be full again are
// forgotten, so the table stays as small as the set of active callers. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/clock.h"

namespace medkit::core::broadcast {

struct RateLimit {
  double burst = 30;        // tokens a quiet key starts with; 0 disables the limit
  double per_minute = 60;   // refill rate
};

class RateLimiter {
 public:
  RateLimiter(const Clock& clock, RateLimit limit) : clock_(clock), limit_(limit) {}

  // Takes one token for key; false when the bucket is empty (the caller is over its rate).
  bool Allow(std::string_view key);
  // Milliseconds until key has a token again (0 if it has one now).
  int64_t RetryAfterMs(std::string_view key) const;
  size_t size() const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_ms = 0;
  };
  double Refilled(const Bucket& b, int64_t now_ms) const;
  void Prune(int64_t now_ms);  // requires mu_

  const Clock& clock_;
  RateLimit limit_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
  int64_t last_prune_ms_ = 0;                        // guarded by mu_
};

}  // namespace medkit::core::broadcast
