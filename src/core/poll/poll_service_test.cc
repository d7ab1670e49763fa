// PollService (spec 5.8) on the memory store and on RocksDB, with a FakeClock: exact statistics
// for vote / re-vote / delete sequences, the count multiplier, modifiers, the multi-vote rules,
// the poll windows, global vs channel scope, 7-day expiry and generation restarts, logs that
// survive DELETE, events, and concurrency (many threads voting on one poll must give exactly
// the statistics of what each viewer last sent).
#include "core/poll/poll_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"

namespace medkit::core::poll {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using auth::Identity;
using auth::Role;

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

Identity Who(Role role, std::string_view channel = "chan1", std::string_view user = "user1") {
  Identity id;
  id.client_id = "ext1";
  id.role = role;
  id.channel_id = std::string(channel);
  id.user_id = std::string(user);
  id.opaque_user_id = user.empty() ? "Aanon" : "U" + std::string(user);
  return id;
}
Identity Viewer(std::string_view user, std::string_view channel = "chan1") {
  return Who(Role::kViewer, channel, user);
}
Identity Broadcaster(std::string_view channel = "chan1") {
  return Who(Role::kBroadcaster, channel, channel);
}
Identity Backend(std::string_view channel = "chan1") { return Who(Role::kBackend, channel, ""); }
Identity Admin(bool validated) {
  Identity id = Who(Role::kAdmin, "chan1", "admin1");
  id.validated_admin = validated;
  return id;
}

template <class T>
std::string ErrorText(const Result<T>& r) {
  return r ? std::string("ok") : r.error().message;
}

// The reference: statistics computed entry by entry from each viewer's holdings.
struct Holding {
  std::map<int64_t, int64_t> units;
  int64_t adds = 0;
};
PollStats Expected(const std::map<std::string, Holding>& viewers) {
  PollStats s;
  for (const auto& [viewer, h] : viewers) {
    const int64_t w = std::max<int64_t>(0, 1 + h.adds);
    for (const auto& [v, u] : h.units) {
      for (int64_t k = 0; k < w * u; ++k) {
        ++s.count;
        s.sum += v;
        s.sum_squares += v * v;
        if (v >= 0 && v < kSpecificSize) ++s.specific[static_cast<size_t>(v)];
      }
    }
  }
  return s;
}
// Two-pass sample standard deviation over the same entries.
double ReferenceStdDev(const std::map<std::string, Holding>& viewers) {
  std::vector<double> xs;
  for (const auto& [viewer, h] : viewers) {
    const int64_t w = std::max<int64_t>(0, 1 + h.adds);
    for (const auto& [v, u] : h.units) xs.insert(xs.end(), static_cast<size_t>(w * u), double(v));
  }
  if (xs.size() < 2) return 0;
  double mean = 0;
  for (double x : xs) mean += x;
  mean /= double(xs.size());
  double ss = 0;
  for (double x : xs) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / double(xs.size() - 1));
}

enum class Engine { kMemory, kRocksDb };

class PollServiceTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void Open(PollLimits limits = {}) {
    service_.reset();
    if (!store_) {
      if (GetParam() == Engine::kRocksDb) {
        dir_ = fs::temp_directory_path() /
               ("poll-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
        fs::remove_all(dir_);
        storage::RocksDbOptions options;
        options.path = dir_.string();
        auto db = storage::RocksDbStore::Open(options, clock_);
        ASSERT_TRUE(db.has_value()) << ErrorText(db);
        store_ = std::move(*db);
      } else {
        store_ = std::make_unique<storage::MemoryStore>(clock_);
      }
    }
    service_ = std::make_unique<PollService>(*store_, clock_, auth::Stage::kSandbox, limits, &bus_);
  }

  PollStats Stats(std::string_view poll = "p", const Identity& who = Viewer("reader")) {
    auto view = service_->Get(who, poll);
    EXPECT_TRUE(view.has_value()) << ErrorText(view);
    return view ? view->stats : PollStats{};
  }
  void VoteOk(const Identity& who, int64_t value, int64_t count = 1, std::string_view poll = "p") {
    auto r = service_->Vote(who, poll, value, count);
    ASSERT_TRUE(r.has_value()) << ErrorText(r);
  }
  void ExpectError(const Result<VoteView>& r, Errc code, std::string_view reason) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, reason);
  }
  void ExpectError(const Result<void>& r, Errc code, std::string_view reason) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, reason);
  }
  Result<void> Configure(std::string_view poll, std::string_view config_json,
                         const Identity& who = Broadcaster()) {
    return service_->Configure(who, poll, json::parse(config_json));
  }
  // Number of viewer records stored for the channel poll p (stale ones included).
  size_t RecordCount(std::string_view poll = "p") {
    std::string prefix = std::string("p\x1fsandbox\x1f") + "ext1\x1f" + "chan1\x1f" +
                         std::string(poll) + "\x1fv\x1f";
    auto all = store_->Scan(prefix, "", 1'000'000);
    EXPECT_TRUE(all.has_value());
    return all ? all->size() : 0;
  }

  static inline int counter_ = 0;
  FakeClock clock_;
  fs::path dir_;
  std::unique_ptr<storage::Store> store_;
  events::EventBus bus_;
  std::unique_ptr<PollService> service_;
};

