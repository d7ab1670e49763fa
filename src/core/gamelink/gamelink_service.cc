#include "core/gamelink/gamelink_service.h"

#include <algorithm>
#include <array>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include "core/auth/authenticator.h"
#include "core/broadcast/messaging_service.h"
#include "core/events/event_bus.h"
#include "core/kv/document_service.h"
#include "core/kv/json_util.h"

namespace medkit::core::gamelink {

namespace json = boost::json;
using kv::DocKind;
using poll::PollRef;

namespace {

constexpr uint32_t kAnyRequest = 65535;

std::string Quote(std::string_view s) { return json::serialize(json::string(s)); }

std::string Join(std::string_view kind, std::string_view a, std::string_view b,
                 std::string_view c = {}) {
  std::string t = "gl\x1f";
  t.append(kind).push_back('\x1f');
  t.append(a).push_back('\x1f');
  t.append(b);
  if (!c.empty()) t.append("\x1f").append(c);
  return t;
}

std::string PollKey(const PollRef& ref) {
  return ref.client_id + '\x1f' + ref.channel_id + '\x1f' + ref.poll_id;
}

int NumberFor(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return 400;
    case Errc::kUnauthenticated:
      return 401;
    case Errc::kForbidden:
      return 403;
    case Errc::kNotFound:
      return 404;
    case Errc::kConflict:
      return 409;
    case Errc::kTooLarge:
      return 413;
    case Errc::kRateLimited:
      return 429;
    case Errc::kUnavailable:
      return 503;
    case Errc::kInternal:
      return 500;
  }
  return 500;
}

std::string_view TitleFor(int number) {
  switch (number) {
    case 400:
      return "Bad request";
    case 401:
      return "Not authenticated";
    case 403:
      return "Not authorized";
    case 404:
      return "Not found";
    case 409:
      return "Conflict";
    case 413:
      return "Too large";
    case 429:
      return "Too many requests";
    case 501:
      return "Not implemented";
    case 503:
      return "Unavailable";
    default:
      return "Internal error";
  }
}

const json::value* Field(const json::value& data, std::string_view name) {
  const json::object* o = data.if_object();
  return o ? o->if_contains(name) : nullptr;
}

// A string field ("" when absent or not a string).
std::string StringField(const json::value& data, std::string_view name) {
  const json::value* v = Field(data, name);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

std::string TopicState(std::string_view client, std::string_view channel) {
  return Join("state", client, channel);
}
std::string TopicConfig(std::string_view client, std::string_view channel) {
  return Join("config", client, channel);
}
std::string TopicPoll(std::string_view client, std::string_view channel, std::string_view poll) {
  return Join("poll", client, channel, poll);
}
std::string TopicDatastream(std::string_view client, std::string_view channel) {
  return Join("ds", client, channel);
}
std::string TopicPurchase(std::string_view client, std::string_view channel, std::string_view sku) {
  return Join("bits", client, channel, sku);
}
std::string TopicMatchPoll(std::string_view client, std::string_view match) {
  return Join("mpoll", client, match);
}
std::string TopicMatchmaking(std::string_view client, std::string_view channel) {
  return Join("mm", client, channel);
}

std::string Envelope(uint32_t request_id, std::string_view action, std::string_view target,
                     int64_t timestamp_ms, std::string_view data_json) {
  std::string out = "{\"meta\":{\"request_id\":" + std::to_string(request_id) +
                    ",\"action\":" + Quote(action) + ",\"target\":" + Quote(target) +
                    ",\"timestamp\":" + std::to_string(timestamp_ms) + "},\"data\":";
  out += data_json;
  out += '}';
  return out;
}

std::string ErrorEnvelope(uint32_t request_id, std::string_view action, std::string_view target,
                          int64_t timestamp_ms, int number, std::string_view title,
                          std::string_view detail) {
  std::string n = std::to_string(number);
  return "{\"meta\":{\"request_id\":" + std::to_string(request_id) + ",\"action\":" +
         Quote(action) + ",\"target\":" + Quote(target) + ",\"timestamp\":" +
         std::to_string(timestamp_ms) + "},\"errors\":[{\"number\":" + n + ",\"status\":" + n +
         ",\"title\":" + Quote(title) + ",\"detail\":" + Quote(detail) + "}]}";
}

// ---------------------------------------------------------------------------------------------
// Connection

struct GameLinkConnection::Request {
  std::string action;
  std::string target;
  uint32_t request_id = kAnyRequest;
  json::value data;  // null when absent
};

GameLinkConnection::GameLinkConnection(GameLinkService& service, std::string client_id,
                                       GameLinkOutput& out)
    : service_(service), client_id_(std::move(client_id)), out_(out) {}

void GameLinkConnection::Reply(const Request& r, std::string data_json) {
  out_.Send(Envelope(r.request_id, r.action, r.target, service_.NowMs(), data_json));
}

void GameLinkConnection::Fail(const Request& r, int number, std::string_view title,
                              std::string_view detail) {
  out_.Send(ErrorEnvelope(r.request_id, r.action, r.target, service_.NowMs(), number, title,
                          detail));
}

void GameLinkConnection::Fail(const Request& r, const Error& error) {
  int number = NumberFor(error.code);
  std::string detail = error.message;
  if (!error.info.empty()) detail += ": " + error.info;
  Fail(r, number, TitleFor(number), detail);
}

bool GameLinkConnection::Track(const std::string& topic, bool subscribe) {
  for (size_t i = 0; i < topics_.size(); ++i) {
    if (topics_[i] != topic) continue;
    if (!subscribe) {
      topics_.erase(topics_.begin() + static_cast<std::ptrdiff_t>(i));
      out_.Unsubscribe(topic);
    }
    return true;
  }
  if (!subscribe) return true;
  if (topics_.size() >= service_.limits().max_subscriptions) return false;
  topics_.push_back(topic);
  out_.Subscribe(topic);
  return true;
}

void GameLinkConnection::OnMessage(std::string_view text) {
  Request r;
  auto parsed = kv::ParseJsonBody(text, service_.limits().max_json_depth);
  if (!parsed || !parsed->is_object()) {
    Fail(r, 400, "Bad request", "a request is a JSON object {\"action\", \"params\", \"data\"}");
    return;
  }
  const json::object& o = parsed->get_object();
  if (const json::value* params = o.if_contains("params"); params && params->is_object()) {
    const json::object& p = params->get_object();
    if (const json::value* id = p.if_contains("request_id")) {
      if (id->is_int64() && id->get_int64() >= 0 && id->get_int64() <= 65535) {
        r.request_id = static_cast<uint32_t>(id->get_int64());
      } else if (id->is_uint64() && id->get_uint64() <= 65535) {
        r.request_id = static_cast<uint32_t>(id->get_uint64());
      }
    }
    if (const json::value* t = p.if_contains("target"); t && t->is_string()) {
      r.target = std::string(t->get_string());
    }
  }
  if (const json::value* a = o.if_contains("action"); a && a->is_string()) {
    r.action = std::string(a->get_string());
  }
  if (const json::value* d = o.if_contains("data")) r.data = *d;
  if (r.action.empty()) {
    Fail(r, 400, "Bad request", "missing action");
    return;
  }
  try {
    Dispatch(r);
  } catch (const std::exception& e) {
    Fail(r, 500, "Internal error", "the request could not be handled");
  }
}

void GameLinkConnection::Dispatch(const Request& r) {
  const std::string& a = r.action;
  const std::string& t = r.target;
  if (a == "authenticate") return Authenticate(r);
  if (a == "subscribe" && t == "authentication") return Ok(r);
  if (!authenticated_) {
    return Fail(r, 401, "Not authenticated", "authenticate first");
  }
  if (t == "state" || ((a == "set" || a == "get" || a == "update") &&
                       (t == "channel" || t == "extension"))) {
    return State(r);
  }
  if (t == "config") return Config(r);
  if (a == "broadcast" && (t.empty() || t == "broadcast")) return Broadcast(r);
  if (t == "poll") return Poll(r);
  if (t == "datastream") {
    if (a != "subscribe" && a != "unsubscribe") return Fail(r, 400, "Bad request", "unknown action");
    if (!Track(TopicDatastream(client_id_, who_.channel_id), a == "subscribe")) {
      return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
    }
    return Ok(r);
  }
  if (t == "twitchPurchaseBits" || t == "transaction_complete" || t == "transaction") {
    return Purchases(r);
  }
  if (t == "match") return Match(r);
  if (t == "match_poll") return MatchPoll(r);
  return Niche(r);
}

void GameLinkConnection::Authenticate(const Request& r) {
  const auto& deps = service_.deps();
  std::string client = StringField(r.data, "client_id");
  if (client.empty()) client = client_id_;
  if (client != client_id_) {
    return Fail(r, 400, "Bad request", "client_id does not match the connection's");
  }
  std::string game = StringField(r.data, "game_id");
  std::string pin = StringField(r.data, "pin");
  std::string refresh = StringField(r.data, "refresh");
  std::string jwt = StringField(r.data, "jwt");
  Result<GameSession> session = MakeError(Errc::kInvalidArgument, "authenticate needs a pin, "
                                          "a refresh token or a jwt");
  if (!pin.empty()) {
    if (!deps.redeem_pin) return Fail(r, 501, "Not implemented", "PIN linking is not available");
    session = deps.redeem_pin(client, pin, game);
  } else if (!refresh.empty()) {
    if (!deps.refresh) return Fail(r, 501, "Not implemented", "refresh tokens are not available");
    session = deps.refresh(client, refresh, game);
  } else if (!jwt.empty()) {
    GameSession s;
    s.jwt = jwt;
    session = std::move(s);
  }
  if (!session) return Fail(r, session.error());
  auto who = deps.auth->Authenticate(client + " " + session->jwt);
  if (!who) return Fail(r, who.error());
  if (who->channel_id.empty()) {
    return Fail(r, 400, "Bad request", "the token names no channel");
  }
  // A new binding replaces the old one, subscriptions included.
  for (const auto& topic : topics_) out_.Unsubscribe(topic);
  topics_.clear();
  who_ = std::move(*who);
  game_id_ = game;
  authenticated_ = true;
  std::string name = session->twitch_name.empty() ? who_.channel_id : session->twitch_name;
  Reply(r, "{\"jwt\":" + Quote(session->jwt) + ",\"refresh\":" + Quote(session->refresh) +
               ",\"twitch_name\":" + Quote(name) + ",\"twitch_id\":" + Quote(who_.channel_id) +
               "}");
}

void GameLinkConnection::State(const Request& r) {
  auto* docs = service_.deps().documents;
  std::string a = r.action == "update" ? "patch" : r.action;
  std::string id = StringField(r.data, a == "subscribe" || a == "unsubscribe" ? "topic_id" : "state_id");
  if (r.target == "channel" || r.target == "extension") id = r.target;  // legacy forms (7.6)
  if (id.empty()) id = "channel";
  if (id != "channel" && id != "extension") {
    return Fail(r, 400, "Bad request", "state_id must be \"channel\" or \"extension\"");
  }
  DocKind kind = id == "channel" ? DocKind::kChannelState : DocKind::kExtensionState;
  if (a == "subscribe" || a == "unsubscribe") {
    if (!Track(TopicState(client_id_, id == "channel" ? who_.channel_id : ""), a == "subscribe")) {
      return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
    }
    return Ok(r);
  }
  if (a == "set" || a == "patch") {
    const json::value* state = Field(r.data, "state");
    if (state == nullptr) return Fail(r, 400, "Bad request", "missing state");
    auto written = a == "set" ? docs->Replace(who_, kind, *state) : docs->Patch(who_, kind, *state);
    if (!written) return Fail(r, written.error());
  } else if (a != "get") {
    return Fail(r, 400, "Bad request", "unknown state action " + a);
  }
  auto text = docs->Read(who_, kind);
  if (!text) return Fail(r, text.error());
  Reply(r, "{\"ok\":true,\"state\":" + *text + "}");
}

void GameLinkConnection::Config(const Request& r) {
  auto* docs = service_.deps().documents;
  const std::string& a = r.action;
  std::string id = StringField(r.data, "config_id");
  if (a == "get") {
    if (id.empty()) id = "channel";
    Result<std::string> text = MakeError(Errc::kInvalidArgument,
                                         "config_id must be channel, extension or combined");
    if (id == "channel") text = docs->Read(who_, DocKind::kChannelConfig);
    if (id == "extension") text = docs->Read(who_, DocKind::kExtensionConfig);
    if (id == "combined") text = docs->ReadAllConfig(who_);
    if (!text) return Fail(r, text.error());
    return Reply(r, "{\"config\":" + *text + ",\"config_id\":" + Quote(id) + "}");
  }
  if (a == "subscribe" || a == "unsubscribe") {
    if (id.empty()) id = "channel";
    if (id != "channel" && id != "extension") {
      return Fail(r, 400, "Bad request", "subscribe to config_id channel or extension");
    }
    if (!Track(TopicConfig(client_id_, id == "channel" ? who_.channel_id : ""), a == "subscribe")) {
      return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
    }
    return Ok(r);
  }
  if (a == "set" || a == "patch") {
    if (!id.empty() && id != "channel") {
      return Fail(r, 400, "Bad request", "games write the channel config only");
    }
    const json::value* config = Field(r.data, "config");
    if (config == nullptr) return Fail(r, 400, "Bad request", "missing config");
    auto written = a == "set" ? docs->Replace(who_, DocKind::kChannelConfig, *config)
                              : docs->Patch(who_, DocKind::kChannelConfig, *config);
    if (!written) return Fail(r, written.error());
    return Ok(r);
  }
  Fail(r, 400, "Bad request", "unknown config action " + a);
}

void GameLinkConnection::Broadcast(const Request& r) {
  auto* messaging = service_.deps().messaging;
  std::string topic = StringField(r.data, "topic");
  if (topic.empty()) return Fail(r, 400, "Bad request", "missing topic");
  std::string data;
  std::vector<std::string> targets{"broadcast"};
  if (const json::value* d = Field(r.data, "data")) {
    if (!d->is_object()) return Fail(r, 400, "Bad request", "data must be an object");
    data = json::serialize(*d);
  } else if (const json::value* m = Field(r.data, "message"); m && m->is_string()) {
    // Legacy form (7.6): a string message, parsed when it holds an object, whispered to ids.
    boost::system::error_code ec;
    json::value inner = json::parse(m->get_string(), ec);
    data = !ec && inner.is_object() ? json::serialize(inner)
                                    : "{\"message\":" + Quote(m->get_string()) + "}";
    if (const json::value* ids = Field(r.data, "ids"); ids && ids->is_array() &&
                                                      !ids->get_array().empty()) {
      targets.clear();
      for (const auto& id : ids->get_array()) {
        if (id.is_string()) targets.push_back("whisper-" + std::string(id.get_string()));
      }
    }
  } else {
    return Fail(r, 400, "Bad request", "missing data");
  }
  if (data.size() >= service_.limits().max_broadcast_bytes) {
    return Fail(r, 400, "Bad request", "broadcast data must serialize to under 8 KiB");
  }
  for (const auto& target : targets) {
    auto sent = messaging->Send(broadcast::ViewerEvent{client_id_, who_.channel_id, target, topic,
                                                       false, data, false});
    if (!sent) return Fail(r, sent.error());
  }
  Ok(r);
}

void GameLinkConnection::Poll(const Request& r) {
  auto* polls = service_.deps().polls;
  const std::string& a = r.action;
  if (a == "subscribe" || a == "unsubscribe") {
    std::string id = StringField(r.data, "topic_id");
    if (id.empty()) id = StringField(r.data, "poll_id");
    if (id.empty()) return Fail(r, 400, "Bad request", "missing topic_id");
    bool ok = true;
    if (id == "*") {
      ok = Track(TopicPoll(client_id_, who_.channel_id, "*"), a == "subscribe") &&
           Track(TopicPoll(client_id_, "", "*"), a == "subscribe");
    } else {
      auto norm = poll::NormalizePollId(id, polls->limits());
      if (!norm) return Fail(r, norm.error());
      PollRef ref{client_id_, poll::IsGlobalPollId(*norm) ? "" : who_.channel_id, *norm};
      ok = Track(TopicPoll(ref.client_id, ref.channel_id, ref.poll_id), a == "subscribe");
      if (ok && a == "subscribe") {
        auto snap = polls->ReadPoll(ref);
        if (snap) service_.TrackPoll(ref, snap->config.value_or(poll::PollConfig{}));
      }
    }
    if (!ok) return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
    return Ok(r);
  }
  auto norm = poll::NormalizePollId(StringField(r.data, "poll_id"), polls->limits());
  if (!norm) return Fail(r, norm.error());
  PollRef ref{client_id_, poll::IsGlobalPollId(*norm) ? "" : who_.channel_id, *norm};
  const int64_t now_s = service_.NowMs() / 1000;
  if (a == "create") {
    json::object cfg;
    if (const json::value* c = Field(r.data, "config"); c && c->is_object()) cfg = c->get_object();
    if (const json::value* p = Field(r.data, "prompt")) cfg["prompt"] = *p;
    if (const json::value* o = Field(r.data, "options")) cfg["options"] = *o;
    if (const json::value* u = Field(r.data, "user_data"); u && !u->is_null()) cfg["userData"] = *u;
    auto config = poll::ParsePollConfig(cfg, poll::PollConfig{}, ref.poll_id, now_s, polls->limits());
    if (!config) return Fail(r, config.error());
    auto created = polls->CreatePoll(ref, *config);
    if (!created) return Fail(r, created.error());
    service_.TrackPoll(ref, *config);
    return Ok(r);
  }
  if (a == "get") {
    auto result = service_.PollResultJson(ref);
    if (!result) return Fail(r, result.error());
    return Reply(r, std::move(*result));
  }
  if (a == "delete") {
    auto deleted = polls->DeletePoll(ref);
    service_.ForgetPoll(ref);
    if (!deleted) return Fail(r, deleted.error());
    return Ok(r);
  }
  if (a == "reconfigure") {
    const json::value* c = Field(r.data, "config");
    if (c == nullptr || !c->is_object()) return Fail(r, 400, "Bad request", "missing config");
    auto snap = polls->ReadPoll(ref);
    if (!snap) return Fail(r, snap.error());
    auto config = poll::ParsePollConfig(*c, snap->config.value_or(poll::PollConfig{}), ref.poll_id,
                                        now_s, polls->limits());
    if (!config) return Fail(r, config.error());
    auto configured = polls->ConfigurePoll(ref, *config);
    if (!configured) return Fail(r, configured.error());
    service_.TrackPoll(ref, *config);
    return Ok(r);
  }
  Fail(r, 400, "Bad request", "unknown poll action " + a);
}

void GameLinkConnection::Purchases(const Request& r) {
  const auto& deps = service_.deps();
  const std::string& a = r.action;
  if (r.target != "transaction" && (a == "subscribe" || a == "unsubscribe")) {
    std::string sku = StringField(r.data, "sku");
    if (sku.empty()) sku = "*";
    if (!Track(TopicPurchase(client_id_, who_.channel_id, sku), a == "subscribe")) {
      return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
    }
    return Ok(r);
  }
  if (r.target != "transaction") return Fail(r, 400, "Bad request", "unknown purchase action");
  if (a == "get") {
    if (!deps.unvalidated_transactions) return Fail(r, 501, "Not implemented", "purchases are not available");
    std::string sku = StringField(r.data, "sku");
    auto list = deps.unvalidated_transactions(client_id_, who_.channel_id, sku.empty() ? "*" : sku);
    if (!list) return Fail(r, list.error());
    std::string out = "{\"transactions\":[";
    for (size_t i = 0; i < list->size(); ++i) {
      if (i) out += ',';
      out += (*list)[i].json;
    }
    return Reply(r, out + "]}");
  }
  if (a == "validate") {
    if (!deps.validate_transaction) return Fail(r, 501, "Not implemented", "purchases are not available");
    std::string id = StringField(r.data, "transaction_id");
    if (id.empty()) return Fail(r, 400, "Bad request", "missing transaction_id");
    auto done = deps.validate_transaction(client_id_, who_.channel_id, id, StringField(r.data, "details"));
    if (!done) return Fail(r, done.error());
    return Ok(r);
  }
  if (a == "refund") {
    if (!deps.refund_transaction) return Fail(r, 501, "Not implemented", "purchases are not available");
    std::string id = StringField(r.data, "transaction_id");
    std::string sku = StringField(r.data, "sku");
    std::string user = StringField(r.data, "user_id");
    if (user.empty() || (id.empty() && sku.empty())) {
      return Fail(r, 400, "Bad request", "refund needs user_id and transaction_id or sku");
    }
    auto done = deps.refund_transaction(client_id_, who_.channel_id, id, sku, user);
    if (!done) return Fail(r, done.error());
    return Ok(r);
  }
  Fail(r, 400, "Bad request", "unknown transaction action " + a);
}

namespace {

bool ValidMatchId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (unsigned char c : id) {
    if (c < 0x21 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

void GameLinkConnection::Match(const Request& r) {
  const std::string& a = r.action;
  std::string id = StringField(r.data, a == "broadcast" ? "match_id" : "id");
  if (!ValidMatchId(id)) return Fail(r, 400, "Bad request", "missing or invalid match id");
  Result<void> done;
  if (a == "create") {
    done = service_.CreateMatch(client_id_, id);
  } else if (a == "keepalive") {
    done = service_.TouchMatch(client_id_, id);
  } else if (a == "add_channels" || a == "remove_channels") {
    const json::value* ids = Field(r.data, "channel_ids");
    if (ids == nullptr || !ids->is_array()) return Fail(r, 400, "Bad request", "channel_ids must be a list");
    std::vector<std::string> channels;
    for (const auto& c : ids->get_array()) {
      if (!c.is_string() || !ValidMatchId(c.get_string())) {
        return Fail(r, 400, "Bad request", "channel_ids must be channel id strings");
      }
      channels.emplace_back(c.get_string());
    }
    done = service_.AddMatchChannels(client_id_, id, channels, a == "add_channels");
  } else if (a == "broadcast") {
    std::string topic = StringField(r.data, "topic");
    const json::value* d = Field(r.data, "data");
    if (topic.empty() || d == nullptr || !d->is_object()) {
      return Fail(r, 400, "Bad request", "broadcast needs a topic and an object data");
    }
    std::string data = json::serialize(*d);
    if (data.size() >= service_.limits().max_broadcast_bytes) {
      return Fail(r, 400, "Bad request", "broadcast data must serialize to under 8 KiB");
    }
    auto channels = service_.MatchChannels(client_id_, id);
    if (!channels) return Fail(r, channels.error());
    for (const auto& channel : *channels) {
      auto sent = service_.deps().messaging->Send(
          broadcast::ViewerEvent{client_id_, channel, "broadcast", topic, false, data, false});
      if (!sent) return Fail(r, sent.error());
    }
  } else {
    return Fail(r, 400, "Bad request", "unknown match action " + a);
  }
  if (!done) return Fail(r, done.error());
  Ok(r);
}

void GameLinkConnection::MatchPoll(const Request& r) {
  const std::string& a = r.action;
  auto* polls = service_.deps().polls;
  if (a == "subscribe" || a == "unsubscribe") {
    std::string id = StringField(r.data, "topic_id");
    if (!ValidMatchId(id)) return Fail(r, 400, "Bad request", "missing or invalid topic_id");
    if (!Track(TopicMatchPoll(client_id_, id), a == "subscribe")) {
      return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
    }
    return Ok(r);
  }
  std::string match = StringField(r.data, "id");
  if (!ValidMatchId(match)) return Fail(r, 400, "Bad request", "missing or invalid match id");
  if (a == "create") {
    const json::value* p = Field(r.data, "poll");
    if (p == nullptr || !p->is_object()) return Fail(r, 400, "Bad request", "missing poll");
    auto id = poll::NormalizePollId(StringField(*p, "poll_id"), polls->limits());
    if (!id) return Fail(r, id.error());
    json::object cfg;
    if (const json::value* c = Field(*p, "config"); c && c->is_object()) cfg = c->get_object();
    if (const json::value* v = Field(*p, "prompt")) cfg["prompt"] = *v;
    if (const json::value* v = Field(*p, "options")) cfg["options"] = *v;
    if (const json::value* v = Field(*p, "user_data"); v && !v->is_null()) cfg["userData"] = *v;
    auto config = poll::ParsePollConfig(cfg, poll::PollConfig{}, *id, service_.NowMs() / 1000,
                                        polls->limits());
    if (!config) return Fail(r, config.error());
    auto done = service_.CreateMatchPoll(client_id_, match, *id, *config);
    if (!done) return Fail(r, done.error());
    return Ok(r);
  }
  auto id = poll::NormalizePollId(StringField(r.data, "poll_id"), polls->limits());
  if (!id) return Fail(r, id.error());
  Result<void> done;
  if (a == "delete") {
    done = service_.DeleteMatchPoll(client_id_, match, *id);
  } else if (a == "reconfigure") {
    const json::value* c = Field(r.data, "config");
    if (c == nullptr || !c->is_object()) return Fail(r, 400, "Bad request", "missing config");
    done = service_.ReconfigureMatchPoll(client_id_, match, *id, *c);
  } else if (a == "get") {
    auto result = service_.MatchPollResultJson(client_id_, match, *id);
    if (!result) return Fail(r, result.error());
    return Reply(r, std::move(*result));
  } else {
    return Fail(r, 400, "Bad request", "unknown match_poll action " + a);
  }
  if (!done) return Fail(r, done.error());
  Ok(r);
}

// The niche actions of 7.4 (section 12 item 21): acknowledged with their inputs checked;
// nothing behind them reaches viewers yet (docs/api/gamelink.md says what each does).
void GameLinkConnection::Niche(const Request& r) {
  const std::string& a = r.action;
  const std::string& t = r.target;
  const auto& limits = service_.limits();
  if (t == "drops") {
    if (a == "get") return Reply(r, R"({"drops":[]})");
    if (a == "validate") return Fail(r, 404, "Not found", "no such drop");
  } else if (t == "matchmaking") {
    if (a == "subscribe" || a == "unsubscribe") {
      if (!Track(TopicMatchmaking(client_id_, who_.channel_id), a == "subscribe")) {
        return Fail(r, 429, "Too many subscriptions", "unsubscribe something first");
      }
      return Ok(r);
    }
    if (a == "clear") return Ok(r);
    if (a == "remove") {
      if (StringField(r.data, "id").empty()) return Fail(r, 400, "Bad request", "missing id");
      return Ok(r);
    }
  } else if (t == "gameMetadata" && a == "set") {
    std::string name = StringField(r.data, "name");
    std::string logo = StringField(r.data, "logo");
    if (name.size() > limits.max_metadata_name) {
      return Fail(r, 400, "Bad request", "name is over 256 bytes");
    }
    if (logo.size() > limits.max_metadata_logo) {
      return Fail(r, 400, "Bad request", "logo is over 1 MiB");
    }
    return Ok(r);
  } else if (t == "gatewayActions" && a == "set") {
    const json::value* actions = Field(r.data, "actions");
    if (actions == nullptr || !actions->is_array()) {
      return Fail(r, 400, "Bad request", "actions must be a list");
    }
    for (const auto& action : actions->get_array()) {
      if (StringField(action, "id").empty()) {
        return Fail(r, 400, "Bad request", "every action needs an id");
      }
    }
    return Ok(r);
  } else if (t == "gatewayActionState" && a == "set") {
    if (StringField(r.data, "id").empty()) return Fail(r, 400, "Bad request", "missing id");
    return Ok(r);
  }
  Fail(r, 400, "Bad request", "unknown action " + a + (t.empty() ? "" : " on " + t));
}

// ---------------------------------------------------------------------------------------------
// Service

GameLinkService::GameLinkService(GameLinkDeps deps, GameLinkLimits limits, events::EventBus* bus,
                                 GamePublisher* publisher)
    : deps_(std::move(deps)), limits_(limits), bus_(bus), publisher_(publisher) {
  if (bus_ != nullptr) {
    subscription_ = bus_->Subscribe([this](const events::Event& e) { OnBusEvent(e); });
  }
}

GameLinkService::~GameLinkService() {
  if (bus_ != nullptr) bus_->Unsubscribe(subscription_);
}

GameLinkService::Counts GameLinkService::counts() const {
  std::lock_guard lock(mu_);
  Counts c = counts_;
  c.tracked_polls = polls_.size();
  return c;
}

void GameLinkService::OnBusEvent(const events::Event& e) {
  if (!e.games || publisher_ == nullptr || !publisher_->Active()) return;
  const int64_t now = NowMs();
  auto push = [&](const std::string& topic, std::string_view target, const std::string& data) {
    publisher_->Publish(topic, Envelope(kAnyRequest, "update", target, now, data));
    std::lock_guard lock(mu_);
    ++counts_.pushes;
  };
  if (e.name == "channel_state_update") {
    push(TopicState(e.client_id, e.channel_id), "channel",
         "{\"state\":" + e.payload_json + ",\"topic_id\":\"channel\"}");
  } else if (e.name == "extension_state_update") {
    push(TopicState(e.client_id, ""), "extension",
         "{\"state\":" + e.payload_json + ",\"topic_id\":\"extension\"}");
  } else if (e.name == "channel_config_update") {
    push(TopicConfig(e.client_id, e.channel_id), "config",
         "{\"config\":" + e.payload_json + ",\"config_id\":\"channel\"}");
  } else if (e.name == "extension_config_update") {
    push(TopicConfig(e.client_id, ""), "config",
         "{\"config\":" + e.payload_json + ",\"config_id\":\"extension\"}");
  } else if (e.name == "datastream") {
    push(TopicDatastream(e.client_id, e.channel_id), "datastream",
         "{\"events\":[" + e.payload_json + "]}");
  } else if (e.name == "transaction") {
    boost::system::error_code ec;
    json::value tx = json::parse(e.payload_json, ec);
    std::string sku = ec ? std::string() : StringField(tx, "sku");
    if (!sku.empty()) push(TopicPurchase(e.client_id, e.channel_id, sku), "twitchPurchaseBits", e.payload_json);
    push(TopicPurchase(e.client_id, e.channel_id, "*"), "twitchPurchaseBits", e.payload_json);
  } else if (e.name.rfind("vote_update:", 0) == 0) {
    // Called under the poll's lock: only mark it; Tick reads and pushes.
    PollRef ref{e.client_id, e.channel_id, e.name.substr(12)};
    std::lock_guard lock(mu_);
    const std::string prefix = e.client_id + '\x1f';
    for (auto it = matches_.lower_bound(prefix);
         it != matches_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      auto p = it->second.polls.find(ref.poll_id);
      if (p == it->second.polls.end()) continue;
      const auto& ch = it->second.channels;
      if (std::find(ch.begin(), ch.end(), ref.channel_id) != ch.end()) p->second.dirty = true;
    }
    auto [it, inserted] = polls_.try_emplace(PollKey(ref));
    Tracked& t = it->second;
    if (inserted) {
      if (polls_.size() > limits_.max_tracked_polls) {
        polls_.erase(it);
        return;
      }
      t.ref = ref;
      t.last_status = poll::PollStatus::kActive;
      t.config.starts_at = -1;  // unknown: Tick reads it
    }
    t.dirty = true;
    t.last_activity_ms = now;
  }
}

void GameLinkService::TrackPoll(const PollRef& ref, const poll::PollConfig& config) {
  const int64_t now = NowMs();
  std::lock_guard lock(mu_);
  auto [it, inserted] = polls_.try_emplace(PollKey(ref));
  Tracked& t = it->second;
  if (inserted) {
    t.ref = ref;
    t.last_status = config.StatusAt(now / 1000);  // what the games know now: no push for it
    t.last_push_ms = now;
  }
  t.config = config;
  t.dirty = false;
  t.last_activity_ms = now;
}

void GameLinkService::ForgetPoll(const PollRef& ref) {
  std::lock_guard lock(mu_);
  polls_.erase(PollKey(ref));
}

void GameLinkService::Tick() {
  const int64_t now = NowMs();
  const int64_t now_s = now / 1000;
  std::vector<PollRef> unknown;
  std::vector<PollRef> due;
  {
    std::lock_guard lock(mu_);
    for (auto it = polls_.begin(); it != polls_.end();) {
      Tracked& t = it->second;
      if (t.config.starts_at == -1) {
        unknown.push_back(t.ref);
        ++it;
        continue;
      }
      poll::PollStatus status = t.config.StatusAt(now_s);
      bool push = false;
      if (status != t.last_status) {
        // pending -> active, or the end: one push each.
        push = status != poll::PollStatus::kPending;
        t.last_status = status;
      } else if (status == poll::PollStatus::kActive && t.dirty &&
                 now - t.last_push_ms >= limits_.poll_push_interval_ms) {
        push = true;
      }
      if (push) {
        t.dirty = false;
        t.last_push_ms = now;
        due.push_back(t.ref);
      }
      bool idle = now - t.last_activity_ms >= limits_.poll_idle_ms;
      bool waiting = status == poll::PollStatus::kPending ||
                     (status == poll::PollStatus::kActive && t.config.ends_at != 0);
      if (idle && !waiting && !t.dirty) {
        it = polls_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& ref : unknown) {
    auto snap = deps_.polls->ReadPoll(ref);
    std::lock_guard lock(mu_);
    auto it = polls_.find(PollKey(ref));
    if (it == polls_.end() || it->second.config.starts_at != -1) continue;
    it->second.config = snap && snap->config ? *snap->config : poll::PollConfig{};
    it->second.last_status = it->second.config.StatusAt(now_s);
    // The vote that made us notice it is news: push it at the usual pace.
    if (it->second.last_status == poll::PollStatus::kActive) {
      it->second.dirty = false;
      it->second.last_push_ms = now;
      due.push_back(ref);
    }
  }
  for (const auto& ref : due) PushPoll(ref);

  // Match polls, at the same cadence; idle matches expire.
  std::vector<std::array<std::string, 3>> match_due;
  {
    std::lock_guard lock(mu_);
    for (auto it = matches_.begin(); it != matches_.end();) {
      if (now - it->second.touched_ms >= limits_.match_idle_ms) {
        it = matches_.erase(it);
        continue;
      }
      size_t sep = it->first.find('\x1f');
      for (auto& [poll_id, p] : it->second.polls) {
        poll::PollStatus status = p.config.StatusAt(now_s);
        bool push = false;
        if (status != p.last_status) {
          push = status != poll::PollStatus::kPending;
          p.last_status = status;
        } else if (status == poll::PollStatus::kActive && p.dirty &&
                   now - p.last_push_ms >= limits_.poll_push_interval_ms) {
          push = true;
        }
        if (push) {
          p.dirty = false;
          p.last_push_ms = now;
          match_due.push_back({it->first.substr(0, sep), it->first.substr(sep + 1), poll_id});
        }
      }
      ++it;
    }
  }
  for (const auto& [client, match, poll_id] : match_due) PushMatchPoll(client, match, poll_id);
}

Result<std::string> GameLinkService::PollResultJson(const PollRef& ref) {
  auto snap = deps_.polls->ReadPoll(ref);
  if (!snap) return std::move(snap).error();
  const poll::PollConfig config = snap->config.value_or(poll::PollConfig{});
  json::object p;
  p["poll_id"] = ref.poll_id;
  p["prompt"] = config.prompt;
  json::array options;
  for (const auto& o : config.options) options.emplace_back(o);
  p["options"] = std::move(options);
  p["status"] = poll::PollStatusName(snap->status);
  boost::system::error_code ec;
  json::value user_data = json::parse(config.user_data_json, ec);
  p["user_data"] = ec || user_data.is_null() ? json::value(json::object()) : user_data;
  json::object out;
  out["poll"] = std::move(p);
  json::array results;
  size_t n = std::max<size_t>(1, std::min<size_t>(config.options.size(), poll::kSpecificSize));
  for (size_t i = 0; i < n; ++i) results.emplace_back(snap->stats.specific[i]);
  out["results"] = std::move(results);
  out["mean"] = snap->stats.Mean();
  out["sum"] = snap->stats.sum;
  out["count"] = snap->stats.count;
  out["stddev"] = snap->stats.StdDev();
  out["topic_id"] = ref.poll_id;
  return json::serialize(out);
}

void GameLinkService::PushPoll(const PollRef& ref) {
  auto result = PollResultJson(ref);
  if (!result) return;
  std::string envelope = Envelope(kAnyRequest, "update", "poll", NowMs(), *result);
  publisher_->Publish(TopicPoll(ref.client_id, ref.channel_id, ref.poll_id), envelope);
  publisher_->Publish(TopicPoll(ref.client_id, ref.channel_id, "*"), std::move(envelope));
  std::lock_guard lock(mu_);
  ++counts_.pushes;
  ++counts_.poll_pushes;
}

// ---------------------------------------------------------------------------------------------
// Matches

GameLinkService::MatchState* GameLinkService::FindMatch(std::string_view client,
                                                        std::string_view match) {
  auto it = matches_.find(std::string(client) + '\x1f' + std::string(match));
  if (it == matches_.end() || NowMs() - it->second.touched_ms >= limits_.match_idle_ms) {
    return nullptr;
  }
  return &it->second;
}

namespace {
Error NoMatch(std::string_view match) {
  return MakeError(Errc::kNotFound, "no such match", "match " + std::string(match) +
                                                          " does not exist or expired");
}
}  // namespace

Result<void> GameLinkService::CreateMatch(std::string_view client, std::string_view match) {
  std::lock_guard lock(mu_);
  std::string key = std::string(client) + '\x1f' + std::string(match);
  if (!matches_.count(key) && matches_.size() >= limits_.max_matches) {
    return MakeError(Errc::kUnavailable, "too many matches");
  }
  MatchState& m = matches_[key];
  m = MatchState{};  // create overwrites
  m.touched_ms = NowMs();
  return {};
}

Result<void> GameLinkService::TouchMatch(std::string_view client, std::string_view match) {
  std::lock_guard lock(mu_);
  MatchState* m = FindMatch(client, match);
  if (m == nullptr) return NoMatch(match);
  m->touched_ms = NowMs();
  return {};
}

Result<std::vector<std::string>> GameLinkService::MatchChannels(std::string_view client,
                                                                std::string_view match) {
  std::lock_guard lock(mu_);
  MatchState* m = FindMatch(client, match);
  if (m == nullptr) return NoMatch(match);
  m->touched_ms = NowMs();
  return m->channels;
}

Result<void> GameLinkService::AddMatchChannels(std::string_view client, std::string_view match,
                                               const std::vector<std::string>& channels,
                                               bool add) {
  std::vector<std::pair<std::string, poll::PollConfig>> to_create;
  std::vector<std::string> added;
  {
    std::lock_guard lock(mu_);
    MatchState* m = FindMatch(client, match);
    if (m == nullptr) return NoMatch(match);
    m->touched_ms = NowMs();
    for (const auto& c : channels) {
      auto it = std::find(m->channels.begin(), m->channels.end(), c);
      if (add && it == m->channels.end()) {
        if (m->channels.size() >= limits_.max_match_channels) {
          return MakeError(Errc::kInvalidArgument, "too many channels in the match");
        }
        m->channels.push_back(c);
        added.push_back(c);
      } else if (!add && it != m->channels.end()) {
        m->channels.erase(it);
      }
    }
    for (const auto& [poll_id, p] : m->polls) to_create.emplace_back(poll_id, p.config);
  }
  // Channels that join a match with polls get those polls too.
  for (const auto& c : added) {
    for (const auto& [poll_id, config] : to_create) {
      auto created = deps_.polls->CreatePoll(PollRef{std::string(client), c, poll_id}, config);
      if (!created) return created;
    }
  }
  return {};
}

Result<void> GameLinkService::CreateMatchPoll(std::string_view client, std::string_view match,
                                              const std::string& poll_id,
                                              const poll::PollConfig& config) {
  std::vector<std::string> channels;
  {
    std::lock_guard lock(mu_);
    MatchState* m = FindMatch(client, match);
    if (m == nullptr) return NoMatch(match);
    m->touched_ms = NowMs();
    channels = m->channels;
  }
  for (const auto& c : channels) {
    auto created = deps_.polls->CreatePoll(PollRef{std::string(client), c, poll_id}, config);
    if (!created) return created;
  }
  std::lock_guard lock(mu_);
  MatchState* m = FindMatch(client, match);
  if (m == nullptr) return NoMatch(match);
  MatchPollState& p = m->polls[poll_id];
  p.config = config;
  p.last_status = config.StatusAt(NowMs() / 1000);  // no push at create
  p.dirty = false;
  p.last_push_ms = NowMs();
  return {};
}

Result<void> GameLinkService::ReconfigureMatchPoll(std::string_view client, std::string_view match,
                                                   const std::string& poll_id,
                                                   const json::value& config_json) {
  std::vector<std::string> channels;
  poll::PollConfig current;
  {
    std::lock_guard lock(mu_);
    MatchState* m = FindMatch(client, match);
    if (m == nullptr) return NoMatch(match);
    auto p = m->polls.find(poll_id);
    if (p == m->polls.end()) return MakeError(Errc::kNotFound, "no such match poll");
    m->touched_ms = NowMs();
    channels = m->channels;
    current = p->second.config;
  }
  auto config = poll::ParsePollConfig(config_json, current, poll_id, NowMs() / 1000,
                                      deps_.polls->limits());
  if (!config) return std::move(config).error();
  for (const auto& c : channels) {
    auto done = deps_.polls->ConfigurePoll(PollRef{std::string(client), c, poll_id}, *config);
    if (!done) return done;
  }
  std::lock_guard lock(mu_);
  if (MatchState* m = FindMatch(client, match)) {
    if (auto p = m->polls.find(poll_id); p != m->polls.end()) p->second.config = *config;
  }
  return {};
}

Result<void> GameLinkService::DeleteMatchPoll(std::string_view client, std::string_view match,
                                              const std::string& poll_id) {
  std::vector<std::string> channels;
  {
    std::lock_guard lock(mu_);
    MatchState* m = FindMatch(client, match);
    if (m == nullptr) return NoMatch(match);
    m->touched_ms = NowMs();
    m->polls.erase(poll_id);
    channels = m->channels;
  }
  for (const auto& c : channels) {
    auto done = deps_.polls->DeletePoll(PollRef{std::string(client), c, poll_id});
    if (!done) return done;
  }
  return {};
}

Result<std::string> GameLinkService::MatchPollResultJson(std::string_view client,
                                                         std::string_view match,
                                                         const std::string& poll_id) {
  std::vector<std::string> channels;
  {
    std::lock_guard lock(mu_);
    MatchState* m = FindMatch(client, match);
    if (m == nullptr) return NoMatch(match);
    if (!m->polls.count(poll_id)) return MakeError(Errc::kNotFound, "no such match poll");
    channels = m->channels;
  }
  auto block = [](const poll::PollStats& st, poll::PollStatus status) {
    json::object o;
    json::array results;
    for (int64_t n : st.specific) results.emplace_back(n);  // 32 entries (12.7)
    o["results"] = std::move(results);
    o["stddev"] = st.StdDev();
    o["mean"] = st.Mean();
    o["sum"] = st.sum;
    o["count"] = st.count;
    o["status"] = poll::PollStatusName(status);
    return o;
  };
  poll::PollStats overall;
  poll::PollStatus overall_status = poll::PollStatus::kPending;
  json::object per_channel;
  for (const auto& c : channels) {
    auto snap = deps_.polls->ReadPoll(PollRef{std::string(client), c, poll_id});
    if (!snap) return std::move(snap).error();
    overall.count += snap->stats.count;
    overall.sum += snap->stats.sum;
    overall.sum_squares += snap->stats.sum_squares;
    for (size_t i = 0; i < overall.specific.size(); ++i) overall.specific[i] += snap->stats.specific[i];
    overall_status = std::max(overall_status, snap->status);
    per_channel[c] = block(snap->stats, snap->status);
  }
  json::object out;
  out["match_id"] = match;
  out["poll_id"] = poll_id;
  out["overall"] = block(overall, channels.empty() ? poll::PollStatus::kActive : overall_status);
  out["results"] = std::move(per_channel);
  return json::serialize(out);
}

void GameLinkService::PushMatchPoll(const std::string& client, const std::string& match,
                                    const std::string& poll) {
  auto result = MatchPollResultJson(client, match, poll);
  if (!result || publisher_ == nullptr) return;
  publisher_->Publish(TopicMatchPoll(client, match),
                      Envelope(kAnyRequest, "update", "match_poll", NowMs(), *result));
  std::lock_guard lock(mu_);
  ++counts_.pushes;
  ++counts_.poll_pushes;
}

Result<void> GameLinkService::Invite(std::string_view client, std::string_view channel,
                                     const json::value& invite) {
  const json::object* o = invite.if_object();
  if (o == nullptr) return MakeError(Errc::kInvalidArgument, "Invalid body", "an object");
  json::object out;
  out["data"] = o->contains("data") && !o->at("data").is_null() ? o->at("data") : json::object();
  auto text = [&](const char* k) -> Result<void> {
    const json::value* v = o->if_contains(k);
    if (v == nullptr) {
      out[k] = "";
    } else if (v->is_string()) {
      out[k] = *v;
    } else {
      return MakeError(Errc::kInvalidArgument, "Invalid body", std::string(k) + " must be a string");
    }
    return {};
  };
  auto integer = [&](const char* k) -> Result<void> {
    const json::value* v = o->if_contains(k);
    if (v == nullptr) {
      out[k] = 0;
    } else if (v->is_int64() || v->is_uint64()) {
      out[k] = *v;
    } else {
      return MakeError(Errc::kInvalidArgument, "Invalid body", std::string(k) + " must be an integer");
    }
    return {};
  };
  if (auto r = text("twitch_username"); !r) return r;
  if (auto r = text("twitch_id"); !r) return r;
  if (auto r = integer("subscription_tier"); !r) return r;
  if (auto r = integer("bits_spent"); !r) return r;
  const json::value* follower = o->if_contains("is_follower");
  if (follower != nullptr && !follower->is_bool()) {
    return MakeError(Errc::kInvalidArgument, "Invalid body", "is_follower must be true or false");
  }
  out["is_follower"] = follower != nullptr && follower->get_bool();
  out["timestamp"] = NowMs() / 1000;
  std::string data = json::serialize(out);
  if (data.size() > limits_.max_matchmaking_bytes) {
    return MakeError(Errc::kInvalidArgument, "invite too large");
  }
  if (publisher_ != nullptr) {
    publisher_->Publish(TopicMatchmaking(client, channel),
                        Envelope(kAnyRequest, "update", "matchmaking", NowMs(), data));
  }
  return {};
}

}  // namespace medkit::core::gamelink
