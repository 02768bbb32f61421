// The cluster as the placement engine sees it: nodes with CPU, memory and GPUs, and what of each
// is still free. One model serves the scheduler and the simulators, so a policy's simulated
// result is the result it has in the cluster.
//
// Every GPU has a sharing mode:
//   kShared      shares with hard limits (the shim): tenants take a share of compute (milli-GPU,
//                1000 = the whole GPU) and, when the GPU's memory is modelled, MiB of memory.
//   kWhole       one tenant, who gets the whole GPU whatever it asked for.
//   kMig         fixed MIG slices; a tenant takes the smallest free slice that holds it.
//   kTimeSliced  up to `time_slice_replicas` tenants, no memory limit, equal turns.
// Whatever the mode, each GPU has a free share in milli-GPU (0..1000). Policies and the
// fragmentation measure reason about that number; the ledger keeps it exact.
//
// A Cluster is built once from specs (validated) and then changed only by a Ledger. It is a
// value type with no I/O and no locks: REQUIRES external synchronisation when shared.
#ifndef TESSERA_PLACEMENT_CLUSTER_H_
#define TESSERA_PLACEMENT_CLUSTER_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::placement {

inline constexpr int32_t kMilliPerGpu = 1000;
inline constexpr int kMaxGpusPerNode = 64;
inline constexpr int kMaxGpuModels = 64;  // model sets are 64-bit masks

enum class SharingMode : uint8_t { kShared, kWhole, kMig, kTimeSliced };

// "shared", "whole", "mig", "time-sliced".
std::string_view SharingModeName(SharingMode mode);

struct MigSlice {
  std::string profile;        // e.g. "3g.20gb"
  int32_t compute_milli = 0;  // compute slices as milli-GPU (3 of 7 slices = 428)
  int64_t memory_mib = 0;
};

struct GpuSpec {
  std::string uuid;        // may be empty; UUID constraints then never match this GPU
  std::string model;       // "A100", "T4", ... matched exactly by type constraints
  int64_t memory_mib = 0;  // 0: memory not modelled; the share in milli-GPU is the only limit
  SharingMode mode = SharingMode::kShared;
  std::vector<MigSlice> mig_slices;  // kMig: the fixed layout (at most 64 slices)
  int32_t time_slice_replicas = 1;   // kTimeSliced: tenants at most
  int32_t max_tenants = 0;           // kShared: tenants at most (the replicas the node
                                     // advertises); 0: no limit but the share itself
  int32_t numa = -1;                 // the GPU's NUMA node; -1: not known (all such are one)
};

struct NodeSpec {
  std::string name;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  std::vector<GpuSpec> gpus;  // at most kMaxGpusPerNode
};

// What is free on one GPU. free_milli is the share policies see.
struct GpuState {
  int32_t free_milli = kMilliPerGpu;
  int64_t free_memory_mib = 0;
  uint32_t tenants = 0;
  uint64_t used_mig_slices = 0;  // bit i: slice i is taken
};

// What is free on one node, and what runs there (the GPU-clustering policy looks at the kinds of
// GPU pods a node hosts). `version` changes on every placement or release on the node, so
// policies may cache anything computed from a node's state under (node, version).
struct NodeState {
  int64_t free_cpu_milli = 0;
  int64_t free_memory_mib = 0;
  int64_t free_gpu_milli = 0;  // sum of the GPUs' free_milli
  uint64_t version = 0;
  uint32_t pods = 0;
  uint32_t shared_gpu_pods = 0;  // pods holding a fraction of one GPU
  // whole_gpu_pods[k] = pods holding k whole GPUs (index 0 unused).
  std::vector<uint32_t> whole_gpu_pods;
};

class Cluster {
 public:
  Cluster() = default;  // no nodes
  // Validates the specs: unique node names, no negative capacities, at most kMaxGpusPerNode GPUs
  // per node and kMaxGpuModels models, MIG GPUs with 1..64 slices, replicas >= 1.
  static Result<Cluster> Create(std::vector<NodeSpec> nodes);

  size_t node_count() const { return specs_.size(); }
  const NodeSpec& spec(size_t node) const { return specs_[node]; }
  const NodeState& state(size_t node) const { return states_[node]; }
  std::span<const GpuState> gpus(size_t node) const {
    return {gpu_states_.data() + gpu_offset_[node], gpu_offset_[node + 1] - gpu_offset_[node]};
  }
  int gpu_count(size_t node) const {
    return static_cast<int>(gpu_offset_[node + 1] - gpu_offset_[node]);
  }
  // The model id of a node's GPUs when they are all one model (the usual case), else -1.
  int node_model(size_t node) const { return node_model_[node]; }
  // True when every GPU on the node is kShared with unmodelled memory and no tenant limit: fit
  // is then just free_milli >= share, which the hot loops exploit.
  bool node_is_simple(size_t node) const { return node_simple_[node]; }

  // Model ids are dense, 0..model_count()-1, in order of first appearance.
  int model_count() const { return static_cast<int>(models_.size()); }
  const std::string& model_name(int id) const { return models_[id]; }
  int ModelId(std::string_view model) const;  // -1 if no GPU of that model exists
  int gpu_model(size_t node, int gpu) const { return gpu_model_[gpu_offset_[node] + gpu]; }

  int64_t total_gpus() const { return total_gpus_; }
  int64_t total_gpu_milli() const { return total_gpus_ * kMilliPerGpu; }
  int64_t allocated_gpu_milli() const { return allocated_gpu_milli_; }
  int64_t total_cpu_milli() const { return total_cpu_milli_; }

 private:
  friend class Ledger;
  GpuState& mutable_gpu(size_t node, int gpu) { return gpu_states_[gpu_offset_[node] + gpu]; }

  std::vector<NodeSpec> specs_;
  std::vector<NodeState> states_;
  std::vector<size_t> gpu_offset_;  // node i's GPUs are [gpu_offset_[i], gpu_offset_[i+1])
  std::vector<GpuState> gpu_states_;
  std::vector<int> gpu_model_;
  std::vector<int> node_model_;
  std::vector<bool> node_simple_;
  std::vector<std::string> models_;
  int64_t total_gpus_ = 0;
  int64_t total_cpu_milli_ = 0;
  int64_t allocated_gpu_milli_ = 0;
};

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_CLUSTER_H_
