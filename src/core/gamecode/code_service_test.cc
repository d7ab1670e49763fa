// CodeService (spec 5.10, 12 item 19) on a MemoryStore with a FakeClock: roles, body parsing
// and limits, marking, redeeming with exact eligibility, exhaustion, re-PUT (rename/append,
// holes), DELETE's distributed counts, expiry, and concurrent redeems that never hand a code
// out twice.
#include "core/gamecode/code_service.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "storage/memory_store.h"

namespace medkit::core::gamecode {
namespace {

using auth::Identity;
using auth::Role;
namespace json = boost::json;

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

Identity Who(Role role, std::string user = "u1", bool validated = false) {
  Identity id;
  id.client_id = "ext";
  id.role = role;
  id.channel_id = "chan";
  id.user_id = std::move(user);
  id.opaque_user_id = "U" + id.user_id;
  id.validated_admin = validated;
  return id;
}

std::vector<std::string> Codes(std::string_view prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(std::string(prefix) + std::to_string(i));
  return out;
}

class CodeServiceTest : public ::testing::Test {
 protected:
  CodeServiceTest() : store_(clock_) { Reset({}); }

  void Reset(CodeLimits limits) {
    service_ = std::make_unique<CodeService>(store_, clock_, auth::Stage::kSandbox, limits);
  }

  void PutSets(const std::vector<CodeSetUpload>& sets) {
    auto done = service_->Put(backend_, sets);
    ASSERT_TRUE(done) << done.error().message;
  }
  void Mark(std::vector<int> prizes, std::vector<int64_t> limits, std::vector<std::string> users) {
    auto done = service_->MarkFromList(backend_, MarkRequest{prizes, limits}, users);
    ASSERT_TRUE(done) << done.error().message;
  }
  std::vector<int64_t> Eligible(const std::string& user) {
    auto e = service_->Eligible(Who(Role::kViewer, user));
    EXPECT_TRUE(e);
    return e ? *e : std::vector<int64_t>{};
  }
  static std::vector<int64_t> Elig(std::map<int, int64_t> nonzero) {
    std::vector<int64_t> out(10, 0);
    for (auto [i, n] : nonzero) out[static_cast<size_t>(i)] = n;
    return out;
  }
  template <class T>
  static void ExpectError(const Result<T>& r, Errc code, std::string_view reason) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, reason);
  }

  FakeClock clock_;
  storage::MemoryStore store_;
  std::unique_ptr<CodeService> service_;
  Identity backend_ = Who(Role::kBackend, "owner");
};

TEST_F(CodeServiceTest, ManagementNeedsBackendOrValidatedAdmin) {
  const std::vector<CodeSetUpload> sets = {{0, "Hat", {"a", "b"}}};
  for (const Identity& who : {Who(Role::kViewer), Who(Role::kBroadcaster), Who(Role::kAdmin)}) {
    ExpectError(service_->Put(who, sets), Errc::kForbidden, kRefused);
    ExpectError(service_->Names(who), Errc::kForbidden, kRefused);
    ExpectError(service_->DeleteAll(who), Errc::kForbidden, kRefused);
    ExpectError(service_->MarkFromList(who, {{0}, {1}}, {"u1"}), Errc::kForbidden, kRefused);
    ExpectError(service_->MarkFromPoll(who, {}), Errc::kForbidden, kRefused);
  }
  EXPECT_EQ(Eligible("u1"), Elig({}));  // nothing changed
  ASSERT_TRUE(service_->Put(Who(Role::kAdmin, "a", true), sets));
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{"Hat"});
  EXPECT_EQ(*service_->Names(Who(Role::kAdmin, "a", true)), std::vector<std::string>{"Hat"});
}

