// tessera-node under real kubelets: pods asking for a whole GPU, a time-sliced replica or a MIG
// instance run a CUDA program (tessera-gpu-report) that sees exactly what it was given; health
// faults raised on the fake GPU leave and rejoin the node's allocatable; kubelet and agent
// restarts disturb no running pod; every agent's /metrics passes promtool and Prometheus scrapes
// them all; the node's GPU inventory is on its Node object.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "tests/cluster/cluster_fixture.h"

namespace tessera::cluster_test {
namespace {

// Every "key=value" of the line of `text` that starts with `prefix`.
std::map<std::string, std::string> LineFields(const std::string& text, const std::string& prefix) {
  std::map<std::string, std::string> fields;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream words(line.substr(prefix.size()));
    std::string word;
    while (words >> word) {
      const size_t eq = word.find('=');
      if (eq != std::string::npos) fields[word.substr(0, eq)] = word.substr(eq + 1);
    }
    break;
  }
  return fields;
}

std::string Between(const std::string& text, const std::string& start, char end) {
  const size_t at = text.find(start);
  if (at == std::string::npos) return "";
  const size_t from = at + start.size();
  return text.substr(from, text.find(end, from) - from);
}

class Gpus : public ClusterTest {
 protected:
  // Deletes its pods when the test ends, however it ends: a failed assertion must not leave pods
  // holding devices that later tests need.
  struct PodsGuard {
    std::vector<std::string> pods;
    ~PodsGuard() {
      for (const auto& pod : pods)
        KubectlHere({"delete", "pod", pod, "--wait=false", "--grace-period=1"});
    }
  };

  // A pod on `node` asking for one `resource`, running `command` (a YAML flow list).
  static std::string GpuPod(const std::string& name, const std::string& node,
                            const std::string& resource, const std::string& command) {
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
           "}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n"
           "  nodeSelector: {kubernetes.io/hostname: " +
           node +
           "}\n"
           "  containers:\n  - name: main\n    image: cuda\n    command: " +
           command + "\n    resources: {limits: {" + resource + ": 1}}\n";
  }

  static std::string Report() { return std::string("[") + TESSERA_GPU_REPORT + "]"; }

  // The pod's log once it has finished; fails the test if it did not succeed.
  static std::string RunToCompletion(const std::string& name, const std::string& manifest) {
    EXPECT_TRUE(Apply(manifest));
    EXPECT_EQ(WaitFinished(name), "Succeeded") << Logs(name);
    return Logs(name);
  }

  static json NodeObject(const std::string& name) {
    CommandResult result = Kubectl({"get", "node", name, "-o", "json"});
    return result.status == 0 ? json::parse(result.output, nullptr, false) : json();
  }

  static long long Allocatable(const std::string& node, const std::string& resource) {
    json object = NodeObject(node);
    if (!object.is_object()) return -1;
    const json& allocatable = object["status"]["allocatable"];
    return allocatable.contains(resource) ? std::stoll(allocatable[resource].get<std::string>())
                                          : 0;
  }

  static std::string Gpu(const std::string& node, int index) {
    return Node(node)["gpus"][static_cast<size_t>(index)]["uuid"].get<std::string>();
  }

  static std::set<std::string> NodeGpus(const std::string& node) {
    std::set<std::string> uuids;
    for (const auto& gpu : Node(node)["gpus"]) uuids.insert(gpu["uuid"].get<std::string>());
    return uuids;
  }

