#include "node/allocation.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "common/strings.h"

namespace tessera::node {

std::vector<std::string> PreferredDevices(const Resource& resource,
                                          const std::vector<std::string>& available,
                                          const std::vector<std::string>& must_include, int size,
                                          const TopologyLevels& topology) {
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
    ids.reserve(chosen.size());
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
  // The farthest link from `device`'s GPU to a GPU already chosen (0 when none is).
  auto distance = [&](const PluginDevice* device) {
    int farthest = 0;
    for (const auto* other : chosen) {
      if (other->gpu_index == device->gpu_index) continue;
      const auto pair = std::minmax(other->gpu_index, device->gpu_index);
      const auto it = topology.find({pair.first, pair.second});
      farthest = std::max(farthest, it == topology.end() ? 0 : it->second);
    }
    return farthest;
  };
  // A multi-GPU container with nothing chosen yet starts from the GPU with the closest partners:
  // of four GPUs where 2 and 3 share a switch, a two-GPU container gets 2 and 3, not 0 and 2.
  if (chosen.empty() && wanted >= 2 && !topology.empty()) {
    auto level = [&](unsigned a, unsigned b) {
      const auto pair = std::minmax(a, b);
      const auto it = topology.find({pair.first, pair.second});
      return it == topology.end() ? 0 : it->second;
    };
    const PluginDevice* seed = nullptr;
    int seed_cost = 0;
    for (const auto* device : candidates) {
      if (device->numa_node != anchor) continue;
      std::map<unsigned, int> partners;  // other GPUs on the anchor, by index: their distance
      for (const auto* other : candidates) {
        if (other->gpu_index != device->gpu_index && other->numa_node == anchor) {
          partners[other->gpu_index] = level(device->gpu_index, other->gpu_index);
        }
      }
      std::vector<int> distances;
      distances.reserve(partners.size());
      for (const auto& [index, link] : partners) distances.push_back(link);
      std::sort(distances.begin(), distances.end());
      if (distances.size() < wanted - 1) continue;
      const int cost = distances[wanted - 2];
      if (seed == nullptr || cost < seed_cost) {
        seed = device;
        seed_cost = cost;
      }
    }
    if (seed != nullptr) {
      chosen.push_back(seed);
      gpus_chosen.insert(seed->gpu_uuid);
      ++in_use[seed->gpu_uuid];
      candidates.erase(std::find(candidates.begin(), candidates.end(), seed));
    }
  }
  while (chosen.size() < wanted && !candidates.empty()) {
    auto key = [&](const PluginDevice* device) {
      const auto it = in_use.find(device->gpu_uuid);
      return std::make_tuple(gpus_chosen.count(device->gpu_uuid) ? 1 : 0,
                             device->numa_node == anchor ? 0 : 1, distance(device),
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
  ids.reserve(chosen.size());
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
  allocation.envs["NVIDIA_VISIBLE_DEVICES"] = Join(visible, ",");
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
