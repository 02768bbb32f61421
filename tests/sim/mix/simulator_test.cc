#include "sim/mix/simulator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "sim/mix/report.h"

namespace tessera::sim::mix {
namespace {

// Two GPUs per node, one low-busy class ("ci") and one busier one ("sim"); no overheads unless a
// test adds them, so each effect can be looked at alone.
Scenario SmallScenario() {
  Result<Scenario> scenario = ParseScenario(R"(name: small
hours: 48
cluster: {nodes: 4, gpus_per_node: 2, gpu_memory_gib: 40}
overheads: {context_memory_gib: 0, shim_slowdown: 0, interference_per_cotenant: 0}
time_slicing: {oom_after_minutes: 1, retry_backoff_minutes: 5}
classes:
  - {name: ci, arrivals_per_hour: 12, duration_minutes: {median: 20, sigma: 0.3},
     memory_gib: {min: 2, max: 4}, busy_fraction: {min: 0.05, max: 0.1}, share: 1/8}
  - {name: sim, arrivals_per_hour: 4, duration_minutes: {median: 30, sigma: 0.3},
     memory_gib: {min: 15, max: 30}, busy_fraction: {min: 0.4, max: 0.6}, share: 1/4}
strategies:
  - name: whole
    pools: [{name: all, mode: whole, nodes: 4, classes: [ci, sim]}]
  - name: shares
    pools: [{name: all, mode: shares, nodes: 4, classes: [ci, sim]}]
  - name: time_slicing
    pools: [{name: all, mode: time_slicing, nodes: 4, replicas: 4, classes: [ci, sim]}]
sweep: {nodes: 4, classes: [ci, sim], partitions: [1, 2, 3, 4, 6, 8], hours: 12, warmup_hours: 2}
)",
                                            "small");
  EXPECT_TRUE(scenario.ok()) << scenario.status().message();
  return std::move(scenario).value();
}

StrategyStats Simulate(const Scenario& scenario, const std::string& strategy, uint64_t seed = 3) {
  return SimulateStrategy(scenario, scenario.strategies[scenario.StrategyIndex(strategy)],
                          GenerateJobs(scenario, seed));
}

TEST(GenerateJobs, TheSameSeedGivesTheSameJobsAndAnotherSeedOthers) {
  const Scenario scenario = SmallScenario();
  std::vector<Job> a = GenerateJobs(scenario, 1);
  std::vector<Job> b = GenerateJobs(scenario, 1);
  std::vector<Job> c = GenerateJobs(scenario, 2);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].arrival_seconds, b[i].arrival_seconds);
  EXPECT_NE(a.front().arrival_seconds, c.front().arrival_seconds);
}

TEST(GenerateJobs, ArrivalsFollowTheRatesAndDrawsStayInTheirRanges) {
  const Scenario scenario = SmallScenario();
  std::vector<Job> jobs = GenerateJobs(scenario, 5);
  int ci = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& job = jobs[i];
    if (i > 0) {
      EXPECT_LE(jobs[i - 1].arrival_seconds, job.arrival_seconds);
    }
    EXPECT_LT(job.arrival_seconds, scenario.hours * 3600);
    const JobClass& job_class = scenario.classes[job.class_index];
    EXPECT_GE(job.busy, job_class.busy_fraction.min);
    EXPECT_LE(job.busy, job_class.busy_fraction.max);
    EXPECT_GE(job.memory_gib, job_class.memory_gib.min);
    EXPECT_LE(job.memory_gib, job_class.memory_gib.max);
    ci += job.class_index == 0 ? 1 : 0;
  }
  // Poisson: 12/h x 48 h = 576 expected, standard deviation 24.
  EXPECT_NEAR(ci, 576, 5 * 24);
}

TEST(Simulator, EveryJobFinishesAndWholeGpusRunAtNaturalSpeed) {
  const Scenario scenario = SmallScenario();
  StrategyStats stats = Simulate(scenario, "whole");
  EXPECT_EQ(stats.unfinished_jobs, 0);
  for (const ClassStats& c : stats.classes) {
    EXPECT_EQ(c.completed, c.jobs);
    EXPECT_NEAR(c.mean_stretch, 1.0, 1e-9) << c.name;
    // One job per GPU, so the GPU time held is the natural duration and the utilisation is the
    // (duration-weighted) busy fraction.
    EXPECT_GE(c.Utilisation(), scenario.classes[&c - &stats.classes[0]].busy_fraction.min);
    EXPECT_LE(c.Utilisation(), scenario.classes[&c - &stats.classes[0]].busy_fraction.max);
  }
}

