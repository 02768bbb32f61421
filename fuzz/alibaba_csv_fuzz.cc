// Fuzzes the Alibaba trace CSV readers: any input must give pods/nodes or an error naming the
// file, never a crash, a hang or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sim/alibaba/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto pods = tessera::sim::alibaba::ParsePodCsv(text, "fuzz.csv");
  if (!pods.ok() && pods.status().message().rfind("fuzz.csv", 0) != 0) __builtin_trap();
  auto nodes = tessera::sim::alibaba::ParseNodeCsv(text, "fuzz.csv");
  if (!nodes.ok() && nodes.status().message().rfind("fuzz.csv", 0) != 0) __builtin_trap();
  return 0;
}
