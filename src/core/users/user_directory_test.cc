// UserDirectory (spec 5.14): recording user ids (deduplicated per thread), paging with the
// cursor, roles, and scoping per extension.
#include "core/users/user_directory.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/clock.h"
#include "storage/memory_store.h"
#include "storage/store_wrapper.h"

namespace medkit::core::users {
namespace {

using auth::Identity;
using auth::Role;

Identity Who(Role role, std::string user, std::string client = "ext", bool validated = false) {
  Identity id;
  id.client_id = std::move(client);
  id.role = role;
  id.channel_id = "chan";
  id.user_id = std::move(user);
  id.validated_admin = validated;
  return id;
}

// Counts Apply calls (each Record that writes is one).
class CountingStore : public storage::StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<storage::ApplyResult> Apply(const storage::WriteBatch& batch) override {
    ++applies;
    return StoreWrapper::Apply(batch);
  }
  int applies = 0;
};

class UserDirectoryTest : public ::testing::Test {
 protected:
  UserDirectoryTest() : memory_(clock_), store_(memory_) {}
  UserDirectory Make(size_t page_size) {
    return UserDirectory(store_, auth::Stage::kSandbox, UserDirectoryOptions{page_size});
  }
  FakeClock clock_;
  storage::MemoryStore memory_;
  CountingStore store_;
  Identity backend_ = Who(Role::kBackend, "dev");
};

TEST_F(UserDirectoryTest, PagesThroughRecordedUsers) {
  UserDirectory dir = Make(3);
  for (const char* u : {"105", "101", "103", "102", "107", "104", "106"}) {
    dir.Record(Who(Role::kViewer, u));
  }
  dir.Record(Who(Role::kViewer, ""));                       // not shared
  dir.Record(Who(Role::kViewer, "0"));                      // the cursor's end marker
  dir.Record(Who(Role::kViewer, std::string("a\x01", 2)));  // control character
  dir.Record(Who(Role::kViewer, "900", "other-ext"));
  auto page = dir.List(backend_, "0");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->user_ids, (std::vector<std::string>{"101", "102", "103"}));
  EXPECT_EQ(page->next, "103");
  page = dir.List(backend_, page->next);
  EXPECT_EQ(page->user_ids, (std::vector<std::string>{"104", "105", "106"}));
  EXPECT_EQ(page->next, "106");
  page = dir.List(backend_, page->next);
  EXPECT_EQ(page->user_ids, (std::vector<std::string>{"107"}));
  EXPECT_EQ(page->next, "0");
  page = dir.List(backend_, "");  // no cursor: from the start
  EXPECT_EQ(page->user_ids.front(), "101");
  // Exactly a page left: the next call is empty and ends.
  dir.Record(Who(Role::kViewer, "108"));
  dir.Record(Who(Role::kViewer, "109"));
  page = dir.List(backend_, "106");
  EXPECT_EQ(page->user_ids, (std::vector<std::string>{"107", "108", "109"}));
  EXPECT_EQ(page->next, "0");
  page = dir.List(Who(Role::kBackend, "x", "other-ext"), "0");
  EXPECT_EQ(page->user_ids, std::vector<std::string>{"900"});
  EXPECT_EQ(page->next, "0");
}

TEST_F(UserDirectoryTest, RecordWritesEachUserOnce) {
  UserDirectory dir = Make(1000);
  for (int i = 0; i < 5; ++i) dir.Record(Who(Role::kViewer, "42"));
  dir.Record(Who(Role::kBroadcaster, "42"));
  EXPECT_EQ(store_.applies, 1);
  dir.Record(Who(Role::kAdmin, "43"));
  EXPECT_EQ(store_.applies, 2);
  // A second directory (e.g. after a restart) writes again; the key is the same.
  UserDirectory again = Make(1000);
  again.Record(Who(Role::kViewer, "42"));
  EXPECT_EQ(store_.applies, 3);
  auto page = again.List(backend_, "0");
  EXPECT_EQ(page->user_ids, (std::vector<std::string>{"42", "43"}));
}

TEST_F(UserDirectoryTest, Roles) {
  UserDirectory dir = Make(10);
  dir.Record(Who(Role::kViewer, "1"));
  for (const Identity& who :
       {Who(Role::kViewer, "1"), Who(Role::kBroadcaster, "1"), Who(Role::kAdmin, "1")}) {
    auto page = dir.List(who, "0");
    ASSERT_FALSE(page);
    EXPECT_EQ(page.error().code, Errc::kForbidden);
  }
  EXPECT_TRUE(dir.List(Who(Role::kAdmin, "1", "ext", true), "0"));
  auto bad = dir.List(backend_, std::string(300, 'x'));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "Invalid cursor");
}

}  // namespace
}  // namespace medkit::core::users
