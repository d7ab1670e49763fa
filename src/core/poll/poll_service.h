// Polls and votes (spec 5.8; GameLink polls of 7.4/7.5 share this model): one place where a
// REST vote and a GameLink `create poll` meet. PollService owns create/configure/read/delete
// of a poll and voting on it; it knows nothing of HTTP.
//
// Data layout (all keys of one poll share the prefix P = "p␟<stage>␟<client>␟<channel>␟<id>␟",
// channel empty for global polls; see docs/api/polls.md):
//   P gen               current generation G (decimal), never expires; bumped by DELETE and
//                       whenever a poll idle for `retention` is touched again
//   P cfg               "G|<config json>": explicit configuration of generation G
//   P st                "G|count|sum|sumsq|specific0,...,specific31": running sums of
//                       generation G, rewritten (whole, ~120 bytes) by every vote, configure
//                       and modifier; expires `retention` after that write. Present and
//                       naming the current G = the poll is live; otherwise it is empty.
//   P v ␟ <viewer>      that viewer's record "G|adds|last|value:units,...", no expiry; a record
//                       naming an older generation reads as empty
//   P log ␟ <ms> ␟ <uniq>  one vote-log entry (JSON), expires `retention` after it was written;
//                       untouched by DELETE
//   P gc                "G|<cursor>": records older than G may remain; cleaned in bounded steps
// Viewer records never expire on their own: when the sums expire the generation is over, and
// the next write starts a new one, in which the old records read as empty.
//
// Hot state: each poll in use has an in-memory copy of {gen, live expiry, config, sums} and of
// the viewer records of its generation, behind one mutex per poll. A vote locks its poll,
// reads the viewer's previous record from memory (from the store only when the poll was
// loaded after a restart or evicted and the record is not yet cached), computes the new
// record and sums, and applies ONE blind batch: Put(record) + Put(sums) + Put(log). Memory changes only after the batch is applied. Votes of one poll are thus
// serialized in the order they reach the store, every acknowledged vote is one atomic step,
// the statistics equal a sequential replay of the acknowledged requests, and after a crash the
// stored sums equal the sums of the stored records (they are written in the same batch).
// Reading statistics copies 35 numbers from memory: O(1) in voters. This needs the process to
// be the only writer of its poll keys, which holds for the embedded stores; a Redis Cluster
// deployment keeps the same layout but runs each vote as one server-side script on the poll's
// slot (docs/api/polls.md). Memory is bounded by PollLimits::max_cached_records and
// max_cached_polls (least recently used polls are dropped first).
//
// Every vote, configure-free change of the tallies (vote, modifier, DELETE) publishes
// "vote_update:<id>" with {"id", "stats"} on the event bus (channel "" for global polls); the
// transports throttle delivery (spec: at most every 5 s), not this service.
//
// Thread-safe: every method may be called from any number of threads at once.
#pragma once

#include <array>
#include <atomic>
#include <boost/json/value.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::poll {

inline constexpr int kSpecificSize = 32;

namespace detail {
struct VoteRecord;
}

struct PollLimits {
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;  // data kept after the last vote (spec 8)
  int64_t min_value = -128;
  int64_t max_value = 128;
  int64_t max_count = 30;  // the per-request multiplier
  size_t max_id_bytes = 64;
  size_t max_prompt_bytes = 256;
  size_t max_options = 32;
  size_t max_option_bytes = 128;
  size_t max_user_data_bytes = 1024;
  int64_t max_modifier_add = 1'000'000;     // |add| of one vote_modifier call
  int64_t max_modifier_weight = 1'000'000;  // 1 + Σadd of one user
  size_t max_log_entries = 100'000;         // entries one vote_logs read returns (oldest first)
  size_t cleanup_batch = 128;               // stale viewer records removed per cleanup step
  size_t max_cached_records = 4'000'000;    // viewer records kept in memory, all polls
  size_t max_cached_polls = 100'000;        // polls whose state is kept in memory
};

enum class PollStatus { kPending, kActive, kExpired };
std::string_view PollStatusName(PollStatus status);

// VoteConfiguration / GameLink PollConfiguration. Times are unix seconds, 0 = unset.
struct PollConfig {
  bool user_id_voting = false;
  int64_t distinct_options_per_user = 1;  // 1..258
  int64_t total_votes_per_user = 1;       // 1..1024; 1 = one vote per viewer, a later one replaces
  int64_t votes_per_option = 1;           // 1..1024
  bool global = false;
  bool disabled = false;
  std::string prompt;
  std::vector<std::string> options;
  std::string user_data_json = "{}";  // serialized JSON
  int64_t starts_at = 0;
  int64_t ends_at = 0;

  PollStatus StatusAt(int64_t now_s) const;
  bool operator==(const PollConfig&) const = default;
};

// Running statistics (spec "Statistics algorithm").
struct PollStats {
  int64_t count = 0;
  int64_t sum = 0;
  int64_t sum_squares = 0;
  std::array<int64_t, kSpecificSize> specific{};

  double Mean() const;
  double StdDev() const;  // sample standard deviation; 0 when count < 2
  bool operator==(const PollStats&) const = default;
};

struct VoteView {
  PollStats stats;
  std::optional<int64_t> vote;  // the caller's current vote (last value), if any
};

struct VoteLogEntry {
  std::string json;  // {"identifier","opaque","value","timestamp"}
};

// A resolved poll: who owns it and where (GameLink resolves this from its session).
struct PollRef {
  std::string client_id;
  std::string channel_id;  // "" for global polls
  std::string poll_id;
};

