// What tessera-node answers kubelet about one resource's devices: which to prefer for a
// container (GetPreferredAllocation) and what a container given some devices gets (Allocate).
// Pure functions over a Resource (devices.h).
#ifndef TESSERA_NODE_ALLOCATION_H_
#define TESSERA_NODE_ALLOCATION_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/devices.h"

namespace tessera::node {

// `size` devices out of `available` (which includes `must_include`), chosen so that:
//  - a container's devices are on distinct GPUs where possible (two replicas of one
//    time-sliced GPU are one GPU's time, not two GPUs);
//  - they sit on one NUMA node where possible: the one of `must_include`, else the NUMA node with
//    the fewest available devices that still has enough (best fit keeps big groups whole);
//  - a time-sliced replica goes to the GPU with the fewest replicas in use (those of its replicas
//    that are not available), so that sharers spread over the GPUs instead of queueing on one;
//  - among those, GPUs closest to the ones already chosen (NVML's topology: a shared PCIe switch
//    before a host bridge before the NUMA node), for multi-GPU containers that talk peer to peer;
//  - otherwise lower GPU indices and then device IDs first (stable answers).
// IDs that the resource does not know are ignored; fewer than `size` IDs come back only when
// fewer are available.
std::vector<std::string> PreferredDevices(const Resource& resource,
                                          const std::vector<std::string>& available,
                                          const std::vector<std::string>& must_include, int size,
                                          const TopologyLevels& topology = {});

struct DeviceNode {
  std::string container_path;
  std::string host_path;
};

struct Mount {
  std::string container_path;
  std::string host_path;
  bool read_only = true;
};

struct ContainerAllocation {
  std::map<std::string, std::string> envs;
  std::vector<DeviceNode> devices;  // permissions "rw"
  std::vector<Mount> mounts;        // shared GPUs: the shim, its limits and region
};

// Where the NVIDIA device nodes are on the host (a real node: "/dev"), and which exist: the
// driver creates /dev/nvidia-uvm* only when CUDA is first used, and a container runtime refuses a
// device node that is not there.
struct DeviceNodes {
  std::string root = "/dev";
  std::function<bool(const std::string& host_path)> exists = DeviceNodeExists;

  static bool DeviceNodeExists(const std::string& host_path);
};

// What a container given `device_ids` of `resource` gets: NVIDIA_VISIBLE_DEVICES naming each
// GPU or MIG instance once (the container toolkit mounts exactly those), and the device nodes
// /dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia-uvm-tools and /dev/nvidia<minor> of each GPU
// that exist on the host.
// An ID the resource does not know is an error naming it.
Result<ContainerAllocation> AllocateContainer(const Resource& resource,
                                              const std::vector<std::string>& device_ids,
                                              const DeviceNodes& nodes);

}  // namespace tessera::node

#endif  // TESSERA_NODE_ALLOCATION_H_
