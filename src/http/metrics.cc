#include "http/metrics.h"

#include <fmt/format.h>

namespace medkit::http {

namespace {
std::atomic<uint64_t> next_metrics_id{1};

size_t StatusSlot(int status) {
  for (size_t i = 0; i < std::size(Metrics::kStatuses); ++i) {
    if (Metrics::kStatuses[i] == status) return i;
  }
  return std::size(Metrics::kStatuses);
}
}  // namespace

struct Metrics::Shard {
  explicit Shard(size_t routes)
      : requests(routes * kStatusSlots), buckets(routes * kBucketSlots), latency_ns(routes) {}
  std::vector<std::atomic<uint64_t>> requests;  // [route][status slot]
  std::vector<std::atomic<uint64_t>> buckets;   // [route][bucket], not cumulative
  std::vector<std::atomic<uint64_t>> latency_ns;
};

Metrics::Metrics(std::vector<std::string> route_names)
    : routes_(std::move(route_names)), instance_id_(next_metrics_id.fetch_add(1)) {}

Metrics::~Metrics() = default;

Metrics::Shard& Metrics::LocalShard() {
  struct Cache {
    uint64_t owner = 0;
    Shard* shard = nullptr;
  };
  thread_local Cache cache;
  if (cache.owner != instance_id_) {
    std::lock_guard lock(mu_);
    shards_.push_back(std::make_unique<Shard>(routes_.size()));
    cache.shard = shards_.back().get();
    cache.owner = instance_id_;
  }
  return *cache.shard;
}

void Metrics::Record(size_t route, int status, uint64_t latency_ns) {
  Shard& shard = LocalShard();
  shard.requests[route * kStatusSlots + StatusSlot(status)].fetch_add(1,
                                                                      std::memory_order_relaxed);
  double seconds = static_cast<double>(latency_ns) / 1e9;
  size_t bucket = 0;
  while (bucket < std::size(kBuckets) && seconds > kBuckets[bucket]) ++bucket;
  shard.buckets[route * kBucketSlots + bucket].fetch_add(1, std::memory_order_relaxed);
  shard.latency_ns[route].fetch_add(latency_ns, std::memory_order_relaxed);
}

void Metrics::AddProvider(std::function<void(std::string&)> provider) {
  std::lock_guard lock(mu_);
  providers_.push_back(std::move(provider));
}

std::string Metrics::Render() const {
  std::lock_guard lock(mu_);
  size_t n = routes_.size();
  std::vector<uint64_t> requests(n * kStatusSlots), buckets(n * kBucketSlots), latency(n);
  for (const auto& shard : shards_) {
    for (size_t i = 0; i < requests.size(); ++i) requests[i] += shard->requests[i].load();
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += shard->buckets[i].load();
    for (size_t i = 0; i < n; ++i) latency[i] += shard->latency_ns[i].load();
  }
  std::string out;
  out += "# HELP medkit_http_requests_total HTTP requests by route and status.\n";
  out += "# TYPE medkit_http_requests_total counter\n";
  for (size_t r = 0; r < n; ++r) {
    for (size_t s = 0; s < kStatusSlots; ++s) {
      uint64_t v = requests[r * kStatusSlots + s];
      if (v == 0) continue;
      std::string status =
          s < std::size(kStatuses) ? std::to_string(kStatuses[s]) : std::string("other");
      out += fmt::format("medkit_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n",
                         routes_[r], status, v);
    }
  }
  out += "# HELP medkit_http_request_duration_seconds Time from parsed request to response.\n";
  out += "# TYPE medkit_http_request_duration_seconds histogram\n";
  for (size_t r = 0; r < n; ++r) {
    uint64_t cumulative = 0;
    for (size_t b = 0; b < kBucketSlots; ++b) cumulative += buckets[r * kBucketSlots + b];
    if (cumulative == 0) continue;
    uint64_t running = 0;
    for (size_t b = 0; b < kBucketSlots; ++b) {
      running += buckets[r * kBucketSlots + b];
      std::string le = b < std::size(kBuckets) ? fmt::format("{}", kBuckets[b]) : "+Inf";
      out += fmt::format(
          "medkit_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
          routes_[r], le, running);
    }
    out += fmt::format("medkit_http_request_duration_seconds_sum{{route=\"{}\"}} {:.6f}\n",
                       routes_[r], static_cast<double>(latency[r]) / 1e9);
    out += fmt::format("medkit_http_request_duration_seconds_count{{route=\"{}\"}} {}\n",
                       routes_[r], cumulative);
  }
  out += "# HELP medkit_http_connections Open HTTP connections.\n";
  out += "# TYPE medkit_http_connections gauge\n";
  out += fmt::format("medkit_http_connections {}\n", connections_.load());
  for (const auto& provider : providers_) provider(out);
  return out;
}

}  // namespace medkit::http
