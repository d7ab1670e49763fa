// Engagement families (spec 5.5, 5.6, 5.7): json_store, accumulate and rank. Each handler
// parses the query and body, calls one core service function, and renders.
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "core/accumulate/accumulate_service.h"
#include "core/jsonstore/json_store_service.h"
#include "core/rank/rank_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

// The id query parameter; absent reads as "" (the services treat "" as "default").
std::string_view IdOf(const Call& call) { return call.request.Query("id").value_or(""); }

core::Result<std::string> GetJsonStore(const Call& call) {
  return call.services.json_store->Read(call.who(), IdOf(call));
}

core::Result<std::string> PostJsonStore(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  auto done = call.services.json_store->Write(call.who(), IdOf(call), *body);
  if (!done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> PostAccumulate(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  auto done = call.services.accumulate->Append(call.who(), IdOf(call), *body);
  if (!done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> GetAccumulate(const Call& call) {
  auto start = core::accumulate::AccumulateService::ParseStart(call.request.Query("start"));
  if (!start) return std::move(start).error();
  return call.services.accumulate->Read(call.who(), IdOf(call), *start);
}

core::Result<std::string> PostRank(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  const boost::json::string* key = nullptr;
  if (const auto* object = body->if_object()) {
    if (const auto* value = object->if_contains("key")) key = value->if_string();
  }
  if (key == nullptr) {
    return core::MakeError(core::Errc::kInvalidArgument, "Malformed json body",
                           "the body must be {\"key\": <string>}");
  }
  auto answer = call.services.rank->Answer(call.who(), IdOf(call), *key);
  if (!answer) return std::move(answer).error();
  std::string out = R"({"accepted":true)";
  if (answer->replaced) {
    out.append(R"(,"original":)")
        .append(boost::json::serialize(boost::json::string(answer->original)));
  }
  out.push_back('}');
  return out;
}

core::Result<std::string> GetRank(const Call& call) {
  return call.services.rank->Read(call.who(), IdOf(call));
}

core::Result<std::string> DeleteRank(const Call& call) {
  auto done = call.services.rank->Clear(call.who(), IdOf(call));
  if (!done) return std::move(done).error();
  return std::string("{}");
}

}  // namespace

void RegisterEngagementRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kGet, p + "json_store", Auth::kRequired, GetJsonStore);
  router.Add(Method::kPost, p + "json_store", Auth::kRequired, PostJsonStore);
  router.Add(Method::kGet, p + "accumulate", Auth::kRequired, GetAccumulate);
  router.Add(Method::kPost, p + "accumulate", Auth::kRequired, PostAccumulate);
  router.Add(Method::kGet, p + "rank", Auth::kRequired, GetRank);
  router.Add(Method::kPost, p + "rank", Auth::kRequired, PostRank);
  router.Add(Method::kDelete, p + "rank", Auth::kRequired, DeleteRank);
}

}  // namespace medkit::http
