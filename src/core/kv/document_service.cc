#include "core/kv/document_service.h"

#include <boost/json.hpp>

#include "core/kv/json_patch.h"
#include "core/kv/json_util.h"

namespace medkit::core::kv {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr int kMaxWriteAttempts = 16;
constexpr size_t kMaxIdBytes = 256;

const char* KindCode(DocKind kind) {
  switch (kind) {
    case DocKind::kExtensionState:
      return "es";
    case DocKind::kChannelState:
      return "cs";
    case DocKind::kViewerState:
      return "vs";
    case DocKind::kExtensionViewerState:
      return "evs";
    case DocKind::kHiddenState:
      return "hs";
    case DocKind::kExtensionConfig:
      return "ec";
    case DocKind::kChannelConfig:
      return "cc";
  }
  return "?";
}

bool IsConfig(DocKind kind) {
  return kind == DocKind::kExtensionConfig || kind == DocKind::kChannelConfig;
}

bool NeedsChannel(DocKind kind) {
  return kind == DocKind::kChannelState || kind == DocKind::kViewerState ||
         kind == DocKind::kChannelConfig;
}

Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}

Result<void> CheckId(std::string_view id, const char* what) {
  if (id.size() > kMaxIdBytes) {
    return MakeError(Errc::kInvalidArgument, std::string(what) + " is too long");
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) {
      return MakeError(Errc::kInvalidArgument, std::string(what) + " contains control characters");
    }
  }
  return {};
}

}  // namespace

Result<void> CheckReadAccess(const Identity& who, DocKind kind) {
  if (kind == DocKind::kHiddenState) {
    if (who.role == Role::kBackend || who.validated_admin) return {};
    return Refused();
  }
  return {};
}

Result<void> CheckWriteAccess(const Identity& who, DocKind kind) {
  switch (kind) {
    case DocKind::kExtensionState:
    case DocKind::kExtensionConfig:
      if (who.role == Role::kBackend || who.validated_admin || who.owner_broadcaster) return {};
      return Refused();
    case DocKind::kChannelState:
    case DocKind::kChannelConfig:
      if (who.role == Role::kViewer) return Refused();
      return {};
    case DocKind::kViewerState:
    case DocKind::kExtensionViewerState:
      return {};
    case DocKind::kHiddenState:
      if (who.role == Role::kBackend || who.validated_admin) return {};
      return Refused();
  }
  return Refused();
}

DocumentService::DocumentService(storage::Store& store, const Clock& clock, auth::Stage stage,
                                 DocLimits limits, events::EventBus* events)
    : store_(store), clock_(clock), stage_(stage), limits_(limits), events_(events) {
  if (limits_.cache_bytes > 0) cache_ = std::make_unique<DocumentCache>(limits_.cache_bytes);
}

Result<std::vector<DocumentCache::Doc>> DocumentService::Lookup(
    const std::vector<std::string>& keys, bool use_cache) {
  std::vector<DocumentCache::Doc> out(keys.size());
  std::vector<size_t> misses;
  std::vector<std::string> miss_keys;
  std::vector<uint64_t> tickets;
  const int64_t now_ms = clock_.NowMs();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (cache_) {
      if (use_cache) {
        if (auto doc = cache_->Find(keys[i], now_ms)) {
          out[i] = std::move(*doc);
          continue;
        }
      }
      tickets.push_back(cache_->Ticket(keys[i]));
    }
    misses.push_back(i);
    miss_keys.push_back(keys[i]);
  }
  if (misses.empty()) return out;
  auto entries = store_.MultiGet(miss_keys);
  if (!entries) return std::move(entries).error();
  for (size_t j = 0; j < misses.size(); ++j) {
    DocumentCache::Doc& doc = out[misses[j]];
    if (auto& entry = (*entries)[j]) {
      doc.text = std::make_shared<const std::string>(std::move(entry->value));
      doc.version = entry->version;
      doc.expires_at_ms = entry->expires_at_ms;
    }
    if (cache_) cache_->Offer(miss_keys[j], doc, tickets[j]);
  }
  return out;
}

