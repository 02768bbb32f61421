#include "placement/request.h"

#include <gtest/gtest.h>

#include "placement/ledger.h"
#include "tests/placement/test_cluster.h"

namespace tessera::placement {
namespace {

using testing::CpuOnly;
using testing::Gpu;
using testing::MakeCluster;
using testing::Node;

TEST(ValidateRequest, RejectsSharesOutsideOneGpu) {
  EXPECT_FALSE(ValidateRequest(Gpu(1, 1001)).ok());
  EXPECT_FALSE(ValidateRequest(Gpu(1, -1)).ok());
  EXPECT_TRUE(ValidateRequest(Gpu(1, 1000)).ok());
}

TEST(ValidateRequest, RejectsAGpuRequestWithoutShareOrMemory) {
  Status s = ValidateRequest(Gpu(1, 0));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("share"), std::string::npos);
}

TEST(ValidateRequest, RejectsBothShareAndMemory) {
  Request r = Gpu(1, 500);
  r.gpu_memory_mib = 1024;
  EXPECT_FALSE(ValidateRequest(r).ok());
}

TEST(Fit, AFractionNeedsAGpuWithThatMuchFree) {
  Cluster cluster = MakeCluster({Node("n", 8000, 1)});
  Demand d = CompileDemand(cluster, Gpu(1, 600));
  EXPECT_TRUE(FitsNode(cluster, 0, d));
  Demand too_big = CompileDemand(cluster, Gpu(2, 600));
  EXPECT_FALSE(FitsNode(cluster, 0, too_big));
}

TEST(Fit, CpuAndMemoryAreHardLimits) {
  Cluster cluster = MakeCluster({Node("n", 8000, 1, "T4", 4096)});
  EXPECT_FALSE(FitsNode(cluster, 0, CompileDemand(cluster, CpuOnly(8001))));
  Request memory = CpuOnly(1000);
  memory.memory_mib = 4097;
  EXPECT_FALSE(FitsNode(cluster, 0, CompileDemand(cluster, memory)));
  EXPECT_TRUE(FitsNode(cluster, 0, CompileDemand(cluster, CpuOnly(8000))));
}

TEST(Fit, TypeConstraintsMatchModelsExactly) {
  Cluster cluster = MakeCluster({Node("t4", 8000, 1, "T4"), Node("v100", 8000, 1, "V100M16")});
  Request r = Gpu(1, 500);
  r.gpu_types = {"V100M16"};
  Demand d = CompileDemand(cluster, r);
  EXPECT_FALSE(FitsNode(cluster, 0, d));
  EXPECT_TRUE(FitsNode(cluster, 1, d));
  r.gpu_types = {"V100"};
  EXPECT_FALSE(FitsNode(cluster, 1, CompileDemand(cluster, r)));
  r.gpu_types = {};
  r.excluded_gpu_types = {"T4"};
  d = CompileDemand(cluster, r);
  EXPECT_FALSE(FitsNode(cluster, 0, d));
  EXPECT_TRUE(FitsNode(cluster, 1, d));
}

TEST(Fit, UuidConstraintsPickOrExcludeGpus) {
  Cluster cluster = MakeCluster({Node("n", 8000, 2)});
  Request r = Gpu(1, 500);
  r.gpu_uuids = {"n-1"};
  Demand d = CompileDemand(cluster, r);
  EXPECT_FALSE(FitsGpu(cluster, 0, 0, d, nullptr));
  EXPECT_TRUE(FitsGpu(cluster, 0, 1, d, nullptr));
  r.gpu_uuids = {};
  r.excluded_gpu_uuids = {"n-0", "n-1"};
  EXPECT_FALSE(FitsNode(cluster, 0, CompileDemand(cluster, r)));
}

TEST(Fit, MemoryFormChargesItsCoresAsShareAndItsMemoryApart) {
  GpuSpec gpu;
  gpu.model = "A100";
  gpu.memory_mib = 40000;
  Demand d;
  d.gpu_count = 1;
  d.gpu_memory_mib = 10000;
  d.gpu_cores_percent = 10;
  EXPECT_EQ(ShareOn(gpu, d), 100);
  d.gpu_cores_percent = 30;
  EXPECT_EQ(ShareOn(gpu, d), 300);
  d.gpu_cores_percent = 0;
  EXPECT_EQ(ShareOn(gpu, d), 1);
}

TEST(ChooseGpusBestFit, TakesTheFullestGpuThatFits) {
  Cluster cluster = MakeCluster({Node("n", 8000, 3)});
  Ledger ledger(cluster);
  Assignment a{0, {}};
  a.gpus.count = 1;
  a.gpus.gpus[0] = 2;
  ASSERT_TRUE(ledger.Place(Gpu(1, 400), a).ok());
  GpuChoice choice;
  ASSERT_TRUE(ChooseGpusBestFit(ledger.cluster(), 0, CompileDemand(cluster, Gpu(1, 500)), &choice));
  ASSERT_EQ(choice.count, 1);
  EXPECT_EQ(choice.gpus[0], 2);
  ASSERT_TRUE(ChooseGpusBestFit(ledger.cluster(), 0, CompileDemand(cluster, Gpu(1, 700)), &choice));
  EXPECT_EQ(choice.gpus[0], 0);  // the lowest index among equally free GPUs
}

}  // namespace
}  // namespace tessera::placement

