#include "core/kv/json_util.h"

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>

namespace medkit::core::kv {
namespace json = boost::json;

std::string IdField(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end()) return {};
  const json::value& v = it->value();
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  return {};
}

std::optional<int64_t> IntegerField(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end()) return std::nullopt;
  const json::value& v = it->value();
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    return static_cast<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    double d = v.get_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
      return static_cast<int64_t>(d);
    }
    return std::nullopt;
  }
  if (v.is_string()) {
    std::string_view s = v.get_string();
    int64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return n;
  }
  return std::nullopt;
}

size_t JsonDepth(const json::value& v) {
  size_t deepest = 0;
  if (const json::object* o = v.if_object()) {
    for (const auto& kv : *o) deepest = std::max(deepest, JsonDepth(kv.value()));
    return deepest + 1;
  }
  if (const json::array* a = v.if_array()) {
    for (const auto& e : *a) deepest = std::max(deepest, JsonDepth(e));
    return deepest + 1;
  }
  return 0;
}

namespace {

bool AllNumbersFinite(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_:
      return std::isfinite(v.get_double());
    case json::kind::object:
      for (const auto& member : v.get_object()) {
        if (!AllNumbersFinite(member.value())) return false;
      }
      return true;
    case json::kind::array:
      for (const auto& element : v.get_array()) {
        if (!AllNumbersFinite(element)) return false;
      }
      return true;
    default:
      return true;
  }
}

Result<json::value> ParseOnce(std::string_view text, size_t max_depth) {
  json::parse_options options;
  options.max_depth = max_depth;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, options);
  if (!ec && !AllNumbersFinite(v)) {
    return MakeError(Errc::kInvalidArgument, "Malformed json body",
                     "a number is out of the range of a double");
  }
  if (ec) {
    if (ec == json::error::too_deep) {
      return MakeError(Errc::kInvalidArgument,
                       "JSON nesting too deep (limit " + std::to_string(max_depth) + ")");
    }
    return MakeError(Errc::kInvalidArgument, "Malformed json body");
  }
  return v;
}

}  // namespace

Result<json::value> ParseJsonBody(std::string_view text, size_t max_depth) {
  auto v = ParseOnce(text, max_depth);
  if (!v) return v;
  if (v->is_string()) {
    std::string_view inner = v->get_string();
    auto again = ParseOnce(inner, max_depth);
    if (again) return again;
    if (again.error().message != "Malformed json body") return again;  // too deep
  }
  return v;
}

}  // namespace medkit::core::kv