INSTANTIATE_TEST_SUITE_P(Engines, PollServiceTest,
                         ::testing::Values(Engine::kMemory, Engine::kRocksDb),
                         [](const auto& info) {
                           return info.param == Engine::kMemory ? "Memory" : "RocksDb";
                         });

TEST_P(PollServiceTest, UnknownPollReadsAsZeroStatistics) {
  auto view = service_->Get(Viewer("a"), "nothing-here");
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->stats, PollStats{});
  EXPECT_FALSE(view->vote.has_value());
  EXPECT_EQ(VoteViewJson(*view),
            "{\"stddev\":0,\"mean\":0,\"sum\":0,\"count\":0,\"specific\":[0,0,0,0,0,0,0,0,0,0,0,"
            "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"decay\":{}}");
}

// The hand-written renderer (to_chars into one buffer) keeps fmt's number text: integral
// doubles as integers, others shortest round-trip in fixed notation where fmt uses it.
TEST(PollRenderingTest, StatsJsonFieldsNumbers) {
  PollStats s;
  s.count = 3;
  s.sum = 4;  // mean 1.333..., sample stddev of {0, 2, 2} = 1.1547...
  s.sum_squares = 8;
  s.specific[0] = 1;
  s.specific[2] = 2;
  s.specific[31] = INT64_MIN;
  EXPECT_EQ(StatsJsonFields(s),
            "\"stddev\":1.1547005383792515,\"mean\":1.3333333333333333,\"sum\":4,\"count\":3,"
            "\"specific\":[1,0,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
            "-9223372036854775808]");
  PollStats tiny;
  tiny.count = 10000;
  tiny.sum = 1;
  tiny.sum_squares = 1;
  EXPECT_TRUE(StatsJsonFields(tiny).starts_with("\"stddev\":0.01,\"mean\":0.0001,\"sum\":1,"))
      << StatsJsonFields(tiny);
  PollStats negative;
  negative.count = 2;
  negative.sum = -3;
  negative.sum_squares = 5;  // {-1, -2}
  EXPECT_TRUE(VoteViewJson(VoteView{negative, -2})
                  .starts_with("{\"stddev\":0.7071067811865476,\"mean\":-1.5,\"sum\":-3,"));
  EXPECT_TRUE(VoteViewJson(VoteView{negative, -2}).ends_with("0],\"decay\":{},\"vote\":-2}"));
}

TEST_P(PollServiceTest, LaterVoteReplacesEarlierOne) {
  std::map<std::string, Holding> ref;
  VoteOk(Viewer("a"), 1);
  VoteOk(Viewer("b"), 1);
  ref["a"].units = {{1, 1}};
  ref["b"].units = {{1, 1}};
  EXPECT_EQ(Stats(), Expected(ref));
  auto r = service_->Vote(Viewer("a"), "p", 3, 1);
  ASSERT_TRUE(r.has_value());
  ref["a"].units = {{3, 1}};
  EXPECT_EQ(r->stats, Expected(ref));
  EXPECT_EQ(r->vote, 3);
  EXPECT_EQ(r->stats.count, 2);
  EXPECT_EQ(r->stats.sum, 4);
  EXPECT_EQ(r->stats.specific[1], 1);
  EXPECT_EQ(r->stats.specific[3], 1);
  EXPECT_DOUBLE_EQ(r->stats.Mean(), 2.0);
  EXPECT_NEAR(r->stats.StdDev(), std::sqrt(2.0), 1e-12);
  // Each viewer reads their own vote; a viewer who never voted has none.
  EXPECT_EQ(service_->Get(Viewer("b"), "p")->vote, 1);
  EXPECT_EQ(service_->Get(Viewer("a"), "p")->vote, 3);
  EXPECT_FALSE(service_->Get(Viewer("c"), "p")->vote.has_value());
  // Voting the same value again changes nothing.
  VoteOk(Viewer("a"), 3);
  EXPECT_EQ(Stats(), Expected(ref));
}