namespace tessera::placement {
namespace {

NodeSpec SharedNode(std::string name, SharingMode mode, int32_t max_tenants) {
  NodeSpec node;
  node.name = std::move(name);
  node.cpu_milli = 8000;
  node.memory_mib = 65536;
  GpuSpec gpu;
  gpu.uuid = "GPU-" + node.name;
  gpu.model = "A100";
  gpu.memory_mib = 81920;
  gpu.mode = mode;
  gpu.max_tenants = max_tenants;
  node.gpus.push_back(gpu);
  return node;
}

Request Memory(int64_t mib) {
  Request r;
  r.gpu_count = 1;
  r.gpu_memory_mib = mib;
  return r;
}

TEST(Fit, ASharedGpuTakesNoMoreTenantsThanItsReplicas) {
  Result<Cluster> cluster = Cluster::Create({SharedNode("n", SharingMode::kShared, 2)});
  ASSERT_TRUE(cluster.ok());
  Ledger ledger(std::move(cluster).value());
  Request small = Memory(1024);
  Assignment on_gpu0{0, {1, {0}}};
  ASSERT_TRUE(ledger.Place(small, on_gpu0).ok());
  ASSERT_TRUE(ledger.Place(small, on_gpu0).ok());
  Demand third = CompileDemand(ledger.cluster(), small);
  EXPECT_FALSE(FitsNode(ledger.cluster(), 0, third));  // memory is left, replicas are not
  EXPECT_FALSE(ledger.Place(small, on_gpu0).ok());
}

TEST(Fit, AShareNeverLandsOnAWholeGpuWhenSharesOnly) {
  Result<Cluster> cluster = Cluster::Create({SharedNode("n", SharingMode::kWhole, 0)});
  ASSERT_TRUE(cluster.ok());
  Request share = Memory(3000);
  Demand demand = CompileDemand(*cluster, share);
  EXPECT_TRUE(FitsNode(*cluster, 0, demand));  // the simulators' model: a whole GPU takes it
  demand.shares_only = true;
  EXPECT_FALSE(FitsNode(*cluster, 0, demand));
}

TEST(Fit, OnlyCandidateNodesServeWhenTheSchedulerNamesThem) {
  Result<Cluster> cluster = Cluster::Create(
      {SharedNode("a", SharingMode::kShared, 0), SharedNode("b", SharingMode::kShared, 0)});
  ASSERT_TRUE(cluster.ok());
  Request share = Memory(3000);
  Demand demand = CompileDemand(*cluster, share);
  std::vector<bool> only_b = {false, true};
  demand.candidate_nodes = &only_b;
  EXPECT_FALSE(FitsNode(*cluster, 0, demand));
  EXPECT_TRUE(FitsNode(*cluster, 1, demand));
}

TEST(ShareHoldingMemory, IsTheSmallestMultipleOfTheUnitWhoseMemoryHoldsTheNeed) {
  const int64_t gpu = 81920;  // 80 GiB: an eighth is exactly 10 GiB
  EXPECT_EQ(ShareHoldingMemory(gpu, 125, 10240), 125);
  EXPECT_EQ(ShareHoldingMemory(gpu, 125, 10241), 250);
  EXPECT_EQ(ShareHoldingMemory(gpu, 250, 20481), 500);
  EXPECT_EQ(ShareHoldingMemory(gpu, 125, 0), 125);
}

TEST(ShareHoldingMemory, NeverAsksForMoreThanTheWholeGpu) {
  EXPECT_EQ(ShareHoldingMemory(81920, 300, 81920), 1000);
  EXPECT_EQ(ShareHoldingMemory(81920, 300, 200000), 1000);
}

TEST(ShareHoldingMemory, CountsTheMemoryAsTheEngineChargesItRoundedDown) {
  // A third is 333 milli, whose memory on 30 GiB is 10229 MiB: less than 10 GiB, so a job that
  // needs exactly 10 GiB takes two thirds, not one.
  EXPECT_EQ(MemoryOfShare(30720, 333), 10229);
  EXPECT_EQ(ShareHoldingMemory(30720, 333, 10240), 666);
  EXPECT_EQ(ShareHoldingMemory(30720, 333, 10229), 333);
}

TEST(ShareHoldingMemory, TheShareHoldsTheMemoryAndOneUnitLessDoesNot) {
  for (int32_t unit : {1, 125, 142, 166, 250, 333, 1000}) {
    for (int64_t memory = 1; memory <= 40960; memory += 97) {
      const int32_t share = ShareHoldingMemory(40960, unit, memory);
      ASSERT_GE(MemoryOfShare(40960, share), memory) << unit << " " << memory;
      if (share > unit) {
        ASSERT_LT(MemoryOfShare(40960, share - unit), memory) << unit << " " << memory;
      }
    }
  }
}

TEST(Cluster, RefusesANegativeTenantLimit) {
  EXPECT_FALSE(Cluster::Create({SharedNode("n", SharingMode::kShared, -1)}).ok());
}

}  // namespace
}  // namespace tessera::placement
