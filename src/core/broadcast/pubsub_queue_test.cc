// PubSubQueue (the Twitch PubSub transport's queue) on the fake clock: the token bucket per
// destination to the millisecond, destinations independent, coalescing that keeps the final
// state, custom events in order and bounded, fragments contiguous, retries with backoff and
// Ratelimit-Reset, drops. Also the request builder of twitch_pubsub.h (JWT verified).
#include "core/broadcast/pubsub_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <string>
#include <vector>

#include "core/auth/extension_registry.h"
#include "core/auth/jwt.h"
#include "core/broadcast/twitch_pubsub.h"
#include "core/clock.h"

namespace medkit::core::broadcast {
namespace {

namespace json = boost::json;

constexpr int64_t kStart = 1'700'000'000'000;

ViewerMessagePtr Msg(std::string name, std::string channel = "ch1", std::string coalesce_key = {},
                     std::vector<std::string> parts = {}, std::string target = "broadcast",
                     std::string client = "cid") {
  auto m = std::make_shared<ViewerMessage>();
  m->client_id = std::move(client);
  m->channel_id = std::move(channel);
  m->target = m->channel_id.empty() ? "global" : std::move(target);
  m->event = "production:" + m->client_id + ":" + name;
  m->envelope = "{\"event\":\"" + m->event + "\",\"data\":{}}";
  m->parts = parts.empty() ? std::vector<std::string>{m->envelope} : std::move(parts);
  m->coalesce_key = std::move(coalesce_key);
  return m;
}

std::string Name(const ViewerMessagePtr& m) { return m->event.substr(m->event.rfind(':') + 1); }

PubSubOutcome Status(int status, int64_t reset_s = 0) { return PubSubOutcome{status, reset_s}; }

class PubSubQueueTest : public ::testing::Test {
 protected:
  PubSubQueueTest() : clock_(kStart) {}

  PubSubQueueOptions Options(int64_t burst, int64_t per_minute) {
    PubSubQueueOptions o;
    o.burst = burst;
    o.per_minute = per_minute;
    return o;
  }

  // Takes what is ready now, answers every POST with status, and returns "name#part" of each.
  std::vector<std::string> SendReady(PubSubQueue& q, int status = 204, size_t max = 100) {
    std::vector<std::string> out;
    for (const auto& s : q.NextBatch(max)) {
      out.push_back(Name(s.message) + "#" + std::to_string(s.part));
      (void)q.OnResult(s.ticket, Status(status));
    }
    return out;
  }

  // Sends (answering 204) until nothing is ready now; returns the names in order.
  std::vector<std::string> Drain(PubSubQueue& q) {
    std::vector<std::string> all;
    for (;;) {
      auto batch = SendReady(q);
      if (batch.empty()) return all;
      all.insert(all.end(), batch.begin(), batch.end());
    }
  }

  FakeClock clock_;
};

TEST_F(PubSubQueueTest, TokenBucketIsExactToTheMillisecond) {
  PubSubQueue q(clock_, Options(3, 60));  // 3 at once, then 1 a second
  for (int i = 0; i < 6; ++i) q.Enqueue(Msg("m" + std::to_string(i)));
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"m0#0", "m1#0", "m2#0"}));
  EXPECT_EQ(q.NextWakeMs(), kStart + 1000);
  clock_.AdvanceMs(999);
  EXPECT_TRUE(q.NextBatch(10).empty());
  clock_.AdvanceMs(1);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"m3#0"}));
  EXPECT_EQ(q.NextWakeMs(), kStart + 2000);
  clock_.AdvanceMs(1500);  // 1.5 tokens accrued (t = 2500): one now, the next at t = 3000
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"m4#0"}));
  EXPECT_EQ(q.NextWakeMs(), kStart + 3000);
  clock_.SetMs(kStart + 2999);
  EXPECT_TRUE(q.NextBatch(10).empty());
  clock_.SetMs(kStart + 3000);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"m5#0"}));
  EXPECT_EQ(q.NextWakeMs(), PubSubQueue::kNever);
  EXPECT_EQ(q.counts().sent, 6u);
  EXPECT_EQ(q.counts().parts_sent, 6u);
  EXPECT_EQ(q.counts().waiting, 0u);
}

