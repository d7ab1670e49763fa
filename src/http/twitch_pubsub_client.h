// TwitchPubSubClient: the Twitch Extension PubSub transport (spec 6.3). A ViewerSink that
// posts every viewer message of a registered extension to Helix `POST <api_base>/extensions/
// pubsub`, one request per transported part, within Twitch's rate limit.
//
// Deliver() (publishing threads) only checks the extension and queues the message in a
// core::broadcast::PubSubQueue (rate limit per channel and for global, coalescing of state
// events, bounded custom events, contiguous fragments, retries: see pubsub_queue.h), then wakes
// the client's own thread. That thread runs an Asio event loop with a timer: it takes what the
// queue allows and posts it over a small pool of keep-alive HTTP/1.1 connections (at most
// max_connections requests at once), plain http:// or https:// (OpenSSL, the system's CA
// store or ca_file, SNI and host name verification). Requests are built by
// core/broadcast/twitch_pubsub.h.
//
// Messages whose client id is not a registered extension with a secret and an owner id are
// skipped (counted; the first one is logged). Beast and Asio stay inside the .cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/broadcast/pubsub_queue.h"
#include "core/broadcast/viewer_message.h"
#include "core/result.h"

namespace medkit::core {
class Clock;
}
namespace medkit::core::auth {
class ExtensionRegistry;
}

namespace medkit::http {

struct TwitchPubSubOptions {
  std::string api_base = "https://api.twitch.tv/helix";  // http:// or https://, optional path
  std::string ca_file;  // https: PEM file of the CAs to trust; empty: the system's store
  core::broadcast::PubSubQueueOptions queue;
  int max_connections = 4;          // concurrent requests (and pooled connections)
  int request_timeout_ms = 10'000;  // connect + TLS handshake, and write + read, each
  int shutdown_grace_ms = 2'000;    // Stop(): in-flight requests get this long
};

class TwitchPubSubClient final : public core::broadcast::ViewerSink {
 public:
  // Checks api_base and ca_file (kInvalidArgument) and sets up TLS (kInternal if OpenSSL
  // fails). The
  // registry and the clock must outlive the client. Does not start the thread.
  static core::Result<std::unique_ptr<TwitchPubSubClient>> Create(
      TwitchPubSubOptions options, const core::auth::ExtensionRegistry& registry,
      const core::Clock& clock);
  ~TwitchPubSubClient() override;  // Stop()
  TwitchPubSubClient(const TwitchPubSubClient&) = delete;
  TwitchPubSubClient& operator=(const TwitchPubSubClient&) = delete;

  // Starts the client's thread. Once.
  void Start();
  // Stops taking new work, gives in-flight requests shutdown_grace_ms, then closes the
  // connections and joins the thread. What is still queued is not sent. Idempotent;
  // thread-safe; not to be called on the client's own thread.
  void Stop();

  // ViewerSink: queue and return (never blocks on the network). Thread-safe.
  void Deliver(const core::broadcast::ViewerMessagePtr& message) override;

  struct Counts {
    uint64_t skipped = 0;  // messages of an unknown extension, or one without secret/owner
    core::broadcast::PubSubQueue::Counts queue;
  };
  Counts counts() const;  // thread-safe

  // Appends the counts as Prometheus text (medkit_twitch_pubsub_*). Thread-safe.
  void RenderMetrics(std::string& out) const;

  struct Impl;  // defined in the .cc only

 private:
  explicit TwitchPubSubClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace medkit::http
