// medkit_fanout: the viewer fan-out benchmark of issue 4.
//
// Opens `--sockets` WebSocket connections to OpenMEDKit's native viewer stream
// (/v1/e/events), spread over `--channels` channels (socket i listens on channel i % channels,
// with the token of line (i % channels) of --tokens), then publishes broadcasts with
// POST /v1/e/broadcast (one broadcaster token per channel, --publisher-tokens) and measures,
// for every delivery, the time from the publish request's send to the frame's arrival.
//
//   medkit_fanout --port P --tokens viewers.tok --publisher-tokens bc.tok --sockets 10000
//     --channels 1 --messages 200 [--window 1] [--idle-seconds 0]
//
// Each message is one broadcast to one channel (round-robin over the channels); its data
// carries the message number. --window W keeps W broadcasts in flight (1: wait for every
// delivery of a message before the next). Delivery latency = arrival - the publish's send
// time (CLOCK_MONOTONIC, one machine). Deliveries/s = deliveries / (last arrival - first send).
// --idle-seconds N: before publishing, hold the connections open and idle for N seconds (the
// script reads the server's memory meanwhile).
//
// --mode gamelink: GameLink connections instead (see RunGameLink below): --sockets games,
// the first --subscribers on channel 0 subscribed to its state, and a game sending `set state`.
//
// Output: a human summary and one line for scripts:
//   RESULT sockets=... channels=... messages=... deliveries=... missing=... seconds=...
//          deliveries_per_s=... p50_us=... p99_us=... max_us=...
// Loopback only: the target is always 127.0.0.1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr int kMaxSockets = 60000;
constexpr int kMaxMessages = 100000;

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "medkit_fanout: %s\n", what.c_str());
  std::exit(1);
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot read " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty()) Die(path + " is empty");
  return lines;
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Die(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Die(std::string("connect: ") + std::strerror(errno));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      Die(std::string("write: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// "token" of a line "client_id token".
std::pair<std::string, std::string> SplitToken(const std::string& line) {
  auto sp = line.find(' ');
  if (sp == std::string::npos) Die("token lines are \"<client_id> <jwt>\"");
  return {line.substr(0, sp), line.substr(sp + 1)};
}

struct Socket {
  int fd = -1;
  std::string in;
  bool open = false;
};

// Reads what is there: the 101 (counted in *opened), then every complete server frame; text
// payloads go to on_text. Returns false when the server closed the socket.
bool ReadFrames(Socket& s, int* opened, const std::function<void(std::string_view)>& on_text) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(s.fd, buf, sizeof buf);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    s.in.append(buf, static_cast<size_t>(n));
    if (!s.open) {
      auto end = s.in.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      if (s.in.compare(0, 12, "HTTP/1.1 101") != 0) Die("upgrade refused: " + s.in.substr(0, 200));
      s.in.erase(0, end + 4);
      s.open = true;
      ++*opened;
    }
    size_t pos = 0;
    while (s.in.size() - pos >= 2) {
      const auto* p = reinterpret_cast<const uint8_t*>(s.in.data() + pos);
      uint64_t len = p[1] & 0x7F;
      size_t header = 2;
      if (len == 126) {
        if (s.in.size() - pos < 4) break;
        len = (uint64_t(p[2]) << 8) | p[3];
        header = 4;
      } else if (len == 127) {
        if (s.in.size() - pos < 10) break;
        len = 0;
        for (int k = 0; k < 8; ++k) len = (len << 8) | p[2 + k];
        header = 10;
      }
      if (s.in.size() - pos < header + len) break;
      if ((p[0] & 0x0F) == 0x1) on_text(std::string_view(s.in.data() + pos + header, len));
      pos += header + len;
    }
    s.in.erase(0, pos);
  }
}

// A client text frame, masked with the all-zero key (clients must mask; any key is valid).
std::string ClientFrame(std::string_view text) {
  std::string f;
  f.push_back(char(0x81));
  if (text.size() < 126) {
    f.push_back(char(0x80 | text.size()));
  } else {
    f.push_back(char(0x80 | 126));
    f.push_back(char(text.size() >> 8));
    f.push_back(char(text.size() & 0xFF));
  }
  f.append(4, '\0');
  f.append(text);
  return f;
}

struct Options {
  int port = 0;
  std::string tokens, publisher_tokens;
  int sockets = 1000;
  int channels = 1;
  int messages = 100;
  int window = 1;
  int idle_seconds = 0;
  std::string mode = "viewers";  // viewers | gamelink
  int subscribers = 100;         // gamelink: sockets of channel 0 subscribed to its state
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--port") o.port = std::atoi(next().c_str());
    else if (a == "--tokens") o.tokens = next();
    else if (a == "--publisher-tokens") o.publisher_tokens = next();
    else if (a == "--sockets") o.sockets = std::atoi(next().c_str());
    else if (a == "--channels") o.channels = std::atoi(next().c_str());
    else if (a == "--messages") o.messages = std::atoi(next().c_str());
    else if (a == "--window") o.window = std::atoi(next().c_str());
    else if (a == "--idle-seconds") o.idle_seconds = std::atoi(next().c_str());
    else if (a == "--mode") o.mode = next();
    else if (a == "--subscribers") o.subscribers = std::atoi(next().c_str());
    else Die("unknown flag " + a + " (see the comment at the top of bench/fanout.cc)");
  }
  if (o.port <= 0 || o.port > 65535) Die("--port is required");
  if (o.publisher_tokens.empty() || (o.mode != "gamelink" && o.tokens.empty())) {
    Die("--tokens and --publisher-tokens are required (gamelink mode: --publisher-tokens)");
  }
  if (o.sockets < 1 || o.sockets > kMaxSockets) Die("--sockets out of range");
  if (o.channels < 1 || o.channels > o.sockets) Die("--channels out of range");
  if (o.messages < 1 || o.messages > kMaxMessages) Die("--messages out of range");
  if (o.window < 1 || o.window > 1000) Die("--window out of range");
  if (o.idle_seconds < 0 || o.idle_seconds > 600) Die("--idle-seconds out of range");
  if (o.mode != "viewers" && o.mode != "gamelink") Die("--mode is viewers or gamelink");
  if (o.subscribers < 1 || o.subscribers > o.sockets) Die("--subscribers out of range");
  if (o.mode == "gamelink" && o.channels < 2) Die("--mode gamelink needs --channels >= 2");
  return o;
}


