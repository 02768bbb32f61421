// tessera-node's view of NVML: the library loaded with dlopen (never linked, so one binary runs
// on any driver and on the fake GPU), the node's inventory, GPU health and samples for metrics.
// Every call answers with a Status naming the NVML function and its error.
//
// Thread-safety: NVML itself is thread-safe; an Nvml object may be used from several threads.
#ifndef TESSERA_NODE_NVML_H_
#define TESSERA_NODE_NVML_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "node/inventory.h"

namespace tessera::node {

struct GpuSample {
  uint64_t memory_total_bytes = 0;
  uint64_t memory_used_bytes = 0;
  unsigned utilization_percent = 0;
};

// Why a GPU is not healthy, or nothing.
struct HealthProbe {
  bool healthy = true;
  std::string reason;  // "GPU is lost", "page retirement pending"
};

struct XidEvent {
  std::string gpu_uuid;
  unsigned long long xid = 0;
};

class Nvml {
 public:
  // Loads `library` (default libnvidia-ml.so.1 from the library path) and initialises NVML.
  static Result<std::unique_ptr<Nvml>> Load(const std::string& library = "libnvidia-ml.so.1");
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  Result<Inventory> Discover();

  HealthProbe Probe(const std::string& gpu_uuid);
  Result<GpuSample> Sample(const std::string& gpu_uuid);

  // Registers every GPU of `inventory` for Xid events. An error says which GPUs cannot be
  // watched; the others are watched all the same (watching_xids()).
  Status WatchXids(const Inventory& inventory);
  bool watching_xids() const { return !event_devices_.empty(); }
  // Waits up to `timeout_ms` for an Xid; nothing when none came. REQUIRES: WatchXids succeeded.
  Result<std::optional<XidEvent>> WaitXid(unsigned timeout_ms);

  struct Table;

 private:
  explicit Nvml(void* library, std::unique_ptr<Table> table);
  void* library_;
  std::unique_ptr<Table> table_;
  void* event_set_ = nullptr;
  std::map<const void*, std::string> event_devices_;  // registered handle → GPU UUID
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_NVML_H_
