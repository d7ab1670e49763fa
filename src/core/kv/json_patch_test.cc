#include "core/kv/json_patch.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace medkit::core::kv {
namespace {

namespace json = boost::json;

json::value J(std::string_view text) { return json::parse(text); }

json::array P(std::string_view text) { return json::parse(text).as_array(); }

const JsonPatchOptions kStrict{.lenient = false};
const JsonPatchOptions kLenient{.lenient = true};

// Applies patch to doc (parsed from text), expects success and returns the result.
json::value ApplyOk(std::string_view doc_text, std::string_view patch_text,
                    const JsonPatchOptions& options = kLenient) {
  json::value doc = J(doc_text);
  auto result = ApplyJsonPatch(doc, P(patch_text), options);
  EXPECT_TRUE(result.has_value()) << patch_text << " on " << doc_text << ": "
                                  << result.error().message;
  return doc;
}

// Applies patch to doc, expects an kInvalidArgument error that leaves doc untouched and
// returns the error message.
std::string ApplyFails(std::string_view doc_text, std::string_view patch_text,
                       const JsonPatchOptions& options = kLenient) {
  json::value doc = J(doc_text);
  const json::value original = doc;
  auto result = ApplyJsonPatch(doc, P(patch_text), options);
  EXPECT_FALSE(result.has_value())
      << patch_text << " on " << doc_text << " succeeded: " << json::serialize(doc);
  EXPECT_EQ(doc, original) << "failed patch modified the document";
  if (result.has_value()) return {};
  EXPECT_EQ(result.error().code, Errc::kInvalidArgument);
  EXPECT_FALSE(result.error().message.empty());
  return result.error().message;
}

// ---------------------------------------------------------------------------------------------
// json-patch-test-suite (npm package, installed under tests/js/node_modules).

std::filesystem::path SuiteDir() {
  const std::filesystem::path relative = "tests/js/node_modules/json-patch-test-suite";
  if (const char* source_dir = std::getenv("MEDKIT_SOURCE_DIR");
      source_dir != nullptr && *source_dir != '\0') {
    return std::filesystem::path(source_dir) / relative;
  }
  // Fallbacks without ctest: the source tree relative to this file, then the working directory.
  std::error_code ec;
  const std::filesystem::path from_source =
      std::filesystem::path(__FILE__).parent_path() / "../../.." / relative;
  if (std::filesystem::exists(from_source, ec)) return from_source;
  return relative;
}

// Loads a suite file as an array of test records. A missing or malformed file is a test
// failure (never a skip): the suite is a required part of the test.
bool LoadSuite(const std::string& name, json::array& records) {
  const std::filesystem::path file = SuiteDir() / name;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "json-patch-test-suite file not found: " << file
                  << " (run npm install in tests/js; set MEDKIT_SOURCE_DIR to the source tree)";
    return false;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  boost::system::error_code ec;
  json::value parsed = json::parse(buffer.str(), ec);
  if (ec || !parsed.is_array() || parsed.as_array().empty()) {
    ADD_FAILURE() << file << " is not a non-empty JSON array: " << ec.message();
    return false;
  }
  records = std::move(parsed.as_array());
  return true;
}

struct SuiteCase {
  std::string where;  // "file[index] comment", for failure messages
  const json::value* doc = nullptr;
  const json::array* patch = nullptr;
  const json::value* expected = nullptr;
  bool expects_error = false;
};

// Collects the runnable records: not disabled, with both "doc" and "patch" (the format allows
// comment-only records).
std::vector<SuiteCase> RunnableCases(const std::string& file, const json::array& records,
                                     int& disabled) {
  std::vector<SuiteCase> cases;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const json::object* record = records[i].if_object();
    if (record == nullptr) {
      ADD_FAILURE() << file << "[" << i << "] is not an object";
      continue;
    }
    if (const json::value* flag = record->if_contains("disabled");
        flag != nullptr && flag->is_bool() && flag->get_bool()) {
      ++disabled;
      continue;
    }
    const json::value* doc = record->if_contains("doc");
    const json::value* patch = record->if_contains("patch");
    if (doc == nullptr && patch == nullptr) continue;  // comment-only record
    if (doc == nullptr || patch == nullptr || !patch->is_array()) {
      ADD_FAILURE() << file << "[" << i << "] has no doc or no patch array";
      continue;
    }
    SuiteCase c;
    c.where = file + "[" + std::to_string(i) + "]";
    if (const json::value* comment = record->if_contains("comment"); comment != nullptr) {
      c.where += " " + json::serialize(*comment);
    }
    c.doc = doc;
    c.patch = &patch->get_array();
    c.expected = record->if_contains("expected");
    c.expects_error = record->contains("error");
    cases.push_back(std::move(c));
  }
  return cases;
}

