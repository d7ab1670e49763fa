#include "core/trivia/trivia_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "core/kv/json_util.h"

namespace medkit::core::trivia {
namespace json = boost::json;
using auth::Identity;
using auth::Role;

namespace {

constexpr char kSep = '\x1f';
constexpr size_t kScanBatch = 1000;
constexpr size_t kMaxPartyIdBytes = 256;  // channel ids and viewer keys from tokens

constexpr std::string_view kInactive = "state-inactive";
constexpr std::string_view kUnlocked = "state-unlocked";
constexpr std::string_view kLocked = "state-locked";
constexpr std::string_view kResults = "state-results";

Error Refused() {
  return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
}
Error NotFound() { return MakeError(Errc::kNotFound, "Not Found"); }
Error Malformed(std::string info) {
  return MakeError(Errc::kInvalidArgument, "Malformed input body", std::move(info));
}
Error Contended() {
  return MakeError(Errc::kConflict, "concurrent update conflict, retry the request");
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
}

Result<void> CheckId(std::string_view id, const char* what, size_t max_bytes) {
  if (id.empty()) return MakeError(Errc::kInvalidArgument, std::string(what) + " required");
  if (id.size() > max_bytes) {
    return MakeError(Errc::kInvalidArgument, std::string(what) + " is too long",
                     "limit " + std::to_string(max_bytes) + " bytes");
  }
  if (HasControl(id)) {
    return MakeError(Errc::kInvalidArgument, std::string(what) + " contains control characters");
  }
  return {};
}

// The caller's channel and viewer key, checked for use inside keys.
Result<void> CheckParty(const Identity& who) {
  if (who.channel_id.empty()) return MakeError(Errc::kInvalidArgument, "channel id required");
  if (auto ok = CheckId(who.channel_id, "channel id", kMaxPartyIdBytes); !ok) return ok;
  if (who.role != Role::kBroadcaster) {
    if (who.ViewerKey().empty()) return MakeError(Errc::kInvalidArgument, "user id required");
    if (auto ok = CheckId(who.ViewerKey(), "user id", kMaxPartyIdBytes); !ok) return ok;
  }
  return {};
}

bool CanVote(const Identity& who) {
  return who.role == Role::kViewer || who.role == Role::kBroadcaster;
}

std::string_view StringField(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_string()) return {};
  return it->value().get_string();
}

int64_t IntField(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_int64()) return 0;
  return it->value().get_int64();
}

// Copies the descriptive fields of a question or option from in to out, validated:
// name/short_name/description (strings; absent = ""), image (string, optional), order
// (number, optional). Other members of in are ignored.
Result<void> CopyFields(const json::object& in, json::object& out, const TriviaLimits& limits,
                        const char* what) {
  struct Text {
    const char* name;
    size_t max;
    bool optional;
  };
  const Text texts[] = {{"name", limits.max_name_bytes, false},
                        {"short_name", limits.max_short_name_bytes, false},
                        {"description", limits.max_description_bytes, false},
                        {"image", limits.max_image_bytes, true}};
  for (const auto& t : texts) {
    auto it = in.find(t.name);
    if (it == in.end() || it->value().is_null()) {
      if (!t.optional) out[t.name] = "";
      continue;
    }
    if (!it->value().is_string()) {
      return Malformed(std::string(what) + " " + t.name + " must be a string");
    }
    if (it->value().get_string().size() > t.max) {
      return MakeError(Errc::kInvalidArgument, std::string(what) + " " + t.name + " is too long",
                       "limit " + std::to_string(t.max) + " bytes");
    }
    out[t.name] = it->value();
  }
  auto it = in.find("order");
  if (it != in.end() && !it->value().is_null()) {
    if (!it->value().is_number()) return Malformed(std::string(what) + " order must be a number");
    out["order"] = it->value();
  }
  return {};
}

Result<json::object> ParseOption(const json::value& v, const TriviaLimits& limits) {
  if (!v.is_object()) return Malformed("an option is a JSON object");
  const json::object& in = v.get_object();
  std::string id = kv::IdField(in, "id");
  if (auto ok = CheckId(id, "option id", limits.max_id_bytes); !ok) return std::move(ok).error();
  json::object out;
  out["id"] = id;
  if (auto ok = CopyFields(in, out, limits, "option"); !ok) return std::move(ok).error();
  return out;
}

