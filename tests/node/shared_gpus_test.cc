#include "node/shared_gpus.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace tessera::node {
namespace {

constexpr char kNode[] = "gpu-shared-0";
constexpr char kGpu[] = "nvidia.com/gpu";
constexpr uint64_t kMiB = 1ull << 20;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Registry MakeRegistry() {
  Inventory inventory;
  for (unsigned index = 0; index < 3; ++index) {
    Gpu gpu;
    gpu.index = index;
    gpu.uuid = "GPU-" + std::to_string(index);
    gpu.name = "NVIDIA A100-SXM4-80GB";
    gpu.memory_bytes = 80ull << 30;
    gpu.minor = index;
    inventory.gpus.push_back(gpu);
  }
  auto config = ParseNodeConfig(
      "gpus:\n  - {index: 1, mode: shared, replicas: 4}\n  - {index: 2, mode: shared, replicas: "
      "4}\n",
      "node.yaml");
  auto resources = PlanResources(*config, inventory);
  return Registry(inventory, GpuModes(*config, inventory), std::move(*resources));
}

CachedPod Pod(const std::string& name, const std::string& gpu, int64_t memory_mib, int cores,
              const std::string& phase = "Pending") {
  CachedPod pod;
  pod.namespace_name = "default";
  pod.name = name;
  pod.phase = phase;
  pod.allocation = kube::PodAllocation{kNode, {{"main", false, {{gpu, memory_mib, cores}}}}};
  return pod;
}

PodResourcesPod Listed(const std::string& name, std::vector<std::string> ids) {
  PodResourcesPod pod{"default", name, {{"main", {}}}};
  if (!ids.empty()) pod.containers[0].devices[kGpu] = std::move(ids);
  return pod;
}

class SharedGpusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tessera-shared-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    std::ofstream(dir_ + "/libtessera-cuda.so") << "shim";
    shared_ = Make();
  }
  void TearDown() override {
    shared_.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  std::unique_ptr<SharedGpus> Make(std::string unavailable = "") {
    auto store = AllocationStore::Open(dir_ + "/state");
    EXPECT_TRUE(store.ok()) << store.status().message();
    SharedGpuOptions options;
    options.node_name = kNode;
    options.shim_path = dir_ + "/libtessera-cuda.so";
    options.unavailable = std::move(unavailable);
    options.cache_wait = std::chrono::milliseconds(5000);
    options.unclaimed_grace = std::chrono::seconds(0);
    return std::make_unique<SharedGpus>(
        registry_, *registry_.FindResource(kGpu), std::move(*store), &cache_,
        [this]() -> Result<std::vector<PodResourcesPod>> {
          std::vector<PodResourcesPod> listed = listed_;  // kubelet's answer, then the world moves
          if (on_list_) on_list_();
          return listed;
        },
        options);
  }

  // What kubelet does for one container: Allocate, then record the devices, then PreStart.
  Status Start(const std::vector<std::string>& ids, const std::string& pod,
               ContainerAllocation* out = nullptr) {
    ContainerAllocation allocation;
    if (Status s = shared_->Allocate(ids, allocation); !s.ok()) return s;
    if (out != nullptr) *out = allocation;
    for (auto& entry : listed_) {
      if (entry.name == pod) entry.containers[0].devices[kGpu] = ids;
    }
    return shared_->PreStart(ids);
  }

  std::string LimitsOf(const ContainerAllocation& allocation) {
    for (const auto& mount : allocation.mounts) {
      if (mount.container_path == "/etc/tessera/limits") return Read(mount.host_path);
    }
    return "(no limits mount)";
  }

  std::string dir_;
  Registry registry_ = MakeRegistry();
  PodCache cache_;
  std::vector<PodResourcesPod> listed_;
  std::function<void()> on_list_;
  std::unique_ptr<SharedGpus> shared_;
};

TEST_F(SharedGpusTest, PrefersReplicasOfTheGrantedGpu) {
  cache_.Upsert(Pod("p", "GPU-2", 3000, 30));
  listed_ = {Listed("p", {})};
  std::vector<std::string> all;
  for (const auto& device : registry_.FindResource(kGpu)->devices) all.push_back(device.id);
  auto chosen = shared_->Prefer(all, {}, 1);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_EQ(chosen[0].rfind("GPU-2::", 0), 0u) << chosen[0];
  // Without a pod waiting, the usual preference: the lowest index, GPU-0 (whole).
  listed_ = {};
  EXPECT_EQ(shared_->Prefer(all, {}, 1), std::vector<std::string>{"GPU-0"});
}

