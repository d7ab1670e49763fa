#include "http/server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "http/error_map.h"
#include "http/message.h"
#include "http/router.h"
#include "http/socket_hub.h"
#include "http/ws/hub_internal.h"

namespace medkit::http {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr size_t kInitialReadBuffer = 4096;
constexpr size_t kShrinkAbove = 64 * 1024;
// Lingering close: after a response that ends the connection, the rest of what the client
// sends (say, the body of a refused 2 MiB upload) is read and dropped, so the client is not
// hit by a reset before it reads the response. Bounded in bytes and seconds.
constexpr size_t kMaxLingerBytes = 8 * 1024 * 1024;
constexpr int64_t kLingerSeconds = 2;

const char* StatusText(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

}  // namespace

class Connection;

struct Worker {
  asio::io_context ioc{1};
  WorkerHub* hub = nullptr;  // viewer streams on this thread (owned by the SocketHub)
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;  // the port, and the extra one
  std::optional<asio::steady_timer> ticker;
  std::unordered_set<Connection*> connections;  // touched only on this worker's thread
  std::vector<std::shared_ptr<Connection>> awaiting_flush;  // responses ready, not yet durable
  bool draining = false;
  int64_t now_s = 0;  // steady seconds, refreshed by the ticker
  std::string date;   // "Date: ...\r\n", refreshed by the ticker

  void RefreshClock() {
    now_s = std::chrono::duration_cast<std::chrono::seconds>(
                std::chrono::steady_clock::now().time_since_epoch())
                .count();
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    date = buf;
  }
};

struct Server::Impl {
  ServerOptions options;
  Router& router;
  std::vector<std::unique_ptr<Worker>> workers;
  std::atomic<bool> stopping{false};
  std::optional<asio::signal_set> signals;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;  // guarded by mu

  Impl(ServerOptions o, Router& r) : options(std::move(o)), router(r) {}
  void Accept(Worker& worker, tcp::acceptor& acceptor);
  void QueueForFlush(Worker& worker, std::shared_ptr<Connection> connection);
  void Tick(Worker& worker);
  void Drain(Worker& worker);
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Worker& worker, Server::Impl& server)
      : socket_(std::move(socket)), worker_(worker), server_(server) {
    error_code ec;
    auto endpoint = socket_.remote_endpoint(ec);
    if (!ec) remote_ip_ = endpoint.address().to_string();
    socket_.set_option(tcp::no_delay(true), ec);
    in_.resize(kInitialReadBuffer);
    last_active_s_ = worker_.now_s;
    worker_.connections.insert(this);
    server_.router.metrics().ConnectionOpened();
  }

  ~Connection() {
    worker_.connections.erase(this);
    server_.router.metrics().ConnectionClosed();
  }

  void Start() { Read(); }

  // Called by the worker after its flush: send the responses, or, if the writes they
  // acknowledge could not be made durable, drop the connection unanswered.
  void AfterFlush(bool durable) {
    writing_ = false;
    if (!durable) {
      CloseSocket();
      return;
    }
    if (upgrade_) {
      HandOff();
      return;
    }
    Write();
  }


  // Called on the worker thread when the connection idles out: close unless a response is
  // being written.
  void Shutdown() {
    if (writing_) {
      close_after_write_ = true;
      return;
    }
    CloseSocket();
  }

  // Called on the worker thread when the server drains: a connection in the middle of a
  // request (or of a response) finishes it and then closes; an idle one closes now.
  void Drain() {
    if (lingering_ || (!writing_ && !RequestInProgress())) CloseSocket();
  }

  bool RequestInProgress() const { return in_len_ > 0 || parser_.has_value(); }

  bool Idle(int64_t now_s, int timeout_s) const {
    if (lingering_) return now_s - last_active_s_ >= kLingerSeconds;
    return !writing_ && now_s - last_active_s_ >= timeout_s;
  }

 private:
  void CloseSocket() {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  void LingerClose() {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    lingering_ = true;
    last_active_s_ = worker_.now_s;
    Discard();
  }

  void Discard() {
    socket_.async_read_some(asio::buffer(in_.data(), in_.size()),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->lingered_bytes_ += n;
                              if (ec || self->lingered_bytes_ > kMaxLingerBytes) {
                                self->CloseSocket();
                              } else {
                                self->Discard();
                              }
                            });
  }

  // The socket becomes a viewer stream; this connection object ends here.
  void HandOff() {
    StreamRequest request = std::move(*upgrade_);
    upgrade_.reset();
    std::string leftover(in_.data(), in_len_);
    in_len_ = 0;
    worker_.hub->hub.Adopt(*worker_.hub, std::move(socket_), std::move(request), std::move(out_),
                           std::move(leftover));
    out_.clear();
  }

