#include "core/broadcast/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace medkit::core::broadcast {

double RateLimiter::Refilled(const Bucket& b, int64_t now_ms) const {
  double elapsed = static_cast<double>(std::max<int64_t>(0, now_ms - b.at_ms));
  return std::min(limit_.burst, b.tokens + elapsed * limit_.per_minute / 60000.0);
}

void RateLimiter::Prune(int64_t now_ms) {
  if (now_ms - last_prune_ms_ < 10'000 && buckets_.size() < 100'000) return;
  last_prune_ms_ = now_ms;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (Refilled(it->second, now_ms) >= limit_.burst) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

bool RateLimiter::Allow(std::string_view key) {
  if (limit_.burst <= 0) return true;
  int64_t now = clock_.NowMs();
  std::lock_guard lock(mu_);
  Prune(now);
  auto [it, inserted] = buckets_.try_emplace(std::string(key));
  Bucket& b = it->second;
  b.tokens = inserted ? limit_.burst : Refilled(b, now);
  b.at_ms = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

int64_t RateLimiter::RetryAfterMs(std::string_view key) const {
  if (limit_.burst <= 0) return 0;
  int64_t now = clock_.NowMs();
  std::lock_guard lock(mu_);
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) return 0;
  double tokens = Refilled(it->second, now);
  if (tokens >= 1.0) return 0;
  if (limit_.per_minute <= 0) return 60'000;
  return static_cast<int64_t>(std::ceil((1.0 - tokens) * 60000.0 / limit_.per_minute));
}

size_t RateLimiter::size() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

}  // namespace medkit::core::broadcast
