// Game codes (spec 5.10, 12 item 19): extension-wide sets of prize codes that an admin or a
// developer backend uploads, users it marks as eligible, and viewers who redeem codes.
//
// Roles: PUT/GET/DELETE codes and mark_from_list/mark_from_poll need a backend token or a
// validated admin; eligible/redeemed/redeem act on the caller's own user_id (any role). A
// caller without user_id (identity not shared) reads all-zero eligibility and no codes, and its
// redeem is refused with 400 "user id required" (mark_from_list names Twitch user ids, so such a
// viewer can never be eligible).
//
// Prize index = code-set index, 0..9. The hard rule: no code is ever handed out twice, also
// under concurrent redeems, and eligibility counts stay exact.
//
// Keys (all under one prefix per extension, P = "gc␟<stage>␟<client>␟", so a Redis Cluster
// store puts them in one slot and a redeem is one script):
//   P m                        meta: JSON {"<index>": {"name","count","holes","gen","exp"}}
//   P g                        generation counter (a set created anew gets a fresh gen)
//   P s␟<gen>␟c␟<chunk:08>     codes of a set, kChunkSlots slots per key, '\n'-joined
//   P s␟<gen>␟n                claim counter: how many slots of the set were claimed
//   P u␟<user>␟e␟<index>       eligibility counter (codes the user may still claim)
//   P u␟<user>␟r␟<index>␟<gen:012>␟<slot:08>   a code the user redeemed
//
// Redeem: read meta and the user's eligibility e (> 0), then one atomic Apply:
// ExpectVersion(meta), ExpectVersion(eligibility), Add(eligibility, -1), Add(claim counter, +1).
// The counter's new value n is this redeem's slot, unique because Add is atomic; the meta
// expectation guarantees the set (its gen and count) did not change in between, and the
// eligibility expectation that it cannot go below zero. If n > count the set is exhausted: the
// eligibility is given back (Add +1) and the call fails with 400. Otherwise the code of slot n
// is read (slots never change once written) and recorded for the user with one Put.
// The only window is a process crash between that Apply and the Put (one request, before any
// response): the user loses that one eligibility and the slot is never handed out; a code can
// never be handed out twice.
//
// PUT of an existing index renames the set and appends the codes it does not already have (so
// a re-PUT of the same codes is a rename). Slots that redeems claimed past the end of the set
// before an append (the set was exhausted) become holes: appended codes start after them.
//
// Lifetimes: a set lives set_ttl_ms (90 days) from its creation (appends do not extend it);
// eligibility lives set_ttl_ms after its last change, a redeemed-code record set_ttl_ms after
// the redeem.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::gamecode {

struct CodeLimits {
  int max_sets = 10;                   // indices 0..max_sets-1
  size_t max_code_bytes = 63;          // each code < 64 chars
  size_t max_codes_per_set = 999'999;  // < 1,000,000 codes per set
  size_t max_name_bytes = 256;
  int64_t max_prize_limit = 1000;    // prize_limits[i] of one mark call
  size_t max_users_per_mark = 1000;  // users of one mark_from_list
  int64_t set_ttl_ms = 90LL * 24 * 3600 * 1000;
};

// PUT codes body, parsed.
struct CodeSetUpload {
  int index = 0;
  std::string name;
  std::vector<std::string> codes;
};

// One mark call: prizes[i] gets prize_limits[i] more claims for each user.
struct MarkRequest {
  std::vector<int> prizes;
  std::vector<int64_t> prize_limits;
};

// mark_from_poll: the poll's per-viewer votes, supplied by the poll family.
struct PollMarkRequest {
  MarkRequest mark;
  std::string poll_id;
  int64_t correct = 0;             // the winning vote value
  int64_t cutoff_timestamp_s = 0;  // votes cast after this (unix seconds) do not count; 0 = none
};

// What mark_from_poll needs from the poll family: the user ids (viewer keys that are user ids)
// whose vote on poll_id of the caller's scope equals correct and was cast at or before
// cutoff_s (0 = any time). Set by the app when the poll service exists; unset => 400.
using PollWinnersFn = std::function<Result<std::vector<std::string>>(
    const auth::Identity& who, std::string_view poll_id, int64_t correct, int64_t cutoff_s)>;

struct RedeemResult {
  std::string code;
  std::vector<std::string> all_prizes;  // every code the user redeemed for this prize index
};

class CodeService {
 public:
  CodeService(storage::Store& store, const Clock& clock, auth::Stage stage, CodeLimits limits);

  // PUT codes: creates or appends to the listed sets (all-or-nothing).
  Result<void> Put(const auth::Identity& who, const std::vector<CodeSetUpload>& sets);
  // GET codes: names by set index (length = highest live index + 1, "" for gaps).
  Result<std::vector<std::string>> Names(const auth::Identity& who);
  // DELETE codes: removes every set; returns codes handed out per set index (same layout as
  // Names).
  Result<std::vector<int64_t>> DeleteAll(const auth::Identity& who);

  // mark_from_list: users each get prize_limits[i] more claims of prize prizes[i]; one atomic
  // batch for all users.
  Result<void> MarkFromList(const auth::Identity& who, const MarkRequest& mark,
                            const std::vector<std::string>& users);
  // mark_from_poll: MarkFromList for the poll's winners (see PollWinnersFn).
  Result<void> MarkFromPoll(const auth::Identity& who, const PollMarkRequest& request);
  void SetPollWinners(PollWinnersFn fn) { poll_winners_ = std::move(fn); }

  // The caller's remaining claims per prize index (max_sets entries).
  Result<std::vector<int64_t>> Eligible(const auth::Identity& who);
  // The caller's redeemed codes per prize index (max_sets entries), in redeem order per set.
  Result<std::vector<std::vector<std::string>>> Redeemed(const auth::Identity& who);
  // Redeems one code of prize index. 400 "not eligible" / "no codes left" (eligibility
  // unchanged) / "user id required".
  Result<RedeemResult> Redeem(const auth::Identity& who, int64_t prize);

  const CodeLimits& limits() const { return limits_; }

  // Parses a PUT codes body ({"codes": [[...]], "names": [...], "indices": [...]?}).
  Result<std::vector<CodeSetUpload>> ParseUpload(const boost::json::value& body) const;
  // Parses {"prizes": [...], "prize_limits": [...]} of a mark body.
  Result<MarkRequest> ParseMark(const boost::json::value& body) const;

 private:
  struct SetMeta {
    std::string name;
    int64_t count = 0;  // slots, holes included
    int64_t holes = 0;
    uint64_t gen = 0;
    int64_t expires_at_ms = 0;
  };
  struct Meta {
    std::vector<std::optional<SetMeta>> sets;  // by index
    uint64_t version = 0;                      // 0: no meta key
  };

  std::string Prefix(const auth::Identity& who) const;
  Result<Meta> ReadMeta(const std::string& prefix);
  std::string SerializeMeta(const Meta& meta, int64_t* expires_at_ms) const;
  Result<std::vector<std::string>> ReadSlots(const std::string& prefix, uint64_t gen,
                                             int64_t count);
  Result<std::string> ReadSlot(const std::string& prefix, uint64_t gen, int64_t slot);
  Result<void> CheckAdmin(const auth::Identity& who) const;

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  CodeLimits limits_;
  PollWinnersFn poll_winners_;
};

}  // namespace medkit::core::gamecode
