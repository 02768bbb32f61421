#include "scheduler/admission.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

#include "scheduler/pod_request.h"
#include "shim/environment.h"

namespace tessera::scheduler {
namespace {

using nlohmann::json;

constexpr std::string_view kApiVersionV1 = "admission.k8s.io/v1";
constexpr std::string_view kApiVersionV1beta1 = "admission.k8s.io/v1beta1";
constexpr char kDefaultScheduler[] = "default-scheduler";
// Real reviews nest about 15 deep (managedFields); the limit keeps the recursive parts of
// nlohmann-json (dump, diff) far from the stack's end whatever a client sends.
constexpr int kMaxNestingDepth = 128;

AdmissionResult BadRequest(std::string reason) {
  return {400, "text/plain", "admission review: " + std::move(reason) + "\n"};
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The string at `key`, "" when absent or null, nullopt when it is something else.
std::optional<std::string> OptionalString(const json& object, const char* key) {
  auto found = object.find(key);
  if (found == object.end() || found->is_null()) return std::string();
  if (!found->is_string()) return std::nullopt;
  return found->get<std::string>();
}

bool IsGpuResource(const std::string& name) {
  return name == kGpuCountResource || name == kGpuMemoryResource ||
         name == kGpuMemoryPercentResource || name == kGpuCoresResource;
}

// Sets resource `name` to `value` in limits, and in requests when requests already name a GPU
// resource. REQUIRES: resources, limits and requests are objects or absent (ParsePodGpuRequest
// checked).
void SetResource(json& container, const char* name, int64_t value) {
  json& resources = container["resources"];
  if (resources.is_null()) resources = json::object();
  json& limits = resources["limits"];
  if (limits.is_null()) limits = json::object();
  limits[name] = std::to_string(value);
  auto requests = resources.find("requests");
  if (requests == resources.end() || !requests->is_object()) return;
  bool names_gpu = std::any_of(requests->items().begin(), requests->items().end(),
                               [](const auto& item) { return IsGpuResource(item.key()); });
  if (names_gpu) (*requests)[name] = std::to_string(value);
}

void AddPriorityEnv(json& container, int32_t priority) {
  auto env = container.find("env");
  if (env == container.end() || env->is_null()) {
    container["env"] = json::array();
    env = container.find("env");
  }
  if (!env->is_array()) return;  // not a pod the API server will accept; leave it to say so
  for (const json& variable : *env) {
    if (variable.is_object() &&
        variable.value("name", json()) == std::string(shim::kPriorityVariable)) {
      return;
    }
  }
  env->push_back(
      {{"name", std::string(shim::kPriorityVariable)}, {"value", std::to_string(priority)}});
}

// HAMi's webhook changes, §2.3. REQUIRES: `request` is ParsePodGpuRequest(pod).
void Mutate(json& pod, const PodGpuRequest& request, const AdmissionOptions& options) {
  json& spec = pod["spec"];
  size_t index = 0;
  for (const char* list : {"initContainers", "containers"}) {
    auto containers = spec.find(list);
    if (containers == spec.end() || !containers->is_array()) continue;
    for (json& container : *containers) {
      const ContainerGpuRequest& wanted = request.containers[index++];
      int32_t count = wanted.count;
      // A count of 0 beside other GPU resources was refused by the parser, so 0 here is "absent".
      if (count == 0 && wanted.asks_for_gpu()) {
        count = std::max(1, options.default_gpu_count);
        SetResource(container, kGpuCountResource, count);
      }
      bool no_memory_request = wanted.memory_mib == 0 && wanted.memory_percent == 0;
      if (count > 0 && !wanted.cores_given && (wanted.memory_percent == 100 || no_memory_request)) {
        SetResource(container, kGpuCoresResource, 100);
      }
      if (wanted.priority >= 0) AddPriorityEnv(container, wanted.priority);
    }
  }
  spec["schedulerName"] = options.scheduler_name;
}

// The review's answer; `response` already holds uid and allowed.
AdmissionResult Answer(std::string_view api_version, json response) {
  json review = {
      {"apiVersion", api_version}, {"kind", "AdmissionReview"}, {"response", std::move(response)}};
  return {200, "application/json", Dump(review)};
}

json Denial(const std::string& uid, const std::string& message) {
  return {{"uid", uid},
          {"allowed", false},
          {"status",
           {{"status", "Failure"}, {"code", 403}, {"reason", "Forbidden"}, {"message", message}}}};
}

// The answer for a Pod CREATE: allowed, allowed with a patch, or denied.
json ReviewPod(const std::string& uid, const json& pod, const AdmissionOptions& options) {
  json allowed = {{"uid", uid}, {"allowed", true}};
  const json* spec = nullptr;
  if (auto found = pod.find("spec"); found != pod.end() && found->is_object()) spec = &*found;

  if (spec != nullptr) {
    std::optional<std::string> scheduler = OptionalString(*spec, "schedulerName");
    if (!scheduler) {
      return Denial(uid,
                    "spec.schedulerName: " + Dump(spec->at("schedulerName")) + " is not a string");
    }
    bool ours = scheduler->empty() || *scheduler == options.scheduler_name ||
                (options.overwrite_default_scheduler && *scheduler == kDefaultScheduler);
    if (!ours) return allowed;
  }

  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  if (!request.ok()) return Denial(uid, request.status().message());
  if (!request->wants_gpu()) return allowed;

  std::optional<std::string> node = OptionalString(*spec, "nodeName");
  if (!node || !node->empty()) {
    return Denial(uid, "spec.nodeName: " + Dump(spec->at("nodeName")) +
                           " is already set; a pod that asks for GPUs must be placed by " +
                           options.scheduler_name);
  }

  json mutated = pod;
  Mutate(mutated, *request, options);
  Result<PodGpuRequest> final_request = ParsePodGpuRequest(mutated);
  if (!final_request.ok()) return Denial(uid, final_request.status().message());
  if (Status s = CheckPodGpuRequest(*final_request, options.max_gpus_per_node); !s.ok()) {
    return Denial(uid, s.message());
  }

  json patch = json::diff(pod, mutated);
  if (!patch.empty()) {
    allowed["patchType"] = "JSONPatch";
    allowed["patch"] = EncodeBase64(Dump(patch));
  }
  return allowed;
}

AdmissionResult Handle(std::string_view body, const AdmissionOptions& options) {
  if (body.size() > kMaxAdmissionBodyBytes) {
    return BadRequest("body of " + std::to_string(body.size()) + " bytes is over the limit of " +
                      std::to_string(kMaxAdmissionBodyBytes));
  }
  bool too_deep = false;
  json::parser_callback_t depth_check = [&too_deep](int depth, json::parse_event_t, json&) {
    if (depth > kMaxNestingDepth) too_deep = true;
    return !too_deep;
  };
  json review = json::parse(body, depth_check, /*allow_exceptions=*/false);
  if (too_deep) {
    return BadRequest("nested deeper than " + std::to_string(kMaxNestingDepth) + " levels");
  }
  if (review.is_discarded()) return BadRequest("not JSON");
  if (!review.is_object()) return BadRequest("not a JSON object");

  std::optional<std::string> api_version = OptionalString(review, "apiVersion");
  if (!api_version || (*api_version != kApiVersionV1 && *api_version != kApiVersionV1beta1)) {
    return BadRequest("apiVersion is not " + std::string(kApiVersionV1) + " or " +
                      std::string(kApiVersionV1beta1));
  }
  std::optional<std::string> kind = OptionalString(review, "kind");
  if (!kind || *kind != "AdmissionReview") return BadRequest("kind is not AdmissionReview");
  auto request = review.find("request");
  if (request == review.end() || !request->is_object()) return BadRequest("no request object");
  std::optional<std::string> uid = OptionalString(*request, "uid");
  if (!uid || uid->empty()) return BadRequest("request.uid is not a non-empty string");

  json allowed = {{"uid", *uid}, {"allowed", true}};
  bool is_pod = false;
  if (auto object_kind = request->find("kind");
      object_kind != request->end() && object_kind->is_object()) {
    is_pod = OptionalString(*object_kind, "kind") == "Pod" &&
             OptionalString(*object_kind, "group") == "";
  }
  bool is_create = OptionalString(*request, "operation") == "CREATE";
  bool is_subresource = OptionalString(*request, "subResource") != "";
  if (!is_pod || !is_create || is_subresource) return Answer(*api_version, std::move(allowed));

  auto pod = request->find("object");
  if (pod == request->end() || !pod->is_object()) {
    return BadRequest("request.object of a Pod CREATE is not an object");
  }
  return Answer(*api_version, ReviewPod(*uid, *pod, options));
}

}  // namespace

AdmissionResult HandleAdmission(std::string_view body, const AdmissionOptions& options) {
  try {
    return Handle(body, options);
  } catch (const std::exception& error) {
    // nlohmann-json throws on misuse (a wrong type); every access above checks types first, so
    // this is a bug, answered as one instead of taking the server down.
    return {500, "text/plain",
            std::string("admission review: internal error: ") + error.what() + "\n"};
  }
}

std::string EncodeBase64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock adds a NUL
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(bytes.data()),
                                      static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(written));
  return out;
}

std::optional<std::string> DecodeBase64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int written = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(text.data()),
                                      static_cast<int>(text.size()));
  if (written < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  out.resize(static_cast<size_t>(written) - padding);
  // It also accepts white space and stray bits under the padding: only the encoder's own form is
  // taken.
  if (EncodeBase64(out) != text) return std::nullopt;
  return out;
}

}  // namespace tessera::scheduler
