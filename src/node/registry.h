// The node agent's shared picture: the resources it advertises (fixed at start), each GPU's
// health, what kubelet has given to which container, and Allocate latencies. Every plugin server,
// the health monitor, the metrics endpoint and the Node publisher read and write it.
//
// Thread-safe. Watchers wait for Version() to change (ListAndWatch resends the full list then).
#ifndef TESSERA_NODE_REGISTRY_H_
#define TESSERA_NODE_REGISTRY_H_

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/metrics_text.h"
#include "node/devices.h"
#include "node/inventory.h"

namespace tessera::node {

struct GpuHealth {
  bool healthy = true;
  std::string reason;  // why not, e.g. "Xid 48 at 2026-12-01T16:00:00Z"
};

// A container kubelet has given devices to, as its PodResources API says.
struct ContainerDevices {
  std::string namespace_name;
  std::string pod;
  std::string container;
  std::string resource;
  std::vector<std::string> device_ids;
};

class Registry {
 public:
  Registry(Inventory inventory, std::map<unsigned, GpuMode> modes, std::vector<Resource> resources);

  const Inventory& inventory() const { return inventory_; }
  const std::map<unsigned, GpuMode>& modes() const { return modes_; }
  const std::vector<Resource>& resources() const { return resources_; }
  const Resource* FindResource(const std::string& name) const;

  // Sets a GPU's health; returns whether it changed (and then bumps the version).
  bool SetHealth(const std::string& gpu_uuid, GpuHealth health);
  GpuHealth Health(const std::string& gpu_uuid) const;
  std::map<std::string, GpuHealth> AllHealth() const;

  void SetContainers(std::vector<ContainerDevices> containers);
  std::vector<ContainerDevices> Containers() const;

  // Per shared GPU (by UUID), the sum of the memory limits of its live shares, in bytes.
  void SetMemoryLimitSums(std::map<std::string, uint64_t> sums);
  std::map<std::string, uint64_t> MemoryLimitSums() const;
  // Per shared GPU, the highest such sum since the agent started: what "the sum never went past
  // the GPU's memory" is checked against, with no sampling gap.
  std::map<std::string, uint64_t> PeakMemoryLimitSums() const;

  // kubelet's calls that a pod's start waits on, each timed for /metrics.
  enum class Rpc { kAllocate, kGetPreferredAllocation, kPreStartContainer };
  void RecordRpc(Rpc rpc, std::chrono::nanoseconds latency);
  void RecordAllocate(std::chrono::nanoseconds latency) { RecordRpc(Rpc::kAllocate, latency); }
  // Latencies in seconds, in the histogram's buckets (cumulative counts), plus the sum.
  metrics::LatencyHistogram::Snapshot RpcLatency(Rpc rpc) const {
    return latency_[static_cast<size_t>(rpc)].Take();
  }
  metrics::LatencyHistogram::Snapshot AllocateLatency() const { return RpcLatency(Rpc::kAllocate); }

  uint64_t Version() const;
  // Waits until Version() != `seen`, WakeAll() or `timeout`; returns the version then.
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const;
  // Wakes every waiter without a change (shutdown).
  void WakeAll();

 private:
  const Inventory inventory_;
  const std::map<unsigned, GpuMode> modes_;
  const std::vector<Resource> resources_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  uint64_t version_ = 1;
  uint64_t wakes_ = 0;  // WakeAll() calls, so that a woken waiter returns
  std::map<std::string, GpuHealth> health_;
  std::vector<ContainerDevices> containers_;
  std::map<std::string, uint64_t> memory_limit_sums_;
  std::map<std::string, uint64_t> peak_memory_limit_sums_;
  std::array<metrics::LatencyHistogram, 3> latency_;
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_REGISTRY_H_
