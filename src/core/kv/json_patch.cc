#include "core/kv/json_patch.h"

#include <algorithm>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace medkit::core::kv {
namespace {

namespace json = boost::json;

// Unescaped reference tokens of an RFC 6901 pointer; empty for "" (the whole document).
using Tokens = std::vector<std::string>;

enum class OpKind { kAdd, kRemove, kReplace, kMove, kCopy, kTest, kAddIntermediates, kRemoveValue };

Error Invalid(std::string message) { return MakeError(Errc::kInvalidArgument, std::move(message)); }

// Human-readable name of a scalar's kind, for error messages.
std::string_view KindName(const json::value& value) {
  switch (value.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

// Parses an RFC 6901 JSON pointer into unescaped tokens. "" is the whole document; anything
// else must start with '/'. "~0" decodes to '~' and "~1" to '/'; any other use of '~' is an
// error. On failure the message is the reason only (the caller adds the context).
Result<Tokens> ParsePointer(std::string_view pointer) {
  Tokens tokens;
  if (pointer.empty()) return tokens;
  if (pointer.front() != '/') return Invalid("a JSON pointer must be empty or start with '/'");
  std::string token;
  for (std::size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    const char c = pointer[i];
    if (c != '~') {
      token.push_back(c);
      continue;
    }
    const char next = i + 1 < pointer.size() ? pointer[i + 1] : '\0';
    if (next != '0' && next != '1') {
      return Invalid("invalid escape: '~' must be followed by '0' or '1'");
    }
    token.push_back(next == '0' ? '~' : '/');
    ++i;
  }
  return tokens;
}

// Re-escapes tokens[0, count) as a pointer string, for error messages.
std::string FormatPointer(const Tokens& tokens, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) {
    out.push_back('/');
    for (const char c : tokens[i]) {
      if (c == '~') {
        out += "~0";
      } else if (c == '/') {
        out += "~1";
      } else {
        out.push_back(c);
      }
    }
  }
  return out;
}

// Parses an array index token: "0" or a run of digits without a leading zero (no sign, no
// exponent, no whitespace). Returns false for anything else, including values that overflow.
bool ParseIndex(std::string_view token, std::size_t& index) {
  if (token.empty() || (token.size() > 1 && token.front() == '0')) return false;
  for (const char c : token) {
    if (c < '0' || c > '9') return false;
  }
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
  return ec == std::errc() && end == token.data() + token.size();
}

// Why Walk stopped.
struct WalkFailure {
  bool missing = false;   // the location does not exist (as opposed to a malformed path)
  std::size_t depth = 0;  // tokens[0, depth] name the location that could not be entered
  std::string reason;
};

// Follows tokens[0, count) from root and returns the value they name, or nullptr with failure
// filled in. "-" is never accepted here (it names no existing element). With create_objects,
// a missing member of an object is created as an empty object; array elements are never
// created and scalars are never replaced.
json::value* Walk(json::value& root, const Tokens& tokens, std::size_t count, bool create_objects,
                  WalkFailure& failure) {
  json::value* current = &root;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string& token = tokens[i];
    failure.depth = i;
    if (json::object* object = current->if_object()) {
      json::value* member = object->if_contains(token);
      if (member == nullptr) {
        if (!create_objects) {
          failure.missing = true;
          failure.reason = FormatPointer(tokens, i + 1) + " does not exist";
          return nullptr;
        }
        member = &object->emplace(token, json::object(root.storage())).first->value();
      }
      current = member;
    } else if (json::array* array = current->if_array()) {
      std::size_t index = 0;
      if (token == "-") {
        failure.reason = FormatPointer(tokens, i + 1) +
                         ": '-' is only valid as the last token of an add, move or copy target";
        return nullptr;
      }
      if (!ParseIndex(token, index)) {
        failure.reason = "'" + token + "' is not a valid index into array " +
                         FormatPointer(tokens, i) + " (digits only, no leading zeros)";
        return nullptr;
      }
      if (index >= array->size()) {
        failure.missing = true;
        failure.reason = FormatPointer(tokens, i + 1) + " does not exist (array size " +
                         std::to_string(array->size()) + ")";
        return nullptr;
      }
      current = &(*array)[index];
    } else {
      failure.reason = "cannot descend into " + FormatPointer(tokens, i) + ": it is " +
                       std::string(KindName(*current));
      return nullptr;
    }
  }
  return current;
}

// Numeric equality across int64, uint64 and double: 1 == 1.0, but 1 != 1.5. Exact for large
// integers (no conversion of integers to double).
bool DoubleEqualsInteger(double d, const json::value& integer) {
  if (!std::isfinite(d) || std::trunc(d) != d) return false;
  if (integer.is_int64()) {
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
    return static_cast<std::int64_t>(d) == integer.get_int64();
  }
  if (d < 0 || d >= 18446744073709551616.0) return false;
  return static_cast<std::uint64_t>(d) == integer.get_uint64();
}

bool NumbersEqual(const json::value& a, const json::value& b) {
  if (a.is_double() && b.is_double()) return a.get_double() == b.get_double();
  if (a.is_double()) return DoubleEqualsInteger(a.get_double(), b);
  if (b.is_double()) return DoubleEqualsInteger(b.get_double(), a);
  if (a.is_int64() && b.is_int64()) return a.get_int64() == b.get_int64();
  if (a.is_uint64() && b.is_uint64()) return a.get_uint64() == b.get_uint64();
  const std::int64_t i = a.is_int64() ? a.get_int64() : b.get_int64();
  const std::uint64_t u = a.is_uint64() ? a.get_uint64() : b.get_uint64();
  return i >= 0 && static_cast<std::uint64_t>(i) == u;
}

// JSON equality as RFC 6902 section 4.6 defines it for "test": same type, numbers equal by
// value, strings equal, arrays equal element by element, objects with the same members
// regardless of order.
bool JsonEqual(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) return NumbersEqual(a, b);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case json::kind::null:
      return true;
    case json::kind::bool_:
      return a.get_bool() == b.get_bool();
    case json::kind::string:
      return a.get_string() == b.get_string();
    case json::kind::array: {
      const json::array& x = a.get_array();
      const json::array& y = b.get_array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!JsonEqual(x[i], y[i])) return false;
      }
      return true;
    }
    case json::kind::object: {
      const json::object& x = a.get_object();
      const json::object& y = b.get_object();
      if (x.size() != y.size()) return false;
      for (const auto& member : x) {
        const json::value* other = y.if_contains(member.key());
        if (other == nullptr || !JsonEqual(member.value(), *other)) return false;
      }
      return true;
    }
    default:
      return false;  // numbers were handled above
  }
}