const json::array& Options(const json::object& doc) {
  static const json::array kEmpty;
  auto it = doc.find("options");
  return it != doc.end() && it->value().is_array() ? it->value().get_array() : kEmpty;
}

bool HasOption(const json::object& doc, std::string_view option_id) {
  for (const auto& o : Options(doc)) {
    if (o.is_object() && StringField(o.get_object(), "id") == option_id) return true;
  }
  return false;
}

std::vector<std::string> OptionIds(const json::object& doc) {
  std::vector<std::string> ids;
  for (const auto& o : Options(doc)) {
    if (o.is_object()) ids.emplace_back(StringField(o.get_object(), "id"));
  }
  return ids;
}

Result<json::value> ParseStored(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return MakeError(Errc::kInternal, "stored trivia data is not valid JSON");
  return v;
}

std::optional<int64_t> ParseCount(std::string_view text) {
  int64_t n = 0;
  bool neg = !text.empty() && text.front() == '-';
  if (neg) text.remove_prefix(1);
  if (text.empty()) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return neg ? -n : n;
}

double Ratio(int64_t num, int64_t den) {
  return den > 0 ? static_cast<double>(num) / static_cast<double>(den) : 0.0;
}

void SerializeTo(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::double_: {
      double d = v.get_double();
      if (!std::isfinite(d)) d = 0;
      out += fmt::format("{}", d);
      return;
    }
    case json::kind::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out.push_back(',');
        first = false;
        out += json::serialize(json::string(kv.key()));
        out.push_back(':');
        SerializeTo(kv.value(), out);
      }
      out.push_back('}');
      return;
    }
    case json::kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out.push_back(',');
        first = false;
        SerializeTo(e, out);
      }
      out.push_back(']');
      return;
    }
    default:
      out += json::serialize(v);
  }
}

}  // namespace

std::string SerializeJson(const json::value& v) {
  std::string out;
  SerializeTo(v, out);
  return out;
}

bool IsTriviaEditor(const Identity& who) {
  return who.role == Role::kBackend || who.validated_admin || who.owner_broadcaster;
}

TriviaService::TriviaService(storage::Store& store, auth::Stage stage, TriviaLimits limits)
    : store_(store), stage_(stage), limits_(limits) {}

// ---------------------------------------------------------------------------------------------
// Keys and loading

namespace {

std::string PrefixFor(auth::Stage stage, const Identity& who) {
  std::string p;
  p.reserve(48);
  p.append("tr").push_back(kSep);
  p.append(auth::StageName(stage)).push_back(kSep);
  p.append(who.client_id).push_back(kSep);
  return p;
}

std::string IndexKey(const std::string& prefix) { return prefix + "i"; }
std::string GenCounterKey(const std::string& prefix) { return prefix + "gen"; }
std::string TeamKey(const std::string& prefix, std::string_view viewer) {
  std::string k = prefix + "t";
  k.push_back(kSep);
  k.append(viewer);
  return k;
}
std::string TeamSizePrefix(const std::string& prefix) {
  std::string k = prefix + "ts";
  k.push_back(kSep);
  return k;
}
std::string Join(std::string a, std::string_view tag, std::string_view b) {
  a.append(tag).push_back(kSep);
  a.append(b);
  return a;
}
std::string Join(std::string a, std::string_view tag, std::string_view b, std::string_view c) {
  a = Join(std::move(a), tag, b);
  a.push_back(kSep);
  a.append(c);
  return a;
}

std::string QuestionKey(const std::string& prefix, std::string_view qid) {
  return Join(prefix, "q", qid);
}

// Everything of one generation of a question: "P g␟<qid>␟<gen>␟".
std::string GenPrefix(const std::string& prefix, std::string_view qid, int64_t gen) {
  std::string k = Join(prefix, "g", qid);
  k.push_back(kSep);
  k.append(std::to_string(gen)).push_back(kSep);
  return k;
}

}  // namespace

Result<std::optional<TriviaService::Question>> TriviaService::LoadQuestion(
    const std::string& prefix, std::string_view qid) {
  auto entry = store_.Get(QuestionKey(prefix, qid));
  if (!entry) return std::move(entry).error();
  if (!*entry) return std::optional<Question>();
  auto doc = ParseStored((*entry)->value);
  if (!doc) return std::move(doc).error();
  if (!doc->is_object())
    return MakeError(Errc::kInternal, "stored trivia question is not an object");
  return std::optional<Question>(Question{std::move(doc->get_object()), (*entry)->version});
}

