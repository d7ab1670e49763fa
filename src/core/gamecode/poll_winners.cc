#include "core/gamecode/poll_winners.h"

#include <boost/json.hpp>
#include <unordered_map>

#include "core/poll/poll_service.h"

namespace medkit::core::gamecode {
namespace json = boost::json;

PollWinnersFn PollWinnersFromVoteLog(poll::PollService& polls) {
  return [&polls](const auth::Identity& who, std::string_view poll_id, int64_t correct,
                  int64_t cutoff_s) -> Result<std::vector<std::string>> {
    auto logs = polls.Logs(who, poll_id);
    if (!logs) return std::move(logs).error();
    // Oldest first: the last entry per user before the cutoff is that user's vote.
    std::vector<std::string> order;
    std::unordered_map<std::string, int64_t> last;
    for (const auto& entry : *logs) {
      boost::system::error_code ec;
      json::value v = json::parse(entry.json, ec);
      if (ec || !v.is_object()) continue;
      const json::object& o = v.get_object();
      auto text = [&](const char* key) -> std::string {
        auto it = o.find(key);
        return it != o.end() && it->value().is_string() ? std::string(it->value().get_string())
                                                        : std::string();
      };
      auto number = [&](const char* key) -> std::optional<int64_t> {
        auto it = o.find(key);
        if (it == o.end()) return std::nullopt;
        if (it->value().is_int64()) return it->value().get_int64();
        if (it->value().is_uint64()) return static_cast<int64_t>(it->value().get_uint64());
        return std::nullopt;
      };
      std::string user = text("identifier");
      if (user.empty() || user == text("opaque")) continue;  // no shared user id
      auto value = number("value");
      auto at_ms = number("timestamp");
      if (!value || !at_ms) continue;
      if (cutoff_s > 0 && *at_ms / 1000 > cutoff_s) continue;
      auto [it, fresh] = last.try_emplace(user, *value);
      if (fresh) {
        order.push_back(user);
      } else {
        it->second = *value;
      }
    }
    std::vector<std::string> winners;
    for (const auto& user : order) {
      if (last[user] == correct) winners.push_back(user);
    }
    return winners;
  };
}

}  // namespace medkit::core::gamecode
