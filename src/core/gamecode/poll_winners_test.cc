// codes/mark_from_poll through the vote log of a real PollService: the last vote at or before
// the cutoff decides, viewers without a user id are never marked, and the caller's role and
// scope are the poll family's.
#include "core/gamecode/poll_winners.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/clock.h"
#include "core/poll/poll_service.h"
#include "storage/memory_store.h"

namespace medkit::core::gamecode {
namespace {

using auth::Identity;
using auth::Role;

constexpr int64_t kStartMs = 1'700'000'000'000;

Identity Who(Role role, std::string user, std::string channel = "chan") {
  Identity id;
  id.client_id = "ext";
  id.role = role;
  id.channel_id = std::move(channel);
  id.user_id = std::move(user);
  id.opaque_user_id = id.user_id.empty() ? "Aanon" + std::to_string(rand()) : "U" + id.user_id;
  return id;
}

class PollWinnersTest : public ::testing::Test {
 protected:
  PollWinnersTest()
      : store_(clock_),
        polls_(store_, clock_, auth::Stage::kSandbox, poll::PollLimits{}),
        codes_(store_, clock_, auth::Stage::kSandbox, CodeLimits{}) {
    codes_.SetPollWinners(PollWinnersFromVoteLog(polls_));
  }
  void Vote(const std::string& user, int64_t value, std::string channel = "chan") {
    auto v = polls_.Vote(Who(Role::kViewer, user, channel), "trivia", value, 1);
    ASSERT_TRUE(v) << v.error().message;
  }
  std::vector<int64_t> Eligible(const std::string& user) {
    return *codes_.Eligible(Who(Role::kViewer, user));
  }

  FakeClock clock_{kStartMs};
  storage::MemoryStore store_;
  poll::PollService polls_;
  CodeService codes_;
  Identity backend_ = Who(Role::kBackend, "dev");
};

TEST_F(PollWinnersTest, MarksVotersOfTheCorrectValueBeforeTheCutoff) {
  Vote("a", 3);  // right
  Vote("b", 1);  // wrong
  Vote("c", 1);
  Vote("", 3);                    // right, but no user id
  Vote("x", 3, "other-channel");  // right, other channel
  clock_.AdvanceMs(5000);
  Vote("c", 3);  // changed to right, before the cutoff
  const int64_t cutoff_s = clock_.NowSeconds();
  clock_.AdvanceMs(1000);
  Vote("b", 3);  // changed to right, after the cutoff
  Vote("d", 3);  // first vote after the cutoff
  clock_.AdvanceMs(1000);
  Vote("a", 2);  // changed to wrong, after the cutoff: a still wins

  PollMarkRequest request;
  request.mark = MarkRequest{{1, 4}, {1, 2}};
  request.poll_id = "trivia";
  request.correct = 3;
  request.cutoff_timestamp_s = cutoff_s;
  ASSERT_TRUE(codes_.MarkFromPoll(backend_, request));
  std::vector<int64_t> win(10, 0), none(10, 0);
  win[1] = 1;
  win[4] = 2;
  EXPECT_EQ(Eligible("a"), win);
  EXPECT_EQ(Eligible("c"), win);
  EXPECT_EQ(Eligible("b"), none);
  EXPECT_EQ(Eligible("d"), none);
  EXPECT_EQ(Eligible("x"), none);

  // Without a cutoff the last votes count: b and d win now, a does not.
  request.cutoff_timestamp_s = 0;
  request.mark = MarkRequest{{0}, {1}};
  ASSERT_TRUE(codes_.MarkFromPoll(backend_, request));
  EXPECT_EQ(Eligible("a")[0], 0);
  EXPECT_EQ(Eligible("b")[0], 1);
  EXPECT_EQ(Eligible("c")[0], 1);
  EXPECT_EQ(Eligible("d")[0], 1);
}

TEST_F(PollWinnersTest, RolesAndUnsupported) {
  Vote("a", 3);
  PollMarkRequest request;
  request.mark = MarkRequest{{0}, {1}};
  request.poll_id = "trivia";
  request.correct = 3;
  for (Role role : {Role::kViewer, Role::kBroadcaster, Role::kAdmin}) {
    auto r = codes_.MarkFromPoll(Who(role, "a"), request);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kForbidden);
  }
  request.poll_id = "";
  auto r = codes_.MarkFromPoll(backend_, request);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "poll id required");
  EXPECT_EQ(Eligible("a")[0], 0);

  CodeService bare(store_, clock_, auth::Stage::kSandbox, CodeLimits{});
  request.poll_id = "trivia";
  r = bare.MarkFromPoll(backend_, request);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "mark_from_poll is not supported yet");
}

}  // namespace
}  // namespace medkit::core::gamecode
