#include "placement/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

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

// Where `policy` puts `request` on the ledger's cluster, for every seed in [0, seeds).
std::set<std::pair<size_t, int>> Choices(const std::string& policy, const Ledger& ledger,
                                         const Request& request, int seeds = 16,
                                         const std::vector<ShapeCount>& shapes = {}) {
  std::set<std::pair<size_t, int>> choices;
  Demand demand = CompileDemand(ledger.cluster(), request);
  for (int seed = 0; seed < seeds; ++seed) {
    PolicyOptions options;
    options.seed = static_cast<uint64_t>(seed);
    options.shape_counts = shapes;
    auto p = MakePolicy(policy, ledger.cluster(), options);
    EXPECT_TRUE(p.ok()) << policy;
    std::optional<Assignment> a = (*p)->Choose(ledger.cluster(), demand);
    if (!a) {
      choices.insert({SIZE_MAX, -1});
      continue;
    }
    choices.insert({a->node, a->gpus.count > 0 ? a->gpus.gpus[0] : -1});
  }
  return choices;
}

using Choice = std::set<std::pair<size_t, int>>;

// Node 0: 2 GPUs, one 0.6 used. Node 1: 2 idle GPUs. Node 2: 4 GPUs, one whole GPU used.
class SmallCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger_.Place(Gpu(1, 600, 4000), On(0, {0})).ok());
    ASSERT_TRUE(ledger_.Place(Gpu(1, 1000, 4000), On(2, {3})).ok());
  }
  Ledger ledger_{MakeCluster({Node("a", 32000, 2), Node("b", 32000, 2), Node("c", 32000, 4)})};
};

