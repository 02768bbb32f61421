#include "scheduler/pod_request.h"

#include <algorithm>
#include <array>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/strings.h"

namespace tessera::scheduler {
namespace {

using nlohmann::json;

// Values quoted in messages are cut here, so a 256 KiB annotation cannot make a 256 KiB message.
constexpr size_t kMaxQuotedBytes = 80;

// `text` as a JSON string literal, cut at a UTF-8 character boundary when it is long.
std::string Quote(std::string_view text) {
  const auto literal = [](std::string_view part) {
    return json(std::string(part)).dump(-1, ' ', false, json::error_handler_t::replace);
  };
  if (text.size() <= kMaxQuotedBytes) return literal(text);
  size_t end = kMaxQuotedBytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return literal(text.substr(0, end)) + "...";
}

// A JSON value as a message shows it: strings quoted, the rest as JSON, long ones cut.
std::string Show(const json& value) {
  if (value.is_string()) return Quote(value.get_ref<const std::string&>());
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() <= kMaxQuotedBytes ? text : text.substr(0, kMaxQuotedBytes) + "...";
}

Status FieldError(std::string_view what, const std::string& problem) {
  return Status::Error(std::string(what) + ": " + problem);
}

// Splits, checks each item against `allowed`, refuses repeats; the shared core of the list-valued
// enum annotations.
Result<std::vector<std::string>> ParseEnumList(std::string_view text, std::string_view what,
                                               const std::vector<std::string_view>& allowed) {
  std::vector<std::string> items = ParseCommaList(text);
  for (size_t i = 0; i < items.size(); ++i) {
    if (std::find(allowed.begin(), allowed.end(), items[i]) == allowed.end()) {
      std::vector<std::string> names(allowed.begin(), allowed.end());
      return FieldError(
          what, Quote(text) + ": " + Quote(items[i]) + " is not one of " + Join(names, ", "));
    }
    if (std::find(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(i), items[i]) !=
        items.begin() + static_cast<std::ptrdiff_t>(i)) {
      return FieldError(what, Quote(text) + ": " + Quote(items[i]) + " is named twice");
    }
  }
  return items;
}

// One resource of one container: the value from limits, else from requests, and where it was.
struct ResourceValue {
  const json* value = nullptr;  // null: in neither
  std::string where;
};

ResourceValue FindResource(const json* limits, const json* requests, const std::string& path,
                           const char* name) {
  for (auto [map, section] : {std::pair{limits, "limits"}, std::pair{requests, "requests"}}) {
    if (map == nullptr) continue;
    auto found = map->find(name);
    if (found != map->end()) {
      return {&*found, path + ".resources." + section + "[\"" + name + "\"]"};
    }
  }
  return {};
}

// The resource as an integer within [min, max]; nullopt when absent.
Result<std::optional<int64_t>> ReadResource(const ResourceValue& resource, int64_t min, int64_t max,
                                            std::string_view hint = {}) {
  if (resource.value == nullptr) return std::optional<int64_t>();
  Result<int64_t> quantity = ParseQuantityValue(*resource.value, resource.where);
  if (!quantity.ok()) return quantity.status();
  if (*quantity < 0) return FieldError(resource.where, std::to_string(*quantity) + " is negative");
  if (*quantity < min) {
    return FieldError(resource.where, std::to_string(*quantity) + " is under " +
                                          std::to_string(min) + std::string(hint));
  }
  if (*quantity > max) {
    return FieldError(resource.where,
                      std::to_string(*quantity) + " is over " + std::to_string(max));
  }
  return std::optional<int64_t>(*quantity);
}

// The object at `key` of `parent`, or null when absent or JSON null; an error when it is something
// other than an object.
Result<const json*> OptionalObject(const json& parent, const char* key, const std::string& where) {
  auto found = parent.find(key);
  if (found == parent.end() || found->is_null()) return static_cast<const json*>(nullptr);
  if (!found->is_object()) return FieldError(where, Show(*found) + " is not an object");
  return &*found;
}

Result<ContainerGpuRequest> ParseContainer(const json& container, std::string path, bool init) {
  if (!container.is_object()) return FieldError(path, Show(container) + " is not an object");
  ContainerGpuRequest request;
  request.init = init;
  if (auto name = container.find("name"); name != container.end() && !name->is_null()) {
    if (!name->is_string()) return FieldError(path + ".name", Show(*name) + " is not a string");
    request.container = name->get<std::string>();
  }

  const json* limits = nullptr;
  const json* requests = nullptr;
  Result<const json*> resources = OptionalObject(container, "resources", path + ".resources");
  if (!resources.ok()) return resources.status();
  if (*resources != nullptr) {
    Result<const json*> l = OptionalObject(**resources, "limits", path + ".resources.limits");
    if (!l.ok()) return l.status();
    Result<const json*> r = OptionalObject(**resources, "requests", path + ".resources.requests");
    if (!r.ok()) return r.status();
    limits = *l;
    requests = *r;
  }

  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  ResourceValue count = FindResource(limits, requests, path, kGpuCountResource);
  ResourceValue memory = FindResource(limits, requests, path, kGpuMemoryResource);
  ResourceValue percent = FindResource(limits, requests, path, kGpuMemoryPercentResource);
  ResourceValue cores = FindResource(limits, requests, path, kGpuCoresResource);
  ResourceValue priority = FindResource(limits, requests, path, kGpuPriorityResource);

  Result<std::optional<int64_t>> count_value = ReadResource(count, 0, kInt32Max);
  if (!count_value.ok()) return count_value.status();
  // Zero MiB would be a container that can allocate nothing; HAMi reads it as "not given", which
  // is what leaving the resource out says without the ambiguity.
  Result<std::optional<int64_t>> memory_value = ReadResource(
      memory, 1, kInt32Max, "; leave nvidia.com/gpumem out for the whole GPU's memory");
  if (!memory_value.ok()) return memory_value.status();
  Result<std::optional<int64_t>> percent_value =
      ReadResource(percent, 1, 100, "; a percentage is 1 to 100");
  if (!percent_value.ok()) return percent_value.status();
  Result<std::optional<int64_t>> cores_value = ReadResource(cores, 0, 100);
  if (!cores_value.ok()) return cores_value.status();
  Result<std::optional<int64_t>> priority_value = ReadResource(priority, 0, 1);
  if (!priority_value.ok()) return priority_value.status();

  if (memory_value->has_value() && percent_value->has_value()) {
    return FieldError(percent.where, "given together with " + memory.where +
                                         "; a container's GPU memory is one or the other");
  }
  bool other_gpu_resource =
      memory_value->has_value() || percent_value->has_value() || cores_value->has_value();
  if (count_value->has_value() && **count_value == 0 && other_gpu_resource) {
    return FieldError(count.where,
                      "0 GPUs beside gpumem, gpumem-percentage or gpucores; ask for "
                      "at least 1 or leave it out for the default");
  }
  request.count = static_cast<int32_t>(count_value->value_or(0));
  request.memory_mib = memory_value->value_or(0);
  request.memory_percent = static_cast<int32_t>(percent_value->value_or(0));
  request.cores = static_cast<int32_t>(cores_value->value_or(0));
  request.cores_given = cores_value->has_value();
  request.priority = static_cast<int32_t>(priority_value->value_or(-1));

  Result<const json*> security =
      OptionalObject(container, "securityContext", path + ".securityContext");
  if (!security.ok()) return security.status();
  if (*security != nullptr) {
    auto privileged = (*security)->find("privileged");
    if (privileged != (*security)->end() && !privileged->is_null()) {
      if (!privileged->is_boolean()) {
        return FieldError(path + ".securityContext.privileged",
                          Show(*privileged) + " is not true or false");
      }
      request.privileged = privileged->get<bool>();
    }
    const std::string capabilities_path = path + ".securityContext.capabilities";
    Result<const json*> capabilities =
        OptionalObject(**security, "capabilities", capabilities_path);
    if (!capabilities.ok()) return capabilities.status();
    if (*capabilities != nullptr) {
      auto add = (*capabilities)->find("add");
      if (add != (*capabilities)->end() && !add->is_null()) {
        if (!add->is_array()) {
          return FieldError(capabilities_path + ".add", Show(*add) + " is not a list");
        }
        for (const json& name : *add) {
          if (!name.is_string()) {
            return FieldError(capabilities_path + ".add", Show(name) + " is not a string");
          }
          const std::string text = name.get<std::string>();
          if (EqualsIgnoringCase(text, "SYS_ADMIN") || EqualsIgnoringCase(text, "CAP_SYS_ADMIN") ||
              EqualsIgnoringCase(text, "ALL")) {
            request.adds_sys_admin = text;
          }
        }
      }
    }
  }
  request.field_path = std::move(path);
  return request;
}

Status ParseContainerList(const json& spec, const char* key, bool init, bool required,
                          std::vector<ContainerGpuRequest>& out) {
  std::string where = std::string("spec.") + key;
  auto list = spec.find(key);
  if (list == spec.end() || list->is_null()) {
    return required ? FieldError(where, "missing") : Status::Ok();
  }
  if (!list->is_array()) return FieldError(where, Show(*list) + " is not an array");
  for (size_t i = 0; i < list->size(); ++i) {
    Result<ContainerGpuRequest> container =
        ParseContainer((*list)[i], where + "[" + std::to_string(i) + "]", init);
    if (!container.ok()) return container.status();
    out.push_back(std::move(*container));
  }
  return Status::Ok();
}

// The annotation's text, or nullopt when the pod does not carry it.
Result<std::optional<std::string_view>> Annotation(const json* annotations, const char* key,
                                                   std::string& where) {
  where = std::string("metadata.annotations[\"") + key + "\"]";
  if (annotations == nullptr) return std::optional<std::string_view>();
  auto found = annotations->find(key);
  if (found == annotations->end() || found->is_null()) return std::optional<std::string_view>();
  if (!found->is_string()) return FieldError(where, Show(*found) + " is not a string");
  return std::optional<std::string_view>(found->get_ref<const std::string&>());
}

Status ParseAnnotations(const json* annotations, PodGpuRequest& request) {
  std::string where;
  auto text = [&](const char* key) { return Annotation(annotations, key, where); };

  for (auto [key, list] : {std::pair{kUseGpuTypeAnnotation, &request.use_types},
                           std::pair{kNoUseGpuTypeAnnotation, &request.nouse_types},
                           std::pair{kUseGpuUuidAnnotation, &request.use_uuids},
                           std::pair{kNoUseGpuUuidAnnotation, &request.nouse_uuids}}) {
    Result<std::optional<std::string_view>> value = text(key);
    if (!value.ok()) return value.status();
    if (value->has_value()) *list = ParseCommaList(**value);
  }

  Result<std::optional<std::string_view>> mode = text(kVgpuModeAnnotation);
  if (!mode.ok()) return mode.status();
  if (mode->has_value()) {
    Result<std::string> parsed = ParseVgpuMode(**mode, where);
    if (!parsed.ok()) return parsed.status();
    request.vgpu_mode = std::move(*parsed);
  }

  Result<std::optional<std::string_view>> numa = text(kNumaBindAnnotation);
  if (!numa.ok()) return numa.status();
  if (numa->has_value()) {
    Result<bool> parsed = ParseBool(**numa, where);
    if (!parsed.ok()) return parsed.status();
    request.numa_bind = *parsed;
  }

  Result<std::optional<std::string_view>> node_policy = text(kNodePolicyAnnotation);
  if (!node_policy.ok()) return node_policy.status();
  if (node_policy->has_value()) {
    Result<std::string> parsed = ParseNodePolicy(**node_policy, where);
    if (!parsed.ok()) return parsed.status();
    request.node_policy = std::move(*parsed);
  }

  Result<std::optional<std::string_view>> gpu_policy = text(kGpuPolicyAnnotation);
  if (!gpu_policy.ok()) return gpu_policy.status();
  if (gpu_policy->has_value()) {
    Result<std::vector<std::string>> parsed = ParseGpuPolicy(**gpu_policy, where);
    if (!parsed.ok()) return parsed.status();
    request.gpu_policy = std::move(*parsed);
  }
  return Status::Ok();
}

}  // namespace

bool PodGpuRequest::wants_gpu() const {
  return std::any_of(containers.begin(), containers.end(),
                     [](const ContainerGpuRequest& c) { return c.asks_for_gpu(); });
}

int32_t PodGpuRequest::max_count() const {
  int32_t most = 0;
  for (const ContainerGpuRequest& container : containers) most = std::max(most, container.count);
  return most;
}

Result<PodGpuRequest> ParsePodGpuRequest(const json& pod) {
  if (!pod.is_object()) return Status::Error("pod: " + Show(pod) + " is not an object");
  Result<const json*> spec = OptionalObject(pod, "spec", "spec");
  if (!spec.ok()) return spec.status();
  if (*spec == nullptr) return Status::Error("spec: missing");

  PodGpuRequest request;
  if (Status s = ParseContainerList(**spec, "initContainers", true, false, request.containers);
      !s.ok()) {
    return s;
  }
  if (Status s = ParseContainerList(**spec, "containers", false, true, request.containers);
      !s.ok()) {
    return s;
  }
  if (!request.wants_gpu()) return request;

  Result<const json*> metadata = OptionalObject(pod, "metadata", "metadata");
  if (!metadata.ok()) return metadata.status();
  const json* annotations = nullptr;
  if (*metadata != nullptr) {
    Result<const json*> found = OptionalObject(**metadata, "annotations", "metadata.annotations");
    if (!found.ok()) return found.status();
    annotations = *found;
  }
  if (Status s = ParseAnnotations(annotations, request); !s.ok()) return s;
  return request;
}

Status CheckPodGpuRequest(const PodGpuRequest& request, int32_t max_gpus_per_node) {
  if (!request.wants_gpu()) return Status::Ok();
  for (const ContainerGpuRequest& container : request.containers) {
    if (container.privileged) {
      return FieldError(container.field_path + ".securityContext.privileged",
                        "true in a pod that asks for GPUs; a privileged container sees every GPU "
                        "on the node, so its limits could not hold");
    }
    if (!container.adds_sys_admin.empty()) {
      return FieldError(container.field_path + ".securityContext.capabilities.add",
                        container.adds_sys_admin +
                            " in a pod that asks for GPUs; with CAP_SYS_ADMIN a container can "
                            "unmount its read-only limits file, so its limits could not hold");
    }
    if (max_gpus_per_node > 0 && container.count > max_gpus_per_node) {
      return FieldError(container.field_path + ".resources.limits[\"" + kGpuCountResource + "\"]",
                        std::to_string(container.count) + " is more GPUs than any node has (" +
                            std::to_string(max_gpus_per_node) + ")");
    }
  }
  return Status::Ok();
}

Result<int64_t> ParseQuantityValue(const json& value, std::string_view what) {
  if (value.is_number_integer() && !value.is_number_unsigned()) return value.get<int64_t>();
  if (value.is_number_unsigned()) {
    uint64_t number = value.get<uint64_t>();
    if (number > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FieldError(what, Show(value) + " is too large");
    }
    return static_cast<int64_t>(number);
  }
  if (value.is_number_float()) return FieldError(what, Show(value) + " is not a whole number");
  if (value.is_string()) return ParseQuantity(value.get_ref<const std::string&>(), what);
  return FieldError(what, Show(value) + " is not a quantity");
}

Result<int64_t> ParseQuantity(std::string_view text, std::string_view what) {
  struct Suffix {
    std::string_view name;
    uint64_t multiplier;
  };
  static constexpr std::array<Suffix, 6> kSuffixes = {{{"Ki", uint64_t{1} << 10},
                                                       {"Mi", uint64_t{1} << 20},
                                                       {"Gi", uint64_t{1} << 30},
                                                       {"k", 1'000},
                                                       {"M", 1'000'000},
                                                       {"G", 1'000'000'000}}};
  auto malformed = [&] {
    return FieldError(what, Quote(text) +
                                " is not a whole-number quantity (digits, then at most one of "
                                "k, M, G, Ki, Mi, Gi)");
  };
  std::string_view rest = text;
  bool negative = false;
  if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
    negative = rest[0] == '-';
    rest.remove_prefix(1);
  }
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0) return malformed();
  std::string_view suffix = rest.substr(digits);
  uint64_t multiplier = 1;
  if (!suffix.empty()) {
    auto found = std::find_if(kSuffixes.begin(), kSuffixes.end(),
                              [&](const Suffix& s) { return s.name == suffix; });
    if (found == kSuffixes.end()) return malformed();
    multiplier = found->multiplier;
  }
  // The magnitude may reach 2^63 only for a negative value.
  const uint64_t limit =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1U : 0U);
  uint64_t magnitude = 0;
  for (size_t i = 0; i < digits; ++i) {
    uint64_t digit = static_cast<uint64_t>(rest[i] - '0');
    if (magnitude > (limit - digit) / 10) return FieldError(what, Quote(text) + " is too large");
    magnitude = magnitude * 10 + digit;
  }
  if (magnitude != 0 && multiplier > limit / magnitude) {
    return FieldError(what, Quote(text) + " is too large");
  }
  magnitude *= multiplier;
  if (!negative) return static_cast<int64_t>(magnitude);
  // -2^63 has no positive counterpart in int64; negate in unsigned arithmetic.
  return static_cast<int64_t>(~magnitude + 1);
}

std::vector<std::string> ParseCommaList(std::string_view text) {
  std::vector<std::string> items;
  for (std::string_view piece : Split(text, ',')) {
    std::string_view item = Trim(piece);
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

Result<bool> ParseBool(std::string_view text, std::string_view what) {
  std::string_view word = Trim(text);
  if (EqualsIgnoringCase(word, "true")) return true;
  if (EqualsIgnoringCase(word, "false")) return false;
  return FieldError(what, Quote(text) + " is not true or false");
}

Result<std::string> ParseNodePolicy(std::string_view text, std::string_view what) {
  std::string_view word = Trim(text);
  if (word.empty() || word == "binpack" || word == "spread") return std::string(word);
  return FieldError(what, Quote(text) + " is not binpack or spread");
}

Result<std::vector<std::string>> ParseGpuPolicy(std::string_view text, std::string_view what) {
  return ParseEnumList(text, what, {"spread", "binpack", "topology-aware", "mutex", "numa"});
}

Result<std::string> ParseVgpuMode(std::string_view text, std::string_view what) {
  Result<std::vector<std::string>> modes = ParseEnumList(text, what, {"hami-core", "mig", "mps"});
  if (!modes.ok()) return modes.status();
  return Join(*modes, ",");
}

}  // namespace tessera::scheduler