TEST_F(CodeServiceTest, ParseUploadShapesAndLimits) {
  auto parse = [&](std::string_view text) { return service_->ParseUpload(json::parse(text)); };
  auto sets = parse(R"({"codes":[["c1","c2"],["c3"]],"names":["Pistol skin","Fancy Hat"]})");
  ASSERT_TRUE(sets);
  ASSERT_EQ(sets->size(), 2u);
  EXPECT_EQ((*sets)[0].index, 0);
  EXPECT_EQ((*sets)[0].name, "Pistol skin");
  EXPECT_EQ((*sets)[0].codes, (std::vector<std::string>{"c1", "c2"}));
  EXPECT_EQ((*sets)[1].index, 1);
  sets = parse(R"({"codes":[["x"]],"names":["n"],"indices":[9]})");
  ASSERT_TRUE(sets);
  EXPECT_EQ((*sets)[0].index, 9);

  const std::string code63(63, 'x'), code64(64, 'x');
  EXPECT_TRUE(parse(R"({"codes":[[")" + code63 + R"("]]})"));
  ExpectError(parse(R"({"codes":[[")" + code64 + R"("]]})"), Errc::kInvalidArgument,
              "Invalid code");
  ExpectError(parse(R"({"codes":[[""]]})"), Errc::kInvalidArgument, "Invalid code");
  ExpectError(parse(R"({"codes":[["a\u0001"]]})"), Errc::kInvalidArgument, "Invalid code");
  ExpectError(parse(R"({"codes":[[1]]})"), Errc::kInvalidArgument, "Invalid body");
  ExpectError(parse(R"({"codes":[["a"]],"indices":[10]})"), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(parse(R"({"codes":[["a"]],"indices":[-1]})"), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(parse(R"({"codes":[["a"],["b"]],"indices":[3,3]})"), Errc::kInvalidArgument,
              "Invalid body");
  ExpectError(parse(R"({"codes":[["a"],["b"]],"names":["x"]})"), Errc::kInvalidArgument,
              "Invalid body");
  ExpectError(parse(R"({"names":["x"]})"), Errc::kInvalidArgument, "Invalid body");
  ExpectError(parse(R"([1])"), Errc::kInvalidArgument, "Invalid body");
  ExpectError(parse(R"({"codes":[[],[],[],[],[],[],[],[],[],[],[]]})"), Errc::kInvalidArgument,
              "Too many code sets");
}

TEST_F(CodeServiceTest, SetSizeCapIsConfigurable) {
  CodeLimits limits;
  limits.max_codes_per_set = 5;
  Reset(limits);
  auto six = service_->ParseUpload(json::parse(R"({"codes":[["1","2","3","4","5","6"]]})"));
  ExpectError(six, Errc::kInvalidArgument, "Too many codes");
  PutSets({{0, "five", Codes("c", 5)}});
  // Appending past the cap is refused and changes nothing.
  ExpectError(service_->Put(backend_, {{0, "renamed", {"new"}}}), Errc::kInvalidArgument,
              "Too many codes");
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{"five"});
  // Codes it already has do not count: a re-PUT of the same codes is a rename.
  PutSets({{0, "renamed", Codes("c", 5)}});
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{"renamed"});
  EXPECT_EQ(*service_->DeleteAll(backend_), std::vector<int64_t>{0});
}