struct Outcome {
  bool ok = false;
  json::value doc;
  std::string message;
};

Outcome RunCase(const SuiteCase& c, const JsonPatchOptions& options) {
  Outcome outcome;
  outcome.doc = *c.doc;
  auto result = ApplyJsonPatch(outcome.doc, *c.patch, options);
  outcome.ok = result.has_value();
  if (!outcome.ok) {
    EXPECT_EQ(result.error().code, Errc::kInvalidArgument) << c.where;
    outcome.message = result.error().message;
  }
  return outcome;
}

// Checks a case against its expectation: "expected" => exactly that document; "error" => a
// failure that leaves the document unchanged; neither => success.
void CheckAgainstSuite(const SuiteCase& c, const Outcome& outcome) {
  if (c.expects_error) {
    EXPECT_FALSE(outcome.ok) << c.where << ": expected an error, got "
                             << json::serialize(outcome.doc);
    EXPECT_EQ(outcome.doc, *c.doc) << c.where << ": failed patch modified the document";
    return;
  }
  EXPECT_TRUE(outcome.ok) << c.where << ": " << outcome.message;
  if (c.expected != nullptr) {
    EXPECT_EQ(outcome.doc, *c.expected) << c.where << ": got " << json::serialize(outcome.doc);
  }
}

const char* const kSuiteFiles[] = {"tests.json", "spec_tests.json"};

TEST(JsonPatchSuiteTest, StrictModePassesJsonPatchTestSuite) {
  int total_run = 0;
  for (const std::string file : kSuiteFiles) {
    json::array records;
    if (!LoadSuite(file, records)) continue;
    int disabled = 0;
    const std::vector<SuiteCase> cases = RunnableCases(file, records, disabled);
    for (const SuiteCase& c : cases) CheckAgainstSuite(c, RunCase(c, kStrict));
    std::cout << "[ suite    ] strict: " << file << ": " << cases.size() << " cases run, "
              << disabled << " disabled\n";
    EXPECT_FALSE(cases.empty()) << file;
    total_run += static_cast<int>(cases.size());
  }
  std::cout << "[ suite    ] strict: " << total_run << " cases run in total\n";
}

// Decides, independently of the implementation's error messages, whether a case fails in strict
// mode only because an "add" targets a missing parent that lenient mode would create: replays
// the ops one by one, and the first failing op must be an "add" whose parent pointer does not
// resolve (boost's own find_pointer) and whose nearest existing ancestor is an object.
bool FailsOnlyForMissingParent(const SuiteCase& c, std::string& path) {
  json::value state = *c.doc;
  for (const json::value& op_value : *c.patch) {
    json::array single{op_value};
    if (ApplyJsonPatch(state, single, kStrict).has_value()) continue;
    const json::object* op = op_value.if_object();
    if (op == nullptr) return false;
    const json::value* name = op->if_contains("op");
    const json::value* path_value = op->if_contains("path");
    if (name == nullptr || !name->is_string() || name->get_string() != "add" ||
        path_value == nullptr || !path_value->is_string() || !op->contains("value")) {
      return false;
    }
    path = std::string(path_value->get_string());
    const std::size_t cut = path.rfind('/');
    if (path.empty() || cut == std::string::npos) return false;
    std::string ancestor = path.substr(0, cut);
    std::error_code ec;
    if (state.find_pointer(ancestor, ec) != nullptr) return false;  // parent exists
    const json::value* existing = nullptr;
    while (existing == nullptr) {
      ancestor.resize(ancestor.rfind('/'));
      existing = state.find_pointer(ancestor, ec);
    }
    return existing->is_object();
  }
  return false;  // strict mode succeeds
}