// Applies one patch operation to root (the working copy). On failure root may be partially
// modified; the caller discards it. Error messages are prefixed with the op's position (0-based
// index into the patch array) and name.
class OpApplier {
 public:
  OpApplier(json::value& root, const JsonPatchOptions& options, std::size_t index,
            size_t* approx_bytes)
      : root_(root),
        options_(options),
        prefix_("patch op " + std::to_string(index)),
        approx_bytes_(approx_bytes) {}

  Result<void> Apply(const json::value& op_value) {
    const json::object* op = op_value.if_object();
    if (op == nullptr) {
      return Invalid(prefix_ + ": is " + std::string(KindName(op_value)) + ", not an object");
    }
    const json::value* name = op->if_contains("op");
    if (name == nullptr || !name->is_string()) {
      return Invalid(prefix_ + ": missing string member \"op\"");
    }
    const std::string_view op_name = name->get_string();
    prefix_ += " (" + std::string(op_name) + ")";
    OpKind kind;
    if (!LookUp(op_name, kind)) return Invalid(prefix_ + ": unknown op");

    const json::value* path_value = op->if_contains("path");
    if (path_value == nullptr || !path_value->is_string()) {
      return Invalid(prefix_ + ": missing string member \"path\"");
    }
    path_text_ = path_value->get_string();
    auto path = ParsePointer(path_text_);
    if (!path) return PathError(path.error().message);

    const json::value* value = nullptr;
    if (kind != OpKind::kRemove && kind != OpKind::kMove && kind != OpKind::kCopy) {
      value = op->if_contains("value");
      if (value == nullptr) return PathError(std::string(op_name) + " requires value");
    }
    Tokens from;
    if (kind == OpKind::kMove || kind == OpKind::kCopy) {
      const json::value* from_value = op->if_contains("from");
      if (from_value == nullptr) {
        return Invalid(prefix_ + ": " + std::string(op_name) + " requires from");
      }
      if (!from_value->is_string()) return Invalid(prefix_ + ": from must be a string");
      from_text_ = from_value->get_string();
      auto parsed = ParsePointer(from_text_);
      if (!parsed) return FromError(parsed.error().message);
      from = std::move(*parsed);
    }

    switch (kind) {
      case OpKind::kAdd:
        return Add(*path, json::value(*value, root_.storage()), options_.lenient);
      case OpKind::kAddIntermediates:
        return Add(*path, json::value(*value, root_.storage()), /*create_objects=*/true);
      case OpKind::kRemove: {
        auto removed = Remove(*path);
        if (!removed) return std::move(removed).error();
        return {};
      }
      case OpKind::kReplace:
        return Replace(*path, *value);
      case OpKind::kMove:
        return Move(from, *path);
      case OpKind::kCopy:
        return Copy(from, *path);
      case OpKind::kTest:
        return Test(*path, *value);
      case OpKind::kRemoveValue:
        return RemoveValue(*path, *value);
    }
    return Invalid(prefix_ + ": unknown op");
  }

