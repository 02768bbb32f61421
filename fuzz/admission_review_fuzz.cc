// Fuzzes the admission webhook (src/scheduler/admission.h) with whole request bodies: any bytes get
// a 200 with a well-formed AdmissionReview answer or a 400, never a crash, a hang or a 500. An
// allowed answer's patch decodes, applies to the pod that was sent, and leaves a pod that the
// webhook admits again without any further change.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "scheduler/admission.h"

namespace {

using nlohmann::json;
using tessera::scheduler::AdmissionOptions;
using tessera::scheduler::AdmissionResult;
using tessera::scheduler::HandleAdmission;

// The `response` of a 200 answer, checked for the fields every answer has.
json CheckedResponse(const AdmissionResult& result, const json& review) {
  if (result.http_status != 200 || result.content_type != "application/json") __builtin_trap();
  json answer = json::parse(result.body, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object()) __builtin_trap();
  if (answer.value("apiVersion", json()) != review.value("apiVersion", json())) __builtin_trap();
  if (answer.value("kind", json()) != "AdmissionReview") __builtin_trap();
  json response = answer.value("response", json());
  if (!response.is_object() || !response.value("allowed", json()).is_boolean()) __builtin_trap();
  if (response.value("uid", json()) != review["request"]["uid"]) __builtin_trap();
  if (!response.value("allowed", false)) {
    if (response.contains("patch")) __builtin_trap();
    if (response["status"].value("code", 0) != 403) __builtin_trap();
  }
  return response;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  AdmissionOptions options;
  options.max_gpus_per_node = 8;
  AdmissionResult result = HandleAdmission(body, options);
  if (result.http_status == 400) {
    if (result.content_type != "text/plain" || result.body.empty()) __builtin_trap();
    return 0;
  }
  json review = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!review.is_object()) __builtin_trap();  // a 200 means the body was a review
  json response = CheckedResponse(result, review);
  if (!response.contains("patch")) return 0;

  if (response.value("patchType", json()) != "JSONPatch") __builtin_trap();
  std::optional<std::string> text =
      tessera::scheduler::DecodeBase64(response.value("patch", std::string()));
  if (!text) __builtin_trap();
  json patch = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!patch.is_array() || patch.empty()) __builtin_trap();
  json& pod = review["request"]["object"];
  try {
    pod = pod.patch(patch);
  } catch (const std::exception&) {
    __builtin_trap();  // the patch does not fit the pod it was made from
  }
  if (pod["spec"]["schedulerName"] != options.scheduler_name) __builtin_trap();

  std::string again = review.dump(-1, ' ', false, json::error_handler_t::replace);
  if (again.size() > tessera::scheduler::kMaxAdmissionBodyBytes) return 0;
  json second = CheckedResponse(HandleAdmission(again, options), review);
  if (!second.value("allowed", false) || second.contains("patch")) __builtin_trap();
  return 0;
}