TEST_F(PubSubQueueTest, RefillNeverExceedsTheBurst) {
  PubSubQueue q(clock_, Options(2, 100));  // 100 a minute: one token per 600 ms
  q.Enqueue(Msg("a"));
  q.Enqueue(Msg("b"));
  EXPECT_EQ(Drain(q).size(), 2u);
  clock_.AdvanceMs(3'600'000);  // an hour idle: still only 2 tokens
  for (int i = 0; i < 5; ++i) q.Enqueue(Msg("c" + std::to_string(i)));
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"c0#0", "c1#0"}));
  EXPECT_EQ(q.NextWakeMs(), clock_.NowMs() + 600);
  clock_.AdvanceMs(599);
  EXPECT_TRUE(Drain(q).empty());
  clock_.AdvanceMs(1);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"c2#0"}));
}

TEST_F(PubSubQueueTest, DestinationsHaveTheirOwnBucketsAndWhispersShareTheChannels) {
  PubSubQueue q(clock_, Options(1, 60));
  q.Enqueue(Msg("a1", "A"));
  q.Enqueue(Msg("w1", "A", {}, {}, "whisper-U7"));  // counts against channel A
  q.Enqueue(Msg("b1", "B"));
  q.Enqueue(Msg("g1", ""));                                        // global: its own pool
  q.Enqueue(Msg("x1", "A", {}, {}, "broadcast", "other-client"));  // another extension
  EXPECT_EQ(PubSubQueue::DestinationKey(*Msg("w", "A", {}, {}, "whisper-U7")),
            PubSubQueue::DestinationKey(*Msg("a", "A")));
  EXPECT_NE(PubSubQueue::DestinationKey(*Msg("g", "")),
            PubSubQueue::DestinationKey(*Msg("a", "A")));
  auto batch = q.NextBatch(10);
  std::vector<std::string> names;
  for (const auto& s : batch) names.push_back(Name(s.message));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a1", "b1", "g1", "x1"}));
  for (const auto& s : batch)
    EXPECT_EQ(q.OnResult(s.ticket, Status(204)), PubSubDisposition::kSent);
  EXPECT_TRUE(q.NextBatch(10).empty());  // w1 waits for channel A's next token
  clock_.AdvanceMs(1000);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"w1#0"}));
  EXPECT_EQ(q.counts().destinations, 4u);
}

