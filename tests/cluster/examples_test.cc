// HAMi's pod examples (tests/k8s/*.yaml) through tessera-scheduler and tessera-node on the real
// cluster: each pod's CUDA program sees exactly the GPUs, the card type and the memory limit it
// asked for, and is refused just past the limit. Also: what the webhook denies, with its message.
#include <dirent.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "tests/cluster/cluster_fixture.h"

namespace tessera::cluster_test {
namespace {

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::vector<std::string> ExampleFiles() {
  std::vector<std::string> files;
  const std::string dir = std::string(TESSERA_SOURCE_DIR) + "/tests/k8s";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* entry = readdir(d)) {
      std::string name = entry->d_name;
      if (name.size() > 5 && name.substr(name.size() - 5) == ".yaml")
        files.push_back(dir + "/" + name);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The value of `key: "value"` in a manifest's text (the test annotations are one per line).
std::string Annotation(const std::string& manifest, const std::string& key) {
  const size_t at = manifest.find(key + ": \"");
  if (at == std::string::npos) return "";
  const size_t from = at + key.size() + 3;
  return manifest.substr(from, manifest.find('"', from) - from);
}

class Examples : public ClusterTest {
 protected:
  // kubectl apply of `manifest` in the test's namespace, with the apiserver's answer (stderr).
  static CommandResult ApplyWithErrors(const std::string& manifest) {
    return RunCommand(
        {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", State()["kubectl"].get<std::string>(),
         "--kubeconfig", State()["kubeconfig"].get<std::string>(), "--namespace", Namespace(),
         "apply", "-f", "-"},
        manifest);
  }

  static std::string SharedGpu(const std::string& node, int index) {
    return Node(node)["gpus"][static_cast<size_t>(index)]["uuid"].get<std::string>();
  }
};

TEST_F(Examples, EachHamiExampleSeesItsGpusTypeAndExactlyItsLimit) {
  std::vector<std::string> files = ExampleFiles();
  ASSERT_GE(files.size(), 9u);
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    std::string manifest = ReadFile(file);
    manifest = Replace(manifest, "__GPU_UUID__", SharedGpu("gpu-shared-1", 2));
    const long long limit = std::stoll(Annotation(manifest, "test.tessera.io/expect-memory-mib"));
    const int gpus = std::stoi(Annotation(manifest, "test.tessera.io/expect-gpus"));
    const std::string report = TESSERA_GPU_REPORT;
    // Past the limit by 1 MiB (must be refused), then well within it (must be given).
    const std::string command = "[\"/bin/sh\", \"-c\", \"" + report + " --allocate " +
                                std::to_string(limit + 1) + "; " + report + " --allocate " +
                                std::to_string(WithinLimitMiB(limit)) + "\"]";
    manifest = Replace(manifest, "__COMMAND__", command);
    const std::string name = Unique("example");
    manifest = Replace(manifest, "name: gpu-pod", "name: " + name);
    ASSERT_TRUE(Apply(manifest));
    ASSERT_EQ(WaitFinished(name), "Succeeded") << Logs(name);
    const std::string logs = Logs(name);
    const json pod = Pod(name);
    KubectlHere({"delete", "pod", name, "--wait=false"});

    std::istringstream lines(logs);
    std::string line;
    int cuda_devices = 0;
    while (std::getline(lines, line)) {
      if (line.rfind("cuda ", 0) != 0 || line.find("uuid=") == std::string::npos) continue;
      ++cuda_devices;
      EXPECT_NE(line.find("memory_mib=" + std::to_string(limit) + " "), std::string::npos) << line;
      const std::string model = Annotation(manifest, "test.tessera.io/expect-model");
      if (!model.empty()) {
        EXPECT_NE(line.find("name=\"" + model + "\""), std::string::npos) << line;
      }
      const std::string uuid = Annotation(manifest, "test.tessera.io/expect-uuid");
      if (!uuid.empty()) {
        EXPECT_NE(line.find("uuid=" + uuid + " "), std::string::npos) << line;
      }
    }
    // Each of the two runs lists the devices.
    EXPECT_EQ(cuda_devices, 2 * gpus) << logs;
    EXPECT_EQ(logs.find("allocate " + std::to_string(limit + 1) + " MiB on device 0: ok"),
              std::string::npos)
        << logs;
    EXPECT_NE(
        logs.find("allocate " + std::to_string(WithinLimitMiB(limit)) + " MiB on device 0: ok"),
        std::string::npos)
        << logs;
    EXPECT_EQ(pod["spec"].value("schedulerName", ""), "tessera-scheduler");
    if (Annotation(manifest, "test.tessera.io/expect-one-numa") == "true") {
      // Every granted GPU on the NUMA node of the first.
      const json& node = Node(pod["spec"].value("nodeName", ""));
      const json allocation =
          json::parse(pod["metadata"]["annotations"].value("tessera.io/allocation", "{}"));
      std::set<int> numa_nodes;
      for (const json& container : allocation.value("containers", json::array())) {
        for (const json& grant : container.value("gpus", json::array())) {
          for (const json& gpu : node["gpus"]) {
            if (gpu["uuid"] == grant.value("uuid", "")) {
              numa_nodes.insert(gpu["numa"].is_number() ? gpu["numa"].get<int>() : 0);
            }
          }
        }
      }
      EXPECT_EQ(numa_nodes.size(), 1u) << pod["metadata"]["annotations"].dump();
    }
  }
}

TEST_F(Examples, TheWebhookDeniesBadSpecsNamingTheFieldAndTheValue) {
  struct Case {
    std::string limits;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"nvidia.com/gpu: 1, nvidia.com/gpumem: -5", "-5"},
      {"nvidia.com/gpu: 1, nvidia.com/gpucores: 150", "150"},
      {"nvidia.com/gpu: 1, nvidia.com/gpumem-percentage: 0", "gpumem-percentage"},
      {"nvidia.com/gpu: 1, nvidia.com/gpumem: 100, nvidia.com/gpumem-percentage: 10", "gpumem"},
      {"nvidia.com/gpu: 9", "9"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.limits);
    const std::string name = Unique("denied");
    CommandResult result = ApplyWithErrors(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
        "}\nspec:\n  containers:\n  - name: main\n    image: x\n    command: [\"true\"]\n"
        "    resources: {limits: {" +
        c.limits + "}}\n");
    EXPECT_NE(result.status, 0) << result.output;
    EXPECT_NE(result.output.find("denied"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(c.expected), std::string::npos) << result.output;
  }
  // A GPU pod with one more line in its metadata or its container, denied with `expected`.
  struct Extra {
    std::string metadata;
    std::string container;
    std::string expected;
  };
  for (const Extra& e :
       std::vector<Extra>{{"", "    securityContext: {privileged: true}\n", "privileged"},
                          {"", "    securityContext: {capabilities: {add: [SYS_ADMIN]}}\n",
                           "capabilities.add: SYS_ADMIN"},
                          {", annotations: {nvidia.com/numa-bind: \"maybe\"}", "", "maybe"}}) {
    SCOPED_TRACE(e.expected);
    CommandResult result = ApplyWithErrors(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: " + Unique("denied") + e.metadata +
        "}\nspec:\n  containers:\n  - name: main\n    image: x\n    command: [\"true\"]\n" +
        e.container + "    resources: {limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: 100}}\n");
    EXPECT_NE(result.status, 0) << result.output;
    EXPECT_NE(result.output.find(e.expected), std::string::npos) << result.output;
  }
}

}  // namespace
}  // namespace tessera::cluster_test