Result<void> DocumentService::Write(const storage::WriteBatch& batch,
                                    const std::vector<std::string>& keys,
                                    std::vector<DocumentCache::Doc> docs) {
  std::vector<uint64_t> tickets;
  if (cache_) {
    for (const auto& key : keys) tickets.push_back(cache_->Ticket(key));
  }
  auto applied = store_.Apply(batch);
  if (!applied) return std::move(applied).error();
  if (cache_) {
    for (size_t i = 0; i < keys.size(); ++i) {
      docs[i].version = applied->version;
      cache_->Offer(keys[i], std::move(docs[i]), tickets[i]);
    }
  }
  return {};
}

Result<DocumentService::Target> DocumentService::Resolve(const Identity& who, DocKind kind,
                                                         std::string_view channel,
                                                         std::string_view user) const {
  if (NeedsChannel(kind)) {
    if (channel.empty()) {
      return MakeError(Errc::kInvalidArgument, "channel id required");
    }
    if (auto ok = CheckId(channel, "channel id"); !ok) return std::move(ok).error();
  }
  if (kind == DocKind::kViewerState || kind == DocKind::kExtensionViewerState) {
    if (user.empty()) return MakeError(Errc::kInvalidArgument, "user id required");
    if (auto ok = CheckId(user, "user id"); !ok) return std::move(ok).error();
  }
  std::string key;
  key.reserve(64);
  key.append("d").push_back(kSep);
  key.append(auth::StageName(stage_)).push_back(kSep);
  key.append(who.client_id).push_back(kSep);
  key.append(KindCode(kind)).push_back(kSep);
  if (NeedsChannel(kind)) key.append(channel);
  key.push_back(kSep);
  if (kind == DocKind::kViewerState || kind == DocKind::kExtensionViewerState) key.append(user);
  return Target{std::move(key), kind};
}

Result<DocumentService::Target> DocumentService::OwnTarget(const Identity& who,
                                                           DocKind kind) const {
  std::string_view user =
      kind == DocKind::kExtensionViewerState ? std::string_view(who.user_id) : who.ViewerKey();
  return Resolve(who, kind, who.channel_id, user);
}

int64_t DocumentService::ExpiryFor(DocKind kind) const {
  if (IsConfig(kind) || kind == DocKind::kHiddenState) return 0;
  return clock_.NowMs() + limits_.state_ttl_ms;
}

Result<void> DocumentService::CheckDocument(DocKind kind, const json::value& doc,
                                            std::string* text) const {
  if (!doc.is_object()) {
    return MakeError(Errc::kInvalidArgument, "Malformed input body",
                     "the document root must be a JSON object");
  }
  if (JsonDepth(doc) > limits_.max_depth) {
    return MakeError(Errc::kInvalidArgument,
                     "JSON nesting too deep (limit " + std::to_string(limits_.max_depth) + ")");
  }
  *text = json::serialize(doc);
  size_t cap = IsConfig(kind) ? limits_.config_max_bytes : limits_.state_max_bytes;
  if (text->size() > cap) {
    return MakeError(Errc::kInvalidArgument, "document too large",
                     "limit " + std::to_string(cap) + " bytes, got " +
                         std::to_string(text->size()));
  }
  return {};
}

Result<std::string> DocumentService::Read(const Identity& who, DocKind kind) {
  if (auto ok = CheckReadAccess(who, kind); !ok) return std::move(ok).error();
  auto target = OwnTarget(who, kind);
  if (!target) return std::move(target).error();
  auto docs = Lookup({target->key}, true);
  if (!docs) return std::move(docs).error();
  const auto& text = docs->front().text;
  return text ? *text : std::string("{}");
}

Result<void> DocumentService::Replace(const Identity& who, DocKind kind, const json::value& body) {
  if (auto ok = CheckWriteAccess(who, kind); !ok) return ok;
  auto target = OwnTarget(who, kind);
  if (!target) return std::move(target).error();
  std::string text;
  if (auto ok = CheckDocument(kind, body, &text); !ok) return ok;
  const int64_t expires_at_ms = ExpiryFor(kind);
  storage::WriteBatch batch;
  batch.Put(target->key, text, expires_at_ms);
  auto shared = std::make_shared<const std::string>(std::move(text));
  auto written = Write(batch, {target->key}, {DocumentCache::Doc{shared, 0, expires_at_ms}});
  if (written) PublishWrite(who, kind, *shared);
  return written;
}

