#include "placement/ledger.h"

#include <gtest/gtest.h>

#include "tests/placement/test_cluster.h"

namespace tessera::placement {
namespace {

using testing::CpuOnly;
using testing::Gpu;
using testing::MakeCluster;
using testing::Node;

Assignment On(size_t node, std::initializer_list<int> gpus) {
  Assignment a;
  a.node = node;
  for (int g : gpus) a.gpus.gpus[a.gpus.count++] = g;
  return a;
}

TEST(Ledger, PlaceChargesTheNodeAndTheChosenGpus) {
  Ledger ledger(MakeCluster({Node("n", 8000, 2)}));
  auto id = ledger.Place(Gpu(1, 300, 2500), On(0, {1}));
  ASSERT_TRUE(id.ok()) << id.status().message();
  const Cluster& c = ledger.cluster();
  EXPECT_EQ(c.state(0).free_cpu_milli, 5500);
  EXPECT_EQ(c.gpus(0)[0].free_milli, 1000);
  EXPECT_EQ(c.gpus(0)[1].free_milli, 700);
  EXPECT_EQ(c.state(0).free_gpu_milli, 1700);
  EXPECT_EQ(c.allocated_gpu_milli(), 300);
  EXPECT_EQ(c.state(0).shared_gpu_pods, 1u);
}

TEST(Ledger, ReleaseGivesBackExactlyWhatWasCharged) {
  Ledger ledger(MakeCluster({Node("n", 8000, 2, "T4", 4096)}));
  auto a = ledger.Place(Gpu(2, 1000, 3000), On(0, {0, 1}));
  auto b = ledger.Place(CpuOnly(1000), On(0, {}));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(ledger.Release(*a).ok());
  ASSERT_TRUE(ledger.Release(*b).ok());
  const Cluster& c = ledger.cluster();
  EXPECT_EQ(c.state(0).free_cpu_milli, 8000);
  EXPECT_EQ(c.state(0).free_memory_mib, 4096);
  EXPECT_EQ(c.gpus(0)[0].free_milli, 1000);
  EXPECT_EQ(c.state(0).free_gpu_milli, 2000);
  EXPECT_EQ(c.gpus(0)[1].tenants, 0u);
  EXPECT_EQ(c.allocated_gpu_milli(), 0);
  EXPECT_EQ(c.state(0).pods, 0u);
  EXPECT_EQ(ledger.live_placements(), 0u);
}

TEST(Ledger, RefusesWhatDoesNotFitAndChangesNothing) {
  Ledger ledger(MakeCluster({Node("n", 8000, 2)}));
  ASSERT_TRUE(ledger.Place(Gpu(1, 700), On(0, {0})).ok());
  const uint64_t version = ledger.cluster().state(0).version;
  auto refused = ledger.Place(Gpu(2, 500), On(0, {1, 0}));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("\"n\""), std::string::npos);
  EXPECT_EQ(ledger.cluster().gpus(0)[1].free_milli, 1000);
  EXPECT_EQ(ledger.cluster().state(0).version, version);
}

TEST(Ledger, RefusesMalformedGpuChoices) {
  Ledger ledger(MakeCluster({Node("n", 8000, 2)}));
  EXPECT_FALSE(ledger.Place(Gpu(2, 500), On(0, {1, 1})).ok());
  EXPECT_FALSE(ledger.Place(Gpu(2, 500), On(0, {0})).ok());
  EXPECT_FALSE(ledger.Place(Gpu(1, 500), On(0, {2})).ok());
  EXPECT_FALSE(ledger.Place(Gpu(1, 500), On(1, {0})).ok());
}

TEST(Ledger, ReleaseOfAnUnknownOrReleasedIdFails) {
  Ledger ledger(MakeCluster({Node("n", 8000, 1)}));
  EXPECT_FALSE(ledger.Release(7).ok());
  auto id = ledger.Place(Gpu(1, 500), On(0, {0}));
  ASSERT_TRUE(ledger.Release(*id).ok());
  EXPECT_FALSE(ledger.Release(*id).ok());
}

TEST(Ledger, ReusesReleasedIds) {
  Ledger ledger(MakeCluster({Node("n", 8000, 1)}));
  auto first = ledger.Place(Gpu(1, 500), On(0, {0}));
  ASSERT_TRUE(ledger.Release(*first).ok());
  auto second = ledger.Place(Gpu(1, 500), On(0, {0}));
  EXPECT_EQ(*first, *second);
}

TEST(SharingModes, AWholeGpuTakesOneTenantWhateverItAsks) {
  NodeSpec node = Node("n", 8000, 1);
  node.gpus[0].mode = SharingMode::kWhole;
  Ledger ledger(MakeCluster({node}));
  ASSERT_TRUE(ledger.Place(Gpu(1, 100), On(0, {0})).ok());
  EXPECT_EQ(ledger.cluster().gpus(0)[0].free_milli, 0);
  EXPECT_FALSE(ledger.Place(Gpu(1, 100), On(0, {0})).ok());
}

TEST(SharingModes, MigTakesTheSmallestFreeSliceThatHoldsTheRequest) {
  NodeSpec node = Node("n", 8000, 1, "A100");
  GpuSpec& gpu = node.gpus[0];
  gpu.mode = SharingMode::kMig;
  gpu.memory_mib = 40960;
  gpu.mig_slices = {{"3g.20gb", 428, 20480}, {"2g.10gb", 285, 10240}, {"1g.5gb", 142, 5120}};
  Ledger ledger(MakeCluster({node}));
  Request r;
  r.gpu_count = 1;
  r.gpu_memory_mib = 8000;
  r.gpu_cores_percent = 20;
  auto id = ledger.Place(r, On(0, {0}));
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_EQ(ledger.placement(*id).charges[0].mig_slice, 1);
  EXPECT_EQ(ledger.cluster().gpus(0)[0].free_milli, 428 + 142);
  r.gpu_memory_mib = 30000;
  EXPECT_FALSE(ledger.Place(r, On(0, {0})).ok());
  ASSERT_TRUE(ledger.Release(*id).ok());
  EXPECT_EQ(ledger.cluster().gpus(0)[0].used_mig_slices, 0u);
}

TEST(SharingModes, MigOrdersSlicesByComputeBeforeMemory) {
  // A 1-slice instance with 40 GiB and a 2-slice one with 20 GiB both hold 15 GiB: the engine
  // takes the one with less compute, although it has more memory.
  NodeSpec node = Node("n", 8000, 1, "H100");
  GpuSpec& gpu = node.gpus[0];
  gpu.mode = SharingMode::kMig;
  gpu.memory_mib = 81920;
  gpu.mig_slices = {{"2g.20gb", 285, 20480}, {"1g.40gb", 142, 40960}};
  Ledger ledger(MakeCluster({node}));
  Request r;
  r.gpu_count = 1;
  r.gpu_memory_mib = 15360;
  auto id = ledger.Place(r, On(0, {0}));
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_EQ(ledger.placement(*id).charges[0].mig_slice, 1);
  EXPECT_EQ(ledger.placement(*id).charges[0].milli, 142);
}

TEST(SharingModes, TimeSlicingAdmitsUpToItsReplicasWithoutMemoryLimit) {
  NodeSpec node = Node("n", 8000, 1);
  node.gpus[0].mode = SharingMode::kTimeSliced;
  node.gpus[0].time_slice_replicas = 3;
  node.gpus[0].memory_mib = 16384;
  Ledger ledger(MakeCluster({node}));
  Request r;
  r.gpu_count = 1;
  r.gpu_memory_mib = 16000;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ledger.Place(r, On(0, {0})).ok()) << i;
  EXPECT_FALSE(ledger.Place(r, On(0, {0})).ok());
  EXPECT_EQ(ledger.cluster().gpus(0)[0].free_milli, 0);
}

