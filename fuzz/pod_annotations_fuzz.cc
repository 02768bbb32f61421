// Fuzzes the pod API's value parsers (src/scheduler/pod_request.h). The first byte picks what the
// rest of the input is: an annotation value for one of the parsers, or a quantity, and the field of
// a pod it is then also put in (one annotation or one GPU resource). Each parser either gives a
// value with the promised shape or an error that names the field, short whatever the input's
// length.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "scheduler/pod_request.h"

namespace {

using nlohmann::json;
namespace scheduler = tessera::scheduler;

constexpr std::string_view kWhat = "metadata.annotations[\"fuzz\"]";
// Two quoted values of at most 80 bytes, each byte escaped to at most 6, and the field name.
constexpr size_t kMaxMessageBytes = 2048;

void CheckError(const tessera::Status& status, std::string_view what) {
  const std::string& message = status.message();
  if (message.rfind(std::string(what) + ": ", 0) != 0) __builtin_trap();
  if (message.size() > kMaxMessageBytes) __builtin_trap();
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

void CheckList(const std::vector<std::string>& items) {
  for (const std::string& item : items) {
    if (item.empty() || item.find(',') != std::string::npos) __builtin_trap();
    if (IsSpace(item.front()) || IsSpace(item.back())) __builtin_trap();
  }
}

void CheckEnumList(const std::vector<std::string>& items, const std::vector<std::string>& known) {
  CheckList(items);
  for (size_t i = 0; i < items.size(); ++i) {
    if (std::find(known.begin(), known.end(), items[i]) == known.end()) __builtin_trap();
    if (std::count(items.begin(), items.end(), items[i]) != 1) __builtin_trap();
  }
}

void FuzzParser(uint8_t selector, std::string_view text) {
  switch (selector % 6) {
    case 0:
      CheckList(scheduler::ParseCommaList(text));
      break;
    case 1: {
      tessera::Result<bool> value = scheduler::ParseBool(text, kWhat);
      if (!value.ok()) CheckError(value.status(), kWhat);
      break;
    }
    case 2: {
      tessera::Result<std::string> value = scheduler::ParseNodePolicy(text, kWhat);
      if (!value.ok()) {
        CheckError(value.status(), kWhat);
      } else if (*value != "" && *value != "binpack" && *value != "spread") {
        __builtin_trap();
      }
      break;
    }
    case 3: {
      tessera::Result<std::vector<std::string>> value = scheduler::ParseGpuPolicy(text, kWhat);
      if (!value.ok()) {
        CheckError(value.status(), kWhat);
      } else {
        CheckEnumList(*value, {"spread", "binpack", "topology-aware", "mutex", "numa"});
      }
      break;
    }
    case 4: {
      tessera::Result<std::string> value = scheduler::ParseVgpuMode(text, kWhat);
      if (!value.ok()) {
        CheckError(value.status(), kWhat);
      } else {
        std::vector<std::string> modes = scheduler::ParseCommaList(*value);
        CheckEnumList(modes, {"hami-core", "mig", "mps"});
        if (*value != tessera::Join(modes, ",")) __builtin_trap();
      }
      break;
    }
    default: {
      tessera::Result<int64_t> value = scheduler::ParseQuantity(text, kWhat);
      if (!value.ok()) {
        CheckError(value.status(), kWhat);
        break;
      }
      // Without a suffix the value is the number as written.
      std::string_view digits = text;
      if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
      if (!digits.empty() && (digits.back() < '0' || digits.back() > '9')) break;
      int64_t expected = 0;
      auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), expected);
      if (error != std::errc() || end != digits.data() + digits.size() || expected != *value) {
        __builtin_trap();
      }
      break;
    }
  }
}

// The text as one annotation or one GPU resource (by `slot`) of a pod that asks for a GPU.
void FuzzPod(uint8_t slot, std::string_view text) {
  const char* const kAnnotations[] = {
      scheduler::kUseGpuTypeAnnotation, scheduler::kNoUseGpuTypeAnnotation,
      scheduler::kUseGpuUuidAnnotation, scheduler::kNoUseGpuUuidAnnotation,
      scheduler::kVgpuModeAnnotation,   scheduler::kNumaBindAnnotation,
      scheduler::kNodePolicyAnnotation, scheduler::kGpuPolicyAnnotation};
  const char* const kResources[] = {scheduler::kGpuCountResource, scheduler::kGpuMemoryResource,
                                    scheduler::kGpuMemoryPercentResource,
                                    scheduler::kGpuCoresResource, scheduler::kGpuPriorityResource};
  constexpr size_t kAnnotationCount = std::size(kAnnotations);
  constexpr size_t kSlots = kAnnotationCount + std::size(kResources);
  size_t at = slot % kSlots;
  json annotations = json::object();
  json requests = json::object();
  json limits = {{scheduler::kGpuCountResource, "1"}};
  if (at < kAnnotationCount) {
    annotations[kAnnotations[at]] = std::string(text);
  } else {
    limits = json::object();
    requests[kResources[at - kAnnotationCount]] = std::string(text);
  }
  json pod = {
      {"metadata", {{"annotations", annotations}}},
      {"spec",
       {{"containers",
         {{{"name", "main"}, {"resources", {{"limits", limits}, {"requests", requests}}}}}}}}};
  tessera::Result<scheduler::PodGpuRequest> request = scheduler::ParsePodGpuRequest(pod);
  if (!request.ok()) {
    std::string what = at < kAnnotationCount
                           ? std::string("metadata.annotations[\"") + kAnnotations[at] + "\"]"
                           : std::string("spec.containers[0].resources.requests[\"") +
                                 kResources[at - kAnnotationCount] + "\"]";
    CheckError(request.status(), what);
    return;
  }
  const scheduler::ContainerGpuRequest& container = request->containers.at(0);
  if (container.count < 0 || container.memory_mib < 0 || container.memory_mib > INT32_MAX ||
      container.memory_percent < 0 || container.memory_percent > 100 || container.cores < 0 ||
      container.cores > 100 || container.priority < -1 || container.priority > 1) {
    __builtin_trap();
  }
  CheckList(request->use_types);
  CheckList(request->nouse_types);
  CheckList(request->use_uuids);
  CheckList(request->nouse_uuids);
  if (request->max_count() != container.count) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  FuzzParser(data[0], text);
  FuzzPod(static_cast<uint8_t>(data[0] >> 3), text);
  return 0;
}
