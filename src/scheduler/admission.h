// The mutating admission webhook of tessera-scheduler, as a pure function from the body of one
// POST /webhook to the HTTP answer; the server only moves bytes (reference/hami-control-plane.md
// §2.3, §6.3).
//
// The request is an AdmissionReview, apiVersion admission.k8s.io/v1 or v1beta1; the answer has the
// same apiVersion and kind, and echoes request.uid. Only a Pod CREATE (kind Pod in the core group,
// no subresource) is looked at; everything else is allowed unchanged, including pod UPDATEs, since
// a pod's resources cannot change after creation.
//
// A Pod CREATE is left alone (allowed, no patch) when its spec.schedulerName belongs to another
// scheduler (neither "", options.scheduler_name, nor "default-scheduler" with
// overwrite_default_scheduler), or when it asks for no GPU. Otherwise it is checked
// (ParsePodGpuRequest, CheckPodGpuRequest; a pod with spec.nodeName already set is refused since
// it would bypass the scheduler that holds the limits) and changed as HAMi's webhook does:
//   - gpumem / gpumem-percentage / gpucores without nvidia.com/gpu: nvidia.com/gpu =
//     options.default_gpu_count, added to limits, and to requests when requests already name a
//     GPU resource (the API server copied limits into requests before admission);
//   - nvidia.com/gpu without gpucores, and gpumem-percentage 100 or no memory request: the GPU is
//     the container's alone, so nvidia.com/gpucores = 100, added the same way;
//   - nvidia.com/priority: env CUDA_TASK_PRIORITY=<n>, unless the container already sets it;
//   - spec.schedulerName = options.scheduler_name.
// The changes go back as an RFC 6902 JSON Patch (patchType "JSONPatch", base64), the diff between
// the pod as sent and as changed. Applying the webhook to its own output changes nothing more.
//
// A refusal is allowed:false with status {code: 403, reason: "Forbidden", message}, the code
// Kubernetes' own admission plugins use to deny; the message names the field and the value. The
// HTTP status is then still 200: the review itself was understood.
//
// A body that is not such a review (not JSON, nested deeper than 128, not an object, no request,
// no uid, an unknown apiVersion or kind, over 3 MiB, a Pod CREATE whose object is not an object)
// gets HTTP 400 and a one-line text/plain reason. Nothing throws out of HandleAdmission.
#ifndef TESSERA_SCHEDULER_ADMISSION_H_
#define TESSERA_SCHEDULER_ADMISSION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::scheduler {

inline constexpr size_t kMaxAdmissionBodyBytes = size_t{3} * 1024 * 1024;

struct AdmissionOptions {
  std::string scheduler_name = "tessera-scheduler";
  int32_t default_gpu_count = 1;            // HAMi defaultGPUNum; REQUIRES: >= 1
  int32_t max_gpus_per_node = 0;            // the most GPUs any node has; <= 0: unknown
  bool overwrite_default_scheduler = true;  // HAMi --force-overwrite-default-scheduler
};

struct AdmissionResult {
  int http_status = 200;
  std::string content_type;  // "application/json" with 200, "text/plain" with 400
  std::string body;          // the AdmissionReview answer, or the reason for a 400
};

AdmissionResult HandleAdmission(std::string_view body, const AdmissionOptions& options);

// Standard base64 (RFC 4648, padded, no line breaks), as the patch travels. The decoder is for
// tests and tools that read an answer; it refuses anything EncodeBase64 would not produce.
std::string EncodeBase64(std::string_view bytes);
std::optional<std::string> DecodeBase64(std::string_view text);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_ADMISSION_H_
