// A read cache of documents (serialized text, version, expiry) in front of a Store that only
// this process writes (RocksDB, memory). Every document write goes through DocumentService,
// which offers the new text with the version the store gave it; a read offers what it read.
// An offer only replaces an entry with a newer version, so a slow reader can never put back
// a value that a writer already replaced. Absence is cached as version 0.
// Thread-safe: 64 shards, each a map under its own mutex. Bounded by bytes: a shard that
// outgrows its share is emptied. Emptying forgets which versions were newest, so every offer
// carries a ticket taken *before* its store read or write: if the shard was emptied since,
// the offer is dropped (whatever it carries may be older than a forgotten entry).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace medkit::core::kv {

class DocumentCache {
 public:
  struct Doc {
    std::shared_ptr<const std::string> text;  // null: the document is absent
    uint64_t version = 0;
    int64_t expires_at_ms = 0;  // 0 = never
  };

  explicit DocumentCache(size_t max_bytes);

  // The cached document, or nullopt on a miss (or when the cached one has expired).
  std::optional<Doc> Find(const std::string& key, int64_t now_ms) const;
  // Take before reading or writing key in the store; pass to Offer.
  uint64_t Ticket(const std::string& key) const;
  // Caches doc for key unless a document with a newer version is cached already, or the
  // shard was emptied after ticket was taken.
  void Offer(const std::string& key, Doc doc, uint64_t ticket);

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Doc> docs;  // guarded by mu
    size_t bytes = 0;                           // guarded by mu
    uint64_t generation = 0;                    // guarded by mu; bumped when emptied
  };
  Shard& ShardFor(const std::string& key) const;

  size_t max_shard_bytes_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace medkit::core::kv
