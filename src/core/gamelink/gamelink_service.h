// The GameLink protocol (spec 7), independent of sockets: one GameLinkConnection per game
// socket turns each request envelope into exactly one response envelope (7.2), and the shared
// GameLinkService turns what the core publishes (state, config, datastream, transactions,
// votes) into "update" pushes for the games that subscribed.
//
// The transport implements GameLinkOutput for each socket (send one envelope per frame, keep
// the socket's topic subscriptions) and GamePublisher (deliver one push frame to every socket
// subscribed to a topic). Topics are strings made by the Topic* functions below.
//
// Poll pushes follow the cadence of 7.5: none at create; one when a delayed poll turns active;
// at most one a second while votes change; exactly one "expired" when it ends; none after a
// delete; no periodic pushes 5 minutes after the last vote. Tick() (called every 100 ms or so)
// drives the timed ones.
//
// Thread-safe: connections are used from their socket's thread; the service from any.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/gamelink/link_service.h"
#include "core/poll/poll_service.h"
#include "core/purchase/transaction_service.h"
#include "core/result.h"

namespace medkit::core {
namespace auth {
class Authenticator;
}
namespace broadcast {
class MessagingService;
}
namespace kv {
class DocumentService;
}
namespace events {
class EventBus;
struct Event;
}  // namespace events
}  // namespace medkit::core

namespace medkit::core::gamelink {

// What one game socket offers the protocol. Called on the socket's thread.
class GameLinkOutput {
 public:
  virtual ~GameLinkOutput() = default;
  virtual void Send(std::string envelope) = 0;  // one JSON document, one frame
  virtual void Subscribe(const std::string& topic) = 0;
  virtual void Unsubscribe(const std::string& topic) = 0;
};

// Delivers a push to every socket subscribed to topic. Thread-safe, must not block.
class GamePublisher {
 public:
  virtual ~GamePublisher() = default;
  virtual void Publish(const std::string& topic, std::string envelope) = 0;
  // Whether any game socket is open (pushes are not built otherwise).
  virtual bool Active() const = 0;
};

// The services GameLink actions call. Linking and purchases are functions so the protocol can
// be tested without them; unset ones answer 501-like errors ("not available").
struct GameLinkDeps {
  const auth::Authenticator* auth = nullptr;
  kv::DocumentService* documents = nullptr;
  poll::PollService* polls = nullptr;
  broadcast::MessagingService* messaging = nullptr;
  const Clock* clock = nullptr;
  std::function<Result<GameSession>(std::string_view client_id, std::string_view pin,
                                    std::string_view game_id)>
      redeem_pin;
  std::function<Result<GameSession>(std::string_view client_id, std::string_view refresh,
                                    std::string_view game_id)>
      refresh;
  std::function<Result<std::vector<purchase::Transaction>>(
      std::string_view client_id, std::string_view channel_id, std::string_view sku)>
      unvalidated_transactions;
  std::function<Result<void>(std::string_view client_id, std::string_view channel_id,
                             std::string_view muxy_id, std::string_view details)>
      validate_transaction;
  std::function<Result<void>(std::string_view client_id, std::string_view channel_id,
                             std::string_view muxy_id, std::string_view sku,
                             std::string_view user_id)>
      refund_transaction;
};

struct GameLinkLimits {
  size_t max_broadcast_bytes = 8 * 1024;  // serialized data of a broadcast (spec 9)
  size_t max_json_depth = 64;
  size_t max_subscriptions = 256;         // topics per connection
  int64_t poll_push_interval_ms = 1000;   // while votes change
  int64_t poll_idle_ms = 5LL * 60 * 1000; // periodic pushes stop this long after the last vote
  size_t max_tracked_polls = 100'000;
  size_t max_metadata_name = 256;
  size_t max_metadata_logo = 1024 * 1024;
  int64_t match_idle_ms = 3600LL * 1000;  // a match untouched this long is gone (12.22)
  size_t max_matches = 10'000;            // per server
  size_t max_match_channels = 100;
  size_t max_matchmaking_bytes = 8 * 1024;
};

// Topic names (exposed for tests and the transport).
std::string TopicState(std::string_view client, std::string_view channel);  // channel "": ext
std::string TopicConfig(std::string_view client, std::string_view channel);
std::string TopicPoll(std::string_view client, std::string_view channel, std::string_view poll);
std::string TopicDatastream(std::string_view client, std::string_view channel);
std::string TopicPurchase(std::string_view client, std::string_view channel, std::string_view sku);
std::string TopicMatchPoll(std::string_view client, std::string_view match);
std::string TopicMatchmaking(std::string_view client, std::string_view channel);

// A server envelope: {"meta": {request_id, action, target, timestamp}, "data": data_json}.
std::string Envelope(uint32_t request_id, std::string_view action, std::string_view target,
                     int64_t timestamp_ms, std::string_view data_json);
// An error envelope: "errors": [{"number", "status", "title", "detail"}].
std::string ErrorEnvelope(uint32_t request_id, std::string_view action, std::string_view target,
                          int64_t timestamp_ms, int number, std::string_view title,
                          std::string_view detail);

class GameLinkService;

class GameLinkConnection {
 public:
  GameLinkConnection(GameLinkService& service, std::string client_id, GameLinkOutput& out);
  // One text frame from the game. Sends exactly one response for every request.
  void OnMessage(std::string_view text);

