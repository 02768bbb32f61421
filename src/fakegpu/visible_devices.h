// The devices a process sees, as the NVIDIA container toolkit and the driver present them inside
// a container.
//
// NVIDIA_VISIBLE_DEVICES chooses the container's devices, for NVML and CUDA alike:
//   unset or "all"        every device of the node;
//   "none", "void" or ""  no device;
//   otherwise a comma-separated list of device indices on the node ("0"), GPU UUIDs, MIG UUIDs and
//   "<gpu>:<mig>" (a GPU's index and the index of one of its MIG devices).
// A GPU listed whole is seen whole, with all its MIG devices when it is in MIG mode; a MIG device
// makes its GPU visible with just the MIG devices listed. Devices keep the node's order (NVML
// enumerates by PCI bus, not in the list's order), renumbered from 0; an entry given twice counts
// once. Any other value is an error naming the variable: the toolkit would refuse to start such a
// container, and the fake refuses to start rather than show every device.
//
// CUDA_VISIBLE_DEVICES then narrows what CUDA enumerates: a comma-separated list of CUDA device
// indices (among the devices NVIDIA_VISIBLE_DEVICES left) and GPU or MIG UUIDs (or a unique prefix
// of one, "GPU-8f3a"). As in CUDA, the list is read up to its first entry that names no device (or
// one named before) and the devices before it are enumerated in the list's order; "" hides all.
//
// What CUDA enumerates before CUDA_VISIBLE_DEVICES: each visible GPU not in MIG mode, and in
// place of a GPU in MIG mode its visible MIG devices, in order.
#ifndef TESSERA_FAKEGPU_VISIBLE_DEVICES_H_
#define TESSERA_FAKEGPU_VISIBLE_DEVICES_H_

#include <string_view>
#include <vector>

#include "common/status.h"
#include "fakegpu/config.h"

namespace tessera::fakegpu {

// A GPU a process sees through NVML.
struct VisibleGpu {
  int gpu = 0;           // index on the node
  std::vector<int> mig;  // its visible MIG devices: indices into DeviceSpec::mig, in order
};

// NVIDIA_VISIBLE_DEVICES's selection from `node`; `value` is null when the variable is unset.
Result<std::vector<VisibleGpu>> SelectVisibleGpus(const std::vector<DeviceSpec>& node,
                                                  const char* value);
Result<std::vector<VisibleGpu>> VisibleGpusFromEnvironment(const std::vector<DeviceSpec>& node);

// The devices CUDA enumerates, in CUDA's order; `cuda_visible_devices` is null when unset.
std::vector<DeviceRef> SelectCudaDevices(const std::vector<DeviceSpec>& node,
                                         const std::vector<VisibleGpu>& visible,
                                         const char* cuda_visible_devices);
std::vector<DeviceRef> CudaDevicesFromEnvironment(const std::vector<DeviceSpec>& node,
                                                  const std::vector<VisibleGpu>& visible);

// "GPU-..." for a whole GPU, "MIG-..." for a MIG instance.
std::string DeviceUuidText(const std::vector<DeviceSpec>& node, DeviceRef device);

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_VISIBLE_DEVICES_H_
