// The bridge from game codes to polls for codes/mark_from_poll: winners from the poll's vote
// log (PollService::Logs, so the caller must be backend or a validated admin, and the poll is
// resolved in the caller's scope: its token's channel, or extension-wide for "global…" ids).
//
// A winner is a voter who shared a user id (the log's identifier differs from its opaque id)
// and whose last vote cast at or before cutoff_s (unix seconds, compared by whole second;
// 0 = no cutoff) has the value correct. The log outlives DELETE vote (spec 8), so votes of a
// poll that was reset still count; entries older than the poll's retention are gone.
#pragma once

#include "core/gamecode/code_service.h"

namespace medkit::core::poll {
class PollService;
}

namespace medkit::core::gamecode {

// polls must outlive the returned function.
PollWinnersFn PollWinnersFromVoteLog(poll::PollService& polls);

}  // namespace medkit::core::gamecode
