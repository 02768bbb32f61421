// Fuzzes the shim's limits file parser (config.h): any bytes as the text of /etc/tessera/limits,
// with an environment that tries to lift and disable the limits.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "shim/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> environment = {"CUDA_DEVICE_MEMORY_LIMIT=1t",
                                               "CUDA_DISABLE_CONTROL=true"};
  tessera::shim::Config config =
      tessera::shim::ParseConfigWithLimitsFile(environment, "/etc/tessera/limits", text);
  // With a limits file the environment never disables the shim, whatever the file holds.
  if (config.disabled) __builtin_trap();
  for (int device = 0; device < tessera::region::kMaxDevices; ++device) {
    if (config.limits.devices[device].sm_percent > 100) __builtin_trap();
  }
  // Garbage gives a bounded number of messages, each printable and short.
  if (config.errors.size() > 9) __builtin_trap();
  for (const std::string& error : config.errors) {
    if (error.size() > 256) __builtin_trap();
    for (char c : error) {
      if (c < 0x20 || c > 0x7e) __builtin_trap();
    }
  }
  return 0;
}
