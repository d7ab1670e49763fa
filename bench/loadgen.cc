// medkit_loadgen: a small closed-loop HTTP/1.1 load generator for the OpenMEDKit benchmarks.
//
// Why not wrk: with pipelining wrk records one latency per batch, so its percentiles are
// meaningless for depth > 1. This tool records one latency per response.
//
//   medkit_loadgen --url http://127.0.0.1:PORT --connections 64 --depth 16 --duration 8
//     --method POST --path /v1/e/viewer_state --tokens FILE --body-kind state [--warmup 1] [-t 1]
//
// Model (same requests as bench/lua/medkit.lua): a pool of up to 1000 pre-formatted batches of
// `depth` requests is built up front; request n (1-based over the pool) carries token n % T and
// body n. Each connection writes one whole batch in a single write, then parses the responses
// (status line + Content-Length or chunked framing, several per read or split across reads) and
// records for each one latency = receive time - send time of its batch. When the whole batch
// is answered the next batch goes out (closed loop, HTTP/1.1 keep-alive). Latencies go into a
// log-linear histogram (1 ns resolution below 256 ns, < 0.8% relative error above).
//
// Timing: the run lasts --duration seconds in total; responses received in the first --warmup
// seconds are not counted, so rates are over (duration - warmup) seconds. Errors (connect,
// read, write, malformed response, batch timeout) are counted over the whole run.
//
// Output: a human summary, then one line for scripts:
//   RESULT rps=... p50_us=... p90_us=... p99_us=... p999_us=... max_us=... mean_us=...
//          non2xx=... errors=... timeouts=... requests=... seconds=...
// Exit status: 0 after a run (even with errors; read the counters), 1 on bad usage or setup.
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
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

// Hard bounds on everything the command line controls.
constexpr int kMaxConnections = 4096;
constexpr int kMaxDepth = 1024;
constexpr int kMaxThreads = 64;
constexpr double kMaxDuration = 3600;
constexpr size_t kPoolBatches = 1000;
constexpr size_t kMaxPoolBytes = 64u << 20;
constexpr size_t kMaxTokens = 1000000;
constexpr size_t kMaxTokenLen = 16384;
constexpr size_t kReadBuf = 32768;      // per connection
constexpr size_t kMaxHead = 8192;       // status line + headers of one response
constexpr size_t kMaxLine = 1024;       // chunk-size and trailer lines
constexpr uint64_t kMaxBody = 1u << 30; // Content-Length / chunk size accepted (bytes skipped)
constexpr int64_t kReconnectDelayNs = 10'000'000;  // after an error, so a dead server can't spin us
constexpr int64_t kTickNs = 10'000'000;            // timeout / reconnect scan period

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Log-linear histogram of nanosecond values: exact below 256, then 128 sub-buckets per power
// of two (relative error < 1/128) up to 2^40 ns (~18 minutes), which is the clamp.
class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kLinear = uint64_t(1) << (kSubBits + 1);
  static constexpr int kMaxBits = 40;
  static constexpr size_t kBuckets = kLinear + (kMaxBits - kSubBits - 1) * (size_t(1) << kSubBits);

  Histogram() : counts_(kBuckets, 0) {}

  void record(int64_t ns) {
    uint64_t v = ns < 0 ? 0 : uint64_t(ns);
    v = std::min(v, (uint64_t(1) << kMaxBits) - 1);
    ++counts_[index(v)];
    ++total_;
    sum_ += double(v);
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }
  void merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
  uint64_t total() const { return total_; }
  double mean() const { return total_ ? sum_ / double(total_) : 0; }
  uint64_t max() const { return total_ ? max_ : 0; }
  // Value at quantile q (0..1]: the middle of the bucket holding the ceil(q * total)-th value,
  // clamped to the observed min and max.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = std::max<uint64_t>(1, uint64_t(q * double(total_) + 0.999999));
    rank = std::min(rank, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        double lo = double(lower(i)), hi = double(lower(i + 1) - 1);
        return std::clamp((lo + hi) / 2, double(min_), double(max_));
      }
    }
    return double(max_);
  }

 private:
  static size_t index(uint64_t v) {
    if (v < kLinear) return size_t(v);
    int shift = std::bit_width(v) - (kSubBits + 1);  // >= 1
    uint64_t top = v >> shift;                        // in [128, 256)
    return size_t(kLinear + uint64_t(shift - 1) * (uint64_t(1) << kSubBits) +
                  (top - (uint64_t(1) << kSubBits)));
  }
  static uint64_t lower(size_t i) {
    if (i < kLinear) return i;
    uint64_t k = i - kLinear;
    int shift = int(k >> kSubBits) + 1;
    uint64_t top = (k & ((uint64_t(1) << kSubBits) - 1)) + (uint64_t(1) << kSubBits);
    return top << shift;
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0, min_ = UINT64_MAX, max_ = 0;
  double sum_ = 0;
};

