// SocketHub internals shared by server.cc (which hands upgraded sockets over) and
// ws/socket_hub.cc (which runs them). Includes Asio: include only from those two files.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/auth/identity.h"
#include "core/result.h"
#include "http/message.h"
#include "http/socket_hub.h"

namespace medkit::http {

namespace ws {
class StreamSession;
}

enum class StreamKind { kNone, kPusher, kNativeWs, kSse, kGameLink };

// What Prepare() found out about a request that opens a stream.
struct StreamRequest {
  StreamKind kind = StreamKind::kNone;
  core::auth::Identity who;  // native streams only
  std::string client_id;     // GameLink: from the path
  std::string accept_key;    // Sec-WebSocket-Accept (WebSocket kinds)
};

// The sockets of one event-loop thread. Touched only on that thread.
struct WorkerHub {
  WorkerHub(SocketHub::Impl& hub, boost::asio::io_context& ioc, int index)
      : hub(hub), ioc(ioc), index(index), ticker(ioc), drain_timer(ioc) {}

  SocketHub::Impl& hub;
  boost::asio::io_context& ioc;
  int index;
  boost::asio::steady_timer ticker;
  boost::asio::steady_timer drain_timer;
  bool draining = false;
  uint64_t next_socket = 1;
  std::unordered_set<ws::StreamSession*> sessions;
  std::unordered_map<std::string, std::unordered_set<ws::StreamSession*>> topics;
};

struct SocketHub::Impl {
  Impl(SocketHubOptions o, const core::auth::Authenticator& a, const core::Clock& c)
      : options(o), auth(a), clock(c) {}

  SocketHubOptions options;
  const core::auth::Authenticator& auth;
  const core::Clock& clock;

  mutable std::shared_mutex mu;
  std::vector<std::unique_ptr<WorkerHub>> workers;  // guarded by mu

  std::atomic<int64_t> pusher_sockets{0};
  std::atomic<int64_t> native_sockets{0};
  std::atomic<int64_t> sse_streams{0};
  std::atomic<int64_t> game_sockets{0};
  core::gamelink::GameLinkService* gamelink = nullptr;  // set before listening
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> frames{0};
  std::atomic<uint64_t> slow_disconnects{0};
  std::atomic<uint64_t> protocol_errors{0};

  // Server side: one WorkerHub per event-loop thread, made at Listen(), dropped before the
  // server's io_contexts are destroyed.
  WorkerHub& AddWorker(boost::asio::io_context& ioc);
  void DetachWorkers();

  // Which stream, if any, a request asks for. upgrade: it carries "Upgrade: websocket".
  StreamKind Classify(const Request& request, bool upgrade) const;
  // Checks the request (WebSocket version and key, the native stream's token). An error
  // is answered as a plain HTTP error response and nothing is upgraded.
  core::Result<StreamRequest> Prepare(StreamKind kind, const Request& request,
                                      std::string_view ws_key, std::string_view ws_version) const;
  // Takes over a socket. preface: bytes to write first (responses to requests pipelined
  // before the upgrade); leftover: bytes read after the upgrade request.
  void Adopt(WorkerHub& worker, boost::asio::ip::tcp::socket socket, StreamRequest request,
             std::string preface, std::string leftover);
  // Server drain: close every stream of this worker (a close frame where possible), then
  // drop what is still open after a short grace.
  void Drain(WorkerHub& worker);
};

}  // namespace medkit::http
