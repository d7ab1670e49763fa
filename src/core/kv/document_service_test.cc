// DocumentService (spec 5.3, 5.4) on a MemoryStore with a FakeClock: the access table of the
// header comment, replace/read per kind, scoping, the PATCH forms, limits, expiry, optimistic
// concurrency (real contention, and conflicts injected through a StoreWrapper) and store
// failures.
#include "core/kv/document_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/result.h"
#include "storage/memory_store.h"
#include "storage/store.h"
#include "storage/store_wrapper.h"

namespace medkit::core::kv {
namespace {

namespace json = boost::json;
using auth::Identity;
using auth::Role;
using auth::Stage;

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr std::string_view kRefused = "The JWT role is not allowed to perform this operation.";

const DocKind kAllKinds[] = {
    DocKind::kExtensionState,       DocKind::kChannelState, DocKind::kViewerState,
    DocKind::kExtensionViewerState, DocKind::kHiddenState,  DocKind::kExtensionConfig,
    DocKind::kChannelConfig,
};

const char* KindName(DocKind kind) {
  switch (kind) {
    case DocKind::kExtensionState:
      return "extension_state";
    case DocKind::kChannelState:
      return "channel_state";
    case DocKind::kViewerState:
      return "viewer_state";
    case DocKind::kExtensionViewerState:
      return "extension_viewer_state";
    case DocKind::kHiddenState:
      return "extension_hidden_state";
    case DocKind::kExtensionConfig:
      return "config/extension";
    case DocKind::kChannelConfig:
      return "config/channel";
  }
  return "?";
}

bool IsState(DocKind kind) {
  return kind == DocKind::kExtensionState || kind == DocKind::kChannelState ||
         kind == DocKind::kViewerState || kind == DocKind::kExtensionViewerState;
}

// Parses test JSON; deep enough for the depth tests (boost's default limit is 32).
json::value J(std::string_view text) {
  json::parse_options options;
  options.max_depth = 1000;
  return json::parse(text, {}, options);
}

template <class T>
std::string ErrorText(const Result<T>& result) {
  return result ? std::string("ok") : result.error().message;
}

// An identity of ext1 with a channel and a shared user id.
Identity Who(Role role, std::string_view channel = "chan1", std::string_view user = "user1") {
  Identity id;
  id.client_id = "ext1";
  id.role = role;
  id.role_claim = std::string(auth::RoleName(role));
  id.channel_id = std::string(channel);
  id.user_id = std::string(user);
  id.opaque_user_id = user.empty() ? "Aanon" : "U" + std::string(user);
  return id;
}

Identity Viewer(std::string_view channel = "chan1", std::string_view user = "user1") {
  return Who(Role::kViewer, channel, user);
}
Identity Broadcaster(std::string_view channel = "chan1") {
  return Who(Role::kBroadcaster, channel, channel);
}
Identity OwnerBroadcaster(std::string_view channel = "owner") {
  Identity id = Who(Role::kBroadcaster, channel, channel);
  id.owner_broadcaster = true;
  return id;
}
Identity Admin(std::string_view channel = "chan1") { return Who(Role::kAdmin, channel, "admin9"); }
Identity ValidatedAdmin(std::string_view channel = "chan1") {
  Identity id = Who(Role::kAdmin, channel, "admin1");
  id.validated_admin = true;
  return id;
}
Identity Backend(std::string_view channel = "chan1") {
  return Who(Role::kBackend, channel, "owner");
}

// A string of JSON text {"v":"xxx..."} whose serialized size is exactly bytes.
json::value DocOfSize(size_t bytes) {
  constexpr size_t kOverhead = 8;  // {"v":""}
  json::object o;
  o["v"] = std::string(bytes - kOverhead, 'x');
  EXPECT_EQ(json::serialize(o).size(), bytes);
  return o;
}

// {"a":{"a":...{}}} with depth objects.
json::value Nested(size_t depth) {
  json::value v = json::object();
  for (size_t i = 1; i < depth; ++i) {
    json::object o;
    o["a"] = std::move(v);
    v = std::move(o);
  }
  return v;
}

// Every DocumentServiceTest runs twice: without and with the document read cache.
class DocumentServiceTest : public ::testing::TestWithParam<bool> {
 protected:
  DocumentServiceTest() : store_(clock_) { Reset(DocLimits{}); }

  // Rebuilds the service over the same store with other limits (or stage).
  void Reset(DocLimits limits, Stage stage = Stage::kSandbox) {
    if (GetParam()) limits.cache_bytes = 1 << 20;
    docs_ = std::make_unique<DocumentService>(store_, clock_, stage, limits);
  }

  // Reads straight from the store through a fresh, uncached service: for tests in which a
  // second service writes the same store (the cache of docs_ assumes it is the only writer).
  json::value ReadFresh(const Identity& who, DocKind kind) {
    DocumentService fresh(store_, clock_, Stage::kSandbox, DocLimits{});
    auto text = fresh.Read(who, kind);
    EXPECT_TRUE(text.has_value()) << ErrorText(text);
    return text ? J(*text) : json::value();
  }

  // Reads who's document of kind, parsed; fails the test on an error.
  json::value Read(const Identity& who, DocKind kind) {
    auto text = docs_->Read(who, kind);
    EXPECT_TRUE(text.has_value()) << KindName(kind) << ": " << ErrorText(text);
    return text ? J(*text) : json::value();
  }

  void ReplaceOk(const Identity& who, DocKind kind, std::string_view body) {
    auto done = docs_->Replace(who, kind, J(body));
    ASSERT_TRUE(done.has_value()) << KindName(kind) << " " << body << ": " << ErrorText(done);
  }

  void PatchOk(const Identity& who, DocKind kind, std::string_view body) {
    auto done = docs_->Patch(who, kind, J(body));
    ASSERT_TRUE(done.has_value()) << KindName(kind) << " " << body << ": " << ErrorText(done);
  }

