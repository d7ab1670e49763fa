#include "app/config.h"

#include <boost/json.hpp>
#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

namespace medkit::app {
namespace json = boost::json;

namespace {

core::Error Bad(const std::string& what) {
  return core::MakeError(core::Errc::kInvalidArgument, "config: " + what);
}

// Reads a non-negative integer no larger than max (and than what T holds).
template <class T>
core::Result<void> ReadNumber(const json::object& o, std::string_view key, T& out,
                              uint64_t max = static_cast<uint64_t>(INT32_MAX)) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  const json::value& v = it->value();
  uint64_t n = 0;
  if (v.is_int64() && v.get_int64() >= 0) {
    n = static_cast<uint64_t>(v.get_int64());
  } else if (v.is_uint64()) {
    n = v.get_uint64();
  } else {
    return Bad(std::string(key) + " must be a non-negative integer");
  }
  max = std::min<uint64_t>(max, static_cast<uint64_t>(std::numeric_limits<T>::max()));
  if (n > max) return Bad(std::string(key) + " must be at most " + std::to_string(max));
  out = static_cast<T>(n);
  return {};
}

constexpr uint64_t kMaxSeconds = 100ULL * 365 * 86400;  // a century is "forever"
constexpr uint64_t kMaxBytes = 1ULL << 30;

core::Result<void> ReadString(const json::object& o, std::string_view key, std::string& out) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  if (!it->value().is_string()) return Bad(std::string(key) + " must be a string");
  out = std::string(it->value().get_string());
  return {};
}

core::Result<void> ReadBool(const json::object& o, std::string_view key, bool& out) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  if (!it->value().is_bool()) return Bad(std::string(key) + " must be true or false");
  out = it->value().get_bool();
  return {};
}

core::Result<void> ReadMessaging(const json::value& v, MessagingConfig& m) {
  if (!v.is_object()) return Bad("messaging must be an object");
  const json::object& o = v.get_object();
  static const char* kKeys[] = {"pusher",          "native_stream",   "vote_update_interval_ms",
                                "rate_burst",      "rate_per_minute", "max_data_bytes",
                                "socket_queue_bytes", "ping_seconds"};
  for (const auto& kv : o) {
    bool known = false;
    for (const char* k : kKeys) known = known || kv.key() == k;
    if (!known) return Bad("unknown messaging key \"" + std::string(kv.key()) + "\"");
  }
  if (o.contains("pusher")) {
    bool pusher = false;
    if (auto r = ReadBool(o, "pusher", pusher); !r) return r;
    m.pusher = pusher ? 1 : 0;
  }
  if (auto r = ReadBool(o, "native_stream", m.native_stream); !r) return r;
  if (auto r = ReadNumber(o, "vote_update_interval_ms", m.vote_update_interval_ms, 3'600'000);
      !r) {
    return r;
  }
  uint64_t burst = static_cast<uint64_t>(m.limits.per_caller.burst);
  uint64_t per_minute = static_cast<uint64_t>(m.limits.per_caller.per_minute);
  if (auto r = ReadNumber(o, "rate_burst", burst, 1'000'000); !r) return r;
  if (auto r = ReadNumber(o, "rate_per_minute", per_minute, 60'000'000); !r) return r;
  m.limits.per_caller.burst = static_cast<double>(burst);
  m.limits.per_caller.per_minute = static_cast<double>(per_minute);
  if (auto r = ReadNumber(o, "max_data_bytes", m.limits.max_data_bytes, kMaxBytes); !r) return r;
  if (auto r = ReadNumber(o, "socket_queue_bytes", m.socket_queue_bytes, kMaxBytes); !r) return r;
  if (auto r = ReadNumber(o, "ping_seconds", m.ping_seconds, 3600); !r) return r;
  if (m.socket_queue_bytes < 64 * 1024) return Bad("messaging.socket_queue_bytes must be at least 65536");
  if (m.ping_seconds < 1) return Bad("messaging.ping_seconds must be at least 1");
  return {};
}

