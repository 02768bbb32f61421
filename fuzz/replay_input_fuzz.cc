// Feeds arbitrary bytes to `tessera sim replay`'s two readers, the cluster file and the pods file
// (YAML or JSON). Each must return a value or an error that says why, never crash, hang or read
// out of bounds; what the cluster file gives also becomes Node objects as the replay makes them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sim/replay/cluster_file.h"
#include "sim/replay/replay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto nodes = tessera::sim::replay::ParseClusterFile(text, "fuzz.yaml");
  if (!nodes.ok() && nodes.status().message().empty()) __builtin_trap();
  if (nodes.ok()) {
    for (const auto& node : *nodes) (void)tessera::sim::replay::NodeObject(node);
  }
  auto pods = tessera::sim::replay::ParsePods(text, "fuzz.yaml");
  if (!pods.ok() && pods.status().message().empty()) __builtin_trap();
  return 0;
}