  void Read() {
    if (in_len_ == in_.size()) {
      size_t limit = server_.options.max_header_bytes + server_.options.max_body_bytes + 4096;
      if (in_.size() >= limit) {
        AppendError(413, "request too large");
        close_after_write_ = true;
        Write();
        return;
      }
      in_.resize(std::min(limit, in_.size() * 2));
    }
    socket_.async_read_some(
        asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
        [self = shared_from_this()](error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(error_code ec, size_t n) {
    if (ec) {
      CloseSocket();
      return;
    }
    last_active_s_ = worker_.now_s;
    in_len_ += n;
    Process();
    if (upgrade_) {
      // Responses pipelined before the upgrade are made durable first, like any others;
      // AfterFlush then hands the socket to the viewer hub.
      writing_ = true;
      server_.QueueForFlush(worker_, shared_from_this());
    } else if (!out_.empty()) {
      // Responses wait for the worker's next durability flush (one per event-loop pass,
      // shared by every connection that has responses ready), then go out. Until then the
      // connection counts as writing (drain and idle sweeps leave it alone).
      writing_ = true;
      server_.QueueForFlush(worker_, shared_from_this());
    } else if (close_after_write_ || (worker_.draining && !RequestInProgress())) {
      CloseSocket();
    } else {
      Read();  // includes a request that is still arriving while the server drains
    }
  }

  // Parses every complete request in the buffer and appends each response to out_.
  void Process() {
    size_t pos = 0;
    while (pos < in_len_ && !close_after_write_ && !upgrade_) {
      if (!parser_) {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_bytes));
        parser_->body_limit(server_.options.max_body_bytes);
        parser_->eager(true);
        continue_sent_ = false;
      }
      boost::beast::error_code ec;
      size_t used = parser_->put(asio::buffer(in_.data() + pos, in_len_ - pos), ec);
      pos += used;
      if (ec == bhttp::error::need_more) break;
      if (ec) {
        if (ec == bhttp::error::body_limit) {
          AppendError(413, "request body too large");
        } else if (ec == bhttp::error::header_limit) {
          AppendError(431, "request header too large");
        } else {
          AppendError(400, "malformed HTTP request");
        }
        close_after_write_ = true;
        break;
      }
      if (parser_->is_done()) {
        Handle(parser_->release());
        parser_.reset();
      } else if (used == 0) {
        break;
      }
    }
    // A client that sent "Expect: 100-continue" waits for this before sending the body.
    if (parser_ && parser_->is_header_done() && !parser_->is_done() && !continue_sent_ &&
        !close_after_write_ && !upgrade_) {
      auto expect = parser_->get()[bhttp::field::expect];
      if (expect.size() == 12 && strncasecmp(expect.data(), "100-continue", 12) == 0) {
        out_.append("HTTP/1.1 100 Continue\r\n\r\n");
      }
      continue_sent_ = true;
    }
    if (pos > 0) {
      std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
      in_len_ -= pos;
    }
    if (in_len_ == 0 && in_.size() > kShrinkAbove) {
      in_.resize(kInitialReadBuffer);
      in_.shrink_to_fit();
    }
  }

  void Handle(bhttp::request<bhttp::string_body>&& msg) {
    Request req;
    req.method = ParseMethod(std::string_view(msg.method_string().data(), msg.method_string().size()));
    auto target = msg.target();
    ParseTarget(std::string_view(target.data(), target.size()), req);
    // One pass over the fields (Beast's find() walks its set once per name).
    bool upgrade = false;
    std::string_view ws_key;
    std::string_view ws_version;
    for (const auto& field : msg) {
      auto value = field.value();
      switch (field.name()) {
        case bhttp::field::upgrade:
          upgrade = value.size() == 9 && strncasecmp(value.data(), "websocket", 9) == 0;
          break;
        case bhttp::field::sec_websocket_key:
          ws_key = std::string_view(value.data(), value.size());
          break;
        case bhttp::field::sec_websocket_version:
          ws_version = std::string_view(value.data(), value.size());
          break;
        case bhttp::field::authorization:
          req.authorization.assign(value.data(), value.size());
          break;
        case bhttp::field::origin:
          req.origin.assign(value.data(), value.size());
          break;
        case bhttp::field::content_type:
          req.content_type.assign(value.data(), value.size());
          break;
        default:
          break;
      }
    }
    req.body = std::move(msg.body());
    req.remote_ip = remote_ip_;
    bool keep_alive = msg.keep_alive();

    if (worker_.hub != nullptr && !worker_.draining) {
      SocketHub::Impl& hub = worker_.hub->hub;
      StreamKind kind = hub.Classify(req, upgrade);
      if (kind != StreamKind::kNone) {
        auto stream = hub.Prepare(kind, req, ws_key, ws_version);
        if (!stream) {
          close_after_write_ = true;
          Response res = ErrorResponse(stream.error());
          if (stream.error().message == "unsupported WebSocket version") {
            res.status = 426;
            res.headers.emplace_back("Sec-WebSocket-Version", "13");
          }
          Serialize(res, false);
          return;
        }
        upgrade_ = std::move(*stream);
        return;
      }
    }

    Response res = server_.router.Dispatch(req);
    if (!keep_alive || res.close || worker_.draining) close_after_write_ = true;
    Serialize(res, req.method == Method::kHead);
  }

  void AppendError(int status, std::string_view reason) {
    Response res = ErrorResponse(status, reason);
    close_after_write_ = true;
    Serialize(res, false);
  }

  void Serialize(const Response& res, bool head) {
    char number[24];
    auto format = [&number](uint64_t n) {
      return std::string_view(number, std::to_chars(number, number + sizeof number, n).ptr - number);
    };
    if (res.status == 200) {
      out_.append("HTTP/1.1 200 OK\r\n");
    } else {
      out_.append("HTTP/1.1 ").append(format(res.status)).push_back(' ');
      out_.append(StatusText(res.status)).append("\r\n");
    }
    out_.append(worker_.date);
    if (!res.content_type.empty()) {
      out_.append("Content-Type: ").append(res.content_type).append("\r\n");
    }
    out_.append("Access-Control-Allow-Origin: *\r\n");
    for (const auto& [name, value] : res.headers) {
      out_.append(name).append(": ").append(value).append("\r\n");
    }
    if (res.status != 204) {
      out_.append("Content-Length: ").append(format(res.body.size())).append("\r\n");
    }
    if (close_after_write_) out_.append("Connection: close\r\n");
    out_.append("\r\n");
    if (!head && res.status != 204) out_.append(res.body);
  }

  void Write() {
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(error_code ec) {
    writing_ = false;
    out_.clear();
    if (out_.capacity() > kShrinkAbove) out_.shrink_to_fit();
    last_active_s_ = worker_.now_s;
    if (ec) {
      CloseSocket();
    } else if (close_after_write_ || (worker_.draining && !RequestInProgress())) {
      LingerClose();
    } else {
      Read();
    }
  }

  tcp::socket socket_;
  Worker& worker_;
  Server::Impl& server_;
  std::string remote_ip_;
  std::string in_;
  size_t in_len_ = 0;
  std::string out_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<StreamRequest> upgrade_;  // set once a stream request is accepted
  bool continue_sent_ = false;
  bool close_after_write_ = false;
  bool writing_ = false;
  bool lingering_ = false;
  size_t lingered_bytes_ = 0;
  int64_t last_active_s_ = 0;
};

void Server::Impl::Accept(Worker& worker, tcp::acceptor& acceptor) {
  acceptor.async_accept(worker.ioc, [this, &worker, &acceptor](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || worker.draining) return;
      // Out of descriptors or similar: retry shortly rather than spin.
      spdlog::warn("accept failed: {}", ec.message());
    } else if (!worker.draining) {
      std::make_shared<Connection>(std::move(socket), worker, *this)->Start();
    }
    if (!worker.draining) Accept(worker, acceptor);
  });
}

