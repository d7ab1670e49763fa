#include "http/twitch_pubsub_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "core/auth/extension_registry.h"
#include "core/broadcast/twitch_pubsub.h"
#include "core/clock.h"

namespace medkit::http {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using core::broadcast::PubSubDisposition;
using core::broadcast::PubSubOutcome;
using core::broadcast::PubSubQueue;
using core::broadcast::PubSubSend;

namespace {

constexpr int64_t kMaxTimerWaitMs = 1000;  // re-check at least this often (clock jumps)
constexpr uint64_t kMaxResponseBody = 64 * 1024;

struct Endpoint {
  bool tls = false;
  std::string host;  // for resolving, SNI and certificate checks
  std::string port;
  std::string host_header;  // Host: value
  std::string target;       // <path>/extensions/pubsub
};

core::Result<Endpoint> ParseApiBase(const std::string& api_base) {
  auto bad = [&](const std::string& why) {
    return core::MakeError(core::Errc::kInvalidArgument,
                           "config: twitch.api_base \"" + api_base + "\" " + why);
  };
  auto parsed = boost::urls::parse_absolute_uri(api_base);
  if (!parsed) return bad("is not an absolute URL");
  boost::urls::url_view u = *parsed;
  Endpoint e;
  if (u.scheme() == "https") {
    e.tls = true;
  } else if (u.scheme() != "http") {
    return bad("must start with http:// or https://");
  }
  if (u.has_query() || u.has_fragment() || u.has_userinfo()) {
    return bad("must not have a query, fragment or user info");
  }
  e.host = u.host_address();
  if (e.host.empty()) return bad("has no host");
  e.port = u.has_port() ? std::string(u.port()) : std::string(e.tls ? "443" : "80");
  e.host_header = std::string(u.encoded_host());
  if (u.has_port()) e.host_header += ":" + e.port;
  std::string path(u.encoded_path());
  while (!path.empty() && path.back() == '/') path.pop_back();
  e.target = path + "/extensions/pubsub";
  return e;
}

// One keep-alive connection of the pool. Touched only on the client's thread.
struct Conn {
  explicit Conn(asio::io_context& ioc) : resolver(ioc) {}
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  tcp::resolver resolver;
  beast::flat_buffer buffer;
  bool open = false;
  bool busy = false;

  beast::tcp_stream& tcp_layer() { return plain ? *plain : beast::get_lowest_layer(*tls); }
  void Close() {
    resolver.cancel();
    if (plain || tls) {
      error_code ec;
      tcp_layer().socket().close(ec);
    }
    open = false;
    buffer.clear();
  }
};

int64_t ParseResetSeconds(std::string_view text) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 0) return 0;
  return v;
}

}  // namespace

struct TwitchPubSubClient::Impl {
  Impl(TwitchPubSubOptions o, Endpoint e, const core::auth::ExtensionRegistry& r,
       const core::Clock& c)
      : options(std::move(o)),
        endpoint(std::move(e)),
        registry(r),
        clock(c),
        queue(c, options.queue) {}

  TwitchPubSubOptions options;
  Endpoint endpoint;
  const core::auth::ExtensionRegistry& registry;
  const core::Clock& clock;
  PubSubQueue queue;  // thread-safe

  // Declared before everything that uses it, so it is destroyed last.
  asio::io_context ioc{1};
  std::optional<ssl::context> ssl_ctx;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  asio::steady_timer timer{ioc};
  asio::steady_timer grace{ioc};
  std::vector<std::unique_ptr<Conn>> conns;  // client thread only
  size_t in_flight = 0;                      // client thread only
  bool stopping = false;                     // client thread only

  std::atomic<bool> wake_posted{false};
  std::atomic<uint64_t> skipped{0};
  std::atomic<bool> logged_skip{false};
  std::thread thread;
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};

  void Wake();
  void Pump();
  void ArmTimer();
  void StartPost(PubSubSend send);
  asio::awaitable<void> Post(Conn* c, PubSubSend send);
  asio::awaitable<void> Connect(Conn& c, error_code& ec);
  void Resolve(const PubSubSend& send, const PubSubOutcome& outcome);
  void BeginStop();
  void Finish();
};

