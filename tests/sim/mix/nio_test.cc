// The effects the built-in nio scenario must show. None of the published outcomes is an input of
// the scenario: these tests check that the job model, the overheads and the packing reproduce
// them (docs/sim-mix.md lists which inputs are published and which are assumptions).
#include <gtest/gtest.h>

#include <string>

#include "sim/mix/report.h"
#include "sim/mix/scenario.h"
#include "sim/mix/simulator.h"

namespace tessera::sim::mix {
namespace {

const ClassStats& ClassOf(const StrategyStats& stats, const std::string& name) {
  for (const ClassStats& c : stats.classes) {
    if (c.name == name) return c;
  }
  ADD_FAILURE() << "no class " << name;
  return stats.classes.front();
}

class NioScenario : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    Result<Scenario> loaded = LoadScenario("nio");
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    scenario_ = std::move(loaded).value();
    const std::vector<Job> jobs = GenerateJobs(scenario_, GetParam());
    for (const char* name : {"whole", "shares", "hybrid"}) {
      results_.push_back(
          SimulateStrategy(scenario_, scenario_.strategies[scenario_.StrategyIndex(name)], jobs));
      ASSERT_EQ(results_.back().unfinished_jobs, 0) << name;
    }
  }
  const StrategyStats& whole() const { return results_[0]; }
  const StrategyStats& shares() const { return results_[1]; }
  const StrategyStats& hybrid() const { return results_[2]; }

  Scenario scenario_;
  std::vector<StrategyStats> results_;
};

TEST_P(NioScenario, CiUtilisationRisesFromFiveToTenPercentToThirtyToFifty) {
  EXPECT_GE(ClassOf(whole(), "ci").Utilisation(), 0.05);
  EXPECT_LE(ClassOf(whole(), "ci").Utilisation(), 0.10);
  for (const StrategyStats* stats : {&shares(), &hybrid()}) {
    EXPECT_GE(ClassOf(*stats, "ci").Utilisation(), 0.30) << stats->strategy;
    EXPECT_LE(ClassOf(*stats, "ci").Utilisation(), 0.50) << stats->strategy;
  }
}

TEST_P(NioScenario, SimulationGpuHoursFallByAboutThirtyPercent) {
  const double before = ClassOf(whole(), "simulation").held_gpu_hours;
  for (const StrategyStats* stats : {&shares(), &hybrid()}) {
    const double change = ClassOf(*stats, "simulation").held_gpu_hours / before - 1;
    EXPECT_GE(change, -0.38) << stats->strategy;
    EXPECT_LE(change, -0.22) << stats->strategy;
  }
}

TEST_P(NioScenario, SharingDoesTheSameWorkOnFewerGpuHours) {
  EXPECT_NEAR(shares().UsefulGpuHours(), whole().UsefulGpuHours(), 1e-6 * whole().UsefulGpuHours());
  EXPECT_LT(shares().HeldGpuHours(), whole().HeldGpuHours());
  EXPECT_LT(hybrid().HeldGpuHours(), whole().HeldGpuHours());
}

INSTANTIATE_TEST_SUITE_P(Seeds, NioScenario, ::testing::Values(42u, 7u));

TEST(NioPartitionSweep, HasAnInteriorOptimumWithTheModelledOverheads) {
  Result<Scenario> scenario = LoadScenario("nio");
  ASSERT_TRUE(scenario.ok());
  for (uint64_t seed : {42u, 7u}) {
    std::vector<SweepPoint> points = SweepPartitions(*scenario, seed);
    const int best = BestSweepIndex(points);
    EXPECT_GT(best, 0) << "seed " << seed << ": whole GPUs should waste what CI leaves idle";
    EXPECT_LT(best, static_cast<int>(points.size()) - 1)
        << "seed " << seed << ": the finest partition should pay for its overheads";
  }
}

TEST(NioPartitionSweep, WithoutOverheadsTheOptimumIsNoCoarser) {
  Result<Scenario> scenario = LoadScenario("nio");
  ASSERT_TRUE(scenario.ok());
  const int with = scenario->sweep.partitions[BestSweepIndex(SweepPartitions(*scenario, 42))];
  scenario->overheads = Overheads{};
  scenario->cpus_per_node = 0;
  for (JobClass& job_class : scenario->classes) job_class.cpus = 0;
  const int without = scenario->sweep.partitions[BestSweepIndex(SweepPartitions(*scenario, 42))];
  EXPECT_GE(without, with);
}

}  // namespace
}  // namespace tessera::sim::mix