Result<std::vector<TriviaService::Question>> TriviaService::LoadAll(
    const std::string& prefix, uint64_t* index_version, std::vector<std::string>* ids_out) {
  auto index = store_.Get(IndexKey(prefix));
  if (!index) return std::move(index).error();
  std::vector<std::string> ids;
  if (*index) {
    auto arr = ParseStored((*index)->value);
    if (!arr) return std::move(arr).error();
    if (arr->is_array()) {
      for (const auto& v : arr->get_array()) {
        if (v.is_string()) ids.emplace_back(v.get_string());
      }
    }
  }
  if (index_version) *index_version = *index ? (*index)->version : 0;
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (const auto& id : ids) keys.push_back(QuestionKey(prefix, id));
  std::vector<Question> out;
  if (!keys.empty()) {
    auto entries = store_.MultiGet(keys);
    if (!entries) return std::move(entries).error();
    for (auto& entry : *entries) {
      if (!entry) continue;  // cannot happen: index and documents change in one batch
      auto doc = ParseStored(entry->value);
      if (!doc) return std::move(doc).error();
      if (!doc->is_object()) continue;
      out.push_back(Question{std::move(doc->get_object()), entry->version});
    }
  }
  if (ids_out) *ids_out = std::move(ids);
  return out;
}

Result<int64_t> TriviaService::NewGeneration(const std::string& prefix) {
  storage::WriteBatch batch;
  batch.Add(GenCounterKey(prefix), 1);
  auto applied = store_.Apply(batch);
  if (!applied) return std::move(applied).error();
  return applied->counters.front();
}

Result<void> TriviaService::ScanAll(
    const std::string& prefix,
    const std::function<void(std::string_view, const std::string&)>& fn) {
  std::string after;
  for (;;) {
    auto page = store_.Scan(prefix, after, kScanBatch);
    if (!page) return std::move(page).error();
    for (const auto& kv : *page) {
      fn(std::string_view(kv.key).substr(prefix.size()), kv.entry.value);
    }
    if (page->size() < kScanBatch) return {};
    after = page->back().key;
  }
}

void TriviaService::Purge(const std::string& prefix) {
  for (;;) {
    auto page = store_.Scan(prefix, {}, kScanBatch);
    if (!page || page->empty()) return;
    storage::WriteBatch batch;
    for (const auto& kv : *page) batch.Delete(kv.key);
    if (!store_.Apply(batch)) return;
    if (page->size() < kScanBatch) return;
  }
}

Result<void> TriviaService::PutQuestion(const std::string& prefix, std::string_view qid,
                                        const json::object& doc, uint64_t version) {
  storage::WriteBatch batch;
  std::string key = QuestionKey(prefix, qid);
  batch.ExpectVersion(key, version);
  batch.Put(key, json::serialize(doc));
  auto applied = store_.Apply(batch);
  if (!applied) return std::move(applied).error();
  return {};
}

// ---------------------------------------------------------------------------------------------
// Rendering