TEST_F(PubSubQueueTest, NextBatchHonoursMaxSendsAndOneInFlightPerDestination) {
  PubSubQueue q(clock_, Options(100, 60));
  for (const char* ch : {"A", "B", "C"}) {
    q.Enqueue(Msg(std::string(ch) + "1", ch));
    q.Enqueue(Msg(std::string(ch) + "2", ch));
  }
  auto first = q.NextBatch(2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(Name(first[0].message), "A1");  // ready earliest: queued first
  EXPECT_EQ(Name(first[1].message), "B1");
  auto second = q.NextBatch(10);  // A and B are in flight: only C
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(Name(second[0].message), "C1");
  EXPECT_TRUE(q.NextBatch(10).empty());
  EXPECT_EQ(q.counts().in_flight, 3u);
  EXPECT_EQ(q.NextWakeMs(), PubSubQueue::kNever);  // everything waits on a result
  EXPECT_EQ(q.OnResult(first[1].ticket, Status(204)), PubSubDisposition::kSent);
  EXPECT_EQ(q.NextWakeMs(), kStart);
  auto third = q.NextBatch(10);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(Name(third[0].message), "B2");
}

TEST_F(PubSubQueueTest, CoalescingKeepsTheFinalStateAndPublicationOrder) {
  PubSubQueue q(clock_, Options(1, 60));
  q.Enqueue(Msg("s1", "ch1", "state"));
  auto inflight = q.NextBatch(1);  // s1 is being posted: it cannot be superseded any more
  ASSERT_EQ(inflight.size(), 1u);
  q.Enqueue(Msg("c1"));
  q.Enqueue(Msg("s2", "ch1", "state"));
  q.Enqueue(Msg("c2"));
  q.Enqueue(Msg("v1", "ch1", "vote"));   // another key: kept
  q.Enqueue(Msg("s3", "ch1", "state"));  // supersedes s2, goes behind c2
  q.Enqueue(Msg("s4", "ch1", "state"));  // supersedes s3
  q.Enqueue(Msg("t1", "ch2", "state"));  // same key text, other channel: another destination
  EXPECT_EQ(q.counts().coalesced, 2u);
  std::vector<std::string> queued;
  for (const auto& m : q.QueuedForTest(PubSubQueue::DestinationKey(*Msg("x")))) {
    queued.push_back(Name(m));
  }
  EXPECT_EQ(queued, (std::vector<std::string>{"s1", "c1", "c2", "v1", "s4"}));
  EXPECT_EQ(q.OnResult(inflight[0].ticket, Status(204)), PubSubDisposition::kSent);
  std::vector<std::string> sent;
  for (int i = 0; i < 10; ++i) {
    clock_.AdvanceMs(1000);
    for (const auto& s : SendReady(q)) sent.push_back(s);
  }
  // t1's destination was ready first (at the start), c1's a second later.
  EXPECT_EQ(sent, (std::vector<std::string>{"t1#0", "c1#0", "c2#0", "v1#0", "s4#0"}));
  EXPECT_EQ(q.counts().sent, 6u);
  EXPECT_EQ(q.counts().queued, 8u);
}

TEST_F(PubSubQueueTest, CustomEventsAreNeverCoalescedAndKeepTheirOrder) {
  PubSubQueue q(clock_, Options(100, 60));
  for (int i = 0; i < 20; ++i) q.Enqueue(Msg("same"));  // same event name, no coalesce key
  auto m = Msg("same");
  std::vector<const ViewerMessage*> expected;
  for (const auto& e : q.QueuedForTest(PubSubQueue::DestinationKey(*m))) {
    expected.push_back(e.get());
  }
  ASSERT_EQ(expected.size(), 20u);
  std::vector<const ViewerMessage*> got;
  for (;;) {
    auto batch = q.NextBatch(10);
    if (batch.empty()) break;
    ASSERT_EQ(batch.size(), 1u);
    got.push_back(batch[0].message.get());
    ASSERT_EQ(q.OnResult(batch[0].ticket, Status(200)), PubSubDisposition::kSent);
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(q.counts().coalesced, 0u);
  EXPECT_EQ(q.counts().sent, 20u);
}

TEST_F(PubSubQueueTest, TheOldestCustomMessagesAreDroppedPastTheBound) {
  PubSubQueueOptions o = Options(1, 60);
  o.queue_limit = 3;
  PubSubQueue q(clock_, o);
  q.Enqueue(Msg("c0"));
  auto inflight = q.NextBatch(1);  // c0 is being posted: not part of the bound, not dropped
  ASSERT_EQ(inflight.size(), 1u);
  q.Enqueue(Msg("s1", "ch1", "state"));
  for (int i = 1; i <= 5; ++i) q.Enqueue(Msg("c" + std::to_string(i)));
  q.Enqueue(Msg("s2", "ch1", "state"));        // the state is never dropped for room
  EXPECT_EQ(q.counts().dropped_overflow, 2u);  // c1, c2
  std::vector<std::string> queued;
  for (const auto& m : q.QueuedForTest(PubSubQueue::DestinationKey(*Msg("x")))) {
    queued.push_back(Name(m));
  }
  EXPECT_EQ(queued, (std::vector<std::string>{"c0", "c3", "c4", "c5", "s2"}));
  EXPECT_EQ(q.counts().coalesced, 1u);
  EXPECT_EQ(q.counts().waiting, 5u);
}

TEST_F(PubSubQueueTest, FragmentsOfOneMessageArePostedContiguouslyAndInOrder) {
  PubSubQueue q(clock_, Options(100, 60));
  q.Enqueue(Msg("big", "ch1", "state", {"<0,3>aa", "<1,3>bb", "<2,3>cc"}));
  auto first = q.NextBatch(10);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].part, 0u);
  EXPECT_EQ(first[0].message->parts[first[0].part], "<0,3>aa");
  EXPECT_EQ(q.OnResult(first[0].ticket, Status(204)), PubSubDisposition::kNextPart);
  // Arriving mid-message: the started message is not superseded, nothing cuts in.
  q.Enqueue(Msg("small"));
  q.Enqueue(Msg("big2", "ch1", "state", {"<0,2>dd", "<1,2>ee"}));
  q.Enqueue(Msg("other", "ch2"));  // another destination goes out in parallel
  std::vector<std::string> sent;
  for (;;) {
    auto batch = q.NextBatch(10);
    if (batch.empty()) break;
    for (const auto& s : batch) {
      if (s.message->channel_id == "ch1") sent.push_back(s.message->parts[s.part]);
      (void)q.OnResult(s.ticket, Status(204));
    }
  }
  EXPECT_EQ(sent, (std::vector<std::string>{"<1,3>bb", "<2,3>cc",
                                            "{\"event\":\"production:cid:small\",\"data\":{}}",
                                            "<0,2>dd", "<1,2>ee"}));
  EXPECT_EQ(q.counts().coalesced, 0u);
  EXPECT_EQ(q.counts().sent, 4u);
  EXPECT_EQ(q.counts().parts_sent, 7u);
}

