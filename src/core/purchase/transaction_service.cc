// TransactionService: receipts, the transaction records, dedupe and coin balances.
//
// Keys:
//   tx␟<stage>␟<client>␟d␟<Twitch transactionId>          dedupe marker -> muxy_id, 30 days
//   tx␟<stage>␟<client>␟<channel>␟t␟<muxy_id>             record {"tx": <7.5 JSON>, ...}, 30 days
//   tx␟<stage>␟<client>␟<channel>␟b␟<viewer key>          coin balance (Store counter)
// A muxy_id starts with the record time in zero-padded milliseconds, so a Scan of a channel's
// records is oldest first. A bits record is written in one Apply with ExpectVersion(dedupe, 0),
// so a replayed transactionId (also a concurrent one) conflicts and nothing is written twice.
// A coin purchase debits the balance with ExpectVersion(balance, the version read) in the same
// Apply as its record.
#include "core/purchase/transaction_service.h"

#include <openssl/rand.h>

#include <boost/json.hpp>
#include <cstdio>
#include <utility>

#include "core/auth/jwt.h"
#include "core/kv/json_util.h"

namespace medkit::core::purchase {
namespace json = boost::json;
using auth::Identity;

namespace {

constexpr char kSep = '\x1f';
constexpr std::string_view kTopic = "bits_transaction_receipt";
constexpr size_t kMaxIdBytes = 256;
constexpr int kAttempts = 16;
constexpr size_t kScanPage = 256;

Error Bad(std::string message, std::string info = {}) {
  return MakeError(Errc::kInvalidArgument, std::move(message), std::move(info));
}

bool CleanId(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdBytes) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}


const json::object* ObjectField(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  return it == o.end() ? nullptr : it->value().if_object();
}

std::string StringField(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_string()) return {};
  return std::string(it->value().get_string());
}

// Base64 of either alphabet, padded or not (MEDKit's dev receipts use btoa: standard, padded).
std::optional<std::string> LenientBase64(std::string_view text) {
  std::string s(text);
  for (char& c : s) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  auto decoded = auth::Base64Decode(s);
  if (!decoded) return std::nullopt;
  return std::move(*decoded);
}

// The claims of a JWT whose signature is not checked (sandbox), or nullopt.
std::optional<json::object> UnverifiedClaims(std::string_view jwt) {
  size_t a = jwt.find('.');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = jwt.find('.', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  auto payload = LenientBase64(jwt.substr(a + 1, b - a - 1));
  if (!payload) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*payload, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.get_object());
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    return {};
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// "<ms, 13 digits>-<random>": sorts by time, unique.
std::string NewMuxyId(int64_t now_ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%013lld", static_cast<long long>(now_ms));
  std::string random = RandomHex(8);
  if (random.empty()) return {};
  return std::string(buf) + "-" + random;
}

// What a record needs besides the 7.5 JSON.
struct Purchase {
  std::string id;  // Twitch transactionId (coins: the muxy_id)
  std::string sku;
  std::string display_name;
  std::string user_id;
  std::string username;
  int64_t cost = 0;
  std::string currency;
};

// The Transaction object of spec 7.5. Typed fields are never null: empty strings are omitted.
json::object TransactionJson(const Purchase& p, const std::string& muxy_id, int64_t now_ms) {
  json::object o;
  o["id"] = p.id;
  o["muxy_id"] = muxy_id;
  o["sku"] = p.sku;
  if (!p.display_name.empty()) o["displayName"] = p.display_name;
  if (!p.user_id.empty()) o["userId"] = p.user_id;
  if (!p.username.empty()) o["username"] = p.username;
  o["cost"] = p.cost;
  o["currency"] = p.currency;
  o["timestamp"] = now_ms;
  o["additional"] = json::object();
  return o;
}

// The stored record: {"tx": <7.5 JSON>, "user": viewer key, "v": validated, "r": refunded,
// "details": text}.
struct Record {
  json::object tx;
  std::string viewer;
  bool validated = false;
  bool refunded = false;
  std::string details;

  std::string Serialize() const {
    json::object o;
    o["tx"] = tx;
    o["user"] = viewer;
    o["v"] = validated;
    o["r"] = refunded;
    if (!details.empty()) o["details"] = details;
    return json::serialize(o);
  }
  static Result<Record> Parse(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) return MakeError(Errc::kInternal, "corrupt transaction record");
    const json::object& o = v.get_object();
    Record r;
    if (const json::object* tx = ObjectField(o, "tx")) r.tx = *tx;
    r.viewer = StringField(o, "user");
    if (auto it = o.find("v"); it != o.end() && it->value().is_bool())
      r.validated = it->value().get_bool();
    if (auto it = o.find("r"); it != o.end() && it->value().is_bool())
      r.refunded = it->value().get_bool();
    r.details = StringField(o, "details");
    return r;
  }
  Transaction ToTransaction() const {
    Transaction t;
    t.muxy_id = StringField(tx, "muxy_id");
    t.id = StringField(tx, "id");
    t.sku = StringField(tx, "sku");
    t.currency = StringField(tx, "currency");
    t.timestamp_ms = kv::IntegerField(tx, "timestamp").value_or(0);
    t.validated = validated;
    t.json = json::serialize(tx);
    return t;
  }
};

}  // namespace

