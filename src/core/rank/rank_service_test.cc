// RankService (spec 5.7) on the memory store and on RocksDB, with a FakeClock: exact scores
// after replacements, the top-100 cut and its order, DELETE, expiry and generations, scoping,
// roles, limits, conflicts injected through a StoreWrapper, and a concurrent burst of answers
// whose final scores must equal those computed from each viewer's last answer.
#include "core/rank/rank_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"
#include "storage/store_wrapper.h"

namespace medkit::core::rank {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr int64_t kHourMs = 3600LL * 1000;
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

Identity Who(Role role, std::string channel = "chan1", std::string user = "u1",
             std::string client = "ext1") {
  Identity who;
  who.client_id = std::move(client);
  who.role = role;
  who.channel_id = std::move(channel);
  who.user_id = std::move(user);
  who.opaque_user_id = who.user_id.empty() ? "Aanon" : "U" + who.user_id;
  return who;
}

Identity Viewer(const std::string& user, std::string channel = "chan1") {
  return Who(Role::kViewer, std::move(channel), user);
}

// {"data":[...]} as a list of (key, score).
std::vector<std::pair<std::string, int64_t>> Scores(const Result<std::string>& text) {
  EXPECT_TRUE(text.has_value()) << (text ? "" : text.error().message);
  std::vector<std::pair<std::string, int64_t>> out;
  if (!text) return out;
  json::value v = json::parse(*text);
  for (const auto& item : v.at("data").as_array()) {
    EXPECT_EQ(item.as_object().size(), 2u);
    out.emplace_back(std::string(item.at("key").as_string()), item.at("score").as_int64());
  }
  return out;
}

using ScoreList = std::vector<std::pair<std::string, int64_t>>;

class RankTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "rocksdb") {
      dir_ = std::filesystem::temp_directory_path() /
             ("rank_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter_));
      std::filesystem::remove_all(dir_);
      storage::RocksDbOptions options;
      options.path = dir_.string();
      auto db = storage::RocksDbStore::Open(options, clock_);
      ASSERT_TRUE(db.has_value()) << db.error().message;
      store_ = std::move(*db);
    } else {
      store_ = std::make_unique<storage::MemoryStore>(clock_);
    }
    Make(Stage::kSandbox);
  }
  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Make(Stage stage, RankLimits limits = {}) {
    service_ = std::make_unique<RankService>(*store_, clock_, stage, limits);
  }

  // Answers and expects success; returns the "original" (empty when not replaced).
  std::string Answer(const Identity& who, std::string_view id, std::string_view key) {
    auto r = service_->Answer(who, id, key);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    if (!r) return "<error>";
    return r->replaced ? "was:" + r->original : "";
  }
  ScoreList Read(std::string_view id,
                 const Identity& who = Who(Role::kBroadcaster, "chan1", "chan1")) {
    return Scores(service_->Read(who, id));
  }

  static inline int counter_ = 0;
  FakeClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<RankService> service_;
};

INSTANTIATE_TEST_SUITE_P(Stores, RankTest, ::testing::Values("memory", "rocksdb"));

TEST_P(RankTest, EmptyRankReadsAsEmptyData) {
  EXPECT_EQ(*service_->Read(Who(Role::kAdmin), "empty"), R"({"data":[]})");
  EXPECT_EQ(*service_->Read(Who(Role::kAdmin), ""), R"({"data":[]})");
}

