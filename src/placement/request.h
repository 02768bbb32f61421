// What a pod asks for, and whether (and on which GPUs) it fits a node.
//
// A request wants `gpu_count` GPUs on one node, each with the same per-GPU demand, given either
// as a share (`gpu_milli`, 1..1000 milli-GPU: that fraction of the GPU's compute and of its
// memory) or as memory plus compute (`gpu_memory_mib` and `gpu_cores_percent`, HAMi's gpumem and
// gpucores). A request with gpu_count == 0 needs CPU and memory only. Type and UUID constraints
// restrict which GPUs may serve it; names match exactly.
//
// A Demand is a request compiled against one cluster (model names turned into a bit mask); the
// hot loops of every policy work on Demands, never on strings.
#ifndef TESSERA_PLACEMENT_REQUEST_H_
#define TESSERA_PLACEMENT_REQUEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "placement/cluster.h"

namespace tessera::placement {

struct Request {
  int32_t gpu_count = 0;
  int32_t gpu_milli = 0;  // per-GPU share; 0 means: use gpu_memory_mib / gpu_cores_percent
  int64_t gpu_memory_mib = 0;
  int32_t gpu_cores_percent = 0;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  std::vector<std::string> gpu_types;           // allowed models; empty = any
  std::vector<std::string> excluded_gpu_types;  // never these models
  std::vector<std::string> gpu_uuids;           // allowed GPUs; empty = any
  std::vector<std::string> excluded_gpu_uuids;  // never these GPUs
  bool numa_bind = false;  // all gpu_count GPUs on one NUMA node (nvidia.com/numa-bind)
};

// Checks a request on its own: counts and shares in range, a share or memory for GPU requests.
Status ValidateRequest(const Request& request);

struct Demand {
  int32_t gpu_count = 0;
  int32_t gpu_milli = 0;       // share form; 0 when the memory form is used
  int64_t gpu_memory_mib = 0;  // memory form
  int32_t gpu_cores_percent = 0;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  uint64_t allowed_models = ~uint64_t{0};     // bit per cluster model id
  const Request* uuid_constraints = nullptr;  // set only when the request names UUIDs
  // Set by a scheduler that only considers some nodes (kube-scheduler's candidates): node i may
  // serve the demand only if (*candidate_nodes)[i]. REQUIRES: one entry per cluster node.
  const std::vector<bool>* candidate_nodes = nullptr;
  // A share of a GPU (not all of it): only kShared GPUs may serve it, never a kWhole GPU, which
  // would give it the whole GPU. The simulators leave it false (their traces model whole GPUs as
  // taking any request).
  bool shares_only = false;
  // Several GPUs only from one NUMA node (GpuSpec::numa): FitsNode and the GPU choices take the
  // GPUs of one NUMA node, the first that has enough in their order of preference.
  bool numa_bind = false;

  bool needs_gpu() const { return gpu_count > 0; }
  // The fraction of one GPU that this demand occupies in share form (whole GPU = 1000).
  bool is_fractional() const { return gpu_count == 1 && gpu_milli > 0 && gpu_milli < kMilliPerGpu; }
};

// REQUIRES: ValidateRequest(request).ok(). The Demand points into `request` when it has UUID
// constraints, so the request must outlive it.
Demand CompileDemand(const Cluster& cluster, const Request& request);

// The share (milli-GPU) a demand takes from a GPU in kShared mode, from its free_milli: the
// share itself, or for the memory form its compute (gpucores, at least 1 milli); the memory form's
// memory is a second, separate limit.
int32_t ShareOn(const GpuSpec& gpu, const Demand& demand);

// The memory (MiB) a share of `milli` gets on a GPU of `gpu_memory_mib` in kShared mode: that
// fraction, rounded down so that shares adding up to the whole GPU always fit its memory.
int64_t MemoryOfShare(int64_t gpu_memory_mib, int32_t milli);

// A memory-bounded share: the smallest multiple of `unit_milli` whose memory (MemoryOfShare)
// holds `memory_mib`, at most the whole GPU (1000). This is how a tenant that thinks in shares
// sizes its request ("a quarter of a GPU, or as many quarters as the model's memory needs"); the
// rounding is the engine's, so the share it returns always holds the memory it was sized for,
// unless even the whole GPU does not. REQUIRES: 1 <= unit_milli <= 1000.
int32_t ShareHoldingMemory(int64_t gpu_memory_mib, int32_t unit_milli, int64_t memory_mib);

// What a placement takes from one GPU; the ledger gives exactly this back on release.
struct GpuCharge {
  int gpu = 0;
  int32_t milli = 0;
  int64_t memory_mib = 0;
  int mig_slice = -1;
};

// Whether one GPU (with its model and UUID constraints) can serve one GPU's worth of `demand`
// now, and what it would be charged.
bool FitsGpu(const Cluster& cluster, size_t node, int gpu, const Demand& demand, GpuCharge* charge);

// Whether the node has the CPU and memory for the demand (GPUs not considered).
inline bool FitsHost(const NodeState& state, const Demand& demand) {
  return state.free_cpu_milli >= demand.cpu_milli && state.free_memory_mib >= demand.memory_mib;
}

// Whether the whole demand fits the node: host resources, model, and gpu_count fitting GPUs.
bool FitsNode(const Cluster& cluster, size_t node, const Demand& demand);

// The GPUs a demand takes on a node, in increasing index. Empty for CPU-only demands.
struct GpuChoice {
  int count = 0;
  int gpus[kMaxGpusPerNode] = {};
};

// GPU choice used by most policies: for a fractional demand the fitting GPU with the least free
// share (best fit, lowest index on ties); otherwise the gpu_count fitting GPUs with the least
// free share (for whole GPUs: the lowest-index free ones). Returns false when they do not fit.
bool ChooseGpusBestFit(const Cluster& cluster, size_t node, const Demand& demand,
                       GpuChoice* choice);

// The choice from `fitting` (n GPUs that fit, in order of preference): its first gpu_count, or
// for a NUMA-bound demand the first gpu_count of the first NUMA node to have that many. False
// when there are not enough. The chosen GPUs are in increasing index.
bool TakePreferred(const Cluster& cluster, size_t node, const Demand& demand, const int* fitting,
                   int n, GpuChoice* choice);

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_REQUEST_H_