TEST_P(PollServiceTest, StatisticsFollowTheDefinition) {
  std::mt19937 rng(7);
  std::map<std::string, Holding> ref;
  for (int i = 0; i < 400; ++i) {
    std::string viewer = "v" + std::to_string(rng() % 60);
    int64_t value = static_cast<int64_t>(rng() % 257) - 128;
    int64_t count = static_cast<int64_t>(rng() % 31);  // 0 means 1
    VoteOk(Viewer(viewer), value, count);
    ref[viewer].units = {{value, count == 0 ? 1 : count}};
  }
  PollStats stats = Stats();
  EXPECT_EQ(stats, Expected(ref));
  EXPECT_NEAR(stats.StdDev(), ReferenceStdDev(ref), 1e-9);
  EXPECT_NEAR(stats.Mean(), double(stats.sum) / double(stats.count), 1e-12);
}

TEST_P(PollServiceTest, CountMultiplierAndBounds) {
  auto r = service_->Vote(Viewer("a"), "p", 4, 3);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->stats.count, 3);
  EXPECT_EQ(r->stats.sum, 12);
  EXPECT_EQ(r->stats.sum_squares, 48);
  EXPECT_EQ(r->stats.specific[4], 3);
  VoteOk(Viewer("b"), 2, 0);  // 0 means 1
  EXPECT_EQ(Stats().count, 4);
  VoteOk(Viewer("c"), 128, 30);
  VoteOk(Viewer("d"), -128, 1);
  const PollStats before = Stats();
  EXPECT_EQ(before.count, 35);
  EXPECT_EQ(before.sum, 12 + 2 + 128 * 30 - 128);
  ExpectError(service_->Vote(Viewer("e"), "p", 129, 1), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(service_->Vote(Viewer("e"), "p", -129, 1), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(service_->Vote(Viewer("e"), "p", 1, 31), Errc::kInvalidArgument,
              "Count out of bounds");
  ExpectError(service_->Vote(Viewer("e"), "p", 1, -1), Errc::kInvalidArgument,
              "Count out of bounds");
  EXPECT_EQ(Stats(), before);
}

TEST_P(PollServiceTest, ModifiersWeightAUsersVotes) {
  std::map<std::string, Holding> ref;
  VoteOk(Viewer("a"), 5);
  VoteOk(Viewer("b"), 2);
  ref["a"].units = {{5, 1}};
  ref["b"].units = {{2, 1}};
  ASSERT_TRUE(service_->AddModifier(Broadcaster(), "p", "a", 2).has_value());
  ref["a"].adds = 2;  // weight 3: existing vote re-weighted
  EXPECT_EQ(Stats(), Expected(ref));
  EXPECT_EQ(Stats().count, 4);
  VoteOk(Viewer("a"), 7, 2);  // 2 units × weight 3
  ref["a"].units = {{7, 2}};
  EXPECT_EQ(Stats(), Expected(ref));
  EXPECT_EQ(Stats().specific[7], 6);
  // Modifiers accumulate; the weight never goes below 0.
  ASSERT_TRUE(service_->AddModifier(Backend(), "p", "a", -10).has_value());
  ref["a"].adds = -8;
  EXPECT_EQ(Stats(), Expected(ref));
  EXPECT_EQ(Stats().count, 1);
  // A modifier given before the user votes applies to their first vote.
  ASSERT_TRUE(service_->AddModifier(Admin(false), "p", "c", 1).has_value());
  VoteOk(Viewer("c"), 1);
  ref["c"] = Holding{{{1, 1}}, 1};
  EXPECT_EQ(Stats(), Expected(ref));
  EXPECT_EQ(service_->Get(Viewer("c"), "p")->vote, 1);
  // Refusals change nothing.
  const PollStats before = Stats();
  ExpectError(service_->AddModifier(Viewer("a"), "p", "a", 5), Errc::kForbidden, kRefused);
  ExpectError(service_->AddModifier(Backend(), "p", "", 5), Errc::kInvalidArgument,
              "user required");
  ExpectError(service_->AddModifier(Backend(), "p", "a", 2'000'000), Errc::kInvalidArgument,
              "Invalid body");
  EXPECT_EQ(Stats(), before);
}

TEST_P(PollServiceTest, MultiVoteRules) {
  ASSERT_TRUE(Configure("p", R"({"totalVotesPerUser":5,"distinctOptionsPerUser":2,
                                 "votesPerOption":3})")
                  .has_value());
  std::map<std::string, Holding> ref;
  VoteOk(Viewer("a"), 1);
  VoteOk(Viewer("a"), 1, 2);
  VoteOk(Viewer("a"), 2);
  ref["a"].units = {{1, 3}, {2, 1}};
  EXPECT_EQ(Stats(), Expected(ref));
  EXPECT_EQ(service_->Get(Viewer("a"), "p")->vote, 2);
  const PollStats before = Stats();
  ExpectError(service_->Vote(Viewer("a"), "p", 3, 1), Errc::kInvalidArgument,
              "unacceptable vote");  // a third distinct option
  ExpectError(service_->Vote(Viewer("a"), "p", 1, 1), Errc::kInvalidArgument,
              "unacceptable vote");  // votesPerOption 3
  EXPECT_EQ(Stats(), before);
  VoteOk(Viewer("a"), 2);  // 5 units in all
  ExpectError(service_->Vote(Viewer("a"), "p", 2, 1), Errc::kInvalidArgument,
              "unacceptable vote");  // totalVotesPerUser 5
  ExpectError(service_->Vote(Viewer("b"), "p", 2, 6), Errc::kInvalidArgument,
              "Count out of bounds");  // more than totalVotesPerUser at once
  ref["a"].units = {{1, 3}, {2, 2}};
  EXPECT_EQ(Stats(), Expected(ref));
  // Back to one vote per viewer: the next vote replaces everything the viewer held.
  ASSERT_TRUE(Configure("p", R"({"totalVotesPerUser":1})").has_value());
  VoteOk(Viewer("a"), 9);
  ref["a"].units = {{9, 1}};
  EXPECT_EQ(Stats(), Expected(ref));
}