void DocumentService::PublishWrite(const Identity& who, DocKind kind, const std::string& text,
                                   std::string_view channel) const {
  if (events_ == nullptr) return;
  if (channel.empty()) channel = who.channel_id;
  // Channel state goes to viewers and games; the others to games only (spec 5.3.3).
  events::Event event;
  event.client_id = who.client_id;
  event.channel_id = std::string(channel);
  event.payload_json = text;
  event.at_ms = clock_.NowMs();
  switch (kind) {
    case DocKind::kChannelState:
      event.name = "channel_state_update";
      break;
    case DocKind::kExtensionState:
      event.name = "extension_state_update";
      event.channel_id.clear();
      event.viewers = false;
      break;
    case DocKind::kChannelConfig:
      event.name = "channel_config_update";
      event.viewers = false;
      break;
    case DocKind::kExtensionConfig:
      event.name = "extension_config_update";
      event.channel_id.clear();
      event.viewers = false;
      break;
    default:
      return;
  }
  events_->Publish(event);
}

Result<void> DocumentService::Patch(const Identity& who, DocKind kind, const json::value& body) {
  if (auto ok = CheckWriteAccess(who, kind); !ok) return ok;
  if (!body.is_array() && !body.is_object()) {
    return MakeError(Errc::kInvalidArgument, "Malformed input body",
                     "a patch is a JSON Patch array or a merge-patch object");
  }
  bool map_form = body.is_object() &&
                  ((kind == DocKind::kExtensionViewerState &&
                    (who.role == Role::kBackend || who.validated_admin)) ||
                   (kind == DocKind::kChannelConfig && who.IsPrivileged()));
  if (!map_form) {
    auto target = OwnTarget(who, kind);
    if (!target) return std::move(target).error();
    std::vector<std::shared_ptr<const std::string>> written;
    auto patched = PatchTargets({*target}, {&body}, &written);
    if (patched && !written.empty()) PublishWrite(who, kind, *written.front());
    return patched;
  }
  const json::object& map = body.get_object();
  if (map.size() > limits_.max_batch_ids) {
    return MakeError(Errc::kInvalidArgument, "Too many ids specified");
  }
  std::vector<Target> targets;
  std::vector<const json::value*> patches;
  targets.reserve(map.size());
  for (const auto& entry : map) {
    if (!entry.value().is_array() && !entry.value().is_object()) {
      return MakeError(Errc::kInvalidArgument, "Malformed input body",
                       "entry " + std::string(entry.key()) + " is not a patch");
    }
    std::string_view id = entry.key();
    auto target = kind == DocKind::kExtensionViewerState ? Resolve(who, kind, {}, id)
                                                         : Resolve(who, kind, id, {});
    if (!target) return std::move(target).error();
    targets.push_back(std::move(*target));
    patches.push_back(&entry.value());
  }
  std::vector<std::shared_ptr<const std::string>> written;
  auto patched = PatchTargets(targets, patches, &written);
  if (patched && kind == DocKind::kChannelConfig && written.size() == map.size()) {
    size_t i = 0;
    for (const auto& entry : map) PublishWrite(who, kind, *written[i++], entry.key());
  }
  return patched;
}

