#include "node/devices.h"

#include <gtest/gtest.h>

namespace tessera::node {
namespace {

Gpu MakeGpu(unsigned index, bool mig = false) {
  Gpu gpu;
  gpu.index = index;
  gpu.uuid = "GPU-" + std::to_string(index);
  gpu.name = "NVIDIA H100 80GB HBM3";
  gpu.memory_bytes = 80ull << 30;
  gpu.minor = index;
  gpu.mig_enabled = mig;
  if (mig) {
    gpu.mig_profiles = {"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"};
    for (const char* profile : {"3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"}) {
      MigInstance instance;
      instance.profile = profile;
      instance.uuid =
          "MIG-" + std::to_string(index) + "-" + std::to_string(gpu.mig_instances.size());
      gpu.mig_instances.push_back(instance);
    }
  }
  return gpu;
}

NodeConfig Config(const std::string& text) {
  auto config = ParseNodeConfig(text, "node.yaml");
  EXPECT_TRUE(config.ok()) << config.status().message();
  return config.ok() ? *config : NodeConfig{};
}

const Resource* Named(const std::vector<Resource>& resources, const std::string& name) {
  for (const auto& resource : resources) {
    if (resource.name == name) return &resource;
  }
  return nullptr;
}

TEST(PlanResources, ModesMixOnOneNodeUnderNvidiasResourceNames) {
  Inventory inventory;
  inventory.gpus = {MakeGpu(0), MakeGpu(1), MakeGpu(2, /*mig=*/true), MakeGpu(3)};
  auto plan = PlanResources(Config(R"(
gpus:
  - {index: 1, mode: time-sliced, replicas: 4}
  - {index: 2, mode: mig, mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]}
  - {index: 3, mode: shared}
)"),
                            inventory);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  const Resource* whole = Named(*plan, "nvidia.com/gpu");
  ASSERT_NE(whole, nullptr);
  // GPU 0 whole (its UUID), GPU 3 shared: 32 replicas (the default) under the same resource.
  ASSERT_EQ(whole->devices.size(), 1u + kDefaultSharedReplicas);
  EXPECT_EQ(whole->devices[0].id, "GPU-0");
  EXPECT_EQ(whole->devices[0].mode, GpuMode::kWhole);
  EXPECT_EQ(whole->devices[1].id, "GPU-3::0");
  EXPECT_EQ(whole->devices.back().id, "GPU-3::31");

  const Resource* sliced = Named(*plan, "nvidia.com/gpu.shared");
  ASSERT_NE(sliced, nullptr);
  ASSERT_EQ(sliced->devices.size(), 4u);
  EXPECT_EQ(sliced->devices[3].id, "GPU-1::3");
  EXPECT_EQ(sliced->devices[3].visible_id, "GPU-1");

  const Resource* small = Named(*plan, "nvidia.com/mig-1g.10gb");
  ASSERT_NE(small, nullptr);
  ASSERT_EQ(small->devices.size(), 2u);
  EXPECT_EQ(small->devices[0].visible_id, "MIG-2-2");
  EXPECT_NE(Named(*plan, "nvidia.com/mig-3g.40gb"), nullptr);
  EXPECT_NE(Named(*plan, "nvidia.com/mig-2g.20gb"), nullptr);
  EXPECT_EQ(plan->size(), 5u);
}

TEST(PlanResources, ASharedGpuIsReplicasOfItsUuidUnderNvidiaComGpu) {
  Inventory inventory;
  inventory.gpus = {MakeGpu(0), MakeGpu(1), MakeGpu(2)};
  inventory.gpus[2].numa_node = 1;
  auto plan = PlanResources(Config(R"(
gpus:
  - {index: 1, mode: shared, replicas: 3}
  - {index: 2, mode: shared}
)"),
                            inventory);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_EQ(plan->size(), 1u);  // no nvidia.com/gpu.shared: that is time-sliced's
  const Resource* gpu = Named(*plan, "nvidia.com/gpu");
  ASSERT_NE(gpu, nullptr);
  ASSERT_EQ(gpu->devices.size(), 1u + 3u + 32u);
  const PluginDevice* replica = gpu->Find("GPU-1::2");
  ASSERT_NE(replica, nullptr);
  EXPECT_EQ(replica->mode, GpuMode::kShared);
  EXPECT_EQ(replica->replica, 2);
  EXPECT_EQ(replica->gpu_uuid, "GPU-1");
  EXPECT_EQ(replica->visible_id, "GPU-1");
  EXPECT_EQ(gpu->Find("GPU-1::3"), nullptr);
  EXPECT_EQ(gpu->Find("GPU-2::31")->numa_node, 1);
  EXPECT_EQ(gpu->Find("GPU-0")->mode, GpuMode::kWhole);
  EXPECT_EQ(gpu->Find("GPU-0")->replica, -1);
}

TEST(PlanResources, DefaultModeSharedGivesEveryUnlistedGpuTheDefaultReplicas) {
  Inventory inventory;
  inventory.gpus = {MakeGpu(0), MakeGpu(1)};
  const NodeConfig config = Config("defaultMode: shared\ngpus:\n  - {index: 1, mode: whole}\n");
  EXPECT_EQ(config.ReplicasOf(0), kDefaultSharedReplicas);
  EXPECT_EQ(config.ReplicasOf(1), 0);
  auto plan = PlanResources(config, inventory);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(Named(*plan, "nvidia.com/gpu")->devices.size(), 32u + 1u);
}

TEST(PlanResources, AGpuIndexTheNodeLacksIsNamed) {
  Inventory inventory;
  inventory.gpus = {MakeGpu(0), MakeGpu(1)};
  auto plan = PlanResources(
      Config("gpus:\n  - {index: 0, mode: whole}\n  - {index: 7, mode: whole}\n"), inventory);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().message(),
            "node.yaml: gpus[1].index: 7 does not exist (this node has GPUs 0-1)");
}

TEST(PlanResources, AMigProfileTheGpuDoesNotOfferIsNamed) {
  Inventory inventory;
  inventory.gpus = {MakeGpu(0, /*mig=*/true)};
  auto plan = PlanResources(Config("gpus:\n  - {index: 0, mode: mig, mig: [3g.40gb, 5g.50gb]}\n"),
                            inventory);
  ASSERT_FALSE(plan.ok());
  const std::string& error = plan.status().message();
  EXPECT_NE(error.find("node.yaml: gpus[0].mig[1]"), std::string::npos) << error;
  EXPECT_NE(error.find("\"5g.50gb\""), std::string::npos) << error;
}

TEST(PlanResources, ALayoutOtherThanTheGpusIsRefused) {
  Inventory inventory;
  inventory.gpus = {MakeGpu(0, /*mig=*/true)};
  auto plan =
      PlanResources(Config("gpus:\n  - {index: 0, mode: mig, mig: [7g.80gb]}\n"), inventory);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("but GPU 0 has"), std::string::npos);
}

TEST(PlanResources, MigModeNeedsMigOnAndMigOnNeedsMigMode) {
  Inventory off;
  off.gpus = {MakeGpu(0)};
  auto plan = PlanResources(Config("gpus:\n  - {index: 0, mode: mig}\n"), off);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("MIG mode is off on GPU 0"), std::string::npos);

  Inventory on;
  on.gpus = {MakeGpu(0, /*mig=*/true)};
  plan = PlanResources(Config(""), on);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("defaultMode: whole, but GPU 0"), std::string::npos);
}

}  // namespace
}  // namespace tessera::node
