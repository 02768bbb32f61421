// `tessera sim replay`: pods, in arrival order, through tessera-scheduler's own code on the nodes
// of a cluster file, so that a sequence placed here is placed the same in the cluster.
//
// Each pod takes the path it takes in the cluster, with the same functions on the same JSON:
//   1. the admission webhook (HandleAdmission, on an AdmissionReview of the pod's CREATE): its
//      defaults are patched in, or the pod is refused with the webhook's message;
//   2. /filter (Extender::Filter) with every node of the cluster file as a candidate, as
//      kube-scheduler sends them (the extender manages nvidia.com/gpu and kube-scheduler ignores
//      it, so its own filters keep every Ready node; the extender's choice does not depend on the
//      candidates' order);
//   3. /bind (Extender::Bind) to the one node the filter kept: the binding's annotations are
//      recorded, and the bound pod goes back into the scheduler's State as its pod watch would
//      deliver it, so the next pod sees this one's GPUs taken.
// The State starts from the Node objects of NodeObject (cluster_file.h), as its Node watch would.
//
// A pod that fits nowhere stays pending (with the extender's reasons) and is not tried again; in
// the cluster kube-scheduler would retry it once something is freed. Pods never leave. A pod that
// asks for no GPU is not the extender's (kube-scheduler never calls it for such a pod).
#ifndef TESSERA_SIM_REPLAY_REPLAY_H_
#define TESSERA_SIM_REPLAY_REPLAY_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scheduler/state.h"
#include "sim/replay/cluster_file.h"

namespace tessera::sim::replay {

// Pods in arrival order from YAML or JSON: a list of Pod manifests, a `kind: List` with `items:`
// (what `kubectl get pods -o yaml` prints), or a stream of Pod documents separated by `---`.
// Scalars become JSON as kubectl makes them: plain integers, floats, true/false and null keep
// their type, quoted scalars are strings. Each pod needs kind Pod (or no kind) and a
// metadata.name unique in its namespace. Errors name the file, the line and the field:
//   pods.yaml:7: [1].metadata.name: missing
Result<std::vector<nlohmann::json>> ParsePods(std::string_view text, const std::string& source);
Result<std::vector<nlohmann::json>> LoadPods(const std::string& path);

// One GPU a container was given.
struct GpuPlacement {
  std::string container;
  unsigned index = 0;  // the GPU's NVML index on its node
  std::string uuid;
  int64_t memory_mib = 0;
  int32_t cores = 0;
};

struct PodPlacement {
  std::string namespace_name;
  std::string name;
  std::string node;                // "" when not placed
  std::vector<GpuPlacement> gpus;  // containers in pod order, init containers first
  std::string reason;              // why not placed: refused, pending, or asks for no GPU
};

// Replays `pods` on `nodes` with tessera-scheduler's options `options` (policy and seed).
// REQUIRES: each pod passed ParsePods's checks.
std::vector<PodPlacement> Replay(const std::vector<ClusterNode>& nodes,
                                 const std::vector<nlohmann::json>& pods,
                                 const scheduler::StateOptions& options);

// One row per GPU given (a pod not placed has one row with its reason), aligned columns.
std::string FormatTable(const std::vector<PodPlacement>& placements);
// {"pods":[{"namespace","name","node","gpus":[{"container","index","uuid","memoryMiB",
// "cores"}],"reason"}]} on one line; node is null and reason set for a pod not placed.
std::string FormatJson(const std::vector<PodPlacement>& placements);

}  // namespace tessera::sim::replay

#endif  // TESSERA_SIM_REPLAY_REPLAY_H_
