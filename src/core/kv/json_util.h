// Small JSON helpers shared by the core and the HTTP adapter.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace medkit::core::kv {

// Nesting depth of v: a scalar is 0, {} and [] are 1, {"a":[1]} is 2.
size_t JsonDepth(const boost::json::value& v);

// An id-like member of o: a string as it is, an integer as its decimal text (Twitch ids arrive
// both ways), anything else (or absent) as "".
std::string IdField(const boost::json::object& o, std::string_view name);

// An integer member of o: a JSON integer, an integral double (|d| < 9e15), or a string of
// decimal digits with an optional '-'; nullopt when absent or anything else.
std::optional<int64_t> IntegerField(const boost::json::object& o, std::string_view name);

// Parses text as JSON with a nesting limit. Errors are Errc::kInvalidArgument:
// "Malformed json body" or "JSON nesting too deep (limit N)".
// A body that parses to a string holding JSON is parsed once more (spec 3.1: some callers
// stringify twice); a string that is not JSON is returned as the string.
Result<boost::json::value> ParseJsonBody(std::string_view text, size_t max_depth);

}  // namespace medkit::core::kv
