#include "core/auth/extension_registry.h"

#include <algorithm>

#include "core/auth/identity.h"
#include "core/auth/jwt.h"

namespace medkit::core::auth {

std::string_view StageName(Stage stage) {
  return stage == Stage::kSandbox ? "sandbox" : "production";
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kBroadcaster:
      return "broadcaster";
    case Role::kAdmin:
      return "admin";
    case Role::kBackend:
      return "backend";
  }
  return "viewer";
}

bool ExtensionInfo::IsAdministrator(std::string_view user_id) const {
  if (user_id.empty()) return false;
  if (user_id == owner_id) return true;
  return std::find(admin_ids.begin(), admin_ids.end(), user_id) != admin_ids.end();
}

Result<void> ExtensionRegistry::Add(std::string client_id, std::string_view secret_b64,
                                    std::string owner_id, std::vector<std::string> admin_ids) {
  if (client_id.empty()) return MakeError(Errc::kInvalidArgument, "extension client_id is empty");
  auto secret = Base64Decode(secret_b64);
  if (!secret || secret->empty()) {
    return MakeError(Errc::kInvalidArgument,
                     "extension " + client_id + ": secret is not non-empty base64");
  }
  ExtensionInfo info{client_id, std::move(*secret), std::move(owner_id), std::move(admin_ids)};
  extensions_[std::move(client_id)] = std::move(info);
  return {};
}

const ExtensionInfo* ExtensionRegistry::Find(std::string_view client_id) const {
  auto it = extensions_.find(std::string(client_id));
  return it == extensions_.end() ? nullptr : &it->second;
}

}  // namespace medkit::core::auth
