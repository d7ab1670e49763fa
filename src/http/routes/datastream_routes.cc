// Datastream (spec 5.13): POST datastream. Parses, calls DatastreamService, renders {}.
#include "core/datastream/datastream_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

core::Result<std::string> PostDatastream(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (auto done = call.services.datastream->Post(call.who(), *body); !done) {
    return std::move(done).error();
  }
  return std::string("{}");
}

}  // namespace

void RegisterDatastreamRoutes(Router& router) {
  router.Add(Method::kPost, std::string(kApiPrefix) + "datastream", Auth::kRequired,
             PostDatastream);
}

}  // namespace medkit::http
