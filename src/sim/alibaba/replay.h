// Replays the Alibaba trace under one policy and one seed, with the FGD artifact's protocol
// (reference/fgd-trace.md §3): nodes ranked for ties by a seeded permutation; the pods sorted by
// name and shuffled with the seed; pods resampled from the trace (with replacement) and appended
// until the GPU request reaches `inflation` x cluster capacity (or random pods removed when the
// trace is above it); then pods arrive one by one, never leave, and a pod that fits nowhere is
// dropped. After every pod the allocated and arrived GPU shares and the fragmentation are
// recorded; the curves average them per integer percent of arrived workload.
#ifndef TESSERA_SIM_ALIBABA_REPLAY_H_
#define TESSERA_SIM_ALIBABA_REPLAY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "placement/cluster.h"
#include "placement/fragmentation.h"
#include "sim/alibaba/trace.h"

namespace tessera::sim::alibaba {

inline constexpr int kCurveMaxPercent = 130;

struct ReplayOptions {
  uint64_t seed = 42;
  double inflation = 1.3;
  bool fgd_quantised = true;   // fgd as the artifact scores (see placement::PolicyOptions)
  double fgd_coverage = 0.95;  // share of pods fgd's typical shapes cover
};

// What a trace is, prepared once for any number of replays: the cluster and the trace's shape
// counts (FGD's prior knowledge).
struct PreparedTrace {
  const Trace* trace = nullptr;
  placement::Cluster cluster;
  std::vector<placement::ShapeCount> shape_counts;
  placement::Workload measure;  // the typical shapes (95 %), used to report fragmentation
};
Result<PreparedTrace> PrepareTrace(const Trace& trace);

struct FailureCounts {
  int cpu_only = 0;
  int fractional = 0;
  int one_gpu = 0;
  int multi_gpu = 0;
  int total() const { return cpu_only + fractional + one_gpu + multi_gpu; }
};

// Where the free GPU share sits when the arrived demand first reaches the cluster's capacity
// (then free share = failed demand), in GPUs.
struct StrandedShare {
  double whole_with_cpu = 0;     // fully free GPUs on nodes with >= 4 free CPUs
  double whole_without_cpu = 0;  // fully free GPUs on nodes with less
  double holes_below_200 = 0;    // partly used GPUs, by free milli-GPU
  double holes_200_to_600 = 0;
  double holes_above_600 = 0;
};

struct ReplayResult {
  std::string policy;
  uint64_t seed = 0;
  int pods = 0;                      // after inflation
  FailureCounts failed;              // over the whole replay
  FailureCounts failed_by_full;      // while arrived workload <= 100 % of capacity
  int64_t failed_milli_by_full = 0;  // their GPU demand
  StrandedShare stranded_at_full;
  // Index x = arrived workload in percent of cluster GPU capacity, 0..kCurveMaxPercent.
  std::vector<double> allocated_pct;    // allocated GPU share, % of capacity
  std::vector<double> frag_amount_pct;  // F(M), % of capacity
  std::vector<double> frag_rate_pct;    // F(M), % of idle GPU share
  double seconds = 0;                   // wall time of the replay loop

  double unallocated_pct(int arrived_pct) const { return 100 - allocated_pct[arrived_pct]; }
};

Result<ReplayResult> Replay(const PreparedTrace& prepared, const std::string& policy,
                            const ReplayOptions& options);

}  // namespace tessera::sim::alibaba

#endif  // TESSERA_SIM_ALIBABA_REPLAY_H_
