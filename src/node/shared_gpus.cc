#include "node/shared_gpus.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "common/log.h"
#include "common/strings.h"
#include "common/units.h"
#include "shim/config.h"  // the limits file's path, where the shim reads it
#include "shim/environment.h"

namespace tessera::node {
namespace {

std::map<std::string, uint64_t> SharedCapacity(const Registry& registry) {
  std::map<std::string, uint64_t> capacity;
  for (const auto& gpu : registry.inventory().gpus) {
    auto mode = registry.modes().find(gpu.index);
    if (mode != registry.modes().end() && mode->second == GpuMode::kShared) {
      capacity[gpu.uuid] = gpu.memory_bytes;
    }
  }
  return capacity;
}

std::map<std::string, uint64_t> BytesOf(const IdentifiedContainer& container) {
  std::map<std::string, uint64_t> bytes;
  for (const auto& gpu : container.gpus) {
    bytes[gpu.uuid] += static_cast<uint64_t>(gpu.memory_mib) * kMiB;
  }
  return bytes;
}

std::vector<std::string> Sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

// When the directory was made: its name starts with wall-clock nanoseconds.
std::chrono::system_clock::time_point CreatedAt(const StoredAllocation& allocation) {
  long long nanoseconds = 0;
  for (char c : allocation.id) {
    if (c < '0' || c > '9') break;
    nanoseconds = nanoseconds * 10 + (c - '0');
  }
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanoseconds)));
}

}  // namespace

SharedGpus::SharedGpus(Registry& registry, const Resource& resource, AllocationStore store,
                       PodCache* cache, PodResourcesLister lister, SharedGpuOptions options)
    : registry_(registry),
      resource_(resource),
      cache_(cache),
      lister_(std::move(lister)),
      options_(std::move(options)),
      store_(std::move(store)),
      ledger_(SharedCapacity(registry)) {
  PublishSums();
}

void SharedGpus::Recover() {
  std::lock_guard lock(mutex_);
  size_t claimed = 0;
  for (const auto& allocation : store_.List()) {
    if (!allocation.owner) continue;
    if (Status s = ledger_.Set(allocation.id, BytesOf(*allocation.owner)); !s.ok()) {
      log::Write(log::Level::kError, "node", "%s (pod %s): %s", allocation.path.c_str(),
                 PodKey(allocation.owner->namespace_name, allocation.owner->pod).c_str(),
                 s.message().c_str());
      continue;
    }
    ++claimed;
  }
  if (claimed > 0) {
    log::Write(log::Level::kWarn, "node", "shared GPUs: %zu container allocations found in %s",
               claimed, store_.state_dir().c_str());
  }
  PublishSums();
}

bool SharedGpus::AnyShared(const std::vector<std::string>& device_ids) const {
  return std::any_of(device_ids.begin(), device_ids.end(), [&](const std::string& id) {
    const PluginDevice* device = resource_.Find(id);
    return device != nullptr && device->mode == GpuMode::kShared;
  });
}

std::vector<std::string> SharedGpus::Prefer(const std::vector<std::string>& available,
                                            const std::vector<std::string>& must_include,
                                            int size) {
  const auto& topology = registry_.inventory().topology;
  auto fallback = [&](const std::string& why) {
    log::Write(log::Level::kInfo, "node",
               "GetPreferredAllocation %s (%d): %s; the usual preference", resource_.name.c_str(),
               size, why.c_str());
    return PreferredDevices(resource_, available, must_include, size, topology);
  };
  if (cache_ == nullptr) return fallback(options_.unavailable);
  auto listed = lister_();
  if (!listed.ok()) return fallback(listed.status().message());
  PodSnapshot pods = cache_->Snapshot();
  PendingIdentity identity =
      FindPendingContainer(*listed, pods, options_.node_name, resource_.name, size);
  if (!identity.container && !identity.missing_pods.empty()) {
    // kubelet lists a pod the watch has not delivered yet (it was bound moments ago).
    pods = cache_->WaitFor(identity.missing_pods,
                           std::chrono::steady_clock::now() + options_.cache_wait);
    identity = FindPendingContainer(*listed, pods, options_.node_name, resource_.name, size);
  }
  if (!identity.container) return fallback(identity.why);
  const auto& container = *identity.container;
  std::set<std::string> granted;
  for (const auto& gpu : container.gpus) granted.insert(gpu.uuid);
  std::vector<std::string> restricted;
  for (const auto& id : available) {
    const PluginDevice* device = resource_.Find(id);
    if (device != nullptr && granted.count(device->gpu_uuid)) restricted.push_back(id);
  }
  auto chosen = PreferredDevices(resource_, restricted, must_include, size, topology);
  std::set<std::string> chosen_gpus;
  for (const auto& id : chosen) {
    if (const PluginDevice* device = resource_.Find(id)) chosen_gpus.insert(device->gpu_uuid);
  }
  const std::string who = "pod " + PodKey(container.namespace_name, container.pod) + " container " +
                          container.container;
  if (chosen_gpus != granted || chosen.size() != static_cast<size_t>(size)) {
    return fallback(who + " was granted GPUs that have no free replica among those offered");
  }
  log::Write(log::Level::kInfo, "node", "GetPreferredAllocation %s: %s -> %s",
             resource_.name.c_str(), who.c_str(), Join(chosen, ",").c_str());
  return chosen;
}