Result<std::vector<json::value>> TriviaService::Render(
    const Identity& who, const std::string& prefix, const std::vector<const json::object*>& docs) {
  // One MultiGet for every count and the caller's own vote on every visible question.
  std::vector<std::string> keys;
  std::vector<size_t> first_key(docs.size(), 0);
  const bool broadcaster = who.role == Role::kBroadcaster;
  const std::string party = broadcaster ? who.channel_id : who.ViewerKey();
  const bool has_party = !party.empty() && !HasControl(party) && party.size() <= kMaxPartyIdBytes;
  for (size_t i = 0; i < docs.size(); ++i) {
    first_key[i] = keys.size();
    if (StringField(*docs[i], "state") == kInactive) continue;
    std::string gen = GenPrefix(prefix, StringField(*docs[i], "id"), IntField(*docs[i], "gen"));
    for (const auto& oid : OptionIds(*docs[i])) keys.push_back(Join(gen, "n", oid));
    keys.push_back(has_party ? Join(gen, broadcaster ? "b" : "v", party) : std::string());
  }
  std::vector<std::optional<storage::Entry>> entries;
  if (!keys.empty()) {
    auto got = store_.MultiGet(keys);
    if (!got) return std::move(got).error();
    entries = std::move(*got);
  }
  std::vector<json::value> out;
  out.reserve(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    const json::object& doc = *docs[i];
    json::object q;
    for (const auto& kv : doc) {
      if (kv.key() == "gen" || kv.key() == "winner") continue;
      q[kv.key()] = kv.value();
    }
    if (StringField(doc, "state") != kInactive) {
      size_t k = first_key[i];
      json::object counts;
      json::object percentages;
      std::vector<std::pair<std::string, int64_t>> tally;
      int64_t total = 0;
      for (const auto& oid : OptionIds(doc)) {
        int64_t n = 0;
        if (entries[k]) n = std::max<int64_t>(0, ParseCount(entries[k]->value).value_or(0));
        ++k;
        tally.emplace_back(oid, n);
        total += n;
      }
      for (const auto& [oid, n] : tally) {
        counts[oid] = n;
        percentages[oid] = Ratio(n, total);
      }
      json::object results;
      if (has_party && entries[k]) {
        std::string_view vote = entries[k]->value;
        if (!broadcaster) vote = vote.substr(vote.find(kSep) + 1);  // "<team>␟<option>"
        results["you"] = vote;
      }
      if (StringField(doc, "state") == kResults) results["winner"] = StringField(doc, "winner");
      results["counts"] = std::move(counts);
      results["percentages"] = std::move(percentages);
      q["results"] = std::move(results);
    }
    out.emplace_back(std::move(q));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Editing

Result<void> TriviaService::AddQuestion(const Identity& who, const json::value& body) {
  if (!IsTriviaEditor(who)) return Refused();
  if (!body.is_object()) return Malformed("a question is a JSON object");
  const json::object& in = body.get_object();
  std::string qid = kv::IdField(in, "id");
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) return ok;
  json::object fields;
  if (auto ok = CopyFields(in, fields, limits_, "question"); !ok) return ok;
  std::optional<json::array> options;
  if (auto it = in.find("options"); it != in.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return Malformed("options must be an array");
    const json::array& list = it->value().get_array();
    if (list.size() > limits_.max_options) {
      return MakeError(Errc::kInvalidArgument, "Too many options",
                       "limit " + std::to_string(limits_.max_options));
    }
    options.emplace();
    std::set<std::string> seen;
    for (const auto& v : list) {
      auto option = ParseOption(v, limits_);
      if (!option) return std::move(option).error();
      if (!seen.insert(std::string(StringField(*option, "id"))).second) {
        return MakeError(Errc::kInvalidArgument, "duplicate option id");
      }
      options->push_back(std::move(*option));
    }
  }

  const std::string prefix = PrefixFor(stage_, who);
  std::optional<int64_t> gen;  // allocated once, on the first attempt that creates
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    auto existing = LoadQuestion(prefix, qid);
    if (!existing) return std::move(existing).error();
    if (*existing) {
      json::object& doc = (*existing)->doc;
      json::object next;
      next["id"] = qid;
      for (const auto& kv : fields) next[kv.key()] = kv.value();
      if (options) {
        if (StringField(doc, "state") != kInactive) {
          json::object probe;
          probe["options"] = *options;
          for (const auto& oid : OptionIds(doc)) {
            if (!HasOption(probe, oid)) {
              return MakeError(Errc::kInvalidArgument,
                               "options can only be removed while the question is state-inactive");
            }
          }
        }
        next["options"] = *options;
      } else {
        next["options"] = doc["options"];
      }
      for (const char* internal : {"state", "gen", "winner"}) {
        if (auto it = doc.find(internal); it != doc.end()) next[internal] = it->value();
      }
      auto put = PutQuestion(prefix, qid, next, (*existing)->version);
      if (put || put.error().code != Errc::kConflict) return put;
      continue;
    }
    // A new question: the index bounds the count and gives the creation order.
    uint64_t index_version = 0;
    std::vector<std::string> ids;
    auto all = LoadAll(prefix, &index_version, &ids);
    if (!all) return std::move(all).error();
    if (ids.size() >= limits_.max_questions) {
      return MakeError(Errc::kInvalidArgument, "Too many questions",
                       "limit " + std::to_string(limits_.max_questions) + " per extension");
    }
    if (!gen) {
      auto g = NewGeneration(prefix);
      if (!g) return std::move(g).error();
      gen = *g;
    }
    json::object doc;
    doc["id"] = qid;
    for (const auto& kv : fields) doc[kv.key()] = kv.value();
    doc["options"] = options ? *options : json::array();
    doc["state"] = kInactive;
    doc["gen"] = *gen;
    json::array index;
    for (const auto& id : ids) index.emplace_back(id);
    index.emplace_back(qid);
    storage::WriteBatch batch;
    const std::string key = QuestionKey(prefix, qid);
    batch.ExpectVersion(IndexKey(prefix), index_version);
    batch.ExpectVersion(key, 0);
    batch.Put(IndexKey(prefix), json::serialize(index));
    batch.Put(key, json::serialize(doc));
    auto applied = store_.Apply(batch);
    if (applied) return {};
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return Contended();
}

Result<void> TriviaService::RemoveQuestion(const Identity& who, std::string_view qid) {
  if (!IsTriviaEditor(who)) return Refused();
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) return ok;
  const std::string prefix = PrefixFor(stage_, who);
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    uint64_t index_version = 0;
    std::vector<std::string> ids;
    auto all = LoadAll(prefix, &index_version, &ids);
    if (!all) return std::move(all).error();
    auto existing = LoadQuestion(prefix, qid);
    if (!existing) return std::move(existing).error();
    if (!*existing) return NotFound();
    json::array index;
    for (const auto& id : ids) {
      if (id != qid) index.emplace_back(id);
    }
    storage::WriteBatch batch;
    const std::string key = QuestionKey(prefix, qid);
    batch.ExpectVersion(IndexKey(prefix), index_version);
    batch.ExpectVersion(key, (*existing)->version);
    batch.Put(IndexKey(prefix), json::serialize(index));
    batch.Delete(key);
    auto applied = store_.Apply(batch);
    if (applied) {
      Purge(GenPrefix(prefix, qid, IntField((*existing)->doc, "gen")));
      return {};
    }
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return Contended();
}

