#include "core/kv/document_cache.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace medkit::core::kv {
namespace {

DocumentCache::Doc Doc(std::string text, uint64_t version, int64_t expires_at_ms = 0) {
  return {std::make_shared<const std::string>(std::move(text)), version, expires_at_ms};
}

TEST(DocumentCacheTest, MissThenHit) {
  DocumentCache cache(1 << 20);
  EXPECT_FALSE(cache.Find("k", 0).has_value());
  cache.Offer("k", Doc("{\"a\":1}", 5), cache.Ticket("k"));
  auto hit = cache.Find("k", 0);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit->text, "{\"a\":1}");
  EXPECT_EQ(hit->version, 5u);
}

TEST(DocumentCacheTest, OlderVersionNeverReplacesNewer) {
  DocumentCache cache(1 << 20);
  uint64_t slow_reader = cache.Ticket("k");  // a reader that started before the write
  cache.Offer("k", Doc("new", 9), cache.Ticket("k"));
  cache.Offer("k", Doc("old", 4), slow_reader);
  EXPECT_EQ(*cache.Find("k", 0)->text, "new");
  cache.Offer("k", Doc("newer", 10), cache.Ticket("k"));
  EXPECT_EQ(*cache.Find("k", 0)->text, "newer");
}

TEST(DocumentCacheTest, AbsenceIsCachedAndReplacedByAWrite) {
  DocumentCache cache(1 << 20);
  cache.Offer("k", DocumentCache::Doc{}, cache.Ticket("k"));
  auto absent = cache.Find("k", 0);
  ASSERT_TRUE(absent.has_value());
  EXPECT_EQ(absent->text, nullptr);
  cache.Offer("k", Doc("x", 1), cache.Ticket("k"));
  EXPECT_EQ(*cache.Find("k", 0)->text, "x");
}

TEST(DocumentCacheTest, ExpiredEntriesMiss) {
  DocumentCache cache(1 << 20);
  cache.Offer("k", Doc("x", 1, /*expires_at_ms=*/1000), cache.Ticket("k"));
  EXPECT_TRUE(cache.Find("k", 999).has_value());
  EXPECT_FALSE(cache.Find("k", 1000).has_value());
}

// Emptying a shard forgets the newest versions, so an offer whose ticket predates the clear
// is dropped: it could put back a value older than one the clear forgot.
TEST(DocumentCacheTest, OffersWithTicketsFromBeforeAClearAreDropped) {
  DocumentCache cache(64 * 200);  // about 200 bytes per shard
  uint64_t before = cache.Ticket("k");
  cache.Offer("k", Doc("new", 9), before);
  // Overflow every shard, so k's shard is emptied too.
  for (int i = 0; i < 2000; ++i) {
    std::string key = "filler" + std::to_string(i);
    cache.Offer(key, Doc(std::string(100, 'x'), 1), cache.Ticket(key));
  }
  EXPECT_FALSE(cache.Find("k", 0).has_value());  // forgotten
  cache.Offer("k", Doc("stale", 4), before);      // a slow reader's old value
  EXPECT_FALSE(cache.Find("k", 0).has_value());
  cache.Offer("k", Doc("fresh", 12), cache.Ticket("k"));
  EXPECT_EQ(*cache.Find("k", 0)->text, "fresh");
}

}  // namespace
}  // namespace medkit::core::kv
