#include "kube/watch_stream.h"

#include <algorithm>
#include <array>
#include <utility>

namespace tessera::kube {
namespace {

constexpr std::array<std::pair<EventType, std::string_view>, 5> kEventTypes = {{
    {EventType::kAdded, "ADDED"},
    {EventType::kModified, "MODIFIED"},
    {EventType::kDeleted, "DELETED"},
    {EventType::kBookmark, "BOOKMARK"},
    {EventType::kError, "ERROR"},
}};

// The start of `text`, for messages about it.
std::string Excerpt(std::string_view text) {
  constexpr size_t kMax = 120;
  std::string out(text.substr(0, kMax));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return text.size() > kMax ? out + "..." : out;
}

bool IsBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

std::string_view EventTypeName(EventType type) {
  for (const auto& [value, name] : kEventTypes) {
    if (value == type) return name;
  }
  return "?";
}

std::string ResourceVersionOf(const nlohmann::json& object) {
  if (!object.is_object()) return "";
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return "";
  auto version = metadata->find("resourceVersion");
  if (version == metadata->end() || !version->is_string()) return "";
  return version->get<std::string>();
}

Result<WatchEvent> ParseWatchEvent(std::string_view line) {
  nlohmann::json event;
  try {
    event = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    return Status::Error("watch event is not JSON (" + std::string(e.what()) +
                         "): " + Excerpt(line));
  }
  if (!event.is_object()) {
    return Status::Error("watch event is not a JSON object: " + Excerpt(line));
  }
  auto type = event.find("type");
  if (type == event.end() || !type->is_string()) {
    return Status::Error("watch event has no \"type\" string: " + Excerpt(line));
  }
  WatchEvent result;
  const std::string& name = type->get_ref<const std::string&>();
  auto known = std::find_if(kEventTypes.begin(), kEventTypes.end(),
                            [&](const auto& entry) { return entry.second == name; });
  if (known == kEventTypes.end()) {
    return Status::Error("watch event has unknown type \"" + Excerpt(name) + "\"");
  }
  result.type = known->first;
  auto object = event.find("object");
  if (object == event.end() || !object->is_object()) {
    return Status::Error("watch event " + name + " has no \"object\" map: " + Excerpt(line));
  }
  result.object = std::move(*object);
  return result;
}

Status WatchStreamParser::Feed(std::string_view bytes,
                               const std::function<void(WatchEvent&&)>& on_event) {
  if (!failed_.ok()) return failed_;
  size_t start = 0;
  while (start < bytes.size()) {
    size_t newline = bytes.find('\n', start);
    std::string_view piece = bytes.substr(
        start, newline == std::string_view::npos ? std::string_view::npos : newline - start);
    if (pending_.size() + piece.size() > max_event_bytes_) {
      failed_ = Status::Error("watch event " + std::to_string(events_ + 1) + " is longer than " +
                              std::to_string(max_event_bytes_) + " bytes");
      return failed_;
    }
    if (newline == std::string_view::npos) {
      pending_.append(piece);
      break;
    }
    start = newline + 1;
    // Most events arrive whole: parse them in place, without copying into pending_.
    std::string_view line = piece;
    if (!pending_.empty()) {
      pending_.append(piece);
      line = pending_;
    }
    if (!IsBlank(line)) {
      Result<WatchEvent> event = ParseWatchEvent(line);
      if (!event.ok()) {
        failed_ =
            Status::Error("event " + std::to_string(events_ + 1) + ": " + event.status().message());
        pending_.clear();
        return failed_;
      }
      ++events_;
      on_event(std::move(*event));
    }
    pending_.clear();
  }
  return Status::Ok();
}

Status WatchStreamParser::Finish() const {
  if (!failed_.ok()) return failed_;
  if (!IsBlank(pending_)) {
    return Status::Error("watch stream ended inside event " + std::to_string(events_ + 1) + " (" +
                         std::to_string(pending_.size()) + " bytes): " + Excerpt(pending_));
  }
  return Status::Ok();
}

}  // namespace tessera::kube