  static CommandResult FakeGpu(const std::string& node, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {TESSERA_FAKEGPU_TOOL, "--config",
                                     Node(node)["fakegpu_config"].get<std::string>(), "--state",
                                     Node(node)["fakegpu_state"].get<std::string>()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  // The host directory bound over /var/lib/kubelet/device-plugins in the node's namespace.
  static std::string DevicePluginDir(const std::string& node) {
    return Node(node)["kubelet"]["device_plugin_dir"].get<std::string>();
  }

  static bool Exists(const std::string& path) {
    struct stat st = {};
    return stat(path.c_str(), &st) == 0;
  }

  // Which file `path` is (inode and change time; a new socket may reuse the old inode), 0 if none.
  static std::pair<unsigned long long, long long> Inode(const std::string& path) {
    struct stat st = {};
    if (stat(path.c_str(), &st) != 0) return {0, 0};
    return {st.st_ino, st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec};
  }

  static bool AgentReady(const std::string& node) {
    return RunCommand({"/usr/bin/curl", "-sf",
                       "http://" + Node(node)["metrics_address"].get<std::string>() + "/readyz"})
               .status == 0;
  }

  static std::string Metrics(const std::string& node) {
    return RunCommand({"/usr/bin/curl", "-sf",
                       "http://" + Node(node)["metrics_address"].get<std::string>() + "/metrics"})
        .output;
  }
};

TEST_F(Gpus, AWholeGpuPodSeesExactlyItsGpu) {
  const std::string name = Unique("whole");
  const std::string log =
      RunToCompletion(name, GpuPod(name, "gpu-whole", "nvidia.com/gpu", Report()));
  const std::string visible = Between(log, "NVIDIA_VISIBLE_DEVICES=", '\n');
  EXPECT_EQ(NodeGpus("gpu-whole").count(visible), 1u) << log;
  EXPECT_NE(log.find("cuda: 1 device(s)"), std::string::npos) << log;
  auto cuda = LineFields(log, "cuda 0: ");
  EXPECT_EQ(cuda["uuid"], visible) << log;
  EXPECT_EQ(cuda["memory_mib"], "40960") << log;
  EXPECT_NE(log.find("nvml: 1 device(s)"), std::string::npos) << log;
  EXPECT_EQ(LineFields(log, "nvml 0: ")["uuid"], visible) << log;
}

TEST_F(Gpus, ATimeSlicedPodSeesOneSharedGpu) {
  const std::string name = Unique("sliced");
  const std::string log =
      RunToCompletion(name, GpuPod(name, "gpu-sliced", "nvidia.com/gpu.shared", Report()));
  const std::string visible = Between(log, "NVIDIA_VISIBLE_DEVICES=", '\n');
  EXPECT_EQ(NodeGpus("gpu-sliced").count(visible), 1u) << log;
  EXPECT_NE(log.find("cuda: 1 device(s)"), std::string::npos) << log;
  EXPECT_EQ(LineFields(log, "cuda 0: ")["uuid"], visible) << log;
  EXPECT_EQ(LineFields(log, "cuda 0: ")["memory_mib"], "24576") << log;
}

TEST_F(Gpus, AMigPodSeesExactlyItsInstanceAndItsMemory) {
  const std::string name = Unique("mig");
  // 10 GiB instance: 9 GiB fits beside the context, 11 GiB cannot.
  const std::string log = RunToCompletion(
      name, GpuPod(name, "gpu-mig", "nvidia.com/mig-1g.10gb",
                   std::string("[\"/bin/sh\", \"-c\", \"") + TESSERA_GPU_REPORT +
                       " --allocate 9216 && " + TESSERA_GPU_REPORT + " --allocate 11264\"]"));
  const std::string visible = Between(log, "NVIDIA_VISIBLE_DEVICES=", '\n');
  ASSERT_EQ(visible.rfind("MIG-", 0), 0u) << log;
  json tessera = json::parse(
      NodeObject("gpu-mig")["metadata"]["annotations"]["tessera.io/node-gpus"].get<std::string>());
  std::string profile;
  for (const auto& gpu : tessera["gpus"]) {
    for (const auto& instance : gpu.value("mig", json::array())) {
      if (instance["uuid"] == visible) profile = instance["profile"];
    }
  }
  EXPECT_EQ(profile, "1g.10gb") << "the instance given is not a 1g.10gb of gpu-mig: " << visible;
  EXPECT_NE(log.find("cuda: 1 device(s)"), std::string::npos) << log;
  auto cuda = LineFields(log, "cuda 0: ");
  EXPECT_EQ(cuda["uuid"], visible) << log;
  EXPECT_EQ(cuda["memory_mib"], "10240") << log;
  EXPECT_NE(log.find("allocate 9216 MiB on device 0: ok"), std::string::npos) << log;
  EXPECT_NE(log.find("allocate 11264 MiB on device 0: refused"), std::string::npos) << log;
  // NVML shows the parent GPU with just this instance.
  EXPECT_EQ(LineFields(log, "nvml 0 mig 0: ")["uuid"], visible) << log;
  EXPECT_EQ(log.find("nvml 0 mig 1: "), std::string::npos) << log;
}

TEST_F(Gpus, SixteenPodsFillTheTimeSlicedReplicasAndTheSeventeenthStaysPending) {
  const std::string base = Unique("fill");
  PodsGuard guard;
  std::vector<std::string>& pods = guard.pods;
  std::string manifests;
  const std::string command =
      "[\"/bin/sh\", \"-c\", \"echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES; exec sleep "
      "600\"]";
  for (int i = 0; i < 17; ++i) {
    pods.push_back(base + "-" + std::to_string(i));
    manifests += "---\n" + GpuPod(pods.back(), "gpu-sliced", "nvidia.com/gpu.shared", command);
  }
  // The first four one at a time: kubelet's GetPreferredAllocation spreads them over the GPUs.
  std::set<std::string> first_four;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(Apply(GpuPod(pods[i], "gpu-sliced", "nvidia.com/gpu.shared", command)));
    ASSERT_TRUE(WaitRunning(pods[i])) << pods[i];
    ASSERT_TRUE(WaitUntil(
        [&] { return Logs(pods[i]).find("NVIDIA_VISIBLE_DEVICES=GPU-") != std::string::npos; },
        60s));
    first_four.insert(Between(Logs(pods[i]), "NVIDIA_VISIBLE_DEVICES=", '\n'));
  }
  EXPECT_EQ(first_four.size(), 4u) << "four sharers should land on four different GPUs";
  ASSERT_TRUE(Apply(manifests));
  std::map<std::string, int> per_gpu;
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(WaitRunning(pods[i], 180s)) << pods[i] << " is " << Phase(pods[i]);
    ASSERT_TRUE(WaitUntil(
        [&] { return Logs(pods[i]).find("NVIDIA_VISIBLE_DEVICES=GPU-") != std::string::npos; },
        60s));
    ++per_gpu[Between(Logs(pods[i]), "NVIDIA_VISIBLE_DEVICES=", '\n')];
  }
  EXPECT_EQ(per_gpu.size(), 4u);
  // The seventeenth: unschedulable, for want of a replica.
  ASSERT_TRUE(WaitUntil(
      [&] {
        json pod = Pod(pods[16]);
        for (const auto& condition : pod["status"].value("conditions", json::array())) {
          if (condition.value("reason", "") == "Unschedulable" &&
              condition.value("message", "").find("nvidia.com/gpu.shared") != std::string::npos) {
            return true;
          }
        }
        return false;
      },
      60s))
      << Pod(pods[16]).dump();
  EXPECT_EQ(Phase(pods[16]), "Pending");
}

TEST_F(Gpus, AFaultTakesTheGpuOutOfAllocatableWithinTenSecondsAndClearingBringsItBack) {
  ASSERT_TRUE(WaitUntil([&] { return Allocatable("gpu-whole", "nvidia.com/gpu") == 4; }, 60s));
  ASSERT_EQ(FakeGpu("gpu-whole", {"fault", "raise", "--gpu", "2", "--xid", "48"}).status, 0);
  const auto raised = std::chrono::steady_clock::now();
  const bool out = WaitUntil([&] { return Allocatable("gpu-whole", "nvidia.com/gpu") == 3; }, 30s);
  const double out_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - raised).count();
  ASSERT_EQ(FakeGpu("gpu-whole", {"fault", "clear", "--gpu", "2"}).status, 0);
  const auto cleared = std::chrono::steady_clock::now();
  const bool back = WaitUntil([&] { return Allocatable("gpu-whole", "nvidia.com/gpu") == 4; }, 30s);
  const double back_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - cleared).count();
  std::printf("health: out of allocatable %.1f s after the fault, back %.1f s after clearing\n",
              out_s, back_s);
  EXPECT_TRUE(out);
  EXPECT_LE(out_s, 10.0);
  EXPECT_TRUE(back);
  EXPECT_LE(back_s, 10.0);
}

