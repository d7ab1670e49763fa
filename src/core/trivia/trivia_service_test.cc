// TriviaService (spec 5.9, 12 item 18) on a MemoryStore: roles, question and option editing,
// limits, the state machine, visibility of inactive questions, votes (latest wins, exact
// counts), teams fixed at the first vote, results, the leaderboard formula with exact numbers,
// resets and removals, one Apply per vote, and real contention from 8 threads.
#include "core/trivia/trivia_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "storage/memory_store.h"
#include "storage/store_wrapper.h"

namespace medkit::core::trivia {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

template <class T>
std::string ErrorText(const Result<T>& result) {
  return result ? std::string("ok") : result.error().message;
}

json::value J(std::string_view text) { return json::parse(text); }

Identity Who(Role role, std::string_view channel, std::string_view user) {
  Identity id;
  id.client_id = "ext1";
  id.role = role;
  id.channel_id = std::string(channel);
  id.user_id = std::string(user);
  id.opaque_user_id = user.empty() ? "Aanon" : "U" + std::string(user);
  return id;
}
Identity Viewer(std::string_view channel, std::string_view user) {
  return Who(Role::kViewer, channel, user);
}
Identity Broadcaster(std::string_view channel) { return Who(Role::kBroadcaster, channel, channel); }
Identity Owner() {
  Identity id = Who(Role::kBroadcaster, "owner", "owner");
  id.owner_broadcaster = true;
  return id;
}
Identity Admin() { return Who(Role::kAdmin, "chan1", "admin9"); }
Identity ValidatedAdmin() {
  Identity id = Who(Role::kAdmin, "chan1", "admin1");
  id.validated_admin = true;
  return id;
}
Identity Backend() { return Who(Role::kBackend, "chan1", "owner"); }

// Counts Apply calls (for "one atomic Apply per vote").
class CountingStore final : public storage::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<storage::ApplyResult> Apply(const storage::WriteBatch& batch) override {
    applies.fetch_add(1);
    return StoreWrapper::Apply(batch);
  }
  std::atomic<int> applies{0};
};

class TriviaServiceTest : public ::testing::Test {
 protected:
  TriviaServiceTest() : store_(clock_), counting_(store_), trivia_(counting_, Stage::kSandbox) {}

  void AddQ(std::string_view body, const Identity& who = ValidatedAdmin()) {
    auto done = trivia_.AddQuestion(who, J(body));
    ASSERT_TRUE(done.has_value()) << body << ": " << ErrorText(done);
  }
  json::value AddOpt(std::string_view qid, std::string_view option,
                     const Identity& who = ValidatedAdmin()) {
    auto done = trivia_.AddOption(who, qid, J(option));
    EXPECT_TRUE(done.has_value()) << option << ": " << ErrorText(done);
    return done ? J(*done) : json::value();
  }
  void State(std::string_view qid, std::string_view to, std::string_view winner = {}) {
    auto done = trivia_.SetState(ValidatedAdmin(), qid, to, winner);
    ASSERT_TRUE(done.has_value()) << qid << " -> " << to << ": " << ErrorText(done);
    EXPECT_EQ(*done, to);
  }
  void VoteOk(const Identity& who, std::string_view qid, std::string_view oid) {
    auto done = trivia_.Vote(who, qid, oid);
    ASSERT_TRUE(done.has_value()) << who.ViewerKey() << " " << qid << "=" << oid << ": "
                                  << ErrorText(done);
  }
  json::value Questions(const Identity& who) {
    auto text = trivia_.ReadQuestions(who);
    EXPECT_TRUE(text.has_value()) << ErrorText(text);
    return text ? J(*text) : json::value();
  }
  json::value Question(const Identity& who, std::string_view qid) {
    auto text = trivia_.ReadQuestion(who, qid);
    EXPECT_TRUE(text.has_value()) << ErrorText(text);
    return text ? J(*text) : json::value();
  }
  json::value Board() {
    auto text = trivia_.ReadLeaderboard(Viewer("100", "reader"));
    EXPECT_TRUE(text.has_value()) << ErrorText(text);
    return text ? J(*text) : json::value();
  }
  std::string Team(const Identity& who) {
    auto team = trivia_.JoinedTeam(who);
    EXPECT_TRUE(team.has_value()) << ErrorText(team);
    return team.value_or("?");
  }
  // A question "q" with options a, b, c, unlocked.
  void OpenQuestion(std::string_view qid = "q") {
    AddQ(std::string(R"({"id":")") + std::string(qid) +
         R"(","name":"Q","short_name":"q","description":"d","options":[)"
         R"({"id":"a","name":"A","short_name":"a","description":""},)"
         R"({"id":"b","name":"B","short_name":"b","description":""},)"
         R"({"id":"c","name":"C","short_name":"c","description":""}]})");
    State(qid, "state-unlocked");
  }
  static void ExpectError(const Result<void>& r, Errc code, std::string_view reason) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, reason);
  }
  template <class T>
  static void ExpectError(const Result<T>& r, Errc code, std::string_view reason) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, reason);
  }
  // Every key of the store (for "nothing left behind" checks).
  size_t KeysUnder(std::string_view prefix) {
    auto all = store_.Scan(prefix, {}, 100000);
    EXPECT_TRUE(all.has_value());
    return all ? all->size() : 0;
  }

  FakeClock clock_;
  storage::MemoryStore store_;
  CountingStore counting_;
  TriviaService trivia_;
};

