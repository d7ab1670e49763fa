// Trivia (spec 5.9): curated_poll_edit, curated_poll_edit_option, curated_poll_state,
// curated_poll, curated_poll_leaderboard, team_membership. Each handler parses, calls
// TriviaService, and renders. DELETEs carry a JSON body (as MEDKit sends them); POST
// team_membership has no body at all.
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "core/kv/json_util.h"
#include "core/trivia/trivia_service.h"
#include "http/router.h"
#include "http/routes/routes.h"

namespace medkit::http {

namespace json = boost::json;
using core::kv::IdField;

namespace {

// The body as a JSON object, or 400.
core::Result<json::object> ObjectBody(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  if (!body->is_object()) {
    return core::MakeError(core::Errc::kInvalidArgument, "Malformed input body",
                           "the body must be a JSON object");
  }
  return std::move(body->get_object());
}

std::string IdObject(std::string_view id) {
  return "{\"id\":" + json::serialize(json::string(id)) + "}";
}

core::trivia::TriviaService& Trivia(const Call& call) { return *call.services.trivia; }

core::Result<std::string> AddQuestion(const Call& call) {
  auto body = call.JsonBody();
  if (!body) return std::move(body).error();
  auto done = Trivia(call).AddQuestion(call.who(), *body);
  if (!done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> RemoveQuestion(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  auto done = Trivia(call).RemoveQuestion(call.who(), IdField(*body, "id"));
  if (!done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> AddOption(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  const json::value* option = body->if_contains("option");
  return Trivia(call).AddOption(call.who(), IdField(*body, "id"), option ? *option : json::value());
}

core::Result<std::string> RemoveOption(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  return Trivia(call).RemoveOption(call.who(), IdField(*body, "question"),
                                   IdField(*body, "option"));
}

core::Result<std::string> SetState(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  std::string_view id = call.request.Query("id").value_or("");
  auto state =
      Trivia(call).SetState(call.who(), id, IdField(*body, "transition"), IdField(*body, "winner"));
  if (!state) return std::move(state).error();
  return "{\"state\":" + json::serialize(json::string(*state)) + "}";
}

core::Result<std::string> Vote(const Call& call) {
  auto body = ObjectBody(call);
  if (!body) return std::move(body).error();
  auto done = Trivia(call).Vote(call.who(), IdField(*body, "question_id"), IdField(*body, "vote"));
  if (!done) return std::move(done).error();
  return std::string("{}");
}

core::Result<std::string> GetQuestions(const Call& call) {
  if (auto id = call.request.Query("id")) return Trivia(call).ReadQuestion(call.who(), *id);
  return Trivia(call).ReadQuestions(call.who());
}

core::Result<std::string> GetLeaderboard(const Call& call) {
  return Trivia(call).ReadLeaderboard(call.who());
}

core::Result<std::string> JoinTeam(const Call& call) {
  auto team = Trivia(call).JoinTeam(call.who());
  if (!team) return std::move(team).error();
  return IdObject(*team);
}

core::Result<std::string> GetTeam(const Call& call) {
  auto team = Trivia(call).JoinedTeam(call.who());
  if (!team) return std::move(team).error();
  return IdObject(*team);
}

}  // namespace

void RegisterTriviaRoutes(Router& router) {
  std::string p = kApiPrefix;
  router.Add(Method::kPost, p + "curated_poll_edit", Auth::kRequired, AddQuestion);
  router.Add(Method::kDelete, p + "curated_poll_edit", Auth::kRequired, RemoveQuestion);
  router.Add(Method::kPost, p + "curated_poll_edit_option", Auth::kRequired, AddOption);
  router.Add(Method::kDelete, p + "curated_poll_edit_option", Auth::kRequired, RemoveOption);
  router.Add(Method::kPost, p + "curated_poll_state", Auth::kRequired, SetState);
  router.Add(Method::kPost, p + "curated_poll", Auth::kRequired, Vote);
  router.Add(Method::kGet, p + "curated_poll", Auth::kRequired, GetQuestions);
  router.Add(Method::kGet, p + "curated_poll_leaderboard", Auth::kRequired, GetLeaderboard);
  router.Add(Method::kPost, p + "team_membership", Auth::kRequired, JoinTeam);
  router.Add(Method::kGet, p + "team_membership", Auth::kRequired, GetTeam);
}

}  // namespace medkit::http