// Per-message send times and per-delivery latencies, shared by both modes.
struct Deliveries {
  explicit Deliveries(int messages) : sent_ns(size_t(messages), 0), seen(size_t(messages), 0) {}

  void Sent(int m) {
    sent_ns[size_t(m)] = NowNs();
    if (first_send == 0) first_send = sent_ns[size_t(m)];
  }
  // A frame that may carry "m":<n>: one delivery of message n.
  void Received(std::string_view payload) {
    auto at = payload.find("\"m\":");
    if (at == std::string_view::npos) return;
    int m = std::atoi(payload.data() + at + 4);
    if (m < 0 || size_t(m) >= sent_ns.size() || sent_ns[size_t(m)] == 0) return;
    int64_t now = NowNs();
    latencies.push_back(now - sent_ns[size_t(m)]);
    ++seen[size_t(m)];
    ++count;
    last_arrival = now;
  }
  // Prints the summary and the RESULT line; want = the deliveries expected.
  void Report(int sockets, int channels, int64_t want, int publish_errors) {
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double q) -> double {
      if (latencies.empty()) return 0;
      size_t i = std::min(latencies.size() - 1, size_t(q * double(latencies.size())));
      return double(latencies[i]) / 1000.0;
    };
    double seconds = last_arrival > first_send ? double(last_arrival - first_send) / 1e9 : 0;
    double rate = seconds > 0 ? double(count) / seconds : 0;
    std::printf("%lld deliveries of %lld in %.3f s = %.0f deliveries/s; latency p50 %.0f us, "
                "p99 %.0f us, max %.0f us; %d publish errors\n",
                (long long)count, (long long)want, seconds, rate, pct(0.5), pct(0.99), pct(1.0),
                publish_errors);
    std::printf("RESULT sockets=%d channels=%d messages=%zu deliveries=%lld missing=%lld "
                "seconds=%.3f deliveries_per_s=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f "
                "publish_errors=%d\n",
                sockets, channels, sent_ns.size(), (long long)count, (long long)(want - count),
                seconds, rate, pct(0.5), pct(0.99), pct(1.0), publish_errors);
  }

  std::vector<int64_t> sent_ns;
  std::vector<int> seen;
  std::vector<int64_t> latencies;
  int64_t count = 0, first_send = 0, last_arrival = 0;
};

