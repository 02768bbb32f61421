// One engine: a short arrival sequence of fractional-GPU pods, created one at a time in the
// cluster, and the same pod specs through `tessera sim replay` on the cluster's file are placed
// the same: node, GPU, memory limit and compute share, pod by pod.
//
// Other tests share the cluster, so the sequence starts only once no other pod holds a GPU of
// gpu-shared-* (and the scheduler's ledger agrees), and it starts again if another pod takes one
// on the way.
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "kube/pod_allocation.h"
#include "scheduler/state.h"
#include "sim/replay/cluster_file.h"
#include "tests/cluster/cluster_fixture.h"

namespace tessera::cluster_test {
namespace {

constexpr char kClusterFile[] = TESSERA_SOURCE_DIR "/deploy/dev-cluster/cluster.yaml";
constexpr char kSharedNodePrefix[] = "gpu-shared-";

// One pod of the sequence: its name's stem, resources.limits and annotations (YAML flow maps).
struct Arrival {
  const char* name;
  const char* limits;
  const char* annotations;
};

constexpr Arrival kArrivals[] = {
    {"a", "{nvidia.com/gpumem: 20000, nvidia.com/gpucores: 30}", "{}"},
    {"b", "{nvidia.com/gpumem: 10000, nvidia.com/gpucores: 20}", "{}"},
    {"c", "{nvidia.com/gpumem-percentage: 25, nvidia.com/gpucores: 25}", "{}"},
    {"d", "{nvidia.com/gpumem: 30000, nvidia.com/gpucores: 50}", "{nvidia.com/use-gputype: H100}"},
    {"e", "{nvidia.com/gpu: 2, nvidia.com/gpumem: 8000, nvidia.com/gpucores: 10}", "{}"},
    {"f", "{nvidia.com/gpumem: 40000}", "{}"},
    {"g", "{nvidia.com/gpumem: 60000, nvidia.com/gpucores: 40}", "{}"},
    {"h", "{nvidia.com/gpumem: 16000, nvidia.com/gpucores: 60}", "{nvidia.com/use-gputype: H100}"},
    {"i", "{nvidia.com/gpumem-percentage: 50}", "{}"},
    {"j", "{nvidia.com/gpumem: 5000, nvidia.com/gpucores: 5}", "{nvidia.com/nouse-gputype: H100}"},
    {"k", "{nvidia.com/gpumem: 70000, nvidia.com/gpucores: 70}", "{}"},
    {"l", "{nvidia.com/gpu: 1, nvidia.com/gpumem: 12000, nvidia.com/gpucores: 15}", "{}"},
};

// One GPU a pod was given.
struct Placement {
  std::string node;
  int index = -1;
  std::string uuid;
  int64_t memory_mib = 0;
  int32_t cores = 0;
  bool operator==(const Placement&) const = default;
};

void PrintTo(const Placement& p, std::ostream* out) {
  *out << p.node << " GPU " << p.index << " (" << p.uuid << ") " << p.memory_mib << " MiB "
       << p.cores << " %";
}

std::string Manifest(const std::string& name, const Arrival& arrival) {
  return std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: ") + name +
         "\n  annotations: " + arrival.annotations +
         "\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 2\n  containers:\n"
         "  - name: main\n    image: busybox\n    command: [/bin/sleep, \"600\"]\n"
         "    resources:\n      limits: " +
         arrival.limits + "\n";
}

using NodeModels = std::map<std::string, std::vector<scheduler::NodeGpu>>;

// The scheduler's reading of Node objects that carry Tessera GPUs.
NodeModels SchedulerView(const std::vector<json>& nodes) {
  NodeModels models;
  for (const json& node : nodes) {
    Result<std::optional<scheduler::NodeGpus>> gpus = scheduler::ReadNodeGpus(node);
    if (gpus.ok() && gpus->has_value() && !(*gpus)->gpus.empty()) {
      models[(*gpus)->name] = (*gpus)->gpus;
    }
  }
  return models;
}

class SimReplay : public ClusterTest {
 protected:
  void TearDown() override {
    for (const std::string& name : created_) {
      KubectlHere({"delete", "pod", name, "--wait=false", "--ignore-not-found"});
    }
  }

