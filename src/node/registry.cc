#include "node/registry.h"

#include <algorithm>

namespace tessera::node {
namespace {

// kubelet's calls: local answers, microseconds to milliseconds (a PodResources list or a wait
// for the pod watch at most a second or so).
const std::vector<double> kLatencyBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

}  // namespace

Registry::Registry(Inventory inventory, std::map<unsigned, GpuMode> modes,
                   std::vector<Resource> resources)
    : inventory_(std::move(inventory)),
      modes_(std::move(modes)),
      resources_(std::move(resources)),
      latency_{metrics::LatencyHistogram(kLatencyBounds), metrics::LatencyHistogram(kLatencyBounds),
               metrics::LatencyHistogram(kLatencyBounds)} {
  for (const auto& gpu : inventory_.gpus) health_[gpu.uuid] = GpuHealth{};
}

const Resource* Registry::FindResource(const std::string& name) const {
  for (const auto& resource : resources_) {
    if (resource.name == name) return &resource;
  }
  return nullptr;
}

bool Registry::SetHealth(const std::string& gpu_uuid, GpuHealth health) {
  std::lock_guard lock(mutex_);
  auto& current = health_[gpu_uuid];
  if (current.healthy == health.healthy) {
    if (!health.healthy) current.reason = health.reason;
    return false;
  }
  current = std::move(health);
  ++version_;
  changed_.notify_all();
  return true;
}

GpuHealth Registry::Health(const std::string& gpu_uuid) const {
  std::lock_guard lock(mutex_);
  auto it = health_.find(gpu_uuid);
  return it == health_.end() ? GpuHealth{} : it->second;
}

std::map<std::string, GpuHealth> Registry::AllHealth() const {
  std::lock_guard lock(mutex_);
  return health_;
}

void Registry::SetContainers(std::vector<ContainerDevices> containers) {
  std::lock_guard lock(mutex_);
  containers_ = std::move(containers);
}

std::vector<ContainerDevices> Registry::Containers() const {
  std::lock_guard lock(mutex_);
  return containers_;
}

void Registry::SetMemoryLimitSums(std::map<std::string, uint64_t> sums) {
  std::lock_guard lock(mutex_);
  for (const auto& [uuid, sum] : sums) {
    uint64_t& peak = peak_memory_limit_sums_[uuid];
    peak = std::max(peak, sum);
  }
  memory_limit_sums_ = std::move(sums);
}

std::map<std::string, uint64_t> Registry::PeakMemoryLimitSums() const {
  std::lock_guard lock(mutex_);
  return peak_memory_limit_sums_;
}

std::map<std::string, uint64_t> Registry::MemoryLimitSums() const {
  std::lock_guard lock(mutex_);
  return memory_limit_sums_;
}

void Registry::RecordRpc(Rpc rpc, std::chrono::nanoseconds latency) {
  latency_[static_cast<size_t>(rpc)].Record(latency);
}

uint64_t Registry::Version() const {
  std::lock_guard lock(mutex_);
  return version_;
}

uint64_t Registry::WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  const uint64_t wakes = wakes_;
  changed_.wait_for(lock, timeout, [&] { return version_ != seen || wakes_ != wakes; });
  return version_;
}

void Registry::WakeAll() {
  std::lock_guard lock(mutex_);
  ++wakes_;
  changed_.notify_all();
}

}  // namespace tessera::node
