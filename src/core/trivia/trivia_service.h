// Trivia (spec 5.9, 12 item 18): extension-wide curated questions, a per-question state machine,
// one vote per viewer per question, teams (a viewer's team is the channel of their first vote
// or join), per-question results and a team leaderboard. docs/api/trivia.md is the user-facing
// description; this comment is the contract.
//
// Roles:
//   edit (questions, options, state)   validated admin, backend, owner broadcaster ("editors")
//   read questions / leaderboard       any; only editors see state-inactive questions
//   vote, join a team                  viewer, broadcaster (the broadcaster votes for its own
//                                      channel and is always on its own channel's team)
//
// State machine (transition to -> allowed from; same-state transitions are no-ops, except
// results -> results which re-declares the winner):
//   state-inactive  <- any (a reset: the votes of the question are discarded)
//   state-unlocked  <- inactive, locked           (votes open)
//   state-locked    <- unlocked                   (votes closed)
//   state-results   <- locked, results            (needs "winner" = an option id)
//
// Storage (every key starts with the extension prefix P = "tr␟<stage>␟<client>␟", so a future
// Redis store can put an extension's trivia in one slot):
//   P i                          JSON array of question ids, creation order (the 64 bound)
//   P q␟<qid>                    the question document (JSON, with internal "gen", "winner")
//   P gen                        counter: generation numbers (fresh per creation and reset)
//   P t␟<viewer key>             the viewer's team (a channel id), written once
//   P ts␟<channel>               counter: number of viewers on the channel's team
//   P g␟<qid>␟<gen>␟v␟<viewer>   the viewer's vote: "<team>␟<option>"
//   P g␟<qid>␟<gen>␟b␟<channel>  the channel broadcaster's vote: "<option>"
//   P g␟<qid>␟<gen>␟n␟<option>   counter: viewer votes for option
//   P g␟<qid>␟<gen>␟c␟<team>␟<option>  counter: votes of the team's viewers for option
// A vote is one atomic Apply: ExpectVersion on the question document (so it lands only while
// the question is unlocked in the same generation) and on the viewer's vote record (and team
// record when it is created), the new record, and Add counters (+1 new option, -1 old). A
// reset or removal moves the question to a new generation (or deletes it) first, then deletes
// the old generation's keys in batches (best effort: leftovers are unreachable).
// Nothing expires (spec 8: trivia has no TTL); the data is bounded by the limits below.
//
// Thread-safe: every method may be called from all server threads at once.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::trivia {

struct TriviaLimits {
  size_t max_questions = 64;  // per extension (spec 9)
  size_t max_options = 32;    // per question
  size_t max_id_bytes = 64;   // question and option ids
  size_t max_name_bytes = 256;
  size_t max_short_name_bytes = 128;
  size_t max_description_bytes = 1024;
  size_t max_image_bytes = 2048;  // an image URL
  int max_write_attempts = 16;    // optimistic retries before 409
};

class TriviaService {
 public:
  TriviaService(storage::Store& store, auth::Stage stage, TriviaLimits limits = {});

  // POST curated_poll_edit: creates the question (state-inactive, 400 beyond max_questions)
  // or, for an existing id, replaces its descriptive fields (and its options when the body has
  // "options"; dropping an option is allowed only while inactive). Editors only.
  Result<void> AddQuestion(const auth::Identity& who, const boost::json::value& question);
  // DELETE curated_poll_edit: removes the question and its votes (404 when absent).
  Result<void> RemoveQuestion(const auth::Identity& who, std::string_view question_id);
  // POST curated_poll_edit_option: adds the option, or replaces the fields of the option with
  // its id (keeping its position). Returns the updated question (TriviaQuestion JSON).
  Result<std::string> AddOption(const auth::Identity& who, std::string_view question_id,
                                const boost::json::value& option);
  // DELETE curated_poll_edit_option: removes the option (only while state-inactive).
  Result<std::string> RemoveOption(const auth::Identity& who, std::string_view question_id,
                                   std::string_view option_id);
  // POST curated_poll_state?id=: applies the transition; returns the new state name.
  Result<std::string> SetState(const auth::Identity& who, std::string_view question_id,
                               std::string_view transition, std::string_view winner);
  // POST curated_poll: the caller's vote (latest wins; only while state-unlocked).
  Result<void> Vote(const auth::Identity& who, std::string_view question_id,
                    std::string_view option_id);

  // GET curated_poll: {"questions": [TriviaQuestion...]} in creation order.
  Result<std::string> ReadQuestions(const auth::Identity& who);
  // GET curated_poll?id=: one TriviaQuestion (404 when absent or hidden from the caller).
  Result<std::string> ReadQuestion(const auth::Identity& who, std::string_view question_id);
  // GET curated_poll_leaderboard: {"leaderboard": [TriviaLeaderboardTeam...]}.
  Result<std::string> ReadLeaderboard(const auth::Identity& who);

  // POST team_membership: joins the caller's channel's team unless already in one; returns the
  // caller's team id.
  Result<std::string> JoinTeam(const auth::Identity& who);
  // GET team_membership: the caller's team id ("" when none).
  Result<std::string> JoinedTeam(const auth::Identity& who);

  const TriviaLimits& limits() const { return limits_; }

 private:
  struct Question {
    boost::json::object doc;  // the stored document, internal fields included
    uint64_t version = 0;
  };
  Result<std::optional<Question>> LoadQuestion(const std::string& prefix, std::string_view qid);
  // All questions in creation order, with the index's version.
  Result<std::vector<Question>> LoadAll(const std::string& prefix, uint64_t* index_version,
                                        std::vector<std::string>* ids);
  Result<int64_t> NewGeneration(const std::string& prefix);
  // Deletes every key under prefix (batches); errors are ignored (see above).
  void Purge(const std::string& prefix);
  // Calls fn(suffix after prefix, value) for every live key under prefix.
  Result<void> ScanAll(const std::string& prefix,
                       const std::function<void(std::string_view, const std::string&)>& fn);
  // TriviaQuestion JSON of each doc for who: internal fields dropped, "results" added to
  // non-inactive questions.
  Result<std::vector<boost::json::value>> Render(
      const auth::Identity& who, const std::string& prefix,
      const std::vector<const boost::json::object*>& docs);
  // Writes doc back with ExpectVersion(version); kConflict when someone else wrote first.
  Result<void> PutQuestion(const std::string& prefix, std::string_view qid,
                           const boost::json::object& doc, uint64_t version);

  storage::Store& store_;
  auth::Stage stage_;
  TriviaLimits limits_;
};

// Whether who may edit questions, options and states (and see inactive questions).
bool IsTriviaEditor(const auth::Identity& who);

// JSON text of v with doubles in shortest round-trip form ("0.75", "1500") instead of
// Boost.JSON's exponent form; exposed for tests.
std::string SerializeJson(const boost::json::value& v);

}  // namespace medkit::core::trivia