struct Stats {
  Histogram hist;
  uint64_t requests = 0, non2xx = 0, bytes = 0;
  uint64_t status_class[6] = {};
  uint64_t err_connect = 0, err_read = 0, err_write = 0, err_parse = 0, timeouts = 0;
  std::string first_error;

  uint64_t errors() const { return err_connect + err_read + err_write + err_parse + timeouts; }
  void merge(const Stats& o) {
    hist.merge(o.hist);
    requests += o.requests;
    non2xx += o.non2xx;
    bytes += o.bytes;
    for (int i = 0; i < 6; ++i) status_class[i] += o.status_class[i];
    err_connect += o.err_connect;
    err_read += o.err_read;
    err_write += o.err_write;
    err_parse += o.err_parse;
    timeouts += o.timeouts;
    if (first_error.empty()) first_error = o.first_error;
  }
};

struct Config {
  std::string host;  // as written in the URL, for the Host header
  sockaddr_in addr{};
  int port = 0;
  int connections = 64;
  int depth = 1;
  int threads = 1;
  double duration = 8;
  double warmup = 1;
  double timeout = 2;
  std::string method = "GET";
  std::string path;
  std::string tokens_file = "-";
  std::string body_kind = "none";
  size_t pool_batches = kPoolBatches;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "medkit_loadgen: %s\n", msg.c_str());
  std::exit(1);
}

void usage(FILE* out) {
  std::fputs(
      "usage: medkit_loadgen --url http://127.0.0.1:PORT [options]\n"
      "  --connections N, -c N  open connections (default 64, max 4096)\n"
      "  --depth N              requests per pipelined batch per connection (default 1)\n"
      "  --duration S           total run time in seconds (default 8)\n"
      "  --warmup S             first seconds excluded from stats (default 1, < duration)\n"
      "  --threads N, -t N      event-loop threads; connections are split (default 1)\n"
      "  --method M             HTTP method (default GET)\n"
      "  --path P               request target (default: the URL's path, else /)\n"
      "  --tokens FILE|-        Authorization header values, one per line (default -: none)\n"
      "  --body-kind K          none | state | patch | vote | rank | accumulate\n"
      "  --pool N               pre-formatted batches cycled through (default 1000; raise it\n"
      "                         so every token is used, e.g. 100000 viewers at depth 1)\n"
      "  --timeout S            a batch not fully answered in S seconds is an error (default 2)\n"
      "Only loopback URLs (127.0.0.0/8, localhost) are accepted.\n",
      out);
}

double parse_double(std::string_view name, const std::string& s, double lo, double hi) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v >= lo && v <= hi))
    die(std::string(name) + ": expected a number in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "], got '" + s + "'");
  return v;
}

int parse_int(std::string_view name, const std::string& s, int lo, int hi) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    die(std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "], got '" + s + "'");
  return v;
}

void parse_url(Config& cfg, const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) die("--url must start with http://");
  std::string rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos && cfg.path.empty()) cfg.path = rest.substr(slash);
  size_t colon = authority.rfind(':');
  std::string host = authority.substr(0, colon);
  cfg.port = colon == std::string::npos ? 80
                                        : parse_int("--url port", authority.substr(colon + 1), 1, 65535);
  std::string ip = host == "localhost" ? "127.0.0.1" : host;
  cfg.addr.sin_family = AF_INET;
  cfg.addr.sin_port = htons(uint16_t(cfg.port));
  if (inet_pton(AF_INET, ip.c_str(), &cfg.addr.sin_addr) != 1)
    die("--url host must be an IPv4 loopback address or localhost, got '" + host + "'");
  if ((ntohl(cfg.addr.sin_addr.s_addr) >> 24) != 127)
    die("--url must point at loopback (127.0.0.0/8), got '" + host + "'");
  cfg.host = authority;
}