TEST(SharingModes, SharedGpusWithModelledMemoryHoldMemoryAsAHardLimit) {
  NodeSpec node = Node("n", 8000, 1);
  node.gpus[0].memory_mib = 16384;
  Ledger ledger(MakeCluster({node}));
  Request r;
  r.gpu_count = 1;
  r.gpu_memory_mib = 12000;
  r.gpu_cores_percent = 10;
  ASSERT_TRUE(ledger.Place(r, On(0, {0})).ok());
  r.gpu_memory_mib = 5000;
  EXPECT_FALSE(ledger.Place(r, On(0, {0})).ok());
  r.gpu_memory_mib = 4000;
  EXPECT_TRUE(ledger.Place(r, On(0, {0})).ok());
}

// HAMi's gpumem and gpucores are summed apart: a GPU is full when either runs out, not when
// the larger of the two fractions of each tenant adds up to the GPU.
TEST(SharingModes, SharedGpusSumMemoryAndComputeApart) {
  NodeSpec node = Node("n", 8000, 1);
  node.gpus[0].memory_mib = 81920;
  Ledger ledger(MakeCluster({node}));
  Request memory_heavy;
  memory_heavy.gpu_count = 1;
  memory_heavy.gpu_memory_mib = 20480;  // a quarter of the memory each, 1 % of the compute
  memory_heavy.gpu_cores_percent = 1;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ledger.Place(memory_heavy, On(0, {0})).ok()) << i;
  Request compute_heavy;
  compute_heavy.gpu_count = 1;
  compute_heavy.gpu_memory_mib = 1024;  // little memory, a third of the compute each
  compute_heavy.gpu_cores_percent = 32;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ledger.Place(compute_heavy, On(0, {0})).ok()) << i;
  // 75 % + 3.75 % of the memory and 99 % of the compute are taken.
  EXPECT_FALSE(ledger.Place(compute_heavy, On(0, {0})).ok());
  Request rest;
  rest.gpu_count = 1;
  rest.gpu_memory_mib = 81920 - 3 * 20480 - 3 * 1024;
  rest.gpu_cores_percent = 1;
  ASSERT_TRUE(ledger.Place(rest, On(0, {0})).ok());
  EXPECT_EQ(ledger.cluster().gpus(0)[0].free_memory_mib, 0);
  EXPECT_EQ(ledger.cluster().gpus(0)[0].free_milli, 0);
  // Full on both counts: not even a tenant without a compute limit joins.
  Request no_limit;
  no_limit.gpu_count = 1;
  no_limit.gpu_memory_mib = 1;
  EXPECT_FALSE(ledger.Place(no_limit, On(0, {0})).ok());
}