// ---------------------------------------------------------------------------------------------
// Roles and editing

TEST_F(TriviaServiceTest, EditorsAreValidatedAdminBackendAndOwnerBroadcaster) {
  EXPECT_TRUE(IsTriviaEditor(ValidatedAdmin()));
  EXPECT_TRUE(IsTriviaEditor(Backend()));
  EXPECT_TRUE(IsTriviaEditor(Owner()));
  EXPECT_FALSE(IsTriviaEditor(Admin()));
  EXPECT_FALSE(IsTriviaEditor(Broadcaster("100")));
  EXPECT_FALSE(IsTriviaEditor(Viewer("100", "v1")));

  AddQ(R"({"id":"q1","name":"n"})", Backend());
  AddQ(R"({"id":"q2","name":"n"})", Owner());
  for (const Identity& who : {Admin(), Broadcaster("100"), Viewer("100", "v1")}) {
    ExpectError(trivia_.AddQuestion(who, J(R"({"id":"q3"})")), Errc::kForbidden, kRefused);
    ExpectError(trivia_.RemoveQuestion(who, "q1"), Errc::kForbidden, kRefused);
    ExpectError(trivia_.AddOption(who, "q1", J(R"({"id":"o"})")), Errc::kForbidden, kRefused);
    ExpectError(trivia_.RemoveOption(who, "q1", "o"), Errc::kForbidden, kRefused);
    ExpectError(trivia_.SetState(who, "q1", "state-unlocked", ""), Errc::kForbidden, kRefused);
  }
  json::value all = Questions(Backend());
  EXPECT_EQ(all, J(R"({"questions":[
    {"id":"q1","name":"n","short_name":"","description":"","options":[],"state":"state-inactive"},
    {"id":"q2","name":"n","short_name":"","description":"","options":[],"state":"state-inactive"}]})"));
  // Admin and backend cannot vote or join: they have no team.
  ExpectError(trivia_.Vote(Backend(), "q1", "o"), Errc::kForbidden, kRefused);
  ExpectError(trivia_.JoinTeam(ValidatedAdmin()), Errc::kForbidden, kRefused);
}