TEST(Simulator, UsefulWorkIsTheSameUnderEveryStrategy) {
  const Scenario scenario = SmallScenario();
  const double whole = Simulate(scenario, "whole").UsefulGpuHours();
  EXPECT_NEAR(Simulate(scenario, "shares").UsefulGpuHours(), whole, 1e-6 * whole);
  EXPECT_NEAR(Simulate(scenario, "time_slicing").UsefulGpuHours(), whole, 1e-6 * whole);
}

TEST(Simulator, SharesPackLowBusyJobsAndRaiseTheirUtilisation) {
  const Scenario scenario = SmallScenario();
  const double whole = Simulate(scenario, "whole").classes[0].Utilisation();
  const double shares = Simulate(scenario, "shares").classes[0].Utilisation();
  // A 1/8 share holds an eighth of the GPU; with no overheads the CI jobs barely slow down.
  EXPECT_GT(shares, 5 * whole);
  EXPECT_LE(shares, 8 * whole);
}

TEST(Simulator, CappedSharesMakeBusyJobsSlowerThanWorkConservingOnes) {
  Scenario scenario = SmallScenario();
  scenario.compute_policy = ComputePolicy::kWorkConserving;
  const double lending = Simulate(scenario, "shares").classes[1].mean_stretch;
  scenario.compute_policy = ComputePolicy::kCapped;
  const double capped = Simulate(scenario, "shares").classes[1].mean_stretch;
  EXPECT_GT(capped, lending);
}

TEST(Simulator, OverheadsStretchSharedJobs) {
  Scenario scenario = SmallScenario();
  const double without = Simulate(scenario, "shares").classes[1].mean_stretch;
  scenario.overheads.interference_per_cotenant = 0.1;
  scenario.overheads.shim_slowdown = 0.05;
  EXPECT_GT(Simulate(scenario, "shares").classes[1].mean_stretch, without);
}

TEST(Simulator, TimeSlicingKillsJobsThatOverfillMemoryAndSharesNever) {
  Scenario scenario = SmallScenario();
  // Four 15-30 GiB jobs on a 40 GiB GPU: time-slicing admits them anyway.
  scenario.classes[1].arrivals_per_hour = 20;
  StrategyStats sliced = Simulate(scenario, "time_slicing");
  StrategyStats shares = Simulate(scenario, "shares");
  EXPECT_GT(sliced.classes[1].failed_attempts, 0);
  EXPECT_EQ(shares.classes[1].failed_attempts, 0);
  EXPECT_EQ(sliced.unfinished_jobs, 0);
  // Killed attempts held GPUs without doing useful work.
  EXPECT_LT(sliced.classes[1].Utilisation() * sliced.classes[1].held_gpu_hours,
            sliced.classes[1].held_gpu_hours);
}

TEST(Simulator, JobsQueueWhenTheClusterIsFullAndNotWhenItIsIdle) {
  Scenario scenario = SmallScenario();
  EXPECT_LT(Simulate(scenario, "whole").classes[0].mean_queue_hours, 0.05);
  scenario.classes[0].arrivals_per_hour = 60;  // 60 x 20 min = 20 GPUs wanted of 8
  scenario.hours = 8;
  EXPECT_GT(Simulate(scenario, "whole").classes[0].mean_queue_hours, 1.0);
}