TEST_P(PollServiceTest, PollWindowsAndDisabled) {
  const int64_t now_s = clock_.NowSeconds();
  ASSERT_TRUE(Configure("p", R"({"startsAt":)" + std::to_string(now_s + 60) + R"(,"endsAt":)" +
                                 std::to_string(now_s + 120) + "}")
                  .has_value());
  auto config = service_->GetConfig(Viewer("a"), "p");
  ASSERT_TRUE(config.has_value() && config->has_value());
  EXPECT_EQ((*config)->StatusAt(clock_.NowSeconds()), PollStatus::kPending);
  ExpectError(service_->Vote(Viewer("a"), "p", 1, 1), Errc::kInvalidArgument, "poll is closed");
  clock_.AdvanceMs(60'000);
  EXPECT_EQ((*config)->StatusAt(clock_.NowSeconds()), PollStatus::kActive);
  VoteOk(Viewer("a"), 1);
  clock_.AdvanceMs(60'000);
  EXPECT_EQ((*config)->StatusAt(clock_.NowSeconds()), PollStatus::kExpired);
  ExpectError(service_->Vote(Viewer("b"), "p", 1, 1), Errc::kInvalidArgument, "poll is closed");
  EXPECT_EQ(Stats().count, 1);  // results stay readable
  EXPECT_NE(PollConfigJson(**config, clock_.NowSeconds()).find("\"status\":\"expired\""),
            std::string::npos);

  ASSERT_TRUE(Configure("q", R"({"disabled":true})").has_value());
  ExpectError(service_->Vote(Viewer("a"), "q", 1, 1), Errc::kInvalidArgument, "poll is closed");
  ASSERT_TRUE(Configure("q", R"({"disabled":false,"endsIn":10})").has_value());
  VoteOk(Viewer("a"), 1, 1, "q");
  clock_.AdvanceMs(10'000);
  ExpectError(service_->Vote(Viewer("a"), "q", 1, 1), Errc::kInvalidArgument, "poll is closed");
}

TEST_P(PollServiceTest, UserIdVotingRefusesAnonymousViewers) {
  ASSERT_TRUE(Configure("p", R"({"userIDVoting":true})").has_value());
  ExpectError(service_->Vote(Viewer(""), "p", 1, 1), Errc::kForbidden, "user id required");
  VoteOk(Viewer("a"), 1);
  EXPECT_EQ(Stats().count, 1);
  // Without the setting an opaque id is enough.
  VoteOk(Viewer(""), 1, 1, "q");
  EXPECT_EQ(Stats("q").count, 1);
  // A token with no viewer key at all cannot vote.
  Identity none = Backend();
  none.opaque_user_id.clear();
  ExpectError(service_->Vote(none, "q", 1, 1), Errc::kInvalidArgument, "user id required");
}

TEST_P(PollServiceTest, ConfigLimits) {
  auto bad = [&](std::string_view poll, const std::string& config) {
    SCOPED_TRACE(config);
    ExpectError(Configure(poll, config), Errc::kInvalidArgument, "Invalid body");
  };
  bad("p", R"({"prompt":")" + std::string(257, 'x') + "\"}");
  ASSERT_TRUE(Configure("p", R"({"prompt":")" + std::string(256, 'x') + "\"}").has_value());
  std::string options33 = "[";
  for (int i = 0; i < 33; ++i) options33 += (i ? ",\"o" : "\"o") + std::to_string(i) + "\"";
  bad("p", R"({"options":)" + options33 + "]}");
  bad("p", R"({"options":[")" + std::string(129, 'x') + "\"]}");
  bad("p", R"({"options":[1]})");
  bad("p", R"({"userData":")" + std::string(1023, 'x') + "\"}");  // 1025 bytes encoded
  ASSERT_TRUE(Configure("p", R"({"userData":")" + std::string(1022, 'x') + "\"}").has_value());
  bad("p", R"({"startsAt":200,"endsAt":100})");
  bad("p", R"({"global":true})");
  ASSERT_TRUE(Configure("global-x", R"({"global":true})").has_value());
  bad("p", R"({"distinctOptionsPerUser":259})");
  bad("p", R"({"totalVotesPerUser":0})");
  bad("p", R"({"totalVotesPerUser":1025})");
  bad("p", R"({"votesPerOption":0})");
  bad("p", R"({"disabled":"yes"})");
  bad("p", R"([1])");
  // The stored config is the last good one.
  auto config = service_->GetConfig(Viewer("a"), "p");
  ASSERT_TRUE(config.has_value() && config->has_value());
  EXPECT_EQ((*config)->user_data_json, "\"" + std::string(1022, 'x') + "\"");
  EXPECT_EQ((*config)->prompt, "");  // a POST replaces the whole configuration
  // Only privileged roles configure.
  ExpectError(Configure("p", "{}", Viewer("a")), Errc::kForbidden, kRefused);
}

