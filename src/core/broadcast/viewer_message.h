// Viewer messages (spec 6): the envelope {"event": "<stage>:<client_id>:<name>", "data": ...}
// and its transport encoding (6.2): plain JSON while small, base64(zlib(json)) when large, and
// "<index,count>" fragments of that base64 string when even the compressed form does not fit
// one transport message (Twitch's 5 KB cap). Every transport carries the same parts, so a
// MEDKit client decodes them the same way whichever way they came.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace medkit::core::broadcast {

struct EncodeLimits {
  size_t compress_at_bytes = 5000;       // JSON of this size or more is compressed
  size_t max_part_bytes = 5000;          // one transported string, fragment header included
  size_t max_encoded_bytes = 80 * 1024;  // base64 of the compressed message; beyond: refused
};

// {"event":<event>,"data":<data_json>}; data_json must be serialized JSON.
std::string Envelope(std::string_view event, std::string_view data_json);

// The strings to transport for one message, in order (one, unless fragmented).
// Fails with kInvalidArgument "message too large" past max_encoded_bytes.
Result<std::vector<std::string>> EncodeParts(std::string_view json, const EncodeLimits& limits);

// The inverse, as the MEDKit client does it (for tests and the native stream's docs).
// Returns the JSON text once every part is there.
Result<std::string> DecodeParts(const std::vector<std::string>& parts);

// zlib (RFC 1950) framing, the format pako.inflate expects.
std::string ZlibCompress(std::string_view bytes);
Result<std::string> ZlibInflate(std::string_view bytes);

// One message on its way to viewers, encoded once and shared by every transport and socket.
struct ViewerMessage {
  std::string client_id;
  std::string channel_id;  // empty for an extension-wide (global) message
  // The Twitch PubSub target: "broadcast" (one channel), "global" (every channel of the
  // extension) or "whisper-<opaque user id>" (one viewer of channel_id).
  std::string target;
  std::string event;     // "<stage>:<client_id>:<name>"
  std::string envelope;  // the decoded message
  std::vector<std::string> parts;  // what is transported (EncodeParts of envelope)
  // Non-empty for server-generated state events (channel_state_update, vote_update:<poll>,
  // json_store_update:<key>): a queued, undelivered message with the same key is superseded
  // by this one. Empty for custom events, which are never coalesced.
  std::string coalesce_key;
  uint64_t seq = 0;    // publication order, over the whole process
  int64_t at_ms = 0;   // publication time

  bool global() const { return channel_id.empty(); }
  bool whisper() const { return target.rfind("whisper-", 0) == 0; }
};
using ViewerMessagePtr = std::shared_ptr<const ViewerMessage>;

// A transport. Deliver() is called on the publishing thread and must not block: queue and
// return. Implementations are thread-safe.
class ViewerSink {
 public:
  virtual ~ViewerSink() = default;
  virtual void Deliver(const ViewerMessagePtr& message) = 0;
};

}  // namespace medkit::core::broadcast