Status SharedGpus::Allocate(const std::vector<std::string>& device_ids,
                            ContainerAllocation& allocation) {
  const std::string ids = Join(device_ids, ",");
  if (!options_.unavailable.empty()) {
    return Status::Error(
        resource_.name + " devices " + ids +
        " are shares of a shared GPU, which this node cannot serve: " + options_.unavailable);
  }
  struct stat st = {};
  if (stat(options_.shim_path.c_str(), &st) != 0) {
    return Status::Error(resource_.name + " devices " + ids + ": the shim (--shim-path " +
                         options_.shim_path + ") is not on this node");
  }
  std::vector<std::string> visible;
  for (const auto* device : ContainerGpus(resource_, device_ids)) {
    visible.push_back(device->visible_id);
  }
  std::lock_guard lock(mutex_);
  auto stored = store_.Create(device_ids);
  if (!stored.ok()) {
    return Status::Error(
        resource_.name + " devices " + ids +
        ": cannot make the container's allocation directory: " + stored.status().message());
  }
  allocation.envs["NVIDIA_VISIBLE_DEVICES"] = Join(visible, ",");
  allocation.envs[std::string(shim::kRegionVariable)] = kContainerRegionPath;
  allocation.mounts.push_back({shim::kLimitsFilePath, stored->path + "/limits", true});
  allocation.mounts.push_back({kContainerRegionDir, stored->path + "/region", false});
  allocation.mounts.push_back({kContainerShimPath, options_.shim_path, true});
  allocation.mounts.push_back({kContainerPreloadPath, store_.preload_path(), true});
  log::Write(log::Level::kInfo, "node", "Allocate %s: %s -> %s", resource_.name.c_str(),
             ids.c_str(), stored->path.c_str());
  return Status::Ok();
}

