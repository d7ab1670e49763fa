// Router: one table of (method, path) -> handler, filled by the routes/<family>_routes.cc
// files. Dispatch() is the whole request pipeline after parsing: CORS preflight, route lookup,
// authentication, the handler, error mapping, metrics, and a last-resort catch. It never
// throws, does no I/O of its own, and is safe to call from every server thread at once.
#pragma once

#include <boost/json/value.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/auth/identity.h"
#include "core/result.h"
#include "http/message.h"
#include "http/metrics.h"

namespace medkit::core {
class Clock;
namespace auth {
class Authenticator;
}
namespace kv {
class DocumentService;
}
namespace events {
class EventBus;
}
namespace gamecode {
class CodeService;
}
namespace users {
class UserDirectory;
}
namespace datastream {
class DatastreamService;
}
namespace poll {
class PollService;
}
namespace trivia {
class TriviaService;
}
namespace rank {
class RankService;
}
namespace accumulate {
class AccumulateService;
}
namespace jsonstore {
class JsonStoreService;
}
namespace broadcast {
class MessagingService;
class ViewerFanout;
}
namespace gamelink {
class GameLinkService;
class LinkService;
}
namespace purchase {
class TransactionService;
}
}  // namespace medkit::core

namespace medkit::http {

// What handlers may use; owned by the app, outlives the router.
struct Services {
  core::auth::Authenticator* auth = nullptr;
  core::kv::DocumentService* documents = nullptr;
  core::events::EventBus* events = nullptr;
  core::gamecode::CodeService* codes = nullptr;
  core::users::UserDirectory* users = nullptr;
  core::datastream::DatastreamService* datastream = nullptr;
  core::poll::PollService* polls = nullptr;
  core::trivia::TriviaService* trivia = nullptr;
  core::rank::RankService* rank = nullptr;
  core::accumulate::AccumulateService* accumulate = nullptr;
  core::jsonstore::JsonStoreService* json_store = nullptr;
  core::broadcast::MessagingService* messaging = nullptr;
  core::broadcast::ViewerFanout* fanout = nullptr;
  core::gamelink::GameLinkService* gamelink = nullptr;  // null when GameLink is off
  core::gamelink::LinkService* links = nullptr;
  core::purchase::TransactionService* purchases = nullptr;
  const core::Clock* clock = nullptr;
  size_t max_json_depth = 64;
  std::function<bool()> ready;  // /healthz: false while shutting down
  // Makes the writes of the requests handled so far durable; the server calls it before it
  // sends responses and drops the connection unanswered if it fails. Unset: nothing to do.
  std::function<bool()> flush_writes;
};

struct Call {
  const Request& request;
  const core::auth::Identity* identity;  // null on routes without authentication
  Services& services;
  Metrics& metrics;
  // A handler may change the response media type (only /metrics does).
  mutable std::string content_type = "application/json";
  // A handler may change the status of a successful response (bits/transactions: 201).
  mutable int status = 200;

  // The body as JSON: parsed whatever the Content-Type, depth-limited, a JSON string holding
  // JSON parsed once more (spec 3.1). An empty body is an error ("Invalid body").
  core::Result<boost::json::value> JsonBody() const;
  const core::auth::Identity& who() const { return *identity; }
};

// A handler returns the JSON text of a 200 response, or an error for error_map.
using Handler = std::function<core::Result<std::string>(const Call&)>;

enum class Auth { kNone, kRequired };

class Router {
 public:
  explicit Router(Services& services);
  ~Router();

  // Registers a route. path is absolute ("/v1/e/channel_state").
  void Add(Method method, std::string path, Auth auth, Handler handler);
  // Registers the same handler under another path (e.g. "all_config" for "config").
  void Alias(std::string alias, std::string_view path);
  // Call once after every route is added; builds the metrics series.
  void Freeze();

  Response Dispatch(const Request& request);
  // Called by the server before sending a batch of responses (see Services::flush_writes).
  bool FlushWrites() { return !services_.flush_writes || services_.flush_writes(); }

  Metrics& metrics() { return *metrics_; }

 private:
  struct Route {
    Method method;
    std::string name;  // metrics label: "GET /v1/e/channel_state"
    Auth auth;
    Handler handler;
  };
  const Route* Find(const std::string& path, Method method, bool* path_known) const;

  Services& services_;
  std::vector<Route> routes_;
  std::unordered_map<std::string, std::vector<size_t>> by_path_;
  std::unique_ptr<Metrics> metrics_;
  size_t unmatched_route_ = 0;
  size_t preflight_route_ = 0;
};

}  // namespace medkit::http
