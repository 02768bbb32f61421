// The placement engine's view of a mix strategy. Each pool's nodes become engine nodes whose
// GPUs are in the pool's sharing mode, and a job asks in a pool for what a pod of its class asks
// for there. The mix simulator places every job through this cluster, a placement::Ledger and a
// placement::Policy: the code tessera-scheduler runs (src/placement), not a copy of its rules.
#ifndef TESSERA_SIM_MIX_POOL_CLUSTER_H_
#define TESSERA_SIM_MIX_POOL_CLUSTER_H_

#include <cstdint>
#include <string_view>

#include "common/status.h"
#include "placement/cluster.h"
#include "placement/request.h"
#include "sim/mix/scenario.h"
#include "sim/mix/simulator.h"

namespace tessera::sim::mix {

// The engine policy every pool places with. binpack: the node, then the GPU, with the least free
// share left, so that whole nodes stay free for gang jobs and shares fill GPUs before opening
// new ones; ties go to the policy's seeded node ranks.
inline constexpr std::string_view kMixPolicy = "binpack";

// A GPU's memory as the engine counts it, in MiB.
int64_t GpuMemoryMib(const Scenario& scenario);

// The memory a job needs on its GPU, CUDA context included, in whole MiB (rounded up).
int64_t JobMemoryMib(const Scenario& scenario, const Job& job);

// A class's share in milli-GPU, rounded down so that k shares of 1/k fit one GPU (1/8 -> 125,
// 1/6 -> 166), at least 1.
int32_t ShareUnitMilli(double share);

// The engine nodes of a strategy, pool after pool in the strategy's order, `gpus_per_node` GPUs
// each, all of the pool's mode: MIG GPUs carry the pool's geometry as slices (compute slices as
// milli-GPU, rounded down), time-sliced GPUs the pool's replicas. CPU and host memory are not
// placement constraints in the mix (0 on both sides). REQUIRES: a scenario ParseScenario accepted.
Result<placement::Cluster> BuildPoolCluster(const Scenario& scenario, const Strategy& strategy);

// What a job asks for in a pool:
//   whole         its class's GPU count, each GPU whole (1000 milli)
//   shares        one share: its class's share, as many times as its memory needs
//                 (placement::ShareHoldingMemory), at most the whole GPU
//   mig           one instance that holds its memory (the memory form, no compute minimum)
//   time_slicing  one replica (the memory form; only the whole GPU's memory bounds it)
placement::Request JobRequest(const Scenario& scenario, const Pool& pool, const Job& job);

}  // namespace tessera::sim::mix

#endif  // TESSERA_SIM_MIX_POOL_CLUSTER_H_