TransactionService::TransactionService(storage::Store& store, const Clock& clock, auth::Stage stage,
                                       const auth::ExtensionRegistry& registry,
                                       PurchaseLimits limits, events::EventBus* events)
    : store_(store),
      clock_(clock),
      stage_(stage),
      registry_(registry),
      limits_(limits),
      events_(events) {}

namespace {

std::string Prefix(auth::Stage stage, std::string_view client_id) {
  std::string p = "tx";
  p.push_back(kSep);
  p.append(auth::StageName(stage)).push_back(kSep);
  p.append(client_id).push_back(kSep);
  return p;
}
std::string ChannelPrefix(auth::Stage stage, std::string_view client_id,
                          std::string_view channel_id, char kind) {
  std::string p = Prefix(stage, client_id);
  p.append(channel_id).push_back(kSep);
  p.push_back(kind);
  p.push_back(kSep);
  return p;
}

Result<void> CheckCaller(const Identity& who) {
  if (who.channel_id.empty()) return Bad("channel id required");
  if (!CleanId(who.channel_id)) return Bad("invalid channel id");
  return {};
}

}  // namespace

Result<Transaction> TransactionService::RecordBits(const Identity& who, const json::value& body) {
  if (auto ok = CheckCaller(who); !ok) return std::move(ok).error();
  const json::object* in = body.if_object();
  if (in == nullptr) return Bad("Invalid body", "a transaction is a JSON object");
  if (json::serialize(body).size() > limits_.max_body_bytes) {
    return Bad("Invalid body", "limit " + std::to_string(limits_.max_body_bytes) + " bytes");
  }
  const std::string receipt = StringField(*in, "transactionReceipt");

  // The receipt's data (verified in production), else in the sandbox the body's own fields.
  std::optional<json::object> claims;
  if (stage_ == auth::Stage::kProduction) {
    if (receipt.empty()) return Bad("transactionReceipt required");
    const auth::ExtensionInfo* ext = registry_.Find(who.client_id);
    if (ext == nullptr) return MakeError(Errc::kUnauthenticated, "No such extension found");
    std::string_view keys[1] = {ext->secret};
    auto verified = auth::VerifyHs256(receipt, keys, {clock_.NowSeconds(), 60});
    if (!verified) return Bad("Invalid transaction receipt", verified.error().message);
    claims = std::move(*verified);
    if (StringField(*claims, "topic") != kTopic) {
      return Bad("Invalid transaction receipt", "topic is not bits_transaction_receipt");
    }
  } else if (!receipt.empty()) {
    claims = UnverifiedClaims(receipt);  // sandbox: "transactions are always approved"
  }
  const json::object* data = claims ? ObjectField(*claims, "data") : nullptr;
  if (stage_ == auth::Stage::kProduction && data == nullptr) {
    return Bad("Invalid transaction receipt", "no data");
  }
  const json::object& source = data != nullptr ? *data : *in;
  const json::object* product = ObjectField(source, "product");
  const json::object* body_product = ObjectField(*in, "product");
  if (product == nullptr) product = body_product;
  if (product == nullptr) return Bad("Invalid body", "product required");
  if (stage_ == auth::Stage::kProduction) {
    if (StringField(*product, "domainId") != "twitch.ext." + who.client_id) {
      return MakeError(Errc::kForbidden, "transaction receipt is for another extension",
                       "product.domainId must be twitch.ext." + who.client_id);
    }
  }

  Purchase p;
  p.id = kv::IdField(source, "transactionId");
  if (p.id.empty() && data != nullptr) p.id = kv::IdField(*in, "transactionId");  // sandbox
  if (!CleanId(p.id)) return Bad("Invalid body", "transactionId required");
  p.sku = StringField(*product, "sku");
  if (!CleanId(p.sku)) return Bad("Invalid body", "product.sku required");
  p.display_name = StringField(*product, "displayName");
  if (p.display_name.empty() && body_product != nullptr) {
    p.display_name = StringField(*body_product, "displayName");
  }
  std::string cost_type;
  if (const json::object* cost = ObjectField(*product, "cost")) {
    p.cost = kv::IntegerField(*cost, "amount").value_or(-1);
    cost_type = StringField(*cost, "type");
  }
  if (p.cost < 0) return Bad("Invalid body", "product.cost.amount must be a non-negative integer");
  p.user_id = kv::IdField(source, "userId");
  if (p.user_id.empty()) p.user_id = kv::IdField(*in, "userId");
  if (p.user_id.empty()) p.user_id = who.user_id;
  p.username = StringField(*in, "displayName");
  p.currency = "bits";

  const int64_t now = clock_.NowMs();
  const std::string muxy_id = NewMuxyId(now);
  if (muxy_id.empty()) return MakeError(Errc::kInternal, "no randomness");
  Record record;
  record.tx = TransactionJson(p, muxy_id, now);
  record.viewer = who.ViewerKey();

  const std::string dedupe = Prefix(stage_, who.client_id) + "d" + kSep + p.id;
  storage::WriteBatch batch;
  batch.ExpectVersion(dedupe, 0);
  batch.Put(dedupe, muxy_id, now + limits_.ttl_ms);
  batch.Put(ChannelPrefix(stage_, who.client_id, who.channel_id, 't') + muxy_id, record.Serialize(),
            now + limits_.ttl_ms);
  // Coins (spec 12 item 20): a bits purchase credits its amount to the purchaser.
  if (cost_type == "bits" && p.cost > 0 && !record.viewer.empty()) {
    batch.Add(ChannelPrefix(stage_, who.client_id, who.channel_id, 'b') + record.viewer, p.cost);
  }
  auto applied = store_.Apply(batch);
  if (!applied) {
    if (applied.error().code == Errc::kConflict) {
      return MakeError(Errc::kConflict, "transaction already recorded",
                       "transactionId " + p.id + " was recorded before");
    }
    return std::move(applied).error();
  }
  Transaction t = record.ToTransaction();
  if (events_ != nullptr) {
    events::Event event{who.client_id, who.channel_id, "transaction", t.json, now};
    event.viewers = false;
    events_->Publish(event);
  }
  return t;
}