core::Result<void> ReadTwitch(const json::value& v, TwitchConfig& t) {
  if (!v.is_object()) return Bad("twitch must be an object");
  const json::object& o = v.get_object();
  static const char* kKeys[] = {"pubsub",      "api_base",    "ca_file",  "rate_per_minute",
                                "burst",       "queue_limit", "connections", "max_tries"};
  for (const auto& kv : o) {
    bool known = false;
    for (const char* k : kKeys) known = known || kv.key() == k;
    if (!known) return Bad("unknown twitch key \"" + std::string(kv.key()) + "\"");
  }
  if (auto r = ReadBool(o, "pubsub", t.pubsub); !r) return r;
  if (auto r = ReadString(o, "api_base", t.api_base); !r) return r;
  if (auto r = ReadString(o, "ca_file", t.ca_file); !r) return r;
  if (auto r = ReadNumber(o, "rate_per_minute", t.rate_per_minute, 60'000'000); !r) return r;
  if (auto r = ReadNumber(o, "burst", t.burst, 1'000'000); !r) return r;
  if (auto r = ReadNumber(o, "queue_limit", t.queue_limit, 1'000'000); !r) return r;
  if (auto r = ReadNumber(o, "connections", t.connections, 64); !r) return r;
  if (auto r = ReadNumber(o, "max_tries", t.max_tries, 100); !r) return r;
  if (t.rate_per_minute < 1) return Bad("twitch.rate_per_minute must be at least 1");
  if (t.burst < 1) return Bad("twitch.burst must be at least 1");
  if (t.queue_limit < 1) return Bad("twitch.queue_limit must be at least 1");
  if (t.connections < 1) return Bad("twitch.connections must be at least 1");
  if (t.max_tries < 1) return Bad("twitch.max_tries must be at least 1");
  if (t.api_base.rfind("http://", 0) != 0 && t.api_base.rfind("https://", 0) != 0) {
    return Bad("twitch.api_base must start with http:// or https://");
  }
  return {};
}

}  // namespace

