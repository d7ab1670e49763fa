// TransactionService (spec 5.12, 7.4 "Purchases", 7.5 Transaction) on the memory store with a
// FakeClock: production receipt verification (signature, topic, domainId, exp), sandbox
// approval of MEDKit's dev receipts, dedupe, the Transaction JSON and its event, the GameLink
// reads (Unvalidated, Validate, Refund), and coins.
#include "core/purchase/transaction_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/auth/jwt.h"
#include "core/clock.h"
#include "storage/memory_store.h"

namespace medkit::core::purchase {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr std::string_view kSecret = "ext1-secret-bytes";
constexpr int64_t kDayMs = 86'400'000;

Identity Viewer(std::string user = "u1", std::string channel = "chan1") {
  Identity who;
  who.client_id = "ext1";
  who.role = Role::kViewer;
  who.channel_id = std::move(channel);
  who.user_id = user;
  who.opaque_user_id = "U" + user;
  return who;
}

class TransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.Add("ext1", auth::Base64Encode(kSecret), "owner1", {}).has_value());
    Make(Stage::kProduction);
  }
  void Make(Stage stage) {
    service_ = std::make_unique<TransactionService>(store_, clock_, stage, registry_,
                                                    PurchaseLimits{}, &bus_);
  }

  json::object ReceiptClaims(std::string tx_id, std::string sku = "muxy-bits-50",
                             int64_t amount = 50, std::string domain = "twitch.ext.ext1") {
    json::object cost{{"amount", amount}, {"type", "bits"}};
    json::object product{
        {"domainId", domain}, {"sku", sku}, {"displayName", "Fifty"}, {"cost", cost}};
    json::object data{{"transactionId", tx_id},
                      {"time", "2026-12-04 02:00:00.000000000 +0000 UTC"},
                      {"userId", "u1"},
                      {"product", product}};
    return json::object{
        {"exp", clock_.NowSeconds() + 600}, {"topic", "bits_transaction_receipt"}, {"data", data}};
  }
  json::value Body(const std::string& receipt, std::string tx_id = "tx1") {
    return json::object{{"transactionId", tx_id},
                        {"product", {{"sku", "body-sku"}, {"displayName", "Body"}}},
                        {"userId", "u1"},
                        {"displayName", "Viewer One"},
                        {"initiator", "current_user"},
                        {"transactionReceipt", receipt}};
  }
  Result<Transaction> Record(const Identity& who, const json::object& claims,
                             std::string_view key = kSecret) {
    std::string tx_id(claims.at("data").at("transactionId").as_string());
    return service_->RecordBits(who, Body(auth::SignHs256(claims, key), tx_id));
  }
  size_t Listed(std::string_view sku = "*") {
    auto list = service_->Unvalidated("ext1", "chan1", sku);
    EXPECT_TRUE(list.has_value());
    return list ? list->size() : 0;
  }

  FakeClock clock_;
  storage::MemoryStore store_{clock_};
  auth::ExtensionRegistry registry_;
  events::EventBus bus_;
  events::EventRecorder recorder_{bus_};
  std::unique_ptr<TransactionService> service_;
};

TEST_F(TransactionTest, ProductionRecordsAVerifiedReceiptOnce) {
  auto t = Record(Viewer(), ReceiptClaims("tx1"));
  ASSERT_TRUE(t.has_value()) << t.error().message << " " << t.error().info;
  EXPECT_EQ(t->id, "tx1");
  EXPECT_EQ(t->sku, "muxy-bits-50");
  EXPECT_EQ(t->currency, "bits");
  EXPECT_EQ(t->timestamp_ms, clock_.NowMs());
  EXPECT_FALSE(t->validated);
  json::value expected = {{"id", "tx1"},
                          {"muxy_id", t->muxy_id},
                          {"sku", "muxy-bits-50"},
                          {"displayName", "Fifty"},
                          {"userId", "u1"},
                          {"username", "Viewer One"},
                          {"cost", 50},
                          {"currency", "bits"},
                          {"timestamp", clock_.NowMs()},
                          {"additional", json::object()}};
  EXPECT_EQ(json::parse(t->json), expected);
  EXPECT_TRUE(json::parse(t->json).at("cost").is_int64());

  auto events = recorder_.Named("transaction");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].client_id, "ext1");
  EXPECT_EQ(events[0].channel_id, "chan1");
  EXPECT_FALSE(events[0].viewers);
  EXPECT_TRUE(events[0].games);
  EXPECT_EQ(json::parse(events[0].payload_json), expected);

  auto replay = Record(Viewer(), ReceiptClaims("tx1"));
  ASSERT_FALSE(replay.has_value());
  EXPECT_EQ(replay.error().code, Errc::kConflict);
  EXPECT_EQ(replay.error().message, "transaction already recorded");
  // Also refused in another channel: the id is unique per extension.
  EXPECT_EQ(Record(Viewer("u1", "chan2"), ReceiptClaims("tx1")).error().code, Errc::kConflict);
  EXPECT_EQ(Listed(), 1u);
  EXPECT_EQ(recorder_.Named("transaction").size(), 1u);
}

