#include "scheduler/admission.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

namespace tessera::scheduler {
namespace {

using nlohmann::json;

constexpr char kV1[] = "admission.k8s.io/v1";
constexpr char kV1beta1[] = "admission.k8s.io/v1beta1";
constexpr char kUid[] = "705ab4f5-6393-11e8-b7cc-42010a800002";

// A pod as the API server hands it to a webhook: one container "main" with `limits`, and the
// requests the API server copies from them.
json Pod(json limits) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", "gpu-pod"}, {"namespace", "default"}}},
          {"spec",
           {{"schedulerName", "default-scheduler"},
            {"containers",
             {{{"name", "main"},
               {"image", "ubuntu:22.04"},
               {"resources", {{"limits", limits}, {"requests", limits}}}}}}}}};
}

std::string Review(const json& object, const char* api_version = kV1,
                   const char* operation = "CREATE") {
  json review = {{"apiVersion", api_version},
                 {"kind", "AdmissionReview"},
                 {"request",
                  {{"uid", kUid},
                   {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
                   {"resource", {{"group", ""}, {"version", "v1"}, {"resource", "pods"}}},
                   {"namespace", "default"},
                   {"operation", operation},
                   {"userInfo", {{"username", "kubernetes-admin"}}},
                   {"object", object},
                   {"oldObject", nullptr},
                   {"dryRun", false}}}};
  return review.dump();
}

AdmissionOptions Options() { return AdmissionOptions(); }

// The review's `response`, after checking the envelope.
json ResponseOf(const AdmissionResult& result, const char* api_version = kV1) {
  EXPECT_EQ(result.http_status, 200) << result.body;
  EXPECT_EQ(result.content_type, "application/json");
  json review = json::parse(result.body, nullptr, false);
  EXPECT_TRUE(review.is_object()) << result.body;
  if (!review.is_object()) return json::object();
  EXPECT_EQ(review.value("apiVersion", ""), api_version);
  EXPECT_EQ(review.value("kind", ""), "AdmissionReview");
  json response = review.value("response", json::object());
  EXPECT_EQ(response.value("uid", ""), kUid);
  return response;
}

// The JSON Patch of an allowed response; an empty array when there is none.
json PatchOf(const json& response) {
  EXPECT_EQ(response.value("allowed", false), true) << response.dump();
  if (!response.contains("patch")) {
    EXPECT_FALSE(response.contains("patchType"));
    return json::array();
  }
  EXPECT_EQ(response.value("patchType", ""), "JSONPatch");
  std::optional<std::string> decoded = DecodeBase64(response.value("patch", ""));
  EXPECT_TRUE(decoded.has_value());
  json patch = json::parse(decoded.value_or(""), nullptr, false);
  EXPECT_TRUE(patch.is_array()) << decoded.value_or("");
  return patch.is_array() ? patch : json::array();
}

// The pod as it will be created: the webhook's patch applied to what was sent.
json Admitted(const json& pod, const AdmissionOptions& options = Options()) {
  json patch = PatchOf(ResponseOf(HandleAdmission(Review(pod), options)));
  return pod.patch(patch);
}

// The message of a denial, after checking its shape.
std::string DenialOf(const json& pod, const AdmissionOptions& options = Options()) {
  json response = ResponseOf(HandleAdmission(Review(pod), options));
  EXPECT_EQ(response.value("allowed", true), false) << response.dump();
  EXPECT_FALSE(response.contains("patch"));
  json status = response.value("status", json::object());
  EXPECT_EQ(status.value("code", 0), 403);
  EXPECT_EQ(status.value("reason", ""), "Forbidden");
  return status.value("message", "");
}

json& Limits(json& pod, size_t container = 0) {
  return pod["spec"]["containers"][container]["resources"]["limits"];
}
json& Requests(json& pod, size_t container = 0) {
  return pod["spec"]["containers"][container]["resources"]["requests"];
}

// --- Mutations ---

TEST(Admission, LeavesTheHamiExamplePodUnchangedButForSchedulerName) {
  json pod =
      Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "3000"}, {"nvidia.com/gpucores", "30"}});
  json patch = PatchOf(ResponseOf(HandleAdmission(Review(pod), Options())));
  EXPECT_EQ(patch, json::parse(R"([{"op":"replace","path":"/spec/schedulerName",
                                    "value":"tessera-scheduler"}])"));
  json expected = pod;
  expected["spec"]["schedulerName"] = "tessera-scheduler";
  EXPECT_EQ(pod.patch(patch), expected);
}

