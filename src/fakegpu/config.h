// The fake GPU's devices: what TESSERA_FAKEGPU_CONFIG describes, or two H100s when it is unset.
//
// The file is text: '#' starts a comment, blank lines are ignored, and every other line is
//   device name="Tessera Fake H100" memory=80GiB sms=132 uuid=GPU-... context_memory=256MiB
// with every key optional (defaults below). Sizes use common/units.h (ParseBytes). Errors name the
// source, the line and what was wrong with it.
#ifndef TESSERA_FAKEGPU_CONFIG_H_
#define TESSERA_FAKEGPU_CONFIG_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::fakegpu {

// The most devices one fake node has; the shared state file has this many device slots.
inline constexpr int kMaxDevices = 16;

struct DeviceSpec {
  std::string name = "Tessera Fake H100";
  uint64_t memory_bytes = 80ull << 30;
  unsigned multiprocessors = 132;
  std::array<unsigned char, 16> uuid{};
  // Device memory each context (primary or created) occupies while it exists.
  uint64_t context_memory_bytes = 256ull << 20;
};

// The UUID a device has when its line names none: derived from its index only, so every process
// (and both libraries) agree on it.
std::array<unsigned char, 16> DefaultUuid(int index);

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as NVML and nvidia-smi print it.
std::string FormatUuid(const std::array<unsigned char, 16>& uuid);

// Parses the text of a config file. `source` (the file name) prefixes every error message.
Result<std::vector<DeviceSpec>> ParseDeviceConfig(std::string_view text, std::string_view source);

// The devices of this process: TESSERA_FAKEGPU_CONFIG's file, or the default two devices.
Result<std::vector<DeviceSpec>> LoadDeviceConfig();

std::vector<DeviceSpec> DefaultDevices();

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_CONFIG_H_