Result<Transaction> TransactionService::PurchaseCoins(const Identity& who, const json::value& body,
                                                      std::string_view channel_config_json) {
  if (auto ok = CheckCaller(who); !ok) return std::move(ok).error();
  const std::string viewer = who.ViewerKey();
  if (viewer.empty()) return Bad("user id required");
  const json::object* in = body.if_object();
  if (in == nullptr) return Bad("Invalid body", "expected {\"sku\", \"price\"}");
  const std::string sku = StringField(*in, "sku");
  if (!CleanId(sku)) return Bad("Invalid body", "sku required");
  auto price = kv::IntegerField(*in, "price");
  if (!price || *price < 0) return Bad("Invalid body", "price must be a non-negative integer");

  boost::system::error_code ec;
  json::value config = json::parse(channel_config_json, ec);
  const json::object* skus = nullptr;
  if (!ec && config.is_object()) skus = ObjectField(config.get_object(), "skus");
  const json::object* item = skus != nullptr ? ObjectField(*skus, sku) : nullptr;
  if (item == nullptr) return MakeError(Errc::kNotFound, "unknown sku");
  auto configured = kv::IntegerField(*item, "price");
  if (!configured || *configured != *price) {
    return Bad("price does not match",
               configured ? "the price of " + sku + " is " + std::to_string(*configured)
                          : "the sku has no price");
  }

  const std::string balance_key =
      ChannelPrefix(stage_, who.client_id, who.channel_id, 'b') + viewer;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto entry = store_.Get(balance_key);
    if (!entry) return std::move(entry).error();
    int64_t balance = 0;
    uint64_t version = 0;
    if (*entry) {
      json::object holder{{"n", (*entry)->value}};
      balance = kv::IntegerField(holder, "n").value_or(0);
      version = (*entry)->version;
    }
    if (balance < *price) {
      return Bad("Not enough coins",
                 "balance " + std::to_string(balance) + ", price " + std::to_string(*price));
    }
    const int64_t now = clock_.NowMs();
    const std::string muxy_id = NewMuxyId(now);
    if (muxy_id.empty()) return MakeError(Errc::kInternal, "no randomness");
    Purchase p;
    p.id = muxy_id;
    p.sku = sku;
    p.display_name = StringField(*item, "displayName");
    p.user_id = who.user_id;
    p.cost = *price;
    p.currency = "coins";
    Record record;
    record.tx = TransactionJson(p, muxy_id, now);
    record.viewer = viewer;
    storage::WriteBatch batch;
    batch.ExpectVersion(balance_key, version);
    if (*price > 0) batch.Add(balance_key, -*price);
    batch.Put(ChannelPrefix(stage_, who.client_id, who.channel_id, 't') + muxy_id,
              record.Serialize(), now + limits_.ttl_ms);
    auto applied = store_.Apply(batch);
    if (!applied) {
      if (applied.error().code == Errc::kConflict) continue;  // a concurrent credit or debit
      return std::move(applied).error();
    }
    Transaction t = record.ToTransaction();
    if (events_ != nullptr) {
      events::Event event{who.client_id, who.channel_id, "transaction", t.json, now};
      event.viewers = false;
      events_->Publish(event);
    }
    return t;
  }
  return MakeError(Errc::kConflict, "coin balance is busy, try again");
}

