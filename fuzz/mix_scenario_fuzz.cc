// Feeds arbitrary bytes to the scenario parser (YAML/JSON reader and validation). It must return
// a value or an error, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sim/mix/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  tessera::Result<tessera::sim::mix::Scenario> scenario =
      tessera::sim::mix::ParseScenario(text, "fuzz.yaml");
  if (!scenario.ok() && scenario.status().message().empty()) __builtin_trap();
  return 0;
}