core::Result<void> LoadConfigFile(AppConfig& config) {
  if (config.config_file.empty()) return {};
  std::ifstream in(config.config_file);
  if (!in) return Bad("cannot read " + config.config_file);
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  json::value root = json::parse(text.str(), ec);
  if (ec || !root.is_object()) return Bad(config.config_file + " is not a JSON object");
  const json::object& o = root.get_object();

  static const char* kKnown[] = {"extensions",      "signing_key", "limits", "state_ttl_seconds",
                                 "sandbox_token_ttl_seconds", "idle_timeout_seconds",
                                 "sync_writes",     "stage", "document_cache_bytes",
                                 "messaging", "gamelink", "twitch"};
  for (const auto& kv : o) {
    bool known = false;
    for (const char* k : kKnown) known = known || kv.key() == k;
    if (!known) return Bad("unknown key \"" + std::string(kv.key()) + "\"");
  }

  if (auto it = o.find("extensions"); it != o.end()) {
    if (!it->value().is_array()) return Bad("extensions must be a list");
    for (const auto& e : it->value().get_array()) {
      if (!e.is_object()) return Bad("each extension must be an object");
      const json::object& x = e.get_object();
      for (const auto& kv : x) {
        if (kv.key() != "client_id" && kv.key() != "secret" && kv.key() != "owner_id" &&
            kv.key() != "admin_ids") {
          return Bad("unknown extension key \"" + std::string(kv.key()) + "\"");
        }
      }
      ExtensionConfig ext;
      if (auto r = ReadString(x, "client_id", ext.client_id); !r) return r;
      if (auto r = ReadString(x, "secret", ext.secret_b64); !r) return r;
      if (auto r = ReadString(x, "owner_id", ext.owner_id); !r) return r;
      if (auto a = x.find("admin_ids"); a != x.end()) {
        if (!a->value().is_array()) return Bad("admin_ids must be a list of strings");
        for (const auto& id : a->value().get_array()) {
          if (!id.is_string()) return Bad("admin_ids must be a list of strings");
          ext.admin_ids.emplace_back(id.get_string());
        }
      }
      if (ext.client_id.empty() || ext.secret_b64.empty()) {
        return Bad("each extension needs client_id and secret");
      }
      config.extensions.push_back(std::move(ext));
    }
  }
  if (auto r = ReadString(o, "signing_key", config.signing_key_b64); !r) return r;
  if (auto r = ReadString(o, "stage", config.stage); !r) return r;
  int64_t ttl_seconds = config.limits.state_ttl_ms / 1000;
  if (auto r = ReadNumber(o, "state_ttl_seconds", ttl_seconds, kMaxSeconds); !r) return r;
  config.limits.state_ttl_ms = ttl_seconds * 1000;
  if (auto r = ReadNumber(o, "sandbox_token_ttl_seconds", config.sandbox_token_ttl_seconds,
                          kMaxSeconds);
      !r) {
    return r;
  }
  if (auto r = ReadNumber(o, "idle_timeout_seconds", config.idle_timeout_seconds); !r) return r;
  if (auto r = ReadNumber(o, "document_cache_bytes", config.document_cache_bytes, 1ULL << 34); !r) {
    return r;
  }
  if (auto it = o.find("sync_writes"); it != o.end()) {
    if (!it->value().is_bool()) return Bad("sync_writes must be true or false");
    config.sync_writes = it->value().get_bool();
  }
  if (auto r = ReadBool(o, "gamelink", config.gamelink); !r) return r;
  if (auto it = o.find("messaging"); it != o.end()) {
    if (auto r = ReadMessaging(it->value(), config.messaging); !r) return r;
  }
  if (auto it = o.find("twitch"); it != o.end()) {
    if (auto r = ReadTwitch(it->value(), config.twitch); !r) return r;
  }
  if (auto it = o.find("limits"); it != o.end()) {
    if (!it->value().is_object()) return Bad("limits must be an object");
    const json::object& l = it->value().get_object();
    static const char* kLimitKeys[] = {"state_bytes", "config_bytes", "json_depth",
                                       "batch_ids",   "body_bytes",   "header_bytes",
                                       "codes_per_set", "user_ids_page", "datastream_events"};
    for (const auto& kv : l) {
      bool known = false;
      for (const char* k : kLimitKeys) known = known || kv.key() == k;
      if (!known) return Bad("unknown limit \"" + std::string(kv.key()) + "\"");
    }
    auto& lim = config.limits;
    if (auto r = ReadNumber(l, "state_bytes", lim.state_max_bytes, kMaxBytes); !r) return r;
    if (auto r = ReadNumber(l, "config_bytes", lim.config_max_bytes, kMaxBytes); !r) return r;
    if (auto r = ReadNumber(l, "json_depth", lim.max_depth, 1000); !r) return r;
    if (auto r = ReadNumber(l, "batch_ids", lim.max_batch_ids, 1'000'000); !r) return r;
    if (auto r = ReadNumber(l, "body_bytes", config.max_body_bytes, kMaxBytes); !r) return r;
    if (auto r = ReadNumber(l, "header_bytes", config.max_header_bytes, 1 << 20); !r) return r;
    if (auto r = ReadNumber(l, "codes_per_set", config.codes.max_codes_per_set, 999'999); !r) {
      return r;
    }
    if (auto r = ReadNumber(l, "user_ids_page", config.user_ids.page_size, 1000); !r) return r;
    if (auto r = ReadNumber(l, "datastream_events", config.datastream.max_events, 100'000); !r) {
      return r;
    }
  }
  return {};
}

core::Result<void> Validate(const AppConfig& config) {
  if (config.stage != "sandbox" && config.stage != "production") {
    return Bad("stage must be sandbox or production, not \"" + config.stage + "\"");
  }
  if (config.store != "rocksdb" && config.store != "memory") {
    return Bad("store must be rocksdb or memory, not \"" + config.store + "\"");
  }
  if (config.port < 0 || config.port > 65535) return Bad("port out of range");
  if (config.gamelink_port < -1 || config.gamelink_port > 65535) {
    return Bad("gamelink port out of range");
  }
  if (config.limits.max_depth < 2 || config.limits.max_depth > 1000) {
    return Bad("limits.json_depth must be between 2 and 1000");
  }
  if (config.stage == "production" && config.extensions.empty()) {
    return Bad("the production stage needs at least one extension in the config file");
  }
  return {};
}

}  // namespace medkit::app