Result<std::string> TriviaService::AddOption(const Identity& who, std::string_view qid,
                                             const json::value& body) {
  if (!IsTriviaEditor(who)) return Refused();
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) {
    return std::move(ok).error();
  }
  auto option = ParseOption(body, limits_);
  if (!option) return std::move(option).error();
  const std::string oid(StringField(*option, "id"));
  const std::string prefix = PrefixFor(stage_, who);
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    auto existing = LoadQuestion(prefix, qid);
    if (!existing) return std::move(existing).error();
    if (!*existing) return NotFound();
    json::object& doc = (*existing)->doc;
    json::array options = Options(doc);
    bool replaced = false;
    for (auto& o : options) {
      if (o.is_object() && StringField(o.get_object(), "id") == oid) {
        o = *option;
        replaced = true;
      }
    }
    if (!replaced) {
      if (options.size() >= limits_.max_options) {
        return MakeError(Errc::kInvalidArgument, "Too many options",
                         "limit " + std::to_string(limits_.max_options));
      }
      options.push_back(*option);
    }
    doc["options"] = std::move(options);
    auto put = PutQuestion(prefix, qid, doc, (*existing)->version);
    if (put) {
      auto rendered = Render(who, prefix, {&doc});
      if (!rendered) return std::move(rendered).error();
      return SerializeJson(rendered->front());
    }
    if (put.error().code != Errc::kConflict) return std::move(put).error();
  }
  return Contended();
}

Result<std::string> TriviaService::RemoveOption(const Identity& who, std::string_view qid,
                                                std::string_view oid) {
  if (!IsTriviaEditor(who)) return Refused();
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) {
    return std::move(ok).error();
  }
  if (auto ok = CheckId(oid, "option id", limits_.max_id_bytes); !ok) {
    return std::move(ok).error();
  }
  const std::string prefix = PrefixFor(stage_, who);
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    auto existing = LoadQuestion(prefix, qid);
    if (!existing) return std::move(existing).error();
    if (!*existing) return NotFound();
    json::object& doc = (*existing)->doc;
    if (!HasOption(doc, oid)) return NotFound();
    if (StringField(doc, "state") != kInactive) {
      return MakeError(Errc::kInvalidArgument,
                       "options can only be removed while the question is state-inactive");
    }
    json::array options;
    for (const auto& o : Options(doc)) {
      if (!(o.is_object() && StringField(o.get_object(), "id") == oid)) options.push_back(o);
    }
    doc["options"] = std::move(options);
    auto put = PutQuestion(prefix, qid, doc, (*existing)->version);
    if (put) {
      auto rendered = Render(who, prefix, {&doc});
      if (!rendered) return std::move(rendered).error();
      return SerializeJson(rendered->front());
    }
    if (put.error().code != Errc::kConflict) return std::move(put).error();
  }
  return Contended();
}

