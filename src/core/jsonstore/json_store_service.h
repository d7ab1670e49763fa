// JSON store (spec 5.5, 6.4, 8, 9, 12 item 5): named JSON objects that servers and games
// write and every viewer reads.
//
// Policy:
//   GET json_store?id=    any role
//   POST json_store?id=   broadcaster (including PIN-issued game tokens), admin, backend
// Ids: "default" when empty; letters, digits and '_' (optionally after a "global-" prefix), at
// most max_id_bytes. Ids starting with "global" are extension-wide; the others belong to the
// token's channel_id (400 "channel id required" without one).
//
// Storage: one key per object, j␟<stage>␟<client>␟<channel|"">␟<id>, holding the object's
// serialized text, which GET returns as it is. A write replaces the object and resets its
// expiry (value_ttl_ms, 14 days, after the write). Each write publishes
// "json_store_update:<id>" with {"id": <id>, "value": <object>} on the event bus, to the
// channel (or extension-wide, channel "", for global ids).
//
// Thread-safe; last writer wins (a write does not depend on the previous value).
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/events/event_bus.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::jsonstore {

struct JsonStoreLimits {
  int64_t value_ttl_ms = 14LL * 24 * 3600 * 1000;
  size_t value_size_limit = 2048;  // the serialized object must be shorter than this ("< 2 KB")
  size_t max_id_bytes = 64;
};

class JsonStoreService {
 public:
  // events may be null (no events published).
  JsonStoreService(storage::Store& store, const Clock& clock, auth::Stage stage,
                   JsonStoreLimits limits, events::EventBus* events = nullptr);

  // GET json_store?id=: the stored object's JSON text; 404 "Not Found" when there is none.
  Result<std::string> Read(const auth::Identity& who, std::string_view id);

  // POST json_store?id=: stores value (a JSON object) under id and publishes the update.
  Result<void> Write(const auth::Identity& who, std::string_view id,
                     const boost::json::value& value);

  const JsonStoreLimits& limits() const { return limits_; }

 private:
  struct Target {
    std::string key;
    std::string id;
    bool global = false;
  };
  Result<Target> Resolve(const auth::Identity& who, std::string_view id) const;

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  JsonStoreLimits limits_;
  events::EventBus* events_;
};

}  // namespace medkit::core::jsonstore