void TwitchPubSubClient::Impl::Wake() {
  if (wake_posted.exchange(true)) return;
  asio::post(ioc, [this] {
    wake_posted.store(false);
    Pump();
  });
}

void TwitchPubSubClient::Impl::Pump() {
  if (stopping) return;
  size_t max = static_cast<size_t>(options.max_connections);
  if (in_flight < max) {
    for (auto& send : queue.NextBatch(max - in_flight)) StartPost(std::move(send));
  }
  ArmTimer();
}

void TwitchPubSubClient::Impl::ArmTimer() {
  // With every slot busy, the next completion pumps; a timer would only spin.
  if (stopping || in_flight >= static_cast<size_t>(options.max_connections)) return;
  int64_t wake = queue.NextWakeMs();
  if (wake == PubSubQueue::kNever) {
    timer.cancel();
    return;
  }
  int64_t delay = std::clamp<int64_t>(wake - clock.NowMs(), 0, kMaxTimerWaitMs);
  timer.expires_after(std::chrono::milliseconds(delay));
  timer.async_wait([this](error_code ec) {
    if (!ec) Pump();
  });
}

void TwitchPubSubClient::Impl::StartPost(PubSubSend send) {
  Conn* c = nullptr;
  for (auto& conn : conns) {  // an open idle connection first, then any idle one
    if (!conn->busy && conn->open) {
      c = conn.get();
      break;
    }
  }
  if (c == nullptr) {
    for (auto& conn : conns) {
      if (!conn->busy) {
        c = conn.get();
        break;
      }
    }
  }
  if (c == nullptr) {
    conns.push_back(std::make_unique<Conn>(ioc));
    c = conns.back().get();
  }
  c->busy = true;
  ++in_flight;
  asio::co_spawn(ioc, Post(c, std::move(send)), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      spdlog::error("twitch pubsub: request failed unexpectedly: {}", x.what());
    }
  });
}

