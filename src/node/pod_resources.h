// kubelet's PodResources API (v1 List): which devices kubelet has given to which containers. It
// is how tessera-node learns, after its own restart, what is already allocated.
#ifndef TESSERA_NODE_POD_RESOURCES_H_
#define TESSERA_NODE_POD_RESOURCES_H_

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/pod_identity.h"
#include "node/registry.h"

namespace tessera::node {

// Lists every container's devices of the resources named `nvidia.com/*`; `socket` is a path
// (<kubelet root-dir>/pod-resources/kubelet.sock).
Result<std::vector<ContainerDevices>> ListPodResources(const std::string& socket,
                                                       std::chrono::milliseconds timeout);

// Every pod kubelet lists, each with all its (app) containers and their devices of every
// resource, also containers without any: what the identity joins (pod_identity.h) read.
Result<std::vector<PodResourcesPod>> ListPodResourcesPods(const std::string& socket,
                                                          std::chrono::milliseconds timeout);

// The containers of `pods` with devices of resources named `nvidia.com/*`, one entry per
// (container, resource).
std::vector<ContainerDevices> NvidiaContainerDevices(const std::vector<PodResourcesPod>& pods);

}  // namespace tessera::node

#endif  // TESSERA_NODE_POD_RESOURCES_H_
