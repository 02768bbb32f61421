// What a pod asks of the GPUs, read from its HAMi-compatible API: the resources `nvidia.com/gpu`,
// `nvidia.com/gpumem`, `nvidia.com/gpumem-percentage`, `nvidia.com/gpucores`, `nvidia.com/priority`
// on each container, and the pod's `nvidia.com/*` and `hami.io/*-scheduler-policy` annotations
// (reference/hami-control-plane.md §2). Pure: JSON in, a value or an error out; nothing throws.
//
// Strictness, where HAMi is lenient: a value HAMi would clamp or silently ignore is an error here,
// because a pod that runs with a limit other than the one its author wrote is worse than a pod
// that is refused with the reason. Every message names the field path and quotes the value:
//   spec.containers[0].resources.limits["nvidia.com/gpucores"]: 150 is over 100
//   metadata.annotations["nvidia.com/numa-bind"]: "yes" is not true or false
//
// Quantities (ParseQuantity) are Kubernetes quantities that must come out whole: a JSON integer, or
// a string of an optional sign, decimal digits and at most one suffix among k, M, G (10^3, 10^6,
// 10^9) and Ki, Mi, Gi (2^10, 2^20, 2^30), the value being Quantity.Value() as HAMi reads it
// ("3k" = 3000). Fractions ("1.5", "500m"), exponents ("1e3"), other suffixes, spaces and values
// beyond 64 bits are errors. gpumem is MiB per GPU, so "3000" and 3000 mean 3000 MiB.
//
// Ranges, per container: nvidia.com/gpu >= 0 (and not 0 beside other GPU resources); gpumem
// >= 1 (leave it out for the whole GPU's memory) and < 2^31 MiB (HAMi's int32); gpumem-percentage
// 1..100; gpucores 0..100; priority 0 (high) or 1 (low); gpumem and gpumem-percentage not both.
//
// Annotations are read only for a pod that asks for a GPU: on any other pod they mean nothing, so
// they cannot make it fail. Type and UUID lists keep HAMi's form (comma separated, items trimmed,
// empty items dropped, so "A100,,V100," is A100 and V100); a UUID is not checked for shape, since
// fake GPUs and MIG devices have their own, and one that matches no GPU leaves the pod pending.
#ifndef TESSERA_SCHEDULER_POD_REQUEST_H_
#define TESSERA_SCHEDULER_POD_REQUEST_H_

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::scheduler {

inline constexpr char kGpuCountResource[] = "nvidia.com/gpu";
inline constexpr char kGpuMemoryResource[] = "nvidia.com/gpumem";
inline constexpr char kGpuMemoryPercentResource[] = "nvidia.com/gpumem-percentage";
inline constexpr char kGpuCoresResource[] = "nvidia.com/gpucores";
inline constexpr char kGpuPriorityResource[] = "nvidia.com/priority";

inline constexpr char kUseGpuTypeAnnotation[] = "nvidia.com/use-gputype";
inline constexpr char kNoUseGpuTypeAnnotation[] = "nvidia.com/nouse-gputype";
inline constexpr char kUseGpuUuidAnnotation[] = "nvidia.com/use-gpuuuid";
inline constexpr char kNoUseGpuUuidAnnotation[] = "nvidia.com/nouse-gpuuuid";
inline constexpr char kVgpuModeAnnotation[] = "nvidia.com/vgpu-mode";
inline constexpr char kNumaBindAnnotation[] = "nvidia.com/numa-bind";
inline constexpr char kNodePolicyAnnotation[] = "hami.io/node-scheduler-policy";
inline constexpr char kGpuPolicyAnnotation[] = "hami.io/gpu-scheduler-policy";

struct ContainerGpuRequest {
  std::string container;       // its name
  std::string field_path;      // "spec.initContainers[0]" or "spec.containers[1]", for messages
  bool init = false;           // an init container
  int32_t count = 0;           // nvidia.com/gpu; 0 = not given (a given 0 asks for nothing)
  int64_t memory_mib = 0;      // nvidia.com/gpumem, MiB per GPU; 0 = not given
  int32_t memory_percent = 0;  // nvidia.com/gpumem-percentage 1..100; 0 = not given
  int32_t cores = 0;           // nvidia.com/gpucores 0..100, meaningful when cores_given
  bool cores_given = false;
  int32_t priority = -1;    // nvidia.com/priority 0 or 1; -1 = not given
  bool privileged = false;  // securityContext.privileged
  // securityContext.capabilities.add names SYS_ADMIN (or ALL): the capability that unmounts the
  // read-only limits file. The name as written, "" when not added.
  std::string adds_sys_admin;

  // Any of gpu (> 0), gpumem, gpumem-percentage, gpucores. Priority alone asks for no GPU.
  bool asks_for_gpu() const {
    return count > 0 || memory_mib > 0 || memory_percent > 0 || cores_given;
  }
};

struct PodGpuRequest {
  // Every container of the pod, init containers first, each list in pod order; containers that
  // ask for nothing are kept, so index i here is HAMi's container index i.
  std::vector<ContainerGpuRequest> containers;
  std::vector<std::string> use_types, nouse_types;  // nvidia.com/use-gputype / nouse-gputype
  std::vector<std::string> use_uuids, nouse_uuids;  // nvidia.com/use-gpuuuid / nouse-gpuuuid
  std::string vgpu_mode;                            // "", or a comma list of hami-core, mig, mps
  bool numa_bind = false;                           // nvidia.com/numa-bind
  std::string node_policy;              // "binpack", "spread", or "" (the scheduler's default)
  std::vector<std::string> gpu_policy;  // chain of spread, binpack, topology-aware, mutex, numa

  bool wants_gpu() const;
  // The most GPUs (nvidia.com/gpu) any one container asks for; 0 when none does.
  int32_t max_count() const;
};

// Reads a Pod as the API server sends it (a JSON object). Each resource is taken from
// resources.limits, else from resources.requests (HAMi: limits win). Checks every range above.
Result<PodGpuRequest> ParsePodGpuRequest(const nlohmann::json& pod);

// The checks that need more than one field or a fact about the cluster: a privileged container in a
// pod that wants GPUs (it would see every GPU on the node), and a container asking for more GPUs
// than the largest node has (`max_gpus_per_node`; <= 0 means unknown, not checked). Run it on the
// pod as it will be created, after the webhook's defaults are applied.
Status CheckPodGpuRequest(const PodGpuRequest& request, int32_t max_gpus_per_node);

// The parsers behind ParsePodGpuRequest, one per field kind. `what` names the field in messages.
//
// A quantity as described above, from its text. The sign is kept; the caller checks ranges.
Result<int64_t> ParseQuantity(std::string_view text, std::string_view what);
// The same from a JSON value: an integer, or a string holding the text.
Result<int64_t> ParseQuantityValue(const nlohmann::json& value, std::string_view what);
// "a, b,,c " -> {"a", "b", "c"}.
std::vector<std::string> ParseCommaList(std::string_view text);
// "true" or "false", any case, surrounding spaces ignored; anything else (including "") is an
// error.
Result<bool> ParseBool(std::string_view text, std::string_view what);
// "binpack" or "spread", or "" (spaces only) for the default.
Result<std::string> ParseNodePolicy(std::string_view text, std::string_view what);
// A comma chain of spread, binpack, topology-aware, mutex, numa; no item twice.
Result<std::vector<std::string>> ParseGpuPolicy(std::string_view text, std::string_view what);
// A comma list of hami-core, mig, mps, returned trimmed and joined by ","; "" for none.
Result<std::string> ParseVgpuMode(std::string_view text, std::string_view what);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_POD_REQUEST_H_