  // The nodes as tessera-scheduler sees them in the cluster (health included).
  static NodeModels LiveNodes() {
    const json list = json::parse(Kubectl({"get", "nodes", "-o", "json"}).output, nullptr, false);
    if (!list.is_object()) return {};
    return SchedulerView(list.value("items", std::vector<json>()));
  }

  // The pods other than `ours` that hold GPUs of gpu-shared-*, as "namespace/name on node".
  static std::string OtherHolders(const std::set<std::string>& ours) {
    const json list = json::parse(Kubectl({"get", "pods", "--all-namespaces", "-o", "json"}).output,
                                  nullptr, false);
    if (!list.is_object()) return "pods not listed";
    std::string holders;
    for (const json& pod : list.value("items", std::vector<json>())) {
      const json& meta = pod["metadata"];
      const std::string phase = pod["status"].value("phase", "");
      const json annotations = meta.value("annotations", json::object());
      if (phase == "Succeeded" || phase == "Failed" || ours.count(meta.value("name", "")) > 0 ||
          !annotations.contains(kube::kAllocationAnnotation)) {
        continue;
      }
      Result<kube::PodAllocation> allocation =
          kube::DecodePodAllocation(annotations[kube::kAllocationAnnotation].get<std::string>());
      if (allocation.ok() && allocation->node.rfind(kSharedNodePrefix, 0) == 0) {
        holders += meta.value("namespace", "") + "/" + meta.value("name", "") + " on " +
                   allocation->node + "; ";
      }
    }
    return holders;
  }

  // What tessera-scheduler's leader has charged on gpu-shared-* (reservations included), from
  // its /metrics; "" when nothing.
  static std::string LedgerCharges() {
    for (const json& replica : State().value("tessera_schedulers", std::vector<json>())) {
      if (!replica.is_object()) continue;
      const std::string metrics =
          RunCommand({"/usr/bin/curl", "-sf",
                      "http://" + replica.value("metrics_address", "") + "/metrics"})
              .output;
      if (metrics.find("\ntessera_scheduler_leader 1\n") == std::string::npos) continue;
      std::string charged;
      std::istringstream lines(metrics);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("tessera_scheduler_gpu_memory_bytes{node=\"gpu-shared-", 0) == 0 &&
            line.find("kind=\"allocated\"") != std::string::npos &&
            line.substr(line.rfind(' ') + 1) != "0") {
          charged += line + "; ";
        }
      }
      return charged;
    }
    return "no tessera-scheduler replica leads";
  }

  // Why the sequence cannot start now ("" when it can).
  static std::string Busy(const NodeModels& expected) {
    if (std::string holders = OtherHolders({}); !holders.empty()) return "held by " + holders;
    if (std::string charged = LedgerCharges(); !charged.empty()) return "ledger: " + charged;
    if (LiveNodes() != expected) return "the Nodes' GPUs (or their health) differ from the file";
    return "";
  }

  // The GPUs the pod's tessera.io/allocation names, each located through state.json.
  static std::vector<Placement> LivePlacement(const json& pod) {
    const json annotations = pod["metadata"].value("annotations", json::object());
    Result<kube::PodAllocation> allocation =
        kube::DecodePodAllocation(annotations.value(kube::kAllocationAnnotation, std::string()));
    EXPECT_TRUE(allocation.ok()) << pod.dump();
    std::vector<Placement> placements;
    if (!allocation.ok()) return placements;
    for (const kube::ContainerGrant& container : allocation->containers) {
      for (const kube::GpuGrant& grant : container.gpus) {
        Placement placement{"?", -1, grant.uuid, grant.memory_mib, grant.cores};
        for (const json& node : State()["nodes"]) {
          for (const json& gpu : node["gpus"]) {
            if (gpu["uuid"] == grant.uuid) {
              placement.node = node["name"].get<std::string>();
              placement.index = gpu["index"].get<int>();
            }
          }
        }
        EXPECT_EQ(placement.node, allocation->node) << grant.uuid;
        placements.push_back(placement);
      }
    }
    return placements;
  }