  FakeClock clock_;
  storage::MemoryStore store_;
  std::unique_ptr<DocumentService> docs_;
};

// ---------------------------------------------------------------------------------------------
// Access table (header comment, spec 5.3 / 5.4)

struct Principal {
  const char* name;
  Identity who;
};

std::vector<Principal> Principals() {
  return {
      {"viewer", Viewer()},
      {"moderator-as-viewer", Viewer()},
      {"broadcaster", Broadcaster()},
      {"owner broadcaster", OwnerBroadcaster()},
      {"admin", Admin()},
      {"validated admin", ValidatedAdmin()},
      {"backend", Backend()},
  };
}

// Who may write kind, per the table.
bool MayWrite(std::string_view principal, DocKind kind) {
  const bool viewer = principal == "viewer" || principal == "moderator-as-viewer";
  const bool broadcaster = principal == "broadcaster" || principal == "owner broadcaster";
  switch (kind) {
    case DocKind::kExtensionState:
    case DocKind::kExtensionConfig:
      return principal == "validated admin" || principal == "backend" ||
             principal == "owner broadcaster";
    case DocKind::kChannelState:
    case DocKind::kChannelConfig:
      return !viewer && (broadcaster || principal == "admin" || principal == "validated admin" ||
                         principal == "backend");
    case DocKind::kViewerState:
    case DocKind::kExtensionViewerState:
      return true;
    case DocKind::kHiddenState:
      return principal == "validated admin" || principal == "backend";
  }
  return false;
}

bool MayRead(std::string_view principal, DocKind kind) {
  if (kind == DocKind::kHiddenState) {
    return principal == "validated admin" || principal == "backend";
  }
  return true;
}

TEST(DocumentPolicyTest, FullRoleTable) {
  for (const auto& p : Principals()) {
    for (DocKind kind : kAllKinds) {
      SCOPED_TRACE(std::string(p.name) + " on " + KindName(kind));
      auto read = CheckReadAccess(p.who, kind);
      EXPECT_EQ(read.has_value(), MayRead(p.name, kind));
      if (!read) {
        EXPECT_EQ(read.error().code, Errc::kForbidden);
        EXPECT_EQ(read.error().message, kRefused);
      }
      auto write = CheckWriteAccess(p.who, kind);
      EXPECT_EQ(write.has_value(), MayWrite(p.name, kind));
      if (!write) {
        EXPECT_EQ(write.error().code, Errc::kForbidden);
        EXPECT_EQ(write.error().message, kRefused);
      }
    }
  }
}

TEST(DocumentPolicyTest, FlagsOnlyCountForTheirRole) {
  // validated_admin / owner_broadcaster are what grant the extension-wide writes; an admin
  // without the flag is an ordinary admin.
  EXPECT_FALSE(CheckWriteAccess(Admin(), DocKind::kExtensionState).has_value());
  EXPECT_FALSE(CheckWriteAccess(Admin(), DocKind::kExtensionConfig).has_value());
  EXPECT_FALSE(CheckWriteAccess(Admin(), DocKind::kHiddenState).has_value());
  EXPECT_FALSE(CheckReadAccess(Admin(), DocKind::kHiddenState).has_value());
  EXPECT_FALSE(CheckWriteAccess(Broadcaster(), DocKind::kExtensionState).has_value());
  EXPECT_FALSE(CheckWriteAccess(OwnerBroadcaster(), DocKind::kHiddenState).has_value());
  EXPECT_FALSE(CheckReadAccess(OwnerBroadcaster(), DocKind::kHiddenState).has_value());
}

TEST_P(DocumentServiceTest, ServiceEnforcesTheTable) {
  for (const auto& p : Principals()) {
    for (DocKind kind : kAllKinds) {
      SCOPED_TRACE(std::string(p.name) + " on " + KindName(kind));
      const bool may_write = MayWrite(p.name, kind);
      auto replaced = docs_->Replace(p.who, kind, J(R"({"by":"replace"})"));
      EXPECT_EQ(replaced.has_value(), may_write) << ErrorText(replaced);
      if (!replaced) {
        EXPECT_EQ(replaced.error().code, Errc::kForbidden);
      }

      auto patched = docs_->Patch(p.who, kind, J(R"([{"op":"add","path":"/p","value":1}])"));
      EXPECT_EQ(patched.has_value(), may_write) << ErrorText(patched);
      if (!patched) {
        EXPECT_EQ(patched.error().code, Errc::kForbidden);
      }

      auto read = docs_->Read(p.who, kind);
      EXPECT_EQ(read.has_value(), MayRead(p.name, kind)) << ErrorText(read);
      if (!read) {
        EXPECT_EQ(read.error().code, Errc::kForbidden);
      }
    }
  }
  // A refused write leaves nothing behind: the hidden state was only written by privileged
  // callers, the extension state by the three allowed ones.
  EXPECT_EQ(Read(Backend(), DocKind::kHiddenState), J(R"({"by":"replace","p":1})"));
}

// ---------------------------------------------------------------------------------------------
// Replace and read

TEST_P(DocumentServiceTest, MissingDocumentReadsAsEmptyObject) {
  for (DocKind kind : kAllKinds) {
    auto text = docs_->Read(Backend(), kind);
    ASSERT_TRUE(text.has_value()) << KindName(kind) << ": " << ErrorText(text);
    EXPECT_EQ(*text, "{}") << KindName(kind);
  }
}

TEST_P(DocumentServiceTest, ReplaceReadRoundTripPerKind) {
  const Identity who = Backend();  // may write every kind
  int n = 0;
  for (DocKind kind : kAllKinds) {
    const std::string body =
        R"({"kind":")" + std::string(KindName(kind)) + R"(","n":)" + std::to_string(++n) +
        R"(,"nested":{"list":[1,"two",null,true,{"x":1.5}]},"unicode":"h\u00e9llo"})";
    ReplaceOk(who, kind, body);
    auto text = docs_->Read(who, kind);
    ASSERT_TRUE(text.has_value()) << ErrorText(text);
    EXPECT_EQ(J(*text), J(body)) << KindName(kind);
    // A read returns the stored text as it is.
    EXPECT_EQ(*text, json::serialize(J(body))) << KindName(kind);
  }
  // Each kind is its own document.
  n = 0;
  for (DocKind kind : kAllKinds) {
    EXPECT_EQ(Read(who, kind).at("n"), ++n) << KindName(kind);
  }
  // Replace replaces (no merge).
  ReplaceOk(who, DocKind::kChannelState, R"({"only":true})");
  EXPECT_EQ(Read(who, DocKind::kChannelState), J(R"({"only":true})"));
  ReplaceOk(who, DocKind::kChannelState, "{}");
  EXPECT_EQ(Read(who, DocKind::kChannelState), J("{}"));
}

TEST_P(DocumentServiceTest, ReplaceRequiresAnObject) {
  for (std::string_view body : {"[]", "[1,2]", "1", "\"text\"", "null", "true"}) {
    auto done = docs_->Replace(Backend(), DocKind::kChannelState, J(body));
    ASSERT_FALSE(done.has_value()) << body;
    EXPECT_EQ(done.error().code, Errc::kInvalidArgument) << body;
    EXPECT_EQ(done.error().message, "Malformed input body") << body;
  }
}

TEST_P(DocumentServiceTest, ReadAllStateAndAllConfig) {
  const Identity viewer = Viewer();
  ReplaceOk(Backend(), DocKind::kExtensionState, R"({"e":1})");
  ReplaceOk(Broadcaster(), DocKind::kChannelState, R"({"c":2})");
  ReplaceOk(viewer, DocKind::kViewerState, R"({"v":3})");
  ReplaceOk(viewer, DocKind::kExtensionViewerState, R"({"ev":4})");
  ReplaceOk(Backend(), DocKind::kHiddenState, R"({"secret":5})");
  ReplaceOk(Backend(), DocKind::kExtensionConfig, R"({"ec":6})");
  ReplaceOk(Broadcaster(), DocKind::kChannelConfig, R"({"cc":7})");

  auto all = docs_->ReadAllState(viewer);
  ASSERT_TRUE(all.has_value()) << ErrorText(all);
  EXPECT_EQ(J(*all), J(R"({"extension":{"e":1},"channel":{"c":2},"viewer":{"v":3},)"
                       R"("extension_viewer":{"ev":4}})"));

  auto config = docs_->ReadAllConfig(viewer);
  ASSERT_TRUE(config.has_value()) << ErrorText(config);
  EXPECT_EQ(J(*config), J(R"({"channel":{"cc":7},"extension":{"ec":6}})"));

  // A viewer on another channel without a shared id sees only the extension-wide parts.
  Identity stranger = Viewer("chan2", "");
  auto other = docs_->ReadAllState(stranger);
  ASSERT_TRUE(other.has_value()) << ErrorText(other);
  EXPECT_EQ(J(*other),
            J(R"({"extension":{"e":1},"channel":{},"viewer":{},"extension_viewer":{}})"));
  auto other_config = docs_->ReadAllConfig(stranger);
  ASSERT_TRUE(other_config.has_value());
  EXPECT_EQ(J(*other_config), J(R"({"channel":{},"extension":{"ec":6}})"));

  // No channel at all (a backend token without channel_id): channel parts read as {}.
  Identity no_channel = Backend("");
  auto config_without_channel = docs_->ReadAllConfig(no_channel);
  ASSERT_TRUE(config_without_channel.has_value()) << ErrorText(config_without_channel);
  EXPECT_EQ(J(*config_without_channel), J(R"({"channel":{},"extension":{"ec":6}})"));
  auto state_without_channel = docs_->ReadAllState(no_channel);
  ASSERT_TRUE(state_without_channel.has_value()) << ErrorText(state_without_channel);
  EXPECT_EQ(J(*state_without_channel).at("channel"), J("{}"));
  EXPECT_EQ(J(*state_without_channel).at("extension"), J(R"({"e":1})"));
}

// ---------------------------------------------------------------------------------------------
// Scoping

TEST_P(DocumentServiceTest, ChannelDocumentsAreScopedToTheChannel) {
  for (DocKind kind : {DocKind::kChannelState, DocKind::kChannelConfig}) {
    ReplaceOk(Broadcaster("chan1"), kind, R"({"ch":1})");
    ReplaceOk(Broadcaster("chan2"), kind, R"({"ch":2})");
    EXPECT_EQ(Read(Viewer("chan1", "someone"), kind), J(R"({"ch":1})")) << KindName(kind);
    EXPECT_EQ(Read(Viewer("chan2", "someone"), kind), J(R"({"ch":2})")) << KindName(kind);
    EXPECT_EQ(Read(Viewer("chan3", "someone"), kind), J("{}")) << KindName(kind);
  }
}

TEST_P(DocumentServiceTest, ViewerStateIsPerChannelAndViewer) {
  ReplaceOk(Viewer("chan1", "u1"), DocKind::kViewerState, R"({"mine":1})");
  EXPECT_EQ(Read(Viewer("chan1", "u1"), DocKind::kViewerState), J(R"({"mine":1})"));
  EXPECT_EQ(Read(Viewer("chan1", "u2"), DocKind::kViewerState), J("{}"));
  EXPECT_EQ(Read(Viewer("chan2", "u1"), DocKind::kViewerState), J("{}"));

  // Without a shared id the viewer key is the opaque id; sharing it later moves to the user id.
  Identity opaque = Viewer("chan1", "");
  opaque.opaque_user_id = "Uabc";
  ReplaceOk(opaque, DocKind::kViewerState, R"({"opaque":true})");
  EXPECT_EQ(Read(opaque, DocKind::kViewerState), J(R"({"opaque":true})"));
  Identity shared = opaque;
  shared.user_id = "abc";
  EXPECT_EQ(Read(shared, DocKind::kViewerState), J("{}"));
}

TEST_P(DocumentServiceTest, ExtensionViewerStateFollowsTheUserAcrossChannels) {
  ReplaceOk(Viewer("chan1", "u1"), DocKind::kExtensionViewerState, R"({"xp":10})");
  EXPECT_EQ(Read(Viewer("chan2", "u1"), DocKind::kExtensionViewerState), J(R"({"xp":10})"));
  EXPECT_EQ(Read(Viewer("chan1", "u2"), DocKind::kExtensionViewerState), J("{}"));

  // It needs a shared id: the opaque id is not enough.
  Identity anonymous = Viewer("chan1", "");
  auto read = docs_->Read(anonymous, DocKind::kExtensionViewerState);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(read.error().message, "user id required");
  auto replaced = docs_->Replace(anonymous, DocKind::kExtensionViewerState, J("{}"));
  ASSERT_FALSE(replaced.has_value());
  EXPECT_EQ(replaced.error().message, "user id required");
  auto patched = docs_->Patch(anonymous, DocKind::kExtensionViewerState, J(R"({"a":1})"));
  ASSERT_FALSE(patched.has_value());
  EXPECT_EQ(patched.error().message, "user id required");
}

TEST_P(DocumentServiceTest, ExtensionDocumentsAreSharedAcrossChannels) {
  for (DocKind kind :
       {DocKind::kExtensionState, DocKind::kHiddenState, DocKind::kExtensionConfig}) {
    ReplaceOk(Backend("chan1"), kind, R"({"global":1})");
    EXPECT_EQ(Read(Backend("chan2"), kind), J(R"({"global":1})")) << KindName(kind);
    EXPECT_EQ(Read(Backend(""), kind), J(R"({"global":1})")) << KindName(kind);
  }
}

TEST_P(DocumentServiceTest, ClientsAreIsolated) {
  const Identity ext1 = Backend();
  Identity ext2 = ext1;
  ext2.client_id = "ext2";
  for (DocKind kind : kAllKinds) ReplaceOk(ext1, kind, R"({"owner":"ext1"})");
  for (DocKind kind : kAllKinds) {
    EXPECT_EQ(Read(ext2, kind), J("{}")) << KindName(kind);
    EXPECT_EQ(Read(ext1, kind), J(R"({"owner":"ext1"})")) << KindName(kind);
  }
}

TEST_P(DocumentServiceTest, StagesAreIsolated) {
  for (DocKind kind : kAllKinds) ReplaceOk(Backend(), kind, R"({"stage":"sandbox"})");
  Reset(DocLimits{}, Stage::kProduction);
  for (DocKind kind : kAllKinds) EXPECT_EQ(Read(Backend(), kind), J("{}")) << KindName(kind);
}

TEST_P(DocumentServiceTest, ChannelAndUserIdsAreChecked) {
  auto no_channel = docs_->Replace(Broadcaster(""), DocKind::kChannelState, J("{}"));
  ASSERT_FALSE(no_channel.has_value());
  EXPECT_EQ(no_channel.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(no_channel.error().message, "channel id required");

  auto control = docs_->Replace(Broadcaster("chan\x1f"
                                            "1"),
                                DocKind::kChannelState, J("{}"));
  ASSERT_FALSE(control.has_value());
  EXPECT_EQ(control.error().code, Errc::kInvalidArgument);

  auto too_long =
      docs_->Replace(Broadcaster(std::string(257, 'c')), DocKind::kChannelState, J("{}"));
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code, Errc::kInvalidArgument);
  ReplaceOk(Broadcaster(std::string(256, 'c')), DocKind::kChannelState, "{}");

  auto bad_user = docs_->Replace(Viewer("chan1", "u\n1"), DocKind::kViewerState, J("{}"));
  ASSERT_FALSE(bad_user.has_value());
  EXPECT_EQ(bad_user.error().code, Errc::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// PATCH forms (spec 5.3.1)

TEST_P(DocumentServiceTest, JsonPatchArray) {
  const Identity b = Broadcaster();
  ReplaceOk(b, DocKind::kChannelState, R"({"a":1,"list":[1,2]})");
  PatchOk(b, DocKind::kChannelState,
          R"([{"op":"replace","path":"/a","value":2},{"op":"add","path":"/list/-","value":3},)"
          R"({"op":"add","path":"/deep/er","value":true},{"op":"test","path":"/a","value":2}])");
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"a":2,"list":[1,2,3],"deep":{"er":true}})"));

  // A failing op (here the final test) writes nothing.
  auto failed = docs_->Patch(b, DocKind::kChannelState,
                             J(R"([{"op":"replace","path":"/a","value":99},)"
                               R"({"op":"test","path":"/a","value":100}])"));
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"a":2,"list":[1,2,3],"deep":{"er":true}})"));