TEST_P(PollServiceTest, PollIdRules) {
  VoteOk(Viewer("a"), 1, 1, "");
  EXPECT_EQ(Stats("default").count, 1);
  VoteOk(Viewer("a"), 1, 1, std::string(64, 'a'));
  VoteOk(Viewer("a"), 1, 1, "a-b_c$9");
  ExpectError(service_->Vote(Viewer("a"), std::string(65, 'a'), 1, 1), Errc::kInvalidArgument,
              "Invalid poll id");
  for (std::string_view id : {"a.b", "a b", "a/b",
                              "a\x1f"
                              "b",
                              "é"}) {
    ExpectError(service_->Vote(Viewer("a"), id, 1, 1), Errc::kInvalidArgument, "Invalid poll id");
  }
}

TEST_P(PollServiceTest, GlobalAndChannelScopes) {
  events::EventRecorder recorder(bus_);
  VoteOk(Viewer("a", "chan1"), 1, 1, "global-p");
  VoteOk(Viewer("b", "chan2"), 2, 1, "global-p");
  VoteOk(Viewer("a", "chan1"), 5, 1, "local");
  VoteOk(Viewer("b", "chan2"), 6, 1, "local");
  EXPECT_EQ(Stats("global-p", Viewer("z", "chan3")).count, 2);
  EXPECT_EQ(Stats("local", Viewer("z", "chan1")).sum, 5);
  EXPECT_EQ(Stats("local", Viewer("z", "chan2")).sum, 6);
  EXPECT_EQ(Stats("local", Viewer("z", "chan3")).count, 0);
  // Another extension does not see either.
  Identity other = Viewer("z", "chan1");
  other.client_id = "ext2";
  EXPECT_EQ(service_->Get(other, "global-p")->stats.count, 0);
  // Events: global polls go extension-wide (channel ""), others to their channel.
  auto global_events = recorder.Named("vote_update:global-p");
  ASSERT_EQ(global_events.size(), 2u);
  EXPECT_EQ(global_events[1].channel_id, "");
  auto local_events = recorder.Named("vote_update:local");
  ASSERT_EQ(local_events.size(), 2u);
  EXPECT_EQ(local_events[0].channel_id, "chan1");
  EXPECT_EQ(local_events[1].channel_id, "chan2");
  // A channel poll needs a channel.
  ExpectError(service_->Vote(Viewer("a", ""), "local", 1, 1), Errc::kInvalidArgument,
              "channel id required");
  VoteOk(Viewer("a", ""), 1, 1, "global-p");
}

TEST_P(PollServiceTest, VoteAndDeletePublishVoteUpdate) {
  events::EventRecorder recorder(bus_);
  VoteOk(Viewer("a"), 2);
  VoteOk(Viewer("b"), 4);
  ASSERT_TRUE(service_->Delete(Broadcaster(), "p").has_value());
  auto events = recorder.Named("vote_update:p");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].client_id, "ext1");
  EXPECT_EQ(events[0].channel_id, "chan1");
  json::value second = json::parse(events[1].payload_json);
  EXPECT_EQ(second.at("id"), "p");
  EXPECT_EQ(second.at("stats").at("count"), 2);
  EXPECT_EQ(second.at("stats").at("sum"), 6);
  EXPECT_EQ(second.at("stats").at("mean"), 3);
  EXPECT_EQ(second.at("stats").at("specific").as_array().size(), 32u);
  EXPECT_EQ(second.at("stats").at("specific").at(4), 1);
  json::value cleared = json::parse(events[2].payload_json);
  EXPECT_EQ(cleared.at("stats").at("count"), 0);
}

