// The extensions a server knows: client id, secret, owner and administrators (spec 4.4).
// Immutable after start-up, so reads need no locking.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.h"

namespace medkit::core::auth {

struct ExtensionInfo {
  std::string client_id;
  std::string secret;  // raw key bytes (the base64 secret from the config, decoded)
  std::string owner_id;
  std::vector<std::string> admin_ids;

  bool IsAdministrator(std::string_view user_id) const;
};

class ExtensionRegistry {
 public:
  // Adds an extension; secret_b64 is the base64 secret as Twitch shows it.
  Result<void> Add(std::string client_id, std::string_view secret_b64, std::string owner_id,
                   std::vector<std::string> admin_ids);
  // nullptr if unknown.
  const ExtensionInfo* Find(std::string_view client_id) const;
  size_t size() const { return extensions_.size(); }

 private:
  std::unordered_map<std::string, ExtensionInfo> extensions_;
};

}  // namespace medkit::core::auth
