// Rank (spec 5.7, 8, 9, 12 item 26): viewers submit one string answer per rank id, a new answer
// replaces the viewer's previous one, and privileged callers read the top 100 answers by count.
//
// Policy:
//   POST rank?id=    any role (one answer per viewer key: user_id, else opaque_user_id)
//   GET rank?id=     broadcaster, admin, backend; viewers only in the sandbox stage (12.26)
//   DELETE rank?id=  broadcaster, admin, backend
// Scope: ids starting with "global" are extension-wide, others belong to the token's channel.
//
// Storage (every key of one rank under the prefix P = r␟<stage>␟<client>␟<channel|"">␟<id>␟,
// one future Redis hash slot):
//   P g                 the generation id G of the live rank (random, never reused)
//   P l                 "last entry" marker: value G, expires ttl_ms (24 h) after the last answer
//   P d␟G␟v␟<viewer>    the viewer's current answer in generation G
//   P d␟G␟k␟<answer>    counter: how many viewers currently answer <answer> in generation G
// The rank is live iff P g and P l exist and hold the same G. An answer to a rank that is not
// live (never used, expired, deleted) starts a new generation; data of older generations is
// unreachable from then on and disappears with its own, longer expiry (data_ttl_ms, refreshed
// whenever a key is written). So the 24 h rule applies to the rank as a whole: counters and
// viewer records never expire one by one while the rank is in use (as long as the rank is not
// kept alive for longer than data_ttl_ms with a record that is never touched; see
// docs/api/engagement.md).
//
// Concurrency: an answer is one Store::Apply that expects the versions of P g (written only when
// a generation starts, on DELETE, or on a rare refresh) and of the viewer's record, puts the
// record and the last-entry marker, and moves one unit between counters with Add (-1 old
// answer, +1 new). Answers of different viewers never conflict; a conflicting batch is retried.
// Scores are therefore exact under any interleaving. GET is one MultiGet plus a Scan of the
// counters of the live generation (O(distinct answers)); DELETE removes P g and P l atomically,
// which makes every answer that raced with it retry into the next generation.
//
// Thread-safe: no state besides the store.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::rank {

struct RankLimits {
  int64_t ttl_ms = 24LL * 3600 * 1000;  // the rank expires this long after its last answer
  // Expiry of viewer records and counters after their last write; bounds how long the data of
  // a dead generation stays on disk. Must be >= ttl_ms (smaller values are raised to it).
  int64_t data_ttl_ms = 30LL * 24 * 3600 * 1000;
  size_t max_answer_bytes = 128;  // length of the "key" string of an answer
  size_t max_id_bytes = 64;       // length of a rank id
  size_t top = 100;               // entries returned by GET
};

struct RankAnswer {
  bool replaced = false;
  std::string original;  // the viewer's previous answer when replaced
};

class RankService {
 public:
  RankService(storage::Store& store, const Clock& clock, auth::Stage stage, RankLimits limits);

  // POST rank?id=: records answer as the caller's answer. An empty id means "default".
  Result<RankAnswer> Answer(const auth::Identity& who, std::string_view id,
                            std::string_view answer);

  // GET rank?id=: {"data":[{"key":..,"score":..},...]}, score descending, ties by key ascending
  // (byte order), at most limits.top entries; {"data":[]} for an unknown or expired rank.
  Result<std::string> Read(const auth::Identity& who, std::string_view id);

  // DELETE rank?id=: forgets every answer; the next answer starts a fresh rank.
  Result<void> Clear(const auth::Identity& who, std::string_view id);

  const RankLimits& limits() const { return limits_; }

 private:
  Result<std::string> Prefix(const auth::Identity& who, std::string_view id) const;

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  RankLimits limits_;
};

}  // namespace medkit::core::rank