  // The root must stay an object.
  auto to_array =
      docs_->Patch(b, DocKind::kChannelState, J(R"([{"op":"replace","path":"","value":[1]}])"));
  ASSERT_FALSE(to_array.has_value());
  EXPECT_EQ(to_array.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(Read(b, DocKind::kChannelState).at("a"), 2);

  // An empty patch changes nothing; a patch of a missing document starts from {}.
  PatchOk(b, DocKind::kChannelState, "[]");
  PatchOk(Viewer(), DocKind::kViewerState, R"([{"op":"add","path":"/x","value":1}])");
  EXPECT_EQ(Read(Viewer(), DocKind::kViewerState), J(R"({"x":1})"));
}

TEST_P(DocumentServiceTest, MergePatchObject) {
  const Identity b = Broadcaster();
  ReplaceOk(b, DocKind::kChannelConfig, R"({"keep":1,"drop":2,"obj":{"x":1,"y":2},"arr":[1,2]})");
  PatchOk(b, DocKind::kChannelConfig,
          R"({"drop":null,"obj":{"y":null,"z":3},"arr":[9],"new":"n"})");
  EXPECT_EQ(Read(b, DocKind::kChannelConfig),
            J(R"({"keep":1,"obj":{"x":1,"z":3},"arr":[9],"new":"n"})"));
  // A merge patch of a missing document.
  PatchOk(Viewer(), DocKind::kExtensionViewerState, R"({"a":{"b":1},"gone":null})");
  EXPECT_EQ(Read(Viewer(), DocKind::kExtensionViewerState), J(R"({"a":{"b":1}})"));
}

TEST_P(DocumentServiceTest, PatchBodyMustBeArrayOrObject) {
  for (std::string_view body : {"1", "\"x\"", "null", "true"}) {
    auto done = docs_->Patch(Broadcaster(), DocKind::kChannelState, J(body));
    ASSERT_FALSE(done.has_value()) << body;
    EXPECT_EQ(done.error().code, Errc::kInvalidArgument) << body;
    EXPECT_EQ(done.error().message, "Malformed input body") << body;
  }
}

TEST_P(DocumentServiceTest, UserMapPatchesManyViewers) {
  ReplaceOk(Viewer("chan1", "u1"), DocKind::kExtensionViewerState, R"({"xp":1,"old":true})");
  for (const Identity& who : {Backend(), ValidatedAdmin()}) {
    PatchOk(who, DocKind::kExtensionViewerState,
            R"({"u1":{"xp":2,"old":null},"u2":[{"op":"add","path":"/xp","value":5}]})");
  }
  EXPECT_EQ(Read(Viewer("chan9", "u1"), DocKind::kExtensionViewerState), J(R"({"xp":2})"));
  EXPECT_EQ(Read(Viewer("chan9", "u2"), DocKind::kExtensionViewerState), J(R"({"xp":5})"));

  auto one = docs_->ReadExtensionViewer(Backend(), "u2");
  ASSERT_TRUE(one.has_value()) << ErrorText(one);
  EXPECT_EQ(J(*one), J(R"({"xp":5})"));
  auto missing = docs_->ReadExtensionViewer(ValidatedAdmin(), "nobody");
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(*missing, "{}");

  auto many = docs_->ReadExtensionViewers(ValidatedAdmin(), {"u1", "nobody", "u2"});
  ASSERT_TRUE(many.has_value()) << ErrorText(many);
  EXPECT_EQ(J(*many), J(R"({"u1":{"xp":2},"u2":{"xp":5}})"));

  // An empty map changes nothing.
  PatchOk(Backend(), DocKind::kExtensionViewerState, "{}");
}

TEST_P(DocumentServiceTest, OnlyBackendAndValidatedAdminsUseTheUserMap) {
  // An ordinary admin's object is a merge patch of its own document.
  Identity admin = Admin();
  PatchOk(admin, DocKind::kExtensionViewerState, R"({"u1":{"xp":100}})");
  EXPECT_EQ(Read(Viewer("chan1", "u1"), DocKind::kExtensionViewerState), J("{}"));
  EXPECT_EQ(Read(admin, DocKind::kExtensionViewerState), J(R"({"u1":{"xp":100}})"));
  // So is a viewer's.
  PatchOk(Viewer("chan1", "u3"), DocKind::kExtensionViewerState, R"({"u1":{"xp":100}})");
  EXPECT_EQ(Read(Viewer("chan1", "u1"), DocKind::kExtensionViewerState), J("{}"));

  // Multi-user reads are for backend and validated admins only.
  for (const Identity& who : {Viewer(), Broadcaster(), OwnerBroadcaster(), Admin()}) {
    auto many = docs_->ReadExtensionViewers(who, {"u1"});
    ASSERT_FALSE(many.has_value());
    EXPECT_EQ(many.error().code, Errc::kForbidden);
    auto one = docs_->ReadExtensionViewer(who, "u1");
    ASSERT_FALSE(one.has_value());
    EXPECT_EQ(one.error().code, Errc::kForbidden);
  }
}

TEST_P(DocumentServiceTest, ChannelMapPatchesManyChannels) {
  ReplaceOk(Broadcaster("c1"), DocKind::kChannelConfig, R"({"skus":{"a":{"price":1}}})");
  for (const Identity& who : {Backend(), Admin()}) {
    PatchOk(who, DocKind::kChannelConfig,
            R"({"c1":{"skus":{"b":{"price":2}}},"c2":[{"op":"add","path":"/on","value":true}]})");
  }
  EXPECT_EQ(Read(Viewer("c1"), DocKind::kChannelConfig),
            J(R"({"skus":{"a":{"price":1},"b":{"price":2}}})"));
  EXPECT_EQ(Read(Viewer("c2"), DocKind::kChannelConfig), J(R"({"on":true})"));
  // The patching admin's own channel was not touched.
  EXPECT_EQ(Read(Viewer("chan1"), DocKind::kChannelConfig), J("{}"));

  // A broadcaster's object is a merge patch of its own channel config.
  PatchOk(Broadcaster("c3"), DocKind::kChannelConfig, R"({"c1":{"hijack":true}})");
  EXPECT_EQ(Read(Viewer("c3"), DocKind::kChannelConfig), J(R"({"c1":{"hijack":true}})"));
  EXPECT_EQ(Read(Viewer("c1"), DocKind::kChannelConfig).as_object().count("hijack"), 0u);

  // Channel state has no map form: a backend object is a merge patch of its own channel.
  PatchOk(Backend("chan1"), DocKind::kChannelState, R"({"c1":{"x":1}})");
  EXPECT_EQ(Read(Viewer("chan1"), DocKind::kChannelState), J(R"({"c1":{"x":1}})"));
  EXPECT_EQ(Read(Viewer("c1"), DocKind::kChannelState), J("{}"));
}

TEST_P(DocumentServiceTest, MapIsAllOrNothing) {
  ReplaceOk(Viewer("chan1", "u1"), DocKind::kExtensionViewerState, R"({"v":1})");
  ReplaceOk(Viewer("chan1", "u2"), DocKind::kExtensionViewerState, R"({"v":2})");
  const std::string failing[] = {
      // The second target's test op fails.
      R"({"u1":{"v":10},"u2":[{"op":"test","path":"/v","value":999}]})",
      // An entry that is not a patch.
      R"({"u1":{"v":10},"u2":5})",
      R"({"u1":{"v":10},"u2":"x"})",
      // An id that is not acceptable.
      R"({"u1":{"v":10},"bad\u0001id":{"v":1}})",
      R"({"u1":{"v":10},"":{"v":1}})",
      // One target would get too large.
      R"({"u1":{"v":10},"u2":{"big":")" + std::string(17000, 'x') + R"("}})",
      // One target's root would stop being an object.
      R"({"u1":{"v":10},"u2":[{"op":"replace","path":"","value":3}]})",
  };
  for (const std::string& body : failing) {
    SCOPED_TRACE(body.substr(0, 80));
    auto done = docs_->Patch(Backend(), DocKind::kExtensionViewerState, J(body));
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(Read(Viewer("chan1", "u1"), DocKind::kExtensionViewerState), J(R"({"v":1})"));
    EXPECT_EQ(Read(Viewer("chan1", "u2"), DocKind::kExtensionViewerState), J(R"({"v":2})"));
  }

  ReplaceOk(Broadcaster("c1"), DocKind::kChannelConfig, R"({"v":1})");
  auto channel_map = docs_->Patch(Admin(), DocKind::kChannelConfig,
                                  J(R"({"c1":{"v":10},"c2":[{"op":"remove","path":"/missing"}]})"));
  ASSERT_FALSE(channel_map.has_value());
  EXPECT_EQ(Read(Viewer("c1"), DocKind::kChannelConfig), J(R"({"v":1})"));
  EXPECT_EQ(Read(Viewer("c2"), DocKind::kChannelConfig), J("{}"));
}

// ---------------------------------------------------------------------------------------------
// Limits (spec 5.3.2)

TEST_P(DocumentServiceTest, StateSizeLimit) {
  const Identity b = Broadcaster();
  ReplaceOk(b, DocKind::kChannelState, R"({"orig":1})");
  auto over = docs_->Replace(b, DocKind::kChannelState, DocOfSize(16 * 1024 + 1));
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(over.error().message, "document too large");
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"orig":1})"));

  ASSERT_TRUE(docs_->Replace(b, DocKind::kChannelState, DocOfSize(16 * 1024)).has_value());
  // A patch that grows it past the limit writes nothing.
  auto grown = docs_->Patch(b, DocKind::kChannelState, J(R"({"more":1})"));
  ASSERT_FALSE(grown.has_value());
  EXPECT_EQ(grown.error().message, "document too large");
  EXPECT_EQ(Read(b, DocKind::kChannelState), DocOfSize(16 * 1024));

  // Every state kind has the state limit, hidden state included.
  for (DocKind kind : {DocKind::kExtensionState, DocKind::kViewerState,
                       DocKind::kExtensionViewerState, DocKind::kHiddenState}) {
    auto big = docs_->Replace(Backend(), kind, DocOfSize(16 * 1024 + 1));
    EXPECT_FALSE(big.has_value()) << KindName(kind);
  }
}

