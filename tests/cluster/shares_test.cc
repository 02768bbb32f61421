// A share of a GPU is free for the next pod the moment its pod has gone or ended: the scheduler
// frees it then (the Pod is deleted, or its phase is Succeeded or Failed), so tessera-node must
// too, at the next PreStartContainer, not at its next look at kubelet's PodResources (every few
// seconds), or kubelet's start of the next container on the GPU fails with "the memory limits of
// its shares would sum to more than" the GPU's memory.
#include "tests/cluster/cluster_fixture.h"

namespace tessera::cluster_test {
namespace {

constexpr int kShareMiB = 60000;  // two of them do not fit in one 80 GiB GPU
constexpr int kSmallMiB = 1000;

class Shares : public ClusterTest {
 protected:
  // A pod with `mib` of the GPU `uuid`, running `command` (a YAML flow list).
  static std::string SharePod(const std::string& name, const std::string& uuid, int mib,
                              const std::string& command) {
    return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name +
           "\n  annotations: {nvidia.com/use-gpuuuid: \"" + uuid +
           "\"}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n"
           "  containers:\n  - name: main\n    image: busybox\n    command: " +
           command + "\n    resources: {limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: " +
           std::to_string(mib) + "}}\n";
  }

  // The messages of the pod's events that name PreStartContainer (kubelet's failures to start it).
  static std::string PreStartFailures(const std::string& name) {
    const auto events = KubectlHere(
        {"get", "events", "--field-selector", "involvedObject.name=" + name, "-o", "json"});
    const json list = json::parse(events.output);
    std::string failures;
    for (const auto& event : list["items"]) {
      const std::string message = event.value("message", "");
      if (message.find("PreStartContainer") != std::string::npos) failures += message + "\n";
    }
    return failures;
  }

  // Creates a pod with kShareMiB of `uuid` that allocates well within it; it must succeed, and
  // kubelet must have started it at the first try.
  static void ExpectTheNextPodRunsAtOnce(const std::string& uuid) {
    const std::string name = Unique("share-next");
    const std::string allocate = std::to_string(WithinLimitMiB(kShareMiB));
    ASSERT_TRUE(Apply(SharePod(
        name, uuid, kShareMiB,
        "[\"" + std::string(TESSERA_GPU_REPORT) + "\", \"--allocate\", \"" + allocate + "\"]")));
    EXPECT_EQ(WaitFinished(name), "Succeeded") << Logs(name);
    EXPECT_EQ(PreStartFailures(name), "");
    EXPECT_NE(Logs(name).find("allocate " + allocate + " MiB on device 0: ok"), std::string::npos)
        << Logs(name);
    KubectlHere({"delete", "pod", name, "--wait=true", "--timeout=120s"});
  }

  static std::string Uuid(int index) {
    return Node("gpu-shared-1")["gpus"][static_cast<size_t>(index)]["uuid"].get<std::string>();
  }
};

// kubelet gives a container the lowest free replica of its GPU (tessera-node prefers it): a small
// pod holds replica 0 and the big one replica 1; when both are over, the next big pod gets
// replica 0, and only the share left on replica 1 is in its way. (A pod that is deleted is out
// of kubelet's PodResources once its containers are killed, before the scheduler sees it gone,
// so tessera-node's own look mostly frees it in time; the unit tests cover that case.)

TEST_F(Shares, AnEndedPodsShareIsGivenToTheNextPodAtOnce) {
  const std::string uuid = Uuid(6);
  const std::string small = Unique("share-small");
  const std::string big = Unique("share-ending");
  ASSERT_TRUE(Apply(SharePod(small, uuid, kSmallMiB, "[\"sleep\", \"3600\"]")));
  ASSERT_TRUE(WaitRunning(small)) << Phase(small);
  ASSERT_TRUE(Apply(SharePod(big, uuid, kShareMiB, "[\"sleep\", \"8\"]")));
  ASSERT_TRUE(WaitRunning(big)) << Phase(big);
  ASSERT_EQ(KubectlHere({"delete", "pod", small, "--wait=true", "--timeout=120s"}).status, 0);
  ASSERT_EQ(WaitFinished(big), "Succeeded");
  ExpectTheNextPodRunsAtOnce(uuid);
  KubectlHere({"delete", "pod", big, "--wait=false"});
}

}  // namespace
}  // namespace tessera::cluster_test
