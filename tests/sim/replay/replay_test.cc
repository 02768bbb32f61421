// Pods through the scheduler's webhook, /filter and /bind on a cluster file's nodes: where they
// go, what they are given, why one is not placed; the pods file's forms and errors; the command.
#include "sim/replay/replay.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sim/sim_command.h"

namespace tessera::sim::replay {
namespace {

using nlohmann::json;

constexpr const char* kCluster =
    "nodes:\n"
    "  - name: a100s\n"
    "    gpus: [{model: \"NVIDIA A100-SXM4-80GB\", memory: 80GiB, sms: 108, count: 2, mode: "
    "shared}]\n"
    "  - name: h100s\n"
    "    gpus: [{model: \"NVIDIA H100 80GB HBM3\", memory: 80GiB, sms: 132, count: 2, mode: "
    "shared}]\n"
    "  - name: l4\n"
    "    gpus: [{model: \"NVIDIA L4\", memory: 24GiB, sms: 58, mode: whole}]\n"
    "  - name: sliced\n"
    "    gpus: [{model: \"NVIDIA L4\", memory: 24GiB, sms: 58, mode: time-sliced, replicas: 4}]\n";

// A Pod manifest as a person writes it: `limits` and `annotations` are YAML flow mappings.
std::string Pod(const std::string& name, const std::string& limits,
                const std::string& annotations = "{}") {
  return "- apiVersion: v1\n"
         "  kind: Pod\n"
         "  metadata: {name: " +
         name + ", annotations: " + annotations +
         "}\n"
         "  spec:\n"
         "    containers:\n"
         "      - name: main\n"
         "        image: busybox\n"
         "        command: [/bin/sleep, \"600\"]\n"
         "        resources: {limits: " +
         limits + "}\n";
}

std::vector<PodPlacement> Place(const std::string& pods, const std::string& policy = "binpack",
                                const std::string& cluster = kCluster) {
  Result<std::vector<ClusterNode>> nodes = ParseClusterFile(cluster, "cluster.yaml");
  EXPECT_TRUE(nodes.ok()) << nodes.status().message();
  Result<std::vector<json>> parsed = ParsePods(pods, "pods.yaml");
  EXPECT_TRUE(parsed.ok()) << parsed.status().message();
  if (!nodes.ok() || !parsed.ok()) return {};
  scheduler::StateOptions options;
  options.policy = policy;
  return Replay(*nodes, *parsed, options);
}

TEST(ReplayPlacement, BinpackFillsAGpuBeforeItOpensTheNext) {
  std::vector<PodPlacement> placed =
      Place(Pod("a", "{nvidia.com/gpumem: 30000, nvidia.com/gpucores: 30}") +
            Pod("b", "{nvidia.com/gpumem: 30000, nvidia.com/gpucores: 30}") +
            Pod("c", "{nvidia.com/gpumem: 30000, nvidia.com/gpucores: 30}"));
  ASSERT_EQ(placed.size(), 3u);
  for (const PodPlacement& pod : placed) ASSERT_EQ(pod.gpus.size(), 1u) << pod.reason;
  EXPECT_EQ(placed[1].node, placed[0].node);
  EXPECT_EQ(placed[1].gpus[0].uuid, placed[0].gpus[0].uuid);
  // 3 x 30000 MiB is more than one GPU's 81920: the third opens the node's other GPU.
  EXPECT_EQ(placed[2].node, placed[0].node);
  EXPECT_NE(placed[2].gpus[0].index, placed[0].gpus[0].index);
  EXPECT_EQ(placed[0].gpus[0].memory_mib, 30000);
  EXPECT_EQ(placed[0].gpus[0].cores, 30);
  EXPECT_EQ(placed[0].gpus[0].container, "main");
  EXPECT_EQ(placed[0].namespace_name, "default");
}

TEST(ReplayPlacement, SpreadPutsTheSamePodsOnEmptyGpus) {
  const std::string pods = Pod("a", "{nvidia.com/gpumem: 30000, nvidia.com/gpucores: 30}") +
                           Pod("b", "{nvidia.com/gpumem: 30000, nvidia.com/gpucores: 30}");
  std::vector<PodPlacement> placed = Place(pods, "spread");
  ASSERT_EQ(placed.size(), 2u);
  ASSERT_EQ(placed[1].gpus.size(), 1u) << placed[1].reason;
  EXPECT_NE(placed[1].gpus[0].uuid, placed[0].gpus[0].uuid);
}

TEST(ReplayPlacement, TheWebhooksDefaultsApply) {
  std::vector<PodPlacement> placed =
      Place(Pod("memory-only", "{nvidia.com/gpumem: 4000}") +
            Pod("whole-l4", "{nvidia.com/gpu: 1}", "{nvidia.com/use-gputype: L4}"));
  ASSERT_EQ(placed.size(), 2u);
  ASSERT_EQ(placed[0].gpus.size(), 1u) << placed[0].reason;  // nvidia.com/gpu: 1 added
  EXPECT_EQ(placed[0].gpus[0].cores, 0);                     // no compute limit
  ASSERT_EQ(placed[1].gpus.size(), 1u) << placed[1].reason;
  EXPECT_EQ(placed[1].node, "l4");
  EXPECT_EQ(placed[1].gpus[0].memory_mib, 24576);  // the whole GPU's memory ...
  EXPECT_EQ(placed[1].gpus[0].cores, 100);         // ... and gpucores: 100 added
}

TEST(ReplayPlacement, TypesCountsAndPercentagesAreTheScheduler) {
  std::vector<PodPlacement> placed =
      Place(Pod("h100", "{nvidia.com/gpumem: 10000, nvidia.com/gpucores: 10}",
                "{nvidia.com/use-gputype: H100}") +
            Pod("two", "{nvidia.com/gpu: 2, nvidia.com/gpumem: 8000, nvidia.com/gpucores: 20}") +
            Pod("quarter", "{nvidia.com/gpumem-percentage: 25, nvidia.com/gpucores: 25}"));
  ASSERT_EQ(placed.size(), 3u);
  EXPECT_EQ(placed[0].node, "h100s");
  ASSERT_EQ(placed[1].gpus.size(), 2u) << placed[1].reason;
  EXPECT_NE(placed[1].gpus[0].index, placed[1].gpus[1].index);
  EXPECT_EQ(placed[1].gpus[1].memory_mib, 8000);
  ASSERT_EQ(placed[2].gpus.size(), 1u) << placed[2].reason;
  EXPECT_EQ(placed[2].gpus[0].memory_mib, 81920 / 4);
}

TEST(ReplayPlacement, APodThatFitsNowhereStaysPendingAndTheNextIsPlaced) {
  std::vector<PodPlacement> placed =
      Place(Pod("huge", "{nvidia.com/gpumem: 90000}") + Pod("small", "{nvidia.com/gpumem: 1000}"));
  ASSERT_EQ(placed.size(), 2u);
  EXPECT_TRUE(placed[0].node.empty());
  EXPECT_TRUE(placed[0].gpus.empty());
  EXPECT_EQ(placed[0].reason.rfind("pending: ", 0), 0u) << placed[0].reason;
  EXPECT_NE(placed[0].reason.find("a100s: "), std::string::npos) << placed[0].reason;
  EXPECT_NE(placed[0].reason.find("sliced: node has no Tessera GPUs"), std::string::npos)
      << placed[0].reason;
  EXPECT_EQ(placed[1].gpus.size(), 1u) << placed[1].reason;
}

TEST(ReplayPlacement, TheWebhooksRefusalAndAPodWithoutGpusAreReported) {
  std::vector<PodPlacement> placed =
      Place(Pod("greedy", "{nvidia.com/gpumem: 1000, nvidia.com/gpucores: 150}") +
            Pod("cpu", "{cpu: 1}"));
  ASSERT_EQ(placed.size(), 2u);
  EXPECT_EQ(placed[0].reason.rfind("refused by the webhook: ", 0), 0u) << placed[0].reason;
  EXPECT_NE(placed[0].reason.find("nvidia.com/gpucores"), std::string::npos) << placed[0].reason;
  EXPECT_EQ(placed[1].reason.rfind("asks for no GPU", 0), 0u) << placed[1].reason;
}

TEST(ReplayPlacement, TheOrderOfTheClusterFilesNodesChangesNoPlacement) {
  const std::string reversed =
      "nodes:\n"
      "  - name: sliced\n"
      "    gpus: [{model: \"NVIDIA L4\", memory: 24GiB, sms: 58, mode: time-sliced, replicas: "
      "4}]\n"
      "  - name: l4\n"
      "    gpus: [{model: \"NVIDIA L4\", memory: 24GiB, sms: 58, mode: whole}]\n"
      "  - name: h100s\n"
      "    gpus: [{model: \"NVIDIA H100 80GB HBM3\", memory: 80GiB, sms: 132, count: 2, mode: "
      "shared}]\n"
      "  - name: a100s\n"
      "    gpus: [{model: \"NVIDIA A100-SXM4-80GB\", memory: 80GiB, sms: 108, count: 2, mode: "
      "shared}]\n";
  std::string pods;
  for (int i = 0; i < 8; ++i) {
    pods +=
        Pod("p" + std::to_string(i), "{nvidia.com/gpumem: " + std::to_string(9000 * (i + 1)) +
                                         ", nvidia.com/gpucores: " + std::to_string(5 * i) + "}");
  }
  for (const std::string policy : {"binpack", "spread"}) {
    EXPECT_EQ(FormatJson(Place(pods, policy)), FormatJson(Place(pods, policy, reversed))) << policy;
  }
}

TEST(ReplayPlacement, TheTableHasOneRowPerGpuAndTheJsonOneObject) {
  std::vector<PodPlacement> placed = Place(
      Pod("two", "{nvidia.com/gpu: 2, nvidia.com/gpumem: 8000}", "{nvidia.com/use-gputype: A100}") +
      Pod("huge", "{nvidia.com/gpumem: 90000}"));
  const std::string table = FormatTable(placed);
  EXPECT_EQ(table.rfind("POD           CONTAINER  NODE   GPU  UUID", 0), 0u) << table;
  EXPECT_NE(table.find("default/two   main       a100s  0    " + placed[0].gpus[0].uuid +
                       "  8000        0\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("default/huge  -          -      pending: "), std::string::npos) << table;

  const json document = json::parse(FormatJson(placed));
  ASSERT_EQ(document["pods"].size(), 2u);
  EXPECT_EQ(document["pods"][0]["node"], "a100s");
  EXPECT_EQ(document["pods"][0]["gpus"][1]["memoryMiB"], 8000);
  EXPECT_TRUE(document["pods"][1]["node"].is_null());
  EXPECT_EQ(document["pods"][1]["reason"].get<std::string>().rfind("pending: ", 0), 0u);
}

TEST(ReplayPods, AListAStreamAKubectlListAndJsonAreTheSamePods) {
  const std::string list = Pod("a", "{nvidia.com/gpumem: 3000}") + Pod("b", "{nvidia.com/gpu: 1}");
  Result<std::vector<json>> from_list = ParsePods(list, "pods.yaml");
  ASSERT_TRUE(from_list.ok()) << from_list.status().message();
  ASSERT_EQ(from_list->size(), 2u);
  const json first = (*from_list)[0];
  const json second = (*from_list)[1];

  Result<std::vector<json>> from_stream =
      ParsePods("---\n" + first.dump() + "\n---\n" + second.dump() + "\n", "pods.yaml");
  ASSERT_TRUE(from_stream.ok()) << from_stream.status().message();
  EXPECT_EQ(*from_stream, *from_list);

  const json kubectl_list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", {first, second}}};
  Result<std::vector<json>> from_kubectl = ParsePods(kubectl_list.dump(), "pods.json");
  ASSERT_TRUE(from_kubectl.ok()) << from_kubectl.status().message();
  EXPECT_EQ(*from_kubectl, *from_list);

  // Types as kubectl gives them: plain numbers and booleans keep theirs, quoted text is text.
  EXPECT_EQ(first["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpumem"], 3000);
  EXPECT_EQ(first["spec"]["containers"][0]["command"][1], "600");
  Result<std::vector<json>> typed =
      ParsePods("- {metadata: {name: t}, spec: {x: true, y: 1.5, z: ~, w: 'true'}}", "pods.yaml");
  ASSERT_TRUE(typed.ok()) << typed.status().message();
  EXPECT_EQ((*typed)[0]["spec"], json::parse(R"({"x":true,"y":1.5,"z":null,"w":"true"})"));
}

struct BadPods {
  const char* text;
  const char* message;  // what the error says, after "pods.yaml"
};

class ReplayPodsErrors : public ::testing::TestWithParam<BadPods> {};

TEST_P(ReplayPodsErrors, NameTheFileTheLineAndTheField) {
  Result<std::vector<json>> pods = ParsePods(GetParam().text, "pods.yaml");
  ASSERT_FALSE(pods.ok());
  EXPECT_EQ(pods.status().message().rfind("pods.yaml", 0), 0u) << pods.status().message();
  EXPECT_NE(pods.status().message().find(GetParam().message), std::string::npos)
      << pods.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ReplayPodsErrors,
    ::testing::Values(
        BadPods{"- {metadata: {name: a}\n", "not valid YAML"}, BadPods{"", ": no pods"},
        BadPods{"- {metadata: {name: a}}\n- {metadata: {namespace: x}}\n",
                ":2: [1].metadata.name: missing"},
        BadPods{"- {kind: Deployment, metadata: {name: a}}\n",
                ":1: [0].kind: \"Deployment\" is not Pod"},
        BadPods{"- {metadata: {name: 7}}\n", ":1: [0].metadata.name: 7 is not a name"},
        BadPods{"- {spec: {}}\n", ":1: [0].metadata: missing"},
        BadPods{"- just a string\n", ":1: [0]: not a Pod"},
        BadPods{"- {metadata: {name: a}}\n- {metadata: {name: a, namespace: default}}\n",
                ":2: [1].metadata.name: pod default/a appears twice"},
        BadPods{"{kind: List, items: 3}\n", ":1: items: a List needs a list of pods"},
        BadPods{"- {metadata: {name: a, ? [x] : y}}\n", ": [0].metadata: a key is not a scalar"}));

// The command, with its files in a folder removed afterwards.
class ReplayCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tessera_replay_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    Write("cluster.yaml", kCluster);
    Write("pods.yaml", Pod("a", "{nvidia.com/gpumem: 3000, nvidia.com/gpucores: 10}"));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), "replay");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return RunReplayCommand(static_cast<int>(argv.size()), argv.data());
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

TEST_F(ReplayCommand, HelpSucceedsAndNamesTheFlags) {
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(Run({"--help"}), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  for (const char* flag :
       {"--cluster", "--pods", "--policy", "--seed", "--json", "tessera-online"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag << " in\n" << out;
  }
}

TEST_F(ReplayCommand, PrintsTheJsonPlacements) {
  ::testing::internal::CaptureStdout();
  const int rc = Run({"--cluster", Path("cluster.yaml"), "--pods", Path("pods.yaml"), "--json"});
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0);
  const json document = json::parse(out);
  EXPECT_EQ(document["pods"][0]["name"], "a");
  EXPECT_EQ(document["pods"][0]["gpus"][0]["memoryMiB"], 3000);
  EXPECT_EQ(document["pods"][0]["gpus"][0]["cores"], 10);
}

TEST_F(ReplayCommand, UsageErrorsExitWithTwoAndBadFilesWithOne) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Run({"--cluster", Path("cluster.yaml")}), 2);
  EXPECT_EQ(
      Run({"--cluster", Path("cluster.yaml"), "--pods", Path("pods.yaml"), "--policy", "firstfit"}),
      2);
  const std::string bad = Write("bad.yaml", "nodes:\n  - name: a\n    gpus: [{model: X}]\n");
  EXPECT_EQ(Run({"--cluster", bad, "--pods", Path("pods.yaml")}), 1);
  EXPECT_EQ(Run({"--cluster", Path("cluster.yaml"), "--pods", Path("missing.yaml")}), 1);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("--pods is required"), std::string::npos) << err;
  EXPECT_NE(err.find("firstfit"), std::string::npos) << err;
  EXPECT_NE(err.find(bad + ":3: nodes[0].gpus[0].memory: needs a size"), std::string::npos) << err;
  EXPECT_NE(err.find(Path("missing.yaml") + ": cannot read the pods file"), std::string::npos)
      << err;
}

}  // namespace
}  // namespace tessera::sim::replay
