// Shared-identity listing (spec 5.14): GET user_ids?cursor=. Parses, calls UserDirectory,
// renders.
#include <boost/json.hpp>

#include "core/users/user_directory.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

core::Result<std::string> GetUserIds(const Call& call) {
  auto cursor = call.request.Query("cursor");
  auto page = call.services.users->List(call.who(), cursor ? *cursor : std::string_view("0"));
  if (!page) return std::move(page).error();
  namespace json = boost::json;
  std::string out = "{\"next\":" + json::serialize(json::string(page->next)) + ",\"results\":[";
  for (size_t i = 0; i < page->user_ids.size(); ++i) {
    if (i) out.push_back(',');
    out += "{\"twitch_id\":" + json::serialize(json::string(page->user_ids[i])) + "}";
  }
  return out + "]}";
}

}  // namespace

void RegisterUserRoutes(Router& router) {
  router.Add(Method::kGet, std::string(kApiPrefix) + "user_ids", Auth::kRequired, GetUserIds);
}

}  // namespace medkit::http