TEST_P(RankTest, ExactScoresAfterReplacements) {
  EXPECT_EQ(Answer(Viewer("a"), "q", "DOTA"), "");
  EXPECT_EQ(Answer(Viewer("b"), "q", "DOTA"), "");
  EXPECT_EQ(Answer(Viewer("c"), "q", "LoL"), "");
  EXPECT_EQ(Read("q"), (ScoreList{{"DOTA", 2}, {"LoL", 1}}));
  // b moves: one unit from DOTA to LoL.
  EXPECT_EQ(Answer(Viewer("b"), "q", "LoL"), "was:DOTA");
  EXPECT_EQ(Read("q"), (ScoreList{{"LoL", 2}, {"DOTA", 1}}));
  // a moves away: DOTA drops to 0 and disappears from the list.
  EXPECT_EQ(Answer(Viewer("a"), "q", "CS"), "was:DOTA");
  EXPECT_EQ(Read("q"), (ScoreList{{"LoL", 2}, {"CS", 1}}));
  // The same answer again: replaced (original reported), scores unchanged.
  EXPECT_EQ(Answer(Viewer("a"), "q", "CS"), "was:CS");
  EXPECT_EQ(Read("q"), (ScoreList{{"LoL", 2}, {"CS", 1}}));
  // Raw user input: case, spaces and unicode are distinct keys.
  EXPECT_EQ(Answer(Viewer("d"), "q", "lol"), "");
  EXPECT_EQ(Answer(Viewer("e"), "q", " LoL "), "");
  EXPECT_EQ(Answer(Viewer("f"), "q", "\xc3\xa9t\xc3\xa9"), "");
  EXPECT_EQ(Answer(Viewer("g"), "q", ""), "");
  EXPECT_EQ(
      Read("q"),
      (ScoreList{
          {"LoL", 2}, {"", 1}, {" LoL ", 1}, {"CS", 1}, {"lol", 1}, {"\xc3\xa9t\xc3\xa9", 1}}));
}

TEST_P(RankTest, ViewerKeyIsUserIdElseOpaqueId) {
  Identity shared = Viewer("42");
  Identity unshared = Viewer("");
  unshared.opaque_user_id = "U42";  // the same viewer before sharing identity
  EXPECT_EQ(Answer(shared, "q", "x"), "");
  EXPECT_EQ(Answer(unshared, "q", "y"), "");  // a different viewer key
  EXPECT_EQ(Read("q"), (ScoreList{{"x", 1}, {"y", 1}}));
  Identity anonymous = Viewer("");
  anonymous.opaque_user_id.clear();
  auto r = service_->Answer(anonymous, "q", "z");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "user id required");
}

TEST_P(RankTest, TopHundredByScoreThenKey) {
  // 130 keys: key k<i> gets (i % 7) + 1 viewers.
  std::map<std::string, int64_t> expected;
  int viewer = 0;
  for (int i = 0; i < 130; ++i) {
    char key[8];
    std::snprintf(key, sizeof(key), "k%03d", i);
    for (int n = 0; n <= i % 7; ++n) Answer(Viewer("v" + std::to_string(viewer++)), "big", key);
    expected[key] = i % 7 + 1;
  }
  ScoreList all(expected.begin(), expected.end());
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.second > b.second;  // map order = key ascending, kept for ties
  });
  all.resize(100);
  ScoreList got = Read("big");
  ASSERT_EQ(got.size(), 100u);
  EXPECT_EQ(got, all);
  EXPECT_EQ(got.front(), (std::pair<std::string, int64_t>{"k006", 7}));
}

TEST_P(RankTest, LimitedTopIsConfigurable) {
  RankLimits limits;
  limits.top = 2;
  Make(Stage::kSandbox, limits);
  Answer(Viewer("a"), "q", "b");
  Answer(Viewer("b"), "q", "a");
  Answer(Viewer("c"), "q", "c");
  Answer(Viewer("d"), "q", "c");
  EXPECT_EQ(Read("q"), (ScoreList{{"c", 2}, {"a", 1}}));
}

