#include "core/jsonstore/json_store_service.h"

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <utility>

namespace medkit::core::jsonstore {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr std::string_view kGlobalDash = "global-";

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
}

}  // namespace

JsonStoreService::JsonStoreService(storage::Store& store, const Clock& clock, auth::Stage stage,
                                   JsonStoreLimits limits, events::EventBus* events)
    : store_(store), clock_(clock), stage_(stage), limits_(limits), events_(events) {}

Result<JsonStoreService::Target> JsonStoreService::Resolve(const Identity& who,
                                                           std::string_view id) const {
  if (id.empty()) id = "default";
  if (id.size() > limits_.max_id_bytes) {
    return MakeError(Errc::kInvalidArgument, "json_store id too long",
                     "limit " + std::to_string(limits_.max_id_bytes) + " bytes");
  }
  std::string_view body = id.starts_with(kGlobalDash) ? id.substr(kGlobalDash.size()) : id;
  if (body.empty() || !std::all_of(body.begin(), body.end(), IsIdChar)) {
    return MakeError(Errc::kInvalidArgument, "invalid json_store id",
                     "letters, digits and '_' only (optionally after \"global-\")");
  }
  Target target;
  target.id = std::string(id);
  target.global = id.starts_with("global");
  if (!target.global) {
    if (who.channel_id.empty()) return MakeError(Errc::kInvalidArgument, "channel id required");
    if (HasControl(who.channel_id)) {
      return MakeError(Errc::kInvalidArgument, "channel id contains control characters");
    }
  }
  std::string& key = target.key;
  key.reserve(40 + id.size());
  key.append("j").push_back(kSep);
  key.append(auth::StageName(stage_)).push_back(kSep);
  key.append(who.client_id).push_back(kSep);
  if (!target.global) key.append(who.channel_id);
  key.push_back(kSep);
  key.append(id);
  return target;
}

Result<std::string> JsonStoreService::Read(const Identity& who, std::string_view id) {
  auto target = Resolve(who, id);
  if (!target) return std::move(target).error();
  auto entry = store_.Get(target->key);
  if (!entry) return std::move(entry).error();
  if (!*entry) return MakeError(Errc::kNotFound, "Not Found");
  return std::move((*entry)->value);
}

Result<void> JsonStoreService::Write(const Identity& who, std::string_view id,
                                     const json::value& value) {
  if (who.role == Role::kViewer) {
    return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
  }
  auto target = Resolve(who, id);
  if (!target) return std::move(target).error();
  if (!value.is_object()) {
    return MakeError(Errc::kInvalidArgument, "Malformed json body",
                     "the body must be a JSON object");
  }
  std::string text = json::serialize(value);
  if (text.size() >= limits_.value_size_limit) {
    return MakeError(Errc::kInvalidArgument, "document too large",
                     "the serialized object must be under " +
                         std::to_string(limits_.value_size_limit) + " bytes, got " +
                         std::to_string(text.size()));
  }
  const int64_t now_ms = clock_.NowMs();
  std::string payload;
  if (events_ != nullptr) {
    payload = "{\"id\":" + json::serialize(json::string(target->id)) + ",\"value\":" + text + "}";
  }
  storage::WriteBatch batch;
  batch.Put(target->key, std::move(text), now_ms + limits_.value_ttl_ms);
  auto applied = store_.Apply(batch);
  if (!applied) return std::move(applied).error();
  if (events_ != nullptr) {
    events_->Publish(events::Event{who.client_id, target->global ? std::string() : who.channel_id,
                                   "json_store_update:" + target->id, std::move(payload), now_ms});
  }
  return {};
}

}  // namespace medkit::core::jsonstore
