#include "node/health.h"

#include "common/log.h"

namespace tessera::node {

bool IsApplicationXid(unsigned long long xid) {
  return xid == 13 || xid == 31 || xid == 43 || xid == 45 || xid == 68 || xid == 109;
}

HealthMonitor::HealthMonitor(Nvml& nvml, Registry& registry, std::chrono::milliseconds recovery,
                             std::chrono::milliseconds xid_hold)
    : nvml_(nvml), registry_(registry), recovery_(recovery), xid_hold_(xid_hold) {}

HealthMonitor::~HealthMonitor() { Stop(); }

void HealthMonitor::Start() {
  auto status = nvml_.WatchXids(registry_.inventory());
  events_ = nvml_.watching_xids();
  if (!status.ok()) {
    log::Write(log::Level::kWarn, "node", "%s; health of those comes from probes only",
               status.message().c_str());
  }
  Check(std::chrono::steady_clock::now());
  thread_ = std::thread([this] { Run(); });
}

void HealthMonitor::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

std::string HealthMonitor::GpuOf(const std::string& uuid) const {
  for (const auto& gpu : registry_.inventory().gpus) {
    if (gpu.uuid == uuid) return uuid;
    for (const auto& instance : gpu.mig_instances) {
      if (instance.uuid == uuid) return gpu.uuid;
    }
  }
  return uuid;
}

void HealthMonitor::Run() {
  auto next_check = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!stopping_) {
    if (events_) {
      auto event = nvml_.WaitXid(250);
      if (!event.ok()) {
        // NVML failing: say so once a minute at most, and do not spin.
        const auto now = std::chrono::steady_clock::now();
        if (now - last_wait_error_ > std::chrono::minutes(1)) {
          log::Write(log::Level::kWarn, "node", "%s", event.status().message().c_str());
          last_wait_error_ = now;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      } else if (event->has_value()) {
        const XidEvent& xid = **event;
        const std::string gpu = GpuOf(xid.gpu_uuid);
        if (IsApplicationXid(xid.xid)) {
          log::Write(log::Level::kInfo, "node",
                     "GPU %s: Xid %llu (an application's error; ignored)", gpu.c_str(), xid.xid);
        } else {
          last_xid_[gpu] = std::chrono::steady_clock::now();
          xid_at_[gpu] = last_xid_[gpu];  // until the probe shows it, it is held for xid_hold
          xid_reason_[gpu] = "Xid " + std::to_string(xid.xid);
          if (registry_.SetHealth(gpu, {false, xid_reason_[gpu]})) {
            log::Write(log::Level::kWarn, "node", "GPU %s is unhealthy: Xid %llu", gpu.c_str(),
                       xid.xid);
          }
          // Probe now: whether NVML shows the fault decides how it clears (see health.h).
          Check(std::chrono::steady_clock::now());
        }
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_check) {
      Check(now);
      next_check = now + std::chrono::seconds(1);
    }
  }
}

void HealthMonitor::Check(std::chrono::steady_clock::time_point now) {
  for (const auto& gpu : registry_.inventory().gpus) {
    const HealthProbe probe = nvml_.Probe(gpu.uuid);
    if (!probe.healthy) {
      if (registry_.SetHealth(gpu.uuid, {false, probe.reason})) {
        log::Write(log::Level::kWarn, "node", "GPU %s is unhealthy: %s", gpu.uuid.c_str(),
                   probe.reason.c_str());
      }
      // Recovery counts from the last time anything was wrong; NVML shows this fault, so NVML
      // will say when it is over.
      last_xid_[gpu.uuid] = now;
      xid_at_.erase(gpu.uuid);
      continue;
    }
    auto last = last_xid_.find(gpu.uuid);
    if (last != last_xid_.end() && now - last->second < recovery_) continue;
    auto unseen = xid_at_.find(gpu.uuid);
    if (unseen != xid_at_.end()) {
      if (now - unseen->second < xid_hold_) continue;
      xid_at_.erase(unseen);
    }
    if (registry_.SetHealth(gpu.uuid, {true, ""})) {
      log::Write(log::Level::kWarn, "node", "GPU %s is healthy again", gpu.uuid.c_str());
    }
  }
}

}  // namespace tessera::node