TEST_F(TriviaServiceTest, AddReplacesFieldsAndOptionsEditReturnQuestion) {
  AddQ(R"({"id":"q","name":"Old","short_name":"o","description":"d","image":"http://i",
           "order":3,"state":"state-results","results":{"x":1},"extra":true})");
  // state, results and unknown members are ignored: a new question is inactive.
  EXPECT_EQ(Question(Backend(), "q"), J(R"({"id":"q","name":"Old","short_name":"o",
      "description":"d","image":"http://i","order":3,"options":[],"state":"state-inactive"})"));

  json::value q = AddOpt("q", R"({"id":"a","name":"A","short_name":"a","description":"x"})");
  EXPECT_EQ(q, J(R"({"id":"q","name":"Old","short_name":"o","description":"d",
      "image":"http://i","order":3,"options":[{"id":"a","name":"A","short_name":"a",
      "description":"x"}],"state":"state-inactive"})"));
  AddOpt("q", R"({"id":"b","name":"B","short_name":"b","description":"","order":2})");
  // The same option id replaces its fields in place.
  q = AddOpt("q", R"({"id":"a","name":"A2","short_name":"a2","description":"y","image":"u"})");
  EXPECT_EQ(q.at("options"), J(R"([{"id":"a","name":"A2","short_name":"a2","description":"y",
      "image":"u"},{"id":"b","name":"B","short_name":"b","description":"","order":2}])"));

  // Re-adding the question replaces its fields and keeps options when the body has none.
  AddQ(R"({"id":"q","name":"New","short_name":"n","description":"e"})");
  q = Question(Backend(), "q");
  EXPECT_EQ(q.at("name"), "New");
  EXPECT_FALSE(q.as_object().contains("image"));
  EXPECT_FALSE(q.as_object().contains("order"));
  EXPECT_EQ(q.at("options").as_array().size(), 2u);
  // With options it replaces them.
  AddQ(R"({"id":"q","name":"New","options":[{"id":"z","name":"Z"}]})");
  EXPECT_EQ(Question(Backend(), "q").at("options"),
            J(R"([{"id":"z","name":"Z","short_name":"","description":""}])"));

  // Removing an option returns the question.
  AddOpt("q", R"({"id":"y"})");
  auto removed = trivia_.RemoveOption(Backend(), "q", "z");
  ASSERT_TRUE(removed.has_value()) << ErrorText(removed);
  EXPECT_EQ(J(*removed).at("options"),
            J(R"([{"id":"y","name":"","short_name":"","description":""}])"));
  ExpectError(trivia_.RemoveOption(Backend(), "q", "z"), Errc::kNotFound, "Not Found");
  ExpectError(trivia_.RemoveOption(Backend(), "nope", "y"), Errc::kNotFound, "Not Found");
  ExpectError(trivia_.AddOption(Backend(), "nope", J(R"({"id":"y"})")), Errc::kNotFound,
              "Not Found");
  // Integer ids are accepted as their decimal text.
  AddQ(R"({"id":7,"name":"seven"})");
  EXPECT_EQ(Question(Backend(), "7").at("id"), "7");
}

TEST_F(TriviaServiceTest, MalformedInputIsRefusedAndChangesNothing) {
  AddQ(R"({"id":"q","name":"n"})");
  const std::string before = *trivia_.ReadQuestions(Backend());
  ExpectError(trivia_.AddQuestion(Backend(), J("[]")), Errc::kInvalidArgument,
              "Malformed input body");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"name":"n"})")), Errc::kInvalidArgument,
              "question id required");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"q","name":5})")), Errc::kInvalidArgument,
              "Malformed input body");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"q","order":"x"})")),
              Errc::kInvalidArgument, "Malformed input body");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"q","options":{}})")),
              Errc::kInvalidArgument, "Malformed input body");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"q","options":[{"id":"a"},{"id":"a"}]})")),
              Errc::kInvalidArgument, "duplicate option id");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"a\u0001b"})")), Errc::kInvalidArgument,
              "question id contains control characters");
  ExpectError(trivia_.AddQuestion(Backend(), json::object{{"id", std::string(65, 'x')}}),
              Errc::kInvalidArgument, "question id is too long");
  ExpectError(
      trivia_.AddQuestion(Backend(), json::object{{"id", "q"}, {"name", std::string(257, 'x')}}),
      Errc::kInvalidArgument, "question name is too long");
  ExpectError(trivia_.AddOption(Backend(), "q", J("null")), Errc::kInvalidArgument,
              "Malformed input body");
  ExpectError(trivia_.AddOption(Backend(), "q", J(R"({"name":"x"})")), Errc::kInvalidArgument,
              "option id required");
  ExpectError(trivia_.AddOption(Backend(), "q", J(R"({"id":"o","description":[]})")),
              Errc::kInvalidArgument, "Malformed input body");
  EXPECT_EQ(*trivia_.ReadQuestions(Backend()), before);
}

