#include "core/kv/document_cache.h"

#include <functional>

namespace medkit::core::kv {

namespace {
size_t Footprint(const std::string& key, const DocumentCache::Doc& doc) {
  return key.size() + (doc.text ? doc.text->size() : 0) + 64;
}
}  // namespace

DocumentCache::DocumentCache(size_t max_bytes) : max_shard_bytes_(max_bytes / kShards + 1) {}

DocumentCache::Shard& DocumentCache::ShardFor(const std::string& key) const {
  return shards_[std::hash<std::string>{}(key) % kShards];
}

std::optional<DocumentCache::Doc> DocumentCache::Find(const std::string& key,
                                                      int64_t now_ms) const {
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mu);
  auto it = shard.docs.find(key);
  if (it == shard.docs.end()) return std::nullopt;
  if (it->second.expires_at_ms != 0 && it->second.expires_at_ms <= now_ms) return std::nullopt;
  return it->second;
}

uint64_t DocumentCache::Ticket(const std::string& key) const {
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mu);
  return shard.generation;
}

void DocumentCache::Offer(const std::string& key, Doc doc, uint64_t ticket) {
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mu);
  if (shard.generation != ticket) return;
  auto it = shard.docs.find(key);
  if (it != shard.docs.end()) {
    if (it->second.version > doc.version) return;
    shard.bytes -= Footprint(key, it->second);
    shard.bytes += Footprint(key, doc);
    it->second = std::move(doc);
  } else {
    size_t size = Footprint(key, doc);
    if (shard.bytes + size > max_shard_bytes_) {
      shard.docs.clear();
      shard.bytes = 0;
      ++shard.generation;
      return;  // this offer's ticket predates the clear
    }
    shard.bytes += size;
    shard.docs.emplace(key, std::move(doc));
  }
}

}  // namespace medkit::core::kv