void Server::Impl::QueueForFlush(Worker& worker, std::shared_ptr<Connection> connection) {
  worker.awaiting_flush.push_back(std::move(connection));
  if (worker.awaiting_flush.size() > 1) return;  // a flush is already posted
  // Posted behind the completions already queued in this pass, so the connections that became
  // readable together share one flush (group commit across connections).
  asio::post(worker.ioc, [this, &worker] {
    bool durable = router.FlushWrites();
    std::vector<std::shared_ptr<Connection>> ready;
    ready.swap(worker.awaiting_flush);
    for (auto& c : ready) c->AfterFlush(durable);
  });
}

void Server::Impl::Tick(Worker& worker) {
  worker.ticker->expires_after(std::chrono::seconds(1));
  worker.ticker->async_wait([this, &worker](error_code ec) {
    if (ec || worker.draining) return;
    worker.RefreshClock();
    std::vector<Connection*> idle;
    for (Connection* c : worker.connections) {
      if (c->Idle(worker.now_s, options.idle_timeout_seconds)) idle.push_back(c);
    }
    for (Connection* c : idle) c->Shutdown();
    Tick(worker);
  });
}

void Server::Impl::Drain(Worker& worker) {
  worker.draining = true;
  error_code ec;
  for (auto& acceptor : worker.acceptors) acceptor->close(ec);
  if (worker.ticker) worker.ticker->cancel();
  std::vector<Connection*> all(worker.connections.begin(), worker.connections.end());
  for (Connection* c : all) c->Drain();
  if (worker.hub != nullptr) worker.hub->hub.Drain(*worker.hub);
}