TEST_F(TriviaServiceTest, LimitsQuestionsAndOptions) {
  for (int i = 0; i < 64; ++i) AddQ(R"({"id":"q)" + std::to_string(i) + R"("})");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"q64"})")), Errc::kInvalidArgument,
              "Too many questions");
  // Replacing an existing question is still allowed at the limit.
  AddQ(R"({"id":"q0","name":"renamed"})");
  EXPECT_EQ(Questions(Backend()).at("questions").as_array().size(), 64u);
  // Removing one makes room.
  ASSERT_TRUE(trivia_.RemoveQuestion(Backend(), "q5").has_value());
  AddQ(R"({"id":"q64"})");
  json::array order = Questions(Backend()).at("questions").as_array();
  EXPECT_EQ(order[0].at("id"), "q0");
  EXPECT_EQ(order[5].at("id"), "q6");
  EXPECT_EQ(order[63].at("id"), "q64");

  for (int i = 0; i < 32; ++i) AddOpt("q1", R"({"id":"o)" + std::to_string(i) + R"("})");
  ExpectError(trivia_.AddOption(Backend(), "q1", J(R"({"id":"o32"})")), Errc::kInvalidArgument,
              "Too many options");
  AddOpt("q1", R"({"id":"o31","name":"replace is fine"})");
  json::array many;
  for (int i = 0; i < 33; ++i) many.push_back(json::object{{"id", "o" + std::to_string(i)}});
  ExpectError(trivia_.AddQuestion(Backend(), json::object{{"id", "q2"}, {"options", many}}),
              Errc::kInvalidArgument, "Too many options");
  EXPECT_EQ(Question(Backend(), "q1").at("options").as_array().size(), 32u);
  EXPECT_EQ(Question(Backend(), "q2").at("options").as_array().size(), 0u);
}

TEST_F(TriviaServiceTest, RemoveQuestion) {
  OpenQuestion("q");
  VoteOk(Viewer("100", "v1"), "q", "a");
  ASSERT_TRUE(trivia_.RemoveQuestion(Backend(), "q").has_value());
  ExpectError(trivia_.RemoveQuestion(Backend(), "q"), Errc::kNotFound, "Not Found");
  EXPECT_EQ(Questions(Backend()), J(R"({"questions":[]})"));
  // Its votes are gone from the store; the team membership (extension-wide) stays.
  EXPECT_EQ(KeysUnder(std::string("tr\x1fsandbox\x1f"
                                  "ext1\x1fg\x1f")),
            0u);
  EXPECT_EQ(Team(Viewer("200", "v1")), "100");
  // Re-created with the same id it starts empty.
  OpenQuestion("q");
  EXPECT_EQ(Question(Viewer("100", "v1"), "q").at("results"),
            J(R"({"counts":{"a":0,"b":0,"c":0},"percentages":{"a":0,"b":0,"c":0}})"));
}

// ---------------------------------------------------------------------------------------------
// State machine

TEST_F(TriviaServiceTest, StateMachineTransitions) {
  const std::vector<std::string> states = {"state-inactive", "state-unlocked", "state-locked",
                                           "state-results"};
  // legal[from][to]; same-state transitions are no-ops (results -> results re-declares).
  const bool legal[4][4] = {{true, true, false, false},
                            {true, true, true, false},
                            {true, true, true, true},
                            {true, false, false, true}};
  auto reach = [&](const std::string& qid, int state) {
    AddQ(R"({"id":")" + qid + R"(","options":[{"id":"a"},{"id":"b"}]})");
    const int path[] = {1, 2, 3};
    for (int i = 0; i < state; ++i) {
      State(qid, states[path[i]], path[i] == 3 ? "a" : "");
    }
  };
  int n = 0;
  for (int from = 0; from < 4; ++from) {
    for (int to = 0; to < 4; ++to) {
      const std::string qid = "t" + std::to_string(n++);
      reach(qid, from);
      SCOPED_TRACE(states[from] + " -> " + states[to]);
      auto r = trivia_.SetState(Backend(), qid, states[to], "b");
      if (legal[from][to]) {
        ASSERT_TRUE(r.has_value()) << ErrorText(r);
        EXPECT_EQ(*r, states[to]);
        EXPECT_EQ(Question(Backend(), qid).at("state"), json::value(states[to]));
      } else {
        ExpectError(r, Errc::kInvalidArgument, "invalid transition");
        EXPECT_EQ(Question(Backend(), qid).at("state"), json::value(states[from]));
      }
    }
  }
  AddQ(R"({"id":"w","options":[{"id":"a"}]})");
  State("w", "state-unlocked");
  State("w", "state-locked");
  ExpectError(trivia_.SetState(Backend(), "w", "state-results", ""), Errc::kInvalidArgument,
              "winner required");
  ExpectError(trivia_.SetState(Backend(), "w", "state-results", "zz"), Errc::kInvalidArgument,
              "winner is not an option of the question");
  ExpectError(trivia_.SetState(Backend(), "w", "state-open", ""), Errc::kInvalidArgument,
              "invalid transition");
  ExpectError(trivia_.SetState(Backend(), "none", "state-locked", ""), Errc::kNotFound,
              "Not Found");
  EXPECT_EQ(Question(Backend(), "w").at("state"), "state-locked");
  State("w", "state-results", "a");
  EXPECT_EQ(Question(Backend(), "w").at("results").at("winner"), "a");
}

