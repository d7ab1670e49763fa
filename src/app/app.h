// Wiring: the one place that knows every concrete type. Builds the store, the extension
// registry, the authenticator, the core services, the router with every route family, and the
// server, in that order; tears them down in reverse.
#pragma once

#include <memory>

#include "app/config.h"
#include "core/clock.h"
#include "core/result.h"

namespace medkit::http {
class Router;
}
namespace medkit::core::events {
class EventBus;
}

namespace medkit::app {

class App {
 public:
  // clock must outlive the App.
  static core::Result<std::unique_ptr<App>> Create(const AppConfig& config,
                                                   const core::Clock& clock);
  ~App();

  // In-process entry point (the ApiTest fixture and the server both use it).
  http::Router& router();
  // The core's event bus (tests subscribe to it; transports will).
  core::events::EventBus& events();

  // Binds the listeners; returns the bound port.
  core::Result<uint16_t> Listen();
  // The GameLink port bound by Listen() (--gamelink-port), or -1.
  int gamelink_port() const;
  // Serves until SIGINT/SIGTERM (or Stop()), then drains and flushes the store.
  void Run();
  void Stop();

 private:
  struct Impl;
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace medkit::app