Config parse_args(int argc, char** argv) {
  Config cfg;
  std::string url;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      std::exit(0);
    }
    size_t eq = arg.find('=');
    bool inline_value = arg.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if ((arg.rfind("-c", 0) == 0 || arg.rfind("-t", 0) == 0) && arg.size() > 2) {
      value = arg.substr(2);  // -c64, -t2
      arg.resize(2);
    } else {
      if (i + 1 >= argc) die(arg + ": missing value (see --help)");
      value = argv[++i];
    }
    if (arg == "--url") url = value;
    else if (arg == "--connections" || arg == "-c") cfg.connections = parse_int(arg, value, 1, kMaxConnections);
    else if (arg == "--depth") cfg.depth = parse_int(arg, value, 1, kMaxDepth);
    else if (arg == "--threads" || arg == "-t") cfg.threads = parse_int(arg, value, 1, kMaxThreads);
    else if (arg == "--duration") cfg.duration = parse_double(arg, value, 0.001, kMaxDuration);
    else if (arg == "--warmup") cfg.warmup = parse_double(arg, value, 0, kMaxDuration);
    else if (arg == "--timeout") cfg.timeout = parse_double(arg, value, 0.001, 60);
    else if (arg == "--method") cfg.method = value;
    else if (arg == "--path") cfg.path = value;
    else if (arg == "--tokens") cfg.tokens_file = value;
    else if (arg == "--body-kind") cfg.body_kind = value;
    else if (arg == "--pool") cfg.pool_batches = parse_int(arg, value, 1, 1000000);
    else die("unknown option '" + arg + "' (see --help)");
  }
  if (url.empty()) die("--url is required (see --help)");
  parse_url(cfg, url);
  if (cfg.path.empty()) cfg.path = "/";
  if (cfg.warmup >= cfg.duration) die("--warmup must be shorter than --duration");
  if (cfg.threads > cfg.connections) cfg.threads = cfg.connections;
  if (cfg.method.empty() || cfg.method.size() > 16 ||
      !std::all_of(cfg.method.begin(), cfg.method.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
    die("--method must be an upper-case token such as GET");
  if (cfg.path[0] != '/' || cfg.path.size() > 4096 ||
      cfg.path.find_first_of(" \t\r\n") != std::string::npos)
    die("--path must start with / and contain no whitespace");
  if (cfg.body_kind != "none" && cfg.body_kind != "state" && cfg.body_kind != "patch" &&
      cfg.body_kind != "vote" && cfg.body_kind != "rank" && cfg.body_kind != "accumulate")
    die("--body-kind must be none, state, patch, vote, rank or accumulate");
  return cfg;
}

std::vector<std::string> read_tokens(const std::string& file) {
  std::vector<std::string> tokens;
  if (file == "-") return tokens;
  std::ifstream in(file);
  if (!in) die("cannot open tokens file '" + file + "'");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line.size() > kMaxTokenLen || line.find_first_of("\r\n") != std::string::npos)
      die("tokens file: line too long or malformed");
    if (tokens.size() >= kMaxTokens) die("tokens file: more than 1000000 lines");
    tokens.push_back(std::move(line));
  }
  if (tokens.empty()) die("tokens file '" + file + "' has no tokens");
  return tokens;
}