TEST_P(PollServiceTest, DeleteClearsVotesConfigAndModifiersButKeepsLogs) {
  ASSERT_TRUE(Configure("p", R"({"prompt":"q?","totalVotesPerUser":2})").has_value());
  ASSERT_TRUE(service_->AddModifier(Backend(), "p", "a", 4).has_value());
  VoteOk(Viewer("a"), 1);
  clock_.AdvanceMs(5);
  VoteOk(Viewer("b"), 2);
  EXPECT_EQ(Stats().count, 6);
  // Refused deletes change nothing.
  ExpectError(service_->Delete(Viewer("a"), "p"), Errc::kForbidden, kRefused);
  EXPECT_EQ(Stats().count, 6);

  ASSERT_TRUE(service_->Delete(Broadcaster(), "p").has_value());
  EXPECT_EQ(Stats(), PollStats{});
  EXPECT_FALSE(service_->Get(Viewer("a"), "p")->vote.has_value());
  auto config = service_->GetConfig(Viewer("a"), "p");
  ASSERT_TRUE(config.has_value());
  EXPECT_FALSE(config->has_value());
  // A later vote recreates the poll from scratch: default config, no modifier.
  VoteOk(Viewer("a"), 3);
  EXPECT_EQ(Stats().count, 1);
  EXPECT_EQ(Stats().sum, 3);
  // Logs keep all three votes, oldest first.
  auto logs = service_->Logs(Backend(), "p");
  ASSERT_TRUE(logs.has_value()) << ErrorText(logs);
  ASSERT_EQ(logs->size(), 3u);
  json::value first = json::parse((*logs)[0].json);
  EXPECT_EQ(first.at("identifier"), "a");
  EXPECT_EQ(first.at("opaque"), "Ua");
  EXPECT_EQ(first.at("value"), 1);
  EXPECT_EQ(first.at("timestamp"), clock_.NowMs() - 5);
  EXPECT_EQ(json::parse((*logs)[1].json).at("identifier"), "b");
  EXPECT_EQ(json::parse((*logs)[2].json).at("value"), 3);
  // Deleting a poll that does not exist is fine.
  ASSERT_TRUE(service_->Delete(Backend(), "never").has_value());
}

TEST_P(PollServiceTest, LogsAreForBackendAndValidatedAdmins) {
  VoteOk(Viewer(""), 7);  // anonymous viewer: identifier falls back to the opaque id
  auto logs = service_->Logs(Admin(true), "p");
  ASSERT_TRUE(logs.has_value());
  ASSERT_EQ(logs->size(), 1u);
  EXPECT_EQ(json::parse((*logs)[0].json).at("identifier"), "Aanon");
  auto refused = service_->Logs(Admin(false), "p");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::kForbidden);
  EXPECT_EQ(refused.error().message, kRefused);
  EXPECT_FALSE(service_->Logs(Broadcaster(), "p").has_value());
  EXPECT_FALSE(service_->Logs(Viewer("a"), "p").has_value());
}

TEST_P(PollServiceTest, DataExpiresSevenDaysAfterTheLastVote) {
  VoteOk(Viewer("a"), 5);
  VoteOk(Viewer("b"), 6);
  clock_.AdvanceMs(7 * kDayMs - 1);
  EXPECT_EQ(Stats().count, 2);
  VoteOk(Viewer("b"), 7);  // refreshes the poll
  clock_.AdvanceMs(7 * kDayMs - 1);
  EXPECT_EQ(Stats().count, 2);
  EXPECT_EQ(service_->Get(Viewer("a"), "p")->vote, 5);
  EXPECT_EQ(service_->Logs(Backend(), "p")->size(), 1u);  // the first two logs expired
  clock_.AdvanceMs(1);
  EXPECT_EQ(Stats(), PollStats{});
  EXPECT_FALSE(service_->Get(Viewer("a"), "p")->vote.has_value());
  EXPECT_EQ(service_->Logs(Backend(), "p")->size(), 0u);
  // The next vote starts a new generation: a's old vote does not come back.
  VoteOk(Viewer("b"), 1);
  EXPECT_EQ(Stats().count, 1);
  VoteOk(Viewer("a"), 2);
  EXPECT_EQ(Stats().count, 2);
  EXPECT_EQ(Stats().sum, 3);
}

