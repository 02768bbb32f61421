#include "node/allocation.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <tuple>

namespace tessera::node {

std::vector<std::string> PreferredDevices(const Resource& resource,
                                          const std::vector<std::string>& available,
                                          const std::vector<std::string>& must_include, int size) {
  std::vector<const PluginDevice*> chosen;
  std::set<std::string> taken;
  for (const auto& id : must_include) {
    const PluginDevice* device = resource.Find(id);
    if (device != nullptr && taken.insert(id).second) chosen.push_back(device);
  }
  std::vector<const PluginDevice*> candidates;
  for (const auto& id : available) {
    const PluginDevice* device = resource.Find(id);
    if (device != nullptr && taken.insert(id).second) candidates.push_back(device);
  }
  const size_t wanted = size > 0 ? static_cast<size_t>(size) : 0;
  if (chosen.size() >= wanted) {
    std::vector<std::string> ids;
    for (const auto* device : chosen) ids.push_back(device->id);
    return ids;
  }

  // The NUMA node to keep the container on.
  int anchor = chosen.empty() ? -1 : chosen.front()->numa_node;
  if (chosen.empty()) {
    std::map<int, size_t> per_numa;
    for (const auto* device : candidates) ++per_numa[device->numa_node];
    // Best fit among the NUMA nodes with enough devices; else the one with the most.
    bool anchor_fits = false;
    size_t anchor_count = 0;
    for (const auto& [numa, count] : per_numa) {
      const bool fits = count >= wanted;
      const bool better = anchor_count == 0 || (fits && !anchor_fits) ||
                          (fits && count < anchor_count) ||
                          (!fits && !anchor_fits && count > anchor_count);
      if (better) {
        anchor = numa;
        anchor_fits = fits;
        anchor_count = count;
      }
    }
  }

  // Replicas in use per GPU: the resource's devices of that GPU that kubelet did not offer.
  std::map<std::string, int> in_use;
  for (const auto& device : resource.devices) ++in_use[device.gpu_uuid];
  for (const auto& id : available) {
    const PluginDevice* device = resource.Find(id);
    if (device != nullptr) --in_use[device->gpu_uuid];
  }
  std::set<std::string> gpus_chosen;
  for (const auto* device : chosen) {
    gpus_chosen.insert(device->gpu_uuid);
    ++in_use[device->gpu_uuid];
  }
  while (chosen.size() < wanted && !candidates.empty()) {
    auto key = [&](const PluginDevice* device) {
      const auto it = in_use.find(device->gpu_uuid);
      return std::make_tuple(gpus_chosen.count(device->gpu_uuid) ? 1 : 0,
                             device->numa_node == anchor ? 0 : 1,
                             it == in_use.end() ? 0 : it->second, device->gpu_index, device->id);
    };
    auto best = std::min_element(candidates.begin(), candidates.end(),
                                 [&](const auto* a, const auto* b) { return key(a) < key(b); });
    chosen.push_back(*best);
    gpus_chosen.insert((*best)->gpu_uuid);
    ++in_use[(*best)->gpu_uuid];
    candidates.erase(best);
  }
  std::vector<std::string> ids;
  for (const auto* device : chosen) ids.push_back(device->id);
  return ids;
}

Result<ContainerAllocation> AllocateContainer(const Resource& resource,
                                              const std::vector<std::string>& device_ids,
                                              const DeviceNodes& nodes) {
  ContainerAllocation allocation;
  std::vector<std::string> visible;
  std::set<unsigned> minors;
  for (const auto& id : device_ids) {
    const PluginDevice* device = resource.Find(id);
    if (device == nullptr) {
      return Status::Error("Allocate: " + resource.name + " has no device \"" + id + "\"");
    }
    if (std::find(visible.begin(), visible.end(), device->visible_id) == visible.end()) {
      visible.push_back(device->visible_id);
    }
    minors.insert(device->minor);
  }
  std::string list;
  for (const auto& id : visible) list += (list.empty() ? "" : ",") + id;
  allocation.envs["NVIDIA_VISIBLE_DEVICES"] = list;
  std::vector<std::string> names = {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"};
  for (unsigned minor : minors) names.push_back("nvidia" + std::to_string(minor));
  for (const auto& name : names) {
    const std::string host = nodes.root + "/" + name;
    if (nodes.exists(host)) allocation.devices.push_back({"/dev/" + name, host});
  }
  return allocation;
}

bool DeviceNodes::DeviceNodeExists(const std::string& host_path) {
  struct stat st = {};
  return stat(host_path.c_str(), &st) == 0;
}

}  // namespace tessera::node