TEST_F(SharedGpusTest, PreferWaitsForTheWatchToDeliverAPodKubeletAlreadyLists) {
  listed_ = {Listed("late", {})};
  std::thread watch;
  on_list_ = [&] {
    if (!watch.joinable())
      watch = std::thread([&] { cache_.Upsert(Pod("late", "GPU-2", 1000, 0)); });
  };
  auto chosen = shared_->Prefer({"GPU-0", "GPU-1::0", "GPU-2::0"}, {}, 1);
  watch.join();
  EXPECT_EQ(chosen, std::vector<std::string>{"GPU-2::0"});
}

TEST_F(SharedGpusTest, PreStartWritesTheContainersLimitsAndKeepsTheSum) {
  cache_.Upsert(Pod("p", "GPU-1", 3000, 30));
  listed_ = {Listed("p", {})};
  ContainerAllocation allocation;
  ASSERT_TRUE(Start({"GPU-1::2"}, "p", &allocation).ok());
  EXPECT_EQ(allocation.envs.at("NVIDIA_VISIBLE_DEVICES"), "GPU-1");
  EXPECT_EQ(allocation.envs.at("CUDA_DEVICE_MEMORY_SHARED_CACHE"), "/run/tessera/region");
  std::map<std::string, std::pair<std::string, bool>> mounts;
  for (const auto& mount : allocation.mounts) {
    mounts[mount.container_path] = {mount.host_path, mount.read_only};
  }
  EXPECT_EQ(mounts.at("/usr/lib/tessera/libtessera-cuda.so"),
            std::make_pair(dir_ + "/libtessera-cuda.so", true));
  EXPECT_EQ(mounts.at("/etc/ld.so.preload"), std::make_pair(dir_ + "/state/ld.so.preload", true));
  EXPECT_TRUE(mounts.at("/etc/tessera/limits").second);
  EXPECT_FALSE(mounts.at("/run/tessera").second);
  EXPECT_EQ(LimitsOf(allocation),
            "# tessera-node: limits of pod default/p container main\n"
            "TESSERA_DEVICE_UUID_0=GPU-1\n"
            "CUDA_DEVICE_MEMORY_LIMIT_0=3000m\nCUDA_DEVICE_SM_LIMIT_0=30\n");
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 3000 * kMiB);
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-2"), 0u);
}

TEST_F(SharedGpusTest, PreStartRefusesGpusOtherThanTheGrantAndWritesNothing) {
  cache_.Upsert(Pod("p", "GPU-1", 3000, 30));
  listed_ = {Listed("p", {})};
  ContainerAllocation allocation;
  Status refused = Start({"GPU-2::0"}, "p", &allocation);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("pod default/p container main"), std::string::npos)
      << refused.message();
  EXPECT_NE(refused.message().find("[GPU-2]"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("[GPU-1]"), std::string::npos) << refused.message();
  EXPECT_EQ(LimitsOf(allocation), kPendingLimits);  // still next to nothing
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-2"), 0u);
}

TEST_F(SharedGpusTest, APreStartThatWouldPassTheGpusMemoryIsRefused) {
  cache_.Upsert(Pod("a", "GPU-1", 50 * 1024, 50));
  cache_.Upsert(Pod("b", "GPU-1", 40 * 1024, 50));
  listed_ = {Listed("a", {}), Listed("b", {})};
  ASSERT_TRUE(Start({"GPU-1::0"}, "a").ok());
  Status refused = Start({"GPU-1::1"}, "b");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("more than its 81920 MiB"), std::string::npos)
      << refused.message();
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 50ull * 1024 * kMiB);
}

TEST_F(SharedGpusTest, ARestartedContainerKeepsItsOneShareAndAGonePodReleasesIt) {
  cache_.Upsert(Pod("p", "GPU-1", 60 * 1024, 0));
  listed_ = {Listed("p", {})};
  ASSERT_TRUE(Start({"GPU-1::0"}, "p").ok());
  ASSERT_TRUE(shared_->PreStart({"GPU-1::0"}).ok());  // the container restarts: no new Allocate
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 60ull * 1024 * kMiB);

  // An agent restart finds it again.
  shared_ = Make();
  shared_->Recover();
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 60ull * 1024 * kMiB);
  shared_->Reconcile();  // still listed: kept
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 60ull * 1024 * kMiB);

  listed_.clear();  // the pod is gone
  shared_->Reconcile();
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 0u);
  auto store = AllocationStore::Open(dir_ + "/state");
  EXPECT_TRUE(store->List().empty());
}