TEST_F(PubSubQueueTest, RetriesBackOffExponentiallyOnTheSamePart) {
  PubSubQueue q(clock_, Options(100, 60));
  q.Enqueue(Msg("m", "ch1", {}, {"<0,2>a", "<1,2>b"}));
  q.Enqueue(Msg("after"));
  auto s = q.NextBatch(10);
  ASSERT_EQ(s.size(), 1u);
  ASSERT_EQ(q.OnResult(s[0].ticket, Status(204)), PubSubDisposition::kNextPart);
  int64_t t = kStart;
  const int statuses[] = {500, 503, 0, 429};  // 429 without a Ratelimit-Reset: plain backoff
  int64_t delay = 1000;
  int attempt = 1;
  for (int status : statuses) {
    s = q.NextBatch(10);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].part, 1u);
    EXPECT_EQ(s[0].attempt, attempt++);
    EXPECT_EQ(q.OnResult(s[0].ticket, Status(status)), PubSubDisposition::kRetry);
    EXPECT_EQ(q.NextWakeMs(), t + delay);
    clock_.AdvanceMs(delay - 1);
    EXPECT_TRUE(q.NextBatch(10).empty());
    clock_.AdvanceMs(1);
    t += delay;
    delay *= 2;
  }
  s = q.NextBatch(10);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].part, 1u);
  EXPECT_EQ(s[0].attempt, 5);
  EXPECT_EQ(q.OnResult(s[0].ticket, Status(204)), PubSubDisposition::kSent);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"after#0"}));
  auto c = q.counts();
  EXPECT_EQ(c.failed, 4u);
  EXPECT_EQ(c.retried, 4u);
  EXPECT_EQ(c.sent, 2u);
  EXPECT_EQ(c.parts_sent, 3u);
  EXPECT_EQ(c.dropped_failed, 0u);
}

TEST_F(PubSubQueueTest, BackoffIsCapped) {
  PubSubQueueOptions o = Options(100, 60);
  o.max_tries = 20;
  o.backoff_max_ms = 5000;
  PubSubQueue q(clock_, o);
  q.Enqueue(Msg("m"));
  int64_t expected[] = {1000, 2000, 4000, 5000, 5000, 5000};
  for (int64_t d : expected) {
    auto s = q.NextBatch(1);
    ASSERT_EQ(s.size(), 1u);
    ASSERT_EQ(q.OnResult(s[0].ticket, Status(502)), PubSubDisposition::kRetry);
    EXPECT_EQ(q.NextWakeMs(), clock_.NowMs() + d);
    clock_.AdvanceMs(d);
  }
}

