// A workload-mix scenario: the cluster, the job classes (arrival rate, duration, GPU memory,
// how busy each keeps a GPU), the overhead model of sharing, and the strategies to compare
// (each a split of the cluster's nodes into pools of one sharing mode). Scenarios are YAML or
// JSON files; `nio` is built in (scenarios/nio.yaml, documented line by line).
//
// Every number here is an input the user can see and change; the simulator derives all results
// from them. ParseScenario checks every field (type, range, cross references) and names the
// file, line and key of the first problem.
#ifndef TESSERA_SIM_MIX_SCENARIO_H_
#define TESSERA_SIM_MIX_SCENARIO_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "placement/cluster.h"

namespace tessera::sim::mix {

// A value drawn uniformly from [min, max] per job (min == max for a constant).
struct UniformRange {
  double min = 0;
  double max = 0;
  double Mean() const { return (min + max) / 2; }
};

// Log-normal job duration: median and sigma of the underlying normal, clipped to [min, max].
// The duration is what the job takes alone on a whole, dedicated GPU ("natural" duration).
struct DurationSpec {
  double median_minutes = 0;
  double sigma = 0;
  double min_minutes = 0;
  double max_minutes = 0;
};

struct JobClass {
  std::string name;
  double arrivals_per_hour = 0;  // Poisson arrivals
  DurationSpec duration;
  int gpus = 1;                // > 1: whole GPUs on one node (gang), whole pools only
  UniformRange memory_gib;     // GPU memory the job needs (excluding the CUDA context)
  UniformRange busy_fraction;  // share of its natural duration the job keeps a GPU busy
  double share = 1;            // share size asked for in a shares pool (fraction of a GPU)
  double cpus = 0;             // CPU cores a job keeps busy in its host phases (0: not modelled)
};

// A pool's GPUs are in one of the placement engine's sharing modes. The scenario format keeps its
// own words for them: whole (kWhole), mig (kMig), time_slicing (kTimeSliced), shares (kShared).
std::string_view PoolModeName(placement::SharingMode mode);

struct MigProfile {
  std::string name;        // "3g.40gb"
  int compute_slices = 0;  // of MigSpec::compute_slices
  int memory_slices = 0;   // of MigSpec::memory_slices
};

struct MigSpec {
  int compute_slices = 7;
  int memory_slices = 8;
  std::vector<MigProfile> profiles;
};

struct Pool {
  std::string name;
  placement::SharingMode mode = placement::SharingMode::kWhole;
  int nodes = 0;
  std::vector<int> classes;       // indices into Scenario::classes; a class tries its pools in
                                  // the order the strategy lists them
  std::vector<int> mig_geometry;  // kMig: indices into MigSpec::profiles, per GPU
  int replicas = 0;               // kTimeSliced: jobs per GPU
};

struct Strategy {
  std::string name;
  std::string description;
  std::vector<Pool> pools;
};

struct Overheads {
  double context_memory_gib = 0;         // GPU memory each job's CUDA context takes
  double shim_slowdown = 0;              // GPU phases under the shares shim run this much slower
  double interference_per_cotenant = 0;  // GPU phases slow by this per other job on the GPU
};

enum class ComputePolicy { kWorkConserving, kCapped };

struct TimeSlicing {
  double oom_after_minutes = 1;      // a job that overfills GPU memory dies this long after start
  double retry_backoff_minutes = 5;  // and is resubmitted this long after it died
};

struct Sweep {
  int nodes = 0;                // GPUs swept = nodes * gpus_per_node
  std::vector<int> classes;     // classes sent to the swept pool
  std::vector<int> partitions;  // denominators k: partitions of size 1/k
  double hours = 24;            // measured window
  double warmup_hours = 4;      // not counted, so the cluster is full when counting starts
};

struct Scenario {
  std::string name;
  std::string description;
  uint64_t seed = 1;
  double hours = 168;  // arrivals are generated over [0, hours)
  int nodes = 0;
  int gpus_per_node = 0;
  double gpu_memory_gib = 0;
  double cpus_per_node = 0;  // 0: CPU contention not modelled
  Overheads overheads;
  ComputePolicy compute_policy = ComputePolicy::kWorkConserving;
  MigSpec mig;
  TimeSlicing time_slicing;
  std::vector<JobClass> classes;
  std::vector<Strategy> strategies;
  Sweep sweep;

  int gpus() const { return nodes * gpus_per_node; }
  double CpusPerGpu() const { return cpus_per_node / gpus_per_node; }
  // -1 when absent.
  int ClassIndex(std::string_view class_name) const;
  int StrategyIndex(std::string_view strategy_name) const;
};

// Parses and validates a scenario. `source` names the text in errors ("scenarios/nio.yaml").
Result<Scenario> ParseScenario(std::string_view text, std::string_view source);

// `name_or_path`: a built-in scenario's name ("nio") or a path to a .yaml/.yml/.json file.
Result<Scenario> LoadScenario(std::string_view name_or_path);

// The text of a built-in scenario, or empty when there is none by that name.
std::string_view BuiltInScenarioText(std::string_view name);
std::vector<std::string> BuiltInScenarioNames();

}  // namespace tessera::sim::mix

#endif  // TESSERA_SIM_MIX_SCENARIO_H_
