// A cluster file (deploy/dev-cluster/cluster.yaml's format, what `make cluster` starts) read into
// what tessera-node runs with on each node: the fake GPUs NVML reports (Inventory) and the node
// configuration scripts/cluster/cluster.py writes for it (NodeConfig, parsed by tessera-node's own
// parser). NodeObject then gives the Node as tessera-scheduler sees it, its annotations made by
// tessera-node's own NodeAnnotations, so the replay has no second model of a node.
//
// The format is cluster.py's (the comment at the top of cluster.yaml): every file the cluster
// starts with is read, unknown keys are refused as cluster.py refuses them, and each value the
// replay uses is checked (memory as the fake GPU reads it, with common/units.h). `ports:`,
// `scheduler:`, `labels:` and `sms:` are accepted and not used. Every error names the file, line
// and field:
//   cluster.yaml:12: nodes[3].gpus[0].mode: "sharde" is not whole, time-sliced, mig or shared
//
// Not modelled: MIG instances (the scheduler leaves MIG GPUs to kubelet, so their Inventory
// entries carry the mode but no instances).
#ifndef TESSERA_SIM_REPLAY_CLUSTER_FILE_H_
#define TESSERA_SIM_REPLAY_CLUSTER_FILE_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "node/config.h"
#include "node/inventory.h"

namespace tessera::sim::replay {

struct ClusterNode {
  std::string name;
  node::Inventory inventory;  // the node's fake GPUs, in index order, as NVML reports them
  node::NodeConfig config;    // tessera-node's configuration: each GPU's mode and replicas
};

// Parses `text`; `source` (the file name) starts every error message.
Result<std::vector<ClusterNode>> ParseClusterFile(std::string_view text, const std::string& source);

// Reads and parses `path`.
Result<std::vector<ClusterNode>> LoadClusterFile(const std::string& path);

// The UUID cluster.py gives GPU `index` of node `node`: "GPU-" and the RFC 4122 version-5 UUID of
// "<node>/<index>" in cluster.py's namespace, so every node's GPUs have their own, stably.
std::string FakeGpuUuid(std::string_view node, unsigned index);

// The Node object tessera-node publishes for `node` (every GPU healthy): its name and the
// annotations of node::NodeAnnotations.
nlohmann::json NodeObject(const ClusterNode& node);

}  // namespace tessera::sim::replay

#endif  // TESSERA_SIM_REPLAY_CLUSTER_FILE_H_