Status SharedGpus::PreStart(const std::vector<std::string>& device_ids) {
  if (!AnyShared(device_ids)) return Status::Ok();  // whole GPUs: nothing to prepare
  const std::string ids = Join(Sorted(device_ids), ",");
  auto refuse = [&](const std::string& why) {
    const std::string message = "PreStartContainer " + resource_.name + " " + ids + ": " + why;
    log::Write(log::Level::kError, "node", "%s", message.c_str());
    return Status::Error(message);
  };
  if (cache_ == nullptr) return refuse(options_.unavailable);
  auto listed = lister_();
  if (!listed.ok()) return refuse(listed.status().message());
  auto holder = FindDeviceHolder(*listed, resource_.name, device_ids);
  if (!holder.ok()) return refuse(holder.status().message());
  const std::string key = PodKey(holder->namespace_name, holder->pod);
  PodSnapshot pods = cache_->WaitFor({key}, std::chrono::steady_clock::now() + options_.cache_wait);
  auto pod = pods.find(key);
  if (pod == pods.end()) {
    return refuse("pod " + key + " holds them but is not in the agent's pod cache after " +
                  std::to_string(options_.cache_wait.count()) +
                  " ms (is the watch of the node's pods failing? see the log)");
  }
  auto checked =
      CheckGrant(pod->second, holder->container, options_.node_name, resource_, device_ids);
  if (!checked.ok()) return refuse(checked.status().message());

  std::lock_guard lock(mutex_);
  // The shares of containers that are over, before this one is counted: the scheduler freed them
  // when their pods went or ended, which may be moments ago, between two Reconciles. Listed again
  // under the lock: a container that claimed its share since the first listing (under this lock)
  // holds its devices in kubelet's list by now, as kubelet records them before PreStartContainer.
  if (auto current = lister_(); current.ok()) ReleaseEndedLocked(*current, pods);
  const auto wanted = Sorted(device_ids);
  const auto stored = store_.List();
  const StoredAllocation* chosen = nullptr;
  for (const auto& allocation : stored) {
    if (Sorted(allocation.device_ids) == wanted) chosen = &allocation;  // the newest wins
  }
  if (chosen == nullptr) {
    return refuse("no allocation directory under " + store_.state_dir() +
                  "/containers was made for them (Allocate did not run here)");
  }
  // Any other directory for some of these devices is left from an earlier holder (kubelet gives a
  // device to one container at a time, and this one holds them now), or from an Allocate kubelet
  // retried: its share is over, before this one is counted.
  const std::set<std::string> mine(device_ids.begin(), device_ids.end());
  for (const auto& allocation : stored) {
    if (allocation.id == chosen->id) continue;
    const bool overlaps = std::any_of(allocation.device_ids.begin(), allocation.device_ids.end(),
                                      [&](const std::string& id) { return mine.count(id) != 0; });
    if (!overlaps) continue;
    ledger_.Release(allocation.id);
    if (Status s = store_.Remove(allocation); !s.ok()) {
      log::Write(log::Level::kWarn, "node", "%s", s.message().c_str());
    }
  }
  Status counted = ledger_.Set(chosen->id, BytesOf(*checked));
  if (counted.ok()) counted = store_.Claim(*chosen, *checked, LimitsFileText(*checked));
  if (!counted.ok()) {
    ledger_.Release(chosen->id);
    PublishSums();
    return refuse("pod " + key + " container " + holder->container + ": " + counted.message());
  }
  PublishSums();
  std::vector<std::string> limits;
  for (const auto& gpu : checked->gpus) {
    limits.push_back(gpu.uuid + " " + std::to_string(gpu.memory_mib) + " MiB " +
                     std::to_string(gpu.cores) + "%");
  }
  log::Write(log::Level::kInfo, "node", "PreStartContainer %s: pod %s container %s: %s (%s)",
             ids.c_str(), key.c_str(), holder->container.c_str(), Join(limits, ", ").c_str(),
             chosen->path.c_str());
  return Status::Ok();
}

void SharedGpus::Reconcile() {
  const PodSnapshot pods = cache_ != nullptr ? cache_->Snapshot() : PodSnapshot{};
  std::lock_guard lock(mutex_);
  // Listed under the lock, as in PreStart, so that no share claimed meanwhile is taken for gone.
  auto listed = lister_();
  if (!listed.ok()) return;  // the next round will
  ReleaseEndedLocked(*listed, pods);
  PublishSums();
}

void SharedGpus::ReleaseEndedLocked(const std::vector<PodResourcesPod>& listed,
                                    const PodSnapshot& pods) {
  std::set<std::vector<std::string>> held;
  for (const auto& pod : listed) {
    for (const auto& container : pod.containers) {
      auto it = container.devices.find(resource_.name);
      if (it != container.devices.end() && !it->second.empty()) held.insert(Sorted(it->second));
    }
  }
  const auto now = std::chrono::system_clock::now();
  for (const auto& allocation : store_.List()) {
    std::string why;
    if (!held.count(Sorted(allocation.device_ids))) {
      if (!allocation.owner && now - CreatedAt(allocation) < options_.unclaimed_grace) continue;
      why = "kubelet lists no container with its devices";
    } else if (allocation.owner) {
      // kubelet lists an ended pod's devices until it next admits a pod; its containers have
      // exited, and their memory is free (the scheduler freed its share when the pod ended).
      auto pod = pods.find(PodKey(allocation.owner->namespace_name, allocation.owner->pod));
      if (pod == pods.end() || !pod->second.Terminal()) continue;
      why = "its pod is " + pod->second.phase;
    } else {
      continue;
    }
    ledger_.Release(allocation.id);
    if (Status s = store_.Remove(allocation); !s.ok()) {
      log::Write(log::Level::kWarn, "node", "%s", s.message().c_str());
      continue;
    }
    log::Write(
        log::Level::kInfo, "node", "released %s (%s%s): %s", allocation.path.c_str(),
        Join(allocation.device_ids, ",").c_str(),
        allocation.owner
            ? (", pod " + PodKey(allocation.owner->namespace_name, allocation.owner->pod)).c_str()
            : "",
        why.c_str());
  }
}

void SharedGpus::PublishSums() { registry_.SetMemoryLimitSums(ledger_.Sums()); }

}  // namespace tessera::node
