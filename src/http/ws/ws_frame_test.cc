// RFC 6455 framing: server frames (lengths at the 125/126/65535/65536 boundaries), the
// handshake key (the RFC's own sample), and the client-frame parser (masking, fragmented
// messages with interleaved control frames, split input, limits and violations).
#include "http/ws/ws_frame.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace medkit::http::ws {
namespace {

// A masked client frame.
std::string ClientFrame(uint8_t first_byte, const std::string& payload,
                        const std::string& mask = "\x11\x22\x33\x44") {
  std::string out;
  out.push_back(static_cast<char>(first_byte));
  size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((uint64_t(n) >> s) & 0xFF));
  }
  out += mask;
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(payload[i] ^ mask[i & 3]));
  return out;
}

struct Item {
  FrameParser::Kind kind;
  std::string payload;
};

// Feeds bytes in chunks of `step`, as a socket would, and collects every item.
std::vector<Item> ParseAll(FrameParser& parser, const std::string& bytes, size_t step) {
  std::vector<Item> items;
  std::string buffer;
  for (size_t fed = 0; fed < bytes.size();) {
    size_t n = std::min(step, bytes.size() - fed);
    buffer.append(bytes, fed, n);
    fed += n;
    size_t pos = 0;
    for (;;) {
      size_t used = 0;
      std::string payload;
      auto kind = parser.Next(buffer.data() + pos, buffer.size() - pos, &used, &payload);
      pos += used;
      if (kind == FrameParser::Kind::kNeedMore) {
        if (used == 0) break;
        continue;
      }
      items.push_back({kind, payload});
      if (kind == FrameParser::Kind::kError) return items;
    }
    buffer.erase(0, pos);
  }
  return items;
}

TEST(WsFrame, ServerFrameLengths) {
  for (size_t n : {0u, 125u, 126u, 65535u, 65536u}) {
    std::string payload(n, 'x');
    std::string f = EncodeFrame(Opcode::kText, payload);
    ASSERT_EQ(static_cast<uint8_t>(f[0]), 0x81);
    size_t header = n < 126 ? 2 : n <= 0xFFFF ? 4 : 10;
    ASSERT_EQ(f.size(), header + n) << n;
    EXPECT_EQ(static_cast<uint8_t>(f[1]) & 0x80, 0) << "server frames are unmasked";
    EXPECT_EQ(f.substr(header), payload);
  }
  std::string close = EncodeClose(1001, "bye");
  EXPECT_EQ(close, std::string("\x88\x05\x03\xe9""bye", 7));
}

TEST(WsFrame, AcceptKeyMatchesTheRfcSample) {
  EXPECT_EQ(AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsFrame, ParsesFragmentedMessagesWithControlFramesBetween) {
  std::string bytes = ClientFrame(0x01, "Hel") + ClientFrame(0x89, "p") + ClientFrame(0x00, "lo ") +
                      ClientFrame(0x80, "world") + ClientFrame(0x81, std::string(300, 'z')) +
                      ClientFrame(0x88, std::string("\x03\xe8" "done", 6));
  for (size_t step : {1u, 3u, 7u, 1000u}) {
    FrameParser parser(1024);
    auto items = ParseAll(parser, bytes, step);
    ASSERT_EQ(items.size(), 4u) << step;
    EXPECT_EQ(items[0].kind, FrameParser::Kind::kPing);
    EXPECT_EQ(items[0].payload, "p");
    EXPECT_EQ(items[1].kind, FrameParser::Kind::kMessage);
    EXPECT_EQ(items[1].payload, "Hello world");
    EXPECT_EQ(items[2].payload, std::string(300, 'z'));
    EXPECT_EQ(items[3].kind, FrameParser::Kind::kClose);
    EXPECT_EQ(parser.close_code(), 1000);
    EXPECT_EQ(items[3].payload, "done");
  }
}

TEST(WsFrame, RefusesViolations) {
  struct Case {
    std::string bytes;
    uint16_t code;
  };
  std::vector<Case> cases = {
      {std::string("\x81\x02hi", 4), kCloseProtocolError},                    // unmasked
      {ClientFrame(0xC1, "x"), kCloseProtocolError},                          // RSV1 set
      {ClientFrame(0x80, "x"), kCloseProtocolError},                          // stray continuation
      {ClientFrame(0x01, "a") + ClientFrame(0x81, "b"), kCloseProtocolError}, // message inside one
      {ClientFrame(0x09, "p"), kCloseProtocolError},                          // fragmented ping
      {ClientFrame(0x89, std::string(126, 'p')), kCloseProtocolError},        // long ping
      {ClientFrame(0x81, std::string(2000, 'x')), kCloseTooBig},
      {ClientFrame(0x01, std::string(600, 'x')) + ClientFrame(0x80, std::string(600, 'x')),
       kCloseTooBig},
      {ClientFrame(0x83, "x"), kCloseProtocolError},  // reserved opcode
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    FrameParser parser(1024);
    auto items = ParseAll(parser, cases[i].bytes, 1 << 20);
    ASSERT_FALSE(items.empty()) << i;
    EXPECT_EQ(items.back().kind, FrameParser::Kind::kError) << i;
    EXPECT_EQ(parser.error_code(), cases[i].code) << i << " " << parser.error();
  }
}

TEST(WsFrame, SixtyFourBitLengths) {
  FrameParser parser(1 << 20);
  std::string big(70000, 'q');
  auto items = ParseAll(parser, ClientFrame(0x82, big), 4096);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(parser.opcode(), Opcode::kBinary);
  EXPECT_EQ(items[0].payload, big);
}

}  // namespace
}  // namespace medkit::http::ws