TEST_P(DocumentServiceTest, ConfigSizeLimit) {
  for (DocKind kind : {DocKind::kExtensionConfig, DocKind::kChannelConfig}) {
    ReplaceOk(Backend(), kind, R"({"orig":1})");
    auto over = docs_->Replace(Backend(), kind, DocOfSize(64 * 1024 + 1));
    ASSERT_FALSE(over.has_value()) << KindName(kind);
    EXPECT_EQ(over.error().message, "document too large");
    EXPECT_EQ(Read(Backend(), kind), J(R"({"orig":1})"));
    auto exact = docs_->Replace(Backend(), kind, DocOfSize(64 * 1024));
    EXPECT_TRUE(exact.has_value()) << KindName(kind) << ": " << ErrorText(exact);
  }
}

TEST_P(DocumentServiceTest, ConfiguredSizeLimits) {
  DocLimits limits;
  limits.state_max_bytes = 100;
  limits.config_max_bytes = 200;
  Reset(limits);
  EXPECT_TRUE(docs_->Replace(Backend(), DocKind::kChannelState, DocOfSize(100)).has_value());
  EXPECT_FALSE(docs_->Replace(Backend(), DocKind::kChannelState, DocOfSize(101)).has_value());
  EXPECT_TRUE(docs_->Replace(Backend(), DocKind::kChannelConfig, DocOfSize(200)).has_value());
  EXPECT_FALSE(docs_->Replace(Backend(), DocKind::kChannelConfig, DocOfSize(201)).has_value());
}