Result<std::string> TriviaService::SetState(const Identity& who, std::string_view qid,
                                            std::string_view to, std::string_view winner) {
  if (!IsTriviaEditor(who)) return Refused();
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) {
    return std::move(ok).error();
  }
  if (to != kInactive && to != kUnlocked && to != kLocked && to != kResults) {
    return MakeError(Errc::kInvalidArgument, "invalid transition",
                     "transition must be state-inactive, state-unlocked, state-locked or "
                     "state-results");
  }
  const std::string prefix = PrefixFor(stage_, who);
  std::optional<int64_t> fresh_gen;
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    auto existing = LoadQuestion(prefix, qid);
    if (!existing) return std::move(existing).error();
    if (!*existing) return NotFound();
    json::object& doc = (*existing)->doc;
    const std::string from(StringField(doc, "state"));
    if (from == to && to != kResults) return std::string(to);  // idempotent
    bool legal = (to == kInactive) || (to == kUnlocked && (from == kInactive || from == kLocked)) ||
                 (to == kLocked && from == kUnlocked) ||
                 (to == kResults && (from == kLocked || from == kResults));
    if (!legal) {
      return MakeError(Errc::kInvalidArgument, "invalid transition",
                       from + " -> " + std::string(to));
    }
    const int64_t old_gen = IntField(doc, "gen");
    if (to == kResults) {
      if (winner.empty()) return MakeError(Errc::kInvalidArgument, "winner required");
      if (!HasOption(doc, winner)) {
        return MakeError(Errc::kInvalidArgument, "winner is not an option of the question");
      }
      doc["winner"] = winner;
    } else {
      doc.erase("winner");
    }
    if (to == kInactive) {
      if (!fresh_gen) {
        auto g = NewGeneration(prefix);
        if (!g) return std::move(g).error();
        fresh_gen = *g;
      }
      doc["gen"] = *fresh_gen;
    }
    doc["state"] = to;
    auto put = PutQuestion(prefix, qid, doc, (*existing)->version);
    if (put) {
      if (to == kInactive) Purge(GenPrefix(prefix, qid, old_gen));
      return std::string(to);
    }
    if (put.error().code != Errc::kConflict) return std::move(put).error();
  }
  return Contended();
}

// ---------------------------------------------------------------------------------------------
// Votes and teams