// The same requests bench/lua/medkit.lua builds with wrk.format (Host first, no Content-Length
// without a body).
std::vector<std::string> build_pool(const Config& cfg, const std::vector<std::string>& tokens) {
  std::vector<std::string> pool;
  size_t total = 0;
  for (size_t b = 0; b < cfg.pool_batches && (b == 0 || total < kMaxPoolBytes); ++b) {
    std::string batch;
    for (int d = 1; d <= cfg.depth; ++d) {
      uint64_t n = b * uint64_t(cfg.depth) + uint64_t(d);
      std::string body;
      if (cfg.body_kind == "state")
        body = "{\"score\":" + std::to_string(n) + ",\"name\":\"viewer " + std::to_string(n) +
               "\",\"flags\":[true,false]}";
      else if (cfg.body_kind == "vote")
        body = "{\"value\":" + std::to_string((n * 7) % 32) + "}";
      else if (cfg.body_kind == "rank")
        body = "{\"key\":\"answer" + std::to_string((n * 7) % 50) + "\"}";
      else if (cfg.body_kind == "accumulate")
        body = "{\"n\":" + std::to_string(n) + ",\"kind\":\"cheer\"}";
      else if (cfg.body_kind == "patch")
        body = "[{\"op\":\"replace\",\"path\":\"/counter\",\"value\":" + std::to_string(n) + "}]";
      batch += cfg.method + " " + cfg.path + " HTTP/1.1\r\nHost: " + cfg.host + "\r\n";
      if (!tokens.empty()) batch += "Authorization: " + tokens[n % tokens.size()] + "\r\n";
      if (!body.empty())
        batch += "Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n"
                 "Content-Length: " + std::to_string(body.size()) + "\r\n";
      batch += "\r\n";
      batch += body;
    }
    total += batch.size();
    pool.push_back(std::move(batch));
  }
  return pool;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool contains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

struct Conn {
  enum class State { kIdle, kConnecting, kOpen };
  enum class Parse { kHead, kBody, kChunkSize, kChunkData, kChunkCrlf, kTrailers };
  int fd = -1;
  State state = State::kIdle;
  uint64_t generation = 0;  // bumped on close, so a stale event can't act on a new socket
  int64_t reconnect_at = 0;
  // Write side: the batch in flight.
  const std::string* batch = nullptr;
  size_t written = 0;
  bool want_out = false;
  int64_t sent_ns = 0;
  int outstanding = 0;  // responses still expected for the batch
  // Read side: unparsed bytes and the state of the response being parsed.
  std::unique_ptr<char[]> buf;
  size_t len = 0;
  Parse parse = Parse::kHead;
  uint64_t remaining = 0;  // body or chunk bytes still to skip
  int status = 0;
  bool close_after = false;
};

class Worker {
 public:
  Worker(const Config& cfg, const std::vector<std::string>& pool, int connections, size_t pool_start,
         int64_t measure_ns, int64_t end_ns)
      : cfg_(cfg), pool_(pool), next_batch_(pool_start), measure_ns_(measure_ns), end_ns_(end_ns),
        timeout_ns_(int64_t(cfg.timeout * 1e9)), conns_(size_t(connections)) {
    for (auto& c : conns_) c.buf = std::make_unique<char[]>(kReadBuf);
  }

  void run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
    for (auto& c : conns_) open_conn(c);
    std::vector<epoll_event> events(256);
    int64_t last_tick = now_ns();
    for (;;) {
      int64_t now = now_ns();
      if (now >= end_ns_) break;
      int wait_ms = int(std::min<int64_t>(kTickNs, end_ns_ - now) / 1'000'000) + 1;
      int n = epoll_wait(ep_, events.data(), int(events.size()), wait_ms);
      if (n < 0 && errno != EINTR) die(std::string("epoll_wait: ") + std::strerror(errno));
      for (int k = 0; k < n; ++k) handle(conns_[events[k].data.u32], events[k].events);
      now = now_ns();
      if (now - last_tick >= kTickNs) {
        last_tick = now;
        tick(now);
      }
    }
    for (auto& c : conns_)
      if (c.fd >= 0) ::close(c.fd);
    ::close(ep_);
  }

  Stats stats;

 private:
  bool measuring(int64_t t) const { return t >= measure_ns_ && t < end_ns_; }

  void error(uint64_t& counter, Conn& c, const char* what, int err = 0) {
    ++counter;
    if (stats.first_error.empty())
      stats.first_error = err ? std::string(what) + ": " + std::strerror(err) : std::string(what);
    close_conn(c, now_ns() + kReconnectDelayNs);
  }

  void close_conn(Conn& c, int64_t reconnect_at) {
    if (c.fd >= 0) ::close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    c.state = Conn::State::kIdle;
    ++c.generation;
    c.reconnect_at = reconnect_at;
    c.batch = nullptr;
    c.outstanding = 0;
    c.want_out = false;
    c.len = 0;
    c.parse = Conn::Parse::kHead;
  }

  void open_conn(Conn& c) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return error(stats.err_connect, c, "socket", errno);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.fd = fd;
    c.state = Conn::State::kConnecting;
    c.sent_ns = now_ns();  // connect start, for the connect timeout
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&cfg_.addr), sizeof cfg_.addr);
    if (rc < 0 && errno != EINPROGRESS) return error(stats.err_connect, c, "connect", errno);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = uint32_t(&c - conns_.data());
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) < 0) die(std::string("epoll_ctl: ") + std::strerror(errno));
    c.want_out = true;
  }

  void set_out(Conn& c, bool want) {
    if (c.want_out == want) return;
    epoll_event ev{};
    ev.events = want ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    ev.data.u32 = uint32_t(&c - conns_.data());
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = want;
  }

  void handle(Conn& c, uint32_t events) {
    if (c.fd < 0) return;
    if (c.state == Conn::State::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) return error(stats.err_connect, c, "connect", err);
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      c.state = Conn::State::kOpen;
      set_out(c, false);
      send_batch(c);
      return;
    }
    uint64_t gen = c.generation;
    if (events & EPOLLOUT) {
      write_some(c);
      if (c.generation != gen) return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_some(c);
  }

  void send_batch(Conn& c) {
    int64_t now = now_ns();
    if (now >= end_ns_) return;
    c.batch = &pool_[next_batch_];
    next_batch_ = (next_batch_ + 1) % pool_.size();
    c.written = 0;
    c.outstanding = cfg_.depth;
    c.sent_ns = now;
    write_some(c);
  }

  void write_some(Conn& c) {
    if (!c.batch) return set_out(c, false);
    while (c.written < c.batch->size()) {
      ssize_t n = ::send(c.fd, c.batch->data() + c.written, c.batch->size() - c.written, MSG_NOSIGNAL);
      if (n > 0) {
        c.written += size_t(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return set_out(c, true);
      } else {
        return error(stats.err_write, c, "write", n < 0 ? errno : EPIPE);
      }
    }
    c.batch = nullptr;
    set_out(c, false);
  }

  void read_some(Conn& c) {
    ssize_t n = ::read(c.fd, c.buf.get() + c.len, kReadBuf - c.len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return error(stats.err_read, c, "read", errno);
    }
    if (n == 0) return error(stats.err_read, c, "read: connection closed by server");
    int64_t now = now_ns();
    if (measuring(now)) stats.bytes += uint64_t(n);
    c.len += size_t(n);
    parse(c, now);
  }

  // Consumes every complete response (and partial body bytes) in c.buf; keeps the rest.
  void parse(Conn& c, int64_t now) {
    const char* data = c.buf.get();
    size_t pos = 0;
    uint64_t gen = c.generation;
    while (pos < c.len) {
      const char* p = data + pos;
      size_t avail = c.len - pos;
      switch (c.parse) {
        case Conn::Parse::kHead: {
          if (c.outstanding == 0) return error(stats.err_parse, c, "response without a request");
          const void* end = memmem(p, avail, "\r\n\r\n", 4);
          if (!end) {
            if (avail > kMaxHead) return error(stats.err_parse, c, "response head too large");
            goto need_more;
          }
          size_t head_len = size_t(static_cast<const char*>(end) - p) + 4;
          if (!parse_head(c, std::string_view(p, head_len - 4)))
            return error(stats.err_parse, c, "malformed response head");
          pos += head_len;
          if (c.status >= 100 && c.status < 200) {  // interim response: the real one follows
            c.parse = Conn::Parse::kHead;
            continue;
          }
          if (c.parse == Conn::Parse::kBody && c.remaining == 0) {
            if (!complete(c, now)) return;
          }
          break;
        }
        case Conn::Parse::kBody:
        case Conn::Parse::kChunkData: {
          size_t take = size_t(std::min<uint64_t>(c.remaining, avail));
          pos += take;
          c.remaining -= take;
          if (c.remaining == 0) {
            if (c.parse == Conn::Parse::kChunkData) {
              c.parse = Conn::Parse::kChunkCrlf;
            } else if (!complete(c, now)) {
              return;
            }
          }
          break;
        }
        case Conn::Parse::kChunkCrlf:
          if (avail < 2) goto need_more;
          if (p[0] != '\r' || p[1] != '\n') return error(stats.err_parse, c, "malformed chunk");
          pos += 2;
          c.parse = Conn::Parse::kChunkSize;
          break;
        case Conn::Parse::kChunkSize:
        case Conn::Parse::kTrailers: {
          const void* eol = memmem(p, avail, "\r\n", 2);
          if (!eol) {
            if (avail > kMaxLine) return error(stats.err_parse, c, "chunk line too long");
            goto need_more;
          }
          std::string_view line(p, size_t(static_cast<const char*>(eol) - p));
          pos += line.size() + 2;
          if (c.parse == Conn::Parse::kTrailers) {
            if (line.empty() && !complete(c, now)) return;
            break;
          }
          uint64_t size = 0;
          auto [q, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
          if (ec != std::errc() || q == line.data() || size > kMaxBody ||
              (q != line.data() + line.size() && *q != ';' && *q != ' '))
            return error(stats.err_parse, c, "malformed chunk size");
          if (size == 0) {
            c.parse = Conn::Parse::kTrailers;
          } else {
            c.remaining = size;
            c.parse = Conn::Parse::kChunkData;
          }
          break;
        }
      }
      if (c.generation != gen) return;
    }
  need_more:
    if (c.generation != gen) return;
    if (pos > 0) {
      std::memmove(c.buf.get(), data + pos, c.len - pos);
      c.len -= pos;
    }
  }

  // Parses "HTTP/1.x SSS reason\r\nName: value\r\n...Name: value" (the head without its final
  // blank line) and sets up the body framing.
  bool parse_head(Conn& c, std::string_view head) {
    if (head.size() < 12 || head.substr(0, 7) != "HTTP/1." || head[8] != ' ') return false;
    bool http10 = head[7] == '0';
    int status = 0;
    for (int i = 9; i < 12; ++i) {
      if (head[size_t(i)] < '0' || head[size_t(i)] > '9') return false;
      status = status * 10 + (head[size_t(i)] - '0');
    }
    c.status = status;
    bool chunked = false, have_length = false, keep_alive = false, close = false;
    uint64_t length = 0;
    size_t eol = head.find("\r\n");
    std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
    while (!rest.empty()) {
      eol = rest.find("\r\n");
      std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) return false;
      std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
      if (iequals(name, "content-length")) {
        uint64_t v = 0;
        auto [q, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc() || q != value.data() + value.size() || v > kMaxBody) return false;
        if (have_length && v != length) return false;
        have_length = true;
        length = v;
      } else if (iequals(name, "transfer-encoding")) {
        chunked = contains_token(value, "chunked");
      } else if (iequals(name, "connection")) {
        close = contains_token(value, "close");
        keep_alive = contains_token(value, "keep-alive");
      }
    }
    c.close_after = close || (http10 && !keep_alive);
    if (status < 200) return status != 101;  // interim: no body; no protocol switches
    bool no_body = status == 204 || status == 304 || cfg_.method == "HEAD";
    if (no_body) {
      c.parse = Conn::Parse::kBody;
      c.remaining = 0;
    } else if (chunked) {
      c.parse = Conn::Parse::kChunkSize;
    } else if (have_length) {
      c.parse = Conn::Parse::kBody;
      c.remaining = length;
    } else {
      return false;  // body delimited by close: not supported with keep-alive benchmarking
    }
    return true;
  }

  // One response fully received. Returns false if the connection was closed or replaced.
  bool complete(Conn& c, int64_t now) {
    if (measuring(now)) {
      ++stats.requests;
      stats.hist.record(now - c.sent_ns);
      if (c.status < 200 || c.status >= 300) ++stats.non2xx;
      ++stats.status_class[std::clamp(c.status / 100, 0, 5)];
    }
    c.parse = Conn::Parse::kHead;
    --c.outstanding;
    if (c.close_after) {
      if (c.outstanding > 0) {
        error(stats.err_read, c, "server closed the connection with requests in flight");
      } else {
        close_conn(c, 0);
        open_conn(c);
      }
      return false;
    }
    if (c.outstanding == 0) {
      uint64_t gen = c.generation;
      send_batch(c);
      return c.generation == gen;
    }
    return true;
  }

  void tick(int64_t now) {
    for (auto& c : conns_) {
      if (c.state == Conn::State::kIdle) {
        if (now >= c.reconnect_at) open_conn(c);
      } else if ((c.state == Conn::State::kOpen && c.outstanding > 0 &&
                  now - c.sent_ns > timeout_ns_) ||
                 (c.state == Conn::State::kConnecting && now - c.sent_ns > timeout_ns_)) {
        error(stats.timeouts, c, "timeout");
      }
    }
  }

  const Config& cfg_;
  const std::vector<std::string>& pool_;
  size_t next_batch_;
  int64_t measure_ns_, end_ns_, timeout_ns_;
  std::vector<Conn> conns_;
  int ep_ = -1;
};

