#include "node/metrics.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "node/devices.h"
#include "node/node_annotations.h"

namespace tessera::node {
namespace {

Registry MakeRegistry() {
  Inventory inventory;
  inventory.driver_version = "580.65.06";
  Gpu gpu;
  gpu.index = 0;
  gpu.uuid = "GPU-a";
  gpu.name = "NVIDIA \"Quoted\" GPU";
  gpu.memory_bytes = 40ull << 30;
  inventory.gpus.push_back(gpu);
  gpu.index = 1;
  gpu.uuid = "GPU-b";
  gpu.name = "NVIDIA H100 80GB HBM3";
  gpu.mig_enabled = true;
  gpu.mig_instances = {{"MIG-b1", "1g.10gb", 10ull << 30, 9, 0}};
  inventory.gpus.push_back(gpu);
  Resource whole{kWholeResource, {}};
  PluginDevice device;
  device.id = device.visible_id = device.gpu_uuid = "GPU-a";
  whole.devices.push_back(device);
  Resource mig{"nvidia.com/mig-1g.10gb", {}};
  device.id = device.visible_id = "MIG-b1";
  device.gpu_uuid = "GPU-b";
  device.gpu_index = 1;
  mig.devices.push_back(device);
  return Registry(inventory, {{0, GpuMode::kWhole}, {1, GpuMode::kMig}}, {whole, mig});
}

TEST(Metrics, SayEachGpusMemoryModeAndHealthAndEachContainersDevices) {
  Registry registry = MakeRegistry();
  registry.SetHealth("GPU-b", {false, "Xid 48"});
  registry.SetContainers({{"ci", "job-1", "main", "nvidia.com/mig-1g.10gb", {"MIG-b1"}}});
  registry.RecordAllocate(std::chrono::microseconds(300));
  const std::string text =
      RenderMetrics("gpu-mig", registry, {{"GPU-a", {40ull << 30, 1ull << 30, 25}}});
  EXPECT_NE(text.find("hami_host_gpu_memory_used_bytes{node=\"gpu-mig\",device_uuid=\"GPU-a\","
                      "device_index=\"0\",device_type=\"NVIDIA \\\"Quoted\\\" GPU\"} 1073741824\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("hami_host_gpu_utilization_ratio{node=\"gpu-mig\",device_uuid=\"GPU-a\","),
            std::string::npos);
  EXPECT_NE(text.find(",mode=\"mig\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("tessera_gpu_healthy{node=\"gpu-mig\",device_uuid=\"GPU-b\",device_index="
                      "\"1\",device_type=\"NVIDIA H100 80GB HBM3\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("tessera_container_gpu_allocated{node=\"gpu-mig\",namespace=\"ci\",pod=\"job-1\","
                "container=\"main\",resource=\"nvidia.com/mig-1g.10gb\",device_id=\"MIG-b1\","
                "device_uuid=\"MIG-b1\"} 1\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("tessera_node_devices{node=\"gpu-mig\",resource=\"nvidia.com/"
                      "mig-1g.10gb\",health=\"Unhealthy\"} 1\n"),
            std::string::npos);
  EXPECT_NE(
      text.find(
          "tessera_node_allocate_duration_seconds_bucket{node=\"gpu-mig\",le=\"0.0005\"} 1\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("tessera_node_allocate_duration_seconds_count{node=\"gpu-mig\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("tessera_node_prestart_duration_seconds_count{node=\"gpu-mig\"} 0\n"),
            std::string::npos);
  registry.RecordRpc(Registry::Rpc::kGetPreferredAllocation, std::chrono::milliseconds(20));
  EXPECT_NE(RenderMetrics("gpu-mig", registry, {})
                .find("tessera_node_preferred_allocation_duration_seconds_bucket{node=\"gpu-mig\","
                      "le=\"0.025\"} 1\n"),
            std::string::npos);
  // A GPU without a sample has no memory-used series (rather than a made-up 0).
  EXPECT_EQ(text.find("hami_host_gpu_memory_used_bytes{node=\"gpu-mig\",device_uuid=\"GPU-b\""),
            std::string::npos);
}

TEST(NodeAnnotations, HamisRegisterJsonAndTesserasOwnDescribeEveryGpu) {
  Registry registry = MakeRegistry();
  registry.SetHealth("GPU-b", {false, "Xid 48"});
  auto config = ParseNodeConfig("gpus:\n  - {index: 1, mode: mig}\n", "node.yaml");
  ASSERT_TRUE(config.ok());
  auto annotations = NodeAnnotations(registry, *config);
  auto hami = nlohmann::json::parse(annotations.at("hami.io/node-nvidia-register"));
  ASSERT_EQ(hami.size(), 2u);
  EXPECT_EQ(hami[0]["id"], "GPU-a");
  EXPECT_FALSE(hami[0].contains("index"));  // HAMi's omitempty
  EXPECT_EQ(hami[0]["devmem"], 40960);
  EXPECT_EQ(hami[0]["health"], true);
  EXPECT_EQ(hami[1]["index"], 1);
  EXPECT_EQ(hami[1]["mode"], "mig");
  EXPECT_EQ(hami[1]["health"], false);
  EXPECT_EQ(hami[1]["migProfiles"][0]["name"], "1g.10gb");
  auto ours = nlohmann::json::parse(annotations.at("tessera.io/node-gpus"));
  EXPECT_EQ(ours["driver"], "580.65.06");
  EXPECT_EQ(ours["gpus"][1]["mode"], "mig");
  EXPECT_EQ(ours["gpus"][1]["reason"], "Xid 48");
  EXPECT_EQ(ours["gpus"][1]["mig"][0]["uuid"], "MIG-b1");
  EXPECT_EQ(ours["gpus"][1]["mig"][0]["gpuInstanceId"], 9);
}

// GPU-a shared 8 ways, GPU-b whole.
Registry SharedRegistry() {
  Inventory inventory;
  Gpu gpu;
  gpu.uuid = "GPU-a";
  gpu.name = "NVIDIA A100-SXM4-80GB";
  gpu.memory_bytes = 80ull << 30;
  gpu.numa_node = 1;
  inventory.gpus.push_back(gpu);
  gpu.index = 1;
  gpu.uuid = "GPU-b";
  gpu.numa_node = 0;
  inventory.gpus.push_back(gpu);
  auto config = ParseNodeConfig("gpus:\n  - {index: 0, mode: shared, replicas: 8}\n", "node.yaml");
  auto resources = PlanResources(*config, inventory);
  return Registry(inventory, GpuModes(*config, inventory), std::move(*resources));
}

TEST(NodeAnnotations, ASharedGpuPublishesItsReplicasAsHamisCountAndInTesserasOwn) {
  Registry registry = SharedRegistry();
  auto config = ParseNodeConfig("gpus:\n  - {index: 0, mode: shared, replicas: 8}\n", "node.yaml");
  ASSERT_TRUE(config.ok());
  auto annotations = NodeAnnotations(registry, *config);
  auto hami = nlohmann::json::parse(annotations.at("hami.io/node-nvidia-register"));
  EXPECT_EQ(hami[0]["mode"], "hami-core");
  EXPECT_EQ(hami[0]["count"], 8);
  EXPECT_EQ(hami[0]["devmem"], 81920);
  EXPECT_EQ(hami[0]["numa"], 1);
  EXPECT_EQ(hami[1]["count"], 1);
  auto ours = nlohmann::json::parse(annotations.at("tessera.io/node-gpus"));
  EXPECT_EQ(ours["version"], 1);
  const auto& shared = ours["gpus"][0];
  EXPECT_EQ(shared["uuid"], "GPU-a");
  EXPECT_EQ(shared["index"], 0);
  EXPECT_EQ(shared["model"], "NVIDIA A100-SXM4-80GB");
  EXPECT_EQ(shared["memoryMiB"], 81920);
  EXPECT_EQ(shared["mode"], "shared");
  EXPECT_EQ(shared["replicas"], 8);
  EXPECT_EQ(shared["count"], 8);
  EXPECT_EQ(shared["resource"], "nvidia.com/gpu");
  EXPECT_EQ(shared["numa"], 1);
  EXPECT_EQ(shared["healthy"], true);
  const auto& whole = ours["gpus"][1];
  EXPECT_EQ(whole["mode"], "whole");
  EXPECT_EQ(whole["count"], 1);
  EXPECT_FALSE(whole.contains("replicas"));
}

TEST(Metrics, SayTheSumOfTheMemoryLimitsOfEachSharedGpu) {
  Registry registry = SharedRegistry();
  registry.SetMemoryLimitSums({{"GPU-a", 3000ull << 20}});
  const std::string text = RenderMetrics("n", registry, {});
  EXPECT_NE(text.find("tessera_gpu_memory_limit_sum_bytes{node=\"n\",device_uuid=\"GPU-a\","
                      "device_index=\"0\",device_type=\"NVIDIA A100-SXM4-80GB\"} 3145728000\n"),
            std::string::npos)
      << text;
  // Only shared GPUs have one.
  EXPECT_EQ(text.find("tessera_gpu_memory_limit_sum_bytes{node=\"n\",device_uuid=\"GPU-b\""),
            std::string::npos);
}

TEST(Metrics, KeepTheHighestSumOfMemoryLimitsOfEachSharedGpu) {
  Registry registry = SharedRegistry();
  registry.SetMemoryLimitSums({{"GPU-a", 5000ull << 20}});
  registry.SetMemoryLimitSums({{"GPU-a", 1000ull << 20}});
  EXPECT_EQ(registry.MemoryLimitSums().at("GPU-a"), 1000ull << 20);
  EXPECT_EQ(registry.PeakMemoryLimitSums().at("GPU-a"), 5000ull << 20);
  const std::string text = RenderMetrics("n", registry, {});
  EXPECT_NE(text.find("tessera_gpu_memory_limit_sum_peak_bytes{node=\"n\",device_uuid=\"GPU-a\","
                      "device_index=\"0\",device_type=\"NVIDIA A100-SXM4-80GB\"} 5242880000\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace tessera::node
