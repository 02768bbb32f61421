// Serving the shared GPUs of nvidia.com/gpu (docs/pod-identity.md): kubelet's calls for a
// container given replicas of shared GPUs, and the state kept for them.
//
//   GetPreferredAllocation  the replicas of the GPUs the scheduler granted the container being
//                           admitted (PodResources + pod cache), else the usual preference
//   Allocate                the GPUs of the replicas, a fresh allocation directory, the shim
//                           injected (mounts and env); no identity needed
//   PreStartContainer       exact identity: the container that holds these IDs, its grant
//                           checked against them, its limits file written, the memory ledger
//                           kept; refused when anything does not match
//   Reconcile               allocations whose devices kubelet no longer lists, or whose pods
//                           have ended, are released (PreStartContainer does it too, first)
//
// Thread-safe: kubelet's calls come on gRPC threads, Reconcile from the agent's loop.
#ifndef TESSERA_NODE_SHARED_GPUS_H_
#define TESSERA_NODE_SHARED_GPUS_H_

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/allocation.h"
#include "node/pod_cache.h"
#include "node/registry.h"
#include "node/shared_state.h"

namespace tessera::node {

struct SharedGpuOptions {
  std::string node_name;
  std::string shim_path;  // the shim on the host, mounted read-only into each container
  // Non-empty: why shared GPUs cannot be served (no API server); said in every refusal.
  std::string unavailable;
  std::chrono::milliseconds cache_wait{5000};  // for the watch to deliver a pod kubelet lists
  // An allocation directory nobody claimed (PreStartContainer) is kept this long even when
  // kubelet lists no container with its devices: kubelet records them just after Allocate.
  std::chrono::seconds unclaimed_grace{60};
};

using PodResourcesLister = std::function<Result<std::vector<PodResourcesPod>>()>;

class SharedGpus {
 public:
  // `resource` is nvidia.com/gpu (with some shared devices); `cache` may be null only when
  // options.unavailable says why.
  SharedGpus(Registry& registry, const Resource& resource, AllocationStore store, PodCache* cache,
             PodResourcesLister lister, SharedGpuOptions options);

  // Rebuilds the memory ledger from the allocation directories (after an agent restart).
  void Recover();

  bool AnyShared(const std::vector<std::string>& device_ids) const;
  std::vector<std::string> Prefer(const std::vector<std::string>& available,
                                  const std::vector<std::string>& must_include, int size);
  // `allocation` is what AllocateContainer made; adds the shared GPUs' part.
  Status Allocate(const std::vector<std::string>& device_ids, ContainerAllocation& allocation);
  Status PreStart(const std::vector<std::string>& device_ids);
  void Reconcile();

 private:
  // Releases the allocations of containers that are over: no container listed by kubelet holds
  // their devices (unclaimed ones after options_.unclaimed_grace), or their pod in `pods` has
  // ended. REQUIRES: mutex_ held.
  void ReleaseEndedLocked(const std::vector<PodResourcesPod>& listed, const PodSnapshot& pods);
  void PublishSums();  // REQUIRES: mutex_ held

  Registry& registry_;
  const Resource& resource_;
  PodCache* cache_;
  PodResourcesLister lister_;
  const SharedGpuOptions options_;

  std::mutex mutex_;
  AllocationStore store_;
  MemoryLedger ledger_;
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_SHARED_GPUS_H_
