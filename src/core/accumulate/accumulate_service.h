// Accumulate (spec 5.6, 8, 9, 12 items 5, 6): any viewer appends small JSON objects to a named
// buffer; broadcasters read their channel's entries, admins and backends every channel's, in
// time order, from an exclusive `start` (ms).
//
// Policy:
//   POST accumulate?id=             any role
//   GET accumulate?id=&start=<ms>   broadcaster (entries of its channel_id), admin and backend
//                                   (entries of every channel); viewers are refused
// Buffers are per extension (client id) and stage; entries carry the channel they came from.
//
// Storage: every entry is written twice in one atomic Apply, under the buffer prefix
// P = a␟<stage>␟<client>␟<buffer>␟ (one future Redis hash slot):
//   P a␟<observed, 16 digits>␟<seq, 16 hex>               all channels (admin, backend reads)
//   P c␟<channel>␟<observed, 16 digits>␟<seq, 16 hex>     per channel (broadcaster reads)
// The value is the entry as JSON text, {"observed","channel_id","opaque_user_id","user_id",
// "data"}, so a read is a Scan from "start" and a concatenation, and a broadcaster never scans
// other channels' entries. <seq> comes from a per-process counter seeded randomly at start-up,
// so two entries of the same millisecond are both kept (the batch also expects both keys to be
// absent) and always come back in the same order (insertion order within one process).
//
// Expiry: each entry expires entry_ttl_ms (24 h) after it was written (per entry, not "24 h
// after the buffer's last entry"; see docs/api/engagement.md).
//
// Reads return at most max_read_entries entries and never split one millisecond between two
// pages (a page ends before a millisecond it cannot return whole), so a client that polls with
// start = latest sees every entry exactly once.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/auth/identity.h"
#include "core/clock.h"
#include "core/result.h"
#include "storage/store.h"

namespace medkit::core::accumulate {

struct AccumulateLimits {
  int64_t entry_ttl_ms = 24LL * 3600 * 1000;
  size_t data_size_limit = 256;    // the serialized "data" object must be shorter than this
  size_t max_id_bytes = 64;        // buffer id length
  size_t max_read_entries = 1000;  // entries per GET (see the paging rule above)
};

class AccumulateService {
 public:
  AccumulateService(storage::Store& store, const Clock& clock, auth::Stage stage,
                    AccumulateLimits limits);

  // POST accumulate?id=: appends data (a JSON object) to buffer id ("" means "default").
  Result<void> Append(const auth::Identity& who, std::string_view id,
                      const boost::json::value& data);

  // GET accumulate?id=&start=: {"data":[entries with observed > start, ascending],"latest":
  // <observed of the last returned entry, or 0>}.
  Result<std::string> Read(const auth::Identity& who, std::string_view id, int64_t start_ms);

  // The `start` query parameter: absent means 0; otherwise an optional '-' and 1..18 digits
  // (negative values read as 0), anything else (including "undefined") is
  // 400 "Malformed start parameter".
  static Result<int64_t> ParseStart(std::optional<std::string_view> text);

  const AccumulateLimits& limits() const { return limits_; }

 private:
  Result<std::string> Prefix(const auth::Identity& who, std::string_view id) const;

  storage::Store& store_;
  const Clock& clock_;
  auth::Stage stage_;
  AccumulateLimits limits_;
  std::atomic<uint64_t> seq_;
};

}  // namespace medkit::core::accumulate