TEST_P(DocumentServiceTest, DepthLimit) {
  const Identity b = Broadcaster();
  ReplaceOk(b, DocKind::kChannelState, R"({"orig":1})");
  auto deep = docs_->Replace(b, DocKind::kChannelState, Nested(65));
  ASSERT_FALSE(deep.has_value());
  EXPECT_EQ(deep.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(deep.error().message, "JSON nesting too deep (limit 64)");
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"orig":1})"));
  ASSERT_TRUE(docs_->Replace(b, DocKind::kChannelState, Nested(64)).has_value());
  EXPECT_EQ(Read(b, DocKind::kChannelState), Nested(64));

  // A patch of a shallow document that would take it past the limit writes nothing.
  ReplaceOk(b, DocKind::kChannelState, R"({"orig":1})");
  json::object patch;
  patch["deep"] = Nested(64);  // {"orig":1,"deep":<depth 64>} has depth 65
  auto deeper = docs_->Patch(b, DocKind::kChannelState, patch);
  ASSERT_FALSE(deeper.has_value());
  EXPECT_EQ(deeper.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(deeper.error().message, "JSON nesting too deep (limit 64)");
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"orig":1})"));
  json::object fits;
  fits["deep"] = Nested(63);
  auto ok = docs_->Patch(b, DocKind::kChannelState, fits);
  EXPECT_TRUE(ok.has_value()) << ErrorText(ok);
}

