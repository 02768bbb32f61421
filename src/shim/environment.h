// The shim's environment contract (DESIGN.md, "shim env"), owned here: the variables' names, and
// the one writer of limits in the contract's syntax. The shim parses them (shim/config.cc);
// `tessera run` sets them and tessera-node writes its limits files through the same functions,
// so the three cannot drift apart (tests/shim/environment_test.cc round-trips them).
#ifndef TESSERA_SHIM_ENVIRONMENT_H_
#define TESSERA_SHIM_ENVIRONMENT_H_

#include <string>
#include <string_view>
#include <vector>

#include "region/region.h"

namespace tessera::shim {

// Memory limit in bytes or with k/m/g/t (KiB..TiB); `_<i>` for container device i.
inline constexpr std::string_view kMemoryLimitVariable = "CUDA_DEVICE_MEMORY_LIMIT";
// Compute share in percent, 0 = none; `_<i>` for container device i.
inline constexpr std::string_view kSmLimitVariable = "CUDA_DEVICE_SM_LIMIT";
// The region's path.
inline constexpr std::string_view kRegionVariable = "CUDA_DEVICE_MEMORY_SHARED_CACHE";
// true: pass everything through (ignored under a limits file).
inline constexpr std::string_view kDisableVariable = "CUDA_DISABLE_CONTROL";
// true: a compute-limited container may use device time nobody else wants.
inline constexpr std::string_view kWorkConservingVariable = "TESSERA_SM_WORK_CONSERVING";
// 0 high, 1 low.
inline constexpr std::string_view kPriorityVariable = "CUDA_TASK_PRIORITY";
// The node board's path (priority, device queue).
inline constexpr std::string_view kNodeBoardVariable = "TESSERA_NODE_BOARD";
// Container device i's GPU or MIG UUID; always `_<i>`.
inline constexpr std::string_view kDeviceUuidVariable = "TESSERA_DEVICE_UUID";
// The container runtime's list of the container's devices; read (never set) by the shim.
inline constexpr std::string_view kVisibleDevicesVariable = "NVIDIA_VISIBLE_DEVICES";
// A limits file, where none is mounted at kLimitsFilePath.
inline constexpr std::string_view kLimitsFileVariable = "TESSERA_LIMITS_FILE";

// "CUDA_DEVICE_MEMORY_LIMIT_3" for (kMemoryLimitVariable, 3).
std::string DeviceVariable(std::string_view variable, int device);

// Every name a limit can be given under: the memory and compute variables, bare and for each
// device index. Whoever sets limits unsets these first, so no stale one is left behind.
std::vector<std::string> LimitVariableNames();

// The limits as "NAME=value" assignments, the canonical form: per device, in device order, its
// memory limit (in MiB as "<n>m" when a whole number of MiB, else bytes) and its compute share,
// each only where set. Parsed back (ParseConfig), they give exactly `limits`.
std::vector<std::string> LimitAssignments(const region::RegionConfig& limits);

// The container's devices as "TESSERA_DEVICE_UUID_<i>=<uuid>" assignments, in order.
std::vector<std::string> DeviceUuidAssignments(const std::vector<std::string>& device_uuids);

// A limits file's text: `comment` as a "# " line when not empty, then DeviceUuidAssignments and
// LimitAssignments, one a line.
std::string FormatLimitsFile(const region::RegionConfig& limits,
                             const std::vector<std::string>& device_uuids,
                             std::string_view comment);

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_ENVIRONMENT_H_
