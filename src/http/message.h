// The HTTP layer's own request/response types. Routes see only these, never Beast types, so
// route files compile quickly and can be driven in-process by tests (ApiTest).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace medkit::http {

enum class Method { kGet, kPost, kPut, kPatch, kDelete, kOptions, kHead, kOther };

std::string_view MethodName(Method method);
Method ParseMethod(std::string_view name);

struct Request {
  Method method = Method::kGet;
  std::string path;  // percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;  // in order, values decoded
  std::string authorization;
  std::string origin;
  std::string content_type;
  std::string body;
  std::string remote_ip;

  // The first value of a query parameter, or nullopt.
  std::optional<std::string_view> Query(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string body;  // JSON text
  bool close = false;  // close the connection after this response
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string content_type = "application/json";
};

// Splits a request target into a decoded path and decoded query pairs. Percent-escapes are
// decoded where valid and kept as they are otherwise; '+' stays '+' (MEDKit does not encode
// query values, spec 3.1).
void ParseTarget(std::string_view target, Request& request);

}  // namespace medkit::http