TEST(JsonPatchSuiteTest, LenientModeDiffersOnlyWhereMissingParentsAreCreated) {
  int total_run = 0;
  int auto_created = 0;
  for (const std::string file : kSuiteFiles) {
    json::array records;
    if (!LoadSuite(file, records)) continue;
    int disabled = 0;
    const std::vector<SuiteCase> cases = RunnableCases(file, records, disabled);
    for (const SuiteCase& c : cases) {
      const Outcome strict = RunCase(c, kStrict);
      const Outcome lenient = RunCase(c, kLenient);
      const bool differs = strict.ok != lenient.ok || (strict.ok && strict.doc != lenient.doc);
      std::string path;
      const bool missing_parent = FailsOnlyForMissingParent(c, path);
      EXPECT_EQ(differs, missing_parent)
          << c.where << ": strict " << (strict.ok ? "ok" : strict.message) << ", lenient "
          << (lenient.ok ? json::serialize(lenient.doc) : lenient.message);
      if (!missing_parent) {
        CheckAgainstSuite(c, lenient);
        continue;
      }
      ++auto_created;
      std::cout << "[ suite    ] lenient differs (parent auto-created): " << c.where << "\n";
      EXPECT_NE(strict.message.find("parent does not exist"), std::string::npos) << strict.message;
      ASSERT_TRUE(lenient.ok) << c.where << ": " << lenient.message;
      std::error_code ec;
      const json::value* added = lenient.doc.find_pointer(path, ec);
      ASSERT_NE(added, nullptr) << c.where << ": " << json::serialize(lenient.doc);
    }
    std::cout << "[ suite    ] lenient: " << file << ": " << cases.size() << " cases run, "
              << disabled << " disabled\n";
    total_run += static_cast<int>(cases.size());
  }
  std::cout << "[ suite    ] lenient: " << total_run << " cases run in total, " << auto_created
            << " differ from strict by auto-creating a missing parent\n";
  // The suite has such cases (RFC 6902 4.1 / A.12); if none differ, leniency is not exercised.
  EXPECT_GT(auto_created, 0);
}

// ---------------------------------------------------------------------------------------------
// Leniency (spec section 5.3.1).

TEST(JsonPatchLenientTest, RemoveIgnoresValueSentByGameLinkClient) {
  EXPECT_EQ(ApplyOk(R"({"game":{"score":1,"level":2}})",
                    R"([{"op":"remove","path":"/game/score","value":null}])"),
            J(R"({"game":{"level":2}})"));
  // RFC 6902 section 4 ignores members an op does not define, so strict mode agrees.
  EXPECT_EQ(ApplyOk(R"({"a":1,"b":2})", R"([{"op":"remove","path":"/a","value":null}])", kStrict),
            J(R"({"b":2})"));
}

TEST(JsonPatchLenientTest, AddCreatesMissingIntermediateObjects) {
  EXPECT_EQ(ApplyOk("{}", R"([{"op":"add","path":"/game/text/game_data","value":"hi"}])"),
            J(R"({"game":{"text":{"game_data":"hi"}}})"));
  EXPECT_EQ(ApplyOk(R"({"game":{"score":3}})",
                    R"([{"op":"add","path":"/game/text/game_data","value":[1]}])"),
            J(R"({"game":{"score":3,"text":{"game_data":[1]}}})"));
  const std::string message =
      ApplyFails("{}", R"([{"op":"add","path":"/game/text/game_data","value":"hi"}])", kStrict);
  EXPECT_NE(message.find("parent does not exist"), std::string::npos) << message;
}

TEST(JsonPatchLenientTest, AddIntermediatesOp) {
  EXPECT_EQ(ApplyOk(R"({"a":{}})", R"([{"op":"add_intermediates","path":"/a/b/c","value":1}])"),
            J(R"({"a":{"b":{"c":1}}})"));
  // Works like add when nothing is missing, including array targets.
  EXPECT_EQ(ApplyOk(R"({"a":[1]})", R"([{"op":"add_intermediates","path":"/a/-","value":2}])"),
            J(R"({"a":[1,2]})"));
  const std::string message =
      ApplyFails("{}", R"([{"op":"add_intermediates","path":"/a/b","value":1}])", kStrict);
  EXPECT_NE(message.find("unknown op"), std::string::npos) << message;
  // Without "value" it is an error like add.
  ApplyFails("{}", R"([{"op":"add_intermediates","path":"/a/b"}])");
}