// What GameLink `get poll` needs.
struct PollSnapshot {
  std::optional<PollConfig> config;  // explicit configuration, if any
  PollStatus status = PollStatus::kActive;
  PollStats stats;
};

// Rendering helpers shared by the REST routes and the event payloads.
std::string StatsJsonFields(const PollStats& stats);  // "stddev":..,"mean":..,...,"count":..
std::string VoteViewJson(const VoteView& view);       // flat GET/POST vote response
std::string PollConfigJson(const PollConfig& config, int64_t now_s);
// Parses a VoteConfiguration / PollConfiguration object onto base (fields not present keep
// base's value). Accepts endsAt -1 (now) and startsIn/endsIn (relative, used when the absolute
// field is 0). Validates every limit; global:true needs a global poll id.
Result<PollConfig> ParsePollConfig(const boost::json::value& json, const PollConfig& base,
                                   std::string_view poll_id, int64_t now_s,
                                   const PollLimits& limits);

// Poll id rules: "" => "default"; 1..64 chars of [A-Za-z0-9_$-]. Ids starting with "global"
// are extension-wide.
Result<std::string> NormalizePollId(std::string_view id, const PollLimits& limits);
bool IsGlobalPollId(std::string_view id);

class PollService {
 public:
  // events may be null (nothing published).
  PollService(storage::Store& store, const Clock& clock, auth::Stage stage, PollLimits limits,
              events::EventBus* events = nullptr);
  ~PollService();

  // ---- REST surface: role checks and scope from the caller's identity. ----
  // GET vote: any role; an unknown poll reads as zero statistics.
  Result<VoteView> Get(const auth::Identity& who, std::string_view poll_id);
  // POST vote: any role. count 0 means 1.
  Result<VoteView> Vote(const auth::Identity& who, std::string_view poll_id, int64_t value,
                        int64_t count);
  // DELETE vote: broadcaster, admin, backend. Clears votes, configuration and modifiers (a new
  // generation), not the vote log.
  Result<void> Delete(const auth::Identity& who, std::string_view poll_id);
  // GET vote_logs: backend or validated admin. Oldest first.
  Result<std::vector<VoteLogEntry>> Logs(const auth::Identity& who, std::string_view poll_id);
  // GET vote_config: any. nullopt when the poll has no explicit configuration.
  Result<std::optional<PollConfig>> GetConfig(const auth::Identity& who, std::string_view poll_id);
  // POST vote_config: broadcaster, admin, backend. Keeps the votes.
  Result<void> Configure(const auth::Identity& who, std::string_view poll_id,
                         const boost::json::value& config);
  // POST vote_modifier: broadcaster, admin, backend. Re-weights that user's current votes.
  Result<void> AddModifier(const auth::Identity& who, std::string_view poll_id,
                           std::string_view user, int64_t add);

  // ---- Scope-level surface (GameLink; no role checks: the caller decided). ----
  // Creates or overwrites the poll: a new generation (votes reset) with this configuration.
  Result<void> CreatePoll(const PollRef& ref, const PollConfig& config);
  // Replaces the configuration, keeping the votes (starts the poll if it is not live).
  Result<void> ConfigurePoll(const PollRef& ref, const PollConfig& config);
  Result<PollSnapshot> ReadPoll(const PollRef& ref);
  Result<void> DeletePoll(const PollRef& ref);
  // Votes as viewer_key (opaque_id, has_user_id only matter for logs and userIDVoting).
  Result<VoteView> VoteAs(const PollRef& ref, std::string_view viewer_key, std::string_view user_id,
                          std::string_view opaque_id, int64_t value, int64_t count);
  Result<void> AddModifierTo(const PollRef& ref, std::string_view user, int64_t add);
  Result<std::vector<VoteLogEntry>> ReadLogs(const PollRef& ref);

  const PollLimits& limits() const { return limits_; }
  // Viewer records held in memory across all polls (for benchmarks and metrics).
  size_t CachedRecords() const;

 private:
  struct Keys;
  struct Head;
  struct Hot;
  struct HotTable;
  struct Locked {
    std::shared_ptr<Hot> hot;
    std::unique_lock<std::mutex> lock;
  };
  Result<PollRef> Resolve(const auth::Identity& who, std::string_view poll_id) const;
  std::string Prefix(const PollRef& ref) const;
  // The poll's in-memory state, locked and loaded (from the store on first use).
  Result<Locked> Lock(const Keys& keys);
  Result<void> Load(const Keys& keys, Hot& hot);
  void MaybeEvict();
  // Under the poll's lock: the viewer's record of the live generation (empty if none).
  Result<detail::VoteRecord> RecordOf(const Keys& keys, Hot& hot, std::string_view viewer);
  void Remember(Hot& hot, bool fresh, std::string_view viewer, detail::VoteRecord record);
  // Stages a new generation into batch when current is not live; next is the head to write.
  // Returns whether a new generation began.
  bool BeginWrite(const Keys& keys, const Head& current, int64_t now_ms, Head& next,
                  storage::WriteBatch& batch) const;
  Result<void> WriteConfig(const PollRef& ref, const PollConfig& config, bool reset);
  Result<VoteView> ViewOf(const PollRef& ref, std::string_view viewer);
  Result<std::optional<PollConfig>> ConfigOf(const PollRef& ref);
  void Cleanup(const Keys& keys, Hot& hot);
  void Publish(const PollRef& ref, const PollStats& stats) const;

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  PollLimits limits_;
  events::EventBus* events_;  // may be null
  uint64_t boot_id_;          // log-key uniqueness across restarts
  std::atomic<uint64_t> log_seq_{0};
  std::unique_ptr<HotTable> table_;
};

}  // namespace medkit::core::poll