Result<void> TriviaService::Vote(const Identity& who, std::string_view qid, std::string_view oid) {
  if (!CanVote(who)) return Refused();
  if (auto ok = CheckParty(who); !ok) return ok;
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) return ok;
  if (oid.empty()) return MakeError(Errc::kInvalidArgument, "unacceptable vote");
  const bool broadcaster = who.role == Role::kBroadcaster;
  const std::string prefix = PrefixFor(stage_, who);
  const std::string team_key = TeamKey(prefix, who.ViewerKey());
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    auto question = LoadQuestion(prefix, qid);
    if (!question) return std::move(question).error();
    if (!*question) return NotFound();
    const json::object& doc = (*question)->doc;
    if (StringField(doc, "state") == kInactive && !IsTriviaEditor(who)) return NotFound();
    if (StringField(doc, "state") != kUnlocked) {
      return MakeError(Errc::kInvalidArgument, "poll is closed");
    }
    if (!HasOption(doc, oid)) return MakeError(Errc::kInvalidArgument, "unacceptable vote");
    const std::string gen = GenPrefix(prefix, qid, IntField(doc, "gen"));
    const std::string record_key =
        broadcaster ? Join(gen, "b", who.channel_id) : Join(gen, "v", who.ViewerKey());

    storage::WriteBatch batch;
    batch.ExpectVersion(QuestionKey(prefix, qid), (*question)->version);
    if (broadcaster) {
      auto record = store_.Get(record_key);
      if (!record) return std::move(record).error();
      if (*record && (*record)->value == oid) return {};  // the same vote again
      batch.ExpectVersion(record_key, *record ? (*record)->version : 0);
      batch.Put(record_key, std::string(oid));
    } else {
      std::vector<std::string> keys = {team_key, record_key};
      auto got = store_.MultiGet(keys);
      if (!got) return std::move(got).error();
      const auto& team_entry = (*got)[0];
      const auto& record = (*got)[1];
      std::string team;
      std::string old_option;
      if (record) {
        size_t cut = record->value.find(kSep);
        team = record->value.substr(0, cut);
        old_option = cut == std::string::npos ? std::string() : record->value.substr(cut + 1);
        if (old_option == oid) return {};  // the same vote again
      } else if (team_entry) {
        team = team_entry->value;
      } else {
        // First vote or join: the team is fixed to this channel from now on.
        team = who.channel_id;
        batch.ExpectVersion(team_key, 0);
        batch.Put(team_key, team);
        batch.Add(TeamSizePrefix(prefix) + team, 1);
      }
      batch.ExpectVersion(record_key, record ? record->version : 0);
      batch.Put(record_key, team + kSep + std::string(oid));
      batch.Add(Join(gen, "n", oid), 1);
      batch.Add(Join(gen, "c", team, oid), 1);
      if (record && !old_option.empty()) {
        batch.Add(Join(gen, "n", old_option), -1);
        batch.Add(Join(gen, "c", team, old_option), -1);
      }
    }
    auto applied = store_.Apply(batch);
    if (applied) return {};
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return Contended();
}

Result<std::string> TriviaService::JoinTeam(const Identity& who) {
  if (!CanVote(who)) return Refused();
  if (auto ok = CheckParty(who); !ok) return std::move(ok).error();
  if (who.role == Role::kBroadcaster) return who.channel_id;  // always its own channel's team
  const std::string prefix = PrefixFor(stage_, who);
  const std::string team_key = TeamKey(prefix, who.ViewerKey());
  for (int attempt = 0; attempt < limits_.max_write_attempts; ++attempt) {
    auto entry = store_.Get(team_key);
    if (!entry) return std::move(entry).error();
    if (*entry) return (*entry)->value;
    storage::WriteBatch batch;
    batch.ExpectVersion(team_key, 0);
    batch.Put(team_key, who.channel_id);
    batch.Add(TeamSizePrefix(prefix) + who.channel_id, 1);
    auto applied = store_.Apply(batch);
    if (applied) return who.channel_id;
    if (applied.error().code != Errc::kConflict) return std::move(applied).error();
  }
  return Contended();
}

Result<std::string> TriviaService::JoinedTeam(const Identity& who) {
  if (who.role == Role::kBroadcaster && !who.channel_id.empty()) return who.channel_id;
  const std::string& viewer = who.ViewerKey();
  if (viewer.empty() || viewer.size() > kMaxPartyIdBytes || HasControl(viewer)) {
    return std::string();
  }
  auto entry = store_.Get(TeamKey(PrefixFor(stage_, who), viewer));
  if (!entry) return std::move(entry).error();
  return *entry ? (*entry)->value : std::string();
}

// ---------------------------------------------------------------------------------------------
// Reads

Result<std::string> TriviaService::ReadQuestions(const Identity& who) {
  const std::string prefix = PrefixFor(stage_, who);
  auto all = LoadAll(prefix, nullptr, nullptr);
  if (!all) return std::move(all).error();
  const bool editor = IsTriviaEditor(who);
  std::vector<const json::object*> docs;
  for (const auto& q : *all) {
    if (editor || StringField(q.doc, "state") != kInactive) docs.push_back(&q.doc);
  }
  auto rendered = Render(who, prefix, docs);
  if (!rendered) return std::move(rendered).error();
  json::array list;
  for (auto& q : *rendered) list.push_back(std::move(q));
  json::object out;
  out["questions"] = std::move(list);
  return SerializeJson(out);
}