// Regression: a document 33..64 levels deep is accepted by POST (max_depth 64), but PATCH
// re-parses the stored text with boost::json's default parse_options (max_depth 32), fails,
// and reports "stored document is not valid JSON" (kInternal, HTTP 500).
TEST_P(DocumentServiceTest, PatchWorksOnDocumentsDeeperThan32Levels) {
  const Identity b = Broadcaster();
  for (size_t depth : {32, 33, 64}) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    json::value doc = Nested(depth);
    ASSERT_TRUE(docs_->Replace(b, DocKind::kChannelState, doc).has_value());
    auto patched = docs_->Patch(b, DocKind::kChannelState, J(R"({"x":1})"));
    ASSERT_TRUE(patched.has_value()) << ErrorText(patched);
    doc.as_object()["x"] = 1;
    EXPECT_EQ(Read(b, DocKind::kChannelState), doc);
  }
}

TEST_P(DocumentServiceTest, BatchIdLimit) {
  json::object map;
  for (int i = 0; i < 1000; ++i) map["u" + std::to_string(i)] = json::object{{"i", i}};
  PatchOk(Backend(), DocKind::kExtensionViewerState, json::serialize(map));
  EXPECT_EQ(Read(Viewer("c", "u999"), DocKind::kExtensionViewerState), J(R"({"i":999})"));

  map["u1000"] = json::object{{"i", 1000}};
  map["u0"] = json::object{{"i", -1}};
  auto over = docs_->Patch(Backend(), DocKind::kExtensionViewerState, map);
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(over.error().message, "Too many ids specified");
  EXPECT_EQ(Read(Viewer("c", "u0"), DocKind::kExtensionViewerState), J(R"({"i":0})"));
  EXPECT_EQ(Read(Viewer("c", "u1000"), DocKind::kExtensionViewerState), J("{}"));

  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back("u" + std::to_string(i));
  auto all = docs_->ReadExtensionViewers(Backend(), ids);
  ASSERT_TRUE(all.has_value()) << ErrorText(all);
  EXPECT_EQ(J(*all).as_object().size(), 1000u);
  ids.push_back("u1000");
  auto too_many = docs_->ReadExtensionViewers(Backend(), ids);
  ASSERT_FALSE(too_many.has_value());
  EXPECT_EQ(too_many.error().message, "Too many ids specified");

  // Channel maps share the limit.
  json::object channels;
  for (int i = 0; i <= 1000; ++i) channels["c" + std::to_string(i)] = json::object();
  auto channel_over = docs_->Patch(Backend(), DocKind::kChannelConfig, channels);
  ASSERT_FALSE(channel_over.has_value());
  EXPECT_EQ(channel_over.error().message, "Too many ids specified");
}

// ---------------------------------------------------------------------------------------------
// Expiry

TEST_P(DocumentServiceTest, StateExpiresThirtyDaysAfterTheLastWrite) {
  const Identity b = Broadcaster();
  ReplaceOk(b, DocKind::kChannelState, R"({"v":1})");
  clock_.AdvanceMs(29 * kDayMs);
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"v":1})"));
  ReplaceOk(b, DocKind::kChannelState, R"({"v":2})");  // restarts the 30 days
  clock_.AdvanceMs(29 * kDayMs);
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"v":2})"));
  clock_.AdvanceMs(kDayMs - 1);  // 30 days minus 1 ms after the last write
  EXPECT_EQ(Read(b, DocKind::kChannelState), J(R"({"v":2})"));
  clock_.AdvanceMs(1);  // exactly state_ttl_ms after the last write
  auto text = docs_->Read(b, DocKind::kChannelState);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, "{}");
}

TEST_P(DocumentServiceTest, PatchAlsoRestartsTheClock) {
  const Identity v = Viewer();
  ReplaceOk(v, DocKind::kViewerState, R"({"a":1})");
  clock_.AdvanceMs(29 * kDayMs);
  PatchOk(v, DocKind::kViewerState, R"({"b":2})");
  clock_.AdvanceMs(29 * kDayMs);
  EXPECT_EQ(Read(v, DocKind::kViewerState), J(R"({"a":1,"b":2})"));
  clock_.AdvanceMs(kDayMs);
  EXPECT_EQ(Read(v, DocKind::kViewerState), J("{}"));
  // A patch after expiry starts from an empty document.
  PatchOk(v, DocKind::kViewerState, R"([{"op":"add","path":"/c","value":3}])");
  EXPECT_EQ(Read(v, DocKind::kViewerState), J(R"({"c":3})"));
}

