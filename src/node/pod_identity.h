// Which pod and container kubelet is serving, for a shared GPU (docs/pod-identity.md).
//
// kubelet's device-plugin calls carry no pod identity: GetPreferredAllocation and Allocate get
// device IDs, PreStartContainer the IDs it gave. tessera-node learns the rest from two sources
// and joins them here:
//  - kubelet's PodResources List: every pod on the node, each container with the device IDs
//    kubelet has recorded for it. A pod being admitted is listed already, its containers being
//    allocated without devices yet; a container given devices holds them, and only it, until
//    its pod is gone.
//  - the agent's pod cache (a watch of the node's pods): each pod's `tessera.io/allocation`,
//    the scheduler's decision (kube/pod_allocation.h), and its phase.
//
// Pure functions, so that every case is a unit test. The answer for GetPreferredAllocation is a
// preference (kubelet may ignore it, and a wrong guess only costs a refusal later); the answer
// for PreStartContainer is exact: the one container that holds these device IDs, checked against
// its grant, or an error. A container never gets another pod's limits or GPUs.
#ifndef TESSERA_NODE_POD_IDENTITY_H_
#define TESSERA_NODE_POD_IDENTITY_H_

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "kube/pod_allocation.h"
#include "node/devices.h"

namespace tessera::node {

// One pod of a PodResources List answer (all its containers, also those without devices).
struct PodResourcesContainer {
  std::string name;
  std::map<std::string, std::vector<std::string>> devices;  // by resource name
};
struct PodResourcesPod {
  std::string namespace_name;
  std::string name;
  std::vector<PodResourcesContainer> containers;
};

// A pod as the agent's pod cache holds it.
struct CachedPod {
  std::string namespace_name;
  std::string name;
  std::string uid;
  std::string phase;  // Pending, Running, Succeeded, Failed, Unknown ("" when not yet set)
  std::optional<kube::PodAllocation> allocation;
  std::string allocation_error;  // the annotation is there but does not parse: why
  // metadata.deletionTimestamp is set: kubelet is stopping the pod (its devices are freed while
  // PodResources still lists it) and never starts a container of it again.
  bool deleting = false;

  bool Terminal() const { return phase == "Succeeded" || phase == "Failed"; }
};

// "namespace/name": how the cache and these functions key pods.
std::string PodKey(const std::string& namespace_name, const std::string& name);
// A Pod object (the API server's JSON) as the cache holds it.
CachedPod CachedPodFromJson(const nlohmann::json& pod);

using PodSnapshot = std::map<std::string, CachedPod>;  // by PodKey

// A container and its grant: the GPUs the scheduler decided, with their limits.
struct IdentifiedContainer {
  std::string namespace_name;
  std::string pod;
  std::string container;
  std::vector<kube::GpuGrant> gpus;
};

struct PendingIdentity {
  std::optional<IdentifiedContainer> container;  // the container being admitted, when known
  std::vector<std::string> missing_pods;         // PodKeys PodResources lists that `pods` lacks
  std::string why;                               // when no container: why not, for the log
};

// GetPreferredAllocation's question: which container is kubelet admitting for `resource` on
// `node`, asking for `allocation_size` devices? The candidates are the pods listed by
// PodResources that the cache knows, that are not terminal, whose allocation names `node`; in
// each, the first container in the grant's order (init containers first) whose grant has GPUs
// and for which PodResources records no `resource` device yet, when it asks for as many GPUs as
// kubelet does. One candidate, or several that name the same GPUs: that one (the first). None, or
// several with different GPUs: no container (kubelet's question is then answered without one).
PendingIdentity FindPendingContainer(const std::vector<PodResourcesPod>& listed,
                                     const PodSnapshot& pods, const std::string& node,
                                     const std::string& resource, int allocation_size);

// Where the container is that PodResources says holds exactly `device_ids` of `resource` (in
// any order): its namespace, pod and container names. None, or more than one: an error naming
// the IDs.
struct DeviceHolder {
  std::string namespace_name;
  std::string pod;
  std::string container;
};
Result<DeviceHolder> FindDeviceHolder(const std::vector<PodResourcesPod>& listed,
                                      const std::string& resource,
                                      const std::vector<std::string>& device_ids);

// The GPUs a container given `device_ids` sees, in the order NVIDIA_VISIBLE_DEVICES lists them:
// each GPU once, by node index (kubelet hands device IDs over as an unordered set, so their order
// means nothing). Container device i is the i-th. IDs `resource` lacks are skipped.
std::vector<const PluginDevice*> ContainerGpus(const Resource& resource,
                                               const std::vector<std::string>& device_ids);

// PreStartContainer's check: `pod` (the holder's, from the cache) has an allocation for `node`
// with a grant for `container` whose GPUs are exactly those of `device_ids` (one device per
// GPU). Returns the grant in container device order (ContainerGpus); else an error naming the
// pod, the container, the GPUs kubelet gave and the GPUs the scheduler decided.
Result<IdentifiedContainer> CheckGrant(const CachedPod& pod, const std::string& container,
                                       const std::string& node, const Resource& resource,
                                       const std::vector<std::string>& device_ids);

// The limits file (/etc/tessera/limits in the container) for `container`: a comment naming the
// pod and container, then for each container device i, in the shim's environment syntax,
//   TESSERA_DEVICE_UUID_<i>=<GPU UUID>     (so its processes charge it whatever their ordinals)
//   CUDA_DEVICE_MEMORY_LIMIT_<i>=<MiB>m
//   CUDA_DEVICE_SM_LIMIT_<i>=<cores>        (percent; only where cores > 0)
// written by the contract's owner, shim::FormatLimitsFile.
std::string LimitsFileText(const IdentifiedContainer& container);

}  // namespace tessera::node

#endif  // TESSERA_NODE_POD_IDENTITY_H_
