// Game codes (spec 5.10): codes, codes/mark_from_poll, codes/mark_from_list,
// codes/eligible (alias codes/eligibility), codes/redeemed, codes/redeem. Each handler parses,
// calls CodeService, and renders.
#include <boost/json.hpp>
#include <optional>

#include "core/gamecode/code_service.h"
#include "core/kv/json_util.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace json = boost::json;
using core::gamecode::CodeService;

namespace {

core::Error BadBody(std::string info) {
  return core::MakeError(core::Errc::kInvalidArgument, "Invalid body", std::move(info));
}

std::string Quote(std::string_view s) { return json::serialize(json::string(s)); }

std::string StringList(const std::vector<std::string>& list) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i) out.push_back(',');
    out += Quote(list[i]);
  }
  return out + "]";
}

template <class T>
std::string NumberList(const std::vector<T>& list) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i) out.push_back(',');
    out += std::to_string(list[i]);
  }
  return out + "]";
}

core::Result<std::string> PutCodes(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  CodeService& codes = *call.services.codes;
  auto sets = codes.ParseUpload(*body);
  if (!sets) return std::move(sets).error();
  if (auto done = codes.Put(call.who(), *sets); !done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> GetCodes(const Call& call) {
  auto names = call.services.codes->Names(call.who());
  if (!names) return std::move(names).error();
  return "{\"names\":" + StringList(*names) + "}";
}

core::Result<std::string> DeleteCodes(const Call& call) {
  auto distributed = call.services.codes->DeleteAll(call.who());
  if (!distributed) return std::move(distributed).error();
  return "{\"distributed\":" + NumberList(*distributed) + "}";
}

core::Result<std::string> MarkFromList(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  CodeService& codes = *call.services.codes;
  auto mark = codes.ParseMark(*body);
  if (!mark) return std::move(mark).error();
  const json::object& o = body->get_object();
  auto it = o.find("users");
  if (it == o.end() || !it->value().is_array()) return BadBody("\"users\" must be a list of ids");
  std::vector<std::string> users;
  for (const auto& u : it->value().get_array()) {
    if (u.is_string()) {
      users.emplace_back(u.get_string());
    } else if (u.is_int64() || u.is_uint64()) {
      users.push_back(json::serialize(u));
    } else {
      return BadBody("each user id must be a string");
    }
  }
  if (auto done = codes.MarkFromList(call.who(), *mark, users); !done) {
    return std::move(done).error();
  }
  return std::string("{}");
}

core::Result<std::string> MarkFromPoll(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  CodeService& codes = *call.services.codes;
  core::gamecode::PollMarkRequest request;
  auto mark = codes.ParseMark(*body);
  if (!mark) return std::move(mark).error();
  request.mark = std::move(*mark);
  const json::object& o = body->get_object();
  for (const char* name : {"poll_id", "id"}) {
    if (auto it = o.find(name); it != o.end() && it->value().is_string()) {
      request.poll_id = std::string(it->value().get_string());
      break;
    }
  }
  if (request.poll_id.empty()) {
    if (auto id = call.request.Query("id")) request.poll_id = std::string(*id);
  }
  auto correct = core::kv::IntegerField(o, "correct");
  if (!correct) return BadBody("\"correct\" must be an integer (the winning vote value)");
  request.correct = *correct;
  if (o.contains("cutoff_timestamp")) {
    auto cutoff = core::kv::IntegerField(o, "cutoff_timestamp");
    if (!cutoff || *cutoff < 0) return BadBody("\"cutoff_timestamp\" must be unix seconds");
    request.cutoff_timestamp_s = *cutoff;
  }
  if (auto done = codes.MarkFromPoll(call.who(), request); !done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> GetEligible(const Call& call) {
  auto eligible = call.services.codes->Eligible(call.who());
  if (!eligible) return std::move(eligible).error();
  return "{\"eligible\":" + NumberList(*eligible) + "}";
}

core::Result<std::string> GetRedeemed(const Call& call) {
  auto redeemed = call.services.codes->Redeemed(call.who());
  if (!redeemed) return std::move(redeemed).error();
  std::string out = "{\"redeemed\":[";
  for (size_t i = 0; i < redeemed->size(); ++i) {
    if (i) out.push_back(',');
    out += StringList((*redeemed)[i]);
  }
  return out + "]}";
}

core::Result<std::string> Redeem(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) return BadBody("expected {\"all_prizes\": <prize index>}");
  const json::object& o = body->get_object();
  // Current MEDKit sends {"all_prizes": i}; before 2021 it sent {"prize": i}.
  auto prize = core::kv::IntegerField(o, "all_prizes");
  if (!prize) prize = core::kv::IntegerField(o, "prize");
  if (!prize) return BadBody("expected {\"all_prizes\": <prize index>}");
  auto result = call.services.codes->Redeem(call.who(), *prize);
  if (!result) return std::move(result).error();
  return "{\"code\":" + Quote(result->code) + ",\"all_prizes\":" + StringList(result->all_prizes) +
         "}";
}

}  // namespace

void RegisterCodeRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kPut, p + "codes", Auth::kRequired, PutCodes);
  router.Add(Method::kGet, p + "codes", Auth::kRequired, GetCodes);
  router.Add(Method::kDelete, p + "codes", Auth::kRequired, DeleteCodes);
  router.Add(Method::kPost, p + "codes/mark_from_poll", Auth::kRequired, MarkFromPoll);
  router.Add(Method::kPost, p + "codes/mark_from_list", Auth::kRequired, MarkFromList);
  router.Add(Method::kGet, p + "codes/eligible", Auth::kRequired, GetEligible);
  router.Alias(p + "codes/eligibility", p + "codes/eligible");
  router.Add(Method::kGet, p + "codes/redeemed", Auth::kRequired, GetRedeemed);
  router.Add(Method::kPost, p + "codes/redeem", Auth::kRequired, Redeem);
}

}  // namespace medkit::http