TEST_P(DocumentServiceTest, EveryStateKindExpiresAndAllStateAgrees) {
  const Identity who = Backend();
  for (DocKind kind : kAllKinds) ReplaceOk(who, kind, R"({"here":true})");
  clock_.AdvanceMs(30LL * kDayMs + 1);
  for (DocKind kind : kAllKinds) {
    const json::value expected = IsState(kind) ? J("{}") : J(R"({"here":true})");
    EXPECT_EQ(Read(who, kind), expected) << KindName(kind);
  }
  auto all = docs_->ReadAllState(who);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(J(*all), J(R"({"extension":{},"channel":{},"viewer":{},"extension_viewer":{}})"));
  auto viewers = docs_->ReadExtensionViewers(who, {who.user_id});
  ASSERT_TRUE(viewers.has_value());
  EXPECT_EQ(*viewers, "{}");
}

TEST_P(DocumentServiceTest, HiddenStateAndConfigNeverExpire) {
  const Identity who = Backend();
  for (DocKind kind : {DocKind::kHiddenState, DocKind::kExtensionConfig, DocKind::kChannelConfig}) {
    // An array: a backend's object on channel config would be a channel map.
    PatchOk(who, kind, R"([{"op":"add","path":"/forever","value":1}])");
  }
  clock_.AdvanceMs(3650 * kDayMs);
  for (DocKind kind : {DocKind::kHiddenState, DocKind::kExtensionConfig, DocKind::kChannelConfig}) {
    EXPECT_EQ(Read(who, kind), J(R"({"forever":1})")) << KindName(kind);
  }
  auto config = docs_->ReadAllConfig(who);
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(J(*config), J(R"({"channel":{"forever":1},"extension":{"forever":1}})"));
}

TEST_P(DocumentServiceTest, ConfiguredStateTtl) {
  DocLimits limits;
  limits.state_ttl_ms = 1000;
  Reset(limits);
  ReplaceOk(Viewer(), DocKind::kViewerState, R"({"a":1})");
  clock_.AdvanceMs(999);
  EXPECT_EQ(Read(Viewer(), DocKind::kViewerState), J(R"({"a":1})"));
  clock_.AdvanceMs(1);
  EXPECT_EQ(Read(Viewer(), DocKind::kViewerState), J("{}"));
}

// ---------------------------------------------------------------------------------------------
// Optimistic concurrency

