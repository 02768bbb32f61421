// The cluster file read into what tessera-node runs with, and the Node objects it publishes, as
// tessera-scheduler reads them.
#include "sim/replay/cluster_file.h"

#include <gtest/gtest.h>

#include "scheduler/state.h"

namespace tessera::sim::replay {
namespace {

// What tessera-scheduler reads from the Node that tessera-node would publish for `node`.
scheduler::NodeGpus SchedulerView(const ClusterNode& node) {
  Result<std::optional<scheduler::NodeGpus>> gpus = scheduler::ReadNodeGpus(NodeObject(node));
  EXPECT_TRUE(gpus.ok()) << gpus.status().message();
  EXPECT_TRUE(gpus.ok() && gpus->has_value());
  return gpus.ok() && gpus->has_value() ? **gpus : scheduler::NodeGpus{};
}

TEST(FakeGpuUuid, IsClusterPysUuid5OfNodeAndIndex) {
  // cluster.py: "GPU-" + str(uuid.uuid5(UUID_NAMESPACE, f"{name}/{index}")).
  EXPECT_EQ(FakeGpuUuid("gpu-shared-0", 0), "GPU-dc45dfd2-2cff-5ad1-a631-c87389acae57");
  EXPECT_EQ(FakeGpuUuid("gpu-shared-0", 1), "GPU-f2e440da-d576-5204-8b08-6abe11567c7c");
  EXPECT_EQ(FakeGpuUuid("gpu-whole", 3), "GPU-58676321-d4f9-5135-beff-416ab65d7967");
  EXPECT_EQ(FakeGpuUuid("a", 0), "GPU-5fe99d7d-4705-5d67-8869-57c22e60f7e8");
}

TEST(ClusterFile, TheDevClusterGivesTheNodesTesseraNodePublishes) {
  Result<std::vector<ClusterNode>> nodes =
      LoadClusterFile(TESSERA_SOURCE_DIR "/deploy/dev-cluster/cluster.yaml");
  ASSERT_TRUE(nodes.ok()) << nodes.status().message();
  ASSERT_EQ(nodes->size(), 5u);
  EXPECT_EQ((*nodes)[0].name, "gpu-whole");
  EXPECT_EQ((*nodes)[4].name, "gpu-shared-1");

  const scheduler::NodeGpus shared = SchedulerView((*nodes)[3]);
  EXPECT_EQ(shared.name, "gpu-shared-0");
  ASSERT_EQ(shared.gpus.size(), 8u);
  for (unsigned i = 0; i < 8; ++i) {
    EXPECT_EQ(shared.gpus[i].uuid, FakeGpuUuid("gpu-shared-0", i));
    EXPECT_EQ(shared.gpus[i].model, "NVIDIA A100-SXM4-80GB");
    EXPECT_EQ(shared.gpus[i].memory_mib, 81920);
    EXPECT_EQ(shared.gpus[i].mode, placement::SharingMode::kShared);
    EXPECT_EQ(shared.gpus[i].replicas, 32);  // tessera-node's default for a shared GPU
    EXPECT_EQ(shared.gpus[i].numa, 0);
    EXPECT_TRUE(shared.gpus[i].healthy);
  }

  // gpu-mig: the MIG GPUs are kubelet's; the scheduler sees the two whole ones, 2 and 3.
  const scheduler::NodeGpus mig = SchedulerView((*nodes)[2]);
  ASSERT_EQ(mig.gpus.size(), 2u);
  EXPECT_EQ(mig.gpus[0].uuid, FakeGpuUuid("gpu-mig", 2));
  EXPECT_EQ(mig.gpus[0].mode, placement::SharingMode::kWhole);
  EXPECT_EQ((*nodes)[2].inventory.gpus.size(), 4u);
  EXPECT_TRUE((*nodes)[2].inventory.gpus[0].mig_enabled);

  // gpu-sliced: time-sliced GPUs only, so none of the scheduler's.
  EXPECT_TRUE(SchedulerView((*nodes)[1]).gpus.empty());
  EXPECT_EQ((*nodes)[1].config.ModeOf(0), node::GpuMode::kTimeSliced);
  EXPECT_EQ((*nodes)[1].config.ReplicasOf(0), 4);
}

TEST(ClusterFile, GroupsTakeTheirDefaultsAndNumberGpusAcrossGroups) {
  Result<std::vector<ClusterNode>> nodes = ParseClusterFile(
      "nodes:\n"
      "  - name: n\n"
      "    labels: {zone: a}\n"
      "    gpus:\n"
      "      - {model: L4, memory: 24GiB, sms: 58}\n"
      "      - {model: H100, memory: 80g, sms: 132, count: 2, mode: shared, numa: 1}\n"
      "ports: {apiserver: 6443}\n",
      "c.yaml");
  ASSERT_TRUE(nodes.ok()) << nodes.status().message();
  const node::Inventory& inventory = (*nodes)[0].inventory;
  ASSERT_EQ(inventory.gpus.size(), 3u);
  EXPECT_EQ(inventory.gpus[0].memory_bytes, 24ull << 30);
  EXPECT_EQ(inventory.gpus[0].numa_node, 0);
  EXPECT_EQ((*nodes)[0].config.ModeOf(0), node::GpuMode::kWhole);
  EXPECT_EQ(inventory.gpus[2].index, 2u);
  EXPECT_EQ(inventory.gpus[2].uuid, FakeGpuUuid("n", 2));
  EXPECT_EQ(inventory.gpus[2].numa_node, 1);
  EXPECT_EQ((*nodes)[0].config.ModeOf(2), node::GpuMode::kShared);
}

struct BadFile {
  const char* text;
  const char* message;  // what the error says, after "c.yaml"
};

class ClusterFileErrors : public ::testing::TestWithParam<BadFile> {};

TEST_P(ClusterFileErrors, NameTheFileTheLineAndTheField) {
  Result<std::vector<ClusterNode>> nodes = ParseClusterFile(GetParam().text, "c.yaml");
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(nodes.status().message().rfind("c.yaml", 0), 0u) << nodes.status().message();
  EXPECT_NE(nodes.status().message().find(GetParam().message), std::string::npos)
      << nodes.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ClusterFileErrors,
    ::testing::Values(
        BadFile{"nodes: [", "not valid YAML"},
        BadFile{"nodes: []\n", ":1: nodes: the file needs a non-empty `nodes:` list"},
        BadFile{"nodes: [{name: a}]\nnodez: 1\n", ":2: nodez: unknown top-level key"},
        BadFile{"nodes:\n  - name: A_b\n", ":2: nodes[0].name: \"A_b\" is not a DNS label"},
        BadFile{"nodes:\n  - name: a\n  - name: a\n", ":3: nodes[1].name: node a appears twice"},
        BadFile{"nodes:\n  - name: a\n    gpu: []\n", ":3: nodes[0].gpu: unknown key"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {memory: 1GiB, sms: 1}\n",
                ":4: nodes[0].gpus[0].model: needs the GPU's name"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 80 GB, sms: 1}\n",
                ":4: nodes[0].gpus[0].memory"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB}\n",
                ":4: nodes[0].gpus[0].sms: needs"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "colour: red}\n",
                ":4: nodes[0].gpus[0].colour: unknown key"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "mode: sharde}\n",
                ":4: nodes[0].gpus[0].mode: \"sharde\" is not whole, time-sliced, mig or shared"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "count: 17}\n",
                ":4: nodes[0].gpus[0].count: 17 is out of range (1-16)"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "mode: time-sliced}\n",
                ":4: nodes[0].gpus[0].replicas: time-sliced needs replicas"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "mode: shared, replicas: 8}\n",
                ":4: nodes[0].gpus[0].replicas: is for mode time-sliced only"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "mode: mig}\n",
                ":4: nodes[0].gpus[0].mig: mig needs a layout"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 80GiB, sms: 1, "
                "mode: mig, mig: [big]}\n",
                ": node a: gpus[0].mig[0]: \"big\" is not a MIG profile name"},
        BadFile{"nodes:\n  - name: a\n    gpus:\n      - {model: X, memory: 1GiB, sms: 1, "
                "count: 10}\n      - {model: X, memory: 1GiB, sms: 1, count: 10}\n",
                ":2: nodes[0].gpus: 20 GPUs; the fake GPU has at most 16 per node"}));

TEST(ClusterFile, AMissingFileIsNamed) {
  Result<std::vector<ClusterNode>> nodes = LoadClusterFile("/nonexistent/cluster.yaml");
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(nodes.status().message(), "/nonexistent/cluster.yaml: cannot read the cluster file");
}

}  // namespace
}  // namespace tessera::sim::replay
