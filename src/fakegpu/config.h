// The fake GPU's devices: what TESSERA_FAKEGPU_CONFIG describes, or two H100s when it is unset.
//
// The file is text: '#' starts a comment, blank lines are ignored, and every other line is
//   device name="Tessera Fake H100" memory=80GiB sms=132 uuid=GPU-... context_memory=256MiB
// with every key optional (defaults below), numa=<node> and mig=<profile>,... too; and at most one
//   driver version=12020
// (kOldestDriverVersion to kNewestDriverVersion, the default). Sizes use
// common/units.h (ParseBytes); mig=3g.40gb,2g.20gb,1g.10gb puts the GPU in MIG mode with these
// instances (fakegpu/mig.h). Errors name the source, the line and what was wrong with it.
//
// A device's index is its line's place in the file: its index on the node, whatever a process is
// let see (fakegpu/visible_devices.h).
#ifndef TESSERA_FAKEGPU_CONFIG_H_
#define TESSERA_FAKEGPU_CONFIG_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "fakegpu/mig.h"

namespace tessera::fakegpu {

// The most devices one fake node has; the shared state file has this many device slots.
inline constexpr int kMaxDevices = 16;

// The driver the fake plays (cuDriverGetVersion: 1000 * major + 10 * minor). An older one lacks the
// entry points introduced after it (cuda/proc_address.def's versions): cuGetProcAddress does
// not find them, and called through their exported symbols they answer CUDA_ERROR_NOT_FOUND.
inline constexpr int kNewestDriverVersion = 13000;  // CUDA 13.0 (R580)
inline constexpr int kOldestDriverVersion = 11040;  // CUDA 11.4 (R470)

struct DeviceSpec {
  std::string name = "Tessera Fake H100";
  uint64_t memory_bytes = 80ull << 30;
  unsigned multiprocessors = 132;
  std::array<unsigned char, 16> uuid{};
  // Device memory each context (primary or created) occupies while it exists.
  uint64_t context_memory_bytes = 256ull << 20;
  unsigned numa_node = 0;
  // process_memory=unavailable: NVML reports each process's memory as NVML_VALUE_NOT_AVAILABLE.
  bool process_memory_available = true;
  // Empty: MIG mode is off. Otherwise the GPU instances, in config order (their index here is the
  // MIG device's index under its GPU).
  std::vector<MigInstance> mig;

  bool mig_enabled() const { return !mig.empty(); }
};

// A device of the node as processes use it: a whole GPU, or one of its MIG instances.
struct DeviceRef {
  int gpu = 0;   // index on the node
  int mig = -1;  // index into DeviceSpec::mig, or -1 for the whole GPU
  bool operator==(const DeviceRef&) const = default;
};

// The UUID a device has when its line names none: derived from its index only, so every process
// (and both libraries) agree on it.
std::array<unsigned char, 16> DefaultUuid(int index);

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as NVML and nvidia-smi print it.
std::string FormatUuid(const std::array<unsigned char, 16>& uuid);

// A config file: its devices, and the driver line (`driver version=12020`), at most one.
struct NodeSpec {
  std::vector<DeviceSpec> devices;
  int driver_version = kNewestDriverVersion;
};

// Parses the text of a config file. `source` (the file name) prefixes every error message.
Result<NodeSpec> ParseNodeConfig(std::string_view text, std::string_view source);
Result<std::vector<DeviceSpec>> ParseDeviceConfig(std::string_view text, std::string_view source);

// This process's node: TESSERA_FAKEGPU_CONFIG's file, or the default two devices.
Result<NodeSpec> LoadNodeConfig();
Result<std::vector<DeviceSpec>> LoadDeviceConfig();

// The driver version TESSERA_FAKEGPU_CONFIG names (a bad file: the newest; cuInit reports the
// file's error), read once per path. After cuInit the driver's own copy is used.
int ConfiguredDriverVersion();

std::vector<DeviceSpec> DefaultDevices();

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_CONFIG_H_