TEST_F(Gpus, AKubeletRestartFindsTheAgentRegisteredAgainWithinFiveSecondsAndPodsRunOn) {
  const std::string name = Unique("survivor");
  PodsGuard guard{{name}};
  ASSERT_TRUE(Apply(GpuPod(name, "gpu-whole", "nvidia.com/gpu", "[\"sleep\", \"600\"]")));
  ASSERT_TRUE(WaitRunning(name));
  const std::string dir = DevicePluginDir("gpu-whole");
  // Settled first: an earlier test may have restarted this kubelet or agent moments ago.
  ASSERT_TRUE(
      WaitUntil([&] { return AgentReady("gpu-whole") && Exists(dir + "/tessera-gpu.sock"); }, 60s));
  const auto old_socket = Inode(dir + "/kubelet.sock");
  ASSERT_NE(old_socket.first, 0u);
  const std::string agent_log = Node("gpu-whole")["agent"]["log"].get<std::string>();
  auto registrations = [&] {
    const std::string log = ReadFile(agent_log);
    size_t count = 0;
    for (size_t at = log.find("nvidia.com/gpu: registered with kubelet"); at != std::string::npos;
         at = log.find("nvidia.com/gpu: registered with kubelet", at + 1)) {
      ++count;
    }
    return count;
  };
  const size_t before = registrations();
  ASSERT_EQ(ClusterTool({"restart-kubelet", "gpu-whole"}).status, 0);
  // kubelet made a new socket (and removed ours); the agent serves and registers again.
  ASSERT_TRUE(WaitUntil(
      [&] {
        const auto socket = Inode(dir + "/kubelet.sock");
        return socket.first != 0 && socket != old_socket;
      },
      120s));
  ASSERT_TRUE(WaitUntil([&] { return registrations() > before; }, 30s)) << ReadFile(agent_log);
  // The file times say how long after kubelet's new socket the agent served its own again.
  const auto kubelet_socket = Inode(dir + "/kubelet.sock");
  const auto agent_socket = Inode(dir + "/tessera-gpu.sock");
  ASSERT_NE(agent_socket.first, 0u);
  const double registered_s =
      static_cast<double>(agent_socket.second - kubelet_socket.second) / 1e9;
  std::printf(
      "kubelet restart: the agent served and registered again %.2f s after kubelet's new socket\n",
      registered_s);
  EXPECT_LE(registered_s, 5.0);
  EXPECT_NE(ReadFile(agent_log).find("kubelet restarted"), std::string::npos);
  ASSERT_TRUE(WaitUntil([&] { return Allocatable("gpu-whole", "nvidia.com/gpu") == 4; }, 60s));
  EXPECT_EQ(Phase(name), "Running");
  // And it serves new pods.
  const std::string next = Unique("after-kubelet");
  RunToCompletion(next, GpuPod(next, "gpu-whole", "nvidia.com/gpu", Report()));
  EXPECT_EQ(Phase(name), "Running");
}

