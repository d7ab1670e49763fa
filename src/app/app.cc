#include "app/app.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "core/auth/authenticator.h"
#include "core/auth/extension_registry.h"
#include "core/auth/jwt.h"
#include "core/broadcast/messaging_service.h"
#include "core/broadcast/viewer_fanout.h"
#include "core/kv/document_service.h"
#include "core/datastream/datastream_service.h"
#include "core/gamecode/code_service.h"
#include "core/gamecode/poll_winners.h"
#include "core/gamelink/gamelink_service.h"
#include "core/gamelink/link_service.h"
#include "core/purchase/transaction_service.h"
#include "core/users/user_directory.h"
#include "core/poll/poll_service.h"
#include "core/trivia/trivia_service.h"
#include "core/accumulate/accumulate_service.h"
#include "core/jsonstore/json_store_service.h"
#include "core/rank/rank_service.h"
#include "http/router.h"
#include "http/routes/routes.h"
#include "http/server.h"
#include "http/socket_hub.h"
#include "http/twitch_pubsub_client.h"
#include "storage/memory_store.h"
#include "storage/metered_store.h"
#include "storage/rocksdb_store.h"

namespace medkit::app {

namespace fs = std::filesystem;

struct App::Impl {
  AppConfig config;
  const core::Clock& clock;
  std::unique_ptr<storage::Store> engine;
  std::unique_ptr<storage::MeteredStore> store;
  core::auth::ExtensionRegistry registry;
  core::events::EventBus events;
  std::unique_ptr<core::auth::Authenticator> auth;
  std::unique_ptr<core::kv::DocumentService> documents;
  std::unique_ptr<core::gamecode::CodeService> codes;
  std::unique_ptr<core::users::UserDirectory> users;
  std::unique_ptr<core::datastream::DatastreamService> datastream;
  std::unique_ptr<core::poll::PollService> polls;
  std::unique_ptr<core::trivia::TriviaService> trivia;
  std::unique_ptr<core::rank::RankService> rank;
  std::unique_ptr<core::accumulate::AccumulateService> accumulate;
  std::unique_ptr<core::jsonstore::JsonStoreService> json_store;
  // Declared before the fanout that calls it, so it outlives it (members are destroyed in
  // reverse order); stopped in Run() and ~App() before anything is torn down.
  std::unique_ptr<http::TwitchPubSubClient> twitch;
  std::unique_ptr<core::broadcast::ViewerFanout> fanout;
  std::unique_ptr<core::broadcast::MessagingService> messaging;
  std::unique_ptr<core::gamelink::LinkService> links;
  std::unique_ptr<core::purchase::TransactionService> purchases;
  http::Services services;
  std::unique_ptr<http::Router> router;
  std::unique_ptr<http::SocketHub> hub;  // before the server, which refers to it
  std::unique_ptr<core::gamelink::GameLinkService> gamelink;  // publishes through hub
  std::unique_ptr<http::Server> server;
  // Background ticker: throttled vote updates (ViewerFanout::Tick), timed GameLink poll pushes.
  std::thread ticker;
  std::mutex ticker_mu;
  std::condition_variable ticker_cv;
  bool ticker_stop = false;  // guarded by ticker_mu

  Impl(const AppConfig& c, const core::Clock& k) : config(c), clock(k) {}
};

namespace {

std::string RandomBytes(size_t n) {
  std::random_device rd;
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rd() & 0xff);
  return out;
}

// The server's own signing key: from the config file, else persisted beside the database so
// sandbox tokens survive a restart, else (memory store) fresh per process.
core::Result<std::string> SigningKey(const AppConfig& config) {
  if (!config.signing_key_b64.empty()) {
    auto key = core::auth::Base64Decode(config.signing_key_b64);
    if (!key || key->empty()) {
      return core::MakeError(core::Errc::kInvalidArgument, "config: signing_key is not base64");
    }
    return *key;
  }
  if (config.store == "memory") return RandomBytes(32);
  fs::path path = fs::path(config.data_dir) / "signing.key";
  std::ifstream in(path);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    std::string b64 = text.str();
    while (!b64.empty() && (b64.back() == '\n' || b64.back() == '\r')) b64.pop_back();
    auto key = core::auth::Base64Decode(b64);
    if (key && !key->empty()) return *key;
    return core::MakeError(core::Errc::kInvalidArgument, path.string() + " is not base64");
  }
  std::string key = RandomBytes(32);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return core::MakeError(core::Errc::kInternal, "cannot create " + path.string());
  std::string b64 = core::auth::Base64Encode(key) + "\n";
  bool ok = ::write(fd, b64.data(), b64.size()) == static_cast<ssize_t>(b64.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) return core::MakeError(core::Errc::kInternal, "cannot write " + path.string());
  return key;
}

