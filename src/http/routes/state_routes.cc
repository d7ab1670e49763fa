// State stores (spec 5.3): extension, channel, viewer, extension-viewer and hidden state, and
// all_state. Each handler parses, calls DocumentService, and renders.
#include <boost/json/value.hpp>
#include <unordered_set>

#include "core/kv/document_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

using core::kv::DocKind;

namespace {

// Splits "a,b,c" into distinct, trimmed, non-empty ids, in order of first appearance.
std::vector<std::string> SplitIds(std::string_view list) {
  std::vector<std::string> ids;
  std::unordered_set<std::string_view> seen;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view id = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    while (!id.empty() && id.front() == ' ') id.remove_prefix(1);
    while (!id.empty() && id.back() == ' ') id.remove_suffix(1);
    if (!id.empty() && seen.insert(id).second) ids.emplace_back(id);
  }
  return ids;
}

Handler Get(DocKind kind) {
  return [kind](const Call& call) { return call.services.documents->Read(call.who(), kind); };
}

Handler Replace(DocKind kind) {
  return [kind](const Call& call) -> core::Result<std::string> {
    auto body = call.JsonBody();
    if (!body) return std::move(body).error();
    auto done = call.services.documents->Replace(call.who(), kind, *body);
    if (!done) return std::move(done).error();
    return std::string("{}");
  };
}

Handler Patch(DocKind kind) {
  return [kind](const Call& call) -> core::Result<std::string> {
    auto body = call.JsonBody();
    if (!body) return std::move(body).error();
    auto done = call.services.documents->Patch(call.who(), kind, *body);
    if (!done) return std::move(done).error();
    return std::string("{}");
  };
}

core::Result<std::string> GetExtensionViewerState(const Call& call) {
  auto& docs = *call.services.documents;
  if (auto ids = call.request.Query("user_ids")) {
    return docs.ReadExtensionViewers(call.who(), SplitIds(*ids));
  }
  if (auto id = call.request.Query("userID")) return docs.ReadExtensionViewer(call.who(), *id);
  return docs.Read(call.who(), DocKind::kExtensionViewerState);
}

core::Result<std::string> GetAllState(const Call& call) {
  return call.services.documents->ReadAllState(call.who());
}

}  // namespace

void RegisterStateRoutes(Router& router) {
  std::string p = kApiPrefix;
  const std::pair<const char*, DocKind> stores[] = {
      {"extension_state", DocKind::kExtensionState},
      {"channel_state", DocKind::kChannelState},
      {"viewer_state", DocKind::kViewerState},
      {"extension_viewer_state", DocKind::kExtensionViewerState},
      {"extension_hidden_state", DocKind::kHiddenState},
  };
  for (const auto& [path, kind] : stores) {
    if (kind == DocKind::kExtensionViewerState) {
      router.Add(Method::kGet, p + path, Auth::kRequired, GetExtensionViewerState);
    } else {
      router.Add(Method::kGet, p + path, Auth::kRequired, Get(kind));
    }
    router.Add(Method::kPost, p + path, Auth::kRequired, Replace(kind));
    router.Add(Method::kPatch, p + path, Auth::kRequired, Patch(kind));
  }
  router.Add(Method::kGet, p + "all_state", Auth::kRequired, GetAllState);
}

}  // namespace medkit::http
