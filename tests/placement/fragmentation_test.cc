#include "placement/fragmentation.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/placement/test_cluster.h"

namespace tessera::placement {
namespace {

using testing::MakeCluster;
using testing::Node;

TaskShape Shape(int64_t cpu, int32_t milli, int32_t count, std::vector<std::string> types = {}) {
  return TaskShape{cpu, milli, count, std::move(types)};
}

// reference/fgd-trace.md §6.4: A = half a GPU (p .5), B = one GPU (p .3), C = CPU only (p .2).
class WorkedExample : public ::testing::Test {
 protected:
  Cluster cluster_ = MakeCluster({Node("x", 64000, 2)});
  Workload workload_{
      cluster_,
      {{Shape(1000, 500, 1), 0.5}, {Shape(1000, 1000, 1), 0.3}, {Shape(1000, 0, 0), 0.2}}};
  int model_ = cluster_.ModelId("T4");

  double F(std::vector<int32_t> free, int64_t cpu = 64000) {
    return workload_.NodeFragmentation(model_, cpu, free);
  }
};

TEST_F(WorkedExample, AnIdleNodeIsFragmentedOnlyForCpuOnlyTasks) {
  EXPECT_DOUBLE_EQ(F({1000, 1000}), 400);  // 0.2 * 2000
}

TEST_F(WorkedExample, AHalfUsedGpuIsAFragmentForWholeGpuTasks) {
  EXPECT_DOUBLE_EQ(F({500, 1000}), 450);  // 0.3 * 500 + 0.2 * 1500
}

TEST_F(WorkedExample, FillingTheHoleLowersFragmentationMoreThanOpeningAGpu) {
  EXPECT_DOUBLE_EQ(F({0, 1000}) - F({500, 1000}), -250);
  EXPECT_DOUBLE_EQ(F({500, 1000}) - F({1000, 1000}), 50);
}

TEST_F(WorkedExample, ANodeWithoutCpuForTheTasksIsAllFragment) {
  EXPECT_DOUBLE_EQ(F({500, 1000}, 999), 1500);
}

TEST_F(WorkedExample, ANodeWithNothingFreeHasNoFragment) { EXPECT_DOUBLE_EQ(F({0, 0}), 0); }

TEST(Fragmentation, AShapeNeedingMoreGpusThanFitCountsEverythingAsFragment) {
  Cluster cluster = MakeCluster({Node("n", 64000, 2)});
  Workload two_gpus(cluster, {{Shape(1000, 1000, 2), 1.0}});
  int model = cluster.ModelId("T4");
  EXPECT_DOUBLE_EQ(two_gpus.NodeFragmentation(model, 64000, std::vector<int32_t>{1000, 1000}), 0);
  EXPECT_DOUBLE_EQ(two_gpus.NodeFragmentation(model, 64000, std::vector<int32_t>{1000, 600}), 1600);
}

TEST(Fragmentation, AShapeThatExcludesTheModelCountsEverythingAsFragment) {
  Cluster cluster = MakeCluster({Node("t4", 64000, 1, "T4"), Node("a10", 64000, 1, "A10")});
  Workload only_a10(cluster, {{Shape(1000, 500, 1, {"A10"}), 1.0}});
  std::vector<int32_t> free = {1000};
  EXPECT_DOUBLE_EQ(only_a10.NodeFragmentation(cluster.ModelId("T4"), 64000, free), 1000);
  EXPECT_DOUBLE_EQ(only_a10.NodeFragmentation(cluster.ModelId("A10"), 64000, free), 0);
}

TEST(Fragmentation, OnlyGpusSmallerThanTheShareAreFragmentsOfAFittingShape) {
  Cluster cluster = MakeCluster({Node("n", 64000, 4)});
  Workload half(cluster, {{Shape(1000, 500, 1), 1.0}});
  EXPECT_DOUBLE_EQ(half.NodeFragmentation(cluster.ModelId("T4"), 64000,
                                          std::vector<int32_t>{100, 499, 500, 1000}),
                   599);
}

TEST(Fragmentation, WeightsAreNormalised) {
  Cluster cluster = MakeCluster({Node("n", 64000, 1)});
  Workload counts(cluster, {{Shape(1000, 500, 1), 30}, {Shape(1000, 0, 0), 10}});
  EXPECT_DOUBLE_EQ(
      counts.NodeFragmentation(cluster.ModelId("T4"), 64000, std::vector<int32_t>{400}), 400);
  EXPECT_DOUBLE_EQ(
      counts.NodeFragmentation(cluster.ModelId("T4"), 64000, std::vector<int32_t>{1000}), 250);
}

TEST(Fragmentation, AnEmptyWorkloadSeesNoFragment) {
  Cluster cluster = MakeCluster({Node("n", 64000, 1)});
  EXPECT_DOUBLE_EQ(Workload().NodeFragmentation(0, 0, std::vector<int32_t>{300}), 0);
  EXPECT_DOUBLE_EQ(Workload(cluster, {}).NodeFragmentation(cluster, 0), 0);
}

TEST(CapacityWaste, CountsGpusTheNodesCpuCannotFeed) {
  Cluster cluster = MakeCluster({Node("n", 96000, 8)});
  Workload one_gpu(cluster, {{Shape(12000, 1000, 1), 1.0}});
  int model = cluster.ModelId("T4");
  std::vector<int32_t> free(8, 1000);
  EXPECT_DOUBLE_EQ(one_gpu.NodeCapacityWaste(model, 96000, free), 0);
  EXPECT_DOUBLE_EQ(one_gpu.NodeCapacityWaste(model, 64000, free), 3000);  // 5 copies for 8 GPUs
  // The fragmentation measure sees nothing: the next task still fits.
  EXPECT_DOUBLE_EQ(one_gpu.NodeFragmentation(model, 64000, free), 0);
}

TEST(CapacityWaste, CountsWhatWholeCopiesOfAShareLeaveOnEachGpu) {
  Cluster cluster = MakeCluster({Node("n", 96000, 2)});
  Workload fraction(cluster, {{Shape(1000, 400, 1), 1.0}});
  EXPECT_DOUBLE_EQ(
      fraction.NodeCapacityWaste(cluster.ModelId("T4"), 96000, std::vector<int32_t>{1000, 300}),
      500);  // 2 copies in the first GPU leave 200, none fits the 300
}

TEST(WeighByScarcity, ScalesTypedShapesByAllGpusOverTheGpusTheyMayUse) {
  Cluster cluster = MakeCluster(
      {Node("t4", 64000, 1, "T4"), Node("v100", 64000, 3, "V100"), Node("g2", 64000, 8, "G2")});
  std::vector<WeightedShape> shapes =
      WeighByScarcity(cluster, {{Shape(1000, 500, 1), 10},
                                {Shape(1000, 500, 1, {"T4"}), 10},
                                {Shape(1000, 500, 1, {"T4", "V100"}), 10},
                                {Shape(1000, 0, 0), 10}});
  EXPECT_DOUBLE_EQ(shapes[0].weight, 10);
  EXPECT_DOUBLE_EQ(shapes[1].weight, 120);  // 12 GPUs, 1 is a T4
  EXPECT_DOUBLE_EQ(shapes[2].weight, 30);   // 4 of 12 are T4 or V100
  EXPECT_DOUBLE_EQ(shapes[3].weight, 10);
}

TEST(HoleWaste, CountsWhatNoMixOfTheFrequentSharesFills) {
  Cluster cluster = MakeCluster({Node("n", 64000, 2)});
  HoleWaste holes(
      cluster,
      std::vector<WeightedShape>{
          {Shape(1000, 470, 1), 0.5}, {Shape(1000, 320, 1), 0.3}, {Shape(1000, 1000, 1), 0.2}},
      1.0);
  int model = cluster.ModelId("T4");
  EXPECT_EQ(holes.Unfillable(model, 0), 0);
  EXPECT_EQ(holes.Unfillable(model, 1000), 0);
  EXPECT_EQ(holes.Unfillable(model, 530), 60);   // one 0.47
  EXPECT_EQ(holes.Unfillable(model, 680), 40);   // two 0.32
  EXPECT_EQ(holes.Unfillable(model, 210), 210);  // nothing fits
  EXPECT_EQ(holes.Unfillable(model, 790), 0);    // 0.47 + 0.32
  EXPECT_DOUBLE_EQ(holes.NodeHoleWaste(model, 64000, std::vector<int32_t>{530, 210}), 270);
}

TEST(HoleWaste, LeavesRareSharesOutAndHonoursModels) {
  Cluster cluster = MakeCluster({Node("t4", 64000, 1, "T4"), Node("v100", 64000, 1, "V100")});
  std::vector<WeightedShape> shapes = {
      {Shape(1000, 810, 1), 0.6}, {Shape(1000, 470, 1, {"V100"}), 0.3}, {Shape(1000, 160, 1), 0.1}};
  HoleWaste frequent(cluster, shapes, 0.85);  // 0.81 and 0.47 cover 90 %: 0.16 is rare
  HoleWaste all(cluster, shapes, 1.0);
  const int t4 = cluster.ModelId("T4");
  const int v100 = cluster.ModelId("V100");
  EXPECT_EQ(frequent.Unfillable(t4, 190), 190);
  EXPECT_EQ(all.Unfillable(t4, 190), 30);
  EXPECT_EQ(frequent.Unfillable(t4, 530), 530);  // 0.47 may not run on a T4
  EXPECT_EQ(frequent.Unfillable(v100, 530), 60);
}

TEST(HoleWaste, CountsEverythingOnANodeWithoutCpuForTheFrequentShapes) {
  Cluster cluster = MakeCluster({Node("n", 64000, 2)});
  HoleWaste holes(cluster, std::vector<WeightedShape>{{Shape(4000, 500, 1), 1.0}}, 1.0);
  const int model = cluster.ModelId("T4");
  std::vector<int32_t> free = {1000, 500};
  EXPECT_DOUBLE_EQ(holes.NodeHoleWaste(model, 4000, free), 0);
  EXPECT_DOUBLE_EQ(holes.NodeHoleWaste(model, 3999, free), 1500);
}

TEST(Fragmentation, ClusterRateIsAmountOverFreeShare) {
  Cluster cluster = MakeCluster({Node("a", 64000, 2), Node("b", 64000, 2)});
  Workload cpu_only(cluster, {{Shape(1000, 0, 0), 1.0}});
  ClusterFragmentation f = MeasureCluster(cluster, cpu_only);
  EXPECT_DOUBLE_EQ(f.amount_milli, 4000);
  EXPECT_DOUBLE_EQ(f.free_milli, 4000);
  EXPECT_DOUBLE_EQ(f.rate(), 1.0);
}

TEST(TypicalShapes, CountsShapesMostFrequentFirstAndLargerOnTies) {
  std::vector<TaskShape> pods = {Shape(1, 500, 1), Shape(2, 500, 1), Shape(1, 500, 1),
                                 Shape(3, 0, 0),   Shape(2, 500, 1), Shape(4, 1000, 1)};
  std::vector<ShapeCount> counts = CountShapes(pods);
  ASSERT_EQ(counts.size(), 4u);
  EXPECT_EQ(counts[0].shape, Shape(2, 500, 1));  // 2 pods, larger CPU than the other pair
  EXPECT_EQ(counts[1].shape, Shape(1, 500, 1));
  EXPECT_EQ(counts[2].shape, Shape(4, 1000, 1));
  EXPECT_EQ(counts[3].shape, Shape(3, 0, 0));
}

TEST(TypicalShapes, StopsOnceCoverageIsReached) {
  std::vector<ShapeCount> counts = {
      {Shape(1, 500, 1), 60}, {Shape(2, 500, 1), 30}, {Shape(3, 500, 1), 6}, {Shape(4, 500, 1), 4}};
  EXPECT_EQ(TypicalShapes(counts, 0.95).size(), 3u);  // 60+30 < 95 <= 96
  EXPECT_EQ(TypicalShapes(counts, 0.90).size(), 2u);
  EXPECT_EQ(TypicalShapes(counts, 1.0).size(), 4u);
}

}  // namespace
}  // namespace tessera::placement
