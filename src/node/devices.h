// From a node's configuration and inventory to what tessera-node advertises: one resource per
// name, each with its devices. Pure functions, so every rule here is tested without a kubelet.
//
//   mode          resource                    device IDs
//   whole         nvidia.com/gpu              the GPU's UUID
//   shared        nvidia.com/gpu              "<GPU UUID>::<replica>", replica 0..N-1 (N: the
//                                             entry's replicas, default kDefaultSharedReplicas)
//   time-sliced   nvidia.com/gpu.shared       "<GPU UUID>::<replica>", replica 0..N-1
//   mig           nvidia.com/mig-<profile>    the MIG instance's UUID
//
// A shared GPU's replicas sit under the same resource as whole GPUs, as HAMi advertises its
// shares: a pod asks for `nvidia.com/gpu: 1` plus memory/cores, and tessera-scheduler decides
// which GPU (kube-scheduler only counts the replicas).
//
// The names are NVIDIA's (its device plugin's mixed MIG strategy and renamed time-sliced
// replicas), so pod specs written for NVIDIA's plugin run unchanged, and modes mix on one node.
#ifndef TESSERA_NODE_DEVICES_H_
#define TESSERA_NODE_DEVICES_H_

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/config.h"
#include "node/inventory.h"

namespace tessera::node {

inline constexpr char kWholeResource[] = "nvidia.com/gpu";
inline constexpr char kTimeSlicedResource[] = "nvidia.com/gpu.shared";
inline constexpr char kMigResourcePrefix[] = "nvidia.com/mig-";

struct PluginDevice {
  std::string id;          // what kubelet sees
  std::string visible_id;  // what NVIDIA_VISIBLE_DEVICES names: the GPU or MIG UUID
  std::string gpu_uuid;
  unsigned gpu_index = 0;
  unsigned minor = 0;
  int numa_node = -1;
  GpuMode mode = GpuMode::kWhole;
  int replica = -1;  // time-sliced and shared: which replica
};

// "<GPU UUID>::<replica>", the ID of a time-sliced or shared replica.
std::string ReplicaId(const std::string& gpu_uuid, int replica);

struct Resource {
  std::string name;  // "nvidia.com/gpu"
  std::vector<PluginDevice> devices;

  const PluginDevice* Find(const std::string& id) const;
};

// Checks `config` against `inventory` and returns the resources, sorted by name. Errors name the
// configuration file, the field and the value: a GPU index the node lacks, mig mode on a GPU
// whose MIG mode is off, a MIG profile the GPU does not offer, a layout other than the GPU's.
Result<std::vector<Resource>> PlanResources(const NodeConfig& config, const Inventory& inventory);

// The effective mode of every GPU of the inventory, by index.
std::map<unsigned, GpuMode> GpuModes(const NodeConfig& config, const Inventory& inventory);

}  // namespace tessera::node

#endif  // TESSERA_NODE_DEVICES_H_
