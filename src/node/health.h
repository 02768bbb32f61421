// Keeps each GPU's health in the Registry from NVML: a critical Xid event marks the GPU (and every
// device advertised on it) Unhealthy at once; a probe every second marks it Unhealthy while NVML
// says it is lost, or has page retirement or row remapping pending. A fault NVML shows clears
// when NVML says so: the GPU is Healthy again once the probe has passed for `recovery`, so a GPU
// that was reset comes back without restarting the agent (the device plugin HAMi forked never
// recovers). A critical Xid that NVML never showed in the probe keeps the GPU out for
// `xid_hold` after it, since nothing tells when such a fault is over.
//
// Xids that an application causes (13, 31, 43, 45, 68, 109) say nothing about the GPU and are
// ignored, as NVIDIA's device plugin does.
#ifndef TESSERA_NODE_HEALTH_H_
#define TESSERA_NODE_HEALTH_H_

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "node/nvml.h"
#include "node/registry.h"

namespace tessera::node {

bool IsApplicationXid(unsigned long long xid);

class HealthMonitor {
 public:
  HealthMonitor(Nvml& nvml, Registry& registry, std::chrono::milliseconds recovery,
                std::chrono::milliseconds xid_hold);
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Starts the thread. Xid events are only seen if WatchXids succeeds; without them the probe
  // still runs (logged once).
  void Start();
  void Stop();

 private:
  void Run();
  void Check(std::chrono::steady_clock::time_point now);
  std::string GpuOf(const std::string& uuid) const;  // a MIG UUID's parent, or the UUID

  Nvml& nvml_;
  Registry& registry_;
  const std::chrono::milliseconds recovery_;
  const std::chrono::milliseconds xid_hold_;
  bool events_ = false;
  std::map<std::string, std::chrono::steady_clock::time_point> last_xid_;
  std::map<std::string, std::string> xid_reason_;
  std::map<std::string, std::chrono::steady_clock::time_point> xid_at_;  // last unseen critical Xid
  std::chrono::steady_clock::time_point last_wait_error_{};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_HEALTH_H_
