// Patching JSON documents: RFC 6902 JSON Patch (with the leniency MEDKit clients need) and
// RFC 7386 JSON Merge Patch.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "core/result.h"

namespace medkit::core::kv {

struct JsonPatchOptions {
  // Leniency of spec section 5.3.1, used by the REST and GameLink surfaces:
  //  * "add" (and the extra op "add_intermediates") creates missing intermediate objects;
  //  * "value" is ignored on "remove" (the C++ GameLink client always sends "value": null);
  //  * the extra op "remove_value" removes every element equal to "value" from the array at
  //    "path" (no error if none matches; an error if path is not an array).
  // With lenient = false the behaviour is strict RFC 6902 (missing parents are errors, the
  // extra ops are unknown), which is what json-patch-test-suite checks.
  bool lenient = true;
  // When non-zero, the patch fails with "document too large" as soon as the document could
  // outgrow this many bytes (serialized, approximately) through "copy" ops, before the copy is
  // made. Copy is the only op that can grow a document beyond the size of the patch itself
  // (17 copies of the root multiply it by 2^17), so this bounds the memory a patch can take.
  size_t max_document_bytes = 0;
};

// An estimate of the serialized size of v in bytes (exact for strings without escapes and
// for structure; numbers count as 8).
size_t ApproxJsonBytes(const boost::json::value& v);

// Applies an RFC 6902 patch (a JSON array of operation objects) to doc. All-or-nothing: on any
// error (unknown op, bad pointer, missing path, failed "test", move into own child,
// move/copy without "from", an op that is not an object, ...) doc is left exactly as it was and
// an Errc::kInvalidArgument error with a human-readable message is returned.
// Supports all six ops, "-" for array append, RFC 6901 escapes ~0 and ~1, and the array-index
// grammar (no leading zeros, no signs).
Result<void> ApplyJsonPatch(boost::json::value& doc, const boost::json::array& patch,
                            const JsonPatchOptions& options = {});

// Applies an RFC 7386 merge patch to target: null deletes a key, objects merge recursively,
// anything else (arrays, scalars) replaces. Never fails.
void ApplyMergePatch(boost::json::value& target, const boost::json::value& patch);

}  // namespace medkit::core::kv