void AddStoreMetrics(http::Router& router, const storage::MeteredStore& store) {
  router.metrics().AddProvider([&store](std::string& out) {
    auto c = store.counts();
    out += "# HELP medkit_store_operations_total Store operations by kind.\n";
    out += "# TYPE medkit_store_operations_total counter\n";
    std::string name(store.Name());
    auto line = [&](const char* op, uint64_t v) {
      out += "medkit_store_operations_total{store=\"" + name + "\",op=\"" + op + "\"} " +
             std::to_string(v) + "\n";
    };
    line("get", c.gets);
    line("multi_get", c.multi_gets);
    line("multi_get_key", c.multi_get_keys);
    line("apply", c.applies);
    line("apply_op", c.apply_ops);
    line("conflict", c.conflicts);
    line("scan", c.scans);
    line("error", c.errors);
  });
}

}  // namespace

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

App::~App() {
  if (impl_ && impl_->twitch) impl_->twitch->Stop();
  if (impl_ && impl_->engine) {
    auto synced = impl_->engine->Sync();
    if (!synced) spdlog::error("store sync at shutdown failed: {}", synced.error().message);
  }
}

core::Result<std::unique_ptr<App>> App::Create(const AppConfig& config, const core::Clock& clock) {
  if (auto ok = Validate(config); !ok) return std::move(ok).error();
  auto impl = std::make_unique<Impl>(config, clock);

  if (config.store == "rocksdb") {
    std::error_code ec;
    fs::create_directories(config.data_dir, ec);
    if (ec) {
      return core::MakeError(core::Errc::kInternal,
                             "cannot create data dir " + config.data_dir + ": " + ec.message());
    }
    storage::RocksDbOptions options;
    options.path = (fs::path(config.data_dir) / "db").string();
    options.sync_writes = config.sync_writes;
    auto db = storage::RocksDbStore::Open(options, clock);
    if (!db) return std::move(db).error();
    impl->engine = std::move(*db);
  } else {
    impl->engine = std::make_unique<storage::MemoryStore>(clock);
  }
  impl->store = std::make_unique<storage::MeteredStore>(*impl->engine);

  for (const auto& ext : config.extensions) {
    auto added = impl->registry.Add(ext.client_id, ext.secret_b64, ext.owner_id, ext.admin_ids);
    if (!added) return std::move(added).error();
  }
  auto key = SigningKey(config);
  if (!key) return std::move(key).error();

  core::auth::AuthOptions auth_options;
  auth_options.stage = config.stage == "production" ? core::auth::Stage::kProduction
                                                    : core::auth::Stage::kSandbox;
  auth_options.server_key = std::move(*key);
  auth_options.sandbox_token_ttl_seconds = config.sandbox_token_ttl_seconds;
  impl->auth =
      std::make_unique<core::auth::Authenticator>(auth_options, impl->registry, clock);
  core::kv::DocLimits limits = config.limits;
  // Both embedded stores are written by this process only, so documents can be cached.
  limits.cache_bytes = config.document_cache_bytes;
  impl->documents = std::make_unique<core::kv::DocumentService>(
      *impl->store, clock, auth_options.stage, limits, &impl->events);
  impl->polls = std::make_unique<core::poll::PollService>(
      *impl->store, clock, auth_options.stage, core::poll::PollLimits{}, &impl->events);
  impl->trivia = std::make_unique<core::trivia::TriviaService>(
      *impl->store, auth_options.stage, core::trivia::TriviaLimits{});
  impl->rank = std::make_unique<core::rank::RankService>(*impl->store, clock, auth_options.stage,
                                                         core::rank::RankLimits{});
  impl->accumulate = std::make_unique<core::accumulate::AccumulateService>(
      *impl->store, clock, auth_options.stage, core::accumulate::AccumulateLimits{});
  impl->json_store = std::make_unique<core::jsonstore::JsonStoreService>(
      *impl->store, clock, auth_options.stage, core::jsonstore::JsonStoreLimits{}, &impl->events);

  core::broadcast::FanoutOptions fanout_options;
  fanout_options.stage = auth_options.stage;
  fanout_options.vote_update_interval_ms = config.messaging.vote_update_interval_ms;
  impl->fanout = std::make_unique<core::broadcast::ViewerFanout>(&impl->events, clock,
                                                                 fanout_options);
  impl->messaging = std::make_unique<core::broadcast::MessagingService>(
      *impl->fanout, clock, config.messaging.limits);
  impl->services.messaging = impl->messaging.get();
  impl->services.fanout = impl->fanout.get();
  const auto& m = config.messaging;
  http::SocketHubOptions hub_options;
  hub_options.pusher = m.pusher < 0 ? auth_options.stage == core::auth::Stage::kSandbox
                                    : m.pusher > 0;
  hub_options.native_stream = m.native_stream;
  hub_options.queue_bytes = m.socket_queue_bytes;
  hub_options.ping_seconds = m.ping_seconds;
  hub_options.idle_timeout_seconds = config.idle_timeout_seconds;
  impl->hub = std::make_unique<http::SocketHub>(hub_options, *impl->auth, clock);
  impl->fanout->AddSink(impl->hub.get());
  impl->services.auth = impl->auth.get();
  impl->services.documents = impl->documents.get();
  impl->codes = std::make_unique<core::gamecode::CodeService>(*impl->store, clock,
                                                              auth_options.stage, config.codes);
  impl->codes->SetPollWinners(core::gamecode::PollWinnersFromVoteLog(*impl->polls));
  impl->users = std::make_unique<core::users::UserDirectory>(*impl->store, auth_options.stage,
                                                             config.user_ids);
  impl->auth->SetVerifiedHook(
      [users = impl->users.get()](const core::auth::Identity& who) { users->Record(who); });
  impl->datastream = std::make_unique<core::datastream::DatastreamService>(
      *impl->store, clock, auth_options.stage, config.datastream, &impl->events);
  // Game linking and purchases (spec 5.2, 5.12). Link tokens ("gl" claim) are checked against
  // their link on every request.
  impl->links = std::make_unique<core::gamelink::LinkService>(*impl->store, clock, *impl->auth,
                                                              core::gamelink::LinkLimits{});
  impl->auth->SetLinkCheck(
      [links = impl->links.get()](core::auth::Identity& who) { return links->CheckLink(who); });
  impl->purchases = std::make_unique<core::purchase::TransactionService>(
      *impl->store, clock, auth_options.stage, impl->registry, core::purchase::PurchaseLimits{},
      &impl->events);
  impl->services.links = impl->links.get();
  impl->services.purchases = impl->purchases.get();
  if (config.gamelink) {
    core::gamelink::GameLinkDeps deps;
    deps.auth = impl->auth.get();
    deps.documents = impl->documents.get();
    deps.polls = impl->polls.get();
    deps.messaging = impl->messaging.get();
    deps.clock = &clock;
    core::gamelink::LinkService* links = impl->links.get();
    core::purchase::TransactionService* purchases = impl->purchases.get();
    deps.redeem_pin = [links](std::string_view client, std::string_view pin,
                              std::string_view game) { return links->RedeemPin(client, pin, game); };
    deps.refresh = [links](std::string_view client, std::string_view token,
                           std::string_view game) { return links->Refresh(client, token, game); };
    deps.unvalidated_transactions = [purchases](std::string_view client, std::string_view channel,
                                                std::string_view sku) {
      return purchases->Unvalidated(client, channel, sku);
    };
    deps.validate_transaction = [purchases](std::string_view client, std::string_view channel,
                                            std::string_view id, std::string_view details) {
      return purchases->Validate(client, channel, id, details);
    };
    deps.refund_transaction = [purchases](std::string_view client, std::string_view channel,
                                          std::string_view id, std::string_view sku,
                                          std::string_view user) {
      return purchases->Refund(client, channel, id, sku, user);
    };
    core::gamelink::GameLinkLimits gl_limits;
    gl_limits.max_json_depth = config.limits.max_depth;
    impl->gamelink = std::make_unique<core::gamelink::GameLinkService>(
        std::move(deps), gl_limits, &impl->events, impl->hub.get());
    impl->hub->SetGameLink(impl->gamelink.get());
    impl->services.gamelink = impl->gamelink.get();
  }

  impl->services.codes = impl->codes.get();
  impl->services.users = impl->users.get();
  impl->services.datastream = impl->datastream.get();
  impl->services.polls = impl->polls.get();
  impl->services.trivia = impl->trivia.get();
  impl->services.events = &impl->events;
  impl->services.rank = impl->rank.get();
  impl->services.accumulate = impl->accumulate.get();
  impl->services.json_store = impl->json_store.get();
  impl->services.clock = &clock;
  impl->services.max_json_depth = config.limits.max_depth;
  Impl* raw = impl.get();
  impl->services.ready = [raw] { return !(raw->server && raw->server->stopping()); };
  impl->services.flush_writes = [raw] {
    auto flushed = raw->store->FlushWrites();
    if (!flushed) spdlog::error("write flush failed: {}", flushed.error().message);
    return flushed.has_value();
  };

  impl->router = std::make_unique<http::Router>(impl->services);
  http::RegisterOpsRoutes(*impl->router);
  http::RegisterSessionRoutes(*impl->router);
  http::RegisterStateRoutes(*impl->router);
  http::RegisterConfigRoutes(*impl->router);
  http::RegisterCodeRoutes(*impl->router);
  http::RegisterUserRoutes(*impl->router);
  http::RegisterDatastreamRoutes(*impl->router);
  http::RegisterPollRoutes(*impl->router);
  http::RegisterTriviaRoutes(*impl->router);
  http::RegisterEngagementRoutes(*impl->router);
  http::RegisterMessagingRoutes(*impl->router);
  http::RegisterGameLinkRoutes(*impl->router);
  http::RegisterLinkRoutes(*impl->router);
  http::RegisterPurchaseRoutes(*impl->router);
  impl->router->Freeze();
  AddStoreMetrics(*impl->router, *impl->store);
  impl->router->metrics().AddProvider(
      [hub = impl->hub.get()](std::string& out) { hub->AppendMetrics(out); });
  impl->router->metrics().AddProvider([fanout = impl->fanout.get()](std::string& out) {
    auto c = fanout->counts();
    out += "# HELP medkit_viewer_events_total Viewer messages made by the fanout.\n";
    out += "# TYPE medkit_viewer_events_total counter\n";
    out += "medkit_viewer_events_total{outcome=\"published\"} " + std::to_string(c.published) + "\n";
    out += "medkit_viewer_events_total{outcome=\"throttled\"} " + std::to_string(c.throttled) + "\n";
    out += "medkit_viewer_events_total{outcome=\"refused\"} " + std::to_string(c.refused) + "\n";
  });
  if (config.twitch.pubsub) {  // the Twitch Extension PubSub transport
    const TwitchConfig& t = config.twitch;
    http::TwitchPubSubOptions options;
    options.api_base = t.api_base;
    options.ca_file = t.ca_file;
    options.max_connections = t.connections;
    options.queue.per_minute = t.rate_per_minute;
    options.queue.burst = t.burst;
    options.queue.queue_limit = t.queue_limit;
    options.queue.max_tries = t.max_tries;
    auto client = http::TwitchPubSubClient::Create(options, impl->registry, clock);
    if (!client) return std::move(client).error();
    impl->twitch = std::move(*client);
    impl->fanout->AddSink(impl->twitch.get());
    impl->router->metrics().AddProvider(
        [twitch = impl->twitch.get()](std::string& out) { twitch->RenderMetrics(out); });
    impl->twitch->Start();
    spdlog::info("twitch pubsub: posting viewer messages to {}/extensions/pubsub", t.api_base);
  }
  return std::unique_ptr<App>(new App(std::move(impl)));
}