asio::awaitable<void> TwitchPubSubClient::Impl::Connect(Conn& c, error_code& ec) {
  auto results = co_await c.resolver.async_resolve(endpoint.host, endpoint.port,
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  c.plain.reset();
  c.tls.reset();
  if (endpoint.tls) {
    c.tls.emplace(ioc, *ssl_ctx);
    // SNI (for a host name; RFC 6066 has none for addresses), and the certificate must name
    // the host (checked as a name or as an address).
    error_code not_ip;
    (void)asio::ip::make_address(endpoint.host, not_ip);
    if (not_ip && !SSL_set_tlsext_host_name(c.tls->native_handle(), endpoint.host.c_str())) {
      ec = error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
      co_return;
    }
    c.tls->set_verify_callback(ssl::host_name_verification(endpoint.host));
  } else {
    c.plain.emplace(ioc);
  }
  c.tcp_layer().expires_after(std::chrono::milliseconds(options.request_timeout_ms));
  co_await c.tcp_layer().async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  error_code ignored;
  c.tcp_layer().socket().set_option(tcp::no_delay(true), ignored);
  if (endpoint.tls) {
    co_await c.tls->async_handshake(ssl::stream_base::client,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
  c.buffer.clear();
  c.open = true;
}

asio::awaitable<void> TwitchPubSubClient::Impl::Post(Conn* c, PubSubSend send) {
  PubSubOutcome outcome;  // status 0: no response
  const core::auth::ExtensionInfo* ext = registry.Find(send.message->client_id);
  if (ext == nullptr) {
    outcome.status = 400;  // cannot happen: Deliver checked it and the registry is immutable
  } else {
    auto built =
        core::broadcast::BuildPubSubRequest(*send.message, send.part, *ext, clock.NowSeconds());
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, endpoint.target, 11};
    req.set(bhttp::field::host, endpoint.host_header);
    req.set(bhttp::field::user_agent, "OpenMEDKit");
    for (const auto& [name, value] : built.headers) req.set(name, value);
    req.body() = std::move(built.body);
    req.keep_alive(true);
    req.prepare_payload();
    for (int attempt = 0; attempt < 2; ++attempt) {
      error_code ec;
      bool reused = c->open;
      if (!c->open) co_await Connect(*c, ec);
      std::optional<bhttp::response_parser<bhttp::string_body>> parser;
      if (!ec) {
        c->tcp_layer().expires_after(std::chrono::milliseconds(options.request_timeout_ms));
        if (c->tls) {
          co_await bhttp::async_write(*c->tls, req, asio::redirect_error(asio::use_awaitable, ec));
        } else {
          co_await bhttp::async_write(*c->plain, req,
                                      asio::redirect_error(asio::use_awaitable, ec));
        }
      }
      if (!ec) {
        parser.emplace();
        parser->body_limit(kMaxResponseBody);
        if (c->tls) {
          co_await bhttp::async_read(*c->tls, c->buffer, *parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
        } else {
          co_await bhttp::async_read(*c->plain, c->buffer, *parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
      }
      if (ec) {
        c->Close();
        // A kept-alive connection the server had closed meanwhile: one try on a fresh one.
        // (Should the server have taken the request after all, the duplicate is harmless:
        // MEDKit drops identical messages seen within 5 s.)
        if (reused && !stopping) continue;
        if (ec != asio::error::operation_aborted) {
          spdlog::debug("twitch pubsub: POST {}: {}", endpoint.target, ec.message());
        }
        break;
      }
      const auto& res = parser->get();
      outcome.status = static_cast<int>(res.result_int());
      outcome.ratelimit_reset_s = ParseResetSeconds(res["Ratelimit-Reset"]);
      if (!res.keep_alive()) c->Close();
      if (outcome.status < 200 || outcome.status >= 300) {
        spdlog::debug("twitch pubsub: POST {} answered {}: {}", endpoint.target, outcome.status,
                      res.body().substr(0, 200));
      }
      break;
    }
  }
  c->busy = false;
  --in_flight;
  Resolve(send, outcome);
  if (stopping) {
    if (in_flight == 0) Finish();
  } else {
    Pump();
  }
}

void TwitchPubSubClient::Impl::Resolve(const PubSubSend& send, const PubSubOutcome& outcome) {
  PubSubDisposition d = queue.OnResult(send.ticket, outcome);
  if (d == PubSubDisposition::kDropped) {
    const auto& m = *send.message;
    spdlog::warn("twitch pubsub: dropped {} to {} {} after {} tries (last: {})", m.event,
                 m.global() ? std::string("all channels") : "channel " + m.channel_id,
                 core::broadcast::PubSubTarget(m), send.attempt,
                 outcome.status == 0 ? std::string("no response")
                                     : "HTTP " + std::to_string(outcome.status));
  }
}

void TwitchPubSubClient::Impl::BeginStop() {
  stopping = true;
  timer.cancel();
  if (in_flight == 0) {
    Finish();
    return;
  }
  grace.expires_after(std::chrono::milliseconds(options.shutdown_grace_ms));
  grace.async_wait([this](error_code ec) {
    if (ec) return;
    // Out of time: cancel what is still running; each request then ends (unanswered) and
    // the last one calls Finish().
    for (auto& c : conns) c->Close();
  });
}

void TwitchPubSubClient::Impl::Finish() {
  grace.cancel();
  timer.cancel();
  for (auto& c : conns) c->Close();
  work.reset();
  ioc.stop();
}

core::Result<std::unique_ptr<TwitchPubSubClient>> TwitchPubSubClient::Create(
    TwitchPubSubOptions options, const core::auth::ExtensionRegistry& registry,
    const core::Clock& clock) {
  auto endpoint = ParseApiBase(options.api_base);
  if (!endpoint) return std::move(endpoint).error();
  options.max_connections = std::clamp(options.max_connections, 1, 64);
  options.request_timeout_ms = std::max(options.request_timeout_ms, 1);
  options.shutdown_grace_ms = std::max(options.shutdown_grace_ms, 0);
  bool tls = endpoint->tls;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(*endpoint), registry, clock);
  if (tls) {
    error_code ec;
    impl->ssl_ctx.emplace(ssl::context::tls_client);
    const std::string& ca_file = impl->options.ca_file;
    if (!ca_file.empty()) {
      impl->ssl_ctx->load_verify_file(ca_file, ec);
      if (ec) {
        return core::MakeError(core::Errc::kInvalidArgument,
                               "config: twitch.ca_file \"" + ca_file + "\": " + ec.message());
      }
    } else {
      impl->ssl_ctx->set_default_verify_paths(ec);
    }
    if (!ec) impl->ssl_ctx->set_verify_mode(ssl::verify_peer, ec);
    if (ec) {
      return core::MakeError(core::Errc::kInternal, "twitch pubsub: TLS setup: " + ec.message());
    }
  }
  return std::unique_ptr<TwitchPubSubClient>(new TwitchPubSubClient(std::move(impl)));
}

TwitchPubSubClient::TwitchPubSubClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TwitchPubSubClient::~TwitchPubSubClient() { Stop(); }

void TwitchPubSubClient::Start() {
  if (impl_->started.exchange(true)) return;
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->thread = std::thread([impl = impl_.get()] {
    try {
      impl->ioc.run();
    } catch (const std::exception& e) {
      spdlog::error("twitch pubsub: event loop failed: {}", e.what());
    }
  });
  impl_->Wake();  // whatever was queued before the start
}

void TwitchPubSubClient::Stop() {
  if (!impl_->started.load() || impl_->stopped.exchange(true)) return;
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->BeginStop(); });
  impl_->thread.join();
  auto c = impl_->queue.counts();
  if (c.waiting > 0) {
    spdlog::info("twitch pubsub: stopped with {} message(s) not sent", c.waiting);
  }
}

void TwitchPubSubClient::Deliver(const core::broadcast::ViewerMessagePtr& message) {
  const core::auth::ExtensionInfo* ext = impl_->registry.Find(message->client_id);
  if (ext == nullptr || ext->secret.empty() || ext->owner_id.empty()) {
    impl_->skipped.fetch_add(1, std::memory_order_relaxed);
    if (!impl_->logged_skip.exchange(true)) {
      spdlog::warn("twitch pubsub: not posting messages of client id \"{}\": {} (logged once)",
                   message->client_id,
                   ext == nullptr ? "not a configured extension" : "the extension has no owner_id");
    }
    return;
  }
  impl_->queue.Enqueue(message);
  impl_->Wake();
}

TwitchPubSubClient::Counts TwitchPubSubClient::counts() const {
  Counts c;
  c.skipped = impl_->skipped.load(std::memory_order_relaxed);
  c.queue = impl_->queue.counts();
  return c;
}

void TwitchPubSubClient::RenderMetrics(std::string& out) const {
  Counts c = counts();
  auto line = [&out](const char* name, const char* label, uint64_t v) {
    out += name;
    if (label != nullptr) out += std::string("{result=\"") + label + "\"}";
    out += " " + std::to_string(v) + "\n";
  };
  const char* m = "medkit_twitch_pubsub_messages_total";
  out +=
      "# HELP medkit_twitch_pubsub_messages_total Viewer messages by what the Twitch PubSub "
      "transport did with them.\n# TYPE medkit_twitch_pubsub_messages_total counter\n";
  line(m, "queued", c.queue.queued);
  line(m, "sent", c.queue.sent);
  line(m, "coalesced", c.queue.coalesced);
  line(m, "dropped_overflow", c.queue.dropped_overflow);
  line(m, "dropped_failed", c.queue.dropped_failed);
  line(m, "skipped", c.skipped);
  const char* p = "medkit_twitch_pubsub_posts_total";
  out +=
      "# HELP medkit_twitch_pubsub_posts_total Twitch PubSub POSTs by outcome (retried: "
      "failed and to be tried again).\n# TYPE medkit_twitch_pubsub_posts_total counter\n";
  line(p, "ok", c.queue.parts_sent);
  line(p, "failed", c.queue.failed);
  line(p, "retried", c.queue.retried);
  out +=
      "# HELP medkit_twitch_pubsub_queued Messages waiting for the Twitch PubSub transport.\n"
      "# TYPE medkit_twitch_pubsub_queued gauge\n";
  line("medkit_twitch_pubsub_queued", nullptr, c.queue.waiting);
  out +=
      "# HELP medkit_twitch_pubsub_in_flight Twitch PubSub POSTs in flight.\n"
      "# TYPE medkit_twitch_pubsub_in_flight gauge\n";
  line("medkit_twitch_pubsub_in_flight", nullptr, c.queue.in_flight);
}

}  // namespace medkit::http
