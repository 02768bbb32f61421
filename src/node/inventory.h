// What a node has, as NVML reports it: its GPUs and, for a GPU in MIG mode, its MIG instances.
// Plain data, filled by Nvml::Discover (nvml.h) and by tests.
#ifndef TESSERA_NODE_INVENTORY_H_
#define TESSERA_NODE_INVENTORY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tessera::node {

struct MigInstance {
  std::string uuid;     // "MIG-..."
  std::string profile;  // "1g.10gb"
  uint64_t memory_bytes = 0;
  unsigned gpu_instance_id = 0;
  unsigned compute_instance_id = 0;
};

struct Gpu {
  unsigned index = 0;  // NVML index on the node
  std::string uuid;    // "GPU-..."
  std::string name;    // "NVIDIA H100 80GB HBM3"
  uint64_t memory_bytes = 0;
  unsigned minor = 0;  // /dev/nvidia<minor>
  int numa_node = -1;  // -1: unknown
  bool mig_enabled = false;
  std::vector<MigInstance> mig_instances;
  std::vector<std::string> mig_profiles;  // the GPU instance profiles it offers, e.g. "1g.10gb"
};

// How close two GPUs are, as NVML's nvmlGpuTopologyLevel_t says: 0 the same board, 10 one PCIe
// switch, 20 several switches, 30 one host bridge, 40 one NUMA node, 50 across the system.
// Keyed by (lower index, higher index); a pair NVML did not answer for is absent.
using TopologyLevels = std::map<std::pair<unsigned, unsigned>, int>;

struct Inventory {
  std::string driver_version;
  std::vector<Gpu> gpus;  // in index order
  TopologyLevels topology;
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_INVENTORY_H_