TEST(JsonPatchLenientTest, IntermediatesAreNeverCreatedThroughScalarsOrArrays) {
  EXPECT_NE(ApplyFails(R"({"game":5})", R"([{"op":"add","path":"/game/text","value":1}])")
                .find("parent is a number"),
            std::string::npos);
  EXPECT_NE(ApplyFails(R"({"game":"x"})", R"([{"op":"add","path":"/game/a/b","value":1}])")
                .find("cannot descend into /game"),
            std::string::npos);
  ApplyFails(R"({"game":null})", R"([{"op":"add","path":"/game/a/b","value":1}])");
  // Missing array elements are not created.
  ApplyFails(R"({"a":[]})", R"([{"op":"add","path":"/a/0/b","value":1}])");
  ApplyFails(R"({"a":[]})", R"([{"op":"add","path":"/a/-/b","value":1}])");
  // Only add creates intermediates: move and copy targets do not.
  ApplyFails(R"({"x":1})", R"([{"op":"copy","from":"/x","path":"/a/b"}])");
  ApplyFails(R"({"x":1})", R"([{"op":"move","from":"/x","path":"/a/b"}])");
  // Replace and remove never create anything.
  ApplyFails("{}", R"([{"op":"replace","path":"/a/b","value":1}])");
  ApplyFails("{}", R"([{"op":"remove","path":"/a/b"}])");
}

TEST(JsonPatchLenientTest, RemoveValueRemovesAllEqualElements) {
  EXPECT_EQ(ApplyOk(R"({"tags":["a","b","a","c","a"]})",
                    R"([{"op":"remove_value","path":"/tags","value":"a"}])"),
            J(R"({"tags":["b","c"]})"));
  // JSON equality: numbers by value, objects regardless of member order.
  EXPECT_EQ(ApplyOk(R"({"v":[1,1.0,2,{"x":1,"y":2},{"y":2,"x":1},"1"]})",
                    R"([{"op":"remove_value","path":"/v","value":1},
                        {"op":"remove_value","path":"/v","value":{"x":1,"y":2}}])"),
            J(R"({"v":[2,"1"]})"));
  // No match is fine.
  EXPECT_EQ(ApplyOk(R"({"tags":["a"]})", R"([{"op":"remove_value","path":"/tags","value":"z"}])"),
            J(R"({"tags":["a"]})"));
  // Root array.
  EXPECT_EQ(ApplyOk(R"([null,1,null])", R"([{"op":"remove_value","path":"","value":null}])"),
            J("[1]"));
  EXPECT_NE(ApplyFails(R"({"tags":"a"})", R"([{"op":"remove_value","path":"/tags","value":"a"}])")
                .find("not an array"),
            std::string::npos);
  ApplyFails("{}", R"([{"op":"remove_value","path":"/tags","value":"a"}])");
  ApplyFails(R"({"tags":["a"]})", R"([{"op":"remove_value","path":"/tags"}])");
  EXPECT_NE(ApplyFails(R"({"tags":["a"]})", R"([{"op":"remove_value","path":"/tags","value":"a"}])",
                       kStrict)
                .find("unknown op"),
            std::string::npos);
}

TEST(JsonPatchLenientTest, MoveAndCopyWithoutFromAreErrors) {
  for (const JsonPatchOptions& options : {kLenient, kStrict}) {
    std::string message = ApplyFails(R"({"a":1})", R"([{"op":"move","path":"/b"}])", options);
    EXPECT_NE(message.find("move requires from"), std::string::npos) << message;
    message = ApplyFails(R"({"a":1})", R"([{"op":"copy","path":"/b"}])", options);
    EXPECT_NE(message.find("copy requires from"), std::string::npos) << message;
    message = ApplyFails(R"({"a":1})", R"([{"op":"move","from":7,"path":"/b"}])", options);
    EXPECT_NE(message.find("from must be a string"), std::string::npos) << message;
  }
}

// ---------------------------------------------------------------------------------------------
// RFC 6902 details.

TEST(JsonPatchTest, ErrorMessagesNameOpIndexOpAndPath) {
  const std::string message =
      ApplyFails(R"({"q":1})",
                 R"([{"op":"test","path":"/q","value":1},{"op":"add","path":"/x","value":1},
          {"op":"add","path":"/a/b","value":1}])",
                 kStrict);
  EXPECT_EQ(message, "patch op 2 (add): path /a/b: parent does not exist");
  EXPECT_EQ(ApplyFails("{}", R"([{"op":"add","path":"/a/b/c","value":1}])", kStrict),
            "patch op 0 (add): path /a/b/c: parent does not exist (/a does not exist)");
  EXPECT_EQ(ApplyFails(R"({"a":1})", R"([{"op":"remove","path":"/b"}])"),
            "patch op 0 (remove): path /b: does not exist");
  EXPECT_EQ(ApplyFails(R"({"a":1})", R"([{"op":"test","path":"/a","value":2}])"),
            "patch op 0 (test): path /a: test failed: value differs");
  EXPECT_EQ(ApplyFails(R"({"a":1})", R"([{"op":"spam","path":"/a"}])"),
            "patch op 0 (spam): unknown op");
}