TEST_F(TransactionTest, ProductionRefusesBadReceiptsAndRecordsNothing) {
  auto expect = [&](Result<Transaction> r, Errc code, std::string_view message) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, message);
  };
  expect(Record(Viewer(), ReceiptClaims("a"), "wrong-key"), Errc::kInvalidArgument,
         "Invalid transaction receipt");
  expect(Record(Viewer(), ReceiptClaims("b", "s", 5, "twitch.ext.ext2")), Errc::kForbidden,
         "transaction receipt is for another extension");
  json::object topic = ReceiptClaims("c");
  topic["topic"] = "something_else";
  expect(Record(Viewer(), topic), Errc::kInvalidArgument, "Invalid transaction receipt");
  json::object expired = ReceiptClaims("d");
  expired["exp"] = clock_.NowSeconds() - 120;
  expect(Record(Viewer(), expired), Errc::kInvalidArgument, "Invalid transaction receipt");
  json::object no_data = ReceiptClaims("e");
  no_data.erase("data");
  expect(service_->RecordBits(Viewer(), Body(auth::SignHs256(no_data, kSecret))),
         Errc::kInvalidArgument, "Invalid transaction receipt");
  expect(service_->RecordBits(Viewer(), Body("")), Errc::kInvalidArgument,
         "transactionReceipt required");
  expect(service_->RecordBits(Viewer(), json::value("text")), Errc::kInvalidArgument,
         "Invalid body");
  // A dev receipt (bad signature) is refused in production.
  expect(service_->RecordBits(Viewer(), Body("eyJhbGciOiJIUzI1NiJ9.eyJ0b3BpYyI6IngifQ==.sig")),
         Errc::kInvalidArgument, "Invalid transaction receipt");
  EXPECT_EQ(Listed(), 0u);
  EXPECT_TRUE(recorder_.Named("transaction").empty());
  auto balance = service_->CoinBalance("ext1", "chan1", "u1");
  ASSERT_TRUE(balance.has_value());
  EXPECT_EQ(*balance, 0);
  // The refused ids were not burnt: a good receipt with one of them is recorded.
  EXPECT_TRUE(Record(Viewer(), ReceiptClaims("a")).has_value());
}