std::string human_ns(double ns) {
  char b[32];
  if (ns < 1e3) std::snprintf(b, sizeof b, "%.0fns", ns);
  else if (ns < 1e6) std::snprintf(b, sizeof b, "%.1fus", ns / 1e3);
  else if (ns < 1e9) std::snprintf(b, sizeof b, "%.2fms", ns / 1e6);
  else std::snprintf(b, sizeof b, "%.2fs", ns / 1e9);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
  std::vector<std::string> tokens = read_tokens(cfg.tokens_file);
  std::vector<std::string> pool = build_pool(cfg, tokens);
  tokens.clear();

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rlim_t(cfg.connections + 64)) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, rlim_t(cfg.connections + 64));
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rlim_t(cfg.connections + 64)) die("open-file limit too low for --connections");
  }

  int64_t start = now_ns();
  int64_t measure = start + int64_t(cfg.warmup * 1e9);
  int64_t end = start + int64_t(cfg.duration * 1e9);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < cfg.threads; ++t) {
    int conns = cfg.connections / cfg.threads + (t < cfg.connections % cfg.threads ? 1 : 0);
    size_t pool_start = pool.size() * size_t(t) / size_t(cfg.threads);
    workers.push_back(std::make_unique<Worker>(cfg, pool, conns, pool_start, measure, end));
  }
  std::vector<std::thread> threads;
  for (size_t t = 1; t < workers.size(); ++t) threads.emplace_back([w = workers[t].get()] { w->run(); });
  workers[0]->run();
  for (auto& th : threads) th.join();

  Stats total;
  for (auto& w : workers) total.merge(w->stats);
  double seconds = cfg.duration - cfg.warmup;
  double rps = double(total.requests) / seconds;
  const Histogram& h = total.hist;
  double p50 = h.quantile(0.50), p90 = h.quantile(0.90), p99 = h.quantile(0.99),
         p999 = h.quantile(0.999);

  std::printf("medkit_loadgen %s http://%s%s: %d connections, depth %d, %d thread%s, %.3gs "
              "(first %.3gs excluded), %zu pre-formatted batches\n",
              cfg.method.c_str(), cfg.host.c_str(), cfg.path.c_str(), cfg.connections, cfg.depth,
              cfg.threads, cfg.threads == 1 ? "" : "s", cfg.duration, cfg.warmup, pool.size());
  std::printf("  requests  %llu in %.2fs = %.1f req/s, %.2f MB/s read\n",
              static_cast<unsigned long long>(total.requests), seconds, rps,
              double(total.bytes) / seconds / 1e6);
  std::printf("  latency   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
              human_ns(p50).c_str(), human_ns(p90).c_str(), human_ns(p99).c_str(),
              human_ns(p999).c_str(), human_ns(double(h.max())).c_str(), human_ns(h.mean()).c_str());
  std::printf("  status    1xx %llu  2xx %llu  3xx %llu  4xx %llu  5xx %llu  (non-2xx %llu)\n",
              static_cast<unsigned long long>(total.status_class[1]),
              static_cast<unsigned long long>(total.status_class[2]),
              static_cast<unsigned long long>(total.status_class[3]),
              static_cast<unsigned long long>(total.status_class[4]),
              static_cast<unsigned long long>(total.status_class[5]),
              static_cast<unsigned long long>(total.non2xx));
  std::printf("  errors    connect %llu  read %llu  write %llu  parse %llu  timeout %llu%s%s\n",
              static_cast<unsigned long long>(total.err_connect),
              static_cast<unsigned long long>(total.err_read),
              static_cast<unsigned long long>(total.err_write),
              static_cast<unsigned long long>(total.err_parse),
              static_cast<unsigned long long>(total.timeouts),
              total.first_error.empty() ? "" : "  first: ", total.first_error.c_str());
  std::printf("RESULT rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
              "mean_us=%.1f non2xx=%llu errors=%llu timeouts=%llu requests=%llu seconds=%.3f\n",
              rps, p50 / 1e3, p90 / 1e3, p99 / 1e3, p999 / 1e3, double(h.max()) / 1e3, h.mean() / 1e3,
              static_cast<unsigned long long>(total.non2xx),
              static_cast<unsigned long long>(total.errors()),
              static_cast<unsigned long long>(total.timeouts),
              static_cast<unsigned long long>(total.requests), seconds);
  return 0;
}
