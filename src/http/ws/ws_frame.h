// RFC 6455 framing, our own: server frames are unmasked, so a message is framed once and the
// same bytes are written to every socket that should get it (encode once, write many). The
// parser takes the client's (masked) frames from a byte buffer, reassembles fragmented
// messages, and hands control frames over as they come. No I/O here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace medkit::http::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes we send.
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseUnsupported = 1003;
inline constexpr uint16_t kCloseInvalidData = 1007;
inline constexpr uint16_t kClosePolicy = 1008;
inline constexpr uint16_t kCloseTooBig = 1009;

// One unfragmented, unmasked server frame.
std::string EncodeFrame(Opcode opcode, std::string_view payload);
// A close frame with a status code and a short reason.
std::string EncodeClose(uint16_t code, std::string_view reason);

// Sec-WebSocket-Accept for a Sec-WebSocket-Key.
std::string AcceptKey(std::string_view key);

// Incremental parser of client frames.
class FrameParser {
 public:
  explicit FrameParser(size_t max_message_bytes) : max_message_(max_message_bytes) {}

  enum class Kind {
    kNeedMore,  // nothing complete in the buffer
    kMessage,   // a whole text or binary message: opcode(), payload
    kPing,
    kPong,
    kClose,     // close_code(); payload holds the reason
    kError,     // protocol violation: error_code() and error() say which; close the socket
  };

  // Parses from data[0, size) and returns the first complete item. *used is set to the bytes
  // consumed; advance by it and call again. kNeedMore with *used == 0 means the buffer holds
  // no complete frame; with *used > 0, a fragment was taken in and the caller goes on.
  Kind Next(const char* data, size_t size, size_t* used, std::string* payload);

  Opcode opcode() const { return message_opcode_; }
  uint16_t close_code() const { return close_code_; }
  uint16_t error_code() const { return error_code_; }
  const std::string& error() const { return error_; }

 private:
  Kind Fail(uint16_t code, std::string message);

  size_t max_message_;
  std::string partial_;  // fragments of a message received so far
  bool in_message_ = false;
  Opcode message_opcode_ = Opcode::kText;
  uint16_t close_code_ = 0;
  uint16_t error_code_ = 0;
  std::string error_;
};

}  // namespace medkit::http::ws