TEST_F(SharedGpusTest, DevicesGivenAgainReplaceTheirEarlierHoldersShare) {
  cache_.Upsert(Pod("old", "GPU-1", 70 * 1024, 0));
  listed_ = {Listed("old", {})};
  ASSERT_TRUE(Start({"GPU-1::0"}, "old").ok());
  // The old pod went and kubelet gave its replica to a new one before the agent reconciled.
  cache_.Erase("default/old");
  cache_.Upsert(Pod("new", "GPU-1", 70 * 1024, 0));
  listed_ = {Listed("new", {})};
  ContainerAllocation allocation;
  ASSERT_TRUE(Start({"GPU-1::0"}, "new", &allocation).ok());
  EXPECT_NE(LimitsOf(allocation).find("pod default/new"), std::string::npos);
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 70ull * 1024 * kMiB);
}

TEST_F(SharedGpusTest, AGonePodsShareIsFreedAtTheNextPreStartNotAtTheNextReconcile) {
  cache_.Upsert(Pod("old", "GPU-1", 70 * 1024, 0));
  listed_ = {Listed("old", {})};
  ASSERT_TRUE(Start({"GPU-1::0"}, "old").ok());
  // The old pod is deleted; the scheduler places a new one on the GPU at once, and kubelet gives
  // it another replica, before the agent's loop has reconciled.
  cache_.Erase("default/old");
  cache_.Upsert(Pod("new", "GPU-1", 70 * 1024, 0));
  listed_ = {Listed("new", {})};
  ASSERT_TRUE(Start({"GPU-1::1"}, "new").ok());
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 70ull * 1024 * kMiB);
  auto store = AllocationStore::Open(dir_ + "/state");
  ASSERT_EQ(store->List().size(), 1u);
  EXPECT_EQ(store->List()[0].owner->pod, "new");
}

TEST_F(SharedGpusTest, AnEndedPodsShareIsFreedWhileKubeletStillListsItsDevices) {
  cache_.Upsert(Pod("job", "GPU-1", 70 * 1024, 0));
  cache_.Upsert(Pod("running", "GPU-2", 10 * 1024, 0));
  listed_ = {Listed("job", {}), Listed("running", {})};
  ASSERT_TRUE(Start({"GPU-1::0"}, "job").ok());
  ASSERT_TRUE(Start({"GPU-2::0"}, "running").ok());
  cache_.Upsert(Pod("running", "GPU-2", 10 * 1024, 0, "Running"));
  cache_.Upsert(Pod("job", "GPU-1", 70 * 1024, 0, "Succeeded"));  // still listed, devices too
  cache_.Upsert(Pod("next", "GPU-1", 70 * 1024, 0));
  listed_.push_back(Listed("next", {}));
  ASSERT_TRUE(Start({"GPU-1::1"}, "next").ok());
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 70ull * 1024 * kMiB);

  // Reconcile frees an ended pod's share too, and keeps a running one's.
  cache_.Upsert(Pod("next", "GPU-1", 70 * 1024, 0, "Failed"));
  shared_->Reconcile();
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 0u);
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-2"), 10ull * 1024 * kMiB);
}

TEST_F(SharedGpusTest, AShareClaimedWhileAnotherPreStartWaitedIsNotTakenForGone) {
  cache_.Upsert(Pod("a", "GPU-1", 40 * 1024, 0));
  cache_.Upsert(Pod("b", "GPU-1", 30 * 1024, 0));
  listed_ = {Listed("a", {}), Listed("b", {})};
  ContainerAllocation allocation;
  ASSERT_TRUE(shared_->Allocate({"GPU-1::0"}, allocation).ok());
  listed_[0].containers[0].devices[kGpu] = {"GPU-1::0"};
  // Right after a's PreStart lists kubelet's pods, b is started and claims its share in full.
  on_list_ = [&] {
    on_list_ = nullptr;
    ASSERT_TRUE(Start({"GPU-1::1"}, "b").ok());
  };
  ASSERT_TRUE(shared_->PreStart({"GPU-1::0"}).ok());
  EXPECT_EQ(registry_.MemoryLimitSums().at("GPU-1"), 70ull * 1024 * kMiB);
  auto store = AllocationStore::Open(dir_ + "/state");
  EXPECT_EQ(store->List().size(), 2u) << "b's allocation directory is still there";
}

TEST_F(SharedGpusTest, WithoutAnApiServerSharesAreRefusedSayingWhy) {
  shared_ = Make("no API server (--no-publish)");
  ContainerAllocation allocation;
  Status refused = shared_->Allocate({"GPU-1::0"}, allocation);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("--no-publish"), std::string::npos) << refused.message();
  EXPECT_TRUE(shared_->PreStart({"GPU-0"}).ok());  // a whole GPU needs nothing
}

}  // namespace
}  // namespace tessera::node