TEST_F(TriviaServiceTest, ViewersNeverSeeInactiveQuestions) {
  AddQ(R"({"id":"hidden","options":[{"id":"a"}]})");
  OpenQuestion("open");
  const Identity v = Viewer("100", "v1");
  json::value list = Questions(v).at("questions");
  ASSERT_EQ(list.as_array().size(), 1u);
  EXPECT_EQ(list.as_array()[0].at("id"), "open");
  ExpectError(trivia_.ReadQuestion(v, "hidden"), Errc::kNotFound, "Not Found");
  ExpectError(trivia_.ReadQuestion(Broadcaster("100"), "hidden"), Errc::kNotFound, "Not Found");
  ExpectError(trivia_.ReadQuestion(Admin(), "hidden"), Errc::kNotFound, "Not Found");
  ExpectError(trivia_.Vote(v, "hidden", "a"), Errc::kNotFound, "Not Found");
  ExpectError(trivia_.ReadQuestion(v, "missing"), Errc::kNotFound, "Not Found");
  EXPECT_EQ(Questions(Owner()).at("questions").as_array().size(), 2u);
  // Editors see no results on inactive questions.
  EXPECT_FALSE(Question(Backend(), "hidden").as_object().contains("results"));
}

// ---------------------------------------------------------------------------------------------
// Votes, results, teams

TEST_F(TriviaServiceTest, VotesOnlyWhileUnlockedLatestWinsExactCounts) {
  AddQ(R"({"id":"q","options":[{"id":"a"},{"id":"b"},{"id":"c"}]})");
  const Identity v1 = Viewer("100", "v1"), v2 = Viewer("100", "v2"), v3 = Viewer("200", "v3");
  ExpectError(trivia_.Vote(v1, "q", "a"), Errc::kNotFound, "Not Found");  // inactive: hidden
  State("q", "state-unlocked");
  VoteOk(v1, "q", "a");
  VoteOk(v2, "q", "a");
  VoteOk(v3, "q", "b");
  VoteOk(v1, "q", "c");  // latest wins: a -> c
  VoteOk(v1, "q", "c");  // same vote again: nothing changes
  ExpectError(trivia_.Vote(v2, "q", "zz"), Errc::kInvalidArgument, "unacceptable vote");
  ExpectError(trivia_.Vote(v2, "q", ""), Errc::kInvalidArgument, "unacceptable vote");
  ExpectError(trivia_.Vote(v2, "none", "a"), Errc::kNotFound, "Not Found");
  EXPECT_EQ(Question(v1, "q").at("results"), J(R"({"you":"c","counts":{"a":1,"b":1,"c":1},
                  "percentages":{"a":0.3333333333333333,"b":0.3333333333333333,
                                 "c":0.3333333333333333}})"));
  State("q", "state-locked");
  ExpectError(trivia_.Vote(v2, "q", "b"), Errc::kInvalidArgument, "poll is closed");
  State("q", "state-unlocked");
  VoteOk(v2, "q", "b");
  State("q", "state-locked");
  State("q", "state-results", "b");
  ExpectError(trivia_.Vote(v1, "q", "b"), Errc::kInvalidArgument, "poll is closed");
  EXPECT_EQ(Question(v2, "q").at("results"),
            J(R"({"you":"b","winner":"b","counts":{"a":0,"b":2,"c":1},
                  "percentages":{"a":0,"b":0.6666666666666666,"c":0.3333333333333333}})"));
  // No "you" for someone who did not vote.
  EXPECT_EQ(Question(Viewer("100", "v9"), "q").at("results"),
            J(R"({"winner":"b","counts":{"a":0,"b":2,"c":1},
                  "percentages":{"a":0,"b":0.6666666666666666,"c":0.3333333333333333}})"));
  // Anonymous viewers vote with their opaque id.
  State("q", "state-inactive");
  State("q", "state-unlocked");
  VoteOk(Viewer("100", ""), "q", "a");
  EXPECT_EQ(Question(Viewer("100", ""), "q").at("results").at("you"), "a");
  // A reset discarded every earlier vote.
  EXPECT_EQ(Question(v1, "q").at("results"),
            J(R"({"counts":{"a":1,"b":0,"c":0},"percentages":{"a":1,"b":0,"c":0}})"));
}