TEST(JsonPatchTest, MalformedOperations) {
  EXPECT_NE(ApplyFails("{}", R"([1])").find("not an object"), std::string::npos);
  EXPECT_NE(ApplyFails("{}", R"([{"path":"/a","value":1}])").find("\"op\""), std::string::npos);
  EXPECT_NE(ApplyFails("{}", R"([{"op":3,"path":"/a","value":1}])").find("\"op\""),
            std::string::npos);
  EXPECT_NE(ApplyFails("{}", R"([{"op":"add","value":1}])").find("\"path\""), std::string::npos);
  EXPECT_NE(ApplyFails("{}", R"([{"op":"add","path":5,"value":1}])").find("\"path\""),
            std::string::npos);
  EXPECT_NE(ApplyFails("{}", R"([{"op":"add","path":"a","value":1}])").find("start with '/'"),
            std::string::npos);
  for (const char* op : {"add", "replace", "test"}) {
    const std::string patch = std::string(R"([{"op":")") + op + R"(","path":"/a"}])";
    EXPECT_NE(ApplyFails(R"({"a":1})", patch).find(std::string(op) + " requires value"),
              std::string::npos);
  }
  // An explicit null is a value.
  EXPECT_EQ(ApplyOk("{}", R"([{"op":"add","path":"/a","value":null}])"), J(R"({"a":null})"));
  EXPECT_EQ(ApplyOk(R"({"a":1})", R"([{"op":"replace","path":"/a","value":null}])"),
            J(R"({"a":null})"));
  ApplyOk(R"({"a":null})", R"([{"op":"test","path":"/a","value":null}])");
  // An empty patch changes nothing.
  EXPECT_EQ(ApplyOk(R"({"a":[1]})", "[]"), J(R"({"a":[1]})"));
}

TEST(JsonPatchTest, IsAllOrNothing) {
  const std::string message = ApplyFails(R"({"a":{"b":[1,2]},"c":"d"})",
                                         R"([{"op":"add","path":"/x","value":1},
                                             {"op":"remove","path":"/a/b/0"},
                                             {"op":"replace","path":"/c","value":"e"},
                                             {"op":"add","path":"/new/deep","value":1},
                                             {"op":"remove","path":"/missing"}])");
  EXPECT_EQ(message.rfind("patch op 4 (remove)", 0), 0u) << message;
  ApplyFails(R"({"a":1})", R"([{"op":"add","path":"/b","value":2},
                               {"op":"test","path":"/b","value":3}])");
  ApplyFails(R"({"a":1})", R"([{"op":"replace","path":"","value":[]},{"op":"bogus","path":""}])");
  // The first op fails: nothing after it runs either.
  ApplyFails(R"({"a":1})", R"([{"op":"remove","path":"/zz"},{"op":"add","path":"/b","value":2}])");
}