TEST_P(DocumentServiceTest, ConcurrentPatchesLoseNothing) {
  // 8 threads x 200 PATCHes, each appending one distinct number to the same array. A patch that
  // returns kConflict (16 lost races in a row) is retried by the caller, as a client would on
  // 409. Every acknowledged patch must appear exactly once: no lost update, no double apply.
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  ReplaceOk(Backend(), DocKind::kChannelState, R"({"log":[]})");

  std::atomic<int> conflicts{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Identity who = Broadcaster();
      for (int i = 0; i < kPerThread; ++i) {
        json::array patch;
        patch.push_back(json::object{{"op", "add"}, {"path", "/log/-"}, {"value", t * 1000 + i}});
        while (true) {
          auto done = docs_->Patch(who, DocKind::kChannelState, patch);
          if (done) break;
          if (done.error().code != Errc::kConflict) {
            failures.fetch_add(1);
            break;
          }
          conflicts.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);

  json::value doc = Read(Backend(), DocKind::kChannelState);
  const json::array& log = doc.at("log").as_array();
  EXPECT_EQ(log.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int64_t> seen;
  std::vector<int64_t> last(kThreads, -1);
  for (const auto& v : log) {
    const int64_t n = v.as_int64();
    EXPECT_TRUE(seen.insert(n).second) << "applied twice: " << n;
    // Each thread's patches land in its own order.
    const int64_t t = n / 1000;
    ASSERT_LT(t, kThreads);
    EXPECT_GT(n % 1000, last[t]);
    last[t] = n % 1000;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
  RecordProperty("conflicts_returned", conflicts.load());
}

// Fails the first `failures` Apply() calls with `code`; counts calls.
class FailingApply final : public storage::StoreWrapper {
 public:
  FailingApply(storage::Store& target, int failures, Errc code = Errc::kConflict)
      : StoreWrapper(target), failures_left_(failures), code_(code) {}

  Result<storage::ApplyResult> Apply(const storage::WriteBatch& batch) override {
    ++applies_;
    if (failures_left_ > 0) {
      --failures_left_;
      return MakeError(code_, "injected");
    }
    return StoreWrapper::Apply(batch);
  }
  Result<std::vector<std::optional<storage::Entry>>> MultiGet(
      std::span<const std::string> keys) override {
    ++multi_gets_;
    return StoreWrapper::MultiGet(keys);
  }

  int applies() const { return applies_; }
  int multi_gets() const { return multi_gets_; }

 private:
  int failures_left_;
  Errc code_;
  int applies_ = 0;
  int multi_gets_ = 0;
};

TEST_P(DocumentServiceTest, PatchRetriesInjectedConflicts) {
  ReplaceOk(Broadcaster(), DocKind::kChannelState, R"({"n":1})");
  for (int failures : {1, 3, 15}) {
    SCOPED_TRACE("failures: " + std::to_string(failures));
    FailingApply store(store_, failures);
    DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
    auto done = docs.Patch(
        Broadcaster(), DocKind::kChannelState,
        J(R"([{"op":"add","path":"/f)" + std::to_string(failures) + R"(","value":true}])"));
    ASSERT_TRUE(done.has_value()) << ErrorText(done);
    EXPECT_EQ(store.applies(), failures + 1);
    EXPECT_EQ(store.multi_gets(), failures + 1);  // every attempt reads afresh
  }
  EXPECT_EQ(ReadFresh(Broadcaster(), DocKind::kChannelState),
            J(R"({"n":1,"f1":true,"f3":true,"f15":true})"));
}

TEST_P(DocumentServiceTest, PatchGivesUpAfterSixteenConflicts) {
  ReplaceOk(Broadcaster(), DocKind::kChannelState, R"({"n":1})");
  ReplaceOk(Viewer("chan1", "u1"), DocKind::kExtensionViewerState, R"({"v":1})");
  for (int failures : {16, 1000}) {
    FailingApply store(store_, failures);
    DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
    auto done = docs.Patch(Broadcaster(), DocKind::kChannelState, J(R"({"n":2})"));
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, Errc::kConflict);
    EXPECT_EQ(done.error().message, "concurrent update conflict, retry the request");
    EXPECT_EQ(store.applies(), 16);
  }
  EXPECT_EQ(Read(Broadcaster(), DocKind::kChannelState), J(R"({"n":1})"));

  // The same for a user map: nothing of it is written.
  FailingApply store(store_, 16);
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
  auto map =
      docs.Patch(Backend(), DocKind::kExtensionViewerState, J(R"({"u1":{"v":2},"u2":{"v":2}})"));
  ASSERT_FALSE(map.has_value());
  EXPECT_EQ(map.error().code, Errc::kConflict);
  EXPECT_EQ(Read(Viewer("chan1", "u1"), DocKind::kExtensionViewerState), J(R"({"v":1})"));
  EXPECT_EQ(Read(Viewer("chan1", "u2"), DocKind::kExtensionViewerState), J("{}"));
}

// Before forwarding its first Apply(), writes a competing version of the batch's first key
// straight into the target store, so the forwarded batch meets a real version conflict.
class RacingWriter final : public storage::StoreWrapper {
 public:
  RacingWriter(storage::Store& target, std::string competing)
      : StoreWrapper(target), competing_(std::move(competing)) {}

  Result<storage::ApplyResult> Apply(const storage::WriteBatch& batch) override {
    ++applies_;
    if (applies_ == 1 && !batch.ops().empty()) {
      auto put = target().Put(batch.ops().front().key, competing_);
      EXPECT_TRUE(put.has_value());
    }
    return StoreWrapper::Apply(batch);
  }
  int applies() const { return applies_; }

 private:
  std::string competing_;
  int applies_ = 0;
};

TEST_P(DocumentServiceTest, PatchReappliesOnTopOfTheCompetingWrite) {
  ReplaceOk(Broadcaster(), DocKind::kChannelState, R"({"a":1})");
  RacingWriter store(store_, R"({"a":1,"theirs":true})");
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
  auto done = docs.Patch(Broadcaster(), DocKind::kChannelState, J(R"({"mine":true})"));
  ASSERT_TRUE(done.has_value()) << ErrorText(done);
  EXPECT_EQ(store.applies(), 2);
  EXPECT_EQ(ReadFresh(Broadcaster(), DocKind::kChannelState), J(R"({"a":1,"theirs":true,"mine":true})"));
}

TEST_P(DocumentServiceTest, PatchOfNewDocumentConflictsWithConcurrentCreate) {
  // The first write of a document expects it to be absent (version 0).
  RacingWriter store(store_, R"({"created":"elsewhere"})");
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
  auto done =
      docs.Patch(Viewer(), DocKind::kViewerState, J(R"([{"op":"add","path":"/mine","value":1}])"));
  ASSERT_TRUE(done.has_value()) << ErrorText(done);
  EXPECT_EQ(store.applies(), 2);
  EXPECT_EQ(Read(Viewer(), DocKind::kViewerState), J(R"({"created":"elsewhere","mine":1})"));
}

// ---------------------------------------------------------------------------------------------
// Store failures

// Every call of the chosen kind fails with code.
class BrokenStore final : public storage::StoreWrapper {
 public:
  BrokenStore(storage::Store& target, Errc code, bool reads, bool writes)
      : StoreWrapper(target), code_(code), reads_(reads), writes_(writes) {}

  Result<std::optional<storage::Entry>> Get(std::string_view key) override {
    if (reads_) return MakeError(code_, "injected read failure");
    return StoreWrapper::Get(key);
  }
  Result<std::vector<std::optional<storage::Entry>>> MultiGet(
      std::span<const std::string> keys) override {
    if (reads_) return MakeError(code_, "injected read failure");
    return StoreWrapper::MultiGet(keys);
  }
  Result<storage::ApplyResult> Apply(const storage::WriteBatch& batch) override {
    ++applies_;
    if (writes_) return MakeError(code_, "injected write failure");
    return StoreWrapper::Apply(batch);
  }
  int applies() const { return applies_; }

 private:
  Errc code_;
  bool reads_;
  bool writes_;
  int applies_ = 0;
};

TEST_P(DocumentServiceTest, WriteFailurePropagates) {
  ReplaceOk(Broadcaster(), DocKind::kChannelState, R"({"n":1})");
  BrokenStore store(store_, Errc::kInternal, /*reads=*/false, /*writes=*/true);
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});

  auto replaced = docs.Replace(Broadcaster(), DocKind::kChannelState, J(R"({"n":2})"));
  ASSERT_FALSE(replaced.has_value());
  EXPECT_EQ(replaced.error().code, Errc::kInternal);

  auto patched = docs.Patch(Broadcaster(), DocKind::kChannelState, J(R"({"n":3})"));
  ASSERT_FALSE(patched.has_value());
  EXPECT_EQ(patched.error().code, Errc::kInternal);
  EXPECT_EQ(store.applies(), 2);  // not retried

  auto map = docs.Patch(Backend(), DocKind::kExtensionViewerState, J(R"({"u1":{"v":1}})"));
  ASSERT_FALSE(map.has_value());
  EXPECT_EQ(map.error().code, Errc::kInternal);

  EXPECT_EQ(Read(Broadcaster(), DocKind::kChannelState), J(R"({"n":1})"));
}

TEST_P(DocumentServiceTest, UnavailableIsNotRetried) {
  BrokenStore store(store_, Errc::kUnavailable, /*reads=*/false, /*writes=*/true);
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
  auto patched = docs.Patch(Broadcaster(), DocKind::kChannelState, J(R"({"n":3})"));
  ASSERT_FALSE(patched.has_value());
  EXPECT_EQ(patched.error().code, Errc::kUnavailable);
  EXPECT_EQ(store.applies(), 1);
}

TEST_P(DocumentServiceTest, ReadFailurePropagates) {
  BrokenStore store(store_, Errc::kInternal, /*reads=*/true, /*writes=*/false);
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
  auto expect_internal = [](const auto& result, const char* what) {
    ASSERT_FALSE(result.has_value()) << what;
    EXPECT_EQ(result.error().code, Errc::kInternal) << what;
  };
  expect_internal(docs.Read(Viewer(), DocKind::kChannelState), "Read");
  expect_internal(docs.ReadAllState(Viewer()), "ReadAllState");
  expect_internal(docs.ReadAllConfig(Viewer()), "ReadAllConfig");
  expect_internal(docs.ReadExtensionViewers(Backend(), {"u1"}), "ReadExtensionViewers");
  expect_internal(docs.ReadExtensionViewer(Backend(), "u1"), "ReadExtensionViewer");
  expect_internal(docs.Patch(Broadcaster(), DocKind::kChannelState, J(R"({"n":1})")), "Patch");
  EXPECT_EQ(store.applies(), 0);  // a patch that could not read writes nothing
}

TEST_P(DocumentServiceTest, CorruptStoredDocumentIsInternal) {
  // Whatever wrote the text, a patch refuses to build on a stored value that is not JSON.
  ReplaceOk(Broadcaster(), DocKind::kChannelState, R"({"n":1})");
  RacingWriter store(store_, "not json");
  DocumentService docs(store, clock_, Stage::kSandbox, DocLimits{});
  auto done = docs.Patch(Broadcaster(), DocKind::kChannelState, J(R"({"n":2})"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, Errc::kInternal);
}

INSTANTIATE_TEST_SUITE_P(Cache, DocumentServiceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Cached" : "Uncached";
                         });

}  // namespace
}  // namespace medkit::core::kv