TEST_F(PubSubQueueTest, RateLimitResetIsHonouredAndEmptiesTheBucket) {
  PubSubQueueOptions o = Options(100, 60);
  o.max_reset_wait_ms = 30'000;
  PubSubQueue q(clock_, o);
  for (int i = 0; i < 3; ++i) q.Enqueue(Msg("m" + std::to_string(i)));
  auto s = q.NextBatch(1);
  ASSERT_EQ(s.size(), 1u);
  int64_t reset_s = kStart / 1000 + 5;
  EXPECT_EQ(q.OnResult(s[0].ticket, Status(429, reset_s)), PubSubDisposition::kRetry);
  EXPECT_EQ(q.NextWakeMs(), reset_s * 1000);
  clock_.SetMs(reset_s * 1000 - 1);
  EXPECT_TRUE(q.NextBatch(1).empty());
  clock_.SetMs(reset_s * 1000);
  // The bucket restarted empty at the 429, so 5 tokens accrued by the reset: m0 (again) and
  // m1 and m2 all go now.
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"m0#0", "m1#0", "m2#0"}));
  // A reset further away than max_reset_wait_ms is capped.
  q.Enqueue(Msg("m3"));
  s = q.NextBatch(1);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(q.OnResult(s[0].ticket, Status(429, clock_.NowSeconds() + 3600)),
            PubSubDisposition::kRetry);
  EXPECT_EQ(q.NextWakeMs(), clock_.NowMs() + 30'000);
  // A reset already past falls back to the backoff (m3's second failure: 2 s).
  clock_.AdvanceMs(30'000);
  s = q.NextBatch(1);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(q.OnResult(s[0].ticket, Status(429, clock_.NowSeconds() - 10)),
            PubSubDisposition::kRetry);
  EXPECT_EQ(q.NextWakeMs(), clock_.NowMs() + 2000);  // backoff of the 2nd failure
}

TEST_F(PubSubQueueTest, ServerErrorsAreDroppedAfterMaxTries) {
  PubSubQueueOptions o = Options(100, 60);
  o.max_tries = 3;
  PubSubQueue q(clock_, o);
  q.Enqueue(Msg("doomed"));
  q.Enqueue(Msg("next"));
  PubSubDisposition expected[] = {PubSubDisposition::kRetry, PubSubDisposition::kRetry,
                                  PubSubDisposition::kDropped};
  for (auto want : expected) {
    auto s = q.NextBatch(1);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(Name(s[0].message), "doomed");
    EXPECT_EQ(q.OnResult(s[0].ticket, Status(500)), want);
    if (want == PubSubDisposition::kDropped) break;
    clock_.AdvanceMs(60'000);
  }
  // A failing Twitch: the next message waits out the backoff of the third failure (4 s).
  EXPECT_EQ(q.NextWakeMs(), clock_.NowMs() + 4000);
  clock_.AdvanceMs(4000);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"next#0"}));
  auto c = q.counts();
  EXPECT_EQ(c.dropped_failed, 1u);
  EXPECT_EQ(c.failed, 3u);
  EXPECT_EQ(c.retried, 2u);
  EXPECT_EQ(c.sent, 1u);
}

TEST_F(PubSubQueueTest, ClientErrorsDropTheWholeMessageAfterFewerTries) {
  PubSubQueue q(clock_, Options(100, 60));  // max_rejected_tries 3
  q.Enqueue(Msg("frag", "ch1", {}, {"<0,3>a", "<1,3>b", "<2,3>c"}));
  q.Enqueue(Msg("next"));
  auto s = q.NextBatch(1);
  ASSERT_EQ(q.OnResult(s[0].ticket, Status(204)), PubSubDisposition::kNextPart);
  for (int i = 0; i < 3; ++i) {
    s = q.NextBatch(1);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].part, 1u);
    EXPECT_EQ(q.OnResult(s[0].ticket, Status(i == 1 ? 401 : 400)),
              i == 2 ? PubSubDisposition::kDropped : PubSubDisposition::kRetry);
    if (i < 2) {
      EXPECT_EQ(q.NextWakeMs(), clock_.NowMs() + (i == 0 ? 1000 : 2000));
      clock_.AdvanceMs(60'000);
    }
  }
  // Part 2 of the dropped message is never posted; the next message starts at its part 0, at
  // once (a 4xx says nothing about the next message).
  EXPECT_EQ(q.NextWakeMs(), clock_.NowMs());
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"next#0"}));
  EXPECT_EQ(q.counts().dropped_failed, 1u);
  EXPECT_EQ(q.counts().parts_sent, 2u);
}

TEST_F(PubSubQueueTest, UnknownTicketsAreIgnored) {
  PubSubQueue q(clock_, Options(100, 60));
  q.Enqueue(Msg("m"));
  auto s = q.NextBatch(1);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(q.OnResult(s[0].ticket + 1, Status(204)), PubSubDisposition::kUnknown);
  EXPECT_EQ(q.OnResult(s[0].ticket, Status(204)), PubSubDisposition::kSent);
  EXPECT_EQ(q.OnResult(s[0].ticket, Status(204)), PubSubDisposition::kUnknown);
  EXPECT_EQ(q.counts().sent, 1u);
}

