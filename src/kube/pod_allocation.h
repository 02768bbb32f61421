// The scheduler's decision for one pod, as it travels from tessera-scheduler to tessera-node on
// the pod itself: annotation `tessera.io/allocation`, written by the extender before it binds the
// pod, read by the node agent when kubelet allocates the pod's devices. It is also the source of
// truth from which a restarted scheduler rebuilds its ledger.
//
//   {"node":"gpu-shared-0","containers":[
//     {"name":"main","gpus":[{"uuid":"GPU-...","memoryMiB":3000,"cores":30}]},
//     {"name":"sidecar","gpus":[]}]}
//
// Containers are listed in the pod's order, init containers first (`"init":true`), every one of
// them, with an empty `gpus` for a container that asked for none. memoryMiB is the container's
// limit on that GPU (> 0); cores its compute share in percent (0 = no compute limit, 100 = the
// whole GPU). The parser is strict: an unknown field, a wrong type or a value out of range is an
// error naming it, because a misread allocation would give a container the wrong limit.
//
// Also written, for tools made for HAMi: `hami.io/vgpu-node` (the node) and
// `hami.io/vgpu-devices-allocated` (HAMi's "UUID,NVIDIA,mem,cores:" per device, ";" per
// container). Tessera reads only its own annotation.
#ifndef TESSERA_KUBE_POD_ALLOCATION_H_
#define TESSERA_KUBE_POD_ALLOCATION_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::kube {

inline constexpr char kAllocationAnnotation[] = "tessera.io/allocation";
inline constexpr char kHamiNodeAnnotation[] = "hami.io/vgpu-node";
inline constexpr char kHamiAllocatedAnnotation[] = "hami.io/vgpu-devices-allocated";

struct GpuGrant {
  std::string uuid;
  int64_t memory_mib = 0;
  int32_t cores = 0;

  bool operator==(const GpuGrant&) const = default;
};

struct ContainerGrant {
  std::string name;
  bool init = false;
  std::vector<GpuGrant> gpus;

  bool operator==(const ContainerGrant&) const = default;
};

struct PodAllocation {
  std::string node;
  std::vector<ContainerGrant> containers;

  // The grant for container `name`, or nullptr.
  const ContainerGrant* Find(std::string_view name) const;
  bool operator==(const PodAllocation&) const = default;
};

std::string EncodePodAllocation(const PodAllocation& allocation);
Result<PodAllocation> DecodePodAllocation(std::string_view text);

// HAMi's `hami.io/vgpu-devices-allocated` form of the same decision.
std::string EncodeHamiDevices(const PodAllocation& allocation);

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_POD_ALLOCATION_H_
