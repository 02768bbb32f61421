// The body of a watch response: one JSON object per line, {"type": "ADDED", "object": {...}},
// arriving in pieces of any size (as libcurl's write callback hands them over).
#ifndef TESSERA_KUBE_WATCH_STREAM_H_
#define TESSERA_KUBE_WATCH_STREAM_H_

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tessera::kube {

enum class EventType { kAdded, kModified, kDeleted, kBookmark, kError };

// "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR".
std::string_view EventTypeName(EventType type);

struct WatchEvent {  // NOLINT(bugprone-exception-escape): json's constructors may throw
  EventType type = EventType::kAdded;
  nlohmann::json object;  // the object; for kError the apiserver's Status (code, reason, message)
};

// One line of a watch stream. The line must be a JSON object with a known "type" string and an
// "object" that is a JSON object.
Result<WatchEvent> ParseWatchEvent(std::string_view line);

// metadata.resourceVersion of an object, "" when it has none.
std::string ResourceVersionOf(const nlohmann::json& object);

// Splits a byte stream into lines and parses each as an event. Blank lines and a "\r" before the
// "\n" are ignored. After the first malformed event the parser is failed: it returns that error
// from every later Feed, since the rest of the stream cannot be trusted.
class WatchStreamParser {
 public:
  static constexpr size_t kDefaultMaxEventBytes = size_t{64} << 20;
  explicit WatchStreamParser(size_t max_event_bytes = kDefaultMaxEventBytes)
      : max_event_bytes_(max_event_bytes) {}

  // Feeds the next bytes; calls `on_event` for each event they complete, in order.
  Status Feed(std::string_view bytes, const std::function<void(WatchEvent&&)>& on_event);

  // The stream ended. An error when it stopped inside an event.
  Status Finish() const;

  size_t events() const { return events_; }

 private:
  size_t max_event_bytes_;
  std::string pending_;  // bytes of the event not yet ended by "\n"
  size_t events_ = 0;
  Status failed_;
};

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_WATCH_STREAM_H_
