// Operational endpoints outside the MEDKit API: health and Prometheus metrics.
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

core::Result<std::string> Healthz(const Call& call) {
  if (call.services.ready && !call.services.ready()) {
    return core::MakeError(core::Errc::kUnavailable, "shutting down");
  }
  return std::string(R"({"status":"ok"})");
}

core::Result<std::string> MetricsText(const Call& call) {
  call.content_type = "text/plain; version=0.0.4";
  return call.metrics.Render();
}

}  // namespace

void RegisterOpsRoutes(Router& router) {
  router.Add(Method::kGet, "/healthz", Auth::kNone, Healthz);
  router.Add(Method::kGet, "/metrics", Auth::kNone, MetricsText);
}

}  // namespace medkit::http