TEST(Admission, SetsSchedulerNameWhenThePodNamesNone) {
  json pod = Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpucores", "30"}});
  pod["spec"].erase("schedulerName");
  EXPECT_EQ(Admitted(pod)["spec"]["schedulerName"], "tessera-scheduler");
  AdmissionOptions options;
  options.scheduler_name = "gpu-scheduler";
  EXPECT_EQ(Admitted(pod, options)["spec"]["schedulerName"], "gpu-scheduler");
}

TEST(Admission, AddsTheDefaultGpuCountWhenOnlyMemoryIsGiven) {
  json pod = Pod({{"nvidia.com/gpumem", "3000"}});
  json admitted = Admitted(pod);
  json expected = pod;
  Limits(expected)["nvidia.com/gpu"] = "1";
  Requests(expected)["nvidia.com/gpu"] = "1";
  expected["spec"]["schedulerName"] = "tessera-scheduler";
  EXPECT_EQ(admitted, expected) << "a memory request keeps the GPU shared: no gpucores added";
}

TEST(Admission, AddsTheConfiguredDefaultGpuCount) {
  AdmissionOptions options;
  options.default_gpu_count = 2;
  json admitted = Admitted(Pod({{"nvidia.com/gpucores", "20"}}), options);
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpu"], "2");
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpucores"], "20");
}

TEST(Admission, AddsTheDefaultGpuCountToLimitsOnlyWhenRequestsNameNoGpuResource) {
  json pod = Pod({{"nvidia.com/gpumem-percentage", "25"}});
  Requests(pod) = {{"cpu", "1"}};
  json admitted = Admitted(pod);
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpu"], "1");
  EXPECT_EQ(Requests(admitted), json({{"cpu", "1"}}));
}

TEST(Admission, AddsLimitsWhenTheContainerHasOnlyRequests) {
  json pod = Pod(json::object());
  pod["spec"]["containers"][0]["resources"] = {{"requests", {{"nvidia.com/gpumem", "1000"}}}};
  json admitted = Admitted(pod);
  EXPECT_EQ(Limits(admitted), json({{"nvidia.com/gpu", "1"}}));
  EXPECT_EQ(Requests(admitted)["nvidia.com/gpu"], "1");
}

TEST(Admission, MakesAGpuWithoutMemoryOrCoresExclusive) {
  json pod = Pod({{"nvidia.com/gpu", "2"}});
  json admitted = Admitted(pod);
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpucores"], "100");
  EXPECT_EQ(Requests(admitted)["nvidia.com/gpucores"], "100");
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpu"], "2");
}

TEST(Admission, MakesAFullMemoryPercentageExclusive) {
  json admitted = Admitted(Pod({{"nvidia.com/gpumem-percentage", "100"}}));
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpu"], "1");
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpucores"], "100");
}

TEST(Admission, LeavesAPartialMemoryPercentageShared) {
  json admitted = Admitted(Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem-percentage", "50"}}));
  EXPECT_FALSE(Limits(admitted).contains("nvidia.com/gpucores"));
}

TEST(Admission, KeepsGivenGpucoresEvenZero) {
  json pod = Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpucores", "0"}});
  json admitted = Admitted(pod);
  EXPECT_EQ(Limits(admitted)["nvidia.com/gpucores"], "0");
}

TEST(Admission, TurnsPriorityIntoTheTaskPriorityEnv) {
  json pod =
      Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "1000"}, {"nvidia.com/priority", "0"}});
  pod["spec"]["containers"][0]["env"] = {{{"name", "A"}, {"value", "b"}}};
  json admitted = Admitted(pod);
  EXPECT_EQ(admitted["spec"]["containers"][0]["env"],
            json::parse(R"([{"name":"A","value":"b"},{"name":"CUDA_TASK_PRIORITY","value":"0"}])"));
}

