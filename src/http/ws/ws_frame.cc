#include "http/ws/ws_frame.h"

#include <openssl/sha.h>

#include "core/auth/jwt.h"

namespace medkit::http::ws {

namespace {

void AppendHeader(std::string& out, Opcode opcode, size_t length) {
  out.push_back(static_cast<char>(0x80 | static_cast<uint8_t>(opcode)));
  if (length < 126) {
    out.push_back(static_cast<char>(length));
  } else if (length <= 0xFFFF) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>((length >> 8) & 0xFF));
    out.push_back(static_cast<char>(length & 0xFF));
  } else {
    out.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      out.push_back(static_cast<char>((static_cast<uint64_t>(length) >> shift) & 0xFF));
    }
  }
}

}  // namespace

std::string EncodeFrame(Opcode opcode, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  AppendHeader(out, opcode, payload.size());
  out.append(payload);
  return out;
}

std::string EncodeClose(uint16_t code, std::string_view reason) {
  std::string body;
  body.push_back(static_cast<char>(code >> 8));
  body.push_back(static_cast<char>(code & 0xFF));
  body.append(reason.substr(0, 120));
  return EncodeFrame(Opcode::kClose, body);
}

std::string AcceptKey(std::string_view key) {
  std::string text(key);
  text += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return core::auth::Base64Encode(
      std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

FrameParser::Kind FrameParser::Fail(uint16_t code, std::string message) {
  error_code_ = code;
  error_ = std::move(message);
  return Kind::kError;
}

FrameParser::Kind FrameParser::Next(const char* data, size_t size, size_t* used,
                                    std::string* payload) {
  *used = 0;
  if (size < 2) return Kind::kNeedMore;
  const auto* p = reinterpret_cast<const uint8_t*>(data);
  const bool fin = (p[0] & 0x80) != 0;
  if ((p[0] & 0x70) != 0) return Fail(kCloseProtocolError, "reserved bits set");
  const auto opcode = static_cast<Opcode>(p[0] & 0x0F);
  const bool masked = (p[1] & 0x80) != 0;
  if (!masked) return Fail(kCloseProtocolError, "client frames must be masked");
  uint64_t length = p[1] & 0x7F;
  size_t header = 2;
  if (length == 126) {
    if (size < 4) return Kind::kNeedMore;
    length = (static_cast<uint64_t>(p[2]) << 8) | p[3];
    header = 4;
  } else if (length == 127) {
    if (size < 10) return Kind::kNeedMore;
    length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
    header = 10;
  }
  const bool control = (static_cast<uint8_t>(opcode) & 0x08) != 0;
  if (control && (length > 125 || !fin)) return Fail(kCloseProtocolError, "bad control frame");
  if (!control && length + partial_.size() > max_message_) {
    return Fail(kCloseTooBig, "message too big");
  }
  if (size < header + 4 + length) return Kind::kNeedMore;
  const uint8_t* mask = p + header;
  const uint8_t* body = mask + 4;
  *used = header + 4 + static_cast<size_t>(length);

  auto unmask_into = [&](std::string& out) {
    size_t base = out.size();
    out.resize(base + length);
    for (size_t i = 0; i < length; ++i) out[base + i] = static_cast<char>(body[i] ^ mask[i & 3]);
  };

  switch (opcode) {
    case Opcode::kPing:
    case Opcode::kPong:
    case Opcode::kClose: {
      payload->clear();
      unmask_into(*payload);
      if (opcode == Opcode::kPing) return Kind::kPing;
      if (opcode == Opcode::kPong) return Kind::kPong;
      close_code_ = kCloseNormal;
      if (payload->size() >= 2) {
        close_code_ = static_cast<uint16_t>((static_cast<uint8_t>((*payload)[0]) << 8) |
                                            static_cast<uint8_t>((*payload)[1]));
        payload->erase(0, 2);
      } else if (payload->size() == 1) {
        return Fail(kCloseProtocolError, "bad close frame");
      }
      return Kind::kClose;
    }
    case Opcode::kText:
    case Opcode::kBinary:
      if (in_message_) return Fail(kCloseProtocolError, "new message inside a fragmented one");
      message_opcode_ = opcode;
      partial_.clear();
      unmask_into(partial_);
      if (!fin) {
        in_message_ = true;
        return Kind::kNeedMore;  // consumed (*used > 0): call again for the continuation
      }
      payload->swap(partial_);
      partial_.clear();
      return Kind::kMessage;
    case Opcode::kContinuation:
      if (!in_message_) return Fail(kCloseProtocolError, "continuation without a message");
      unmask_into(partial_);
      if (!fin) return Kind::kNeedMore;
      in_message_ = false;
      payload->swap(partial_);
      partial_.clear();
      return Kind::kMessage;
  }
  return Fail(kCloseProtocolError, "unknown opcode");
}

}  // namespace medkit::http::ws
