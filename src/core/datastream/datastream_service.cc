#include "core/datastream/datastream_service.h"

#include <boost/json.hpp>
#include <charconv>
#include <cstdio>

namespace medkit::core::datastream {
namespace json = boost::json;

namespace {

constexpr char kSep = '\x1f';
constexpr size_t kMaxIdBytes = 256;

std::string SeqText(int64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(seq));
  return buf;
}

}  // namespace

DatastreamService::DatastreamService(storage::Store& store, const Clock& clock, auth::Stage stage,
                                     DatastreamLimits limits, events::EventBus* events)
    : store_(store), clock_(clock), stage_(stage), limits_(limits), events_(events) {
  if (limits_.max_events < 1) limits_.max_events = 1;
}

std::string DatastreamService::Prefix(std::string_view client_id,
                                      std::string_view channel_id) const {
  std::string p = "ds";
  p.push_back(kSep);
  p.append(auth::StageName(stage_)).push_back(kSep);
  p.append(client_id).push_back(kSep);
  p.append(channel_id).push_back(kSep);
  return p;
}

Result<void> DatastreamService::Post(const auth::Identity& who, const json::value& body) {
  if (who.channel_id.empty()) return MakeError(Errc::kInvalidArgument, "channel id required");
  if (who.channel_id.size() > kMaxIdBytes) {
    return MakeError(Errc::kInvalidArgument, "channel id is too long");
  }
  for (unsigned char c : who.channel_id) {
    if (c < 0x20 || c == 0x7f) {
      return MakeError(Errc::kInvalidArgument, "channel id contains control characters");
    }
  }
  if (!body.is_object()) {
    return MakeError(Errc::kInvalidArgument, "Malformed input body",
                     "a datastream event is a JSON object");
  }
  std::string event = json::serialize(body);
  if (event.size() > limits_.max_event_bytes) {
    return MakeError(Errc::kInvalidArgument, "datastream event too large",
                     "limit " + std::to_string(limits_.max_event_bytes) + " bytes, got " +
                         std::to_string(event.size()));
  }
  const int64_t now = clock_.NowMs();
  std::string payload =
      "{\"event\":" + event + ",\"timestamp\":" + std::to_string(now / 1000) + "}";

  const std::string prefix = Prefix(who.client_id, who.channel_id);
  auto seq = store_.Apply(storage::WriteBatch().Add(prefix + "n", 1, now + 2 * limits_.ttl_ms));
  if (!seq) return std::move(seq).error();
  const int64_t n = seq->counters.front();
  storage::WriteBatch batch;
  batch.Put(prefix + "e" + kSep + SeqText(n), payload, now + limits_.ttl_ms);
  if (n > limits_.max_events) batch.Delete(prefix + "e" + kSep + SeqText(n - limits_.max_events));
  if (auto put = store_.Apply(batch); !put) return std::move(put).error();
  if (events_ != nullptr) {
    events::Event event;
    event.client_id = who.client_id;
    event.channel_id = who.channel_id;
    event.name = "datastream";
    event.payload_json = payload;
    event.at_ms = now;
    event.viewers = false;  // games only
    events_->Publish(event);
  }
  return {};
}

Result<std::vector<QueuedEvent>> DatastreamService::Pending(std::string_view client_id,
                                                            std::string_view channel_id,
                                                            int64_t after_seq, size_t limit) {
  const std::string prefix = Prefix(client_id, channel_id) + "e" + kSep;
  std::string start_after = after_seq > 0 ? prefix + SeqText(after_seq) : std::string();
  auto entries = store_.Scan(prefix, start_after, limit);
  if (!entries) return std::move(entries).error();
  std::vector<QueuedEvent> out;
  out.reserve(entries->size());
  for (auto& e : *entries) {
    QueuedEvent q;
    std::string_view digits = std::string_view(e.key).substr(prefix.size());
    std::from_chars(digits.data(), digits.data() + digits.size(), q.seq);
    q.payload_json = std::move(e.entry.value);
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace medkit::core::datastream
