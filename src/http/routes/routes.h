// One Register function per route family; app wiring calls each once.
#pragma once

namespace medkit::http {

class Router;

void RegisterOpsRoutes(Router& router);      // /healthz, /metrics
void RegisterSessionRoutes(Router& router);  // authtoken, user_info
void RegisterStateRoutes(Router& router);    // *_state, all_state
void RegisterConfigRoutes(Router& router);   // config, config/channel, config/extension
void RegisterPollRoutes(Router& router);     // vote, vote_logs, vote_config, vote_modifier
void RegisterTriviaRoutes(Router& router);   // curated_poll*, team_membership
void RegisterEngagementRoutes(Router& router);  // json_store, accumulate, rank

void RegisterCodeRoutes(Router& router);        // codes, codes/*
void RegisterUserRoutes(Router& router);        // user_ids
void RegisterDatastreamRoutes(Router& router);  // datastream
void RegisterGameLinkRoutes(Router& router);    // matchmaking/invite
void RegisterMessagingRoutes(Router& router);   // broadcast, extension_broadcast, whisper_self, ...
void RegisterLinkRoutes(Router& router);        // gamelink/token, pin, validate_pin, ...
void RegisterPurchaseRoutes(Router& router);    // bits/transactions, coins/purchase

inline constexpr const char* kApiPrefix = "/v1/e/";

}  // namespace medkit::http