TEST(Admission, CreatesTheEnvListForPriority) {
  json pod =
      Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "1000"}, {"nvidia.com/priority", "1"}});
  EXPECT_EQ(Admitted(pod)["spec"]["containers"][0]["env"],
            json::parse(R"([{"name":"CUDA_TASK_PRIORITY","value":"1"}])"));
}

TEST(Admission, DoesNotDuplicateTheTaskPriorityEnv) {
  json pod =
      Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "1000"}, {"nvidia.com/priority", "1"}});
  pod["spec"]["containers"][0]["env"] = {{{"name", "CUDA_TASK_PRIORITY"}, {"value", "0"}}};
  EXPECT_EQ(Admitted(pod)["spec"]["containers"][0]["env"], pod["spec"]["containers"][0]["env"]);
}

TEST(Admission, MutatesInitContainersAndKeepsOthersAsTheyAre) {
  json pod = Pod({{"cpu", "1"}});
  pod["spec"]["initContainers"] = {
      {{"name", "warmup"}, {"resources", {{"limits", {{"nvidia.com/gpumem", "500"}}}}}}};
  json admitted = Admitted(pod);
  EXPECT_EQ(admitted["spec"]["initContainers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
  EXPECT_EQ(admitted["spec"]["containers"], pod["spec"]["containers"]);
}

TEST(Admission, EscapesTheSlashInResourceNamesInThePatch) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  json patch = PatchOf(ResponseOf(HandleAdmission(Review(pod), Options())));
  bool found = false;
  for (const json& operation : patch) {
    found = found || operation.value("path", "") ==
                         "/spec/containers/0/resources/limits/nvidia.com~1gpucores";
  }
  EXPECT_TRUE(found) << patch.dump();
}

TEST(Admission, ChangesNothingMoreWhenAppliedToItsOwnOutput) {
  json pod = Pod({{"nvidia.com/gpumem-percentage", "100"}, {"nvidia.com/priority", "1"}});
  json once = Admitted(pod);
  ASSERT_NE(once, pod);
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(Review(once), Options()))), json::array());
}

// --- What is left alone ---

TEST(Admission, SkipsPodsOfAnotherScheduler) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  pod["spec"]["schedulerName"] = "volcano";
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(Review(pod), Options()))), json::array());
  // Even one that Tessera would refuse: it is not Tessera's pod.
  Limits(pod)["nvidia.com/gpucores"] = "500";
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(Review(pod), Options()))), json::array());
}

TEST(Admission, SkipsDefaultSchedulerPodsWhenNotAllowedToOverwrite) {
  AdmissionOptions options;
  options.overwrite_default_scheduler = false;
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(Review(pod), options))), json::array());
  pod["spec"]["schedulerName"] = "";
  EXPECT_NE(PatchOf(ResponseOf(HandleAdmission(Review(pod), options))), json::array());
}

TEST(Admission, SkipsPodsThatAskForNoGpu) {
  json pod = Pod({{"cpu", "1"}, {"nvidia.com/gpu", "0"}});
  pod["metadata"]["annotations"] = {{"nvidia.com/numa-bind", "maybe"}};
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(Review(pod), Options()))), json::array());
}

TEST(Admission, AllowsOperationsOtherThanCreate) {
  json pod = Pod({{"nvidia.com/gpucores", "500"}});
  for (const char* operation : {"UPDATE", "DELETE", "CONNECT"}) {
    EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(Review(pod, kV1, operation), Options()))),
              json::array())
        << operation;
  }
  json review = json::parse(Review(nullptr, kV1, "DELETE"));
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(review.dump(), Options()))), json::array());
}

TEST(Admission, AllowsKindsOtherThanPodAndSubresources) {
  json review = json::parse(Review(Pod({{"nvidia.com/gpucores", "500"}})));
  review["request"]["kind"] = {{"group", "apps"}, {"version", "v1"}, {"kind", "Deployment"}};
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(review.dump(), Options()))), json::array());
  review = json::parse(Review(Pod({{"nvidia.com/gpucores", "500"}})));
  review["request"]["subResource"] = "ephemeralcontainers";
  EXPECT_EQ(PatchOf(ResponseOf(HandleAdmission(review.dump(), Options()))), json::array());
}

