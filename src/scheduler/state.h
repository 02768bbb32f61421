// What tessera-scheduler knows: the Tessera GPUs of every node (from tessera-node's
// `tessera.io/node-gpus` annotation) and what every pod holds on them (from the pods'
// `tessera.io/allocation`), kept as the placement engine's Cluster and Ledger, plus the
// reservations that /filter made and /bind has not yet turned into a binding.
//
// The ledger is a function of the API server's objects: a restarted scheduler lists Nodes and
// pods and has the same ledger again. A pod's charge is released when it is deleted, when it
// ends (Succeeded or Failed), and a reservation when it is not bound within the reservation
// timeout.
//
// Only `shared` and `whole` GPUs are modelled: MIG and time-sliced GPUs have their own resources,
// which kubelet hands out. Shares go only to `shared` GPUs; a request for whole GPUs may take a
// `whole` GPU or all of a `shared` one.
//
// Thread-safe: every public method takes the one lock.
#ifndef TESSERA_SCHEDULER_STATE_H_
#define TESSERA_SCHEDULER_STATE_H_

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "kube/pod_allocation.h"
#include "placement/ledger.h"
#include "placement/policy.h"
#include "scheduler/pod_request.h"

namespace tessera::scheduler {

inline constexpr char kNodeGpusAnnotation[] = "tessera.io/node-gpus";

// One GPU of a node as the scheduler models it.
struct NodeGpu {
  std::string uuid;
  std::string model;  // the driver's name, e.g. "NVIDIA A100-SXM4-80GB"
  int64_t memory_mib = 0;
  placement::SharingMode mode = placement::SharingMode::kShared;
  int32_t replicas = 0;  // shared: tenants at most
  int numa = -1;
  bool healthy = true;

  bool operator==(const NodeGpu&) const = default;
};

struct NodeGpus {
  std::string name;
  std::vector<NodeGpu> gpus;  // shared and whole GPUs only, in index order
};

// The node's Tessera GPUs from a Node object; nullopt when it has no (readable) annotation.
// An annotation that does not parse is an error naming the node.
Result<std::optional<NodeGpus>> ReadNodeGpus(const nlohmann::json& node);

struct StateOptions {
  std::string policy = "binpack";  // placement::PolicyNames()
  uint64_t seed = 0;
  std::chrono::milliseconds reservation_timeout{30'000};
};

// What /filter decided for a pod.
struct FilterOutcome {
  std::optional<std::string> node;                  // the one node, when the pod fits
  std::map<std::string, std::string> failed;        // node → reason (preemption may help)
  std::map<std::string, std::string> unresolvable;  // node → reason (it never can)
  std::string error;                                // the pod itself is wrong
};

struct GpuView {
  std::string node;
  std::string uuid;
  std::string model;
  int64_t memory_mib = 0;
  int64_t allocated_memory_mib = 0;  // the sum of the limits granted on it
  int32_t allocated_milli = 0;
  uint32_t tenants = 0;
  bool shared = true;
};

class State {
 public:
  explicit State(StateOptions options);

  // The cluster's objects. Node and pod updates are idempotent; ReplaceAll* is a full relist.
  void UpsertNode(const nlohmann::json& node);
  void RemoveNode(const std::string& name);
  void ReplaceAllNodes(const std::vector<nlohmann::json>& nodes);
  void UpsertPod(const nlohmann::json& pod);
  void RemovePod(const nlohmann::json& pod);
  void ReplaceAllPods(const std::vector<nlohmann::json>& pods);

  // Chooses a node among `candidates` for `pod` (whose parsed request is `request`) and
  // reserves its GPUs there. A pod that was filtered before gives up its earlier reservation
  // first (kube-scheduler retries).
  FilterOutcome Filter(const nlohmann::json& pod, const PodGpuRequest& request,
                       const std::vector<std::string>& candidates);

  // What pod `uid` holds (reserved by /filter, or bound), if anything: what its binding carries.
  std::optional<kube::PodAllocation> Reservation(const std::string& uid) const;
  // The binding happened (the watch will confirm it) or failed (the reservation is dropped).
  void Bound(const std::string& uid);
  void BindFailed(const std::string& uid);

  // Whether `request` would fit on `node` once the pods `victim_uids` released their GPUs.
  bool FitsAfterEviction(const PodGpuRequest& request, const std::string& node,
                         const std::vector<std::string>& victim_uids);

  // The largest number of Tessera GPUs on one node (0: none known yet).
  int32_t MaxGpusPerNode() const;
  std::vector<GpuView> Gpus() const;
  size_t pods_holding() const;
  size_t reservations() const;
  // Releases reservations older than the timeout; returns how many.
  size_t ExpireReservations();

 private:
  struct Holding {
    std::string uid;
    std::string name;  // namespace/name, for logs
    kube::PodAllocation allocation;
    std::vector<placement::PlacementId> placements;
    bool reservation = false;
    std::chrono::steady_clock::time_point reserved_at;
  };
  struct GpuRef {
    size_t node = 0;
    int gpu = 0;
  };

  void RebuildLocked();
  void EnsureBuiltLocked();
  Status ChargeLocked(Holding& holding);
  void ReleaseLocked(Holding& holding);
  void DropLocked(const std::string& uid);
  placement::Policy* PolicyFor(const PodGpuRequest& request);
  FilterOutcome PlaceLocked(const PodGpuRequest& request, const std::vector<bool>& candidates,
                            Holding* holding);

  const StateOptions options_;
  mutable std::mutex mutex_;
  std::map<std::string, NodeGpus> nodes_;              // by node name
  std::unordered_map<std::string, Holding> holdings_;  // by pod UID
  bool dirty_ = true;                                  // nodes changed: rebuild the ledger
  std::unique_ptr<placement::Ledger> ledger_;
  std::unordered_map<std::string, size_t> node_index_;
  std::unordered_map<std::string, GpuRef> gpu_index_;  // by UUID
  std::vector<std::string> unhealthy_uuids_;
  std::map<std::string, std::unique_ptr<placement::Policy>> policies_;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_STATE_H_