TEST_P(PollServiceTest, LongRunningPollKeepsUntouchedCounters) {
  // a votes once on day 0; b keeps the poll alive for 60 days. specific[5] and a's record are
  // untouched all that time and must still be exact.
  VoteOk(Viewer("a"), 5);
  for (int day = 1; day <= 60; day += 3) {
    clock_.AdvanceMs(3 * kDayMs);
    VoteOk(Viewer("b"), day % 2 ? 6 : 7);
  }
  PollStats stats = Stats();
  EXPECT_EQ(stats.count, 2);
  EXPECT_EQ(stats.specific[5], 1);
  VoteOk(Viewer("a"), 9);  // replaces 5 (the record is still there)
  stats = Stats();
  EXPECT_EQ(stats.count, 2);
  EXPECT_EQ(stats.specific[5], 0);
  EXPECT_EQ(stats.specific[9], 1);
}

TEST_P(PollServiceTest, StaleRecordsAreCleanedUpInBoundedSteps) {
  PollLimits limits;
  limits.cleanup_batch = 16;
  Open(limits);
  for (int i = 0; i < 100; ++i) VoteOk(Viewer("v" + std::to_string(i)), i % 32);
  EXPECT_EQ(RecordCount(), 100u);
  ASSERT_TRUE(service_->Delete(Backend(), "p").has_value());
  EXPECT_EQ(RecordCount(), 100u - 16u);  // DELETE ran one step
  // Later votes continue the clean-up; current records are never removed.
  for (int i = 0; i < 10; ++i) VoteOk(Viewer("new" + std::to_string(i)), 1);
  EXPECT_EQ(RecordCount(), 10u);
  EXPECT_EQ(Stats().count, 10);
  VoteOk(Viewer("v3"), 4);
  EXPECT_EQ(Stats().count, 11);
  EXPECT_EQ(Stats().specific[3], 0);
}

TEST_P(PollServiceTest, CreatePollResetsVotesConfigurePollKeepsThem) {
  PollRef ref{"ext1", "chan1", "p"};
  VoteOk(Viewer("a"), 1);
  PollConfig config;
  config.prompt = "Color?";
  config.options = {"Blue", "Red"};
  ASSERT_TRUE(service_->ConfigurePoll(ref, config).has_value());
  auto snap = service_->ReadPoll(ref);
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(snap->stats.count, 1);
  ASSERT_TRUE(snap->config.has_value());
  EXPECT_EQ(*snap->config, config);
  EXPECT_EQ(snap->status, PollStatus::kActive);
  ASSERT_TRUE(service_->CreatePoll(ref, config).has_value());
  snap = service_->ReadPoll(ref);
  EXPECT_EQ(snap->stats.count, 0);
  EXPECT_EQ(*snap->config, config);
  // The REST view of the same poll.
  VoteOk(Viewer("a"), 1);
  EXPECT_EQ(service_->ReadPoll(ref)->stats.count, 1);
  EXPECT_EQ(service_->GetConfig(Viewer("b"), "p")->value().options, config.options);
}

// A new PollService on the same store (a restart): the sums come back from the store, each
// record is read on first use, and a re-vote after the restart moves exactly one unit.
TEST_P(PollServiceTest, StateSurvivesARestartOfTheService) {
  std::map<std::string, Holding> ref;
  for (int i = 0; i < 200; ++i) {
    std::string viewer = "v" + std::to_string(i);
    VoteOk(Viewer(viewer), i % 7, 1 + i % 3);
    ref[viewer].units = {{i % 7, 1 + i % 3}};
  }
  ASSERT_TRUE(service_->AddModifier(Broadcaster(), "p", "v5", 2).has_value());
  ref["v5"].adds = 2;
  PollConfig config;
  config.prompt = "Again?";
  ASSERT_TRUE(service_->ConfigurePoll(PollRef{"ext1", "chan1", "p"}, config).has_value());
  const PollStats before = Stats();
  ASSERT_EQ(before, Expected(ref));

  Open();  // same store, empty memory
  EXPECT_EQ(service_->CachedRecords(), 0u);
  EXPECT_EQ(Stats(), before);
  EXPECT_EQ(service_->GetConfig(Viewer("x"), "p")->value().prompt, "Again?");
  EXPECT_EQ(service_->Get(Viewer("v10"), "p")->vote, 10 % 7);
  VoteOk(Viewer("v10"), 30);
  ref["v10"].units = {{30, 1}};
  VoteOk(Viewer("v5"), 1);  // keeps its modifier: weight 3
  ref["v5"].units = {{1, 1}};
  VoteOk(Viewer("new"), 2);
  ref["new"].units = {{2, 1}};
  EXPECT_EQ(Stats(), Expected(ref));
}

