// Config stores (spec 5.4): config (combined), config/channel, config/extension, and the
// documentation aliases all_config, channel_config, extension_config.
#include <boost/json/value.hpp>

#include "core/kv/document_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

using core::kv::DocKind;

namespace {

Handler Get(DocKind kind) {
  return [kind](const Call& call) { return call.services.documents->Read(call.who(), kind); };
}

Handler Write(DocKind kind, bool patch) {
  return [kind, patch](const Call& call) -> core::Result<std::string> {
    auto body = call.JsonBody();
    if (!body) return std::move(body).error();
    auto& docs = *call.services.documents;
    auto done = patch ? docs.Patch(call.who(), kind, *body) : docs.Replace(call.who(), kind, *body);
    if (!done) return std::move(done).error();
    return std::string("{}");
  };
}

core::Result<std::string> GetAllConfig(const Call& call) {
  return call.services.documents->ReadAllConfig(call.who());
}

}  // namespace

void RegisterConfigRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kGet, p + "config", Auth::kRequired, GetAllConfig);
  const std::pair<const char*, DocKind> stores[] = {
      {"config/channel", DocKind::kChannelConfig},
      {"config/extension", DocKind::kExtensionConfig},
  };
  for (const auto& [path, kind] : stores) {
    router.Add(Method::kGet, p + path, Auth::kRequired, Get(kind));
    router.Add(Method::kPost, p + path, Auth::kRequired, Write(kind, false));
    router.Add(Method::kPatch, p + path, Auth::kRequired, Write(kind, true));
  }
  router.Alias(p + "all_config", p + "config");
  router.Alias(p + "channel_config", p + "config/channel");
  router.Alias(p + "extension_config", p + "config/extension");
}

}  // namespace medkit::http
