#include "node/allocation.h"

#include <gtest/gtest.h>

namespace tessera::node {
namespace {

// Four GPUs, two per NUMA node, each time-sliced `replicas` ways.
Resource TimeSliced(int replicas) {
  Resource resource;
  resource.name = kTimeSlicedResource;
  for (unsigned gpu = 0; gpu < 4; ++gpu) {
    for (int replica = 0; replica < replicas; ++replica) {
      PluginDevice device;
      device.gpu_uuid = "GPU-" + std::to_string(gpu);
      device.id = device.gpu_uuid + "::" + std::to_string(replica);
      device.visible_id = device.gpu_uuid;
      device.gpu_index = gpu;
      device.minor = gpu;
      device.numa_node = gpu < 2 ? 0 : 1;
      device.mode = GpuMode::kTimeSliced;
      device.replica = replica;
      resource.devices.push_back(device);
    }
  }
  return resource;
}

std::vector<std::string> Ids(const Resource& resource) {
  std::vector<std::string> ids;
  for (const auto& device : resource.devices) ids.push_back(device.id);
  return ids;
}

std::string GpuOf(const std::string& id) { return id.substr(0, id.find("::")); }

TEST(PreferredDevices, AContainersReplicasAreOnDistinctGpusOfOneNumaNode) {
  const Resource resource = TimeSliced(4);
  auto chosen = PreferredDevices(resource, Ids(resource), {}, 2);
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_NE(GpuOf(chosen[0]), GpuOf(chosen[1]));
  const auto* a = resource.Find(chosen[0]);
  const auto* b = resource.Find(chosen[1]);
  EXPECT_EQ(a->numa_node, b->numa_node);
}

TEST(PreferredDevices, AReplicaGoesToTheLeastSharedGpu) {
  const Resource resource = TimeSliced(4);
  // GPU-0 has three replicas in use, GPU-1 one, GPU-2 and GPU-3 none on NUMA node 1 are absent.
  std::vector<std::string> available = {"GPU-0::3", "GPU-1::1", "GPU-1::2", "GPU-1::3"};
  auto chosen = PreferredDevices(resource, available, {}, 1);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_EQ(GpuOf(chosen[0]), "GPU-1");
}

TEST(PreferredDevices, KeepsWhatKubeletMustIncludeAndStaysOnItsNumaNode) {
  const Resource resource = TimeSliced(1);
  auto chosen = PreferredDevices(resource, Ids(resource), {"GPU-2::0"}, 2);
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_EQ(chosen[0], "GPU-2::0");
  EXPECT_EQ(chosen[1], "GPU-3::0");
}

TEST(PreferredDevices, BestFitNumaNodeKeepsTheBiggerGroupWhole) {
  const Resource resource = TimeSliced(1);
  // NUMA 0 has one free GPU, NUMA 1 has two: a one-GPU container takes the lone one.
  auto chosen = PreferredDevices(resource, {"GPU-1::0", "GPU-2::0", "GPU-3::0"}, {}, 1);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_EQ(chosen[0], "GPU-1::0");
}

TEST(PreferredDevices, UnknownIdsAreIgnoredAndShortSupplyGivesWhatThereIs) {
  const Resource resource = TimeSliced(1);
  auto chosen = PreferredDevices(resource, {"GPU-0::0", "bogus"}, {}, 3);
  EXPECT_EQ(chosen, (std::vector<std::string>{"GPU-0::0"}));
}

// Four whole GPUs on one NUMA node: 0-1 and 2-3 each share a PCIe switch.
Resource WholeOnOneNumaNode() {
  Resource resource;
  resource.name = kWholeResource;
  for (unsigned gpu = 0; gpu < 4; ++gpu) {
    PluginDevice device;
    device.id = device.visible_id = device.gpu_uuid = "GPU-" + std::to_string(gpu);
    device.gpu_index = device.minor = gpu;
    device.numa_node = 0;
    resource.devices.push_back(device);
  }
  return resource;
}

const TopologyLevels kTwoSwitches = {{{0, 1}, 10}, {{2, 3}, 10}, {{0, 2}, 30},
                                     {{0, 3}, 30}, {{1, 2}, 30}, {{1, 3}, 30}};

TEST(PreferredDevices, AMultiGpuContainerGetsGpusBehindOneSwitch) {
  const Resource resource = WholeOnOneNumaNode();
  // GPU 1 is taken: 0 has no partner on its switch, 2 and 3 do.
  auto chosen = PreferredDevices(resource, {"GPU-0", "GPU-2", "GPU-3"}, {}, 2, kTwoSwitches);
  EXPECT_EQ(chosen, (std::vector<std::string>{"GPU-2", "GPU-3"}));
  // With a GPU kubelet must include, its switch partner comes next.
  chosen =
      PreferredDevices(resource, {"GPU-0", "GPU-1", "GPU-2", "GPU-3"}, {"GPU-3"}, 2, kTwoSwitches);
  EXPECT_EQ(chosen, (std::vector<std::string>{"GPU-3", "GPU-2"}));
  // Without topology, index order.
  chosen = PreferredDevices(resource, {"GPU-0", "GPU-2", "GPU-3"}, {}, 2);
  EXPECT_EQ(chosen, (std::vector<std::string>{"GPU-0", "GPU-2"}));
}

TEST(AllocateContainer, NamesEachGpuOnceAndGivesItsDeviceNodes) {
  const Resource resource = TimeSliced(4);
  DeviceNodes nodes{"/run/fake/dev", [](const std::string&) { return true; }};
  auto allocation = AllocateContainer(resource, {"GPU-1::0", "GPU-1::2", "GPU-3::1"}, nodes);
  ASSERT_TRUE(allocation.ok()) << allocation.status().message();
  EXPECT_EQ(allocation->envs.at("NVIDIA_VISIBLE_DEVICES"), "GPU-1,GPU-3");
  std::vector<std::string> hosts;
  for (const auto& node : allocation->devices) hosts.push_back(node.host_path);
  EXPECT_EQ(hosts, (std::vector<std::string>{"/run/fake/dev/nvidiactl", "/run/fake/dev/nvidia-uvm",
                                             "/run/fake/dev/nvidia-uvm-tools",
                                             "/run/fake/dev/nvidia1", "/run/fake/dev/nvidia3"}));
  EXPECT_EQ(allocation->devices[3].container_path, "/dev/nvidia1");
}

TEST(AllocateContainer, LeavesOutDeviceNodesTheHostDoesNotHave) {
  // The driver makes /dev/nvidia-uvm* on first use; a runtime refuses a node that is missing.
  DeviceNodes nodes{"/dev",
                    [](const std::string& path) { return path.find("uvm") == std::string::npos; }};
  auto allocation = AllocateContainer(TimeSliced(1), {"GPU-2::0"}, nodes);
  ASSERT_TRUE(allocation.ok());
  std::vector<std::string> containers;
  for (const auto& node : allocation->devices) containers.push_back(node.container_path);
  EXPECT_EQ(containers, (std::vector<std::string>{"/dev/nvidiactl", "/dev/nvidia2"}));
}

TEST(AllocateContainer, AnUnknownDeviceIsAnError) {
  auto allocation = AllocateContainer(TimeSliced(1), {"GPU-9::0"}, DeviceNodes{});
  ASSERT_FALSE(allocation.ok());
  EXPECT_NE(allocation.status().message().find("\"GPU-9::0\""), std::string::npos);
}

}  // namespace
}  // namespace tessera::node