TEST(SharingModes, AnExclusiveTenantTakesAllOfASharedGpusCompute) {
  NodeSpec node = Node("n", 8000, 1);
  node.gpus[0].memory_mib = 81920;
  Ledger ledger(MakeCluster({node}));
  Request no_limit;
  no_limit.gpu_count = 1;
  no_limit.gpu_memory_mib = 1024;
  Request exclusive = no_limit;
  exclusive.gpu_cores_percent = 100;
  auto first = ledger.Place(no_limit, On(0, {0}));
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(ledger.Place(exclusive, On(0, {0})).ok());  // someone is there already
  ASSERT_TRUE(ledger.Release(*first).ok());
  ASSERT_TRUE(ledger.Place(exclusive, On(0, {0})).ok());
  EXPECT_FALSE(ledger.Place(no_limit, On(0, {0})).ok());  // and no one joins it
}

TEST(Cluster, RejectsDuplicateNamesAndTooManyGpus) {
  EXPECT_FALSE(Cluster::Create({Node("a", 1, 1), Node("a", 1, 1)}).ok());
  EXPECT_FALSE(Cluster::Create({Node("a", 1, kMaxGpusPerNode + 1)}).ok());
  NodeSpec bad_mig = Node("m", 1, 1);
  bad_mig.gpus[0].mode = SharingMode::kMig;
  EXPECT_FALSE(Cluster::Create({bad_mig}).ok());
}

}  // namespace
}  // namespace tessera::placement
