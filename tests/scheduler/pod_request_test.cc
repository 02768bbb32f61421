#include "scheduler/pod_request.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tessera::scheduler {
namespace {

using nlohmann::json;

// A pod with one container whose limits are `limits`, and `annotations`.
json PodWithLimits(json limits, json annotations = json::object()) {
  return {{"metadata", {{"name", "p"}, {"annotations", std::move(annotations)}}},
          {"spec", {{"containers", {{{"name", "main"}, {"resources", {{"limits", limits}}}}}}}}};
}

std::string ErrorOf(const json& pod) {
  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  if (request.ok()) return "(parsed)";
  return request.status().message();
}

const json kOneGpu = {{"nvidia.com/gpu", "1"}};

TEST(PodRequest, ReadsTheHamiExamplePod) {
  Result<PodGpuRequest> request = ParsePodGpuRequest(PodWithLimits(
      {{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "3000"}, {"nvidia.com/gpucores", "30"}}));
  ASSERT_TRUE(request.ok()) << request.status().message();
  ASSERT_EQ(request->containers.size(), 1u);
  const ContainerGpuRequest& container = request->containers[0];
  EXPECT_EQ(container.container, "main");
  EXPECT_EQ(container.field_path, "spec.containers[0]");
  EXPECT_FALSE(container.init);
  EXPECT_EQ(container.count, 1);
  EXPECT_EQ(container.memory_mib, 3000);
  EXPECT_EQ(container.memory_percent, 0);
  EXPECT_EQ(container.cores, 30);
  EXPECT_TRUE(container.cores_given);
  EXPECT_EQ(container.priority, -1);
  EXPECT_FALSE(container.privileged);
  EXPECT_TRUE(request->wants_gpu());
  EXPECT_EQ(request->max_count(), 1);
}

TEST(PodRequest, TakesEachResourceFromLimitsBeforeRequests) {
  json pod = PodWithLimits({{"nvidia.com/gpu", "2"}, {"nvidia.com/gpumem", "3000"}});
  pod["spec"]["containers"][0]["resources"]["requests"] = {
      {"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "1000"}, {"nvidia.com/gpucores", "40"}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_EQ(request->containers[0].count, 2);
  EXPECT_EQ(request->containers[0].memory_mib, 3000);
  EXPECT_EQ(request->containers[0].cores, 40);  // only in requests
  EXPECT_TRUE(request->containers[0].cores_given);
}

TEST(PodRequest, ListsEveryContainerInitContainersFirst) {
  json pod = {{"spec",
               {{"initContainers", {{{"name", "setup"}}}},
                {"containers",
                 {{{"name", "sidecar"}},
                  {{"name", "train"}, {"resources", {{"limits", {{"nvidia.com/gpu", 2}}}}}}}}}}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  ASSERT_TRUE(request.ok()) << request.status().message();
  ASSERT_EQ(request->containers.size(), 3u);
  EXPECT_EQ(request->containers[0].container, "setup");
  EXPECT_TRUE(request->containers[0].init);
  EXPECT_EQ(request->containers[0].field_path, "spec.initContainers[0]");
  EXPECT_EQ(request->containers[1].container, "sidecar");
  EXPECT_FALSE(request->containers[1].init);
  EXPECT_FALSE(request->containers[1].asks_for_gpu());
  EXPECT_EQ(request->containers[2].field_path, "spec.containers[1]");
  EXPECT_EQ(request->containers[2].count, 2);
  EXPECT_EQ(request->max_count(), 2);
}

TEST(PodRequest, APodWithoutGpuResourcesWantsNoGpu) {
  Result<PodGpuRequest> request =
      ParsePodGpuRequest(PodWithLimits({{"cpu", "1"}, {"memory", "1Gi"}}));
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_FALSE(request->wants_gpu());
  EXPECT_EQ(request->max_count(), 0);
}

TEST(PodRequest, PriorityAloneAsksForNoGpu) {
  Result<PodGpuRequest> request = ParsePodGpuRequest(PodWithLimits({{"nvidia.com/priority", "1"}}));
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_EQ(request->containers[0].priority, 1);
  EXPECT_FALSE(request->wants_gpu());
}

TEST(PodRequest, GpucoresAloneAsksForAGpu) {
  Result<PodGpuRequest> request = ParsePodGpuRequest(PodWithLimits({{"nvidia.com/gpucores", "0"}}));
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_TRUE(request->containers[0].cores_given);
  EXPECT_TRUE(request->wants_gpu());
  EXPECT_EQ(request->max_count(), 0);  // the webhook adds the default count
}

// --- The deny rules, each naming the field and the value ---

TEST(PodRequest, RefusesNegativeGpumemNamingTheField) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "-1"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem\"]: -1 is negative");
}

TEST(PodRequest, RefusesZeroGpumemSayingToLeaveItOut) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "0"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem\"]: 0 is under 1; leave "
            "nvidia.com/gpumem out for the whole GPU's memory");
}