http::Router& App::router() { return *impl_->router; }
core::events::EventBus& App::events() { return impl_->events; }

core::Result<uint16_t> App::Listen() {
  http::ServerOptions options;
  options.listen = impl_->config.listen;
  options.port = static_cast<uint16_t>(impl_->config.port);
  options.threads = impl_->config.threads > 0
                        ? impl_->config.threads
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.max_body_bytes = impl_->config.max_body_bytes;
  options.max_header_bytes = impl_->config.max_header_bytes;
  options.idle_timeout_seconds = impl_->config.idle_timeout_seconds;
  options.hub = impl_->hub.get();
  options.extra_port = impl_->config.gamelink_port;
  impl_->server = std::make_unique<http::Server>(options, *impl_->router);
  return impl_->server->Listen();
}

int App::gamelink_port() const { return impl_->server ? impl_->server->extra_port() : -1; }

void App::Run() {
  impl_->server->StopOnSignals();
  Impl* raw = impl_.get();
  impl_->ticker = std::thread([raw] {
    std::unique_lock lock(raw->ticker_mu);
    while (!raw->ticker_cv.wait_for(lock, std::chrono::milliseconds(100),
                                    [raw] { return raw->ticker_stop; })) {
      lock.unlock();
      raw->fanout->Tick();
      if (raw->gamelink) raw->gamelink->Tick();
      lock.lock();
    }
  });
  impl_->server->Run();
  {
    std::lock_guard lock(impl_->ticker_mu);
    impl_->ticker_stop = true;
  }
  impl_->ticker_cv.notify_all();
  impl_->ticker.join();
  impl_->fanout->Tick();  // the last throttled updates
  if (impl_->twitch) impl_->twitch->Stop();  // in-flight posts get their grace
  auto synced = impl_->engine->Sync();
  if (!synced) spdlog::error("store sync failed: {}", synced.error().message);
}

void App::Stop() {
  if (impl_->server) impl_->server->Stop();
}

}  // namespace medkit::app