Result<int64_t> TransactionService::CoinBalance(std::string_view client_id,
                                                std::string_view channel_id,
                                                std::string_view viewer_key) {
  auto entry =
      store_.Get(ChannelPrefix(stage_, client_id, channel_id, 'b') + std::string(viewer_key));
  if (!entry) return std::move(entry).error();
  if (!*entry) return int64_t{0};
  json::object holder{{"n", (*entry)->value}};
  return kv::IntegerField(holder, "n").value_or(0);
}

Result<std::vector<Transaction>> TransactionService::Unvalidated(std::string_view client_id,
                                                                 std::string_view channel_id,
                                                                 std::string_view sku) {
  const std::string prefix = ChannelPrefix(stage_, client_id, channel_id, 't');
  std::vector<Transaction> out;
  std::string after;
  while (out.size() < limits_.max_listed) {
    auto page = store_.Scan(prefix, after, kScanPage);
    if (!page) return std::move(page).error();
    for (const auto& e : *page) {
      auto record = Record::Parse(e.entry.value);
      if (!record) return std::move(record).error();
      if (record->validated || record->refunded) continue;
      if (sku != "*" && StringField(record->tx, "sku") != sku) continue;
      out.push_back(record->ToTransaction());
      if (out.size() == limits_.max_listed) break;
    }
    if (page->size() < kScanPage) break;
    after = page->back().key;
  }
  return out;
}

