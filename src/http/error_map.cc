#include "http/error_map.h"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

namespace medkit::http {

int StatusFor(core::Errc code) {
  switch (code) {
    case core::Errc::kInvalidArgument:
      return 400;
    case core::Errc::kUnauthenticated:
      return 401;
    case core::Errc::kForbidden:
      return 403;
    case core::Errc::kNotFound:
      return 404;
    case core::Errc::kConflict:
      return 409;
    case core::Errc::kTooLarge:
      return 413;
    case core::Errc::kRateLimited:
      return 429;
    case core::Errc::kUnavailable:
      return 503;
    case core::Errc::kInternal:
      return 500;
  }
  return 500;
}

namespace {

std::string Quote(std::string_view s) { return boost::json::serialize(boost::json::string(s)); }

}  // namespace

Response ErrorResponse(const core::Error& error) {
  Response r;
  r.status = StatusFor(error.code);
  r.body = "{\"reason\":" + Quote(error.message);
  if (!error.info.empty()) r.body += ",\"info\":" + Quote(error.info);
  r.body += "}";
  return r;
}

Response ErrorResponse(int status, std::string_view reason) {
  Response r;
  r.status = status;
  r.body = "{\"reason\":" + Quote(reason) + "}";
  return r;
}

}  // namespace medkit::http
