#include "core/broadcast/viewer_message.h"

#include <zlib.h>

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <charconv>

#include "core/auth/jwt.h"

namespace medkit::core::broadcast {

std::string Envelope(std::string_view event, std::string_view data_json) {
  std::string out = "{\"event\":";
  out += boost::json::serialize(boost::json::string(event));
  out += ",\"data\":";
  out += data_json;
  out += '}';
  return out;
}

std::string ZlibCompress(std::string_view bytes) {
  uLongf size = compressBound(static_cast<uLong>(bytes.size()));
  std::string out(size, '\0');
  int rc = compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                     reinterpret_cast<const Bytef*>(bytes.data()),
                     static_cast<uLong>(bytes.size()), Z_DEFAULT_COMPRESSION);
  if (rc != Z_OK) return {};
  out.resize(size);
  return out;
}

Result<std::string> ZlibInflate(std::string_view bytes) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return MakeError(Errc::kInternal, "inflateInit failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
    if (out.size() > (64u << 20)) rc = Z_MEM_ERROR;
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) return MakeError(Errc::kInvalidArgument, "not a zlib stream");
  return out;
}

Result<std::vector<std::string>> EncodeParts(std::string_view json, const EncodeLimits& limits) {
  std::vector<std::string> parts;
  if (json.size() < limits.compress_at_bytes && json.size() <= limits.max_part_bytes) {
    parts.emplace_back(json);
    return parts;
  }
  std::string encoded = auth::Base64Encode(ZlibCompress(json));
  if (encoded.size() > limits.max_encoded_bytes) {
    return MakeError(Errc::kInvalidArgument, "message too large",
                     "the compressed message is " + std::to_string(encoded.size()) +
                         " bytes; the limit is " + std::to_string(limits.max_encoded_bytes));
  }
  if (encoded.size() <= limits.max_part_bytes) {
    parts.push_back(std::move(encoded));
    return parts;
  }
  // Fragments "<i,n>chunk". The header grows with n, so size the chunks for the widest header.
  size_t count = 0;
  size_t chunk = 0;
  for (size_t digits = 1; digits < 8; ++digits) {
    size_t header = 3 + 2 * digits;  // "<" i "," n ">"
    if (header >= limits.max_part_bytes) break;
    chunk = limits.max_part_bytes - header;
    count = (encoded.size() + chunk - 1) / chunk;
    if (std::to_string(count).size() <= digits) break;
  }
  if (chunk == 0) return MakeError(Errc::kInternal, "max_part_bytes too small");
  for (size_t i = 0; i < count; ++i) {
    std::string part = "<" + std::to_string(i) + "," + std::to_string(count) + ">";
    part.append(encoded, i * chunk, chunk);
    parts.push_back(std::move(part));
  }
  return parts;
}

Result<std::string> DecodeParts(const std::vector<std::string>& parts) {
  if (parts.empty()) return MakeError(Errc::kInvalidArgument, "no parts");
  const std::string& first = parts.front();
  if (!first.empty() && (first[0] == '{' || first[0] == '[')) {
    if (parts.size() != 1) return MakeError(Errc::kInvalidArgument, "plain JSON in fragments");
    return first;
  }
  std::string encoded;
  if (!first.empty() && first[0] == '<') {
    std::vector<std::string> chunks;
    for (const auto& part : parts) {
      size_t close = part.find('>');
      size_t comma = part.find(',');
      if (part.empty() || part[0] != '<' || close == std::string::npos || comma > close) {
        return MakeError(Errc::kInvalidArgument, "bad fragment header");
      }
      size_t index = 0;
      size_t count = 0;
      std::from_chars(part.data() + 1, part.data() + comma, index);
      std::from_chars(part.data() + comma + 1, part.data() + close, count);
      if (count != parts.size() || index >= count) {
        return MakeError(Errc::kInvalidArgument, "bad fragment index");
      }
      if (chunks.empty()) chunks.resize(count);
      chunks[index] = part.substr(close + 1);
    }
    for (const auto& c : chunks) encoded += c;
  } else {
    if (parts.size() != 1) return MakeError(Errc::kInvalidArgument, "unframed fragments");
    encoded = first;
  }
  auto compressed = auth::Base64Decode(encoded);
  if (!compressed) return std::move(compressed).error();
  return ZlibInflate(*compressed);
}

}  // namespace medkit::core::broadcast
