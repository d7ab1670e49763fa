// Micro-benchmarks of the poll path without HTTP, on RocksDB and on the memory store:
//   PollVote       one vote from each of 100,000 distinct viewers on one poll (then re-votes)
//   PollStatsRead  GET vote statistics of that poll (O(1) in voters: one MultiGet of 35 keys)
//   build/release/bench/medkit_bench --benchmark_filter=Poll
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <malloc.h>
#include <unistd.h>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/poll/poll_service.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"

namespace medkit {
namespace {

using core::auth::Identity;

constexpr int kViewers = 100'000;

struct PollFixture {
  core::SystemClock clock;
  std::filesystem::path dir;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<core::poll::PollService> polls;
  std::vector<Identity> viewers;

  explicit PollFixture(bool rocks) {
    if (rocks) {
      dir = std::filesystem::temp_directory_path() /
            ("medkit-poll-bench-" + std::to_string(std::random_device{}()));
      storage::RocksDbOptions options;
      options.path = dir.string();
      store = std::move(*storage::RocksDbStore::Open(options, clock));
    } else {
      store = std::make_unique<storage::MemoryStore>(clock);
    }
    polls = std::make_unique<core::poll::PollService>(*store, clock, core::auth::Stage::kSandbox,
                                                      core::poll::PollLimits{});
    viewers.reserve(kViewers);
    for (int i = 0; i < kViewers; ++i) {
      Identity id;
      id.client_id = "benchext";
      id.role = core::auth::Role::kViewer;
      id.channel_id = "777";
      id.user_id = "viewer" + std::to_string(i);
      id.opaque_user_id = "U" + id.user_id;
      viewers.push_back(std::move(id));
    }
  }
  ~PollFixture() {
    polls.reset();
    store.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

// Iteration i votes as viewer i % 100,000: the first 100k iterations are first votes, later
// ones re-votes (a replaced vote moves one unit between values).
void BM_PollVote(benchmark::State& state) {
  PollFixture f(state.range(0) == 1);
  size_t i = 0;
  for (auto _ : state) {
    const Identity& who = f.viewers[i % kViewers];
    auto r = f.polls->Vote(who, "bench", static_cast<int64_t>(i % 32), 1);
    if (!r) state.SkipWithError(r.error().message.c_str());
    benchmark::DoNotOptimize(r);
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetLabel(state.range(0) == 1 ? "rocksdb" : "memory");
}
BENCHMARK(BM_PollVote)->Arg(0)->Arg(1)->Iterations(200'000)->Unit(benchmark::kMicrosecond);

// Statistics of a poll that 100,000 viewers voted on.
void BM_PollStatsRead(benchmark::State& state) {
  PollFixture f(state.range(0) == 1);
  for (int i = 0; i < kViewers; ++i) {
    (void)f.polls->Vote(f.viewers[static_cast<size_t>(i)], "bench", i % 40 - 4, 1);
  }
  for (auto _ : state) {
    auto r = f.polls->Get(f.viewers[7], "bench");
    if (!r || r->stats.count != kViewers) state.SkipWithError("wrong statistics");
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetLabel(state.range(0) == 1 ? "rocksdb" : "memory");
}
BENCHMARK(BM_PollStatsRead)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace medkit

namespace medkit {
namespace {

long RssBytes() {
  std::ifstream status("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  status >> pages_total >> pages_resident;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

uint64_t DirBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

// Storage cost of N distinct voters on one poll (argument: 200,000 and 1,000,000), on RocksDB,
// one vote each (every vote also writes its vote-log entry, kept 7 days):
//   disk_bytes_per_voter   SST + WAL right after the burst (after a WAL sync)
//   sst_bytes_per_voter    SST files only, after flushing the memtable and a full compaction
//   rss_growth_MiB         growth of the process's resident memory: the poll's in-memory
//                          viewer records (grow with N) plus RocksDB's memtables (<= 2 x 32 MB)
//                          and block cache (<= 64 MB), which are bounded
//   rss_bytes_per_voter    rss_growth / N
//   cached_records         viewer records held in memory (PollService::CachedRecords)
// --benchmark_filter=PollVoterStorage (the 1M case takes ~15-30 s here).
void BM_PollVoterStorage(benchmark::State& state) {
  const int kVoters = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    PollFixture f(true);
    malloc_trim(0);  // memory freed by an earlier case would otherwise be reused unseen
    long rss_before = RssBytes();
    Identity who = f.viewers.front();
    state.ResumeTiming();
    for (int i = 0; i < kVoters; ++i) {
      who.user_id = "viewer" + std::to_string(i);
      who.opaque_user_id = "U" + who.user_id;
      auto voted = f.polls->Vote(who, "million", i % 32, 1);
      if (!voted) state.SkipWithError(voted.error().message.c_str());
      if (i % 64 == 0) (void)f.store->FlushWrites();
    }
    state.PauseTiming();
    (void)f.store->Sync();
    const long rss_growth = RssBytes() - rss_before;
    state.counters["disk_bytes_per_voter"] = static_cast<double>(DirBytes(f.dir)) / kVoters;
    state.counters["rss_growth_MiB"] = static_cast<double>(rss_growth) / (1024.0 * 1024.0);
    state.counters["rss_bytes_per_voter"] = static_cast<double>(rss_growth) / kVoters;
    state.counters["cached_records"] = static_cast<double>(f.polls->CachedRecords());
    state.counters["votes_per_s"] = benchmark::Counter(kVoters, benchmark::Counter::kIsRate);
    auto* rocks = static_cast<storage::RocksDbStore*>(f.store.get());
    if (!rocks->CompactForTest()) state.SkipWithError("compaction failed");
    uint64_t sst = 0;
    for (const auto& entry : std::filesystem::directory_iterator(f.dir)) {
      if (entry.is_regular_file() && entry.path().extension() == ".sst") sst += entry.file_size();
    }
    state.counters["sst_bytes_per_voter"] = static_cast<double>(sst) / kVoters;
    state.ResumeTiming();
  }
}
BENCHMARK(BM_PollVoterStorage)
    ->Arg(200'000)
    ->Arg(1'000'000)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace medkit