TEST_F(SmallCluster, EveryPolicyNamedOnTheCommandLineExists) {
  for (const char* name : {"random", "spread", "binpack", "bestfit", "dotprod", "gpupacking",
                           "gpuclustering", "fgd", "tessera", "tessera-online"}) {
    EXPECT_NE(std::find(PolicyNames().begin(), PolicyNames().end(), name), PolicyNames().end());
    EXPECT_TRUE(MakePolicy(name, ledger_.cluster(), {}).ok()) << name;
  }
  auto unknown = MakePolicy("firstfit", ledger_.cluster(), {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("firstfit"), std::string::npos);
}

TEST_F(SmallCluster, NoPolicyPlacesWhatFitsNowhere) {
  for (const std::string& name : PolicyNames()) {
    EXPECT_EQ(Choices(name, ledger_, Gpu(4, 1000), 2), (Choice{{SIZE_MAX, -1}})) << name;
  }
}

TEST_F(SmallCluster, RandomSpreadsOverEveryFittingNode) {
  std::set<size_t> nodes;
  for (auto [node, gpu] : Choices("random", ledger_, Gpu(1, 300), 64)) nodes.insert(node);
  EXPECT_EQ(nodes, (std::set<size_t>{0, 1, 2}));
}

TEST_F(SmallCluster, SpreadTakesTheEmptiestNodeAndGpu) {
  EXPECT_EQ(Choices("spread", ledger_, Gpu(1, 300)), (Choice{{1, 0}}));
}

TEST_F(SmallCluster, BinpackTakesTheFullestNodeAndGpu) {
  EXPECT_EQ(Choices("binpack", ledger_, Gpu(1, 300)), (Choice{{0, 0}}));
}

TEST_F(SmallCluster, BestFitLeavesTheLeastCpuAndGpuBehind) {
  EXPECT_EQ(Choices("bestfit", ledger_, Gpu(1, 300)), (Choice{{0, 0}}));
  EXPECT_EQ(Choices("bestfit", ledger_, Gpu(1, 1000)), (Choice{{0, 1}}));
}

// A NUMA-bound demand gets its GPUs from one NUMA node under every policy. Node 0 has 2 GPUs
// on different NUMA nodes; node 1 has 4 that alternate between NUMA nodes 0 and 1.
TEST(NumaBind, EveryPolicyTakesAllGpusFromOneNumaNode) {
  NodeSpec split = Node("split", 32000, 2);
  NodeSpec alternating = Node("alternating", 32000, 4);
  for (int g = 0; g < 2; ++g) split.gpus[static_cast<size_t>(g)].numa = g;
  for (int g = 0; g < 4; ++g) alternating.gpus[static_cast<size_t>(g)].numa = g % 2;
  Ledger ledger{MakeCluster({split, alternating})};
  Request request = Gpu(2, 1000);
  request.numa_bind = true;
  const Demand demand = CompileDemand(ledger.cluster(), request);
  EXPECT_FALSE(FitsNode(ledger.cluster(), 0, demand)) << "one GPU on each NUMA node";
  EXPECT_TRUE(FitsNode(ledger.cluster(), 0, CompileDemand(ledger.cluster(), Gpu(2, 1000))));
  for (const std::string& name : PolicyNames()) {
    for (int seed = 0; seed < 8; ++seed) {
      PolicyOptions options;
      options.seed = static_cast<uint64_t>(seed);
      auto policy = MakePolicy(name, ledger.cluster(), options);
      ASSERT_TRUE(policy.ok()) << name;
      std::optional<Assignment> a = (*policy)->Choose(ledger.cluster(), demand);
      ASSERT_TRUE(a.has_value()) << name;
      EXPECT_EQ(a->node, 1u) << name;
      ASSERT_EQ(a->gpus.count, 2) << name;
      const auto& gpus = ledger.cluster().spec(a->node).gpus;
      EXPECT_EQ(gpus[static_cast<size_t>(a->gpus.gpus[0])].numa,
                gpus[static_cast<size_t>(a->gpus.gpus[1])].numa)
          << name << " seed " << seed << ": GPUs " << a->gpus.gpus[0] << " and " << a->gpus.gpus[1];
    }
  }
}

TEST(DotProduct, PrefersTheLeastFreeCapacityAlongTheDemand) {
  // Node 0 has one of 8 GPUs free, node 1 all 8: free . demand is 8 times larger on node 1.
  Ledger ledger(MakeCluster({Node("a", 64000, 8), Node("b", 64000, 8)}));
  ASSERT_TRUE(ledger.Place(Gpu(7, 1000), On(0, {0, 1, 2, 3, 4, 5, 6})).ok());
  EXPECT_EQ(Choices("dotprod", ledger, Gpu(1, 1000)), (Choice{{0, 7}}));
}

TEST(BestFit, ChoosesTheSameWithAndWithoutNormalisationShortcut) {
  // A 16-GPU node exceeds the normalisers, so this cluster takes the normalising path; the
  // same nodes without it take the shortcut. Both must leave the least behind.
  std::vector<NodeSpec> nodes = {Node("a", 64000, 4), Node("b", 32000, 2), Node("c", 64000, 8)};
  Ledger small(MakeCluster(nodes));
  nodes.push_back(Node("big", 256000, 16));
  Ledger large(MakeCluster(nodes));
  for (Ledger* ledger : {&small, &large}) {
    ASSERT_TRUE(ledger->Place(Gpu(1, 500, 1000), On(2, {0})).ok());
    EXPECT_EQ(Choices("bestfit", *ledger, Gpu(1, 1000, 8000)), (Choice{{1, 0}}));
  }
}

TEST_F(SmallCluster, DotProductScoresAreIntegersSoSmallDemandsTie) {
  EXPECT_EQ(Choices("dotprod", ledger_, Gpu(1, 300), 64).size(), 3u);
}

TEST_F(SmallCluster, GpuPackingSharesAnAlreadySharedGpuFirst) {
  EXPECT_EQ(Choices("gpupacking", ledger_, Gpu(1, 300)), (Choice{{0, 0}}));
}

TEST_F(SmallCluster, GpuPackingOpensAGpuOnAUsedNodeBeforeAnIdleNode) {
  // Node 0's shared GPU cannot hold 0.5; nodes 0 and 2 are used, node 1 is idle.
  std::set<size_t> nodes;
  for (auto [node, gpu] : Choices("gpupacking", ledger_, Gpu(1, 500))) nodes.insert(node);
  EXPECT_EQ(nodes.count(1), 0u);
}

TEST_F(SmallCluster, GpuClusteringPrefersNodesHostingTheSameKindOfPod) {
  EXPECT_EQ(Choices("gpuclustering", ledger_, Gpu(1, 300)), (Choice{{0, 0}}));
  std::set<size_t> nodes;
  for (auto [node, gpu] : Choices("gpuclustering", ledger_, Gpu(1, 1000))) nodes.insert(node);
  EXPECT_EQ(nodes, (std::set<size_t>{2}));
}

TEST(Fgd, FillsTheHoleInTheWorkedExample) {
  // reference/fgd-trace.md §6.4: node X idle, node Y with half a GPU used; A goes to Y's hole.
  Ledger ledger(MakeCluster({Node("x", 64000, 2), Node("y", 64000, 2)}));
  ASSERT_TRUE(ledger.Place(Gpu(1, 500, 0), On(1, {0})).ok());
  std::vector<ShapeCount> shapes = {
      {{1000, 500, 1, {}}, 50}, {{1000, 1000, 1, {}}, 30}, {{1000, 0, 0, {}}, 20}};
  EXPECT_EQ(Choices("fgd", ledger, Gpu(1, 500), 16, shapes), (Choice{{1, 0}}));
}

TEST(Fgd, KeepsCpuOnlyPodsOffNodesWhoseGpusTheyWouldStrand) {
  // Node 0 has GPUs and just enough CPU for one GPU task; node 1 has no free GPU share left.
  Ledger ledger(MakeCluster({Node("gpu", 4000, 1), Node("full", 64000, 1)}));
  ASSERT_TRUE(ledger.Place(Gpu(1, 1000, 0), On(1, {0})).ok());
  std::vector<ShapeCount> shapes = {{{4000, 1000, 1, {}}, 80}, {{2000, 0, 0, {}}, 20}};
  EXPECT_EQ(Choices("fgd", ledger, CpuOnly(2000), 16, shapes), (Choice{{1, -1}}));
}

// One T4 GPU among 17: a few pods must have a T4, the rest take any GPU.
class ScarceModel : public ::testing::Test {
 protected:
  Ledger ledger_{MakeCluster(
      {Node("t4", 64000, 1, "T4"), Node("g2-a", 96000, 8, "G2"), Node("g2-b", 96000, 8, "G2")})};
  std::vector<ShapeCount> shapes_ = {{{4000, 1000, 1, {}}, 98}, {{4000, 1000, 1, {"T4"}}, 2}};
};

TEST_F(ScarceModel, TesseraOnlineIsIndifferentUntilItHasSeenTypedRequests) {
  Demand typed = CompileDemand(ledger_.cluster(), [] {
    Request r = Gpu(1, 1000, 4000);
    r.gpu_types = {"T4"};
    return r;
  }());
  Demand untyped = CompileDemand(ledger_.cluster(), Gpu(1, 1000, 4000));
  std::set<size_t> before;
  std::set<size_t> after;
  for (int seed = 0; seed < 32; ++seed) {
    PolicyOptions options;
    options.seed = static_cast<uint64_t>(seed);
    auto policy = MakePolicy("tessera-online", ledger_.cluster(), options);
    ASSERT_TRUE(policy.ok());
    before.insert((*policy)->Choose(ledger_.cluster(), untyped)->node);
    for (int i = 0; i < 3; ++i) (*policy)->Observe(untyped);
    (*policy)->Observe(typed);  // the 4th request: the workload is rebuilt
    after.insert((*policy)->Choose(ledger_.cluster(), untyped)->node);
  }
  EXPECT_EQ(before.count(0), 1u);
  EXPECT_EQ(after.count(0), 0u);
}

// An 8-GPU node with 12 CPUs per GPU, and a CPU-rich 2-GPU node; GPU pods need 12 CPUs each.
class CpuHungryGpuPods : public ::testing::Test {
 protected:
  Ledger ledger_{MakeCluster({Node("g2", 96000, 8, "G2"), Node("t4", 104000, 2, "T4")})};
  std::vector<ShapeCount> shapes_ = {{{12000, 1000, 1, {}}, 80}, {{32000, 0, 0, {}}, 20}};
};

TEST_F(CpuHungryGpuPods, FgdSeesNoCostInTakingCpuTheGpusWillNeed) {
  std::set<size_t> nodes;
  for (auto [node, gpu] : Choices("fgd", ledger_, CpuOnly(32000), 32, shapes_)) nodes.insert(node);
  EXPECT_EQ(nodes, (std::set<size_t>{0, 1}));
}

TEST_F(CpuHungryGpuPods, TesseraPutsCpuOnlyPodsWhereCpuIsSpare) {
  EXPECT_EQ(Choices("tessera", ledger_, CpuOnly(32000), 32, shapes_), (Choice{{1, -1}}));
}

// One node with a fresh GPU and one with a 0.47 task. Frequent shares: 0.47, 0.32 and whole.
class ComplementHoles : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(ledger_.Place(Gpu(1, 470, 1000), On(0, {1})).ok()); }
  Ledger ledger_{MakeCluster({Node("n", 64000, 2)})};
  std::vector<ShapeCount> shapes_ = {
      {{1000, 470, 1, {}}, 40}, {{1000, 320, 1, {}}, 40}, {{1000, 1000, 1, {}}, 20}};
};

TEST_F(ComplementHoles, FgdLeavesAHoleNothingFrequentFills) {
  // 0.32 next to the 0.47 leaves 0.21: the next task is less likely to miss there.
  EXPECT_EQ(Choices("fgd", ledger_, Gpu(1, 320), 16, shapes_), (Choice{{0, 1}}));
}

TEST_F(ComplementHoles, TesseraLeavesHolesTheFrequentSharesFill) {
  // 0.32 on the fresh GPU leaves 0.68 (two more 0.32) beside 0.53 (a 0.47).
  EXPECT_EQ(Choices("tessera", ledger_, Gpu(1, 320), 16, shapes_), (Choice{{0, 0}}));
}

TEST(TieRanks, AreAPermutationFixedBySeed) {
  std::vector<uint32_t> a = TieRanks(100, 7);
  std::vector<uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(a, TieRanks(100, 7));
  EXPECT_NE(a, TieRanks(100, 8));
}

}  // namespace
}  // namespace tessera::placement
