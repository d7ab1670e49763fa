// Result<T>: a value or an Error{Errc, message}. Modelled on std::expected (same member
// names: has_value, value, error, operator*, operator->, value_or) so it can become an alias
// when the project moves to C++23.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace medkit::core {

// Protocol-independent error codes. http/error_map.cc maps each to an HTTP status.
enum class Errc {
  kInvalidArgument,  // malformed input, limits (400)
  kUnauthenticated,  // missing/invalid/expired token, unknown client id (401)
  kForbidden,        // role, scope or stage refusal (403)
  kNotFound,         // missing resource (404)
  kConflict,         // optimistic-concurrency conflict or state conflict (409)
  kTooLarge,         // request body over the transport limit (413)
  kRateLimited,      // the caller is over its rate (429)
  kUnavailable,      // shutting down, store temporarily unavailable (503)
  kInternal,         // storage failure, invariant broken (500)
};

struct Error {
  Errc code = Errc::kInternal;
  std::string message;  // becomes {"reason": message}
  std::string info;     // optional {"info": ...}
};

inline Error MakeError(Errc code, std::string message, std::string info = {}) {
  return Error{code, std::move(message), std::move(info)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const {}
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace medkit::core