Result<void> DocumentService::PatchTargets(
    const std::vector<Target>& targets, const std::vector<const json::value*>& patches,
    std::vector<std::shared_ptr<const std::string>>* written_out) {
  if (targets.empty()) return {};
  std::vector<std::string> keys;
  keys.reserve(targets.size());
  for (const auto& t : targets) keys.push_back(t.key);

  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    // After a conflict, read past the cache: the store has the version that won.
    auto current = Lookup(keys, attempt == 0);
    if (!current) return std::move(current).error();
    storage::WriteBatch batch;
    std::vector<DocumentCache::Doc> written;
    written.reserve(targets.size());
    for (size_t i = 0; i < targets.size(); ++i) {
      const DocumentCache::Doc& slot = (*current)[i];
      json::value doc;
      if (slot.text) {
        boost::system::error_code ec;
        json::parse_options options;
        options.max_depth = limits_.max_depth + 1;
        doc = json::parse(*slot.text, ec, {}, options);
        if (ec) return MakeError(Errc::kInternal, "stored document is not valid JSON");
      } else {
        doc = json::object();
      }
      const json::value& patch = *patches[i];
      if (patch.is_array()) {
        JsonPatchOptions options;
        options.max_document_bytes =
            IsConfig(targets[i].kind) ? limits_.config_max_bytes : limits_.state_max_bytes;
        auto applied = ApplyJsonPatch(doc, patch.get_array(), options);
        if (!applied) return applied;
      } else {
        ApplyMergePatch(doc, patch);
      }
      std::string text;
      if (auto ok = CheckDocument(targets[i].kind, doc, &text); !ok) return ok;
      const int64_t expires_at_ms = ExpiryFor(targets[i].kind);
      batch.ExpectVersion(keys[i], slot.text ? slot.version : 0);
      batch.Put(keys[i], text, expires_at_ms);
      written.push_back({std::make_shared<const std::string>(std::move(text)), 0, expires_at_ms});
    }
    std::vector<std::shared_ptr<const std::string>> texts;
    if (written_out) {
      for (const auto& doc : written) texts.push_back(doc.text);
    }
    auto applied = Write(batch, keys, std::move(written));
    if (applied) {
      if (written_out) *written_out = std::move(texts);
      return {};
    }
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

Result<std::string> DocumentService::ReadAllState(const Identity& who) {
  const DocKind kinds[] = {DocKind::kExtensionState, DocKind::kChannelState,
                           DocKind::kViewerState, DocKind::kExtensionViewerState};
  const char* names[] = {"extension", "channel", "viewer", "extension_viewer"};
  std::vector<std::string> keys;
  std::vector<int> slot_of(4, -1);
  for (int i = 0; i < 4; ++i) {
    auto target = OwnTarget(who, kinds[i]);
    if (!target) continue;  // no channel / no user id: that part reads as {}
    slot_of[i] = static_cast<int>(keys.size());
    keys.push_back(std::move(target->key));
  }
  auto docs = Lookup(keys, true);
  if (!docs) return std::move(docs).error();
  std::string out = "{";
  for (int i = 0; i < 4; ++i) {
    if (i) out.push_back(',');
    out.append("\"").append(names[i]).append("\":");
    const auto* text = slot_of[i] >= 0 ? (*docs)[slot_of[i]].text.get() : nullptr;
    out.append(text ? std::string_view(*text) : std::string_view("{}"));
  }
  out.push_back('}');
  return out;
}

Result<std::string> DocumentService::ReadAllConfig(const Identity& who) {
  std::vector<std::string> keys;
  auto channel = OwnTarget(who, DocKind::kChannelConfig);
  auto extension = OwnTarget(who, DocKind::kExtensionConfig);
  if (!extension) return std::move(extension).error();
  keys.push_back(extension->key);
  if (channel) keys.push_back(channel->key);
  auto docs = Lookup(keys, true);
  if (!docs) return std::move(docs).error();
  auto text = [&](size_t i) -> std::string_view {
    return i < docs->size() && (*docs)[i].text ? std::string_view(*(*docs)[i].text)
                                               : std::string_view("{}");
  };
  std::string out = "{\"channel\":";
  out.append(text(1)).append(",\"extension\":").append(text(0)).append("}");
  return out;
}

Result<std::string> DocumentService::ReadExtensionViewers(const Identity& who,
                                                          const std::vector<std::string>& ids) {
  if (who.role != Role::kBackend && !who.validated_admin) return Refused();
  if (ids.size() > limits_.max_batch_ids) {
    return MakeError(Errc::kInvalidArgument, "Too many ids specified");
  }
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (const auto& id : ids) {
    auto target = Resolve(who, DocKind::kExtensionViewerState, {}, id);
    if (!target) return std::move(target).error();
    keys.push_back(std::move(target->key));
  }
  auto docs = Lookup(keys, true);
  if (!docs) return std::move(docs).error();
  std::string out = "{";
  bool first = true;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!(*docs)[i].text) continue;
    if (!first) out.push_back(',');
    first = false;
    out.append(json::serialize(json::string(ids[i]))).push_back(':');
    out.append(*(*docs)[i].text);
  }
  out.push_back('}');
  return out;
}

Result<std::string> DocumentService::ReadExtensionViewer(const Identity& who,
                                                         std::string_view user_id) {
  if (who.role != Role::kBackend && !who.validated_admin) return Refused();
  auto target = Resolve(who, DocKind::kExtensionViewerState, {}, user_id);
  if (!target) return std::move(target).error();
  auto docs = Lookup({target->key}, true);
  if (!docs) return std::move(docs).error();
  const auto& text = docs->front().text;
  return text ? *text : std::string("{}");
}

}  // namespace medkit::core::kv