  std::vector<std::string> created_;
};

TEST_F(SimReplay, TheClusterPlacesEachPodWhereTesseraSimReplayDoes) {
  if (State().value("cluster_file", "") != kClusterFile) {
    GTEST_SKIP() << "the cluster runs " << State().value("cluster_file", "")
                 << "; the sequence is written for " << kClusterFile;
  }
  Result<std::vector<sim::replay::ClusterNode>> file = sim::replay::LoadClusterFile(kClusterFile);
  ASSERT_TRUE(file.ok()) << file.status().message();
  std::vector<json> file_nodes;
  for (const auto& node : *file) file_nodes.push_back(sim::replay::NodeObject(node));
  const NodeModels expected = SchedulerView(file_nodes);
  ASSERT_EQ(expected.count("gpu-shared-0"), 1u);

  std::vector<std::string> manifests;
  std::vector<std::string> names;
  std::vector<std::vector<Placement>> live;
  for (int attempt = 1;; ++attempt) {
    std::string busy;
    ASSERT_TRUE(WaitUntil(
        [&] {
          busy = Busy(expected);
          return busy.empty();
        },
        180s))
        << "gpu-shared-* did not become free: " << busy;
    manifests.clear();
    names.clear();
    live.clear();
    std::string interference;
    for (const Arrival& arrival : kArrivals) {
      names.push_back(Unique(std::string("replay-") + arrival.name));
      manifests.push_back(Manifest(names.back(), arrival));
      ASSERT_TRUE(Apply(manifests.back())) << manifests.back();
      created_.push_back(names.back());
      json pod;
      ASSERT_TRUE(WaitUntil(
          [&] {
            pod = Pod(names.back());
            return pod.is_object() && !pod["spec"].value("nodeName", "").empty();
          },
          60s))
          << names.back() << " was not bound: " << pod.dump();
      live.push_back(LivePlacement(pod));
      interference = OtherHolders(std::set<std::string>(names.begin(), names.end()));
      if (!interference.empty()) break;
    }
    if (interference.empty()) break;
    for (const std::string& name : names) {
      KubectlHere({"delete", "pod", name, "--wait=false", "--ignore-not-found"});
    }
    ASSERT_LT(attempt, 3) << "other pods took gpu-shared GPUs in every attempt: " << interference;
  }

  // The same specs, in the same order, through the replay.
  char pods_path[] = "/tmp/tessera-replay-pods-XXXXXX";
  const int fd = mkstemp(pods_path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::string stream;
  for (const std::string& manifest : manifests) stream += "---\n" + manifest;
  std::ofstream(pods_path) << stream;
  const CommandResult replayed = RunCommand(
      {TESSERA_CLI, "sim", "replay", "--cluster", kClusterFile, "--pods", pods_path, "--json"});
  unlink(pods_path);
  ASSERT_EQ(replayed.status, 0) << replayed.output;
  const json document = json::parse(replayed.output, nullptr, false);
  ASSERT_TRUE(document.is_object()) << replayed.output;
  ASSERT_EQ(document["pods"].size(), names.size()) << replayed.output;

  std::set<std::string> nodes_used;
  for (size_t i = 0; i < names.size(); ++i) {
    const json& pod = document["pods"][i];
    EXPECT_EQ(pod["name"], names[i]);
    std::vector<Placement> expected_placement;
    for (const json& gpu : pod["gpus"]) {
      expected_placement.push_back({pod["node"].get<std::string>(), gpu["index"].get<int>(),
                                    gpu["uuid"].get<std::string>(), gpu["memoryMiB"].get<int64_t>(),
                                    gpu["cores"].get<int32_t>()});
    }
    EXPECT_EQ(live[i], expected_placement) << names[i] << ": the cluster (left) and the replay "
                                           << "(right); replay says " << pod.dump();
    if (!live[i].empty()) nodes_used.insert(live[i][0].node);
  }
  // The sequence is one that exercises a choice: both shared nodes, several GPUs.
  EXPECT_EQ(nodes_used, (std::set<std::string>{"gpu-shared-0", "gpu-shared-1"}));
}

}  // namespace
}  // namespace tessera::cluster_test