TEST_F(TriviaServiceTest, VoteIsOneApply) {
  OpenQuestion("q");
  const Identity v = Viewer("100", "v1");
  int before = counting_.applies.load();
  VoteOk(v, "q", "a");  // first vote: also fixes the team, still one batch
  EXPECT_EQ(counting_.applies.load(), before + 1);
  VoteOk(v, "q", "b");
  EXPECT_EQ(counting_.applies.load(), before + 2);
  VoteOk(v, "q", "b");  // unchanged: no write
  EXPECT_EQ(counting_.applies.load(), before + 2);
}

TEST_F(TriviaServiceTest, TeamIsFixedAtFirstVoteOrJoin) {
  OpenQuestion("q1");
  OpenQuestion("q2");
  EXPECT_EQ(Team(Viewer("100", "v1")), "");
  VoteOk(Viewer("100", "v1"), "q1", "a");
  EXPECT_EQ(Team(Viewer("100", "v1")), "100");
  EXPECT_EQ(Team(Viewer("200", "v1")), "100");  // the same viewer watching another channel
  // Joining again from another channel keeps the first team.
  auto joined = trivia_.JoinTeam(Viewer("200", "v1"));
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(*joined, "100");
  // Joining before voting fixes the team too.
  joined = trivia_.JoinTeam(Viewer("200", "v2"));
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(*joined, "200");
  VoteOk(Viewer("100", "v2"), "q1", "b");
  EXPECT_EQ(Team(Viewer("100", "v2")), "200");
  // Broadcasters are always on their own channel's team and write nothing.
  joined = trivia_.JoinTeam(Broadcaster("300"));
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(*joined, "300");
  EXPECT_EQ(Team(Broadcaster("300")), "300");
  ExpectError(trivia_.JoinTeam(Viewer("", "v5")), Errc::kInvalidArgument, "channel id required");
  ExpectError(trivia_.JoinTeam(Backend()), Errc::kForbidden, kRefused);
  EXPECT_EQ(Team(Backend()), "");
}

TEST_F(TriviaServiceTest, BroadcasterVoteIsSeparateFromViewerCounts) {
  OpenQuestion("q");
  VoteOk(Broadcaster("100"), "q", "a");
  VoteOk(Broadcaster("100"), "q", "b");
  VoteOk(Viewer("100", "v1"), "q", "a");
  EXPECT_EQ(Question(Broadcaster("100"), "q").at("results"),
            J(R"({"you":"b","counts":{"a":1,"b":0,"c":0},"percentages":{"a":1,"b":0,"c":0}})"));
  // The owner broadcaster (an editor) votes like any broadcaster.
  VoteOk(Owner(), "q", "c");
  EXPECT_EQ(Question(Owner(), "q").at("results").at("you"), "c");
}

TEST_F(TriviaServiceTest, RemovingOptionsOnlyWhileInactive) {
  OpenQuestion("q");
  VoteOk(Viewer("100", "v1"), "q", "a");
  const std::string before = *trivia_.ReadQuestion(Backend(), "q");
  ExpectError(trivia_.RemoveOption(Backend(), "q", "a"), Errc::kInvalidArgument,
              "options can only be removed while the question is state-inactive");
  ExpectError(trivia_.AddQuestion(Backend(), J(R"({"id":"q","options":[{"id":"a"}]})")),
              Errc::kInvalidArgument,
              "options can only be removed while the question is state-inactive");
  EXPECT_EQ(*trivia_.ReadQuestion(Backend(), "q"), before);
  // Adding an option while unlocked is fine.
  json::value q = AddOpt("q", R"({"id":"d"})");
  EXPECT_EQ(q.at("results").at("counts"), J(R"({"a":1,"b":0,"c":0,"d":0})"));
}

// ---------------------------------------------------------------------------------------------
// Leaderboard (spec 12 item 18, provisional formula; docs/api/trivia.md)