  bool authenticated() const { return authenticated_; }
  const auth::Identity& identity() const { return who_; }

 private:
  struct Request;
  void Dispatch(const Request& r);
  void Reply(const Request& r, std::string data_json);
  void Fail(const Request& r, const Error& error);
  void Fail(const Request& r, int number, std::string_view title, std::string_view detail);
  void Ok(const Request& r) { Reply(r, R"({"ok":true})"); }
  bool Track(const std::string& topic, bool subscribe);

  void Authenticate(const Request& r);
  void State(const Request& r);
  void Config(const Request& r);
  void Broadcast(const Request& r);
  void Poll(const Request& r);
  void Purchases(const Request& r);
  void Niche(const Request& r);
  void Match(const Request& r);
  void MatchPoll(const Request& r);

  GameLinkService& service_;
  std::string client_id_;
  GameLinkOutput& out_;
  bool authenticated_ = false;
  auth::Identity who_;
  std::string game_id_;
  std::vector<std::string> topics_;
};

class GameLinkService {
 public:
  // bus may be null; publisher must outlive the service (and is where pushes go).
  GameLinkService(GameLinkDeps deps, GameLinkLimits limits, events::EventBus* bus,
                  GamePublisher* publisher);
  ~GameLinkService();
  GameLinkService(const GameLinkService&) = delete;
  GameLinkService& operator=(const GameLinkService&) = delete;

  // Sends the timed poll pushes that are due.
  void Tick();

  // Starts following a poll for pushes (create, reconfigure, a subscription to its id).
  // quiet: the current state is known to the games (no push for it).
  void TrackPoll(const poll::PollRef& ref, const poll::PollConfig& config);
  void ForgetPoll(const poll::PollRef& ref);

  const GameLinkDeps& deps() const { return deps_; }
  const GameLinkLimits& limits() const { return limits_; }
  int64_t NowMs() const { return deps_.clock->NowMs(); }
  // The PollResult JSON of 7.5 for ref (the "get poll" response and the push).
  Result<std::string> PollResultJson(const poll::PollRef& ref);

  // Matches (7.4 "Matches", 12.22): channels grouped under a match id, kept in memory and
  // dropped match_idle_ms after the last operation on them. Match polls are one poll per
  // channel of the match (the same poll id), pushed as MatchPollResult to the match's
  // subscribers at the poll cadence.
  Result<void> CreateMatch(std::string_view client, std::string_view match);
  Result<void> TouchMatch(std::string_view client, std::string_view match);
  Result<void> AddMatchChannels(std::string_view client, std::string_view match,
                                const std::vector<std::string>& channels, bool add);
  Result<std::vector<std::string>> MatchChannels(std::string_view client, std::string_view match);
  Result<void> CreateMatchPoll(std::string_view client, std::string_view match,
                               const std::string& poll_id, const poll::PollConfig& config);
  Result<void> ReconfigureMatchPoll(std::string_view client, std::string_view match,
                                    const std::string& poll_id, const boost::json::value& config);
  Result<void> DeleteMatchPoll(std::string_view client, std::string_view match,
                               const std::string& poll_id);
  Result<std::string> MatchPollResultJson(std::string_view client, std::string_view match,
                                          const std::string& poll_id);

  // A matchmaking invite (12.21: produced by a REST hook) for the channel's subscribed games:
  // fields {data, twitch_username, twitch_id, is_follower, subscription_tier, bits_spent}.
  Result<void> Invite(std::string_view client, std::string_view channel,
                      const boost::json::value& invite);

  struct Counts {
    uint64_t pushes = 0;
    uint64_t poll_pushes = 0;
    size_t tracked_polls = 0;
  };
  Counts counts() const;

 private:
  void OnBusEvent(const events::Event& e);
  void PushPoll(const poll::PollRef& ref);

  struct Tracked {
    poll::PollRef ref;
    poll::PollConfig config;
    poll::PollStatus last_status = poll::PollStatus::kActive;
    bool dirty = false;
    int64_t last_push_ms = 0;
    int64_t last_activity_ms = 0;
  };

  struct MatchPollState {
    poll::PollConfig config;
    poll::PollStatus last_status = poll::PollStatus::kActive;
    bool dirty = false;
    int64_t last_push_ms = 0;
  };
  struct MatchState {
    std::vector<std::string> channels;
    int64_t touched_ms = 0;
    std::map<std::string, MatchPollState> polls;
  };
  MatchState* FindMatch(std::string_view client, std::string_view match);  // requires mu_
  void PushMatchPoll(const std::string& client, const std::string& match, const std::string& poll);

  GameLinkDeps deps_;
  GameLinkLimits limits_;
  events::EventBus* bus_;
  GamePublisher* publisher_;
  uint64_t subscription_ = 0;

  mutable std::mutex mu_;
  std::map<std::string, Tracked> polls_;  // guarded by mu_; key client|channel|poll
  std::map<std::string, MatchState> matches_;  // guarded by mu_; key client|match
  Counts counts_;                         // guarded by mu_
};

}  // namespace medkit::core::gamelink
