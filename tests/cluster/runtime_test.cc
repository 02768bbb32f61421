// The local cluster and its container runtime (tessera-cri) seen through Kubernetes: pods run
// their commands as real processes on the nodes, in their own pid and mount namespaces, with
// the mounts, environment and fake GPU a node gives them, and end as Kubernetes expects.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <set>

#include "tests/cluster/cluster_fixture.h"

namespace tessera::cluster_test {
namespace {

std::string NamespaceLink(pid_t pid, const std::string& kind) {
  char target[128] = {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/" + kind;
  ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : "";
}

// Host pids of the processes whose command line contains `marker`.
std::set<pid_t> ProcessesWith(const std::string& marker) {
  std::set<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0 || pid == getpid()) continue;
    std::string cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    bool zombie = paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
    if (!zombie && cmdline.find(marker) != std::string::npos) pids.insert(pid);
  }
  closedir(proc);
  return pids;
}

// The value of `key=` on a line of `text` ("" if absent).
std::string Field(const std::string& text, const std::string& key) {
  size_t at = text.find(key + "=");
  if (at == std::string::npos) return "";
  size_t start = at + key.size() + 1;
  return text.substr(start, text.find('\n', start) - start);
}

using Nodes = ClusterTest;

class Runtime : public ClusterTest {
 protected:
  static void ExpectRestartLeavesRunningContainersAlone(const std::string& command);
};

TEST_F(Nodes, EveryNodeOfTheClusterFileIsReadyWithoutTaints) {
  ASSERT_FALSE(State()["nodes"].empty());
  for (const auto& node : State()["nodes"]) {
    std::string name = node["name"];
    CommandResult result = Kubectl({"get", "node", name, "-o", "json"});
    ASSERT_EQ(result.status, 0) << "no node " << name;
    json object = json::parse(result.output);
    std::string ready;
    for (const auto& condition : object["status"]["conditions"]) {
      if (condition["type"] == "Ready") ready = condition["status"];
    }
    EXPECT_EQ(ready, "True") << name;
    EXPECT_TRUE(!object["spec"].contains("taints") || object["spec"]["taints"].empty())
        << name << " has taints: " << object["spec"]["taints"].dump();
    EXPECT_EQ(object["status"]["nodeInfo"]["containerRuntimeVersion"], "tessera://0.1.0") << name;
  }
}

TEST_F(Runtime, PodThatExitsZeroSucceedsAndItsLogsHoldStdoutAndStderr) {
  std::string pod = Unique("hello");
  ASSERT_TRUE(Apply(PodManifest(pod, "[sh, -c, 'echo hello; echo oops >&2; exit 0']")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded");
  json state = Pod(pod)["status"]["containerStatuses"][0]["state"]["terminated"];
  EXPECT_EQ(state["exitCode"], 0);
  EXPECT_EQ(state["reason"], "Completed");
  std::string logs = Logs(pod);
  EXPECT_NE(logs.find("hello\n"), std::string::npos) << logs;
  EXPECT_NE(logs.find("oops\n"), std::string::npos) << logs;
}

TEST_F(Runtime, PodThatExitsThreeFailsWithExitCodeThree) {
  std::string pod = Unique("exit3");
  ASSERT_TRUE(Apply(PodManifest(pod, "[sh, -c, 'echo failing; exit 3']")));
  ASSERT_EQ(WaitFinished(pod), "Failed");
  json state = Pod(pod)["status"]["containerStatuses"][0]["state"]["terminated"];
  EXPECT_EQ(state["exitCode"], 3);
  EXPECT_EQ(state["reason"], "Error");
  EXPECT_FALSE(state.value("startedAt", "").empty());
  EXPECT_FALSE(state.value("finishedAt", "").empty());
}

TEST_F(Runtime, DeletingALongRunningPodEndsItsProcessesEvenWhenTheyIgnoreSigterm) {
  std::string pod = Unique("sleeper");
  std::string marker = Unique("tessera-marker");
  // The marker is sh's $0, so it is in the command line of the container's shell; the shell
  // ignores SIGTERM, so only the SIGKILL after the grace period (2 s) ends it.
  ASSERT_TRUE(Apply(PodManifest(
      pod,
      "[sh, -c, 'trap \"\" TERM; echo started; while true; do sleep 1; done', " + marker + "]")));
  ASSERT_TRUE(WaitRunning(pod));
  std::set<pid_t> pids;
  ASSERT_TRUE(WaitUntil([&] { return !(pids = ProcessesWith(marker)).empty(); }, 60s))
      << "no process of the pod on the host";
  for (pid_t pid : pids) {
    EXPECT_NE(NamespaceLink(pid, "pid"), NamespaceLink(getpid(), "pid"))
        << "the container's shell runs in the host's pid namespace";
  }
  ASSERT_EQ(KubectlHere({"delete", "pod", pod, "--wait=true", "--timeout=120s"}).status, 0);
  EXPECT_TRUE(WaitUntil([&] { return ProcessesWith(marker).empty(); }, 60s))
      << "the pod's processes outlived it";
  EXPECT_TRUE(Pod(pod).is_null());
}

TEST_F(Runtime, ConfigMapVolumeIsVisibleToTheCommand) {
  std::string pod = Unique("configmap");
  std::string value = Unique("greeting");
  ASSERT_EQ(KubectlHere({"create", "configmap", pod, "--from-literal=greeting=" + value}).status,
            0);
  ASSERT_TRUE(
      Apply(PodManifest(pod, "[sh, -c, 'cat /etc/tessera-test/greeting']",
                        "    volumeMounts: [{name: config, mountPath: /etc/tessera-test}]\n",
                        "  volumes: [{name: config, configMap: {name: " + pod + "}}]\n")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded") << Logs(pod);
  EXPECT_EQ(Logs(pod), value);  // the file has no newline, so neither has the log
  struct stat info {};
  EXPECT_NE(stat("/etc/tessera-test", &info), 0) << "the mount point was created on the host";
}

TEST_F(Runtime, FileBindMountOverEtcLdSoPreloadLeavesTheHostAlone) {
  // The host may have no /etc/ld.so.preload: the runtime must make the mount point without
  // creating the file on the host.
  std::string host_before = ReadFile("/etc/ld.so.preload");
  struct stat info {};
  bool existed = stat("/etc/ld.so.preload", &info) == 0;
  char dir_template[] = "/tmp/tessera-cluster-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string preload = std::string(dir_template) + "/ld.so.preload";
  {
    // A library every process loads anyway: preloading it changes nothing.
    std::ofstream out(preload);
    out << "/lib/x86_64-linux-gnu/libc.so.6\n";
  }
  std::string pod = Unique("preload");
  ASSERT_TRUE(Apply(PodManifest(
      pod, "[sh, -c, 'cat /etc/ld.so.preload']",
      "    volumeMounts: [{name: preload, mountPath: /etc/ld.so.preload, readOnly: true}]\n",
      "  volumes: [{name: preload, hostPath: {path: " + preload + ", type: File}}]\n")));
  EXPECT_EQ(WaitFinished(pod), "Succeeded") << Logs(pod);
  EXPECT_EQ(Logs(pod), "/lib/x86_64-linux-gnu/libc.so.6\n");
  EXPECT_EQ(stat("/etc/ld.so.preload", &info) == 0, existed);
  EXPECT_EQ(ReadFile("/etc/ld.so.preload"), host_before);
  std::remove(preload.c_str());
  rmdir(dir_template);
}

TEST_F(Runtime, ContainerHasItsOwnPidAndMountNamespaces) {
  std::string pod = Unique("namespaces");
  std::string node = State()["nodes"][0]["name"];
  // `$$$$` is `$$` once Kubernetes has expanded the command; the container keeps the host's
  // /proc, so /proc/self/ns shows the namespaces the process is in.
  ASSERT_TRUE(Apply(PodManifest(pod,
                                "[sh, -c, 'echo pid=$$$$; echo pidns=$(readlink "
                                "/proc/self/ns/pid); echo mntns=$(readlink /proc/self/ns/mnt)']",
                                "", "  nodeName: " + node + "\n")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded");
  std::string logs = Logs(pod);
  int pid = std::atoi(Field(logs, "pid").c_str());
  EXPECT_GT(pid, 0) << logs;
  EXPECT_LT(pid, 100) << "the shell's pid is the host's: " << logs;
  pid_t kubelet = Node(node)["kubelet"]["pid"].get<pid_t>();
  std::string kubelet_mnt = NamespaceLink(kubelet, "mnt");
  ASSERT_FALSE(kubelet_mnt.empty());
  EXPECT_NE(Field(logs, "pidns"), NamespaceLink(kubelet, "pid")) << logs;
  EXPECT_NE(Field(logs, "mntns"), kubelet_mnt) << logs;
  EXPECT_NE(Field(logs, "mntns"), NamespaceLink(getpid(), "mnt")) << logs;
  EXPECT_NE(kubelet_mnt, NamespaceLink(getpid(), "mnt")) << "the node has no mount namespace";
}

TEST_F(Runtime, ContainerWithoutAGpuSeesNoneAndTheNodesFakeGpu) {
  std::string pod = Unique("nogpu");
  std::string node = State()["nodes"][0]["name"];
  ASSERT_TRUE(Apply(
      PodManifest(pod,
                  "[sh, -c, 'echo visible=$NVIDIA_VISIBLE_DEVICES; echo libs=$LD_LIBRARY_PATH; "
                  "echo config=$TESSERA_FAKEGPU_CONFIG; echo state=$TESSERA_FAKEGPU_STATE']",
                  "", "  nodeName: " + node + "\n")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded");
  std::string logs = Logs(pod);
  EXPECT_EQ(Field(logs, "visible"), "void") << logs;
  EXPECT_EQ(Field(logs, "libs"), Node(node)["fakegpu_lib_dir"].get<std::string>()) << logs;
  EXPECT_EQ(Field(logs, "config"), Node(node)["fakegpu_config"].get<std::string>()) << logs;
  EXPECT_EQ(Field(logs, "state"), Node(node)["fakegpu_state"].get<std::string>()) << logs;
}

TEST_F(Runtime, ContainersNvidiaVisibleDevicesIsPassedOnUnchanged) {
  std::string pod = Unique("visible");
  ASSERT_TRUE(Apply(PodManifest(pod, "[sh, -c, 'echo visible=$NVIDIA_VISIBLE_DEVICES']",
                                "    env: [{name: NVIDIA_VISIBLE_DEVICES, value: '1,3'}]\n")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded");
  EXPECT_EQ(Field(Logs(pod), "visible"), "1,3");
}

TEST_F(Runtime, GpuContainerGetsTheAgentsDevicesAndVisibleDevices) {
  if (!State().value("agent_enabled", false))
    GTEST_SKIP() << "the cluster runs without tessera-node";
  std::string pod = Unique("gpu");
  ASSERT_TRUE(Apply(PodManifest(
      pod,
      "[sh, -c, 'echo visible=$NVIDIA_VISIBLE_DEVICES; test -c /dev/nvidiactl && echo ctl=yes']",
      "    resources: {limits: {nvidia.com/gpu: 1}}\n")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded") << Logs(pod);
  std::string logs = Logs(pod);
  std::string visible = Field(logs, "visible");
  EXPECT_FALSE(visible.empty()) << logs;
  EXPECT_NE(visible, "void") << logs;
  EXPECT_EQ(Field(logs, "ctl"), "yes") << "the device nodes were not bound: " << logs;
  struct stat info {};
  EXPECT_NE(stat("/dev/nvidiactl", &info), 0) << "a device node appeared on the host";
}

TEST_F(Runtime, ContainerRunsAsTheUserOfItsSecurityContext) {
  std::string pod = Unique("user");
  ASSERT_TRUE(Apply(PodManifest(pod, "[sh, -c, 'echo uid=$(id -u); echo gid=$(id -g)']",
                                "    securityContext: {runAsUser: 1234, runAsGroup: 2345}\n")));
  ASSERT_EQ(WaitFinished(pod), "Succeeded") << Logs(pod);
  EXPECT_EQ(Field(Logs(pod), "uid"), "1234");
  EXPECT_EQ(Field(Logs(pod), "gid"), "2345");
}

TEST_F(Runtime, ContainerWithoutACommandFailsSayingSo) {
  std::string pod = Unique("nocommand");
  ASSERT_TRUE(
      Apply("apiVersion: v1\nkind: Pod\nmetadata: {name: " + pod +
            "}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: main, image: busybox}\n"));
  ASSERT_EQ(WaitFinished(pod), "Failed");
  json state = Pod(pod)["status"]["containerStatuses"][0]["state"]["terminated"];
  EXPECT_EQ(state["reason"], "StartError");
  EXPECT_EQ(state["exitCode"], 128);
  EXPECT_NE(state.value("message", "").find("has no command"), std::string::npos) << state.dump();
  EXPECT_NE(Logs(pod).find("has no command"), std::string::npos);
}

TEST_F(Runtime, SecondPodOfTheSameImageRunsToo) {
  // The fake image service left image id and size empty; kubelet then refused the image the
  // second time ("Id or size of image is not set").
  std::string first = Unique("image-a"), second = Unique("image-b");
  ASSERT_TRUE(Apply(PodManifest(first, "[sh, -c, 'true']")));
  ASSERT_EQ(WaitFinished(first), "Succeeded");
  ASSERT_TRUE(Apply(PodManifest(second, "[sh, -c, 'true']")));
  ASSERT_EQ(WaitFinished(second), "Succeeded");
  std::string image_id = Pod(second)["status"]["containerStatuses"][0]["imageID"];
  EXPECT_EQ(image_id.rfind("sha256:", 0), 0u) << image_id;
}

// Restarts `component` (kubelet or cri) of the last node under a running pod: the pod's
// processes stay, and deleting the pod afterwards still ends them.
void Runtime::ExpectRestartLeavesRunningContainersAlone(const std::string& command) {
  const json& node = State()["nodes"].back();
  std::string pod = Unique("survivor"), marker = Unique("tessera-marker");
  ASSERT_TRUE(Apply(PodManifest(pod, "[sh, -c, 'while true; do sleep 1; done', " + marker + "]", "",
                                "  nodeName: " + node["name"].get<std::string>() + "\n")));
  ASSERT_TRUE(WaitRunning(pod));
  std::set<pid_t> before;
  ASSERT_TRUE(WaitUntil([&] { return !(before = ProcessesWith(marker)).empty(); }, 60s));
  CommandResult restart = ClusterTool({command, node["name"].get<std::string>()});
  ASSERT_EQ(restart.status, 0);
  EXPECT_EQ(ProcessesWith(marker), before) << "the container's processes changed";
  EXPECT_EQ(Phase(pod), "Running");
  ASSERT_EQ(KubectlHere({"delete", "pod", pod, "--wait=true", "--timeout=120s"}).status, 0);
  EXPECT_TRUE(WaitUntil([&] { return ProcessesWith(marker).empty(); }, 60s));
}

TEST_F(Runtime, RestartingAKubeletLeavesItsRunningContainersAlone) {
  ExpectRestartLeavesRunningContainersAlone("restart-kubelet");
}

TEST_F(Runtime, RestartingTheRuntimeLeavesItsContainersRunningAndStoppable) {
  ExpectRestartLeavesRunningContainersAlone("restart-cri");
}

}  // namespace
}  // namespace tessera::cluster_test