// With room for only a few records in memory, records are dropped and read back from the
// store when needed: the statistics stay exact and memory stays bounded.
TEST_P(PollServiceTest, EvictedRecordsAreReadBackAndStatisticsStayExact) {
  PollLimits limits;
  limits.max_cached_records = 40;
  limits.max_cached_polls = 4;
  Open(limits);
  std::map<std::string, std::map<std::string, Holding>> refs;  // poll -> viewer -> holding
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string poll = "q" + std::to_string(rng() % 6);
    std::string viewer = "v" + std::to_string(rng() % 120);
    int64_t value = static_cast<int64_t>(rng() % 32);
    VoteOk(Viewer(viewer), value, 1, poll);
    refs[poll][viewer].units = {{value, 1}};
    // Eviction runs before a poll is locked: at most one poll's growth beyond the bound.
    ASSERT_LE(service_->CachedRecords(), 40u + 120u);
  }
  for (const auto& [poll, ref] : refs) EXPECT_EQ(Stats(poll), Expected(ref)) << poll;
  Open();
  for (const auto& [poll, ref] : refs) EXPECT_EQ(Stats(poll), Expected(ref)) << poll;
}

// The stored sums always equal the sums recomputed from the stored viewer records.
TEST_P(PollServiceTest, StoredSumsEqualTheStoredRecords) {
  std::mt19937 rng(11);
  for (int i = 0; i < 500; ++i) {
    VoteOk(Viewer("v" + std::to_string(rng() % 80)), static_cast<int64_t>(rng() % 40) - 4,
           1 + static_cast<int64_t>(rng() % 3));
  }
  const PollStats live = Stats();
  Open();
  // Recompute from the records alone (each viewer's current vote after the restart).
  std::map<std::string, Holding> ref;
  std::string prefix = "p\x1fsandbox\x1f" "ext1\x1f" "chan1\x1f" "p\x1fv\x1f";
  auto records = store_->Scan(prefix, "", 1000);
  ASSERT_TRUE(records.has_value());
  EXPECT_EQ(records->size(), 80u);
  for (const auto& item : *records) {
    // "G|adds|last|value:units"
    std::string_view text = item.entry.value;
    auto last_bar = text.rfind('|');
    std::string_view units = text.substr(last_bar + 1);
    auto colon = units.find(':');
    Holding& h = ref[item.key];
    h.units[std::stoll(std::string(units.substr(0, colon)))] =
        std::stoll(std::string(units.substr(colon + 1)));
  }
  EXPECT_EQ(live, Expected(ref));
  EXPECT_EQ(Stats(), Expected(ref));
}

// Many threads, 10,000 viewers, votes and re-votes on one poll; every viewer belongs to one
// thread, so the last value each viewer sent is known. Then all threads race on the same
// 50 viewers: the statistics must equal the sum of the records that won.
TEST_P(PollServiceTest, ConcurrentVotesGiveExactStatistics) {
  constexpr int kThreads = 8;
  constexpr int kViewers = 10'000;
  std::vector<std::map<std::string, Holding>> per_thread(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t * 7919 + 1));
      std::vector<int> mine;
      for (int v = t; v < kViewers; v += kThreads) mine.push_back(v);
      const int ops = static_cast<int>(mine.size()) * 2;
      for (int i = 0; i < ops; ++i) {
        int v = i < static_cast<int>(mine.size()) ? mine[static_cast<size_t>(i)]
                                                  : mine[rng() % mine.size()];
        std::string viewer = "v" + std::to_string(v);
        int64_t value = static_cast<int64_t>(rng() % 40) - 4;
        int64_t count = 1 + static_cast<int64_t>(rng() % 3);
        auto r = service_->Vote(Viewer(viewer), "p", value, count);
        if (!r) {
          ++failures;
          continue;
        }
        per_thread[static_cast<size_t>(t)][viewer].units = {{value, count}};
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  std::map<std::string, Holding> ref;
  for (auto& m : per_thread) ref.insert(m.begin(), m.end());
  ASSERT_EQ(ref.size(), static_cast<size_t>(kViewers));
  PollStats stats = Stats();
  EXPECT_EQ(stats, Expected(ref));
  EXPECT_NEAR(stats.StdDev(), ReferenceStdDev(ref), 1e-9);

  // Same viewers from every thread at once.
  threads.clear();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t + 99));
      for (int i = 0; i < 500; ++i) {
        std::string viewer = "v" + std::to_string(rng() % 50);
        if (!service_->Vote(Viewer(viewer), "p", static_cast<int64_t>(rng() % 32), 1)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  for (int v = 0; v < 50; ++v) {
    std::string viewer = "v" + std::to_string(v);
    auto mine = service_->Get(Viewer(viewer), "p");
    ASSERT_TRUE(mine.has_value() && mine->vote.has_value());
    ref[viewer].units = {{*mine->vote, 1}};
  }
  EXPECT_EQ(Stats(), Expected(ref));
}

}  // namespace
}  // namespace medkit::core::poll