// --- Denials ---

TEST(Admission, DeniesGpucoresOverOneHundredNamingTheField) {
  EXPECT_EQ(DenialOf(Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpucores", "150"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpucores\"]: 150 is over 100");
}

TEST(Admission, DeniesNegativeGpumem) {
  EXPECT_EQ(DenialOf(Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "-3000"}})),
            "spec.containers[0].resources.limits[\"nvidia.com/gpumem\"]: -3000 is negative");
}

TEST(Admission, DeniesAPercentageOutsideOneToOneHundred) {
  EXPECT_EQ(
      DenialOf(Pod({{"nvidia.com/gpumem-percentage", "120"}})),
      "spec.containers[0].resources.limits[\"nvidia.com/gpumem-percentage\"]: 120 is over 100");
}

TEST(Admission, DeniesGpumemTogetherWithAPercentage) {
  std::string message =
      DenialOf(Pod({{"nvidia.com/gpumem", "1000"}, {"nvidia.com/gpumem-percentage", "10"}}));
  EXPECT_NE(message.find("given together with"), std::string::npos) << message;
}

TEST(Admission, DeniesAPrivilegedContainerInAGpuPod) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  pod["spec"]["containers"][0]["securityContext"] = {{"privileged", true}};
  EXPECT_EQ(DenialOf(pod).rfind("spec.containers[0].securityContext.privileged: true in a pod that "
                                "asks for GPUs",
                                0),
            0u);
}

TEST(Admission, DeniesSysAdminInAGpuPod) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  pod["spec"]["containers"][0]["securityContext"] = {
      {"capabilities", {{"add", {"NET_ADMIN", "SYS_ADMIN"}}}}};
  EXPECT_EQ(DenialOf(pod).rfind("spec.containers[0].securityContext.capabilities.add: SYS_ADMIN in "
                                "a pod that asks for GPUs",
                                0),
            0u)
      << DenialOf(pod);
  pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = {"all"};
  EXPECT_NE(DenialOf(pod).find("all in a pod that asks for GPUs"), std::string::npos);
  pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = "SYS_ADMIN";
  EXPECT_NE(DenialOf(pod).find("capabilities.add: \"SYS_ADMIN\" is not a list"), std::string::npos)
      << DenialOf(pod);
  // Other capabilities are the pod's business.
  pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = {"NET_ADMIN"};
  EXPECT_EQ(ResponseOf(HandleAdmission(Review(pod), Options())).value("allowed", false), true);
}

TEST(Admission, DeniesMoreGpusThanAnyNodeHas) {
  AdmissionOptions options;
  options.max_gpus_per_node = 4;
  EXPECT_EQ(DenialOf(Pod({{"nvidia.com/gpu", "5"}}), options),
            "spec.containers[0].resources.limits[\"nvidia.com/gpu\"]: 5 is more GPUs than any node "
            "has (4)");
  EXPECT_NE(Admitted(Pod({{"nvidia.com/gpu", "4"}}), options), json());
}

TEST(Admission, DeniesADefaultGpuCountThatNoNodeHas) {
  AdmissionOptions options;
  options.max_gpus_per_node = 1;
  options.default_gpu_count = 2;
  EXPECT_EQ(DenialOf(Pod({{"nvidia.com/gpumem", "1000"}}), options),
            "spec.containers[0].resources.limits[\"nvidia.com/gpu\"]: 2 is more GPUs than any node "
            "has (1)");
}

TEST(Admission, DeniesAGpuPodWithNodeNameAlreadySet) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  pod["spec"]["nodeName"] = "gpu-node-1";
  EXPECT_EQ(DenialOf(pod),
            "spec.nodeName: \"gpu-node-1\" is already set; a pod that asks for GPUs must be placed "
            "by tessera-scheduler");
}