TEST_F(TriviaServiceTest, LeaderboardExactScoresTwoTeamsTwoQuestions) {
  AddQ(R"({"id":"q1","options":[{"id":"x"},{"id":"y"}]})");
  AddQ(R"({"id":"q2","options":[{"id":"p"},{"id":"q"}]})");
  AddQ(R"({"id":"q3","options":[{"id":"m"}]})");  // never resolved: not on the board
  State("q1", "state-unlocked");
  State("q2", "state-unlocked");
  State("q3", "state-unlocked");
  // Team 100: a1..a4 vote, a5 only joins (team size 5).
  VoteOk(Viewer("100", "a1"), "q1", "x");
  VoteOk(Viewer("100", "a2"), "q1", "y");
  VoteOk(Viewer("100", "a2"), "q1", "x");  // re-vote: counts once, for x
  VoteOk(Viewer("100", "a3"), "q1", "y");
  VoteOk(Viewer("100", "a4"), "q1", "x");
  ASSERT_TRUE(trivia_.JoinTeam(Viewer("100", "a5")).has_value());
  VoteOk(Broadcaster("100"), "q1", "x");
  VoteOk(Viewer("100", "a1"), "q2", "q");
  VoteOk(Viewer("200", "a2"), "q2", "p");  // watching 200 now, still team 100
  VoteOk(Broadcaster("100"), "q2", "p");
  VoteOk(Viewer("100", "a1"), "q3", "m");
  // Team 200: b1, b2.
  VoteOk(Viewer("200", "b1"), "q1", "x");
  VoteOk(Viewer("200", "b2"), "q1", "y");
  VoteOk(Broadcaster("200"), "q1", "y");
  VoteOk(Viewer("200", "b1"), "q2", "q");
  VoteOk(Viewer("200", "b2"), "q2", "q");
  VoteOk(Broadcaster("200"), "q2", "q");
  // Before any winner: every team with members, no questions, score 0.
  EXPECT_EQ(Board(), J(R"({"leaderboard":[
      {"team_id":"100","combined_score":0,"questions":{}},
      {"team_id":"200","combined_score":0,"questions":{}}]})"));
  for (const char* q : {"q1", "q2", "q3"}) State(q, "state-locked");
  State("q1", "state-results", "x");
  State("q2", "state-results", "q");
  // 100/q1: 3 of 4 correct = 0.75, 4 of 5 members, broadcaster right: 750 + 750 = 1500.
  // 100/q2: 1 of 2 = 0.5, 2 of 5, broadcaster wrong: 500.            total 2000.
  // 200/q1: 1 of 2 = 0.5, 2 of 2, broadcaster wrong: 500.
  // 200/q2: 2 of 2 = 1, broadcaster right: 1000 + 1000 = 2000.       total 2500.
  EXPECT_EQ(Board(), J(R"({"leaderboard":[
    {"team_id":"200","combined_score":2500,"questions":{
      "q1":{"question_id":"q1","broadcaster_correct":false,"team_participation":1,
            "team_participants":2,"percent_correct":0.5,"team_votes":2,"score_values":[500,0]},
      "q2":{"question_id":"q2","broadcaster_correct":true,"team_participation":1,
            "team_participants":2,"percent_correct":1,"team_votes":2,
            "score_values":[1000,1000]}}},
    {"team_id":"100","combined_score":2000,"questions":{
      "q1":{"question_id":"q1","broadcaster_correct":true,"team_participation":0.8,
            "team_participants":4,"percent_correct":0.75,"team_votes":4,
            "score_values":[750,750]},
      "q2":{"question_id":"q2","broadcaster_correct":false,"team_participation":0.4,
            "team_participants":2,"percent_correct":0.5,"team_votes":2,
            "score_values":[500,0]}}}]})"));
  // Re-declaring q2's winner as p flips it: 100/q2 = 0.5*1000*2 = 1000 (total 2500),
  // 200/q2 = 0 (total 500).
  State("q2", "state-results", "p");
  json::value board = Board();
  EXPECT_EQ(board.at("leaderboard").at(0).at("team_id"), "100");
  EXPECT_EQ(board.at("leaderboard").at(0).at("combined_score"), json::value(2500));
  EXPECT_EQ(board.at("leaderboard").at(1).at("combined_score"), json::value(500));
  // Resetting q1 takes it off the board.
  State("q1", "state-inactive");
  board = Board();
  EXPECT_EQ(board.at("leaderboard").at(0).at("combined_score"), json::value(1000));
  EXPECT_FALSE(board.at("leaderboard").at(0).at("questions").as_object().contains("q1"));
  // The exact serialized form uses plain decimals.
  auto text = trivia_.ReadLeaderboard(Viewer("100", "r"));
  ASSERT_TRUE(text.has_value());
  EXPECT_NE(text->find("\"combined_score\":1000,"), std::string::npos) << *text;
  EXPECT_NE(text->find("\"team_participation\":0.4,"), std::string::npos) << *text;
}