// GameLink mode: --sockets authenticated GameLink connections (the first --subscribers on
// channel 0, subscribed to its state; the rest spread over the other channels, idle), and one
// more game on channel 0 that sends --messages `set state` requests; latency = arrival of the
// `update` push at a subscriber minus the send time of the `set`.
int RunGameLink(const Options& o, const std::vector<std::string>& publisher_tokens) {
  int ep = epoll_create1(0);
  std::vector<Socket> sockets(size_t(o.sockets) + 1);  // the last one publishes
  int opened = 0, answered = 0;
  auto channel_of = [&](int i) {
    if (i == o.sockets || i < o.subscribers) return 0;
    return 1 + i % (o.channels - 1);
  };
  for (int i = 0; i <= o.sockets; ++i) {
    auto [client, jwt] = SplitToken(publisher_tokens[size_t(channel_of(i))]);
    Socket& s = sockets[size_t(i)];
    s.fd = Connect(o.port);
    WriteAll(s.fd, "GET /0.2.0/" + client + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    WriteAll(s.fd, ClientFrame("{\"action\":\"authenticate\",\"params\":{\"request_id\":1},"
                               "\"data\":{\"jwt\":\"" + jwt + "\",\"client_id\":\"" + client + "\"}}"));
    if (i < o.subscribers) {
      WriteAll(s.fd, ClientFrame("{\"action\":\"subscribe\",\"params\":{\"request_id\":2,"
                                 "\"target\":\"state\"},\"data\":{\"topic_id\":\"channel\"}}"));
    }
    fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = uint32_t(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
  }
  const int want_answers = (o.sockets + 1) + o.subscribers;
  Deliveries d(o.messages);
  int errors = 0;
  epoll_event events[1024];
  auto poll_once = [&](int timeout_ms) {
    int n = epoll_wait(ep, events, 1024, timeout_ms);
    for (int k = 0; k < n; ++k) {
      uint32_t i = events[k].data.u32;
      bool alive = ReadFrames(sockets[i], &opened, [&](std::string_view text) {
        bool push = text.find("\"request_id\":65535") != std::string_view::npos;
        if (!push) {
          ++answered;
          if (text.find("\"errors\"") != std::string_view::npos) ++errors;
          return;
        }
        if (int(i) < o.subscribers) d.Received(text);
      });
      if (!alive) Die("a game socket was closed by the server");
    }
  };
  int64_t deadline = NowNs() + 120'000'000'000;
  while (answered < want_answers) {
    poll_once(100);
    if (NowNs() > deadline) Die("games did not all authenticate: " + std::to_string(answered));
  }
  if (errors > 0) Die(std::to_string(errors) + " authentication or subscription errors");
  std::fprintf(stderr, "%d games authenticated, %d subscribed\n", o.sockets + 1, o.subscribers);
  if (o.idle_seconds > 0) {
    std::printf("IDLE sockets=%d\n", o.sockets + 1);
    std::fflush(stdout);
    int64_t until = NowNs() + int64_t(o.idle_seconds) * 1'000'000'000;
    while (NowNs() < until) poll_once(100);
  }
  Socket& pub = sockets[size_t(o.sockets)];
  int next = 0, complete = 0;
  deadline = NowNs() + 120'000'000'000;
  while (complete < o.messages && NowNs() < deadline) {
    while (next < o.messages && next - complete < o.window) {
      std::string req = "{\"action\":\"set\",\"params\":{\"request_id\":" + std::to_string(3 + next % 100) +
                        ",\"target\":\"state\"},\"data\":{\"state_id\":\"channel\",\"state\":{\"m\":" +
                        std::to_string(next) + "}}}";
      d.Sent(next);
      fcntl(pub.fd, F_SETFL, fcntl(pub.fd, F_GETFL) & ~O_NONBLOCK);
      WriteAll(pub.fd, ClientFrame(req));
      fcntl(pub.fd, F_SETFL, fcntl(pub.fd, F_GETFL) | O_NONBLOCK);
      ++next;
    }
    poll_once(5);
    while (complete < o.messages && d.seen[size_t(complete)] >= o.subscribers) ++complete;
  }
  std::printf("%d games (%d subscribed), %d state sets (window %d): ", o.sockets + 1,
              o.subscribers, o.messages, o.window);
  d.Report(o.sockets + 1, o.channels, int64_t(o.messages) * o.subscribers, errors);
  for (auto& s : sockets) close(s.fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rlim_t(o.sockets + 64)) Die("descriptor limit too low for --sockets");

  auto publisher_tokens = ReadLines(o.publisher_tokens);
  if (o.mode == "gamelink") {
    if (int(publisher_tokens.size()) < o.channels) Die("need one publisher token per channel");
    return RunGameLink(o, publisher_tokens);
  }
  auto viewer_tokens = ReadLines(o.tokens);
  if (int(viewer_tokens.size()) < o.channels || int(publisher_tokens.size()) < o.channels) {
    Die("need one viewer and one publisher token per channel");
  }

  int ep = epoll_create1(0);
  std::vector<Socket> sockets(static_cast<size_t>(o.sockets));
  // Connect in waves so the listen backlog never overflows.
  int opened = 0;
  for (int i = 0; i < o.sockets; ++i) {
    auto [client, jwt] = SplitToken(viewer_tokens[static_cast<size_t>(i % o.channels)]);
    Socket& s = sockets[static_cast<size_t>(i)];
    s.fd = Connect(o.port);
    std::string req = "GET /v1/e/events?client_id=" + client + "&token=" + jwt +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    WriteAll(s.fd, req);
    fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
  }

  Deliveries d(o.messages);
  const int per_message = o.sockets / o.channels + 0;  // sockets per channel (remainder below)
  std::vector<int> expected(static_cast<size_t>(o.messages));
  for (int m = 0; m < o.messages; ++m) {
    int channel = m % o.channels;
    expected[static_cast<size_t>(m)] = per_message + (channel < o.sockets % o.channels ? 1 : 0);
  }
  d.latencies.reserve(size_t(o.sockets) * size_t(std::min(o.messages, 1000)));

  auto drain = [&](Socket& s) -> bool {
    return ReadFrames(s, &opened, [&](std::string_view payload) { d.Received(payload); });
  };

  epoll_event events[1024];
  auto poll_once = [&](int timeout_ms) {
    int n = epoll_wait(ep, events, 1024, timeout_ms);
    for (int k = 0; k < n; ++k) {
      Socket& s = sockets[events[k].data.u32];
      if (!drain(s)) Die("a viewer socket was closed by the server");
    }
  };
  int64_t deadline = NowNs() + 60'000'000'000;
  while (opened < o.sockets) {
    poll_once(100);
    if (NowNs() > deadline) Die("sockets did not all open: " + std::to_string(opened));
  }
  std::fprintf(stderr, "opened %d sockets on %d channels\n", opened, o.channels);
  if (o.idle_seconds > 0) {
    std::printf("IDLE sockets=%d\n", opened);
    std::fflush(stdout);
    int64_t until = NowNs() + int64_t(o.idle_seconds) * 1'000'000'000;
    while (NowNs() < until) poll_once(100);
  }

  // Publisher connections: one keep-alive connection, requests pipelined up to --window.
  int pub = Connect(o.port);
  fcntl(pub, F_SETFL, fcntl(pub, F_GETFL) | O_NONBLOCK);
  std::string pub_in;
  int answered = 0, bad = 0;
  auto publish = [&](int m) {
    auto [client, jwt] = SplitToken(publisher_tokens[size_t(m % o.channels)]);
    std::string body = "{\"event\":\"fanout\",\"data\":{\"m\":" + std::to_string(m) + "}}";
    std::string req = "POST /v1/e/broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " +
                      client + " " + jwt + "\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\n\r\n" + body;
    d.Sent(m);
    fcntl(pub, F_SETFL, fcntl(pub, F_GETFL) & ~O_NONBLOCK);
    WriteAll(pub, req);
    fcntl(pub, F_SETFL, fcntl(pub, F_GETFL) | O_NONBLOCK);
  };
  auto read_pub = [&] {
    char buf[16384];
    for (;;) {
      ssize_t n = read(pub, buf, sizeof buf);
      if (n <= 0) break;
      pub_in.append(buf, size_t(n));
    }
    for (;;) {
      auto end = pub_in.find("\r\n\r\n");
      if (end == std::string::npos) break;
      auto cl = pub_in.find("Content-Length: ");
      size_t len = cl < end ? size_t(std::atoi(pub_in.c_str() + cl + 16)) : 0;
      if (pub_in.size() < end + 4 + len) break;
      if (pub_in.compare(0, 12, "HTTP/1.1 200") != 0) ++bad;
      pub_in.erase(0, end + 4 + len);
      ++answered;
    }
  };

  int next = 0;
  int complete = 0;  // messages whose every delivery arrived, in order of number
  deadline = NowNs() + 120'000'000'000;
  while (complete < o.messages) {
    while (next < o.messages && next - complete < o.window) publish(next++);
    poll_once(5);
    read_pub();
    while (complete < o.messages && d.seen[size_t(complete)] >= expected[size_t(complete)]) ++complete;
    if (NowNs() > deadline) break;
  }
  read_pub();

  int64_t want = 0;
  for (int e : expected) want += e;
  std::printf("%d sockets, %d channels, %d messages (window %d): ", o.sockets, o.channels,
              o.messages, o.window);
  d.Report(o.sockets, o.channels, want, bad);
  for (auto& s : sockets) close(s.fd);
  close(pub);
  return 0;
}