TEST(Admission, DeniesAnAnnotationThatDoesNotParse) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  pod["metadata"]["annotations"] = {{"hami.io/gpu-scheduler-policy", "fastest"}};
  EXPECT_EQ(DenialOf(pod),
            "metadata.annotations[\"hami.io/gpu-scheduler-policy\"]: \"fastest\": \"fastest\" is "
            "not one of spread, binpack, topology-aware, mutex, numa");
}

// --- The review envelope ---

TEST(Admission, AnswersV1beta1InKind) {
  json pod = Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpumem", "3000"}});
  json response = ResponseOf(HandleAdmission(Review(pod, kV1beta1), Options()), kV1beta1);
  json expected = pod;
  expected["spec"]["schedulerName"] = "tessera-scheduler";
  EXPECT_EQ(pod.patch(PatchOf(response)), expected);
}

TEST(Admission, AnswersV1InKind) {
  json pod = Pod({{"nvidia.com/gpu", "1"}, {"nvidia.com/gpucores", "150"}});
  json response = ResponseOf(HandleAdmission(Review(pod, kV1), Options()), kV1);
  EXPECT_EQ(response.value("allowed", true), false);
}

TEST(Admission, AnswersMalformedBodiesWithBadRequest) {
  json good = json::parse(Review(Pod({{"nvidia.com/gpu", "1"}})));
  auto without = [&](const char* pointer) {
    json review = good;
    json::json_pointer path(pointer);
    review[path.parent_pointer()].erase(path.back());
    return review.dump();
  };
  auto with = [&](const char* pointer, json value) {
    json review = good;
    review[json::json_pointer(pointer)] = std::move(value);
    return review.dump();
  };
  const std::pair<std::string, std::string> cases[] = {
      {"", "not JSON"},
      {"{\"apiVersion\":", "not JSON"},
      {"[1,2]", "not a JSON object"},
      {"\"AdmissionReview\"", "not a JSON object"},
      {without("/apiVersion"), "apiVersion is not"},
      {with("/apiVersion", "admission.k8s.io/v2"), "apiVersion is not"},
      {with("/apiVersion", 1), "apiVersion is not"},
      {with("/kind", "ConversionReview"), "kind is not AdmissionReview"},
      {without("/request"), "no request object"},
      {with("/request", "x"), "no request object"},
      {without("/request/uid"), "request.uid"},
      {with("/request/uid", ""), "request.uid"},
      {with("/request/uid", 42), "request.uid"},
      {with("/request/object", "pod"), "request.object of a Pod CREATE is not an object"},
      {without("/request/object"), "request.object of a Pod CREATE is not an object"},
      {std::string(200, '[') + std::string(200, ']'), "nested deeper than 128 levels"},
      {std::string(kMaxAdmissionBodyBytes + 1, ' '), "over the limit"},
  };
  for (const auto& [body, reason] : cases) {
    AdmissionResult result = HandleAdmission(body, Options());
    EXPECT_EQ(result.http_status, 400) << body.substr(0, 200);
    EXPECT_EQ(result.content_type, "text/plain");
    EXPECT_NE(result.body.find(reason), std::string::npos) << result.body;
  }
}

TEST(Admission, AcceptsRealisticNestingDepth) {
  json pod = Pod({{"nvidia.com/gpu", "1"}});
  json deep = "leaf";
  for (int i = 0; i < 100; ++i) deep = json::array({deep});
  pod["metadata"]["managedFields"] = deep;
  EXPECT_EQ(HandleAdmission(Review(pod), Options()).http_status, 200);
}

// --- base64 ---

TEST(Base64, EncodesAndDecodesTheRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(EncodeBase64(plain), encoded);
    EXPECT_EQ(DecodeBase64(encoded), std::optional<std::string>(plain)) << encoded;
  }
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  EXPECT_EQ(DecodeBase64(EncodeBase64(bytes)), bytes);
}

TEST(Base64, RefusesWhatTheEncoderWouldNotWrite) {
  for (const char* text :
       {"Zg", "Zg=", "Z===", "====", "Zh==", "Zm9=", "Zg==Zg==", "Zm9v\n", "Zm-v", "Z=g="}) {
    EXPECT_EQ(DecodeBase64(text), std::nullopt) << text;
  }
}

}  // namespace
}  // namespace tessera::scheduler
