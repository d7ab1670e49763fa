#include "http/router.h"

#include <chrono>
#include <exception>

#include "core/auth/authenticator.h"
#include "core/kv/json_util.h"
#include "http/error_map.h"

namespace medkit::http {

core::Result<boost::json::value> Call::JsonBody() const {
  std::string_view body = request.body;
  size_t i = 0;
  while (i < body.size() && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' ||
                             body[i] == '\n')) {
    ++i;
  }
  if (i == body.size()) return core::MakeError(core::Errc::kInvalidArgument, "Invalid body");
  return core::kv::ParseJsonBody(body, services.max_json_depth);
}

Router::Router(Services& services) : services_(services) {}
Router::~Router() = default;

void Router::Add(Method method, std::string path, Auth auth, Handler handler) {
  std::string name = std::string(MethodName(method)) + " " + path;
  routes_.push_back(Route{method, std::move(name), auth, std::move(handler)});
  by_path_[std::move(path)].push_back(routes_.size() - 1);
}

void Router::Alias(std::string alias, std::string_view path) {
  auto it = by_path_.find(std::string(path));
  if (it == by_path_.end()) return;
  by_path_[std::move(alias)] = it->second;
}

void Router::Freeze() {
  std::vector<std::string> names;
  names.reserve(routes_.size() + 2);
  for (const auto& r : routes_) names.push_back(r.name);
  unmatched_route_ = names.size();
  names.emplace_back("unmatched");
  preflight_route_ = names.size();
  names.emplace_back("OPTIONS *");
  metrics_ = std::make_unique<Metrics>(std::move(names));
}

const Router::Route* Router::Find(const std::string& path, Method method,
                                  bool* path_known) const {
  auto it = by_path_.find(path);
  if (it == by_path_.end() && path.size() > 1 && path.back() == '/') {
    it = by_path_.find(path.substr(0, path.size() - 1));
  }
  *path_known = it != by_path_.end();
  if (!*path_known) return nullptr;
  for (size_t index : it->second) {
    const Route& r = routes_[index];
    if (r.method == method || (method == Method::kHead && r.method == Method::kGet)) return &r;
  }
  return nullptr;
}

Response Router::Dispatch(const Request& request) {
  auto start = std::chrono::steady_clock::now();
  size_t route_index = unmatched_route_;
  Response response;
  if (request.method == Method::kOptions) {
    route_index = preflight_route_;
    response.status = 204;
    response.content_type.clear();
    response.headers = {
        {"Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"},
        {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
        {"Access-Control-Max-Age", "86400"},
    };
  } else {
    bool path_known = false;
    const Route* route = Find(request.path, request.method, &path_known);
    if (route == nullptr) {
      response = path_known ? ErrorResponse(405, "Method Not Allowed")
                            : ErrorResponse(404, "Not Found");
    } else {
      route_index = static_cast<size_t>(route - routes_.data());
      try {
        core::Result<core::auth::Identity> identity = core::auth::Identity{};
        if (route->auth == Auth::kRequired) {
          identity = services_.auth->Authenticate(request.authorization);
        }
        if (!identity) {
          response = ErrorResponse(identity.error());
        } else {
          Call call{request, route->auth == Auth::kRequired ? &*identity : nullptr, services_,
                    *metrics_};
          auto result = route->handler(call);
          if (result) {
            response.status = call.status;
            response.body = std::move(*result);
            response.content_type = std::move(call.content_type);
          } else {
            response = ErrorResponse(result.error());
          }
        }
      } catch (const std::exception& e) {
        response = ErrorResponse(500, "Internal Server Error");
      } catch (...) {
        response = ErrorResponse(500, "Internal Server Error");
      }
    }
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  metrics_->Record(route_index, response.status,
                   std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
  return response;
}

}  // namespace medkit::http