TEST_F(TriviaServiceTest, SerializeJsonPlainNumbers) {
  EXPECT_EQ(SerializeJson(J(R"({"a":0.75,"b":1500.0,"c":[1,"x\"",true,null],"d":{}})")),
            R"({"a":0.75,"b":1500,"c":[1,"x\"",true,null],"d":{}})");
}

// ---------------------------------------------------------------------------------------------
// Concurrency

TEST_F(TriviaServiceTest, ConcurrentVotesAndRevotesAreExact) {
  OpenQuestion("q");
  constexpr int kThreads = 8;
  constexpr int kViewers = 64;  // each thread owns 8 viewers, but all threads also share some
  constexpr int kRounds = 200;
  const char* options[] = {"a", "b", "c"};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  // Thread t votes for viewer (t + k*kThreads) % kViewers and for shared viewer "s<k%4>"; the
  // final vote of a viewer is the last one applied, whatever the interleaving.
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        int v = (t + r * kThreads) % kViewers;
        std::string channel = v % 2 ? "100" : "200";
        if (!trivia_.Vote(Viewer(channel, "v" + std::to_string(v)), "q", options[(t + r) % 3])) {
          failures.fetch_add(1);
        }
        if (!trivia_.Vote(Viewer("300", "s" + std::to_string(r % 4)), "q", options[t % 3])) {
          failures.fetch_add(1);
        }
        if (!trivia_.JoinTeam(Viewer("400", "v" + std::to_string(v)))) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Expected counts from each viewer's own final vote (read back per viewer).
  std::map<std::string, int64_t> expected{{"a", 0}, {"b", 0}, {"c", 0}};
  std::map<std::string, std::map<std::string, int64_t>> by_team;
  std::vector<Identity> voters;
  for (int v = 0; v < kViewers; ++v) voters.push_back(Viewer("x", "v" + std::to_string(v)));
  for (int s = 0; s < 4; ++s) voters.push_back(Viewer("x", "s" + std::to_string(s)));
  for (const auto& who : voters) {
    json::value results = Question(who, "q").at("results");
    ASSERT_TRUE(results.as_object().contains("you")) << who.user_id;
    std::string you(results.at("you").as_string());
    ++expected[you];
    ++by_team[Team(who)][you];
  }
  json::value counts = Question(Backend(), "q").at("results").at("counts");
  EXPECT_EQ(counts, json::value(json::object{
                        {"a", expected["a"]}, {"b", expected["b"]}, {"c", expected["c"]}}));
  EXPECT_EQ(expected["a"] + expected["b"] + expected["c"], kViewers + 4);
  // Team counters match too (leaderboard after a winner).
  State("q", "state-locked");
  State("q", "state-results", "a");
  json::value board = Board();
  int64_t members = 0;
  for (const auto& team : board.at("leaderboard").as_array()) {
    std::string id(team.at("team_id").as_string());
    const json::value& q = team.at("questions").at("q");
    int64_t votes = 0;
    for (const auto& [opt, n] : by_team[id]) votes += n;
    EXPECT_EQ(q.at("team_votes"), json::value(votes)) << id;
    EXPECT_EQ(q.at("team_participation"), json::value(1)) << id;  // every member voted
    members += votes;
  }
  EXPECT_EQ(members, kViewers + 4);
  EXPECT_EQ(Team(Viewer("x", "s0")), "300");
}

TEST_F(TriviaServiceTest, ConcurrentCreationsStopAtExactly64) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 12;  // 96 distinct ids for 64 places
  std::atomic<int> created{0};
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        json::object q{{"id", "t" + std::to_string(t) + "-" + std::to_string(i)}};
        for (;;) {  // a 409 (retries exhausted) is the caller's cue to try again
          auto r = trivia_.AddQuestion(Backend(), q);
          if (r) {
            created.fetch_add(1);
          } else if (r.error().code == Errc::kConflict) {
            continue;
          } else if (r.error().message == "Too many questions") {
            refused.fetch_add(1);
          } else {
            other.fetch_add(1);
          }
          break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), 64);
  EXPECT_EQ(refused.load(), kThreads * kPerThread - 64);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(Questions(Backend()).at("questions").as_array().size(), 64u);
  EXPECT_EQ(KeysUnder(std::string("tr\x1fsandbox\x1f"
                                  "ext1\x1fq\x1f")),
            64u);
}

}  // namespace
}  // namespace medkit::core::trivia
