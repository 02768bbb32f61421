// The shim's configuration, read from the environment (the contract in DESIGN.md):
//   CUDA_DEVICE_MEMORY_LIMIT, CUDA_DEVICE_MEMORY_LIMIT_<i>   bytes, or with k/m/g/t, KiB..TiB
//   CUDA_DEVICE_SM_LIMIT, CUDA_DEVICE_SM_LIMIT_<i>           percent, 0 = none
//   CUDA_DEVICE_MEMORY_SHARED_CACHE                           region path
//   CUDA_DISABLE_CONTROL                                      true: pass everything through
//   TESSERA_SM_WORK_CONSERVING                                true: use idle device time
//   CUDA_TASK_PRIORITY                                        0 high, 1 low; unset: none
//   TESSERA_NODE_BOARD                                     node board (priority, device queue)
// <i> is a container device index 0..15. Parsing is strict: a value that does not parse is an
// error naming the variable, never a silent "no limit".
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

struct Config {
  bool disabled = false;             // CUDA_DISABLE_CONTROL=true
  std::string region_path;           // empty: a region private to the process
  region::RegionConfig limits;       // per device
  bool any_limit = false;
  bool work_conserving = false;      // TESSERA_SM_WORK_CONSERVING=true (docs/limiter.md)
  int task_priority = -1;            // CUDA_TASK_PRIORITY: 0 high, 1 low, -1 none
  std::string node_board_path = "/tmp/tessera-node-board";  // TESSERA_NODE_BOARD
  std::vector<std::string> errors;   // one message per bad variable; non-empty = unusable
};

// Reads the configuration from `environment`, a list of "NAME=value" strings (like environ).
Config ParseConfig(const std::vector<std::string_view>& environment);

// The same, from this process's environment.
Config ReadConfigFromEnvironment();

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_CONFIG_H_
