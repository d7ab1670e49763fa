// Polls and votes (spec 5.8): vote, vote_logs, vote_config, vote_modifier. Each handler
// parses, calls PollService, and renders.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <string>

#include "core/poll/poll_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace {

namespace json = boost::json;
using core::Errc;
using core::MakeError;
using core::Result;

std::string_view PollId(const Call& call) { return call.request.Query("id").value_or(""); }

// An integral JSON number, else nullopt (floats, strings, out-of-range).
std::optional<int64_t> Integer(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    return v.get_uint64() > static_cast<uint64_t>(INT64_MAX)
               ? std::nullopt
               : std::optional<int64_t>(static_cast<int64_t>(v.get_uint64()));
  }
  if (v.is_double() && std::isfinite(v.get_double()) &&
      v.get_double() == std::floor(v.get_double()) && std::fabs(v.get_double()) < 9e15) {
    return static_cast<int64_t>(v.get_double());
  }
  return std::nullopt;
}

Result<std::string> GetVote(const Call& call) {
  auto view = call.services.polls->Get(call.who(), PollId(call));
  if (!view) return std::move(view).error();
  return core::poll::VoteViewJson(*view);
}

// Body {"value": <int>, "count": <int, default 1>} (MEDKit 2.4.18 sends {"value": N}).
Result<std::string> PostVote(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) return MakeError(Errc::kInvalidArgument, "Invalid body");
  const json::object& o = body->get_object();
  int64_t value = 0;
  int64_t count = 1;
  if (auto it = o.find("value"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_number()) return MakeError(Errc::kInvalidArgument, "Invalid body");
    auto v = Integer(it->value());
    if (!v) return MakeError(Errc::kInvalidArgument, "Value out of bounds");
    value = *v;
  }
  if (auto it = o.find("count"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_number()) return MakeError(Errc::kInvalidArgument, "Invalid body");
    auto c = Integer(it->value());
    if (!c) return MakeError(Errc::kInvalidArgument, "Count out of bounds");
    count = *c;
  }
  auto view = call.services.polls->Vote(call.who(), PollId(call), value, count);
  if (!view) return std::move(view).error();
  return core::poll::VoteViewJson(*view);
}

Result<std::string> DeleteVote(const Call& call) {
  auto done = call.services.polls->Delete(call.who(), PollId(call));
  if (!done) return std::move(done).error();
  return std::string("{}");
}

Result<std::string> GetVoteLogs(const Call& call) {
  auto logs = call.services.polls->Logs(call.who(), PollId(call));
  if (!logs) return std::move(logs).error();
  std::string out = "{\"result\":[";
  for (size_t i = 0; i < logs->size(); ++i) {
    if (i) out.push_back(',');
    out += (*logs)[i].json;
  }
  out += "]}";
  return out;
}

Result<std::string> GetVoteConfig(const Call& call) {
  auto config = call.services.polls->GetConfig(call.who(), PollId(call));
  if (!config) return std::move(config).error();
  if (!*config) return MakeError(Errc::kNotFound, "Not Found");
  return core::poll::PollConfigJson(**config, call.services.clock->NowSeconds());
}

// Body {"id": "<poll>", "config": VoteConfiguration}; the id may also come as ?id=.
Result<std::string> PostVoteConfig(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) return MakeError(Errc::kInvalidArgument, "Invalid body");
  const json::object& o = body->get_object();
  std::string id(PollId(call));
  if (auto it = o.find("id"); it != o.end()) {
    if (!it->value().is_string()) {
      return MakeError(Errc::kInvalidArgument, "Invalid body", "id must be a string");
    }
    id = std::string(it->value().get_string());
  }
  auto it = o.find("config");
  if (it == o.end()) return MakeError(Errc::kInvalidArgument, "Invalid body", "config required");
  auto done = call.services.polls->Configure(call.who(), id, it->value());
  if (!done) return std::move(done).error();
  return std::string("{}");
}

// Body {"user": "<viewer key>", "add": <int>}.
Result<std::string> PostVoteModifier(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) return MakeError(Errc::kInvalidArgument, "Invalid body");
  const json::object& o = body->get_object();
  auto user = o.find("user");
  auto add = o.find("add");
  if (user == o.end() || !user->value().is_string()) {
    return MakeError(Errc::kInvalidArgument, "Invalid body", "user must be a string");
  }
  std::optional<int64_t> delta = add == o.end() ? std::nullopt : Integer(add->value());
  if (!delta) return MakeError(Errc::kInvalidArgument, "Invalid body", "add must be an integer");
  auto done = call.services.polls->AddModifier(call.who(), PollId(call),
                                               std::string(user->value().get_string()), *delta);
  if (!done) return std::move(done).error();
  return std::string("{}");
}

}  // namespace

void RegisterPollRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kGet, p + "vote", Auth::kRequired, GetVote);
  router.Add(Method::kPost, p + "vote", Auth::kRequired, PostVote);
  router.Add(Method::kDelete, p + "vote", Auth::kRequired, DeleteVote);
  router.Add(Method::kGet, p + "vote_logs", Auth::kRequired, GetVoteLogs);
  router.Add(Method::kGet, p + "vote_config", Auth::kRequired, GetVoteConfig);
  router.Add(Method::kPost, p + "vote_config", Auth::kRequired, PostVoteConfig);
  router.Add(Method::kPost, p + "vote_modifier", Auth::kRequired, PostVoteModifier);
}

}  // namespace medkit::http