// One node with one GPU in `pool_yaml`'s mode, one class, and jobs given by hand, so that what
// the engine decides for each job can be read off the statistics.
Scenario OneGpuScenario(const std::string& gpu_memory_gib, const std::string& class_yaml,
                        const std::string& pool_yaml) {
  Result<Scenario> scenario = ParseScenario(
      "name: one\nhours: 1\ncluster: {nodes: 1, gpus_per_node: 1, gpu_memory_gib: " +
          gpu_memory_gib +
          "}\n"
          "overheads: {context_memory_gib: 0, shim_slowdown: 0, interference_per_cotenant: 0}\n"
          "shares: {compute_policy: work_conserving}\n"
          "mig:\n  compute_slices: 7\n  memory_slices: 8\n  profiles:\n"
          "    - {name: 2g.20gb, compute: 2, memory: 2}\n"
          "    - {name: 1g.40gb, compute: 1, memory: 4}\n"
          "classes:\n  - {name: job, arrivals_per_hour: 1, duration_minutes: {median: 60, sigma: "
          "0},\n"
          "     busy_fraction: 1, " +
          class_yaml + "}\nstrategies:\n  - name: only\n    pools: [" + pool_yaml +
          "]\nsweep: {nodes: 1, classes: [job], partitions: [1]}\n",
      "one");
  EXPECT_TRUE(scenario.ok()) << scenario.status().message();
  return std::move(scenario).value();
}

Job HourJob(double memory_gib) {
  Job job;
  job.natural_seconds = 3600;
  job.busy = 1;
  job.memory_gib = memory_gib;
  return job;
}

TEST(PlacementThroughTheEngine, MigTakesTheInstanceWithLeastComputeThatHoldsTheJob) {
  // Both instances hold 15 GiB. The engine orders MIG slices by compute, then memory, so it takes
  // the 1-slice 40 GiB instance (a 7x slower GPU phase), not the 2-slice 20 GiB one that the
  // smallest-memory-first rule would take (stretch 3.5).
  const Scenario scenario = OneGpuScenario(
      "80", "memory_gib: 15",
      "{name: m, mode: mig, nodes: 1, geometry: [2g.20gb, 1g.40gb], classes: [job]}");
  const StrategyStats stats = SimulateStrategy(scenario, scenario.strategies[0], {HourJob(15)});
  ASSERT_EQ(stats.classes[0].completed, 1);
  EXPECT_NEAR(stats.classes[0].mean_stretch, 7.0, 1e-6);
  EXPECT_NEAR(stats.classes[0].held_gpu_hours, 1.0, 1e-6);  // 1/7 of a GPU for 7 hours
}

TEST(PlacementThroughTheEngine, ASharesMemoryIsTheEnginesRoundedDownLimit) {
  // A third of a GPU is 333 milli, whose memory on 30 GiB is 10229 MiB: a job needing 10 GiB
  // takes two thirds, so the second of two such jobs waits for the first, where exact thirds
  // would have run both at once.
  const Scenario scenario = OneGpuScenario("30", "memory_gib: 10, share: 1/3",
                                           "{name: s, mode: shares, nodes: 1, classes: [job]}");
  const StrategyStats stats =
      SimulateStrategy(scenario, scenario.strategies[0], {HourJob(10), HourJob(10)});
  ASSERT_EQ(stats.classes[0].completed, 2);
  EXPECT_NEAR(stats.classes[0].mean_queue_hours, 0.5, 1e-6);
  EXPECT_NEAR(stats.classes[0].held_gpu_hours, 2 * 0.666, 1e-6);
}

TEST(PartitionSweep, WholeGpusLetFewerJobsThroughThanAnyPartition) {
  Scenario scenario = SmallScenario();
  std::vector<SweepPoint> points = SweepPartitions(scenario, 9);
  ASSERT_EQ(points.size(), 6u);
  // Whole GPUs waste what low-busy jobs leave idle; every finer partition does better.
  for (size_t i = 1; i < points.size(); ++i)
    EXPECT_GT(points[i].jobs_per_hour, points[0].jobs_per_hour);
}

TEST(Report, JsonCarriesEveryStrategyAndClass) {
  const Scenario scenario = SmallScenario();
  MixReport report;
  report.scenario = &scenario;
  report.strategies.push_back(Simulate(scenario, "whole"));
  report.strategies.push_back(Simulate(scenario, "shares"));
  const std::string json = FormatJson(report);
  EXPECT_NE(json.find("\"name\": \"shares\""), std::string::npos);
  EXPECT_NE(json.find("\"name\": \"sim\""), std::string::npos);
  EXPECT_EQ(json.find("nan"), std::string::npos);
  const std::string text = FormatText(report);
  EXPECT_NE(text.find("GPU-hours held, by class"), std::string::npos);
}

}  // namespace
}  // namespace tessera::sim::mix