Result<void> TransactionService::Validate(std::string_view client_id, std::string_view channel_id,
                                          std::string_view muxy_id, std::string_view details) {
  if (muxy_id.empty()) return MakeError(Errc::kNotFound, "unknown transaction");
  const std::string key = ChannelPrefix(stage_, client_id, channel_id, 't') + std::string(muxy_id);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto entry = store_.Get(key);
    if (!entry) return std::move(entry).error();
    if (!*entry) return MakeError(Errc::kNotFound, "unknown transaction");
    auto record = Record::Parse((*entry)->value);
    if (!record) return std::move(record).error();
    if (record->validated) return {};  // validating twice is harmless
    record->validated = true;
    record->details = std::string(details);
    storage::WriteBatch batch;
    batch.ExpectVersion(key, (*entry)->version);
    batch.Put(key, record->Serialize(), (*entry)->expires_at_ms);
    auto applied = store_.Apply(batch);
    if (applied) return {};
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return MakeError(Errc::kConflict, "transaction is busy, try again");
}

Result<void> TransactionService::Refund(std::string_view client_id, std::string_view channel_id,
                                        std::string_view muxy_id, std::string_view sku,
                                        std::string_view user_id) {
  const std::string prefix = ChannelPrefix(stage_, client_id, channel_id, 't');
  const std::string balance_prefix = ChannelPrefix(stage_, client_id, channel_id, 'b');
  // The candidate keys: the one named, or every record of the channel (filtered below).
  std::vector<storage::KeyEntry> candidates;
  if (!muxy_id.empty()) {
    auto entry = store_.Get(prefix + std::string(muxy_id));
    if (!entry) return std::move(entry).error();
    if (*entry) candidates.push_back({prefix + std::string(muxy_id), std::move(**entry)});
  } else if (!sku.empty()) {
    std::string after;
    for (;;) {
      auto page = store_.Scan(prefix, after, kScanPage);
      if (!page) return std::move(page).error();
      for (auto& e : *page) candidates.push_back(std::move(e));
      if (page->size() < kScanPage) break;
      after = candidates.back().key;
    }
  } else {
    return Bad("transaction_id or sku required");
  }
  size_t refunded = 0;
  for (auto& candidate : candidates) {
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      auto record = Record::Parse(candidate.entry.value);
      if (!record) return std::move(record).error();
      const std::string tx_user = StringField(record->tx, "userId");
      bool matches =
          !record->refunded && (user_id.empty() || tx_user == user_id || record->viewer == user_id);
      if (muxy_id.empty()) matches = matches && StringField(record->tx, "sku") == sku;
      if (!matches) break;
      record->refunded = true;
      storage::WriteBatch batch;
      batch.ExpectVersion(candidate.key, candidate.entry.version);
      batch.Put(candidate.key, record->Serialize(), candidate.entry.expires_at_ms);
      // A refunded coin purchase gives its coins back.
      int64_t cost = kv::IntegerField(record->tx, "cost").value_or(0);
      if (StringField(record->tx, "currency") == "coins" && cost > 0 && !record->viewer.empty()) {
        batch.Add(balance_prefix + record->viewer, cost);
      }
      auto applied = store_.Apply(batch);
      if (applied) {
        ++refunded;
        break;
      }
      if (applied.error().code != Errc::kConflict) return std::move(applied).error();
      auto again = store_.Get(candidate.key);
      if (!again) return std::move(again).error();
      if (!*again) break;
      candidate.entry = std::move(**again);
    }
  }
  if (refunded == 0) return MakeError(Errc::kNotFound, "no matching transaction");
  return {};
}

}  // namespace medkit::core::purchase
