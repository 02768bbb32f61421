#include "node/pod_identity.h"

#include <gtest/gtest.h>

#include "shim/config.h"

namespace tessera::node {
namespace {

constexpr char kNode[] = "gpu-shared-0";
constexpr char kGpu[] = "nvidia.com/gpu";

// Three GPUs of nvidia.com/gpu: GPU-0 whole, GPU-1 and GPU-2 shared, 4 replicas each.
Resource Gpus() {
  Resource resource;
  resource.name = kGpu;
  for (unsigned index = 0; index < 3; ++index) {
    const std::string uuid = "GPU-" + std::to_string(index);
    const int replicas = index == 0 ? 1 : 4;
    for (int replica = 0; replica < replicas; ++replica) {
      PluginDevice device;
      device.gpu_uuid = device.visible_id = uuid;
      device.id = index == 0 ? uuid : ReplicaId(uuid, replica);
      device.gpu_index = index;
      device.mode = index == 0 ? GpuMode::kWhole : GpuMode::kShared;
      device.replica = index == 0 ? -1 : replica;
      resource.devices.push_back(device);
    }
  }
  return resource;
}

kube::ContainerGrant Grant(const std::string& name, std::vector<kube::GpuGrant> gpus,
                           bool init = false) {
  return {name, init, std::move(gpus)};
}

CachedPod Pod(const std::string& name, std::vector<kube::ContainerGrant> containers,
              const std::string& phase = "Pending", const std::string& node = kNode) {
  CachedPod pod;
  pod.namespace_name = "default";
  pod.name = name;
  pod.uid = "uid-" + name;
  pod.phase = phase;
  pod.allocation = kube::PodAllocation{node, std::move(containers)};
  return pod;
}

PodSnapshot Snapshot(const std::vector<CachedPod>& pods) {
  PodSnapshot snapshot;
  for (const auto& pod : pods) snapshot[PodKey(pod.namespace_name, pod.name)] = pod;
  return snapshot;
}

// A PodResources entry: containers with the nvidia.com/gpu devices kubelet recorded (none: {}).
PodResourcesPod Listed(const std::string& name,
                       std::vector<std::pair<std::string, std::vector<std::string>>> containers) {
  PodResourcesPod pod{"default", name, {}};
  for (auto& [container, ids] : containers) {
    PodResourcesContainer entry{container, {}};
    if (!ids.empty()) entry.devices[kGpu] = ids;
    pod.containers.push_back(std::move(entry));
  }
  return pod;
}

TEST(FindPendingContainer, TheOnePodWaitingForDevicesIsTheOneBeingAdmitted) {
  const auto pods = Snapshot({Pod("running", {Grant("main", {{"GPU-2", 1000, 10}})}, "Running"),
                              Pod("new", {Grant("main", {{"GPU-1", 3000, 30}})})});
  const std::vector<PodResourcesPod> listed = {Listed("running", {{"main", {"GPU-2::0"}}}),
                                               Listed("new", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  ASSERT_TRUE(identity.container) << identity.why;
  EXPECT_EQ(identity.container->pod, "new");
  EXPECT_EQ(identity.container->container, "main");
  ASSERT_EQ(identity.container->gpus.size(), 1u);
  EXPECT_EQ(identity.container->gpus[0].uuid, "GPU-1");
  EXPECT_TRUE(identity.missing_pods.empty());
}

TEST(FindPendingContainer, NoPodWaitingMeansNoContainer) {
  const auto pods = Snapshot({Pod("running", {Grant("main", {{"GPU-2", 1000, 10}})}, "Running"),
                              Pod("cpu-only", {Grant("main", {})})});
  const std::vector<PodResourcesPod> listed = {Listed("running", {{"main", {"GPU-2::0"}}}),
                                               Listed("cpu-only", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  EXPECT_FALSE(identity.container);
  EXPECT_FALSE(identity.why.empty());
}

TEST(FindPendingContainer, TwoWaitingPodsWithDifferentGpusAreAmbiguous) {
  const auto pods = Snapshot({Pod("a", {Grant("main", {{"GPU-1", 1000, 10}})}),
                              Pod("b", {Grant("main", {{"GPU-2", 1000, 10}})})});
  const std::vector<PodResourcesPod> listed = {Listed("a", {{"main", {}}}),
                                               Listed("b", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  EXPECT_FALSE(identity.container);
  EXPECT_NE(identity.why.find("ambiguous"), std::string::npos) << identity.why;
}

TEST(FindPendingContainer, TwoWaitingPodsForTheSameGpusGiveThatAnswer) {
  const auto pods = Snapshot({Pod("a", {Grant("main", {{"GPU-1", 1000, 10}})}),
                              Pod("b", {Grant("main", {{"GPU-1", 2000, 20}})})});
  const std::vector<PodResourcesPod> listed = {Listed("a", {{"main", {}}}),
                                               Listed("b", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  ASSERT_TRUE(identity.container);
  EXPECT_EQ(identity.container->gpus[0].uuid, "GPU-1");
}

TEST(FindPendingContainer, ATerminalPodIsSkipped) {
  // A pod that failed admission stays listed for a while, its container without devices.
  const auto pods = Snapshot({Pod("failed", {Grant("main", {{"GPU-2", 1000, 10}})}, "Failed"),
                              Pod("new", {Grant("main", {{"GPU-1", 1000, 10}})})});
  const std::vector<PodResourcesPod> listed = {Listed("failed", {{"main", {}}}),
                                               Listed("new", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  ASSERT_TRUE(identity.container) << identity.why;
  EXPECT_EQ(identity.container->pod, "new");
}

TEST(FindPendingContainer, APodBeingDeletedIsSkipped) {
  // kubelet frees a deleted pod's devices at once; PodResources lists it until it is gone.
  CachedPod deleted = Pod("deleted", {Grant("main", {{"GPU-2", 1000, 10}})}, "Running");
  deleted.deleting = true;
  const auto pods = Snapshot({deleted, Pod("new", {Grant("main", {{"GPU-1", 1000, 10}})})});
  const std::vector<PodResourcesPod> listed = {Listed("deleted", {{"main", {}}}),
                                               Listed("new", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  ASSERT_TRUE(identity.container) << identity.why;
  EXPECT_EQ(identity.container->pod, "new");
}

TEST(CachedPodFromJson, ReadsTheDeletionTimestamp) {
  EXPECT_FALSE(CachedPodFromJson({{"metadata", {{"name", "a"}}}}).deleting);
  EXPECT_TRUE(CachedPodFromJson(
                  {{"metadata", {{"name", "a"}, {"deletionTimestamp", "2026-12-01T20:00:00Z"}}}})
                  .deleting);
}

TEST(FindPendingContainer, AnAllocatedContainerIsSkippedForTheNextOneOfItsPod) {
  const auto pods = Snapshot({Pod(
      "two", {Grant("first", {{"GPU-1", 1000, 10}}), Grant("second", {{"GPU-2", 1000, 10}})})});
  const std::vector<PodResourcesPod> listed = {
      Listed("two", {{"first", {"GPU-1::3"}}, {"second", {}}})};
  auto identity = FindPendingContainer(listed, pods, kNode, kGpu, 1);
  ASSERT_TRUE(identity.container) << identity.why;
  EXPECT_EQ(identity.container->container, "second");
  EXPECT_EQ(identity.container->gpus[0].uuid, "GPU-2");
}

TEST(FindPendingContainer, AGrantOfAnotherSizeOrNodeIsNotACandidate) {
  const auto pods = Snapshot(
      {Pod("two-gpus", {Grant("main", {{"GPU-1", 1000, 10}, {"GPU-2", 1000, 10}})}),
       Pod("elsewhere", {Grant("main", {{"GPU-1", 1000, 10}})}, "Pending", "gpu-shared-1")});
  const std::vector<PodResourcesPod> listed = {Listed("two-gpus", {{"main", {}}}),
                                               Listed("elsewhere", {{"main", {}}})};
  EXPECT_FALSE(FindPendingContainer(listed, pods, kNode, kGpu, 1).container);
  auto two = FindPendingContainer(listed, pods, kNode, kGpu, 2);
  ASSERT_TRUE(two.container);
  EXPECT_EQ(two.container->pod, "two-gpus");
}

TEST(FindPendingContainer, APodTheCacheLacksIsReportedMissing) {
  const std::vector<PodResourcesPod> listed = {Listed("just-bound", {{"main", {}}})};
  auto identity = FindPendingContainer(listed, {}, kNode, kGpu, 1);
  EXPECT_FALSE(identity.container);
  EXPECT_EQ(identity.missing_pods, std::vector<std::string>{"default/just-bound"});
}

TEST(FindDeviceHolder, FindsTheOneContainerHoldingExactlyTheseIdsInAnyOrder) {
  const std::vector<PodResourcesPod> listed = {
      Listed("a", {{"main", {"GPU-1::0"}}}),
      Listed("b", {{"side", {}}, {"main", {"GPU-2::1", "GPU-1::1"}}})};
  auto holder = FindDeviceHolder(listed, kGpu, {"GPU-1::1", "GPU-2::1"});
  ASSERT_TRUE(holder.ok()) << holder.status().message();
  EXPECT_EQ(holder->pod, "b");
  EXPECT_EQ(holder->container, "main");
  // A subset is not a holder.
  EXPECT_FALSE(FindDeviceHolder(listed, kGpu, {"GPU-1::1"}).ok());
  auto none = FindDeviceHolder(listed, kGpu, {"GPU-1::3"});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("GPU-1::3"), std::string::npos);
}

TEST(FindDeviceHolder, TwoHoldersAreAnError) {
  const std::vector<PodResourcesPod> listed = {Listed("a", {{"main", {"GPU-1::0"}}}),
                                               Listed("b", {{"main", {"GPU-1::0"}}})};
  auto holder = FindDeviceHolder(listed, kGpu, {"GPU-1::0"});
  ASSERT_FALSE(holder.ok());
  EXPECT_NE(holder.status().message().find("default/a"), std::string::npos);
  EXPECT_NE(holder.status().message().find("default/b"), std::string::npos);
}

TEST(CheckGrant, GivesTheGrantInContainerDeviceOrder) {
  const Resource resource = Gpus();
  // Granted in another order than the node's: the limits still follow each GPU.
  const CachedPod pod =
      Pod("p", {Grant("main", {{"GPU-2", 2000, 20}, {"GPU-1", 1000, 10}})}, "Pending");
  auto checked = CheckGrant(pod, "main", kNode, resource, {"GPU-2::3", "GPU-1::0"});
  ASSERT_TRUE(checked.ok()) << checked.status().message();
  ASSERT_EQ(checked->gpus.size(), 2u);
  EXPECT_EQ(checked->gpus[0], (kube::GpuGrant{"GPU-1", 1000, 10}));
  EXPECT_EQ(checked->gpus[1], (kube::GpuGrant{"GPU-2", 2000, 20}));
}

TEST(CheckGrant, RefusesGpusOtherThanTheGrantNamingPodContainerAndBothSides) {
  const Resource resource = Gpus();
  const CachedPod pod = Pod("p", {Grant("main", {{"GPU-1", 1000, 10}})});
  auto checked = CheckGrant(pod, "main", kNode, resource, {"GPU-2::0"});
  ASSERT_FALSE(checked.ok());
  const std::string& message = checked.status().message();
  EXPECT_NE(message.find("pod default/p container main"), std::string::npos) << message;
  EXPECT_NE(message.find("kubelet gave it GPUs [GPU-2]"), std::string::npos) << message;
  EXPECT_NE(message.find("the scheduler decided [GPU-1]"), std::string::npos) << message;
}

TEST(CheckGrant, RefusesTwoReplicasOfOneGpuAMissingGrantAndAnotherNode) {
  const Resource resource = Gpus();
  const CachedPod pod = Pod("p", {Grant("main", {{"GPU-1", 1000, 10}})});
  EXPECT_FALSE(CheckGrant(pod, "main", kNode, resource, {"GPU-1::0", "GPU-1::1"}).ok());
  EXPECT_FALSE(CheckGrant(pod, "other", kNode, resource, {"GPU-1::0"}).ok());
  EXPECT_FALSE(CheckGrant(pod, "main", "gpu-shared-1", resource, {"GPU-1::0"}).ok());
  CachedPod unscheduled = pod;
  unscheduled.allocation.reset();
  auto refused = CheckGrant(unscheduled, "main", kNode, resource, {"GPU-1::0"});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("tessera.io/allocation"), std::string::npos);
}

TEST(CachedPodFromJson, ReadsPhaseAndAllocationAndKeepsAnUnreadableOnesError) {
  const auto allocation =
      kube::EncodePodAllocation({kNode, {{"main", false, {{"GPU-1", 3000, 30}}}}});
  auto pod = CachedPodFromJson({{"metadata",
                                 {{"namespace", "ns"},
                                  {"name", "p"},
                                  {"uid", "u1"},
                                  {"annotations", {{"tessera.io/allocation", allocation}}}}},
                                {"status", {{"phase", "Running"}}}});
  EXPECT_EQ(PodKey(pod.namespace_name, pod.name), "ns/p");
  EXPECT_EQ(pod.uid, "u1");
  EXPECT_EQ(pod.phase, "Running");
  ASSERT_TRUE(pod.allocation);
  EXPECT_EQ(pod.allocation->containers[0].gpus[0].memory_mib, 3000);
  auto bad = CachedPodFromJson(
      {{"metadata",
        {{"namespace", "ns"}, {"name", "q"}, {"annotations", {{"tessera.io/allocation", "{"}}}}}});
  EXPECT_FALSE(bad.allocation);
  EXPECT_FALSE(bad.allocation_error.empty());
  EXPECT_FALSE(CheckGrant(bad, "main", kNode, Gpus(), {"GPU-1::0"}).ok());
}

TEST(LimitsFileText, EachContainerDevicesUuidAndLimitsInTheShimsSyntax) {
  const std::string first = "GPU-00000000-1111-2222-3333-444444444444";
  const std::string second = "GPU-55555555-6666-7777-8888-999999999999";
  IdentifiedContainer container{"ns", "p", "main", {{first, 1000, 10}, {second, 24576, 0}}};
  const std::string text = LimitsFileText(container);
  EXPECT_EQ(text,
            "# tessera-node: limits of pod ns/p container main\n"
            "TESSERA_DEVICE_UUID_0=" +
                first +
                "\n"
                "TESSERA_DEVICE_UUID_1=" +
                second +
                "\n"
                "CUDA_DEVICE_MEMORY_LIMIT_0=1000m\n"
                "CUDA_DEVICE_SM_LIMIT_0=10\n"
                "CUDA_DEVICE_MEMORY_LIMIT_1=24576m\n");  // cores 0: no compute limit
  // The shim reads back what tessera-node wrote.
  shim::Config read = shim::ParseConfigWithLimitsFile({}, shim::kLimitsFilePath, text);
  ASSERT_TRUE(read.errors.empty()) << read.errors.front();
  EXPECT_EQ(read.device_uuids, (std::vector<std::string>{first, second}));
  EXPECT_EQ(read.limits.devices[1].memory_bytes, uint64_t{24576} << 20);
}

TEST(ContainerGpus, EachGpuOnceInNodeIndexOrder) {
  const Resource resource = Gpus();
  auto gpus = ContainerGpus(resource, {"GPU-2::1", "GPU-0", "GPU-1::2", "unknown"});
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_EQ(gpus[0]->gpu_uuid, "GPU-0");
  EXPECT_EQ(gpus[1]->gpu_uuid, "GPU-1");
  EXPECT_EQ(gpus[2]->gpu_uuid, "GPU-2");
}

}  // namespace
}  // namespace tessera::node