Result<std::string> TriviaService::ReadQuestion(const Identity& who, std::string_view qid) {
  if (auto ok = CheckId(qid, "question id", limits_.max_id_bytes); !ok) {
    return std::move(ok).error();
  }
  const std::string prefix = PrefixFor(stage_, who);
  auto question = LoadQuestion(prefix, qid);
  if (!question) return std::move(question).error();
  if (!*question) return NotFound();
  if (StringField((*question)->doc, "state") == kInactive && !IsTriviaEditor(who)) {
    return NotFound();
  }
  auto rendered = Render(who, prefix, {&(*question)->doc});
  if (!rendered) return std::move(rendered).error();
  return SerializeJson(rendered->front());
}

Result<std::string> TriviaService::ReadLeaderboard(const Identity& who) {
  const std::string prefix = PrefixFor(stage_, who);
  auto all = LoadAll(prefix, nullptr, nullptr);
  if (!all) return std::move(all).error();

  // Team sizes: viewers whose team is the channel.
  std::map<std::string, int64_t> team_size;
  auto sized = ScanAll(TeamSizePrefix(prefix), [&](std::string_view channel, const std::string& v) {
    team_size[std::string(channel)] = ParseCount(v).value_or(0);
  });
  if (!sized) return std::move(sized).error();

  struct Resolved {
    std::string id;
    std::string winner;
    std::map<std::string, std::map<std::string, int64_t>> counts;  // team -> option -> votes
    std::map<std::string, std::string> broadcaster_votes;          // channel -> option
  };
  std::vector<Resolved> resolved;
  std::set<std::string> teams;
  for (const auto& [name, size] : team_size) {
    if (size > 0) teams.insert(name);
  }
  for (const auto& q : *all) {
    if (StringField(q.doc, "state") != kResults) continue;
    Resolved r;
    r.id = std::string(StringField(q.doc, "id"));
    r.winner = std::string(StringField(q.doc, "winner"));
    const std::string gen = GenPrefix(prefix, r.id, IntField(q.doc, "gen"));
    auto counted = ScanAll(gen + "c" + kSep, [&](std::string_view rest, const std::string& v) {
      size_t cut = rest.find(kSep);
      if (cut == std::string_view::npos) return;
      int64_t n = ParseCount(v).value_or(0);
      if (n <= 0) return;
      std::string team(rest.substr(0, cut));
      r.counts[team][std::string(rest.substr(cut + 1))] = n;
      teams.insert(team);
    });
    if (!counted) return std::move(counted).error();
    auto voted = ScanAll(gen + "b" + kSep, [&](std::string_view channel, const std::string& v) {
      r.broadcaster_votes[std::string(channel)] = v;
      teams.insert(std::string(channel));
    });
    if (!voted) return std::move(voted).error();
    resolved.push_back(std::move(r));
  }

  struct Row {
    std::string team;
    double score = 0;
    json::object questions;
  };
  std::vector<Row> rows;
  rows.reserve(teams.size());
  for (const auto& team : teams) {
    Row row;
    row.team = team;
    const int64_t size = team_size.count(team) ? team_size[team] : 0;
    for (const auto& r : resolved) {
      int64_t votes = 0;
      int64_t correct = 0;
      if (auto it = r.counts.find(team); it != r.counts.end()) {
        for (const auto& [option, n] : it->second) {
          votes += n;
          if (option == r.winner) correct += n;
        }
      }
      auto b = r.broadcaster_votes.find(team);
      const bool broadcaster_correct = b != r.broadcaster_votes.end() && b->second == r.winner;
      const double percent_correct = Ratio(correct, votes);
      const double base = percent_correct * 1000.0;
      const double bonus = broadcaster_correct ? base : 0.0;
      json::object entry;
      entry["question_id"] = r.id;
      entry["broadcaster_correct"] = broadcaster_correct;
      entry["team_participation"] = Ratio(votes, size);
      entry["team_participants"] = votes;
      entry["percent_correct"] = percent_correct;
      entry["team_votes"] = votes;
      entry["score_values"] = json::array{base, bonus};
      row.questions[r.id] = std::move(entry);
      row.score += base + bonus;
    }
    rows.push_back(std::move(row));
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.score > b.score; });
  json::array board;
  for (auto& row : rows) {
    json::object team;
    team["team_id"] = row.team;
    team["combined_score"] = row.score;
    team["questions"] = std::move(row.questions);
    board.push_back(std::move(team));
  }
  json::object out;
  out["leaderboard"] = std::move(board);
  return SerializeJson(out);
}

}  // namespace medkit::core::trivia
