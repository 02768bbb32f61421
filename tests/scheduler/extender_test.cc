// The extender's verbs and the ledger behind them, on JSON as kube-scheduler sends it, with a
// binder that records what would go to the API server.
#include "scheduler/extender.h"

#include <gtest/gtest.h>

#include "kube/pod_allocation.h"

namespace tessera::scheduler {
namespace {

using nlohmann::json;

json Node(const std::string& name, int gpus, int64_t memory_mib, const std::string& mode = "shared",
          int replicas = 32, const std::string& model = "NVIDIA A100-SXM4-80GB") {
  json list = json::array();
  for (int i = 0; i < gpus; ++i) {
    list.push_back({{"index", i},
                    {"uuid", "GPU-" + name + "-" + std::to_string(i)},
                    {"model", model},
                    {"memoryMiB", memory_mib},
                    {"numa", 0},
                    {"mode", mode},
                    {"replicas", replicas},
                    {"healthy", true}});
  }
  json doc = {{"version", 1}, {"gpus", list}};
  return {{"metadata", {{"name", name}, {"annotations", {{kNodeGpusAnnotation, doc.dump()}}}}}};
}

json Pod(const std::string& name, json limits, json annotations = json::object()) {
  return {{"metadata",
           {{"name", name},
            {"namespace", "default"},
            {"uid", "uid-" + name},
            {"annotations", annotations}}},
          {"spec", {{"containers", {{{"name", "main"}, {"resources", {{"limits", limits}}}}}}}},
          {"status", {{"phase", "Pending"}}}};
}

class RecordingBinder : public Binder {
 public:
  Status Bind(const std::string& ns, const std::string& name, const std::string&,
              const std::string& node,
              const std::map<std::string, std::string>& annotations) override {
    if (fail) return Status::Error("binding refused");
    bound[ns + "/" + name] = {node, annotations};
    return Status::Ok();
  }
  Result<json> GetPod(const std::string&, const std::string& name) override {
    auto it = pods.find(name);
    if (it == pods.end()) return Status::Error("pods \"" + name + "\" not found");
    return it->second;
  }
  std::map<std::string, std::pair<std::string, std::map<std::string, std::string>>> bound;
  std::map<std::string, json> pods;
  bool fail = false;
};

class ExtenderTest : public ::testing::Test {
 protected:
  ExtenderTest() : state_(StateOptions{}), extender_(state_, binder_) {}

  json Filter(const json& pod, std::vector<std::string> nodes) {
    HttpAnswer answer =
        extender_.Filter(json{{"Pod", pod}, {"Nodes", nullptr}, {"NodeNames", nodes}}.dump());
    EXPECT_EQ(answer.status, 200) << answer.body;
    return json::parse(answer.body);
  }
  std::string BindPod(const json& pod, const std::string& node) {
    HttpAnswer answer = extender_.Bind(json{
        {"PodName", pod["metadata"]["name"]},
        {"PodNamespace", "default"},
        {"PodUID", pod["metadata"]["uid"]},
        {"Node", node}}.dump());
    EXPECT_EQ(answer.status, 200);
    return json::parse(answer.body).value("Error", "?");
  }
  // Schedules `pod` as kube-scheduler would, and has the watch report it bound.
  std::string Schedule(json pod, std::vector<std::string> nodes) {
    json result = Filter(pod, nodes);
    if (result["NodeNames"].empty()) return "";
    std::string node = result["NodeNames"][0];
    EXPECT_EQ(BindPod(pod, node), "");
    pod["spec"]["nodeName"] = node;
    pod["metadata"]["annotations"][kube::kAllocationAnnotation] =
        binder_.bound["default/" + pod["metadata"]["name"].get<std::string>()]
            .second[kube::kAllocationAnnotation];
    state_.UpsertPod(pod);
    return node;
  }
  kube::PodAllocation AllocationOf(const std::string& name) {
    auto decoded = kube::DecodePodAllocation(
        binder_.bound["default/" + name].second[kube::kAllocationAnnotation]);
    EXPECT_TRUE(decoded.ok());
    return decoded.ok() ? *decoded : kube::PodAllocation{};
  }