TEST(PodRequest, RefusesGpucoresOverOneHundredNamingTheField) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpucores", "150"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpucores\"]: 150 is over 100");
}

TEST(PodRequest, AcceptsGpucoresFromZeroToOneHundred) {
  for (const char* cores : {"0", "1", "100"}) {
    EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpucores", cores}})),
              "(parsed)")
        << cores;
  }
}

TEST(PodRequest, RefusesAPercentageOutsideOneToOneHundred) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpumem-percentage", "0"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem-percentage\"]: 0 is under 1; "
            "a percentage is 1 to 100");
  EXPECT_EQ(
      ErrorOf(PodWithLimits({{"nvidia.com/gpumem-percentage", "101"}})),
      "spec.containers[0].resources.limits[\"nvidia.com/gpumem-percentage\"]: 101 is over 100");
  EXPECT_EQ(
      ErrorOf(PodWithLimits({{"nvidia.com/gpumem-percentage", "-5"}})),
      "spec.containers[0].resources.limits[\"nvidia.com/gpumem-percentage\"]: -5 is negative");
  Result<PodGpuRequest> full =
      ParsePodGpuRequest(PodWithLimits({{"nvidia.com/gpumem-percentage", "100"}}));
  ASSERT_TRUE(full.ok()) << full.status().message();
  EXPECT_EQ(full->containers[0].memory_percent, 100);
}

TEST(PodRequest, RefusesGpumemTogetherWithAPercentage) {
  EXPECT_EQ(ErrorOf(PodWithLimits(
                {{"nvidia.com/gpumem", "3000"}, {"nvidia.com/gpumem-percentage", "50"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem-percentage\"]: given together "
            "with spec.containers[0].resources.limits[\"nvidia.com/gpumem\"]; a container's GPU "
            "memory is one or the other");
}

TEST(PodRequest, RefusesAPriorityOtherThanZeroOrOne) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/priority", "2"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/priority\"]: 2 is over 1");
}

TEST(PodRequest, RefusesANegativeGpuCount) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "-2"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpu\"]: -2 is negative");
}

TEST(PodRequest, RefusesZeroGpusBesideGpuMemory) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "0"}, {"nvidia.com/gpumem", "1000"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpu\"]: 0 GPUs beside gpumem, "
            "gpumem-percentage or gpucores; ask for at least 1 or leave it out for the default");
  // Zero GPUs alone asks for nothing and is fine.
  Result<PodGpuRequest> none = ParsePodGpuRequest(PodWithLimits({{"nvidia.com/gpu", "0"}}));
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_FALSE(none->wants_gpu());
}

TEST(PodRequest, NamesTheRequestsSectionWhenTheValueCameFromThere) {
  json pod = {
      {"spec",
       {{"initContainers",
         {{{"name", "i"}, {"resources", {{"requests", {{"nvidia.com/gpucores", "101"}}}}}}}},
        {"containers", json::array()}}}};
  EXPECT_EQ(ErrorOf(pod),
            "spec.initContainers[0].resources.requests[\"nvidia.com/gpucores\"]: 101 is over 100");
}

TEST(PodRequest, RefusesAQuantityThatIsNotWholeQuotingIt) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "1.5Gi"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem\"]: \"1.5Gi\" is not a "
            "whole-number quantity (digits, then at most one of k, M, G, Ki, Mi, Gi)");
}

