// Purchases (spec 5.12, 7.4 "Purchases", 7.5 Transaction): Bits transactions that viewers'
// extensions forward with POST bits/transactions, and coin purchases (POST coins/purchase).
//
// Production verifies the receipt JWT (HS256, the extension's secret), checks its topic
// ("bits_transaction_receipt") and product.domainId ("twitch.ext.<client_id>"), and records a
// Twitch transactionId once (a replay is refused with 409); the sandbox approves every receipt
// (MEDKit's dev purchases carry a deliberately bad signature) but still records each id once.
// A recorded transaction gets a server id (muxy_id), is stored for 30 days under its channel,
// and is published on the event bus as Event{client, channel, "transaction", <Transaction
// JSON of 7.5>} with viewers = false, for GameLink twitchPurchaseBits subscribers.
// Thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/extension_registry.h"
#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::purchase {

struct PurchaseLimits {
  int64_t ttl_ms = 30LL * 86400 * 1000;
  size_t max_body_bytes = 16 * 1024;
  size_t max_listed = 10;  // GameLink get transaction: at most this many, oldest first
};

// One transaction as GameLink sends it (7.5 Transaction); `json` is that object serialized.
struct Transaction {
  std::string muxy_id;
  std::string id;  // the Twitch transactionId
  std::string sku;
  std::string currency;  // "bits" | "coins"
  int64_t timestamp_ms = 0;
  bool validated = false;
  std::string json;
};

class TransactionService {
 public:
  // events may be null.
  TransactionService(storage::Store& store, const Clock& clock, auth::Stage stage,
                     const auth::ExtensionRegistry& registry, PurchaseLimits limits,
                     events::EventBus* events);

  // POST bits/transactions: any role; the channel is the token's. Returns the recorded
  // transaction (the route answers 201 {}). 400 with a reason for a malformed body or
  // receipt, 403 for a receipt of another extension, 409 for a replayed transactionId.
  Result<Transaction> RecordBits(const auth::Identity& who, const boost::json::value& body);

  // POST coins/purchase {"sku", "price"}: viewer; the SKU and price must match channel config
  // skus[<sku>].price (channel_config_json: the caller's channel config document text), and
  // the viewer's coin balance (credited with the bits amount of each of its bits purchases)
  // must cover it. Records a transaction with currency "coins".
  Result<Transaction> PurchaseCoins(const auth::Identity& who, const boost::json::value& body,
                                    std::string_view channel_config_json);

  // The coin balance of a viewer (its viewer key: user_id, else opaque_user_id) in a channel.
  Result<int64_t> CoinBalance(std::string_view client_id, std::string_view channel_id,
                              std::string_view viewer_key);

  // GameLink get transaction {"sku": <sku> | "*"}: unvalidated transactions of the channel,
  // oldest first, at most max_listed.
  Result<std::vector<Transaction>> Unvalidated(std::string_view client_id,
                                               std::string_view channel_id, std::string_view sku);
  // GameLink validate {"transaction_id": muxy_id, "details"}: marks it validated (404 unknown).
  Result<void> Validate(std::string_view client_id, std::string_view channel_id,
                        std::string_view muxy_id, std::string_view details);
  // GameLink refund {"transaction_id", "user_id"} or {"sku", "user_id"}: marks the matching
  // transaction(s) of that user refunded (404 when none).
  Result<void> Refund(std::string_view client_id, std::string_view channel_id,
                      std::string_view muxy_id, std::string_view sku, std::string_view user_id);

 private:
  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  const auth::ExtensionRegistry& registry_;
  PurchaseLimits limits_;
  events::EventBus* events_;
};

}  // namespace medkit::core::purchase
