// Fuzzes the watch stream parser (src/kube/watch_stream.h): any bytes, fed whole and then in
// pieces whose sizes come from the input, must give the same events and the same verdict, never
// crash, hang or read out of bounds; every event delivered has a known type and an object map.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kube/watch_stream.h"

namespace {

struct Outcome {
  std::vector<std::string> events;  // "TYPE object-json"
  bool ok = true;
};

Outcome Parse(std::string_view stream, size_t max_event_bytes, const uint8_t* cuts,
              size_t cut_count) {
  tessera::kube::WatchStreamParser parser(max_event_bytes);
  Outcome outcome;
  auto collect = [&](tessera::kube::WatchEvent&& event) {
    if (!event.object.is_object()) __builtin_trap();
    outcome.events.push_back(
        std::string(tessera::kube::EventTypeName(event.type)) + " " +
        event.object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  size_t at = 0;
  for (size_t i = 0; at < stream.size(); ++i) {
    size_t piece = cut_count == 0 ? stream.size() : 1 + cuts[i % cut_count] % 64;
    if (!parser.Feed(stream.substr(at, piece), collect).ok()) {
      outcome.ok = false;
      break;
    }
    at += piece;
  }
  if (outcome.ok && !parser.Finish().ok()) outcome.ok = false;
  if (parser.events() != outcome.events.size()) __builtin_trap();
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first 4 bytes choose the piece sizes; the rest is the stream.
  if (size < 4) return 0;
  const uint8_t* cuts = data;
  std::string_view stream(reinterpret_cast<const char*>(data) + 4, size - 4);
  size_t max_event_bytes = 1 + data[0] * 16u;  // small limits reach the length check
  Outcome whole = Parse(stream, max_event_bytes, nullptr, 0);
  Outcome pieces = Parse(stream, max_event_bytes, cuts, 4);
  // How the bytes arrive must not matter: not to the events, not to the verdict.
  if (whole.ok != pieces.ok || whole.events != pieces.events) __builtin_trap();
  return 0;
}
