// Shared-identity listing (spec 5.14): the Twitch user ids an extension has seen, for
// GET user_ids (backend or validated admin).
//
// Populated from the user_id claim of every verified token: the app installs Record() as the
// Authenticator's verified-token hook, which runs once per token per thread (on a miss of the
// authenticator's per-thread cache), so cached requests pay nothing. Record() also keeps a
// per-thread set of the users it wrote, so each user costs one Store Put per thread per process.
// Every role's user_id is recorded (the spec says "any request"); ids that are empty, longer
// than 256 bytes, contain control characters, or are "0" (the cursor's end marker) are not.
//
// Keys: "uid␟<stage>␟<client>␟u␟<user_id>" → "" with no expiry (spec 8: none). Listing is a
// Scan in byte order of the user id; the cursor is the last user id returned ("0" = start on
// input, = end on output). Pages hold at most page_size ids (1000).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::users {

struct UserDirectoryOptions {
  size_t page_size = 1000;
  size_t dedupe_per_thread = 100'000;  // users remembered per thread before the set is reset
};

struct UserPage {
  std::string next;  // "0" when the listing is complete
  std::vector<std::string> user_ids;
};

class UserDirectory {
 public:
  UserDirectory(storage::Store& store, auth::Stage stage, UserDirectoryOptions options);

  // Records who.user_id for who.client_id (no-op for ids not listed, see above). Quick,
  // thread-safe, never fails the request: a store error only means the id is retried next time.
  void Record(const auth::Identity& who);

  // GET user_ids?cursor=: backend or validated admin.
  Result<UserPage> List(const auth::Identity& who, std::string_view cursor);

  const UserDirectoryOptions& options() const { return options_; }

 private:
  std::string Prefix(std::string_view client_id) const;

  storage::Store& store_;
  auth::Stage stage_;
  UserDirectoryOptions options_;
  uint64_t instance_id_;  // keys the per-thread dedupe set
};

}  // namespace medkit::core::users