TEST_F(TransactionTest, ConcurrentReplaysRecordOnce) {
  std::string receipt = auth::SignHs256(ReceiptClaims("race"), kSecret);
  std::atomic<int> wins{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto r = service_->RecordBits(Viewer(), Body(receipt, "race"));
      if (r) {
        wins.fetch_add(1);
      } else if (r.error().code == Errc::kConflict) {
        conflicts.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(conflicts.load(), 7);
  EXPECT_EQ(Listed(), 1u);
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 50);
}

// MEDKit's DevPurchaseClient: btoa() header and payload, a signature that matches nothing.
std::string DevReceipt(const json::object& claims) {
  std::string header = auth::Base64Encode(R"({"alg":"HS256","typ":"JWT"})");
  std::string payload = auth::Base64Encode(json::serialize(claims));
  return header + "." + payload + ".DK02m0j0HQMKsPeFIrAuVdFh5X8f0hknjEKHAjGt6B0";
}

TEST_F(TransactionTest, SandboxApprovesDevReceiptsButRecordsEachIdOnce) {
  Make(Stage::kSandbox);
  json::object claims = ReceiptClaims("test:1700000000000", "dev-sku", 7, "twitch.ext.whatever");
  claims["exp"] = clock_.NowSeconds() - 3600;  // not checked either
  auto t = service_->RecordBits(Viewer(), Body(DevReceipt(claims), "test:1700000000000"));
  ASSERT_TRUE(t.has_value()) << t.error().message << " " << t.error().info;
  EXPECT_EQ(t->id, "test:1700000000000");
  EXPECT_EQ(t->sku, "dev-sku");
  EXPECT_EQ(json::parse(t->json).at("cost"), 7);
  auto replay = service_->RecordBits(Viewer(), Body(DevReceipt(claims), "test:1700000000000"));
  ASSERT_FALSE(replay.has_value());
  EXPECT_EQ(replay.error().code, Errc::kConflict);
  EXPECT_EQ(Listed(), 1u);
}

TEST_F(TransactionTest, SandboxTakesTheBodyWhenTheReceiptIsNoJwt) {
  Make(Stage::kSandbox);
  // TestPurchaseClient's form: a non-bits cost type, receipt "transaction-receipt".
  json::value body = {{"transactionId", "dev-transaction-id"},
                      {"product",
                       {{"sku", "TESTSKU01"},
                        {"displayName", "Test SKU 01"},
                        {"cost", {{"amount", 1}, {"type", "test-cost"}}}}},
                      {"userId", "dev-test-user"},
                      {"displayName", "DevTestUser"},
                      {"transactionReceipt", "transaction-receipt"}};
  auto t = service_->RecordBits(Viewer(), body);
  ASSERT_TRUE(t.has_value()) << t.error().message << " " << t.error().info;
  json::value expected = {{"id", "dev-transaction-id"},
                          {"muxy_id", t->muxy_id},
                          {"sku", "TESTSKU01"},
                          {"displayName", "Test SKU 01"},
                          {"userId", "dev-test-user"},
                          {"username", "DevTestUser"},
                          {"cost", 1},
                          {"currency", "bits"},
                          {"timestamp", clock_.NowMs()},
                          {"additional", json::object()}};
  EXPECT_EQ(json::parse(t->json), expected);
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 0);  // not a bits cost
  json::value no_sku = {{"transactionId", "x"}, {"product", json::object()}};
  EXPECT_FALSE(service_->RecordBits(Viewer(), no_sku).has_value());
  json::value no_id = {{"product", {{"sku", "s"}}}};
  EXPECT_FALSE(service_->RecordBits(Viewer(), no_id).has_value());
}

TEST_F(TransactionTest, MissingNamesAreOmittedNotNull) {
  json::object claims = ReceiptClaims("tx-omit");
  claims["data"].as_object()["product"].as_object().erase("displayName");
  claims["data"].as_object().erase("userId");
  json::value body = {{"transactionId", "tx-omit"},
                      {"transactionReceipt", auth::SignHs256(claims, kSecret)}};
  Identity anonymous = Viewer("");
  anonymous.opaque_user_id = "Aanon";
  auto t = service_->RecordBits(anonymous, body);
  ASSERT_TRUE(t.has_value()) << t.error().message;
  json::object o = json::parse(t->json).as_object();
  EXPECT_FALSE(o.contains("displayName"));
  EXPECT_FALSE(o.contains("userId"));
  EXPECT_FALSE(o.contains("username"));
  for (const auto& kv : o) EXPECT_FALSE(kv.value().is_null()) << kv.key();
}

TEST_F(TransactionTest, UnvalidatedIsOldestFirstAtMostTenAndFiltersBySku) {
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    clock_.AdvanceMs(10);
    auto t = Record(Viewer(), ReceiptClaims("t" + std::to_string(i), i % 2 ? "odd" : "even"));
    ASSERT_TRUE(t.has_value());
    ids.push_back(t->muxy_id);
  }
  auto all = service_->Unvalidated("ext1", "chan1", "*");
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ((*all)[i].muxy_id, ids[i]);
  auto odd = service_->Unvalidated("ext1", "chan1", "odd");
  ASSERT_EQ(odd->size(), 6u);
  for (const auto& t : *odd) EXPECT_EQ(t.sku, "odd");
  EXPECT_TRUE(service_->Unvalidated("ext1", "chan2", "*")->empty());
  EXPECT_TRUE(service_->Unvalidated("ext2", "chan1", "*")->empty());

  ASSERT_TRUE(service_->Validate("ext1", "chan1", ids[0], "granted").has_value());
  ASSERT_TRUE(service_->Validate("ext1", "chan1", ids[0], "again").has_value());
  auto after = service_->Unvalidated("ext1", "chan1", "*");
  ASSERT_EQ(after->size(), 10u);
  EXPECT_EQ(after->front().muxy_id, ids[1]);
  EXPECT_EQ(after->back().muxy_id, ids[10]);
  EXPECT_EQ(service_->Validate("ext1", "chan1", "nope", "").error().code, Errc::kNotFound);
  EXPECT_EQ(service_->Validate("ext1", "chan2", ids[1], "").error().code, Errc::kNotFound);
}

