// Micro-benchmarks of the document path without HTTP: read, replace and patch on RocksDB and
// on the memory store, JWT verification (cold and cached), and JSON Patch alone.
//   build/release/bench/medkit_bench --benchmark_filter=Document
#include <benchmark/benchmark.h>

#include <boost/json.hpp>
#include <filesystem>
#include <random>

#include "core/auth/authenticator.h"
#include "core/auth/jwt.h"
#include "core/kv/document_service.h"
#include "core/kv/json_patch.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"

namespace medkit {
namespace {

namespace json = boost::json;
using core::auth::Identity;
using core::kv::DocKind;

struct Fixture {
  core::SystemClock clock;
  std::filesystem::path dir;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<core::kv::DocumentService> docs;

  explicit Fixture(bool rocks) {
    if (rocks) {
      dir = std::filesystem::temp_directory_path() /
            ("medkit-bench-" + std::to_string(std::random_device{}()));
      storage::RocksDbOptions options;
      options.path = dir.string();
      store = std::move(*storage::RocksDbStore::Open(options, clock));
    } else {
      store = std::make_unique<storage::MemoryStore>(clock);
    }
    docs = std::make_unique<core::kv::DocumentService>(*store, clock, core::auth::Stage::kSandbox,
                                                       core::kv::DocLimits{});
  }
  ~Fixture() {
    store.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

Identity Broadcaster() {
  Identity id;
  id.client_id = "benchext";
  id.role = core::auth::Role::kBroadcaster;
  id.channel_id = "777";
  id.user_id = "777";
  return id;
}

const json::value kDoc = json::parse(
    R"({"counter":0,"title":"Bench stream","scores":{"red":10,"blue":12},"round":3,"open":true})");

void BM_DocumentRead(benchmark::State& state) {
  Fixture f(state.range(0) != 0);
  Identity who = Broadcaster();
  (void)f.docs->Replace(who, DocKind::kChannelState, kDoc);
  for (auto _ : state) benchmark::DoNotOptimize(f.docs->Read(who, DocKind::kChannelState));
}
BENCHMARK(BM_DocumentRead)->Arg(0)->Arg(1)->ArgName("rocksdb");

void BM_DocumentReplaceDistinctViewers(benchmark::State& state) {
  Fixture f(state.range(0) != 0);
  Identity who = Broadcaster();
  who.role = core::auth::Role::kViewer;
  int i = 0;
  for (auto _ : state) {
    who.user_id = "v" + std::to_string(i++ % 1000);
    benchmark::DoNotOptimize(f.docs->Replace(who, DocKind::kViewerState, kDoc));
    if (i % 16 == 0) (void)f.store->FlushWrites();  // one flush per pipelined batch
  }
}
BENCHMARK(BM_DocumentReplaceDistinctViewers)->Arg(0)->Arg(1)->ArgName("rocksdb");

void BM_DocumentPatch(benchmark::State& state) {
  Fixture f(state.range(0) != 0);
  Identity who = Broadcaster();
  (void)f.docs->Replace(who, DocKind::kChannelState, kDoc);
  int i = 0;
  for (auto _ : state) {
    json::array patch{json::object{{"op", "replace"}, {"path", "/counter"}, {"value", i++}}};
    benchmark::DoNotOptimize(f.docs->Patch(who, DocKind::kChannelState, patch));
    if (i % 16 == 0) (void)f.store->FlushWrites();
  }
}
BENCHMARK(BM_DocumentPatch)->Arg(0)->Arg(1)->ArgName("rocksdb");

void BM_JsonPatchOnly(benchmark::State& state) {
  json::array patch{json::object{{"op", "replace"}, {"path", "/counter"}, {"value", 1}},
                    json::object{{"op", "add"}, {"path", "/scores/green"}, {"value", 4}}};
  for (auto _ : state) {
    json::value doc = kDoc;
    benchmark::DoNotOptimize(core::kv::ApplyJsonPatch(doc, patch));
  }
}
BENCHMARK(BM_JsonPatchOnly);

void BM_JwtVerifyCold(benchmark::State& state) {
  std::string key = "0123456789abcdef0123456789abcdef";
  json::object claims{{"exp", 4102444800}, {"role", "viewer"}, {"channel_id", "777"},
                      {"opaque_user_id", "U1"}, {"user_id", "1"}};
  std::string token = core::auth::SignHs256(claims, key);
  std::string_view keys[] = {key};
  core::auth::VerifyOptions options{1'700'000'000, 60};
  for (auto _ : state) benchmark::DoNotOptimize(core::auth::VerifyHs256(token, keys, options));
}
BENCHMARK(BM_JwtVerifyCold);

void BM_AuthenticateCached(benchmark::State& state) {
  core::SystemClock clock;
  core::auth::ExtensionRegistry registry;
  core::auth::AuthOptions options;
  options.server_key = "0123456789abcdef0123456789abcdef";
  core::auth::Authenticator auth(options, registry, clock);
  core::auth::MintRequest mint;
  mint.client_id = "benchext";
  mint.role = "viewer";
  mint.channel_id = "777";
  mint.user_id = "1";
  mint.allowed_stage = "sandbox";
  std::string header = "benchext " + auth.Mint(mint, options.server_key);
  for (auto _ : state) benchmark::DoNotOptimize(auth.Authenticate(header));
}
BENCHMARK(BM_AuthenticateCached);

}  // namespace
}  // namespace medkit