TEST_F(CodeServiceTest, MarkRedeemAndReadBack) {
  PutSets({{0, "Pistol skin", {"p0", "p1", "p2"}}, {3, "Hat", {"h0", "h1"}}});
  EXPECT_EQ(*service_->Names(backend_), (std::vector<std::string>{"Pistol skin", "", "", "Hat"}));
  Mark({0, 3}, {2, 1}, {"u1", "u2"});
  Mark({3}, {1}, {"u1", "u1"});  // listed twice: marked once
  EXPECT_EQ(Eligible("u1"), Elig({{0, 2}, {3, 2}}));
  EXPECT_EQ(Eligible("u2"), Elig({{0, 2}, {3, 1}}));
  EXPECT_EQ(Eligible("u3"), Elig({}));

  auto r = service_->Redeem(Who(Role::kViewer, "u1"), 0);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->code, "p0");
  EXPECT_EQ(r->all_prizes, std::vector<std::string>{"p0"});
  r = service_->Redeem(Who(Role::kViewer, "u2"), 0);
  EXPECT_EQ(r->code, "p1");
  r = service_->Redeem(Who(Role::kViewer, "u1"), 0);
  EXPECT_EQ(r->code, "p2");
  EXPECT_EQ(r->all_prizes, (std::vector<std::string>{"p0", "p2"}));
  EXPECT_EQ(Eligible("u1"), Elig({{0, 0}, {3, 2}}));

  // u1 has no claims of prize 0 left; u2 has one, but the set is exhausted.
  ExpectError(service_->Redeem(Who(Role::kViewer, "u1"), 0), Errc::kInvalidArgument,
              "not eligible");
  ExpectError(service_->Redeem(Who(Role::kViewer, "u2"), 0), Errc::kInvalidArgument,
              "no codes left");
  EXPECT_EQ(Eligible("u2"), Elig({{0, 1}, {3, 1}}));
  // Not eligible for a prize with codes; a prize without a set.
  ExpectError(service_->Redeem(Who(Role::kViewer, "u3"), 3), Errc::kInvalidArgument,
              "not eligible");
  Mark({5}, {1}, {"u3"});
  ExpectError(service_->Redeem(Who(Role::kViewer, "u3"), 5), Errc::kInvalidArgument,
              "no codes left");
  EXPECT_EQ(Eligible("u3"), Elig({{5, 1}}));
  ExpectError(service_->Redeem(Who(Role::kViewer, "u3"), 10), Errc::kInvalidArgument,
              "Value out of bounds");

  r = service_->Redeem(Who(Role::kBroadcaster, "u1"), 3);  // any role redeems for itself
  EXPECT_EQ(r->code, "h0");
  auto redeemed = service_->Redeemed(Who(Role::kViewer, "u1"));
  ASSERT_TRUE(redeemed);
  std::vector<std::vector<std::string>> want(10);
  want[0] = {"p0", "p2"};
  want[3] = {"h0"};
  EXPECT_EQ(*redeemed, want);
  want = std::vector<std::vector<std::string>>(10);
  want[0] = {"p1"};
  EXPECT_EQ(*service_->Redeemed(Who(Role::kViewer, "u2")), want);

  EXPECT_EQ(*service_->DeleteAll(backend_), (std::vector<int64_t>{3, 0, 0, 1}));
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{});
  EXPECT_EQ(*service_->DeleteAll(backend_), std::vector<int64_t>{});
  // Eligibility and redeemed codes outlive the sets.
  EXPECT_EQ(Eligible("u1"), Elig({{3, 1}}));
  ExpectError(service_->Redeem(Who(Role::kViewer, "u1"), 3), Errc::kInvalidArgument,
              "no codes left");
  EXPECT_EQ(Eligible("u1"), Elig({{3, 1}}));
  EXPECT_EQ(service_->Redeemed(Who(Role::kViewer, "u1"))->at(3), std::vector<std::string>{"h0"});
  // A new set at a deleted index starts afresh.
  PutSets({{3, "Hat 2", {"n0"}}});
  EXPECT_EQ(service_->Redeem(Who(Role::kViewer, "u1"), 3)->all_prizes,
            (std::vector<std::string>{"h0", "n0"}));
}

TEST_F(CodeServiceTest, ViewerWithoutUserId) {
  PutSets({{0, "x", {"a"}}});
  Identity anon = Who(Role::kViewer, "");
  anon.opaque_user_id = "Aanon";
  EXPECT_EQ(*service_->Eligible(anon), Elig({}));
  EXPECT_EQ(*service_->Redeemed(anon), std::vector<std::vector<std::string>>(10));
  ExpectError(service_->Redeem(anon, 0), Errc::kInvalidArgument, "user id required");
  ExpectError(service_->MarkFromList(backend_, {{0}, {1}}, {""}), Errc::kInvalidArgument,
              "user id required");
  ExpectError(service_->MarkFromList(backend_, {{0}, {1}}, {std::string("a\x1f", 2)}),
              Errc::kInvalidArgument, "user id contains control characters");
  std::vector<std::string> many(1001, "u");
  ExpectError(service_->MarkFromList(backend_, {{0}, {1}}, many), Errc::kInvalidArgument,
              "Too many ids specified");
}

