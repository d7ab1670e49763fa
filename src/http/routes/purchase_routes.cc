// Purchases (spec 5.12): POST bits/transactions (201 {}) and POST coins/purchase (200 {}).
// Parses, calls TransactionService, renders.
#include "core/kv/document_service.h"
#include "core/purchase/transaction_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

core::Result<std::string> BitsTransaction(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (auto recorded = call.services.purchases->RecordBits(call.who(), *body); !recorded) {
    return std::move(recorded).error();
  }
  call.status = 201;  // GL-IT asserts 201; MEDKit's TransactionResponse is {}
  return std::string("{}");
}

core::Result<std::string> CoinsPurchase(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  auto config = call.services.documents->Read(call.who(), core::kv::DocKind::kChannelConfig);
  if (!config) return std::move(config).error();
  if (auto bought = call.services.purchases->PurchaseCoins(call.who(), *body, *config); !bought) {
    return std::move(bought).error();
  }
  return std::string("{}");
}

}  // namespace

void RegisterPurchaseRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kPost, p + "bits/transactions", Auth::kRequired, BitsTransaction);
  router.Add(Method::kPost, p + "coins/purchase", Auth::kRequired, CoinsPurchase);
}

}  // namespace medkit::http