TEST_F(Gpus, AKilledAgentDisturbsNoPodAndARestartedOneServesNewPods) {
  const std::string name = Unique("steady");
  PodsGuard guard{{name}};
  ASSERT_TRUE(Apply(GpuPod(name, "gpu-mig", "nvidia.com/mig-2g.20gb",
                           "[\"/bin/sh\", \"-c\", \"echo started; exec sleep 600\"]")));
  ASSERT_TRUE(WaitRunning(name));
  ASSERT_EQ(ClusterTool({"kill-agent", "gpu-mig"}).status, 0);
  ASSERT_EQ(ClusterTool({"start-agent", "gpu-mig"}).status, 0);
  // Ready: registered, and kubelet holds the device lists again.
  ASSERT_TRUE(WaitUntil([&] { return AgentReady("gpu-mig"); }, 60s));
  const std::string next = Unique("after-agent");
  const std::string log =
      RunToCompletion(next, GpuPod(next, "gpu-mig", "nvidia.com/mig-2g.20gb", Report()));
  EXPECT_EQ(LineFields(log, "cuda 0: ")["memory_mib"], "20480") << log;
  EXPECT_EQ(Phase(name), "Running");
  // The restarted agent learnt the running pod's device from kubelet's PodResources API.
  EXPECT_TRUE(WaitUntil(
      [&] { return Metrics("gpu-mig").find("pod=\"" + name + "\"") != std::string::npos; }, 30s));
}

TEST_F(Gpus, EveryAgentsMetricsPassPromtoolAndPrometheusScrapesThemAll) {
  for (const auto& node : State()["nodes"]) {
    const std::string text = Metrics(node["name"]);
    ASSERT_NE(text.find("tessera_gpu_memory_total_bytes"), std::string::npos) << node["name"];
    CommandResult check = RunCommand({"/usr/bin/promtool", "check", "metrics"}, text);
    EXPECT_EQ(check.status, 0) << node["name"] << ": " << check.output;
  }
  const std::string targets_url =
      "http://" + State()["prometheus"]["address"].get<std::string>() + "/api/v1/targets";
  EXPECT_TRUE(WaitUntil(
      [&] {
        json targets =
            json::parse(RunCommand({"/usr/bin/curl", "-sf", targets_url}).output, nullptr, false);
        if (!targets.is_object()) return false;
        std::set<std::string> up;
        for (const auto& target : targets["data"]["activeTargets"]) {
          if (target.value("health", "") == "up") up.insert(target["labels"].value("instance", ""));
        }
        for (const auto& node : State()["nodes"]) {
          if (!up.count(node["metrics_address"].get<std::string>())) return false;
        }
        return true;
      },
      90s))
      << RunCommand({"/usr/bin/curl", "-s", targets_url}).output;
}