TEST(JsonPatchTest, PointerEscapes) {
  EXPECT_EQ(ApplyOk("{}", R"([{"op":"add","path":"/a~1b","value":1},
                             {"op":"add","path":"/m~0n","value":2},
                             {"op":"add","path":"/~01","value":3},
                             {"op":"add","path":"/~10","value":4}])"),
            J(R"({"a/b":1,"m~n":2,"~1":3,"/0":4})"));
  ApplyOk(R"({"a":{"b/c":{"~":5}}})", R"([{"op":"test","path":"/a/b~1c/~0","value":5}])");
  EXPECT_EQ(ApplyOk(R"({"a/b":1})", R"([{"op":"move","from":"/a~1b","path":"/~0"}])"),
            J(R"({"~":1})"));
  for (const char* path : {"/a~2b", "/a~", "/~", "/a~b", "/~~0"}) {
    const std::string patch = std::string(R"([{"op":"add","path":")") + path + R"(","value":1}])";
    EXPECT_NE(ApplyFails("{}", patch).find("invalid escape"), std::string::npos) << path;
  }
  // Empty tokens name the member "".
  EXPECT_EQ(ApplyOk(R"({"":{}})", R"([{"op":"add","path":"//","value":1}])"), J(R"({"":{"":1}})"));
  EXPECT_NE(ApplyFails(R"({"a":1})", R"([{"op":"move","from":"a","path":"/b"}])").find("from a:"),
            std::string::npos);
}

TEST(JsonPatchTest, ArrayIndexGrammar) {
  EXPECT_EQ(ApplyOk("[1,2,3]", R"([{"op":"replace","path":"/0","value":9}])"), J("[9,2,3]"));
  EXPECT_EQ(ApplyOk("[1,2,3]", R"([{"op":"remove","path":"/2"}])"), J("[1,2]"));
  for (const char* index : {"01", "00", "-1", "+1", " 1", "1 ", "1e0", "0x1", "", "1.0",
                            "99999999999999999999999", "3", "4"}) {
    const std::string patch =
        std::string(R"([{"op":"replace","path":"/)") + index + R"(","value":0}])";
    ApplyFails("[1,2,3]", patch);
  }
  // add allows index == size, not beyond.
  EXPECT_EQ(ApplyOk("[1,2]", R"([{"op":"add","path":"/2","value":3}])"), J("[1,2,3]"));
  EXPECT_NE(ApplyFails("[1,2]", R"([{"op":"add","path":"/3","value":3}])").find("out of range"),
            std::string::npos);
  ApplyFails("[1,2]", R"([{"op":"add","path":"/01","value":3}])");
  // Digits are member names in objects.
  EXPECT_EQ(ApplyOk(R"({"01":1})", R"([{"op":"remove","path":"/01"}])"), J("{}"));
}

TEST(JsonPatchTest, DashAppends) {
  EXPECT_EQ(ApplyOk("[]", R"([{"op":"add","path":"/-","value":1},
                             {"op":"add","path":"/-","value":[2]}])"),
            J("[1,[2]]"));
  EXPECT_EQ(ApplyOk(R"({"a":[1],"b":2})", R"([{"op":"move","from":"/b","path":"/a/-"}])"),
            J(R"({"a":[1,2]})"));
  EXPECT_EQ(ApplyOk(R"({"a":[1],"b":2})", R"([{"op":"copy","from":"/b","path":"/a/-"}])"),
            J(R"({"a":[1,2],"b":2})"));
  EXPECT_EQ(ApplyOk(R"({"a":[1,2]})", R"([{"op":"move","from":"/a/0","path":"/a/-"}])"),
            J(R"({"a":[2,1]})"));
  // "-" is a plain member name in objects.
  EXPECT_EQ(ApplyOk("{}", R"([{"op":"add","path":"/-","value":1}])"), J(R"({"-":1})"));
  // Elsewhere it names no element.
  ApplyFails("[1]", R"([{"op":"remove","path":"/-"}])");
  ApplyFails("[1]", R"([{"op":"replace","path":"/-","value":2}])");
  ApplyFails("[1]", R"([{"op":"test","path":"/-","value":1}])");
  ApplyFails(R"({"a":[1]})", R"([{"op":"move","from":"/a/-","path":"/b"}])");
  ApplyFails(R"({"a":[1]})", R"([{"op":"copy","from":"/a/-","path":"/b"}])");
  ApplyFails("[[1]]", R"([{"op":"add","path":"/-/0","value":1}])");
}

TEST(JsonPatchTest, RootOperations) {
  EXPECT_EQ(ApplyOk(R"({"a":1})", R"([{"op":"replace","path":"","value":5}])"), J("5"));
  EXPECT_EQ(ApplyOk(R"("scalar")", R"([{"op":"replace","path":"","value":{"b":[]}}])"),
            J(R"({"b":[]})"));
  EXPECT_EQ(ApplyOk(R"({"a":1})", R"([{"op":"add","path":"","value":[1]}])"), J("[1]"));
  ApplyOk(R"({"a":1.0})", R"([{"op":"test","path":"","value":{"a":1}}])");
  EXPECT_NE(ApplyFails(R"({"a":1})", R"([{"op":"remove","path":""}])")
                .find("cannot remove the whole document"),
            std::string::npos);
  // Copying the root into itself copies the old document.
  EXPECT_EQ(ApplyOk(R"({"a":1})", R"([{"op":"copy","from":"","path":"/b"}])"),
            J(R"({"a":1,"b":{"a":1}})"));
  // Moving the root into a child is moving into its own child.
  ApplyFails(R"({"a":1})", R"([{"op":"move","from":"","path":"/b"}])");
  EXPECT_EQ(ApplyOk(R"({"a":1})", R"([{"op":"move","from":"","path":""}])"), J(R"({"a":1})"));
}

TEST(JsonPatchTest, MoveSemantics) {
  const std::string message =
      ApplyFails(R"({"a":{"b":1}})", R"([{"op":"move","from":"/a","path":"/a/b/c"}])");
  EXPECT_NE(message.find("own child"), std::string::npos) << message;
  ApplyFails(R"({"a":{"b":1}})", R"([{"op":"move","from":"/a","path":"/a/x"}])");
  // Prefix is per token, not per character.
  EXPECT_EQ(ApplyOk(R"({"a":1,"ab":{}})", R"([{"op":"move","from":"/a","path":"/ab/x"}])"),
            J(R"({"ab":{"x":1}})"));
  // Same location: no-op, but from must exist.
  EXPECT_EQ(ApplyOk(R"({"a":[1,2]})", R"([{"op":"move","from":"/a/1","path":"/a/1"}])"),
            J(R"({"a":[1,2]})"));
  ApplyFails(R"({"a":1})", R"([{"op":"move","from":"/b","path":"/b"}])");
  // Move into an ancestor replaces it.
  EXPECT_EQ(ApplyOk(R"({"a":{"b":{"c":1}}})", R"([{"op":"move","from":"/a/b","path":"/a"}])"),
            J(R"({"a":{"c":1}})"));
  // Move within an array: removal happens before insertion (RFC 6902 A.7).
  EXPECT_EQ(ApplyOk("[0,1,2,3]", R"([{"op":"move","from":"/0","path":"/3"}])"), J("[1,2,3,0]"));
  EXPECT_EQ(ApplyOk("[0,1,2,3]", R"([{"op":"move","from":"/3","path":"/0"}])"), J("[3,0,1,2]"));
  // Copy is deep: changing the copy leaves the source alone.
  EXPECT_EQ(ApplyOk(R"({"a":{"x":[1]}})", R"([{"op":"copy","from":"/a","path":"/b"},
                                              {"op":"add","path":"/b/x/-","value":2}])"),
            J(R"({"a":{"x":[1]},"b":{"x":[1,2]}})"));
  // Object member order survives remove/move (stable erase).
  json::value doc =
      ApplyOk(R"({"a":1,"b":2,"c":3,"d":4})", R"([{"op":"move","from":"/b","path":"/e"}])");
  EXPECT_EQ(json::serialize(doc), R"({"a":1,"c":3,"d":4,"e":2})");
}

TEST(JsonPatchTest, TestUsesJsonEquality) {
  ApplyOk(R"({"n":1})", R"([{"op":"test","path":"/n","value":1.0}])", kStrict);
  ApplyOk(R"({"n":1.0})", R"([{"op":"test","path":"/n","value":1}])", kStrict);
  ApplyOk(R"({"n":-0.0})", R"([{"op":"test","path":"/n","value":0}])", kStrict);
  ApplyOk(R"({"n":100})", R"([{"op":"test","path":"/n","value":1e2}])", kStrict);
  ApplyOk(R"({"n":18446744073709551615})",
          R"([{"op":"test","path":"/n","value":18446744073709551615}])", kStrict);
  ApplyOk(R"({"n":5})", R"([{"op":"test","path":"/n","value":5}])", kStrict);
  ApplyFails(R"({"n":1})", R"([{"op":"test","path":"/n","value":1.5}])", kStrict);
  ApplyFails(R"({"n":-1})", R"([{"op":"test","path":"/n","value":18446744073709551615}])", kStrict);
  // 2^53 + 1 is not the double 2^53.
  ApplyFails(R"({"n":9007199254740993})",
             R"([{"op":"test","path":"/n","value":9007199254740992.0}])", kStrict);
  ApplyFails(R"({"n":10})", R"([{"op":"test","path":"/n","value":"10"}])", kStrict);
  ApplyFails(R"({"n":0})", R"([{"op":"test","path":"/n","value":false}])", kStrict);
  ApplyFails(R"({"n":null})", R"([{"op":"test","path":"/n","value":false}])", kStrict);
  ApplyOk(R"({"o":{"a":[1,{"b":2.0}],"c":"x"}})",
          R"([{"op":"test","path":"/o","value":{"c":"x","a":[1.0,{"b":2}]}}])", kStrict);
  ApplyFails(R"({"o":{"a":1}})", R"([{"op":"test","path":"/o","value":{"a":1,"b":null}}])",
             kStrict);
  ApplyFails(R"({"o":[1,2]})", R"([{"op":"test","path":"/o","value":[2,1]}])", kStrict);
  ApplyFails(R"({"o":[1,2]})", R"([{"op":"test","path":"/o","value":[1,2,3]}])", kStrict);
}

TEST(JsonPatchTest, DeepNesting) {
  constexpr int kDepth = 300;
  json::value doc = json::object();
  json::value* node = &doc;
  std::string path;
  for (int i = 0; i < kDepth; ++i) {
    const std::string key = (i % 2 == 0) ? "k" + std::to_string(i) : "a/~" + std::to_string(i);
    node = &node->as_object()[key];
    *node = json::object();
    path += "/" + (i % 2 == 0 ? key : "a~1~0" + std::to_string(i));
  }
  (*node).as_object()["list"] = json::array{1, 2};
  const std::string patch_text = R"([{"op":"add","path":")" + path + R"(/list/1","value":"x"},
      {"op":"test","path":")" + path +
                                 R"(/list","value":[1,"x",2]},
      {"op":"copy","from":")" + path +
                                 R"(/list","path":"/copy"},
      {"op":"add","path":")" + path +
                                 R"(/new/a/b","value":true}])";
  ASSERT_TRUE(ApplyJsonPatch(doc, P(patch_text), kLenient).has_value());
  EXPECT_EQ(doc.as_object()["copy"], J(R"([1,"x",2])"));
  std::error_code ec;
  const json::value* added = doc.find_pointer(path + "/new/a/b", ec);
  ASSERT_NE(added, nullptr);
  EXPECT_EQ(*added, json::value(true));

  // Lenient creation of a long chain of missing objects.
  json::value empty = json::object();
  std::string long_path;
  for (int i = 0; i < kDepth; ++i) long_path += "/n";
  ASSERT_TRUE(ApplyJsonPatch(empty, P(R"([{"op":"add","path":")" + long_path + R"(","value":1}])"),
                             kLenient)
                  .has_value());
  const json::value* leaf = empty.find_pointer(long_path, ec);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(*leaf, json::value(1));
}