 private:
  // Maps an op name to its kind; the extra ops exist only in lenient mode.
  bool LookUp(std::string_view name, OpKind& kind) const {
    if (name == "add") {
      kind = OpKind::kAdd;
    } else if (name == "remove") {
      kind = OpKind::kRemove;
    } else if (name == "replace") {
      kind = OpKind::kReplace;
    } else if (name == "move") {
      kind = OpKind::kMove;
    } else if (name == "copy") {
      kind = OpKind::kCopy;
    } else if (name == "test") {
      kind = OpKind::kTest;
    } else if (options_.lenient && name == "add_intermediates") {
      kind = OpKind::kAddIntermediates;
    } else if (options_.lenient && name == "remove_value") {
      kind = OpKind::kRemoveValue;
    } else {
      return false;
    }
    return true;
  }

  Error PathError(const std::string& reason) const {
    return Invalid(prefix_ + ": path " + path_text_ + ": " + reason);
  }
  Error FromError(const std::string& reason) const {
    return Invalid(prefix_ + ": from " + from_text_ + ": " + reason);
  }

  // Reason for a failed Walk over tokens[0, count) where count is the whole pointer: drops the
  // location from "<location> does not exist" when it is the pointer itself.
  static std::string TargetReason(const WalkFailure& failure, std::size_t count) {
    if (failure.missing && failure.depth + 1 == count) {
      const std::size_t pos = failure.reason.find(" does not exist");
      if (pos != std::string::npos) return failure.reason.substr(pos + 1);
    }
    return failure.reason;
  }

  // Finds the existing value at tokens (which must not use "-").
  Result<json::value*> Find(const Tokens& tokens, bool is_from) {
    WalkFailure failure;
    json::value* target = Walk(root_, tokens, tokens.size(), false, failure);
    if (target != nullptr) return target;
    const std::string reason = TargetReason(failure, tokens.size());
    return is_from ? FromError(reason) : PathError(reason);
  }

  // Inserts value at tokens as RFC 6902 "add" does: the root is replaced, an object member is
  // set (replacing any existing one), an array element is inserted before index (index == size
  // and "-" append). With create_objects, missing object members on the way are created.
  Result<void> Add(const Tokens& tokens, json::value value, bool create_objects) {
    if (tokens.empty()) {
      root_ = std::move(value);
      return {};
    }
    WalkFailure failure;
    json::value* parent = Walk(root_, tokens, tokens.size() - 1, create_objects, failure);
    if (parent == nullptr) {
      if (!failure.missing) return PathError(failure.reason);
      if (failure.depth + 2 == tokens.size()) return PathError("parent does not exist");
      return PathError("parent does not exist (" + failure.reason + ")");
    }
    const std::string& last = tokens.back();
    if (json::object* object = parent->if_object()) {
      object->insert_or_assign(last, std::move(value));
      return {};
    }
    json::array* array = parent->if_array();
    if (array == nullptr) {
      return PathError("parent is " + std::string(KindName(*parent)) + ", not an object or array");
    }
    if (last == "-") {
      array->push_back(std::move(value));
      return {};
    }
    std::size_t index = 0;
    if (!ParseIndex(last, index)) {
      return PathError("'" + last + "' is not a valid array index (digits only, no leading zeros)");
    }
    if (index > array->size()) {
      return PathError("index " + last + " is out of range (array size " +
                       std::to_string(array->size()) + ")");
    }
    array->insert(array->begin() + static_cast<std::ptrdiff_t>(index), std::move(value));
    return {};
  }

  // Removes and returns the value at tokens. The root cannot be removed. is_from selects which
  // member ("path" or "from") error messages refer to.
  Result<json::value> Remove(const Tokens& tokens, bool is_from = false) {
    auto error = [&](const std::string& reason) {
      return is_from ? FromError(reason) : PathError(reason);
    };
    if (tokens.empty()) return error("cannot remove the whole document");
    WalkFailure failure;
    json::value* parent = Walk(root_, tokens, tokens.size() - 1, false, failure);
    if (parent == nullptr) return error(failure.reason);
    const std::string& last = tokens.back();
    if (json::object* object = parent->if_object()) {
      auto it = object->find(last);
      if (it == object->end()) return error("does not exist");
      json::value removed = std::move(it->value());
      object->stable_erase(it);
      return removed;
    }
    json::array* array = parent->if_array();
    if (array == nullptr) {
      return error("parent is " + std::string(KindName(*parent)) + ", not an object or array");
    }
    std::size_t index = 0;
    if (last == "-") return error("'-' names no existing array element");
    if (!ParseIndex(last, index)) {
      return error("'" + last + "' is not a valid array index (digits only, no leading zeros)");
    }
    if (index >= array->size()) {
      return error("does not exist (array size " + std::to_string(array->size()) + ")");
    }
    json::value removed = std::move((*array)[index]);
    array->erase(array->begin() + static_cast<std::ptrdiff_t>(index));
    return removed;
  }

