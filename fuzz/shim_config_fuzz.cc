// Fuzzes the shim's environment parser: any bytes, split into NAME=value entries at newlines.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "shim/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> entries;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    entries.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  tessera::shim::Config config = tessera::shim::ParseConfig(entries);
  // A configuration either has errors or only limits a parser could have produced.
  for (int device = 0; device < tessera::region::kMaxDevices; ++device) {
    if (config.limits.devices[device].sm_percent > 100) __builtin_trap();
  }
  return 0;
}
