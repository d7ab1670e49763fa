// The HTTP/1.1 server: one event loop per thread, each with its own SO_REUSEPORT listener, no
// locks on the request path. Each connection reads into its own buffer, answers every complete
// (pipelined) request found in one read, and sends all the responses with one write. Beast's
// parser does the parsing (with header and body limits); the loop and the response
// serialization are ours. Beast and Asio stay inside server.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/result.h"

namespace medkit::http {

class Router;
class SocketHub;

struct ServerOptions {
  std::string listen = "127.0.0.1";
  uint16_t port = 5000;  // 0 picks a free port (see Listen())
  // A second port serving the same (GameLink's 5051, so stock SDK configs work); -1: none.
  int extra_port = -1;
  int threads = 1;
  size_t max_header_bytes = 16 * 1024;   // 431 beyond
  size_t max_body_bytes = 1024 * 1024;   // 413 beyond
  int idle_timeout_seconds = 120;        // a connection with nothing to do is closed
  int shutdown_grace_seconds = 10;       // Stop(): in-flight work gets this long
  SocketHub* hub = nullptr;  // viewer streams (Pusher, native WebSocket, SSE); null: none
};

class Server {
 public:
  Server(ServerOptions options, Router& router);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every thread's listeners; returns the port actually bound.
  core::Result<uint16_t> Listen();
  // The extra port actually bound (after Listen()), or -1.
  int extra_port() const;
  // Makes SIGINT and SIGTERM call Stop(). Call before Run().
  void StopOnSignals();
  // Serves until Stop() has drained every connection. Blocks the calling thread.
  void Run();
  // Graceful stop: stop accepting, answer the requests already received, close idle
  // connections, then let Run() return (forced after shutdown_grace_seconds). Thread-safe.
  void Stop();
  bool stopping() const;

  struct Impl;  // defined in server.cc only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace medkit::http
