// One Register function per route family; app wiring calls each once.
#pragma once

namespace medkit::http {

class Router;

void RegisterOpsRoutes(Router& router);      // /healthz, /metrics
void RegisterSessionRoutes(Router& router);  // authtoken, user_info
void RegisterStateRoutes(Router& router);    // *_state, all_state
void RegisterConfigRoutes(Router& router);   // config, config/channel, config/extension

inline constexpr const char* kApiPrefix = "/v1/e/";

}  // namespace medkit::http