TEST_P(RankTest, DeleteForgetsEveryAnswer) {
  Answer(Viewer("a"), "q", "x");
  Answer(Viewer("b"), "q", "y");
  Answer(Viewer("a"), "other", "keep");
  ASSERT_TRUE(service_->Clear(Who(Role::kBroadcaster, "chan1", "chan1"), "q").has_value());
  EXPECT_EQ(Read("q"), ScoreList{});
  EXPECT_EQ(Read("other"), (ScoreList{{"keep", 1}}));
  // A new rank: a's earlier answer is gone, so it is not "replaced".
  EXPECT_EQ(Answer(Viewer("a"), "q", "z"), "");
  EXPECT_EQ(Read("q"), (ScoreList{{"z", 1}}));
  // Deleting an unknown rank is fine; admin and backend may delete too.
  EXPECT_TRUE(service_->Clear(Who(Role::kAdmin), "never").has_value());
  EXPECT_TRUE(service_->Clear(Who(Role::kBackend), "q").has_value());
  EXPECT_EQ(Read("q"), ScoreList{});
}

TEST_P(RankTest, ExpiresTwentyFourHoursAfterTheLastAnswer) {
  Answer(Viewer("a"), "q", "x");
  clock_.AdvanceMs(23 * kHourMs);
  Answer(Viewer("b"), "q", "y");   // keeps the whole rank alive, a's answer included
  clock_.AdvanceMs(23 * kHourMs);  // 46 h after a's answer
  EXPECT_EQ(Read("q"), (ScoreList{{"x", 1}, {"y", 1}}));
  EXPECT_EQ(Answer(Viewer("a"), "q", "y"), "was:x");
  EXPECT_EQ(Read("q"), (ScoreList{{"y", 2}}));
  clock_.AdvanceMs(24 * kHourMs - 1);
  EXPECT_EQ(Read("q"), (ScoreList{{"y", 2}}));
  clock_.AdvanceMs(1);  // exactly 24 h after the last answer
  EXPECT_EQ(Read("q"), ScoreList{});
  // The next answer starts a new generation: nothing of the old one comes back.
  EXPECT_EQ(Answer(Viewer("a"), "q", "z"), "");
  EXPECT_EQ(Read("q"), (ScoreList{{"z", 1}}));
  EXPECT_EQ(Answer(Viewer("b"), "q", "z"), "");
  EXPECT_EQ(Read("q"), (ScoreList{{"z", 2}}));
}

TEST_P(RankTest, LongLivedRankKeepsUntouchedRecordsAndCounters) {
  // Answers every 20 h for 20 days: a's single answer and its counter must survive.
  Answer(Viewer("a"), "q", "first");
  for (int i = 0; i < 24; ++i) {
    clock_.AdvanceMs(20 * kHourMs);
    Answer(Viewer("b"), "q", i % 2 ? "even" : "odd");
  }
  EXPECT_EQ(Read("q"), (ScoreList{{"even", 1}, {"first", 1}}));
  EXPECT_EQ(Answer(Viewer("a"), "q", "even"), "was:first");
  EXPECT_EQ(Read("q"), (ScoreList{{"even", 2}}));
}

TEST_P(RankTest, GenerationOutlivesTheDataTtlWhileInUse) {
  // 45 days of answers every 20 h: the generation key is refreshed, so the rank is never reset
  // and b's answer is always "replaced".
  Answer(Viewer("b"), "q", "k0");
  for (int i = 1; i <= 54; ++i) {
    clock_.AdvanceMs(20 * kHourMs);
    EXPECT_EQ(Answer(Viewer("b"), "q", "k" + std::to_string(i % 2)),
              "was:k" + std::to_string((i - 1) % 2))
        << i;
  }
  EXPECT_EQ(Read("q"), (ScoreList{{"k0", 1}}));
}

