// SocketHub: viewer streams (Pusher protocol, native WebSocket, SSE) on the server's threads.
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>

#include "core/auth/authenticator.h"
#include "core/clock.h"
#include "http/socket_hub.h"
#include "http/ws/hub_internal.h"
#include "http/ws/ws_frame.h"

namespace medkit::http {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Bytes = std::shared_ptr<const std::string>;
using core::broadcast::ViewerMessage;
using core::broadcast::ViewerMessagePtr;

namespace {

constexpr size_t kPusherMaxMessage = 10 * 1024;  // Pusher's own client-message cap
constexpr size_t kNativeMaxMessage = 4 * 1024;
constexpr size_t kMaxGather = 64;
constexpr int kPusherActivityTimeout = 120;
constexpr int kDrainGraceMs = 2000;
constexpr int64_t kLingerSeconds = 2;

std::string Quote(std::string_view s) { return json::serialize(json::string(s)); }

int64_t SteadySeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Topic names. Pusher sockets subscribe to Pusher channel names; native streams to the
// channel, the extension and their own whispers.
std::string PusherChannel(const ViewerMessage& m) {
  return "twitch.pubsub." + m.client_id + "." + (m.global() ? std::string("all") : m.channel_id);
}
std::string PusherTopic(std::string_view channel) { return "p\x1f" + std::string(channel); }
std::string NativeTopic(std::string_view client, std::string_view channel,
                        std::string_view whisper = {}) {
  std::string t = "n\x1f" + std::string(client) + "\x1f" + std::string(channel);
  if (!whisper.empty()) t.append("\x1f").append(whisper);
  return t;
}

// Everything one message becomes, built once on the publishing thread.
struct Outgoing {
  std::string pusher_topic;
  std::vector<Bytes> pusher_frames;  // one per part
  std::string native_topic;
  Bytes native_frame;
  Bytes sse_record;
};

bool PrintableName(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '=' || c == '@' || c == ',' || c == '.' || c == ';';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

namespace ws {

class StreamSession : public std::enable_shared_from_this<StreamSession>,
                      public core::gamelink::GameLinkOutput {
 public:
  StreamSession(tcp::socket socket, WorkerHub& hub, StreamRequest request)
      : socket_(std::move(socket)),
        hub_(hub),
        kind_(request.kind),
        who_(std::move(request.who)),
        parser_(MaxMessage(request.kind, hub.hub.options)) {
    last_rx_s_ = last_tx_s_ = SteadySeconds();
    socket_id_ = std::to_string(hub_.index + 1) + "." + std::to_string(hub_.next_socket++);
    Gauge().fetch_add(1, std::memory_order_relaxed);
    if (kind_ == StreamKind::kGameLink) {
      game_ = std::make_unique<core::gamelink::GameLinkConnection>(*hub_.hub.gamelink,
                                                                   request.client_id, *this);
    }
  }

  static size_t MaxMessage(StreamKind kind, const SocketHubOptions& o) {
    switch (kind) {
      case StreamKind::kPusher:
        return kPusherMaxMessage;
      case StreamKind::kGameLink:
        return o.game_max_message_bytes;
      default:
        return kNativeMaxMessage;
    }
  }

  // GameLinkOutput (called from game_ on this socket's thread).
  void Send(std::string envelope) override {
    SendRaw(std::make_shared<const std::string>(EncodeFrame(Opcode::kText, envelope)));
  }
  void Subscribe(const std::string& topic) override { AddTopic(topic); }
  void Unsubscribe(const std::string& topic) override { RemoveTopic(topic); }

  void Start(std::string preface, std::string leftover, const std::string& accept_key) {
    hub_.sessions.insert(this);
    std::string head = std::move(preface);
    if (kind_ == StreamKind::kSse) {
      head +=
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          "Access-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\n\r\n"
          "retry: 3000\n\n";
    } else {
      head += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " + accept_key + "\r\n\r\n";
    }
    SendRaw(std::make_shared<const std::string>(std::move(head)));
    if (kind_ == StreamKind::kGameLink) {
      // GameLink has no greeting: the game speaks first (authenticate).
    } else if (kind_ == StreamKind::kPusher) {
      std::string data = "{\"socket_id\":\"" + socket_id_ + "\",\"activity_timeout\":" +
                         std::to_string(kPusherActivityTimeout) + "}";
      SendText("{\"event\":\"pusher:connection_established\",\"data\":" + Quote(data) + "}");
    } else {
      SubscribeNative();
      std::string ready = "{\"event\":\"ready\",\"data\":{\"client_id\":" + Quote(who_.client_id) +
                          ",\"channel_id\":" + Quote(who_.channel_id) +
                          ",\"opaque_user_id\":" + Quote(who_.opaque_user_id) + "}}";
      if (kind_ == StreamKind::kSse) {
        SendRaw(std::make_shared<const std::string>("data: " + ready + "\n\n"));
      } else {
        SendText(ready);
      }
    }
    in_ = std::move(leftover);
    in_len_ = in_.size();
    if (in_.size() < 512) in_.resize(512);
    if (kind_ != StreamKind::kSse && in_len_ > 0) ParseFrames();
    if (!closed_) Read();
  }

  // Queues bytes for this socket; a socket that has fallen too far behind is dropped.
  void SendShared(const Bytes& bytes) {
    if (closed_ || closing_) return;
    if (queued_bytes_ + bytes->size() > hub_.hub.options.queue_bytes) {
      hub_.hub.slow_disconnects.fetch_add(1, std::memory_order_relaxed);
      Abort();
      return;
    }
    SendRaw(bytes);
  }

  // A close frame (WebSocket kinds), then the socket is closed once it is written.
  void Close(uint16_t code, std::string_view reason) {
    if (closed_ || closing_) return;
    if (kind_ == StreamKind::kSse) {
      closing_ = true;
      if (!writing_) Abort();
      return;
    }
    SendRaw(std::make_shared<const std::string>(EncodeClose(code, reason)));
    closing_ = true;
  }

  // After our close frame: stop sending, read and drop what the peer still sends (its close
  // frame, the rest of an oversized message) until it closes or a grace period passes, so
  // the peer reads the close frame instead of a connection reset.
  void Linger() {
    if (lingering_ || closed_) return;
    if (kind_ == StreamKind::kSse) {
      Abort();
      return;
    }
    lingering_ = true;
    linger_since_s_ = SteadySeconds();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
  }

  void Abort() {
    if (closed_) return;
    closed_ = true;
    Detach();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  // Once a second: pings when quiet, the idle timeout, the token's expiry.
  void Tick(int64_t now_s, int64_t now_wall_s) {
    if (closed_) return;
    if (lingering_ || closing_) {
      if (lingering_ && now_s - linger_since_s_ >= kLingerSeconds) Abort();
      return;
    }
    const auto& o = hub_.hub.options;
    int idle = std::max(o.idle_timeout_seconds, 3 * o.ping_seconds);
    if (kind_ == StreamKind::kPusher) idle = std::max(idle, kPusherActivityTimeout + 30);
    if (kind_ == StreamKind::kGameLink) idle = std::max(idle, o.game_idle_timeout_seconds);
    if (kind_ != StreamKind::kSse && now_s - last_rx_s_ >= idle) {
      Close(kCloseGoingAway, "idle");
      return;
    }
    if ((kind_ == StreamKind::kNativeWs || kind_ == StreamKind::kSse) && who_.expires_at_s > 0 &&
        now_wall_s >= who_.expires_at_s) {
      Close(4001, "token expired");
      return;
    }
    if (now_s - last_tx_s_ >= o.ping_seconds) {
      if (kind_ == StreamKind::kSse) {
        SendRaw(std::make_shared<const std::string>(": keep-alive\n\n"));
      } else {
        SendRaw(std::make_shared<const std::string>(EncodeFrame(Opcode::kPing, "")));
      }
    }
  }

  StreamKind kind() const { return kind_; }

 private:
  std::atomic<int64_t>& Gauge() {
    switch (kind_) {
      case StreamKind::kPusher:
        return hub_.hub.pusher_sockets;
      case StreamKind::kSse:
        return hub_.hub.sse_streams;
      case StreamKind::kGameLink:
        return hub_.hub.game_sockets;
      default:
        return hub_.hub.native_sockets;
    }
  }

  void Detach() {
    for (const auto& topic : topics_) {
      auto it = hub_.topics.find(topic);
      if (it == hub_.topics.end()) continue;
      it->second.erase(this);
      if (it->second.empty()) hub_.topics.erase(it);
    }
    topics_.clear();
    hub_.sessions.erase(this);
    if (hub_.draining && hub_.sessions.empty()) hub_.drain_timer.cancel();
    Gauge().fetch_sub(1, std::memory_order_relaxed);
    queue_.clear();
    queued_bytes_ = 0;
  }

  bool AddTopic(const std::string& topic) {
    if (closed_) return false;  // detached already: a topic added now would outlive us
    for (const auto& t : topics_) {
      if (t == topic) return true;
    }
    size_t cap = kind_ == StreamKind::kGameLink ? SIZE_MAX : hub_.hub.options.max_subscriptions + 4;
    if (topics_.size() >= cap) return false;
    topics_.push_back(topic);
    hub_.topics[topic].insert(this);
    return true;
  }

  void RemoveTopic(const std::string& topic) {
    for (size_t i = 0; i < topics_.size(); ++i) {
      if (topics_[i] != topic) continue;
      topics_.erase(topics_.begin() + static_cast<std::ptrdiff_t>(i));
      auto it = hub_.topics.find(topic);
      if (it != hub_.topics.end()) {
        it->second.erase(this);
        if (it->second.empty()) hub_.topics.erase(it);
      }
      return;
    }
  }

  void SubscribeNative() {
    if (!who_.channel_id.empty()) {
      AddTopic(NativeTopic(who_.client_id, who_.channel_id));
      if (!who_.opaque_user_id.empty()) {
        AddTopic(NativeTopic(who_.client_id, who_.channel_id, "whisper-" + who_.opaque_user_id));
      }
      if (!who_.user_id.empty() && who_.user_id != who_.opaque_user_id) {
        AddTopic(NativeTopic(who_.client_id, who_.channel_id, "whisper-" + who_.user_id));
      }
    }
    AddTopic(NativeTopic(who_.client_id, "*"));
  }

  void SendText(std::string_view text) {
    SendRaw(std::make_shared<const std::string>(EncodeFrame(Opcode::kText, text)));
  }

  void SendRaw(Bytes bytes) {
    if (closed_) return;
    queued_bytes_ += bytes->size();
    queue_.push_back(std::move(bytes));
    if (!writing_) Flush();
  }

  void Flush() {
    if (queue_.empty()) {
      if (closing_) Linger();
      return;
    }
    writing_ = true;
    inflight_.clear();
    buffers_.clear();
    while (!queue_.empty() && inflight_.size() < kMaxGather) {
      buffers_.emplace_back(asio::buffer(*queue_.front()));
      inflight_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    last_tx_s_ = SteadySeconds();
    asio::async_write(socket_, buffers_, [self = shared_from_this()](error_code ec, size_t) {
      self->OnWrite(ec);
    });
  }

  void OnWrite(error_code ec) {
    writing_ = false;
    for (const auto& b : inflight_) queued_bytes_ -= std::min(queued_bytes_, b->size());
    inflight_.clear();
    if (closed_) return;
    if (ec) {
      Abort();
      return;
    }
    Flush();
  }

  void Read() {
    if (in_len_ == in_.size()) {
      size_t cap = MaxMessage(kind_, hub_.hub.options) + 64;
      if (kind_ == StreamKind::kSse || in_.size() >= 2 * cap) {
        in_len_ = 0;  // SSE clients send nothing we read; drop whatever it is
      } else {
        in_.resize(std::min(2 * cap, in_.size() * 2));
      }
    }
    socket_.async_read_some(asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->OnRead(ec, n);
                            });
  }

  void OnRead(error_code ec, size_t n) {
    if (closed_) return;
    if (ec) {
      Abort();
      return;
    }
    last_rx_s_ = SteadySeconds();
    in_len_ += n;
    if (kind_ == StreamKind::kSse || closing_ || lingering_) {
      in_len_ = 0;  // nothing to read from SSE clients, or from a peer we are closing
    } else {
      ParseFrames();
    }
    if (!closed_) Read();
  }

  void ParseFrames() {
    size_t pos = 0;
    std::string payload;
    while (!closed_) {
      size_t used = 0;
      auto kind = parser_.Next(in_.data() + pos, in_len_ - pos, &used, &payload);
      pos += used;
      if (kind == FrameParser::Kind::kNeedMore) {
        if (used == 0) break;
        continue;
      }
      if (kind == FrameParser::Kind::kError) {
        hub_.hub.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        Close(parser_.error_code(), parser_.error());
        break;
      }
      if (kind == FrameParser::Kind::kPing) {
        SendRaw(std::make_shared<const std::string>(EncodeFrame(Opcode::kPong, payload)));
      } else if (kind == FrameParser::Kind::kClose) {
        uint16_t code = parser_.close_code();
        if (code < 1000 || code == 1005 || code == 1006) code = kCloseNormal;
        Close(code, "");
        break;
      } else if (kind == FrameParser::Kind::kMessage && kind_ == StreamKind::kPusher) {
        OnPusherMessage(payload);
      } else if (kind == FrameParser::Kind::kMessage && game_) {
        game_->OnMessage(payload);
      }
      // Pongs and native-stream text are read and ignored.
    }
    if (pos > 0) {
      std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
      in_len_ -= pos;
    }
  }

  void PusherError(std::string_view message, int code) {
    json::object data{{"message", message}};
    if (code > 0) data["code"] = code;
    SendText("{\"event\":\"pusher:error\",\"data\":" + json::serialize(data) + "}");
  }

  // Pusher protocol 7, the part a public-channel subscriber uses.
  void OnPusherMessage(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    const json::object* o = ec ? nullptr : v.if_object();
    const json::value* event = o ? o->if_contains("event") : nullptr;
    if (event == nullptr || !event->is_string()) {
      PusherError("Invalid message: expected {\"event\": ..., \"data\": ...}", 4200);
      return;
    }
    std::string_view name = event->get_string();
    // data may be an object or a JSON string holding one.
    json::value data;
    if (const json::value* d = o->if_contains("data")) {
      data = *d;
      if (d->is_string()) {
        boost::system::error_code dec;
        json::value inner = json::parse(d->get_string(), dec);
        if (!dec) data = std::move(inner);
      }
    }
    auto channel_of = [&]() -> std::string {
      const json::object* dobj = data.if_object();
      const json::value* c = dobj ? dobj->if_contains("channel") : nullptr;
      return c && c->is_string() ? std::string(c->get_string()) : std::string();
    };
    if (name == "pusher:ping") {
      SendText(R"({"event":"pusher:pong","data":"{}"})");
    } else if (name == "pusher:pong") {
      // the answer to a ping of ours
    } else if (name == "pusher:subscribe") {
      std::string channel = channel_of();
      if (!PrintableName(channel, 200)) {
        PusherError("Invalid channel name", 4009);
      } else if (channel.rfind("private-", 0) == 0 || channel.rfind("presence-", 0) == 0) {
        SendText("{\"event\":\"pusher:subscription_error\",\"channel\":" + Quote(channel) +
                 ",\"data\":" + Quote(R"({"type":"AuthError","error":"only public channels are served","status":403})") + "}");
      } else if (!AddTopic(PusherTopic(channel))) {
        PusherError("Too many subscriptions", 4100);
      } else {
        SendText("{\"event\":\"pusher_internal:subscription_succeeded\",\"channel\":" +
                 Quote(channel) + ",\"data\":\"{}\"}");
      }
    } else if (name == "pusher:unsubscribe") {
      RemoveTopic(PusherTopic(channel_of()));
    } else if (name.substr(0, 7) == "client-") {
      PusherError("Client events are not supported", 4301);
    } else {
      // Unknown pusher:* events are ignored, as Pusher does.
    }
  }

  tcp::socket socket_;
  WorkerHub& hub_;
  StreamKind kind_;
  core::auth::Identity who_;
  std::string socket_id_;
  FrameParser parser_;
  std::string in_;
  size_t in_len_ = 0;
  std::deque<Bytes> queue_;
  std::vector<Bytes> inflight_;
  std::vector<asio::const_buffer> buffers_;
  size_t queued_bytes_ = 0;  // queued + in flight
  std::vector<std::string> topics_;
  std::unique_ptr<core::gamelink::GameLinkConnection> game_;  // GameLink sockets only
  bool writing_ = false;
  bool closing_ = false;    // a close frame is queued: nothing more is sent
  bool lingering_ = false;  // the close frame is out: reading and dropping until EOF
  int64_t linger_since_s_ = 0;
  bool closed_ = false;
  int64_t last_rx_s_ = 0;
  int64_t last_tx_s_ = 0;
};

}  // namespace ws

namespace {

void Tick(WorkerHub& w) {
  w.ticker.expires_after(std::chrono::seconds(1));
  w.ticker.async_wait([&w](error_code ec) {
    if (ec || w.draining) return;
    int64_t now = SteadySeconds();
    int64_t wall = w.hub.clock.NowSeconds();
    std::vector<ws::StreamSession*> all(w.sessions.begin(), w.sessions.end());
    for (auto* s : all) {
      if (w.sessions.count(s)) s->Tick(now, wall);
    }
    Tick(w);
  });
}

void DeliverOnWorker(WorkerHub& w, const Outgoing& out) {
  uint64_t frames = 0;
  if (!out.pusher_frames.empty()) {
    auto it = w.topics.find(out.pusher_topic);
    if (it != w.topics.end()) {
      std::vector<ws::StreamSession*> targets(it->second.begin(), it->second.end());
      for (auto* s : targets) {
        for (const auto& f : out.pusher_frames) s->SendShared(f);
        frames += out.pusher_frames.size();
      }
    }
  }
  if (out.native_frame || out.sse_record) {
    auto it = w.topics.find(out.native_topic);
    if (it != w.topics.end()) {
      std::vector<ws::StreamSession*> targets(it->second.begin(), it->second.end());
      for (auto* s : targets) {
        if (s->kind() == StreamKind::kSse) {
          if (out.sse_record) s->SendShared(out.sse_record);
        } else if (out.native_frame) {
          s->SendShared(out.native_frame);
        }
        ++frames;
      }
    }
  }
  w.hub.frames.fetch_add(frames, std::memory_order_relaxed);
}

}  // namespace

WorkerHub& SocketHub::Impl::AddWorker(asio::io_context& ioc) {
  std::unique_lock lock(mu);
  workers.push_back(std::make_unique<WorkerHub>(*this, ioc, static_cast<int>(workers.size())));
  WorkerHub& w = *workers.back();
  asio::post(ioc, [&w] { Tick(w); });
  return w;
}

void SocketHub::Impl::DetachWorkers() {
  std::unique_lock lock(mu);
  workers.clear();
}

namespace {

bool IsVersion(std::string_view s) {  // "<major>.<minor>.<patch>"
  int dots = 0;
  if (s.empty() || s.size() > 32) return false;
  for (char c : s) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 2 && s.front() != '.' && s.back() != '.';
}

// GameLink paths (7.1): /<version>/<client_id> and /<version>/<projection>/<x.y.z>/<client_id>.
// Returns the client id, or "" when path is not one of them.
std::string GameLinkClient(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 1;
  if (path.empty() || path[0] != '/') return {};
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  bool plain = parts.size() == 2 && IsVersion(parts[0]);
  bool projected = parts.size() == 4 && IsVersion(parts[0]) && !parts[1].empty() &&
                   IsVersion(parts[2]);
  if (!plain && !projected) return {};
  std::string_view client = parts.back();
  if (client.empty() || client.size() > 100) return {};
  return std::string(client);
}

}  // namespace

StreamKind SocketHub::Impl::Classify(const Request& request, bool upgrade) const {
  if (request.method != Method::kGet) return StreamKind::kNone;
  const std::string& path = request.path;
  if (upgrade && gamelink != nullptr && !GameLinkClient(path).empty()) return StreamKind::kGameLink;
  if (upgrade && options.pusher && path.rfind("/app/", 0) == 0 && path.size() > 5) {
    return StreamKind::kPusher;
  }
  if (options.native_stream && (path == "/v1/e/events" || path == "/v1/e/events/")) {
    return upgrade ? StreamKind::kNativeWs : StreamKind::kSse;
  }
  return StreamKind::kNone;
}

core::Result<StreamRequest> SocketHub::Impl::Prepare(StreamKind kind, const Request& request,
                                                     std::string_view ws_key,
                                                     std::string_view ws_version) const {
  StreamRequest out;
  out.kind = kind;
  if (kind != StreamKind::kSse) {
    if (ws_version != "13") {
      return core::MakeError(core::Errc::kInvalidArgument, "unsupported WebSocket version",
                             "Sec-WebSocket-Version must be 13");
    }
    if (ws_key.empty() || ws_key.size() > 64) {
      return core::MakeError(core::Errc::kInvalidArgument, "missing Sec-WebSocket-Key");
    }
    out.accept_key = ws::AcceptKey(ws_key);
  }
  if (kind == StreamKind::kGameLink) out.client_id = GameLinkClient(request.path);
  if (kind == StreamKind::kNativeWs || kind == StreamKind::kSse) {
    std::string authorization = request.authorization;
    if (authorization.empty()) {
      auto client = request.Query("client_id");
      auto token = request.Query("token");
      if (client && token) authorization = std::string(*client) + " " + std::string(*token);
    }
    if (authorization.empty()) {
      return core::MakeError(core::Errc::kUnauthenticated, "missing token",
                             "send Authorization: <client_id> <jwt>, or ?client_id=&token=");
    }
    auto who = auth.Authenticate(authorization);
    if (!who) return std::move(who).error();
    out.who = std::move(*who);
  }
  return out;
}

void SocketHub::Impl::Adopt(WorkerHub& worker, tcp::socket socket, StreamRequest request,
                            std::string preface, std::string leftover) {
  if (worker.draining) {
    error_code ec;
    socket.close(ec);
    return;
  }
  std::string accept_key = request.accept_key;
  auto session = std::make_shared<ws::StreamSession>(std::move(socket), worker, std::move(request));
  session->Start(std::move(preface), std::move(leftover), accept_key);
}

void SocketHub::Impl::Drain(WorkerHub& worker) {
  worker.draining = true;
  worker.ticker.cancel();
  std::vector<ws::StreamSession*> all(worker.sessions.begin(), worker.sessions.end());
  for (auto* s : all) {
    if (worker.sessions.count(s)) s->Close(ws::kCloseGoingAway, "server shutting down");
  }
  if (worker.sessions.empty()) return;
  worker.drain_timer.expires_after(std::chrono::milliseconds(kDrainGraceMs));
  worker.drain_timer.async_wait([&worker](error_code) {
    std::vector<ws::StreamSession*> rest(worker.sessions.begin(), worker.sessions.end());
    for (auto* s : rest) {
      if (worker.sessions.count(s)) s->Abort();
    }
  });
}

SocketHub::SocketHub(SocketHubOptions options, const core::auth::Authenticator& auth,
                     const core::Clock& clock)
    : impl_(std::make_unique<Impl>(options, auth, clock)) {}

SocketHub::~SocketHub() = default;

const SocketHubOptions& SocketHub::options() const { return impl_->options; }

void SocketHub::Deliver(const ViewerMessagePtr& message) {
  Impl& h = *impl_;
  h.messages.fetch_add(1, std::memory_order_relaxed);
  const bool pusher = h.pusher_sockets.load(std::memory_order_relaxed) > 0;
  const bool native = h.native_sockets.load(std::memory_order_relaxed) > 0;
  const bool sse = h.sse_streams.load(std::memory_order_relaxed) > 0;
  if (!pusher && !native && !sse) return;

  auto out = std::make_shared<Outgoing>();
  const ViewerMessage& m = *message;
  if (pusher) {
    std::string channel = PusherChannel(m);
    out->pusher_topic = PusherTopic(channel);
    // MEDKit binds "broadcast" on both the channel and the .all channel.
    std::string event = m.global() ? std::string("broadcast") : m.target;
    std::string head = "{\"event\":" + Quote(event) + ",\"channel\":" + Quote(channel) + ",\"data\":";
    for (const auto& part : m.parts) {
      std::string data = "{\"message\":" + Quote(part) + "}";
      out->pusher_frames.push_back(std::make_shared<const std::string>(
          ws::EncodeFrame(ws::Opcode::kText, head + Quote(data) + "}")));
    }
  }
  if (native || sse) {
    out->native_topic = m.global()    ? NativeTopic(m.client_id, "*")
                        : m.whisper() ? NativeTopic(m.client_id, m.channel_id, m.target)
                                      : NativeTopic(m.client_id, m.channel_id);
    if (native) {
      out->native_frame =
          std::make_shared<const std::string>(ws::EncodeFrame(ws::Opcode::kText, m.envelope));
    }
    if (sse) {
      out->sse_record = std::make_shared<const std::string>(
          "id: " + std::to_string(m.seq) + "\ndata: " + m.envelope + "\n\n");
    }
  }
  std::shared_lock lock(h.mu);
  for (const auto& w : h.workers) {
    WorkerHub* worker = w.get();
    asio::post(worker->ioc, [worker, out] {
      if (!worker->draining) DeliverOnWorker(*worker, *out);
    });
  }
}

void SocketHub::SetGameLink(core::gamelink::GameLinkService* service) { impl_->gamelink = service; }

bool SocketHub::Active() const { return impl_->game_sockets.load(std::memory_order_relaxed) > 0; }

void SocketHub::Publish(const std::string& topic, std::string envelope) {
  Impl& h = *impl_;
  if (h.game_sockets.load(std::memory_order_relaxed) == 0) return;
  auto frame = std::make_shared<const std::string>(ws::EncodeFrame(ws::Opcode::kText, envelope));
  auto shared_topic = std::make_shared<const std::string>(topic);
  std::shared_lock lock(h.mu);
  for (const auto& w : h.workers) {
    WorkerHub* worker = w.get();
    asio::post(worker->ioc, [worker, frame, shared_topic] {
      if (worker->draining) return;
      auto it = worker->topics.find(*shared_topic);
      if (it == worker->topics.end()) return;
      std::vector<ws::StreamSession*> targets(it->second.begin(), it->second.end());
      for (auto* s : targets) s->SendShared(frame);
      worker->hub.frames.fetch_add(targets.size(), std::memory_order_relaxed);
    });
  }
}

SocketHub::Counts SocketHub::counts() const {
  const Impl& h = *impl_;
  Counts c;
  c.pusher_sockets = h.pusher_sockets.load();
  c.native_sockets = h.native_sockets.load();
  c.sse_streams = h.sse_streams.load();
  c.game_sockets = h.game_sockets.load();
  c.messages = h.messages.load();
  c.frames = h.frames.load();
  c.slow_disconnects = h.slow_disconnects.load();
  c.protocol_errors = h.protocol_errors.load();
  return c;
}

void SocketHub::AppendMetrics(std::string& out) const {
  Counts c = counts();
  out += "# HELP medkit_viewer_sockets Open viewer streams by kind.\n";
  out += "# TYPE medkit_viewer_sockets gauge\n";
  out += "medkit_viewer_sockets{kind=\"pusher\"} " + std::to_string(c.pusher_sockets) + "\n";
  out += "medkit_viewer_sockets{kind=\"websocket\"} " + std::to_string(c.native_sockets) + "\n";
  out += "medkit_viewer_sockets{kind=\"sse\"} " + std::to_string(c.sse_streams) + "\n";
  out += "# HELP medkit_gamelink_sockets Open GameLink connections.\n";
  out += "# TYPE medkit_gamelink_sockets gauge\n";
  out += "medkit_gamelink_sockets " + std::to_string(c.game_sockets) + "\n";
  out += "# HELP medkit_viewer_messages_total Viewer messages delivered to the sockets.\n";
  out += "# TYPE medkit_viewer_messages_total counter\n";
  out += "medkit_viewer_messages_total " + std::to_string(c.messages) + "\n";
  out += "# HELP medkit_viewer_frames_total Frames queued to viewer sockets.\n";
  out += "# TYPE medkit_viewer_frames_total counter\n";
  out += "medkit_viewer_frames_total " + std::to_string(c.frames) + "\n";
  out += "# HELP medkit_viewer_disconnects_total Viewer sockets closed by the server.\n";
  out += "# TYPE medkit_viewer_disconnects_total counter\n";
  out += "medkit_viewer_disconnects_total{reason=\"slow\"} " + std::to_string(c.slow_disconnects) +
         "\n";
  out += "medkit_viewer_disconnects_total{reason=\"protocol\"} " +
         std::to_string(c.protocol_errors) + "\n";
}

}  // namespace medkit::http
