// The discrete-event simulation of a workload mix on a cluster split into pools.
//
// Jobs arrive (Poisson per class, seeded), start as soon as a pool they may use has room (the
// waiting jobs are tried in arrival order and any that fits starts: greedy backfill), run at the
// speed their placement allows (contention.h) and leave. Each strategy replays the same jobs.
//
// Definitions used in every report:
//   held GPU-hours  of a job = the fraction of a GPU it holds x the wall time it holds it
//                   (whole GPUs: the count; MIG: compute slices / slices per GPU; time-slicing:
//                   1 / replicas; shares: the share). Failed attempts count too.
//   useful GPU-hours of a job = busy fraction x natural duration: the GPU work it needed, the
//                   same wherever it runs. Overheads and contention never count as useful.
//   utilisation of a class = useful / held GPU-hours (how busy the GPU it pays for is).
//   cluster utilisation    = all useful GPU-hours / (GPUs x makespan).
//   stretch of a job       = wall time from start to end of its successful run / natural duration.
//   queue time             = start of its successful run - arrival.
#ifndef TESSERA_SIM_MIX_SIMULATOR_H_
#define TESSERA_SIM_MIX_SIMULATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "sim/mix/scenario.h"

namespace tessera::sim::mix {

struct Job {
  int class_index = 0;
  double arrival_seconds = 0;
  double natural_seconds = 0;  // duration alone on a whole dedicated GPU
  double busy = 0;             // busy fraction on a whole dedicated GPU
  double memory_gib = 0;       // excluding the CUDA context
};

// All jobs arriving in [0, scenario.hours), in arrival order. Each class draws from its own
// stream derived from `seed`, so one class's parameters never change another's jobs.
std::vector<Job> GenerateJobs(const Scenario& scenario, uint64_t seed);

struct ClassStats {
  std::string name;
  int jobs = 0;
  int completed = 0;
  int failed_attempts = 0;  // time-slicing: jobs killed for overfilling GPU memory
  double held_gpu_hours = 0;
  double useful_gpu_hours = 0;
  double mean_queue_hours = 0;
  double p95_queue_hours = 0;
  double mean_stretch = 0;
  double Utilisation() const { return held_gpu_hours > 0 ? useful_gpu_hours / held_gpu_hours : 0; }
};

struct StrategyStats {
  std::string strategy;
  int gpus = 0;
  double makespan_hours = 0;        // from 0 to the last job's end
  std::vector<ClassStats> classes;  // in scenario order
  int unfinished_jobs = 0;          // jobs still queued or running at the safety stop (should be 0)

  double HeldGpuHours() const;
  double UsefulGpuHours() const;
  double ClusterUtilisation() const;
};

StrategyStats SimulateStrategy(const Scenario& scenario, const Strategy& strategy,
                               const std::vector<Job>& jobs);

// The partition sweep: sweep.nodes nodes cut into equal partitions of 1/k of a GPU (memory and
// compute), the sweep classes asking for as many partitions as their memory needs, under a
// backlog that never empties (strict FIFO, jobs drawn in proportion to the classes' arrival
// rates), so that what is measured is how much work the partitioning lets through.
struct SweepPoint {
  int denominator = 1;       // partitions of 1/denominator of a GPU
  double jobs_per_hour = 0;  // completed in the measured window
  double useful_gpu_hours_per_hour = 0;
  double mean_stretch = 0;
  double mean_jobs_per_busy_gpu = 0;  // time-averaged jobs per GPU that has any
};

std::vector<SweepPoint> SweepPartitions(const Scenario& scenario, uint64_t seed);

}  // namespace tessera::sim::mix

#endif  // TESSERA_SIM_MIX_SIMULATOR_H_
