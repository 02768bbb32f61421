#include "node/devices.h"

#include <algorithm>

#include "common/strings.h"

namespace tessera::node {
namespace {

std::string IndexRange(const Inventory& inventory) {
  if (inventory.gpus.empty()) return "this node has no GPU";
  if (inventory.gpus.size() == 1) return "this node has GPU 0 only";
  return "this node has GPUs 0-" + std::to_string(inventory.gpus.size() - 1);
}

PluginDevice DeviceOf(const Gpu& gpu, GpuMode mode) {
  PluginDevice device;
  device.id = gpu.uuid;
  device.visible_id = gpu.uuid;
  device.gpu_uuid = gpu.uuid;
  device.gpu_index = gpu.index;
  device.minor = gpu.minor;
  device.numa_node = gpu.numa_node;
  device.mode = mode;
  return device;
}

Status CheckMig(const NodeConfig& config, const GpuConfig& entry, const Gpu& gpu) {
  const std::string where = config.source + ": " + entry.field;
  if (!gpu.mig_enabled) {
    return Status::Error(where + ".mode: mig, but MIG mode is off on GPU " +
                         std::to_string(gpu.index) + " (" + gpu.name + ")");
  }
  for (size_t i = 0; i < entry.mig_layout.size(); ++i) {
    const auto& profile = entry.mig_layout[i];
    if (std::find(gpu.mig_profiles.begin(), gpu.mig_profiles.end(), profile) ==
        gpu.mig_profiles.end()) {
      return Status::Error(where + ".mig[" + std::to_string(i) + "]: GPU " +
                           std::to_string(gpu.index) + " (" + gpu.name + ") has no MIG profile \"" +
                           profile + "\" (it offers " + Join(gpu.mig_profiles, ", ") + ")");
    }
  }
  if (!entry.mig_layout.empty()) {
    std::vector<std::string> expected = entry.mig_layout;
    std::vector<std::string> present;
    for (const auto& instance : gpu.mig_instances) present.push_back(instance.profile);
    std::sort(expected.begin(), expected.end());
    std::sort(present.begin(), present.end());
    if (expected != present) {
      return Status::Error(where + ".mig: [" + Join(entry.mig_layout, ", ") + "], but GPU " +
                           std::to_string(gpu.index) + " has [" + Join(present, ", ") + "]");
    }
  }
  return Status::Ok();
}

// An extended resource name's name part must be a qualified name (alphanumerics, '-', '_', '.',
// beginning and ending alphanumeric, at most 63 characters); a MIG variant's '+' is not allowed,
// so "1g.10gb+me" is advertised as nvidia.com/mig-1g.10gb.me.
std::string MigResourceName(const std::string& profile) {
  std::string name = profile;
  std::replace(name.begin(), name.end(), '+', '.');
  return kMigResourcePrefix + name;
}

bool IsQualifiedName(const std::string& resource) {
  const size_t slash = resource.find('/');
  const std::string name = slash == std::string::npos ? resource : resource.substr(slash + 1);
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

}  // namespace

std::string ReplicaId(const std::string& gpu_uuid, int replica) {
  return gpu_uuid + "::" + std::to_string(replica);
}

const PluginDevice* Resource::Find(const std::string& id) const {
  for (const auto& device : devices) {
    if (device.id == id) return &device;
  }
  return nullptr;
}

std::map<unsigned, GpuMode> GpuModes(const NodeConfig& config, const Inventory& inventory) {
  std::map<unsigned, GpuMode> modes;
  for (const auto& gpu : inventory.gpus) {
    const GpuConfig* entry = config.Find(gpu.index);
    modes[gpu.index] = entry != nullptr ? entry->mode : config.default_mode;
  }
  return modes;
}

Result<std::vector<Resource>> PlanResources(const NodeConfig& config, const Inventory& inventory) {
  for (const auto& entry : config.gpus) {
    if (entry.index >= inventory.gpus.size()) {
      return Status::Error(config.source + ": " + entry.field +
                           ".index: " + std::to_string(entry.index) + " does not exist (" +
                           IndexRange(inventory) + ")");
    }
  }
  std::map<std::string, Resource> resources;
  auto add = [&](const std::string& name, PluginDevice device) {
    auto& resource = resources[name];
    resource.name = name;
    resource.devices.push_back(std::move(device));
  };
  for (const auto& gpu : inventory.gpus) {
    const GpuConfig* entry = config.Find(gpu.index);
    const GpuMode mode = entry != nullptr ? entry->mode : config.default_mode;
    if (gpu.mig_enabled && mode != GpuMode::kMig) {
      // A MIG-enabled GPU cannot run a process on the whole device.
      return Status::Error(
          config.source + ": " +
          (entry != nullptr ? entry->field + ".mode" : std::string("defaultMode")) + ": " +
          std::string(GpuModeName(mode)) + ", but GPU " + std::to_string(gpu.index) + " (" +
          gpu.name + ") is in MIG mode; set its mode to mig");
    }
    switch (mode) {
      case GpuMode::kWhole:
        add(kWholeResource, DeviceOf(gpu, mode));
        break;
      case GpuMode::kShared:
      case GpuMode::kTimeSliced:
        for (int replica = 0; replica < config.ReplicasOf(gpu.index); ++replica) {
          PluginDevice device = DeviceOf(gpu, mode);
          device.id = ReplicaId(gpu.uuid, replica);
          device.replica = replica;
          add(mode == GpuMode::kShared ? kWholeResource : kTimeSlicedResource, std::move(device));
        }
        break;
      case GpuMode::kMig: {
        auto status = CheckMig(config, *entry, gpu);
        if (!status.ok()) return status;
        for (const auto& instance : gpu.mig_instances) {
          PluginDevice device = DeviceOf(gpu, mode);
          device.id = instance.uuid;
          device.visible_id = instance.uuid;
          const std::string name = MigResourceName(instance.profile);
          if (!IsQualifiedName(name)) {
            return Status::Error("GPU " + std::to_string(gpu.index) + " (" + gpu.name +
                                 ") has a MIG instance of profile \"" + instance.profile +
                                 "\", which makes no valid resource name (" + name + ")");
          }
          add(name, std::move(device));
        }
        break;
      }
    }
  }
  std::vector<Resource> out;
  out.reserve(resources.size());
  for (auto& [name, resource] : resources) out.push_back(std::move(resource));
  return out;
}

}  // namespace tessera::node