TEST(PodRequest, RefusesGpumemBeyondThirtyOneBits) {
  EXPECT_EQ(ErrorOf(PodWithLimits({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "3G"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem\"]: 3000000000 is over "
            "2147483647");
}

TEST(PodRequest, RefusesAMalformedPod) {
  EXPECT_EQ(ErrorOf(json::array()), "pod: [] is not an object");
  EXPECT_EQ(ErrorOf(json::object()), "spec: missing");
  EXPECT_EQ(ErrorOf({{"spec", json::object()}}), "spec.containers: missing");
  EXPECT_EQ(ErrorOf({{"spec", {{"containers", "x"}}}}), "spec.containers: \"x\" is not an array");
  EXPECT_EQ(ErrorOf({{"spec", {{"containers", {7}}}}}), "spec.containers[0]: 7 is not an object");
  EXPECT_EQ(ErrorOf({{"spec", {{"containers", {{{"resources", {{"limits", 1}}}}}}}}}),
            "spec.containers[0].resources.limits: 1 is not an object");
  EXPECT_EQ(ErrorOf({{"spec", {{"containers", {{{"securityContext", {{"privileged", "yes"}}}}}}}}}),
            "spec.containers[0].securityContext.privileged: \"yes\" is not true or false");
}

TEST(PodRequest, ReadsPrivilegedFromTheSecurityContext) {
  json pod = PodWithLimits(kOneGpu);
  pod["spec"]["containers"][0]["securityContext"] = {{"privileged", true}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_TRUE(request->containers[0].privileged);
}

// --- Checks across fields ---

TEST(PodRequestCheck, RefusesAPrivilegedContainerInAPodThatAsksForGpus) {
  json pod = {{"spec",
               {{"containers",
                 {{{"name", "gpu"}, {"resources", {{"limits", kOneGpu}}}},
                  {{"name", "debug"}, {"securityContext", {{"privileged", true}}}}}}}}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  ASSERT_TRUE(request.ok()) << request.status().message();
  Status status = CheckPodGpuRequest(*request, 0);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(),
            "spec.containers[1].securityContext.privileged: true in a pod that asks for GPUs; a "
            "privileged container sees every GPU on the node, so its limits could not hold");
}

TEST(PodRequestCheck, AllowsAPrivilegedContainerInAPodWithoutGpus) {
  json pod = {{"spec", {{"containers", {{{"securityContext", {{"privileged", true}}}}}}}}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_TRUE(CheckPodGpuRequest(*request, 8).ok());
}

TEST(PodRequestCheck, RefusesMoreGpusThanAnyNodeHas) {
  Result<PodGpuRequest> request = ParsePodGpuRequest(PodWithLimits({{"nvidia.com/gpu", "9"}}));
  ASSERT_TRUE(request.ok()) << request.status().message();
  Status status = CheckPodGpuRequest(*request, 8);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(),
            "spec.containers[0].resources.limits[\"nvidia.com/gpu\"]: 9 is more GPUs than any node "
            "has (8)");
  EXPECT_TRUE(CheckPodGpuRequest(*request, 9).ok());
  EXPECT_TRUE(CheckPodGpuRequest(*request, 0).ok()) << "0: the largest node is not known";
  EXPECT_TRUE(CheckPodGpuRequest(*request, -1).ok());
}

// --- Annotations ---

TEST(PodAnnotations, ReadsEveryAnnotation) {
  json annotations = {{"nvidia.com/use-gputype", " A100, ,V100,"},
                      {"nvidia.com/nouse-gputype", "T4"},
                      {"nvidia.com/use-gpuuuid", "GPU-a,GPU-b"},
                      {"nvidia.com/nouse-gpuuuid", ",GPU-c,,"},
                      {"nvidia.com/vgpu-mode", "hami-core , mig"},
                      {"nvidia.com/numa-bind", "True"},
                      {"hami.io/node-scheduler-policy", "spread"},
                      {"hami.io/gpu-scheduler-policy", "binpack,numa"}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(PodWithLimits(kOneGpu, annotations));
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_EQ(request->use_types, (std::vector<std::string>{"A100", "V100"}));
  EXPECT_EQ(request->nouse_types, (std::vector<std::string>{"T4"}));
  EXPECT_EQ(request->use_uuids, (std::vector<std::string>{"GPU-a", "GPU-b"}));
  EXPECT_EQ(request->nouse_uuids, (std::vector<std::string>{"GPU-c"}));
  EXPECT_EQ(request->vgpu_mode, "hami-core,mig");
  EXPECT_TRUE(request->numa_bind);
  EXPECT_EQ(request->node_policy, "spread");
  EXPECT_EQ(request->gpu_policy, (std::vector<std::string>{"binpack", "numa"}));
}

TEST(PodAnnotations, LeavesDefaultsWhenAbsent) {
  Result<PodGpuRequest> request = ParsePodGpuRequest(PodWithLimits(kOneGpu));
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_TRUE(request->use_types.empty());
  EXPECT_TRUE(request->use_uuids.empty());
  EXPECT_EQ(request->vgpu_mode, "");
  EXPECT_FALSE(request->numa_bind);
  EXPECT_EQ(request->node_policy, "");
  EXPECT_TRUE(request->gpu_policy.empty());
}

TEST(PodAnnotations, RefusesABadBoolNamingTheAnnotation) {
  EXPECT_EQ(ErrorOf(PodWithLimits(kOneGpu, {{"nvidia.com/numa-bind", "yes"}})),
            "metadata.annotations[\"nvidia.com/numa-bind\"]: \"yes\" is not true or false");
}

TEST(PodAnnotations, RefusesAnUnknownGpuPolicy) {
  EXPECT_EQ(ErrorOf(PodWithLimits(kOneGpu, {{"hami.io/gpu-scheduler-policy", "binpack,fastest"}})),
            "metadata.annotations[\"hami.io/gpu-scheduler-policy\"]: \"binpack,fastest\": "
            "\"fastest\" is not one of spread, binpack, topology-aware, mutex, numa");
}

TEST(PodAnnotations, RefusesAnUnknownNodePolicy) {
  EXPECT_EQ(ErrorOf(PodWithLimits(kOneGpu, {{"hami.io/node-scheduler-policy", "random"}})),
            "metadata.annotations[\"hami.io/node-scheduler-policy\"]: \"random\" is not binpack "
            "or spread");
}

TEST(PodAnnotations, RefusesAnUnknownVgpuMode) {
  EXPECT_EQ(ErrorOf(PodWithLimits(kOneGpu, {{"nvidia.com/vgpu-mode", "vgpu"}})),
            "metadata.annotations[\"nvidia.com/vgpu-mode\"]: \"vgpu\": \"vgpu\" is not one of "
            "hami-core, mig, mps");
}

TEST(PodAnnotations, RefusesAnAnnotationThatIsNotAString) {
  EXPECT_EQ(ErrorOf(PodWithLimits(kOneGpu, {{"nvidia.com/numa-bind", true}})),
            "metadata.annotations[\"nvidia.com/numa-bind\"]: true is not a string");
}

TEST(PodAnnotations, AreIgnoredOnAPodThatAsksForNoGpu) {
  Result<PodGpuRequest> request =
      ParsePodGpuRequest(PodWithLimits({{"cpu", "1"}}, {{"nvidia.com/numa-bind", "yes"}}));
  ASSERT_TRUE(request.ok()) << request.status().message();
  EXPECT_FALSE(request->numa_bind);
}

TEST(PodAnnotations, CutsALongValueInTheMessage) {
  std::string message =
      ErrorOf(PodWithLimits(kOneGpu, {{"nvidia.com/numa-bind", std::string(10000, 'y')}}));
  EXPECT_LT(message.size(), 200u) << message;
  EXPECT_NE(message.find("yyy\"... is not true or false"), std::string::npos) << message;
}

TEST(CommaList, TrimsItemsAndDropsEmptyOnes) {
  EXPECT_EQ(ParseCommaList(""), std::vector<std::string>{});
  EXPECT_EQ(ParseCommaList(" , ,"), std::vector<std::string>{});
  EXPECT_EQ(ParseCommaList("a"), std::vector<std::string>{"a"});
  EXPECT_EQ(ParseCommaList("\ta b ,c,"), (std::vector<std::string>{"a b", "c"}));
}

TEST(Bool, AcceptsTrueAndFalseInAnyCase) {
  EXPECT_TRUE(*ParseBool("true", "x"));
  EXPECT_TRUE(*ParseBool(" TRUE ", "x"));
  EXPECT_FALSE(*ParseBool("False", "x"));
  for (const char* text : {"", "1", "yes", "on", "truee", "t"}) {
    Result<bool> value = ParseBool(text, "x");
    ASSERT_FALSE(value.ok()) << text;
    EXPECT_EQ(value.status().message(), "x: " + json(text).dump() + " is not true or false");
  }
}

TEST(NodePolicy, AcceptsBinpackSpreadAndEmpty) {
  EXPECT_EQ(*ParseNodePolicy("binpack", "x"), "binpack");
  EXPECT_EQ(*ParseNodePolicy(" spread ", "x"), "spread");
  EXPECT_EQ(*ParseNodePolicy(" ", "x"), "");
  EXPECT_FALSE(ParseNodePolicy("Binpack", "x").ok());
  EXPECT_FALSE(ParseNodePolicy("binpack,spread", "x").ok());
}

TEST(GpuPolicy, AcceptsAChainOfKnownPoliciesOnce) {
  EXPECT_EQ(*ParseGpuPolicy("topology-aware", "x"), std::vector<std::string>{"topology-aware"});
  EXPECT_EQ(*ParseGpuPolicy("spread, mutex,numa", "x"),
            (std::vector<std::string>{"spread", "mutex", "numa"}));
  EXPECT_TRUE(ParseGpuPolicy("", "x")->empty());
  Result<std::vector<std::string>> twice = ParseGpuPolicy("numa,binpack,numa", "x");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().message(), "x: \"numa,binpack,numa\": \"numa\" is named twice");
}

TEST(VgpuMode, AcceptsHamiCoreMigAndMps) {
  EXPECT_EQ(*ParseVgpuMode("mps", "x"), "mps");
  EXPECT_EQ(*ParseVgpuMode("mig,hami-core", "x"), "mig,hami-core");
  EXPECT_EQ(*ParseVgpuMode("", "x"), "");
  EXPECT_FALSE(ParseVgpuMode("MIG", "x").ok());
  EXPECT_FALSE(ParseVgpuMode("hami-core,hami-core", "x").ok());
}

// --- Quantities ---

TEST(Quantity, AcceptsIntegersWithAndWithoutSuffixes) {
  struct Case {
    json value;
    int64_t expected;
  };
  const std::vector<Case> cases = {
      {"3000", 3000},
      {3000, 3000},
      {"0", 0},
      {"007", 7},
      {"+5", 5},
      {"-5", -5},
      {-5, -5},
      {"3k", 3000},
      {"2M", 2'000'000},
      {"1G", 1'000'000'000},
      {"1Ki", 1024},
      {"3Mi", 3145728},
      {"2Gi", 2147483648LL},
      {"9223372036854775807", std::numeric_limits<int64_t>::max()},
      {"-9223372036854775808", std::numeric_limits<int64_t>::min()},
      {"9223372036G", 9223372036000000000LL},
  };
  for (const Case& c : cases) {
    Result<int64_t> value = ParseQuantityValue(c.value, "q");
    ASSERT_TRUE(value.ok()) << c.value.dump() << ": " << value.status().message();
    EXPECT_EQ(*value, c.expected) << c.value.dump();
  }
}

TEST(Quantity, RefusesFractionsOtherSuffixesAndOverflow) {
  const std::vector<json> refused = {"",
                                     "k",
                                     "-",
                                     "1.5",
                                     "1.0",
                                     "500m",
                                     "1e3",
                                     "1E3",
                                     "3 k",
                                     " 3",
                                     "3 ",
                                     "3K",
                                     "3T",
                                     "3Ti",
                                     "3ki",
                                     "3kk",
                                     "0x10",
                                     "3Gi ",
                                     "--1",
                                     "+-1",
                                     1.5,
                                     3000.0,
                                     true,
                                     nullptr,
                                     json::array(),
                                     json::object(),
                                     "9223372036854775808",
                                     "-9223372036854775809",
                                     "99999999999999999999",
                                     "9223372037G",
                                     "8589934592Gi",
                                     18446744073709551615ULL};
  for (const json& value : refused) {
    Result<int64_t> quantity = ParseQuantityValue(value, "q");
    EXPECT_FALSE(quantity.ok()) << value.dump() << " parsed as " << *quantity;
    if (!quantity.ok()) {
      EXPECT_EQ(quantity.status().message().rfind("q: ", 0), 0u);
    }
  }
}

TEST(Quantity, SaysWhatIsWrong) {
  EXPECT_EQ(ParseQuantityValue(json("99999999999999999999"), "q").status().message(),
            "q: \"99999999999999999999\" is too large");
  EXPECT_EQ(ParseQuantityValue(json(2.5), "q").status().message(), "q: 2.5 is not a whole number");
  EXPECT_EQ(ParseQuantityValue(json(true), "q").status().message(), "q: true is not a quantity");
}

}  // namespace
}  // namespace tessera::scheduler
