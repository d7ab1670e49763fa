#include "core/users/user_directory.h"

#include <atomic>
#include <unordered_set>

namespace medkit::core::users {

namespace {

constexpr char kSep = '\x1f';
constexpr size_t kMaxIdBytes = 256;

std::atomic<uint64_t> next_instance_id{1};

struct SeenSet {
  uint64_t owner = 0;
  std::unordered_set<std::string> keys;
};

SeenSet& ThreadSeen(uint64_t owner) {
  thread_local SeenSet seen;
  if (seen.owner != owner) {
    seen.keys.clear();
    seen.owner = owner;
  }
  return seen;
}

bool Listable(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes || id == "0") return false;
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

UserDirectory::UserDirectory(storage::Store& store, auth::Stage stage, UserDirectoryOptions options)
    : store_(store), stage_(stage), options_(options), instance_id_(next_instance_id.fetch_add(1)) {
  if (options_.page_size == 0) options_.page_size = 1;
}

std::string UserDirectory::Prefix(std::string_view client_id) const {
  std::string p = "uid";
  p.push_back(kSep);
  p.append(auth::StageName(stage_)).push_back(kSep);
  p.append(client_id).push_back(kSep);
  p.append("u").push_back(kSep);
  return p;
}

void UserDirectory::Record(const auth::Identity& who) {
  if (!Listable(who.user_id) || who.client_id.empty()) return;
  std::string key = Prefix(who.client_id) + who.user_id;
  SeenSet& seen = ThreadSeen(instance_id_);
  if (seen.keys.count(key)) return;
  if (!store_.Put(key, "")) return;  // not remembered: the next request tries again
  if (seen.keys.size() >= options_.dedupe_per_thread) seen.keys.clear();
  seen.keys.insert(std::move(key));
}

Result<UserPage> UserDirectory::List(const auth::Identity& who, std::string_view cursor) {
  if (who.role != auth::Role::kBackend && !who.validated_admin) {
    return MakeError(Errc::kForbidden, "The JWT role is not allowed to perform this operation.");
  }
  if (cursor == "0") cursor = {};
  if (cursor.size() > kMaxIdBytes) return MakeError(Errc::kInvalidArgument, "Invalid cursor");
  const std::string prefix = Prefix(who.client_id);
  std::string start_after = cursor.empty() ? std::string() : prefix + std::string(cursor);
  // One more than a page tells whether another page follows.
  auto entries = store_.Scan(prefix, start_after, options_.page_size + 1);
  if (!entries) return std::move(entries).error();
  UserPage page;
  for (const auto& e : *entries) {
    if (page.user_ids.size() == options_.page_size) break;
    page.user_ids.push_back(e.key.substr(prefix.size()));
  }
  page.next = entries->size() > options_.page_size ? page.user_ids.back() : "0";
  return page;
}

}  // namespace medkit::core::users