TEST_F(PubSubQueueTest, IdleDestinationsAreForgottenOnceFullAgain) {
  PubSubQueue q(clock_, Options(2, 60));
  q.Enqueue(Msg("a", "A"));
  q.Enqueue(Msg("b", "B"));
  EXPECT_EQ(Drain(q).size(), 2u);
  EXPECT_EQ(q.counts().destinations, 2u);
  clock_.AdvanceMs(500);  // not refilled yet: remembered, so its rate still holds
  q.Enqueue(Msg("a2", "A"));
  q.Enqueue(Msg("a3", "A"));
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"a2#0"}));  // 1.5 tokens: one
  clock_.AdvanceMs(20'000);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"a3#0"}));
  clock_.AdvanceMs(20'000);
  (void)q.NextBatch(1);  // prunes
  EXPECT_EQ(q.counts().destinations, 0u);
}

// ---- twitch_pubsub.h ------------------------------------------------------------------------

class TwitchPubSubRequestTest : public ::testing::Test {
 protected:
  TwitchPubSubRequestTest() {
    ext_.client_id = "cid123";
    ext_.secret = std::string("\x01\x02secret\xff", 9);
    ext_.owner_id = "owner77";
  }

  json::object Verify(const std::string& authorization, const std::string& key) {
    EXPECT_EQ(authorization.rfind("Bearer ", 0), 0u);
    std::string_view keys[] = {key};
    auto claims = auth::VerifyHs256(authorization.substr(7), keys, auth::VerifyOptions{kNow, 0});
    EXPECT_TRUE(claims) << (claims ? "" : claims.error().message);
    return claims ? *claims : json::object{};
  }

  static constexpr int64_t kNow = 1'700'000'000;
  auth::ExtensionInfo ext_;
};

TEST_F(TwitchPubSubRequestTest, BroadcastRequest) {
  auto m = Msg("hello", "4242", {}, {"{\"event\":\"production:cid123:hello\",\"data\":{}}"},
               "broadcast", "cid123");
  PubSubRequest r = BuildPubSubRequest(*m, 0, ext_, kNow);
  ASSERT_EQ(r.headers.size(), 3u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Client-Id", "cid123"}));
  EXPECT_EQ(r.headers[1].first, "Authorization");
  EXPECT_EQ(r.headers[2],
            (std::pair<std::string, std::string>{"Content-Type", "application/json"}));
  EXPECT_EQ(r.body,
            R"({"target":["broadcast"],"broadcaster_id":"4242","is_global_broadcast":false,)"
            R"("message":"{\"event\":\"production:cid123:hello\",\"data\":{}}"})");
  json::object claims = Verify(r.headers[1].second, ext_.secret);
  EXPECT_EQ(claims.at("exp"), kNow + 60);
  EXPECT_EQ(claims.at("user_id"), "owner77");
  EXPECT_EQ(claims.at("role"), "external");
  EXPECT_EQ(claims.at("channel_id"), "4242");
  EXPECT_EQ(json::serialize(claims.at("pubsub_perms")), R"({"send":["broadcast"]})");
  // Another key does not verify it.
  std::string_view wrong[] = {"not the secret"};
  EXPECT_FALSE(auth::VerifyHs256(r.headers[1].second.substr(7), wrong, auth::VerifyOptions{kNow}));
}

TEST_F(TwitchPubSubRequestTest, WhisperRequest) {
  auto m = Msg("psst", "4242", {}, {}, "whisper-Uabc", "cid123");
  PubSubRequest r = BuildPubSubRequest(*m, 0, ext_, kNow);
  json::value body = json::parse(r.body);
  EXPECT_EQ(json::serialize(body.at("target")), R"(["whisper-Uabc"])");
  EXPECT_EQ(body.at("broadcaster_id"), "4242");
  EXPECT_EQ(body.at("is_global_broadcast"), false);
  EXPECT_EQ(body.at("message").as_string(), m->parts[0]);
  json::object claims = Verify(r.headers[1].second, ext_.secret);
  EXPECT_EQ(claims.at("channel_id"), "4242");
  EXPECT_EQ(json::serialize(claims.at("pubsub_perms")), R"({"send":["whisper-Uabc"]})");
}

TEST_F(TwitchPubSubRequestTest, GlobalRequestOfOneFragment) {
  auto m = Msg("all", "", {}, {"<0,2>AAAA", "<1,2>BBBB"}, "broadcast", "cid123");
  EXPECT_EQ(PubSubTarget(*m), "global");
  PubSubRequest r = BuildPubSubRequest(*m, 1, ext_, kNow);
  EXPECT_EQ(r.body, R"({"target":["global"],"is_global_broadcast":true,"message":"<1,2>BBBB"})");
  json::object claims = Verify(r.headers[1].second, ext_.secret);
  EXPECT_EQ(claims.at("channel_id"), "all");
  EXPECT_EQ(claims.at("user_id"), "owner77");
  EXPECT_EQ(json::serialize(claims.at("pubsub_perms")), R"({"send":["global"]})");
  EXPECT_EQ(claims.at("exp"), kNow + kPubSubJwtTtlSeconds);
}

}  // namespace
}  // namespace medkit::core::broadcast