TEST_F(Gpus, EachNodesGpuInventoryIsOnItsNodeObject) {
  for (const auto& node : State()["nodes"]) {
    const std::string name = node["name"];
    json annotations;
    ASSERT_TRUE(WaitUntil(
        [&] {
          annotations = NodeObject(name)["metadata"].value("annotations", json::object());
          return annotations.contains("tessera.io/node-gpus") &&
                 annotations.contains("hami.io/node-nvidia-register");
        },
        60s))
        << name;
    json hami = json::parse(annotations["hami.io/node-nvidia-register"].get<std::string>());
    json ours = json::parse(annotations["tessera.io/node-gpus"].get<std::string>());
    ASSERT_EQ(hami.size(), node["gpus"].size()) << name;
    ASSERT_EQ(ours["gpus"].size(), node["gpus"].size()) << name;
    for (size_t i = 0; i < node["gpus"].size(); ++i) {
      const json& want = node["gpus"][i];
      EXPECT_EQ(hami[i]["id"], want["uuid"]) << name;
      EXPECT_EQ(ours["gpus"][i]["uuid"], want["uuid"]) << name;
      EXPECT_EQ(ours["gpus"][i]["mode"], want["mode"]) << name;
      EXPECT_EQ(ours["gpus"][i]["model"], want["model"]) << name;
      if (want["mode"] == "mig") {
        EXPECT_EQ(ours["gpus"][i]["mig"].size(), want["mig"].size()) << name;
      }
      if (want["mode"] == "time-sliced") {
        EXPECT_EQ(ours["gpus"][i]["replicas"], want["replicas"]) << name;
      }
    }
  }
}

}  // namespace
}  // namespace tessera::cluster_test

namespace tessera::cluster_test {
namespace {

using Deploy = ClusterTest;

// deploy/ (kustomize) renders, and the cluster's apiserver accepts every object of it:
// tessera-node, and tessera-scheduler's Deployment, Service, RBAC, certificate Job and webhook.
TEST_F(Deploy, TheKustomizeLayoutRendersAndTheApiServerAcceptsIt) {
  const std::string deploy = std::string(TESSERA_SOURCE_DIR) + "/deploy";
  CommandResult rendered = Kubectl({"kustomize", deploy});
  ASSERT_EQ(rendered.status, 0) << rendered.output;
  for (const char* kind :
       {"kind: DaemonSet\n", "kind: ConfigMap\n", "kind: ClusterRole\n",
        "kind: ClusterRoleBinding\n", "kind: ServiceAccount\n", "kind: Deployment\n",
        "kind: Service\n", "kind: Job\n", "kind: Role\n", "kind: RoleBinding\n",
        "kind: MutatingWebhookConfiguration\n", "prometheus.io/scrape",
        "apiVersion: kubescheduler.config.k8s.io/v1\n"}) {
    EXPECT_NE(rendered.output.find(kind), std::string::npos) << kind;
  }
  // A server-side dry run checks objects in a namespace that exists; make it first.
  Kubectl({"create", "namespace", "tessera-system"});
  CommandResult applied = Kubectl({"apply", "-k", deploy, "--dry-run=server"});
  EXPECT_EQ(applied.status, 0) << applied.output;
  for (const char* object :
       {"daemonset.apps/tessera-node created (server dry run)",
        "deployment.apps/tessera-scheduler created (server dry run)",
        "service/tessera-scheduler created (server dry run)",
        "job.batch/tessera-scheduler-certificate created (server dry run)",
        "serviceaccount/tessera-scheduler created (server dry run)",
        "\nrole.rbac.authorization.k8s.io/tessera-scheduler created (server dry run)",
        "rolebinding.rbac.authorization.k8s.io/tessera-scheduler-authentication-reader created",
        "clusterrolebinding.rbac.authorization.k8s.io/tessera-scheduler-as-kube-scheduler created",
        "configmap/tessera-kube-scheduler-config-",
        // created, or configured where make cluster registered it for the host's scheduler
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/tessera-scheduler "}) {
    EXPECT_NE(applied.output.find(object), std::string::npos) << object << "\n" << applied.output;
  }
}

}  // namespace
}  // namespace tessera::cluster_test
