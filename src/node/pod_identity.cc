#include "node/pod_identity.h"

#include <algorithm>
#include <set>

#include "common/strings.h"
#include "shim/environment.h"

namespace tessera::node {
namespace {

std::string StringAt(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::vector<std::string> Sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> GrantUuids(const std::vector<kube::GpuGrant>& gpus) {
  std::vector<std::string> uuids;
  uuids.reserve(gpus.size());
  for (const auto& gpu : gpus) uuids.push_back(gpu.uuid);
  return uuids;
}

const std::vector<std::string>* DevicesOf(const PodResourcesContainer& container,
                                          const std::string& resource) {
  auto it = container.devices.find(resource);
  return it == container.devices.end() ? nullptr : &it->second;
}

}  // namespace

std::string PodKey(const std::string& namespace_name, const std::string& name) {
  return namespace_name + "/" + name;
}

CachedPod CachedPodFromJson(const nlohmann::json& pod) {
  CachedPod out;
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& metadata =
      pod.is_object() && pod.contains("metadata") ? pod["metadata"] : empty;
  out.namespace_name = StringAt(metadata, "namespace");
  out.name = StringAt(metadata, "name");
  out.uid = StringAt(metadata, "uid");
  out.deleting = metadata.is_object() && metadata.contains("deletionTimestamp") &&
                 !metadata["deletionTimestamp"].is_null();
  if (pod.is_object() && pod.contains("status")) out.phase = StringAt(pod["status"], "phase");
  if (metadata.is_object() && metadata.contains("annotations")) {
    const std::string text = StringAt(metadata["annotations"], kube::kAllocationAnnotation);
    if (!text.empty()) {
      auto allocation = kube::DecodePodAllocation(text);
      if (allocation.ok()) {
        out.allocation = std::move(*allocation);
      } else {
        out.allocation_error = allocation.status().message();
      }
    }
  }
  return out;
}

PendingIdentity FindPendingContainer(const std::vector<PodResourcesPod>& listed,
                                     const PodSnapshot& pods, const std::string& node,
                                     const std::string& resource, int allocation_size) {
  PendingIdentity identity;
  std::vector<IdentifiedContainer> candidates;
  for (const auto& entry : listed) {
    const std::string key = PodKey(entry.namespace_name, entry.name);
    auto cached = pods.find(key);
    if (cached == pods.end()) {
      identity.missing_pods.push_back(key);
      continue;
    }
    const CachedPod& pod = cached->second;
    if (pod.Terminal() || pod.deleting || !pod.allocation || pod.allocation->node != node) {
      continue;
    }
    for (const auto& grant : pod.allocation->containers) {
      if (grant.gpus.empty()) continue;
      auto listed_container =
          std::find_if(entry.containers.begin(), entry.containers.end(),
                       [&](const PodResourcesContainer& c) { return c.name == grant.name; });
      // PodResources lists app containers only; an init container's devices are never
      // recorded there, so an init container is a candidate only while it is listed.
      if (listed_container == entry.containers.end()) continue;
      const auto* devices = DevicesOf(*listed_container, resource);
      if (devices != nullptr && !devices->empty()) continue;  // allocated already
      if (static_cast<int>(grant.gpus.size()) == allocation_size) {
        candidates.push_back({pod.namespace_name, pod.name, grant.name, grant.gpus});
      }
      break;  // kubelet allocates a pod's containers in order: only the first can be next
    }
  }
  if (candidates.empty()) {
    identity.why = "no pod on the node waits for " + resource + " devices of a " +
                   std::to_string(allocation_size) + "-GPU grant";
    return identity;
  }
  const auto gpus = Sorted(GrantUuids(candidates.front().gpus));
  for (const auto& other : candidates) {
    if (Sorted(GrantUuids(other.gpus)) != gpus) {
      identity.why =
          "ambiguous: " + PodKey(candidates.front().namespace_name, candidates.front().pod) +
          " and " + PodKey(other.namespace_name, other.pod) + " both wait, for different GPUs";
      return identity;
    }
  }
  identity.container = candidates.front();
  return identity;
}

Result<DeviceHolder> FindDeviceHolder(const std::vector<PodResourcesPod>& listed,
                                      const std::string& resource,
                                      const std::vector<std::string>& device_ids) {
  const auto wanted = Sorted(device_ids);
  std::vector<DeviceHolder> holders;
  for (const auto& pod : listed) {
    for (const auto& container : pod.containers) {
      const auto* devices = DevicesOf(container, resource);
      if (devices != nullptr && Sorted(*devices) == wanted) {
        holders.push_back({pod.namespace_name, pod.name, container.name});
      }
    }
  }
  const std::string ids = Join(wanted, ",");
  if (holders.empty()) {
    return Status::Error("no container holds " + resource + " devices " + ids +
                         " (kubelet's PodResources lists none)");
  }
  if (holders.size() > 1) {
    return Status::Error(resource + " devices " + ids + " are held by " +
                         PodKey(holders[0].namespace_name, holders[0].pod) + " container " +
                         holders[0].container + " and by " +
                         PodKey(holders[1].namespace_name, holders[1].pod) + " container " +
                         holders[1].container + ", per kubelet's PodResources");
  }
  return holders.front();
}

std::vector<const PluginDevice*> ContainerGpus(const Resource& resource,
                                               const std::vector<std::string>& device_ids) {
  std::vector<const PluginDevice*> gpus;
  for (const auto& id : device_ids) {
    const PluginDevice* device = resource.Find(id);
    if (device == nullptr) continue;
    const bool seen = std::any_of(gpus.begin(), gpus.end(), [&](const PluginDevice* other) {
      return other->visible_id == device->visible_id;
    });
    if (!seen) gpus.push_back(device);
  }
  std::sort(gpus.begin(), gpus.end(), [](const PluginDevice* a, const PluginDevice* b) {
    return a->gpu_index < b->gpu_index;
  });
  return gpus;
}

Result<IdentifiedContainer> CheckGrant(const CachedPod& pod, const std::string& container,
                                       const std::string& node, const Resource& resource,
                                       const std::vector<std::string>& device_ids) {
  const std::string who = "pod " + PodKey(pod.namespace_name, pod.name) + " container " + container;
  const auto gpus = ContainerGpus(resource, device_ids);
  std::vector<std::string> given;
  given.reserve(gpus.size());
  for (const auto* device : gpus) given.push_back(device->gpu_uuid);
  const std::string given_text = "kubelet gave it GPUs [" + Join(given, ",") + "]";
  if (!pod.allocation_error.empty()) {
    return Status::Error(who + ": " + pod.allocation_error + "; " + given_text);
  }
  if (!pod.allocation) {
    return Status::Error(who + " has no " + std::string(kube::kAllocationAnnotation) +
                         " annotation (was it scheduled by tessera-scheduler?); " + given_text +
                         " of which some are shared, and a share needs the scheduler's limits");
  }
  if (pod.allocation->node != node) {
    return Status::Error(who + ": the scheduler decided node " + pod.allocation->node + ", not " +
                         node + "; " + given_text);
  }
  const kube::ContainerGrant* grant = pod.allocation->Find(container);
  if (grant == nullptr) {
    return Status::Error(who + ": the allocation has no grant for the container; " + given_text);
  }
  const std::string decided = "the scheduler decided [" + Join(GrantUuids(grant->gpus), ",") + "]";
  if (gpus.size() != device_ids.size() || Sorted(given) != Sorted(GrantUuids(grant->gpus))) {
    return Status::Error(who + ": " + given_text + " (devices " + Join(Sorted(device_ids), ",") +
                         "), but " + decided +
                         "; refusing to start it with GPUs or limits "
                         "that are not its own");
  }
  IdentifiedContainer identified{pod.namespace_name, pod.name, container, {}};
  for (const auto* device : gpus) {
    for (const auto& gpu : grant->gpus) {
      if (gpu.uuid == device->gpu_uuid) identified.gpus.push_back(gpu);
    }
  }
  return identified;
}

std::string LimitsFileText(const IdentifiedContainer& container) {
  region::RegionConfig limits;
  std::vector<std::string> uuids;
  for (size_t i = 0; i < container.gpus.size() && i < region::kMaxDevices; ++i) {
    const auto& gpu = container.gpus[i];
    limits.devices[i].memory_bytes = static_cast<uint64_t>(gpu.memory_mib) << 20;
    limits.devices[i].sm_percent = static_cast<uint32_t>(gpu.cores);
    uuids.push_back(gpu.uuid);
  }
  return shim::FormatLimitsFile(limits, uuids,
                                "tessera-node: limits of pod " +
                                    PodKey(container.namespace_name, container.pod) +
                                    " container " + container.container);
}

}  // namespace tessera::node
