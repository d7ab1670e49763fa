// State and config documents (spec 5.3, 5.4): who may read and write which document, and how
// writes (replace, RFC 6902 patch, merge patch, multi-target maps) are applied to the store.
//
// Every document is a JSON object stored as its serialized text under one key, so a read
// returns the stored text as it is (no parse, no serialize). Writes are optimistic: read the
// document and its version, compute the new text, write it with ExpectVersion, retry on a
// conflict. That is all-or-nothing on every Store implementation, including a Redis Cluster
// one (one document = one key).
//
// Policy (spec 5.3 / 5.4, section 12 item 13):
//   kind                 read                      write (POST, PATCH)
//   extension state      any                       validated admin, backend, owner broadcaster
//   channel state        any (token's channel)     broadcaster, admin, backend
//   viewer state         own                       own
//   extension-viewer     own (needs user_id)       own; user map: validated admin, backend
//   hidden state         validated admin, backend  validated admin, backend
//   extension config     any                       validated admin, backend, owner broadcaster
//   channel config       any (token's channel)     broadcaster, admin, backend; channel map:
//                                                  admin, backend
// State documents expire state_ttl_ms after their last write; hidden state and config never.
// Every channel-state write publishes "channel_state_update" (payload: the whole new channel
// state) on the event bus, for viewers and games (spec 5.3.3).
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "core/kv/document_cache.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::kv {

enum class DocKind {
  kExtensionState,
  kChannelState,
  kViewerState,
  kExtensionViewerState,
  kHiddenState,
  kExtensionConfig,
  kChannelConfig,
};

struct DocLimits {
  size_t state_max_bytes = 16 * 1024;   // serialized size of one state document
  size_t config_max_bytes = 64 * 1024;  // serialized size of one config document
  size_t max_depth = 64;                // JSON nesting of a stored document
  size_t max_batch_ids = 1000;          // ids in one multi-get or multi-target patch
  int64_t state_ttl_ms = 30LL * 24 * 3600 * 1000;
  // Read cache (see document_cache.h); 0 disables it. Only for stores that no other process
  // writes (the embedded ones), which the app decides.
  size_t cache_bytes = 0;
};

class DocumentService {
 public:
  // events may be null (no events published).
  DocumentService(storage::Store& store, const Clock& clock, auth::Stage stage, DocLimits limits,
                  events::EventBus* events = nullptr);

  // The caller's document of kind, as JSON text ("{}" when unset or expired).
  Result<std::string> Read(const auth::Identity& who, DocKind kind);

  // POST: replaces the caller's document with body, which must be a JSON object.
  Result<void> Replace(const auth::Identity& who, DocKind kind, const boost::json::value& body);

  // PATCH: an array is an RFC 6902 patch, an object a merge patch, except that an object from
  // a privileged caller on extension-viewer state or channel config is a multi-target map
  // {"<id>": <array|object>, ...} (spec 5.3.1). All-or-nothing, also across a map's targets.
  Result<void> Patch(const auth::Identity& who, DocKind kind, const boost::json::value& body);

  // GET all_state: {"extension","channel","viewer","extension_viewer"}.
  Result<std::string> ReadAllState(const auth::Identity& who);
  // GET config: {"channel","extension"}.
  Result<std::string> ReadAllConfig(const auth::Identity& who);

  // GET extension_viewer_state?user_ids=a,b (validated admin, backend): {"<id>": state} for
  // each listed user that has state.
  Result<std::string> ReadExtensionViewers(const auth::Identity& who,
                                           const std::vector<std::string>& user_ids);
  // GET extension_viewer_state?userID=<id> (backend, validated admin): that user's state.
  Result<std::string> ReadExtensionViewer(const auth::Identity& who, std::string_view user_id);

  const DocLimits& limits() const { return limits_; }

 private:
  struct Target {
    std::string key;
    DocKind kind;
  };
  Result<Target> Resolve(const auth::Identity& who, DocKind kind, std::string_view channel,
                         std::string_view user) const;
  Result<Target> OwnTarget(const auth::Identity& who, DocKind kind) const;
  Result<void> CheckDocument(DocKind kind, const boost::json::value& doc,
                             std::string* text) const;
  // written (if not null) receives the new text of each target.
  Result<void> PatchTargets(const std::vector<Target>& targets,
                            const std::vector<const boost::json::value*>& patches,
                            std::vector<std::shared_ptr<const std::string>>* written = nullptr);
  int64_t ExpiryFor(DocKind kind) const;
  // The current documents at keys, from the cache where it has them (use_cache) and from one
  // store MultiGet for the rest (which are then offered to the cache).
  Result<std::vector<DocumentCache::Doc>> Lookup(const std::vector<std::string>& keys,
                                                 bool use_cache);
  // Store::Apply, then offers the written documents to the cache.
  Result<void> Write(const storage::WriteBatch& batch, const std::vector<std::string>& keys,
                     std::vector<DocumentCache::Doc> docs);

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  DocLimits limits_;
  std::unique_ptr<DocumentCache> cache_;  // null when disabled
  events::EventBus* events_;               // may be null
  // Publishes the write of kind (text: the new document) on the event bus:
  // channel_state_update (viewers and games), extension_state_update, channel_config_update,
  // extension_config_update (games). channel: the written channel, if not the caller's.
  void PublishWrite(const auth::Identity& who, DocKind kind, const std::string& text,
                    std::string_view channel = {}) const;
};

// Write access of who to kind, per the table above (exposed for the policy tests).
Result<void> CheckWriteAccess(const auth::Identity& who, DocKind kind);
Result<void> CheckReadAccess(const auth::Identity& who, DocKind kind);

}  // namespace medkit::core::kv