  State state_;
  RecordingBinder binder_;
  Extender extender_;
};

TEST_F(ExtenderTest, FilterChoosesOneNodeAndBindCarriesTheLimits) {
  state_.UpsertNode(Node("a", 2, 81920));
  json pod =
      Pod("p", {{"nvidia.com/gpu", 1}, {"nvidia.com/gpumem", 3000}, {"nvidia.com/gpucores", 30}});
  ASSERT_EQ(Schedule(pod, {"a"}), "a");
  kube::PodAllocation allocation = AllocationOf("p");
  ASSERT_EQ(allocation.containers.size(), 1u);
  ASSERT_EQ(allocation.containers[0].gpus.size(), 1u);
  EXPECT_EQ(allocation.containers[0].gpus[0].memory_mib, 3000);
  EXPECT_EQ(allocation.containers[0].gpus[0].cores, 30);
  EXPECT_EQ(binder_.bound["default/p"].second[kube::kHamiNodeAnnotation], "a");
}

TEST_F(ExtenderTest, NoGpuIsGrantedMoreThanItsMemory) {
  state_.UpsertNode(Node("a", 1, 10000));
  int placed = 0;
  for (const char* name : {"p0", "p1", "p2", "p3", "p4"}) {
    if (!Schedule(Pod(name, {{"nvidia.com/gpu", 1}, {"nvidia.com/gpumem", 3000}}), {"a"}).empty()) {
      ++placed;
    }
  }
  EXPECT_EQ(placed, 3);  // 3 × 3000 ≤ 10000 < 4 × 3000
  json result = Filter(Pod("late", {{"nvidia.com/gpumem", 3000}}), {"a"});
  EXPECT_TRUE(result["NodeNames"].empty());
  EXPECT_TRUE(result["FailedNodes"].contains("a"));
}

TEST_F(ExtenderTest, AReservationHoldsTheGpuUntilBoundOrExpired) {
  state_.UpsertNode(Node("a", 1, 10000));
  json first = Filter(Pod("x", {{"nvidia.com/gpumem", 6000}}), {"a"});
  ASSERT_EQ(first["NodeNames"].size(), 1u);
  json second = Filter(Pod("y", {{"nvidia.com/gpumem", 6000}}), {"a"});
  EXPECT_TRUE(second["NodeNames"].empty());  // x's reservation holds the memory
  // Filtering x again replaces its reservation instead of adding to it.
  json again = Filter(Pod("x", {{"nvidia.com/gpumem", 6000}}), {"a"});
  EXPECT_EQ(again["NodeNames"].size(), 1u);
}

TEST_F(ExtenderTest, ADeletedOrFinishedPodGivesItsShareBack) {
  state_.UpsertNode(Node("a", 1, 10000));
  json pod = Pod("x", {{"nvidia.com/gpumem", 8000}});
  ASSERT_EQ(Schedule(pod, {"a"}), "a");
  EXPECT_TRUE(Filter(Pod("y", {{"nvidia.com/gpumem", 8000}}), {"a"})["NodeNames"].empty());
  json done = pod;
  done["spec"]["nodeName"] = "a";
  done["metadata"]["annotations"][kube::kAllocationAnnotation] =
      binder_.bound["default/x"].second[kube::kAllocationAnnotation];
  done["status"]["phase"] = "Succeeded";
  state_.UpsertPod(done);
  EXPECT_EQ(Filter(Pod("y", {{"nvidia.com/gpumem", 8000}}), {"a"})["NodeNames"].size(), 1u);
}

TEST_F(ExtenderTest, ARestartedSchedulerRebuildsItsLedgerFromAnnotations) {
  state_.UpsertNode(Node("a", 1, 10000));
  json pod = Pod("x", {{"nvidia.com/gpumem", 8000}});
  ASSERT_EQ(Schedule(pod, {"a"}), "a");
  pod["spec"]["nodeName"] = "a";
  pod["metadata"]["annotations"][kube::kAllocationAnnotation] =
      binder_.bound["default/x"].second[kube::kAllocationAnnotation];

  State restarted{StateOptions{}};
  RecordingBinder binder;
  Extender extender(restarted, binder);
  restarted.ReplaceAllNodes({Node("a", 1, 10000)});
  restarted.ReplaceAllPods({pod});
  HttpAnswer answer = extender.Filter(
      json{{"Pod", Pod("y", {{"nvidia.com/gpumem", 8000}})}, {"NodeNames", {"a"}}}.dump());
  EXPECT_TRUE(json::parse(answer.body)["NodeNames"].empty()) << answer.body;
}

TEST_F(ExtenderTest, SharesStayOffWholeGpusAndWholeRequestsTakeAnIdleGpu) {
  state_.UpsertNode(Node("w", 1, 40960, "whole"));
  state_.UpsertNode(Node("s", 1, 81920, "shared"));
  EXPECT_EQ(Schedule(Pod("share", {{"nvidia.com/gpumem", 3000}}), {"w", "s"}), "s");
  // A whole GPU is asked for: the shared one is in use, the whole one is idle.
  EXPECT_EQ(
      Schedule(Pod("whole", {{"nvidia.com/gpu", 1}, {"nvidia.com/gpucores", 100}}), {"w", "s"}),
      "w");
}

TEST_F(ExtenderTest, CardTypeAndUuidAnnotationsRestrictTheGpus) {
  state_.UpsertNode(Node("a100", 1, 81920, "shared", 32, "NVIDIA A100-SXM4-80GB"));
  state_.UpsertNode(Node("l4", 1, 24576, "shared", 32, "NVIDIA L4"));
  EXPECT_EQ(Schedule(Pod("t", {{"nvidia.com/gpumem", 1000}}, {{"nvidia.com/use-gputype", "l4"}}),
                     {"a100", "l4"}),
            "l4");
  EXPECT_EQ(
      Schedule(Pod("n", {{"nvidia.com/gpumem", 1000}}, {{"nvidia.com/nouse-gputype", "A100"}}),
               {"a100", "l4"}),
      "l4");
  EXPECT_EQ(
      Schedule(Pod("u", {{"nvidia.com/gpumem", 1000}}, {{"nvidia.com/use-gpuuuid", "GPU-a100-0"}}),
               {"a100", "l4"}),
      "a100");
}

// nvidia.com/numa-bind: a container's GPUs all from one NUMA node. GPUs 0..3 alternate between
// NUMA nodes 0 and 1, so the two best-fit GPUs (0 and 1) would span both.
json NumaNode(const std::string& name, int gpus) {
  json node = Node(name, gpus, 81920);
  json doc = json::parse(node["metadata"]["annotations"][kNodeGpusAnnotation].get<std::string>());
  for (int i = 0; i < gpus; ++i) doc["gpus"][i]["numa"] = i % 2;
  node["metadata"]["annotations"][kNodeGpusAnnotation] = doc.dump();
  return node;
}

TEST_F(ExtenderTest, NumaBindTakesAllOfAContainersGpusFromOneNumaNode) {
  const json two = {{"nvidia.com/gpu", 2}, {"nvidia.com/gpumem", 1000}};
  // Without the annotation the request takes the two best-fit GPUs, across NUMA nodes.
  state_.UpsertNode(NumaNode("free", 4));
  ASSERT_EQ(Schedule(Pod("unbound", two), {"free"}), "free");
  kube::PodAllocation unbound = AllocationOf("unbound");
  ASSERT_EQ(unbound.containers.size(), 1u);
  ASSERT_EQ(unbound.containers[0].gpus.size(), 2u);
  EXPECT_EQ(unbound.containers[0].gpus[0].uuid, "GPU-free-0");
  EXPECT_EQ(unbound.containers[0].gpus[1].uuid, "GPU-free-1");

  state_.UpsertNode(NumaNode("n", 4));
  ASSERT_EQ(Schedule(Pod("bound", two, {{"nvidia.com/numa-bind", "true"}}), {"n"}), "n");
  kube::PodAllocation bound = AllocationOf("bound");
  ASSERT_EQ(bound.containers.size(), 1u);
  ASSERT_EQ(bound.containers[0].gpus.size(), 2u);
  EXPECT_EQ(bound.containers[0].gpus[0].uuid, "GPU-n-0");
  EXPECT_EQ(bound.containers[0].gpus[1].uuid, "GPU-n-2") << "GPU 2 is GPU 0's NUMA node";

  // A node whose NUMA nodes have one GPU each cannot serve it.
  state_.UpsertNode(NumaNode("m", 2));
  json result = Filter(Pod("late", two, {{"nvidia.com/numa-bind", "true"}}), {"m"});
  EXPECT_TRUE(result["NodeNames"].empty()) << result.dump();
  EXPECT_TRUE(result["FailedNodes"].contains("m")) << result.dump();
  EXPECT_EQ(Schedule(Pod("spans", two), {"m"}), "m");
}

TEST_F(ExtenderTest, ReplicasBoundTheTenantsOfASharedGpu) {
  state_.UpsertNode(Node("a", 1, 81920, "shared", 2));
  EXPECT_EQ(Schedule(Pod("p0", {{"nvidia.com/gpumem", 100}}), {"a"}), "a");
  EXPECT_EQ(Schedule(Pod("p1", {{"nvidia.com/gpumem", 100}}), {"a"}), "a");
  EXPECT_EQ(Schedule(Pod("p2", {{"nvidia.com/gpumem", 100}}), {"a"}), "");
}

TEST_F(ExtenderTest, NodesWithoutTesseraGpusAreUnresolvable) {
  state_.UpsertNode(Node("a", 1, 81920));
  json result = Filter(Pod("p", {{"nvidia.com/gpumem", 100}}), {"a", "cpu-only"});
  EXPECT_EQ(result["NodeNames"], json::array({"a"}));
  EXPECT_TRUE(result["FailedAndUnresolvableNodes"].contains("cpu-only"));
}

TEST_F(ExtenderTest, PrioritizeScoresTheReservedNode) {
  state_.UpsertNode(Node("a", 1, 81920));
  state_.UpsertNode(Node("b", 1, 81920));
  json pod = Pod("p", {{"nvidia.com/gpumem", 100}});
  std::string chosen = Filter(pod, {"a", "b"})["NodeNames"][0];
  HttpAnswer answer = extender_.Prioritize(json{{"Pod", pod}, {"NodeNames", {"a", "b"}}}.dump());
  for (const json& host : json::parse(answer.body)) {
    EXPECT_EQ(host["Score"], host["Host"] == chosen ? 10 : 0);
  }
}

TEST_F(ExtenderTest, BindWithoutAFilterDecidesOnTheGivenNode) {
  state_.UpsertNode(Node("a", 1, 81920));
  json pod = Pod("p", {{"nvidia.com/gpumem", 2000}});
  binder_.pods["p"] = pod;
  EXPECT_EQ(BindPod(pod, "a"), "");
  EXPECT_EQ(AllocationOf("p").containers[0].gpus[0].memory_mib, 2000);
}

TEST_F(ExtenderTest, AFailedBindingReleasesTheReservation) {
  state_.UpsertNode(Node("a", 1, 10000));
  json pod = Pod("p", {{"nvidia.com/gpumem", 8000}});
  ASSERT_EQ(Filter(pod, {"a"})["NodeNames"].size(), 1u);
  binder_.fail = true;
  EXPECT_NE(BindPod(pod, "a"), "");
  EXPECT_EQ(state_.reservations(), 0u);
  EXPECT_EQ(Filter(Pod("q", {{"nvidia.com/gpumem", 8000}}), {"a"})["NodeNames"].size(), 1u);
}

TEST_F(ExtenderTest, PreemptKeepsTheNodesWhereTheVictimsMakeRoom) {
  state_.UpsertNode(Node("a", 1, 10000));
  state_.UpsertNode(Node("b", 1, 10000));
  json big_a = Pod("big-a", {{"nvidia.com/gpumem", 9000}});
  json small_b = Pod("small-b", {{"nvidia.com/gpumem", 9000}});
  ASSERT_EQ(Schedule(big_a, {"a"}), "a");
  ASSERT_EQ(Schedule(small_b, {"b"}), "b");
  json args = {{"Pod", Pod("p", {{"nvidia.com/gpumem", 5000}})},
               {"NodeNameToMetaVictims",
                {{"a", {{"Pods", {{{"UID", "uid-big-a"}}}}, {"NumPDBViolations", 0}}},
                 {"b", {{"Pods", json::array()}, {"NumPDBViolations", 0}}}}}};
  json result = json::parse(extender_.Preempt(args.dump()).body);
  EXPECT_TRUE(result["NodeNameToMetaVictims"].contains("a"));
  EXPECT_FALSE(result["NodeNameToMetaVictims"].contains("b"));
}

TEST_F(ExtenderTest, AnInvalidPodIsUnschedulableEverywhereWithTheReason) {
  state_.UpsertNode(Node("a", 1, 81920));
  json result = Filter(Pod("p", {{"nvidia.com/gpucores", 150}}), {"a"});
  EXPECT_TRUE(result["NodeNames"].empty());
  EXPECT_NE(result["FailedAndUnresolvableNodes"]["a"].get<std::string>().find("150"),
            std::string::npos);
}

TEST_F(ExtenderTest, MalformedBodiesGet400) {
  for (std::string body : {std::string("not json"), std::string("[1,2]"), std::string("{}"),
                           std::string(R"({"Pod":5,"NodeNames":["a"]})"),
                           std::string(R"({"Pod":{"metadata":{}},"NodeNames":[1]})")}) {
    EXPECT_EQ(extender_.Filter(body).status, 400) << body;
    EXPECT_EQ(extender_.Prioritize(body).status, 400) << body;
    EXPECT_EQ(extender_.Preempt(body).status == 400 || body.find("Pod\":{") != std::string::npos,
              true)
        << body;
  }
  EXPECT_EQ(extender_.Bind(R"({"PodName":"p"})").status, 400);
  EXPECT_EQ(extender_.Filter(std::string(kMaxBodyBytes + 1, ' ')).status, 400);
}

TEST_F(ExtenderTest, ANodeAnnotationThatDoesNotParseIsReportedNotTrusted) {
  json node = {{"metadata", {{"name", "bad"}, {"annotations", {{kNodeGpusAnnotation, "{"}}}}}};
  EXPECT_FALSE(ReadNodeGpus(node).ok());
  json negative = Node("neg", 1, 100);
  negative["metadata"]["annotations"][kNodeGpusAnnotation] =
      R"({"gpus":[{"uuid":"GPU-1","memoryMiB":-5,"mode":"shared"}]})";
  EXPECT_FALSE(ReadNodeGpus(negative).ok());
}

}  // namespace
}  // namespace tessera::scheduler