TEST_P(RankTest, ChannelScopeAndGlobalIds) {
  Answer(Viewer("a", "chan1"), "q", "one");
  Answer(Viewer("a", "chan2"), "q", "two");  // same viewer, other channel: another rank
  EXPECT_EQ(Read("q", Who(Role::kBroadcaster, "chan1", "chan1")), (ScoreList{{"one", 1}}));
  EXPECT_EQ(Read("q", Who(Role::kBroadcaster, "chan2", "chan2")), (ScoreList{{"two", 1}}));
  // global*: one rank for every channel; a viewer has one answer there.
  EXPECT_EQ(Answer(Viewer("a", "chan1"), "global-q", "g1"), "");
  EXPECT_EQ(Answer(Viewer("a", "chan2"), "global-q", "g2"), "was:g1");
  EXPECT_EQ(Answer(Viewer("b", "chan2"), "globalq", "g2"), "");
  EXPECT_EQ(Read("global-q", Who(Role::kBroadcaster, "chan3", "chan3")), (ScoreList{{"g2", 1}}));
  EXPECT_EQ(Read("global-q", Who(Role::kBackend, "", "")), (ScoreList{{"g2", 1}}));
  // Other extension: separate.
  EXPECT_EQ(Read("q", Who(Role::kBroadcaster, "chan1", "chan1", "ext2")), ScoreList{});
  // A channel-scoped id needs a channel.
  auto r = service_->Read(Who(Role::kBackend, "", ""), "q");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "channel id required");
}

TEST_P(RankTest, RolesPerStage) {
  Answer(Viewer("a"), "q", "x");
  for (Role role : {Role::kViewer, Role::kBroadcaster, Role::kAdmin, Role::kBackend}) {
    EXPECT_TRUE(service_->Read(Who(role), "q").has_value());  // sandbox: viewers may read
  }
  auto del = service_->Clear(Viewer("a"), "q");
  ASSERT_FALSE(del.has_value());
  EXPECT_EQ(del.error().code, Errc::kForbidden);
  EXPECT_EQ(del.error().message, kRefused);
  EXPECT_EQ(Read("q"), (ScoreList{{"x", 1}}));

  Make(Stage::kProduction);
  auto read = service_->Read(Viewer("a"), "q");
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, Errc::kForbidden);
  EXPECT_EQ(read.error().message, kRefused);
  // Stages are separate key spaces.
  EXPECT_EQ(Read("q"), ScoreList{});
  for (Role role : {Role::kViewer, Role::kBroadcaster, Role::kAdmin, Role::kBackend}) {
    EXPECT_TRUE(service_->Answer(Who(role, "chan1", "p" + std::to_string(int(role))), "q", "k")
                    .has_value());
  }
  EXPECT_EQ(Read("q"), (ScoreList{{"k", 4}}));
}

TEST_P(RankTest, Limits) {
  auto expect_400 = [](const auto& r, std::string_view message) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(r.error().message, message);
  };
  EXPECT_EQ(Answer(Viewer("a"), "q", std::string(128, 'k')), "");
  expect_400(service_->Answer(Viewer("a"), "q", std::string(129, 'k')), "rank key too long");
  EXPECT_EQ(Answer(Viewer("a"), std::string(64, 'i'), "k"), "");
  expect_400(service_->Answer(Viewer("a"), std::string(65, 'i'), "k"), "rank id too long");
  expect_400(service_->Read(Who(Role::kAdmin), std::string(65, 'i')), "rank id too long");
  expect_400(service_->Answer(Viewer("a"),
                              "q\x1f"
                              "x",
                              "k"),
             "rank id contains control characters");
  expect_400(service_->Clear(Who(Role::kAdmin), "q\n"), "rank id contains control characters");
  EXPECT_EQ(Read("q"), (ScoreList{{std::string(128, 'k'), 1}}));
  // Answers may hold any bytes, the separator included.
  EXPECT_EQ(Answer(Viewer("b"), "q",
                   "a\x1f"
                   "b"),
            "");
  EXPECT_EQ(Read("q"), (ScoreList{{"a\x1f"
                                   "b",
                                   1},
                                  {std::string(128, 'k'), 1}}));
}

TEST_P(RankTest, DefaultIdIsDefault) {
  Answer(Viewer("a"), "", "x");
  EXPECT_EQ(Read("default"), (ScoreList{{"x", 1}}));
}

// Fails the first `failures` Apply calls with kConflict (as a racing writer would).
class ConflictingStore final : public storage::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<storage::ApplyResult> Apply(const storage::WriteBatch& batch) override {
    if (failures.fetch_sub(1) > 0) return MakeError(Errc::kConflict, "injected");
    return StoreWrapper::Apply(batch);
  }
  std::atomic<int> failures{0};
};

