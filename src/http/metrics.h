// Prometheus text metrics, written by hand (prometheus-cpp is not packaged). Counters live in
// per-thread shards of relaxed atomics, so recording is lock-free and never contended; a scrape
// sums the shards.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace medkit::http {

class Metrics {
 public:
  // Status codes get their own series; others are counted as "other".
  static constexpr int kStatuses[] = {200, 204, 400, 401, 403, 404, 405, 409, 413, 429, 431, 500, 503};
  static constexpr size_t kStatusSlots = std::size(kStatuses) + 1;
  // Latency buckets, seconds.
  static constexpr double kBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,   0.05,   0.1,   0.5,    1.0};
  static constexpr size_t kBucketSlots = std::size(kBuckets) + 1;

  explicit Metrics(std::vector<std::string> route_names);
  ~Metrics();

  // Records one request on the calling thread's shard. route < route count.
  void Record(size_t route, int status, uint64_t latency_ns);
  void ConnectionOpened() { connections_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionClosed() { connections_.fetch_sub(1, std::memory_order_relaxed); }

  // Appends extra exposition text at scrape time (e.g. store operation counters).
  void AddProvider(std::function<void(std::string&)> provider);

  std::string Render() const;

 private:
  struct Shard;
  Shard& LocalShard();

  std::vector<std::string> routes_;
  uint64_t instance_id_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::function<void(std::string&)>> providers_;
  std::atomic<int64_t> connections_{0};
};

}  // namespace medkit::http