// ---------------------------------------------------------------------------------------------
// RFC 7386 JSON Merge Patch.

struct MergeCase {
  const char* target;
  const char* patch;
  const char* result;
};

TEST(JsonMergePatchTest, Rfc7386AppendixA) {
  const MergeCase cases[] = {
      {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
      {R"({"a":"b"})", R"({"a":null})", R"({})"},
      {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
      {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
      {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
      {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
      {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
      {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
      {R"({"a":"foo"})", "null", "null"},
      {R"({"a":"foo"})", R"("bar")", R"("bar")"},
      {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
      {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
      {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
  };
  for (const MergeCase& c : cases) {
    json::value target = J(c.target);
    ApplyMergePatch(target, J(c.patch));
    EXPECT_EQ(target, J(c.result))
        << c.target << " + " << c.patch << " = " << json::serialize(target);
  }
}

TEST(JsonMergePatchTest, Rfc7386SectionThreeExample) {
  json::value target = J(R"({"title":"Goodbye!","author":{"givenName":"John",
      "familyName":"Doe"},"tags":["example","sample"],"content":"This will be unchanged"})");
  ApplyMergePatch(target, J(R"({"title":"Hello!","phoneNumber":"+01-123-456-7890",
      "author":{"familyName":null},"tags":["example"]})"));
  EXPECT_EQ(target, J(R"({"title":"Hello!","author":{"givenName":"John"},"tags":["example"],
      "content":"This will be unchanged","phoneNumber":"+01-123-456-7890"})"));
}

TEST(JsonMergePatchTest, ScalarTargetsBecomeObjectsAndOrderIsKept) {
  json::value target = J(R"({"a":1,"b":2,"c":3})");
  ApplyMergePatch(target, J(R"({"b":null,"d":{"x":null,"y":1}})"));
  EXPECT_EQ(json::serialize(target), R"({"a":1,"c":3,"d":{"y":1}})");
  json::value scalar = J("7");
  ApplyMergePatch(scalar, J(R"({"k":{"n":null}})"));
  EXPECT_EQ(scalar, J(R"({"k":{}})"));
  json::value unchanged = J(R"({"a":[1]})");
  ApplyMergePatch(unchanged, J("{}"));
  EXPECT_EQ(unchanged, J(R"({"a":[1]})"));
}

}  // namespace
}  // namespace medkit::core::kv
