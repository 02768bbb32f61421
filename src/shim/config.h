// The shim's configuration, read from the environment (the contract in DESIGN.md):
//   CUDA_DEVICE_MEMORY_LIMIT, CUDA_DEVICE_MEMORY_LIMIT_<i>   bytes, or with k/m/g/t, KiB..TiB
//   CUDA_DEVICE_SM_LIMIT, CUDA_DEVICE_SM_LIMIT_<i>           percent, 0 = none
//   CUDA_DEVICE_MEMORY_SHARED_CACHE                           region path
//   CUDA_DISABLE_CONTROL                                      true: pass everything through
//   TESSERA_SM_WORK_CONSERVING                                true: use idle device time
//   CUDA_TASK_PRIORITY                                        0 high, 1 low; unset: none
//   TESSERA_NODE_BOARD                                     node board (priority, device queue)
//   TESSERA_DEVICE_UUID_<i>                                   container device i's GPU/MIG UUID
// <i> is a container device index 0..15. The container's devices are those TESSERA_DEVICE_UUID_<i>
// lists (0, 1, ... without a gap); without it, NVIDIA_VISIBLE_DEVICES when it lists UUIDs (as
// tessera-node sets it); without either, each process's own devices as it first binds them
// (shim/device_map.h). Parsing is strict: a value that does not parse is an
// error naming the variable, never a silent "no limit".
//
// The limits file. On Kubernetes tessera-node mounts a file read-only at kLimitsFilePath in each
// GPU container; the container can write its environment and its region, not this file. When
// the file exists it is authoritative:
//  * its CUDA_DEVICE_MEMORY_LIMIT[_<i>] and CUDA_DEVICE_SM_LIMIT[_<i>] are the limits; the
//    environment's limit variables are ignored (a device the file does not name has no limit);
//  * its TESSERA_DEVICE_UUID_<i> are the container's devices, and the environment's are ignored
//    (a file without them leaves the devices to NVIDIA_VISIBLE_DEVICES, as files written before
//    they existed do);
//  * CUDA_DISABLE_CONTROL in the environment is ignored (said once on stderr);
//  * TESSERA_LIMITS_FILE is ignored: the environment can neither redirect nor disable the file.
// Only when kLimitsFilePath does not exist does TESSERA_LIMITS_FILE name a file that plays the
// same role (for tests and `tessera run`; it can be redirected by whoever sets the environment).
// The file's syntax is the environment's: one NAME=value per line, blank lines and lines whose
// first non-blank character is '#' allowed, nothing else (no spaces around '=', no other
// variables, no name twice). A file that cannot be read or does not parse is an error naming the
// file and line, and errors make the shim refuse CUDA (fail closed).
#ifndef TESSERA_SHIM_CONFIG_H_
#define TESSERA_SHIM_CONFIG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "region/region.h"

namespace tessera::shim {

// Where tessera-node mounts the limits file (read-only) in a container.
inline constexpr const char* kLimitsFilePath = "/etc/tessera/limits";
// A limits file holds a few lines; anything larger is refused unread.
inline constexpr size_t kMaxLimitsFileBytes = size_t{64} * 1024;

struct Config {
  bool disabled = false;        // CUDA_DISABLE_CONTROL=true (never with a limits file)
  std::string region_path;      // empty: a region private to the process
  region::RegionConfig limits;  // per device
  bool any_limit = false;
  bool work_conserving = false;  // TESSERA_SM_WORK_CONSERVING=true (docs/limiter.md)
  int task_priority = -1;        // CUDA_TASK_PRIORITY: 0 high, 1 low, -1 none
  std::string node_board_path = "/tmp/tessera-node-board";  // TESSERA_NODE_BOARD
  // The authoritative limits file the limits came from; empty: they came from the environment.
  std::string limits_file;
  // Container device i's UUID ("GPU-..." or "MIG-..."), in order; empty: not known (see above).
  std::vector<std::string> device_uuids;
  std::string device_uuids_source;   // where they came from, for messages
  std::vector<std::string> errors;   // one message per bad variable; non-empty = unusable
  std::vector<std::string> notices;  // what was ignored and why, said once on stderr
};

// Reads the configuration from `environment`, a list of "NAME=value" strings (like environ),
// alone: no limits file is looked for.
Config ParseConfig(const std::vector<std::string_view>& environment);

// The configuration when `limits_text` is the text of the authoritative limits file `limits_path`
// (named in messages): the file's limits, the environment's other variables.
Config ParseConfigWithLimitsFile(const std::vector<std::string_view>& environment,
                                 std::string_view limits_path, std::string_view limits_text);

// The configuration as the shim takes it: the limits file at `fixed_limits_path` if it exists,
// else the one TESSERA_LIMITS_FILE names if set, else the environment alone (see above).
// `fixed_limits_path` is kLimitsFilePath except in tests.
Config ReadConfig(const std::vector<std::string_view>& environment, const char* fixed_limits_path);

// ReadConfig of this process's environment and kLimitsFilePath.
Config ReadConfigFromEnvironment();

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_CONFIG_H_
