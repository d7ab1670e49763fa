// medkit: the OpenMEDKit server binary.
//   medkit serve [--stage sandbox|production] [--port N] ...   start the server
//   medkit token --client-id ID --role ROLE ...                 mint a signed token
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/app.h"
#include "app/config.h"
#include "core/auth/authenticator.h"
#include "core/auth/jwt.h"
#include "core/clock.h"

namespace {

using medkit::app::AppConfig;

// Viewer sockets are long-lived: let the process hold as many descriptors as it may.
void RaiseDescriptorLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) spdlog::warn("cannot raise the descriptor limit");
  }
}

int Serve(AppConfig config, bool stage_given) {
  RaiseDescriptorLimit();
  std::string cli_stage = config.stage;
  if (auto loaded = medkit::app::LoadConfigFile(config); !loaded) {
    spdlog::critical("{}", loaded.error().message);
    return 2;
  }
  if (stage_given) config.stage = cli_stage;
  medkit::core::SystemClock clock;
  auto app = medkit::app::App::Create(config, clock);
  if (!app) {
    spdlog::critical("cannot start: {}", app.error().message);
    return 2;
  }
  auto port = (*app)->Listen();
  if (!port) {
    spdlog::critical("{}", port.error().message);
    return 2;
  }
  std::string url = fmt::format("http://{}:{}", config.listen, *port);
  spdlog::info("stage {}, store {}{}", config.stage, config.store,
               config.store == "rocksdb" ? " at " + config.data_dir : std::string());
  // A plain line that scripts and tests wait for.
  std::printf("listening on %s\n", url.c_str());
  if (int gl = (*app)->gamelink_port(); gl >= 0) {
    std::printf("gamelink listening on ws://%s:%d\n", config.listen.c_str(), gl);
  }
  std::fflush(stdout);
  (*app)->Run();
  spdlog::info("stopped");
  return 0;
}

struct TokenArgs {
  std::string client_id, role = "viewer", channel, user, opaque, secret_b64, config_file,
      data_dir, stage = "production";
  int64_t ttl = 3600;
};

int Token(const TokenArgs& args) {
  std::string key;
  std::string stage = args.stage;
  if (!args.secret_b64.empty()) {
    auto k = medkit::core::auth::Base64Decode(args.secret_b64);
    if (!k || k->empty()) {
      std::fprintf(stderr, "--secret is not base64\n");
      return 2;
    }
    key = *k;
  } else if (!args.config_file.empty()) {
    AppConfig config;
    config.config_file = args.config_file;
    if (auto loaded = medkit::app::LoadConfigFile(config); !loaded) {
      std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
      return 2;
    }
    for (const auto& ext : config.extensions) {
      if (ext.client_id == args.client_id) key = *medkit::core::auth::Base64Decode(ext.secret_b64);
    }
    if (key.empty()) {
      std::fprintf(stderr, "extension %s is not in %s\n", args.client_id.c_str(),
                   args.config_file.c_str());
      return 2;
    }
  } else if (!args.data_dir.empty()) {
    std::ifstream in(std::filesystem::path(args.data_dir) / "signing.key");
    std::stringstream text;
    text << in.rdbuf();
    std::string b64 = text.str();
    while (!b64.empty() && (b64.back() == '\n' || b64.back() == '\r')) b64.pop_back();
    auto k = medkit::core::auth::Base64Decode(b64);
    if (!in || !k || k->empty()) {
      std::fprintf(stderr, "no signing.key in %s (start the server once first)\n",
                   args.data_dir.c_str());
      return 2;
    }
    key = *k;
    stage = "sandbox";
  } else {
    std::fprintf(stderr, "one of --secret, --config or --data-dir is required\n");
    return 2;
  }
  medkit::core::SystemClock clock;
  medkit::core::auth::ExtensionRegistry registry;
  medkit::core::auth::Authenticator auth({}, registry, clock);
  medkit::core::auth::MintRequest mint;
  mint.client_id = args.client_id;
  mint.role = args.role;
  mint.channel_id = args.channel;
  mint.user_id = args.user;
  mint.opaque_user_id = args.opaque;
  mint.allowed_stage = stage == "sandbox" ? "sandbox" : "";
  mint.ttl_seconds = args.ttl;
  std::printf("%s\n", auth.Mint(mint, key).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"OpenMEDKit: a self-hostable MEDKit API server"};
  cli.require_subcommand(1);

  AppConfig config;
  auto* serve = cli.add_subcommand("serve", "Start the server");
  auto* stage_opt = serve->add_option("--stage", config.stage, "sandbox or production")
                        ->envname("MEDKIT_STAGE");
  serve->add_option("--listen", config.listen, "Address to listen on")->envname("MEDKIT_LISTEN");
  serve->add_option("--port", config.port, "Port (0 picks a free one)")->envname("MEDKIT_PORT");
  serve->add_option("--gamelink-port", config.gamelink_port,
                    "A second port, for GameLink's usual 5051 (0 picks a free one)")
      ->envname("MEDKIT_GAMELINK_PORT");
  serve->add_option("--data-dir", config.data_dir, "RocksDB data directory")
      ->envname("MEDKIT_DATA_DIR");
  serve->add_option("--store", config.store, "rocksdb or memory")->envname("MEDKIT_STORE");
  serve->add_option("--config", config.config_file, "JSON config file (extensions, limits)")
      ->envname("MEDKIT_CONFIG");
  serve->add_option("--threads", config.threads, "Event-loop threads (0: one per core)")
      ->envname("MEDKIT_THREADS");
  serve->add_option("--log-level", config.log_level, "trace|debug|info|warn|error")
      ->envname("MEDKIT_LOG_LEVEL");

  TokenArgs token;
  auto* tok = cli.add_subcommand("token", "Mint a signed token (for backends and tests)");
  tok->add_option("--client-id", token.client_id, "Extension client id")->required();
  tok->add_option("--role", token.role, "viewer|broadcaster|admin|backend|...");
  tok->add_option("--channel", token.channel, "channel_id claim");
  tok->add_option("--user", token.user, "user_id claim");
  tok->add_option("--opaque-user", token.opaque, "opaque_user_id claim (default U<user>)");
  tok->add_option("--ttl", token.ttl, "Lifetime in seconds");
  tok->add_option("--secret", token.secret_b64, "Sign with this base64 extension secret");
  tok->add_option("--config", token.config_file, "Sign with the extension's secret from FILE");
  tok->add_option("--data-dir", token.data_dir, "Sign with a sandbox server's key (sandbox token)");
  tok->add_option("--stage", token.stage, "production (no allowed_stage) or sandbox");

  CLI11_PARSE(cli, argc, argv);

  if (serve->parsed()) {
    spdlog::set_level(spdlog::level::from_str(config.log_level));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    return Serve(config, stage_opt->count() > 0 || std::getenv("MEDKIT_STAGE") != nullptr);
  }
  return Token(token);
}