Server::Server(ServerOptions options, Router& router)
    : impl_(std::make_unique<Impl>(std::move(options), router)) {}

Server::~Server() {
  // The hub's per-thread parts refer to this server's io_contexts: drop them first.
  if (impl_->options.hub != nullptr) impl_->options.hub->impl().DetachWorkers();
}

core::Result<uint16_t> Server::Listen() {
  auto& o = impl_->options;
  error_code ec;
  auto address = asio::ip::make_address(o.listen, ec);
  if (ec) return core::MakeError(core::Errc::kInvalidArgument, "bad listen address " + o.listen);
  uint16_t port = o.port;
  int extra = o.extra_port;
  int threads = std::max(1, o.threads);
  // Every thread listens on the same ports (SO_REUSEPORT); port 0 is resolved by the first.
  auto bind = [&](Worker& worker, uint16_t want) -> core::Result<uint16_t> {
    tcp::endpoint endpoint(address, want);
    auto acceptor = std::make_unique<tcp::acceptor>(worker.ioc);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->set_option(reuse_port(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return core::MakeError(core::Errc::kUnavailable, "cannot listen on " + o.listen + ":" +
                                                           std::to_string(want) + ": " +
                                                           ec.message());
    }
    uint16_t bound = acceptor->local_endpoint().port();
    worker.acceptors.push_back(std::move(acceptor));
    return bound;
  };
  for (int i = 0; i < threads; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->RefreshClock();
    auto bound = bind(*worker, port);
    if (!bound) return std::move(bound).error();
    port = *bound;
    if (extra >= 0) {
      auto second = bind(*worker, static_cast<uint16_t>(extra));
      if (!second) return std::move(second).error();
      extra = *second;
    }
    worker->ticker.emplace(worker->ioc);
    if (o.hub != nullptr) worker->hub = &o.hub->impl().AddWorker(worker->ioc);
    impl_->workers.push_back(std::move(worker));
  }
  o.port = port;
  o.extra_port = extra;
  return port;
}

int Server::extra_port() const { return impl_->options.extra_port; }

void Server::StopOnSignals() {
  Worker& first = *impl_->workers.front();
  impl_->signals.emplace(first.ioc, SIGINT, SIGTERM);
  impl_->signals->async_wait([this](error_code ec, int signal) {
    if (ec) return;
    spdlog::info("signal {} received: draining", signal);
    Stop();
  });
}

void Server::Run() {
  for (auto& w : impl_->workers) {
    for (auto& acceptor : w->acceptors) impl_->Accept(*w, *acceptor);
    impl_->Tick(*w);
  }
  // Watchdog: once Stop() is called, in-flight work gets the grace period, then the loops
  // are stopped whatever they are doing.
  std::thread watchdog([this] {
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait(lock, [this] { return impl_->finished || impl_->stopping.load(); });
    auto grace = std::chrono::seconds(impl_->options.shutdown_grace_seconds);
    if (!impl_->cv.wait_for(lock, grace, [this] { return impl_->finished; })) {
      spdlog::warn("shutdown grace period over: closing remaining connections");
      for (auto& w : impl_->workers) w->ioc.stop();
    }
  });
  std::vector<std::thread> threads;
  for (size_t i = 1; i < impl_->workers.size(); ++i) {
    threads.emplace_back([w = impl_->workers[i].get()] { w->ioc.run(); });
  }
  impl_->workers.front()->ioc.run();
  for (auto& t : threads) t.join();
  {
    std::lock_guard lock(impl_->mu);
    impl_->finished = true;
  }
  impl_->cv.notify_all();
  watchdog.join();
}

void Server::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping.exchange(true)) return;
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) {
    Worker* worker = w.get();
    bool first = worker == impl_->workers.front().get();
    asio::post(worker->ioc, [this, worker, first] {
      if (first && impl_->signals) {
        error_code ec;
        impl_->signals->cancel(ec);
      }
      impl_->Drain(*worker);
    });
  }
}

bool Server::stopping() const { return impl_->stopping.load(); }

}  // namespace medkit::http