TEST_P(RankTest, ConflictsAreRetriedAndBounded) {
  ConflictingStore conflicting(*store_);
  RankService service(conflicting, clock_, Stage::kSandbox, {});
  conflicting.failures = 5;
  ASSERT_TRUE(service.Answer(Viewer("a"), "q", "x").has_value());
  EXPECT_EQ(Read("q"), (ScoreList{{"x", 1}}));
  conflicting.failures = 1000;
  auto r = service.Answer(Viewer("a"), "q", "y");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kConflict);
  EXPECT_EQ(Read("q"), (ScoreList{{"x", 1}}));
}

TEST_P(RankTest, ConcurrentAnswersGiveExactScores) {
  constexpr int kThreads = 8;
  constexpr int kViewersPerThread = 40;
  constexpr int kRounds = 6;
  const std::vector<std::string> keys = {"red", "green", "blue", "cyan", "pink"};
  std::mutex mu;
  std::map<std::string, std::string> final_answer;  // viewer -> last answer applied
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int round = 0; round < kRounds; ++round) {
        for (int v = 0; v < kViewersPerThread; ++v) {
          // Viewers of this thread only: the last answer of each viewer is well defined.
          std::string viewer = "t" + std::to_string(t) + "v" + std::to_string(v);
          std::string key = keys[rng() % keys.size()];
          auto r = service_->Answer(Viewer(viewer), "burst", key);
          if (!r) {
            ++failures;
            continue;
          }
          if (round == 0 && r->replaced) ++failures;
          if (round > 0 && !r->replaced) ++failures;
          std::lock_guard lock(mu);
          if (round > 0 && r->original != final_answer[viewer]) ++failures;
          final_answer[viewer] = key;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::map<std::string, int64_t> expected;
  for (const auto& [viewer, key] : final_answer) ++expected[key];
  ScoreList want(expected.begin(), expected.end());
  std::stable_sort(want.begin(), want.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  EXPECT_EQ(Read("burst"), want);
  int64_t total = 0;
  for (const auto& [k, s] : Read("burst")) total += s;
  EXPECT_EQ(total, kThreads * kViewersPerThread);
}

TEST_P(RankTest, SameViewerRacingWithItselfStaysExact) {
  // Eight threads answer for the same 10 viewers at once; whatever order wins, each viewer
  // counts exactly once.
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string viewer = "v" + std::to_string(i % 10);
        if (!service_->Answer(Viewer(viewer), "self", "k" + std::to_string((i + t) % 3))) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  int64_t total = 0;
  for (const auto& [k, s] : Read("self")) total += s;
  EXPECT_EQ(total, 10);
}

TEST_P(RankTest, AnswersRacingWithDeleteLandInOneGeneration) {
  std::atomic<bool> stop{false};
  std::thread deleter([&] {
    while (!stop) {
      ASSERT_TRUE(service_->Clear(Who(Role::kAdmin), "race").has_value());
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        ASSERT_TRUE(
            service_
                ->Answer(Viewer("t" + std::to_string(t) + "v" + std::to_string(i % 5)), "race", "k")
                .has_value());
      }
    });
  }
  for (auto& th : threads) th.join();
  stop = true;
  deleter.join();
  // After the last delete: every score is between 0 and the number of distinct viewers, and the
  // rank stays consistent for the next answers.
  auto scores = Read("race");
  ASSERT_LE(scores.size(), 1u);
  if (!scores.empty()) EXPECT_LE(scores[0].second, 20);
  ASSERT_TRUE(service_->Clear(Who(Role::kAdmin), "race").has_value());
  for (int v = 0; v < 20; ++v) Answer(Viewer("w" + std::to_string(v)), "race", "k");
  EXPECT_EQ(Read("race"), (ScoreList{{"k", 20}}));
}

}  // namespace
}  // namespace medkit::core::rank