TEST_F(CodeServiceTest, ParseMark) {
  auto parse = [&](std::string_view text) { return service_->ParseMark(json::parse(text)); };
  auto m = parse(R"({"prize_limits":[1,2],"prizes":[3,4]})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->prizes, (std::vector<int>{3, 4}));
  EXPECT_EQ(m->prize_limits, (std::vector<int64_t>{1, 2}));
  ExpectError(parse(R"({"prize_limits":[1],"prizes":[3,4]})"), Errc::kInvalidArgument,
              "Invalid body");
  ExpectError(parse(R"({"prize_limits":[1],"prizes":[10]})"), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(parse(R"({"prize_limits":[1001],"prizes":[1]})"), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(parse(R"({"prize_limits":[-1],"prizes":[1]})"), Errc::kInvalidArgument,
              "Value out of bounds");
  ExpectError(parse(R"({"prizes":[1]})"), Errc::kInvalidArgument, "Invalid body");
}

TEST_F(CodeServiceTest, RePutRenamesAndAppendsAfterHoles) {
  PutSets({{0, "first", {"a", "b"}}});
  PutSets({{0, "second", {"b", "c", "c"}}});  // b is known, c listed twice
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{"second"});
  Mark({0}, {10}, {"u1"});
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) got.push_back(service_->Redeem(Who(Role::kViewer, "u1"), 0)->code);
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
  ExpectError(service_->Redeem(Who(Role::kViewer, "u1"), 0), Errc::kInvalidArgument,
              "no codes left");
  EXPECT_EQ(Eligible("u1"), Elig({{0, 7}}));

  // Two redeems that raced past the end of the set claimed slots 4 and 5 (white box: the
  // claim counter of generation 1, as the header documents the layout).
  const std::string counter = std::string(
                                  "gc\x1fsandbox\x1f"
                                  "ext\x1fs\x1f") +
                              "000000000001" + "\x1f" + "n";
  ASSERT_TRUE(store_.Apply(storage::WriteBatch().Add(counter, 2)));
  // Appended codes start after those holes; each is handed out exactly once.
  PutSets({{0, "third", {"d", "e", "a"}}});
  got.clear();
  for (int i = 0; i < 2; ++i) got.push_back(service_->Redeem(Who(Role::kViewer, "u1"), 0)->code);
  EXPECT_EQ(got, (std::vector<std::string>{"d", "e"}));
  ExpectError(service_->Redeem(Who(Role::kViewer, "u1"), 0), Errc::kInvalidArgument,
              "no codes left");
  EXPECT_EQ(Eligible("u1"), Elig({{0, 5}}));
  EXPECT_EQ(service_->Redeemed(Who(Role::kViewer, "u1"))->at(0),
            (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(*service_->DeleteAll(backend_), std::vector<int64_t>{5});
}

TEST_F(CodeServiceTest, LargeSetSpansChunks) {
  PutSets({{1, "big", Codes("k", 2500)}});
  PutSets({{1, "big", Codes("m", 10)}});  // appended into the last, partial chunk
  Mark({1}, {1000}, {"u1", "u2", "u3"});
  std::set<std::string> seen;
  for (int i = 0; i < 2510; ++i) {
    auto r = service_->Redeem(Who(Role::kViewer, "u" + std::to_string(1 + i % 3)), 1);
    ASSERT_TRUE(r) << i << " " << r.error().message;
    std::string want = i < 2500 ? "k" + std::to_string(i) : "m" + std::to_string(i - 2500);
    ASSERT_EQ(r->code, want);
    EXPECT_TRUE(seen.insert(r->code).second);
  }
  ExpectError(service_->Redeem(Who(Role::kViewer, "u1"), 1), Errc::kInvalidArgument,
              "no codes left");
  EXPECT_EQ(*service_->DeleteAll(backend_), (std::vector<int64_t>{0, 2510}));
}

TEST_F(CodeServiceTest, Expiry) {
  PutSets({{0, "old", {"a", "b"}}});
  Mark({0}, {1}, {"u1"});
  clock_.AdvanceMs(60 * kDayMs);
  PutSets({{0, "old renamed", {"c"}}, {1, "young", {"y"}}});  // appending does not extend it
  Mark({1}, {1}, {"u2"});
  clock_.AdvanceMs(29 * kDayMs);
  EXPECT_EQ(*service_->Names(backend_), (std::vector<std::string>{"old renamed", "young"}));
  EXPECT_EQ(Eligible("u1"), Elig({{0, 1}}));
  clock_.AdvanceMs(1 * kDayMs + 1);  // 90 days after the set and u1's eligibility
  EXPECT_EQ(*service_->Names(backend_), (std::vector<std::string>{"", "young"}));
  EXPECT_EQ(Eligible("u1"), Elig({}));
  EXPECT_EQ(Eligible("u2"), Elig({{1, 1}}));
  auto r = service_->Redeem(Who(Role::kViewer, "u2"), 1);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, "y");
  // A new set at the expired index starts afresh.
  PutSets({{0, "new", {"z"}}});
  Mark({0}, {1}, {"u1"});
  EXPECT_EQ(service_->Redeem(Who(Role::kViewer, "u1"), 0)->code, "z");
  clock_.AdvanceMs(90 * kDayMs - 1);
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{"new"});
  EXPECT_EQ(service_->Redeemed(Who(Role::kViewer, "u1"))->at(0), std::vector<std::string>{"z"});
  clock_.AdvanceMs(1);  // the set and the redeemed record live 90 days
  EXPECT_EQ(*service_->Names(backend_), std::vector<std::string>{});
  EXPECT_EQ(*service_->Redeemed(Who(Role::kViewer, "u1")),
            std::vector<std::vector<std::string>>(10));
}

// 8 threads, 1,000 redeems over 100 users of various eligibilities (10 attempts each) against a
// set with fewer codes than successful redeems would need: no code twice, exact counts.
TEST_F(CodeServiceTest, ConcurrentRedeemsNeverDuplicate) {
  constexpr int kUsers = 100, kRedeems = 1000, kThreads = 8, kCodes = 400;
  PutSets({{2, "Fancy Hat", Codes("hat-", kCodes)}});
  std::vector<int64_t> elig(kUsers);
  int64_t possible = 0;
  for (int u = 0; u < kUsers; ++u) {
    elig[u] = u % 13;
    possible += std::min<int64_t>(elig[u], kRedeems / kUsers);
    if (elig[u] > 0) Mark({2}, {elig[u]}, {"v" + std::to_string(u)});
  }
  ASSERT_GT(possible, kCodes);

  std::atomic<int> next{0};
  std::mutex mu;
  std::map<int, std::vector<std::string>> got;  // user -> codes
  int not_eligible = 0, exhausted = 0, other = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int k; (k = next.fetch_add(1)) < kRedeems;) {
        int u = k % kUsers;
        auto r = service_->Redeem(Who(Role::kViewer, "v" + std::to_string(u)), 2);
        std::lock_guard lock(mu);
        if (r) {
          got[u].push_back(r->code);
        } else if (r.error().message == "not eligible") {
          ++not_eligible;
        } else if (r.error().message == "no codes left") {
          ++exhausted;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(other, 0);
  std::set<std::string> all;
  int64_t total = 0;
  for (int u = 0; u < kUsers; ++u) {
    const auto& codes = got[u];
    total += static_cast<int64_t>(codes.size());
    for (const auto& c : codes) EXPECT_TRUE(all.insert(c).second) << "duplicate " << c;
    EXPECT_LE(static_cast<int64_t>(codes.size()), elig[u]);
    const std::string user = "v" + std::to_string(u);
    EXPECT_EQ(Eligible(user)[2], elig[u] - static_cast<int64_t>(codes.size())) << user;
    auto redeemed = service_->Redeemed(Who(Role::kViewer, user))->at(2);
    std::vector<std::string> mine = codes;
    std::sort(mine.begin(), mine.end());
    std::sort(redeemed.begin(), redeemed.end());
    EXPECT_EQ(redeemed, mine) << user;
  }
  EXPECT_EQ(total, kCodes);  // more successes were possible than codes: all were handed out
  EXPECT_EQ(total + not_eligible + exhausted, kRedeems);
  EXPECT_GT(exhausted, 0);
  for (const auto& c : all) EXPECT_EQ(c.rfind("hat-", 0), 0u);
  EXPECT_EQ(*service_->DeleteAll(backend_), (std::vector<int64_t>{0, 0, kCodes}));
}

// Concurrent redeems while the admin appends codes and marks more users: still no duplicates,
// and DELETE's count equals the codes handed out.
TEST_F(CodeServiceTest, ConcurrentRedeemsWithAppends) {
  PutSets({{0, "s", Codes("a", 50)}});
  Mark({0}, {1000}, {"x0", "x1", "x2", "x3"});
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> got;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Identity who = Who(Role::kViewer, "x" + std::to_string(t));
      for (int i = 0; i < 400 && !stop; ++i) {
        auto r = service_->Redeem(who, 0);
        if (r) {
          std::lock_guard lock(mu);
          got.push_back(r->code);
        }
      }
    });
  }
  for (int batch = 1; batch <= 5; ++batch) {
    auto done = service_->Put(backend_, {{0, "s", Codes("b" + std::to_string(batch) + "-", 40)}});
    ASSERT_TRUE(done) << done.error().message;
  }
  for (auto& t : threads) t.join();
  std::set<std::string> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), got.size());
  int64_t left = 0;
  for (int t = 0; t < 4; ++t) left += Eligible("x" + std::to_string(t))[0];
  EXPECT_EQ(left + static_cast<int64_t>(got.size()), 4000);
  auto distributed = service_->DeleteAll(backend_);
  ASSERT_TRUE(distributed);
  EXPECT_EQ(distributed->at(0), static_cast<int64_t>(got.size()));
}

}  // namespace
}  // namespace medkit::core::gamecode