  Result<void> Replace(const Tokens& tokens, const json::value& value) {
    auto target = Find(tokens, false);
    if (!target) return std::move(target).error();
    **target = json::value(value, root_.storage());
    return {};
  }

  Result<void> Move(const Tokens& from, const Tokens& path) {
    if (from.size() < path.size() && std::equal(from.begin(), from.end(), path.begin())) {
      return Invalid(prefix_ + ": cannot move " + from_text_ + " into its own child " + path_text_);
    }
    auto source = Find(from, true);
    if (!source) return std::move(source).error();
    if (from == path) return {};  // moving a value onto itself changes nothing
    auto removed = Remove(from, true);
    if (!removed) return std::move(removed).error();
    return Add(path, std::move(*removed), false);
  }

  Result<void> Copy(const Tokens& from, const Tokens& path) {
    auto source = Find(from, true);
    if (!source) return std::move(source).error();
    if (options_.max_document_bytes != 0) {
      *approx_bytes_ += ApproxJsonBytes(**source);
      if (*approx_bytes_ > options_.max_document_bytes) {
        return MakeError(Errc::kInvalidArgument, "document too large",
                         prefix_ + ": the copy would exceed " +
                             std::to_string(options_.max_document_bytes) + " bytes");
      }
    }
    return Add(path, json::value(**source, root_.storage()), false);
  }

  Result<void> Test(const Tokens& tokens, const json::value& value) {
    auto target = Find(tokens, false);
    if (!target) return std::move(target).error();
    if (!JsonEqual(**target, value)) return PathError("test failed: value differs");
    return {};
  }

  // Removes every element equal to value from the array at tokens.
  Result<void> RemoveValue(const Tokens& tokens, const json::value& value) {
    auto target = Find(tokens, false);
    if (!target) return std::move(target).error();
    json::array* array = (*target)->if_array();
    if (array == nullptr) {
      return PathError("is " + std::string(KindName(**target)) + ", not an array");
    }
    for (auto it = array->begin(); it != array->end();) {
      it = JsonEqual(*it, value) ? array->erase(it) : it + 1;
    }
    return {};
  }

  json::value& root_;
  const JsonPatchOptions& options_;
  std::string prefix_;
  std::string path_text_;
  std::string from_text_;
  size_t* approx_bytes_;  // running size estimate of root_, shared by the ops of one patch
};

}  // namespace

size_t ApproxJsonBytes(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      size_t n = 2;
      for (const auto& member : v.get_object()) {
        n += member.key().size() + 4 + ApproxJsonBytes(member.value());
      }
      return n;
    }
    case json::kind::array: {
      size_t n = 2;
      for (const auto& element : v.get_array()) n += 1 + ApproxJsonBytes(element);
      return n;
    }
    case json::kind::string:
      return v.get_string().size() + 2;
    case json::kind::bool_:
      return 5;
    case json::kind::null:
      return 4;
    default:
      return 8;
  }
}

Result<void> ApplyJsonPatch(boost::json::value& doc, const boost::json::array& patch,
                            const JsonPatchOptions& options) {
  // All-or-nothing: the ops run on a deep copy that replaces doc only if every op succeeded.
  json::value work(doc, doc.storage());
  size_t approx_bytes = options.max_document_bytes != 0 ? ApproxJsonBytes(work) : 0;
  for (std::size_t i = 0; i < patch.size(); ++i) {
    auto applied = OpApplier(work, options, i, &approx_bytes).Apply(patch[i]);
    if (!applied) return applied;
  }
  doc.swap(work);  // same memory resource, so this is a constant-time swap
  return {};
}

void ApplyMergePatch(boost::json::value& target, const boost::json::value& patch) {
  const json::object* patch_object = patch.if_object();
  if (patch_object == nullptr) {
    target = patch;
    return;
  }
  if (!target.is_object()) target = json::object(target.storage());
  json::object& object = target.get_object();
  for (const auto& member : *patch_object) {
    if (member.value().is_null()) {
      object.stable_erase(member.key());
    } else {
      // operator[] inserts null for a new key; the recursion then turns it into the patch
      // value (or into {} merged with the patch value's non-null members).
      ApplyMergePatch(object[member.key()], member.value());
    }
  }
}

}  // namespace medkit::core::kv