TEST_F(TransactionTest, RecordsExpireAfterThirtyDays) {
  ASSERT_TRUE(Record(Viewer(), ReceiptClaims("old")).has_value());
  clock_.AdvanceMs(30 * kDayMs - 1);
  EXPECT_EQ(Listed(), 1u);
  clock_.AdvanceMs(1);
  EXPECT_EQ(Listed(), 0u);
}

TEST_F(TransactionTest, RefundByIdOrSkuOfTheUser) {
  auto a = Record(Viewer("u1"), ReceiptClaims("r1", "sku1"));
  auto b = Record(Viewer("u1"), ReceiptClaims("r2", "sku2"));
  json::object other = ReceiptClaims("r3", "sku2");
  other["data"].as_object()["userId"] = "u2";
  auto c = Record(Viewer("u2"), other);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(service_->Refund("ext1", "chan1", a->muxy_id, "", "u2").error().code, Errc::kNotFound);
  ASSERT_TRUE(service_->Refund("ext1", "chan1", a->muxy_id, "", "u1").has_value());
  EXPECT_EQ(service_->Refund("ext1", "chan1", a->muxy_id, "", "u1").error().code,
            Errc::kNotFound);  // already refunded
  ASSERT_TRUE(service_->Refund("ext1", "chan1", "", "sku2", "u1").has_value());
  auto left = service_->Unvalidated("ext1", "chan1", "*");
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().muxy_id, c->muxy_id);
  EXPECT_EQ(service_->Refund("ext1", "chan1", "", "sku1", "u1").error().code, Errc::kNotFound);
  EXPECT_FALSE(service_->Refund("ext1", "chan1", "", "", "u1").has_value());
}

constexpr std::string_view kConfig = R"({"skus":{"bomb":{"price":30,"displayName":"Bomb"},
                                          "free":{"price":0},"odd":{}}})";

TEST_F(TransactionTest, CoinsAreCreditedByBitsAndSpentOnConfiguredSkus) {
  ASSERT_TRUE(Record(Viewer("u1"), ReceiptClaims("c1", "muxy-bits-50", 50)).has_value());
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 50);
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u2"), 0);

  auto bought =
      service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"bomb","price":30})"), kConfig);
  ASSERT_TRUE(bought.has_value()) << bought.error().message;
  EXPECT_EQ(bought->currency, "coins");
  json::value expected = {{"id", bought->muxy_id},
                          {"muxy_id", bought->muxy_id},
                          {"sku", "bomb"},
                          {"displayName", "Bomb"},
                          {"userId", "u1"},
                          {"cost", 30},
                          {"currency", "coins"},
                          {"timestamp", clock_.NowMs()},
                          {"additional", json::object()}};
  EXPECT_EQ(json::parse(bought->json), expected);
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 20);
  auto events = recorder_.Named("transaction");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(json::parse(events[1].payload_json), expected);
  EXPECT_FALSE(events[1].viewers);

  auto poor =
      service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"bomb","price":30})"), kConfig);
  ASSERT_FALSE(poor.has_value());
  EXPECT_EQ(poor.error().message, "Not enough coins");
  EXPECT_EQ(
      service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"bomb","price":3})"), kConfig)
          .error()
          .message,
      "price does not match");
  EXPECT_EQ(
      service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"odd","price":0})"), kConfig)
          .error()
          .message,
      "price does not match");
  EXPECT_EQ(
      service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"nope","price":1})"), kConfig)
          .error()
          .code,
      Errc::kNotFound);
  EXPECT_EQ(service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"bomb","price":30})"), "{}")
                .error()
                .code,
            Errc::kNotFound);
  EXPECT_FALSE(
      service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"bomb"})"), kConfig).has_value());
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 20);
  EXPECT_TRUE(
      service_->PurchaseCoins(Viewer("u2"), json::parse(R"({"sku":"free","price":0})"), kConfig)
          .has_value());

  // A refunded coin purchase gives the coins back.
  ASSERT_TRUE(service_->Refund("ext1", "chan1", bought->muxy_id, "", "u1").has_value());
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 50);
}

TEST_F(TransactionTest, ConcurrentCoinPurchasesNeverOverspend) {
  ASSERT_TRUE(Record(Viewer("u1"), ReceiptClaims("c1", "muxy-bits-100", 100)).has_value());
  std::atomic<int> bought{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (service_->PurchaseCoins(Viewer("u1"), json::parse(R"({"sku":"bomb","price":30})"),
                                  kConfig)) {
        bought.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bought.load(), 3);
  EXPECT_EQ(*service_->CoinBalance("ext1", "chan1", "u1"), 10);
}

}  // namespace
}  // namespace medkit::core::purchase
