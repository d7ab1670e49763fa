// Server configuration: command-line flags and MEDKIT_* environment variables (CLI11) for the
// process, plus an optional JSON file for extensions and limits (see docs/configuration.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/broadcast/messaging_service.h"
#include "core/datastream/datastream_service.h"
#include "core/gamecode/code_service.h"
#include "core/kv/document_service.h"
#include "core/users/user_directory.h"
#include "core/result.h"

namespace medkit::app {

struct ExtensionConfig {
  std::string client_id;
  std::string secret_b64;
  std::string owner_id;
  std::vector<std::string> admin_ids;
};

// Viewer messaging (docs/configuration.md, "messaging").
struct MessagingConfig {
  // The Pusher-protocol socket at /app/<key>; unset: on in the sandbox stage, off in
  // production (its channels are public, as Pusher's are).
  int pusher = -1;
  bool native_stream = true;   // /v1/e/events: authenticated WebSocket and Server-Sent Events
  int64_t vote_update_interval_ms = 5000;
  core::broadcast::MessagingLimits limits;  // flood limit per caller, data size
  size_t socket_queue_bytes = 1024 * 1024;  // a slower viewer socket is disconnected
  int ping_seconds = 30;                    // WebSocket pings, SSE keep-alive comments
};

// The Twitch Extension PubSub transport (docs/configuration.md, "twitch"). Off unless enabled:
// an unconfigured server never contacts Twitch.
struct TwitchConfig {
  bool pubsub = false;
  std::string api_base = "https://api.twitch.tv/helix";
  std::string ca_file;  // https: PEM CAs to trust instead of the system's store
  // Per channel (and for global messages): Twitch's measured limit is a pool of 100 that
  // refills at 1 a second (spec 6.3).
  int64_t rate_per_minute = 60;
  int64_t burst = 100;
  size_t queue_limit = 100;  // custom messages waiting per channel; the oldest are dropped
  int connections = 4;       // concurrent requests to Twitch
  int max_tries = 8;         // per part, on 429 / 5xx / network errors
};

struct AppConfig {
  // Process options (flag, or MEDKIT_<NAME> environment variable).
  std::string stage = "sandbox";  // sandbox | production
  std::string listen = "127.0.0.1";
  int port = 5000;
  int gamelink_port = -1;  // a second listener (GameLink's usual 5051); -1: none, 0: a free one
  std::string data_dir = "./data";
  std::string store = "rocksdb";  // rocksdb | memory
  std::string config_file;
  int threads = 0;  // 0: one per core
  std::string log_level = "info";

  // From the config file.
  std::vector<ExtensionConfig> extensions;
  std::string signing_key_b64;  // the server's own token key; generated when empty
  core::kv::DocLimits limits;
  core::gamecode::CodeLimits codes;          // limits.codes_per_set
  core::users::UserDirectoryOptions user_ids;  // limits.user_ids_page
  core::datastream::DatastreamLimits datastream;  // limits.datastream_events
  size_t max_body_bytes = 1024 * 1024;
  size_t max_header_bytes = 16 * 1024;
  int64_t sandbox_token_ttl_seconds = 7 * 86400;
  int idle_timeout_seconds = 120;
  bool sync_writes = false;  // fsync every write (survives OS crash, much slower)
  size_t document_cache_bytes = 64 * 1024 * 1024;  // read cache of documents; 0 disables
  MessagingConfig messaging;
  bool gamelink = true;  // GameLink sockets at /<version>/<client_id> on the REST port
  TwitchConfig twitch;
};

// Reads the JSON config file named in config.config_file (if any) into config. Keys the file
// does not name keep their values. Unknown keys are errors, to catch typos.
core::Result<void> LoadConfigFile(AppConfig& config);

// Checks values that CLI11 cannot (stage and store names, ranges).
core::Result<void> Validate(const AppConfig& config);

}  // namespace medkit::app
