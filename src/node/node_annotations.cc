#include "node/node_annotations.h"

#include <nlohmann/json.hpp>

#include "common/units.h"
#include "node/devices.h"

namespace tessera::node {
namespace {

// HAMi's mode names: hami-core for a GPU it shares, mig for MIG. Whole and time-sliced GPUs have
// no HAMi name; they carry Tessera's (HAMi's scheduler only takes hami-core or mig devices).
std::string HamiMode(GpuMode mode) {
  switch (mode) {
    case GpuMode::kShared:
      return "hami-core";
    case GpuMode::kMig:
      return "mig";
    default:
      return std::string(GpuModeName(mode));
  }
}

// The resource a GPU's devices are advertised under; "" for MIG, whose instances each have
// their profile's.
std::string ResourceOf(GpuMode mode) {
  switch (mode) {
    case GpuMode::kTimeSliced:
      return kTimeSlicedResource;
    case GpuMode::kMig:
      return "";
    default:
      return kWholeResource;
  }
}

}  // namespace

std::map<std::string, std::string> NodeAnnotations(const Registry& registry,
                                                   const NodeConfig& config) {
  const auto health = registry.AllHealth();
  nlohmann::json hami = nlohmann::json::array();
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& gpu : registry.inventory().gpus) {
    auto mode_it = registry.modes().find(gpu.index);
    const GpuMode mode = mode_it == registry.modes().end() ? GpuMode::kWhole : mode_it->second;
    const int replicas = config.ReplicasOf(gpu.index);
    // Devices advertised for this GPU: HAMi's `count` (for a shared GPU, its deviceSplitCount:
    // how many containers may hold a share of it at once).
    const int count = mode == GpuMode::kTimeSliced || mode == GpuMode::kShared ? replicas
                      : mode == GpuMode::kMig ? static_cast<int>(gpu.mig_instances.size())
                                              : 1;
    auto h = health.find(gpu.uuid);
    const bool healthy = h == health.end() || h->second.healthy;

    // HAMi's DeviceInfo: zero values are left out, as its omitempty tags do.
    nlohmann::json device = {
        {"id", gpu.uuid},   {"count", count},   {"devmem", gpu.memory_bytes / kMiB},
        {"devcore", 100},   {"type", gpu.name}, {"mode", HamiMode(mode)},
        {"health", healthy}};
    if (gpu.index != 0) device["index"] = gpu.index;
    if (gpu.numa_node > 0) device["numa"] = gpu.numa_node;
    if (mode == GpuMode::kMig) {
      nlohmann::json profiles = nlohmann::json::array();
      for (const auto& instance : gpu.mig_instances) {
        profiles.push_back(
            {{"name", instance.profile}, {"memoryMB", instance.memory_bytes / kMiB}});
      }
      device["migProfiles"] = profiles;
    }
    hami.push_back(device);

    nlohmann::json ours = {{"index", gpu.index},    {"uuid", gpu.uuid},
                           {"model", gpu.name},     {"memoryMiB", gpu.memory_bytes / kMiB},
                           {"numa", gpu.numa_node}, {"mode", std::string(GpuModeName(mode))},
                           {"healthy", healthy}};
    if (!healthy) ours["reason"] = h->second.reason;
    if (mode == GpuMode::kTimeSliced || mode == GpuMode::kShared) ours["replicas"] = replicas;
    // Added in place (version stays 1: readers of the old fields are unaffected): what the
    // scheduler needs to match a GPU to kubelet's devices.
    ours["count"] = count;
    if (mode != GpuMode::kMig) ours["resource"] = ResourceOf(mode);
    if (mode == GpuMode::kMig) {
      nlohmann::json instances = nlohmann::json::array();
      for (const auto& instance : gpu.mig_instances) {
        instances.push_back({{"uuid", instance.uuid},
                             {"profile", instance.profile},
                             {"memoryMiB", instance.memory_bytes / kMiB},
                             {"gpuInstanceId", instance.gpu_instance_id}});
      }
      ours["mig"] = instances;
    }
    gpus.push_back(ours);
  }
  nlohmann::json tessera = {
      {"version", 1}, {"driver", registry.inventory().driver_version}, {"gpus", gpus}};
  // Names come from the driver: bytes that are not UTF-8 become U+FFFD rather than an exception.
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
  return {{kHamiRegisterAnnotation, hami.dump(-1, ' ', false, kReplace)},
          {kTesseraGpusAnnotation, tessera.dump(-1, ' ', false, kReplace)}};
}

}  // namespace tessera::node
