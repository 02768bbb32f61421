// Fuzzes the fake GPU's config parser (devices and the driver line) (TESSERA_FAKEGPU_CONFIG's file
// format): any bytes must parse or fail with a message, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fakegpu/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  tessera::Result<tessera::fakegpu::NodeSpec> node =
      tessera::fakegpu::ParseNodeConfig(text, "fuzz.conf");
  if (node.ok()) {
    if (node->driver_version < tessera::fakegpu::kOldestDriverVersion ||
        node->driver_version > tessera::fakegpu::kNewestDriverVersion) {
      __builtin_trap();
    }
    for (const tessera::fakegpu::DeviceSpec& device : node->devices) {
      if (device.context_memory_bytes > device.memory_bytes) __builtin_trap();
      (void)tessera::fakegpu::FormatUuid(device.uuid);
    }
  } else if (node.status().message().rfind("fuzz.conf:", 0) != 0) {
    __builtin_trap();  // every error names the file and line
  }
  return 0;
}
