// Who is calling: the verified claims of a request's token, reduced to what the policy needs.
#pragma once

#include <string>
#include <string_view>

namespace medkit::core::auth {

enum class Stage { kSandbox, kProduction };

std::string_view StageName(Stage stage);

// Effective privilege levels (spec 4.4): moderator maps to viewer, external to backend.
enum class Role { kViewer, kBroadcaster, kAdmin, kBackend };

std::string_view RoleName(Role role);

struct Identity {
  std::string client_id;
  Role role = Role::kViewer;
  std::string role_claim;  // the role string as the token carried it
  std::string channel_id;
  std::string opaque_user_id;
  std::string user_id;  // real Twitch id; empty when the viewer has not shared identity
  std::string allowed_stage;
  int64_t expires_at_s = 0;
  // An admin whose user_id is the extension owner or a listed administrator; in the sandbox
  // stage every admin token counts as validated (spec 4.2: role validation is skipped).
  bool validated_admin = false;
  // A broadcaster whose channel (or user id) is the extension owner's ("privileged broadcaster").
  bool owner_broadcaster = false;
  // The "gl" claim of a token issued by LinkService (PIN and GameLink tokens): the link it
  // belongs to. Empty for every other token. Such a token is usable only while its link is
  // (Authenticator::SetLinkCheck).
  std::string link_id;

  // Viewer key (spec 4.6): user_id if present, else opaque_user_id.
  const std::string& ViewerKey() const { return user_id.empty() ? opaque_user_id : user_id; }
  bool IsPrivileged() const { return role == Role::kAdmin || role == Role::kBackend; }
};

}  // namespace medkit::core::auth
