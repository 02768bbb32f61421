// The compute limiter: gives a container its share (CUDA_DEVICE_SM_LIMIT[_<i>]) of each device's
// time, and applies CUDA_TASK_PRIORITY. docs/limiter.md describes the design and its rules.
//
// Every launch path calls Admit() before the driver and Complete() after it, but only when the
// Shim governs launches (some sm limit or a priority is set); otherwise the hooks never come here.
//  * Budget: the region's per-device token bucket (Region::ChargeCompute), shared by all of the
//    container's processes. A launch is charged its estimated cost; a thread whose charge puts
//    the bucket in debt sleeps until the debt is paid.
//  * Cost: measured. Two events from a small per-device pool are recorded around the launch on
//    its stream; later launches collect the finished ones (cuEventQuery, cuEventElapsedTime_v2,
//    or cuEventElapsedTime on a driver before CUDA 12.8),
//    feed the CostEstimator, and true the charge up to the estimate.
//  * Work-conserving (TESSERA_SM_WORK_CONSERVING=true): a launch in debt goes ahead, its debt
//    forgiven, while NVML says the device was busy less than kSpareBelowPercent of the last period.
//  * Priority: see NodeBoard and kYieldNs.
// Thread-safe; a process-local mutex guards the event pools and the estimator, never held while
// sleeping or launching.
#ifndef TESSERA_SHIM_LIMITER_H_
#define TESSERA_SHIM_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "shim/cost_estimator.h"
#include "shim/node_board.h"
#include "shim/shim.h"

namespace tessera::shim {

class Limiter {
 public:
  // What a launch of unmeasured work is charged until its first measurement trues it up.
  static constexpr int64_t kUnknownCostNs = 100'000;
  // Work-conserving: the device has spare time while its utilisation is below this.
  static constexpr unsigned kSpareBelowPercent = 80;
  // How long a utilisation reading is reused.
  static constexpr int64_t kUtilisationCacheNs = 50'000'000;
  // Priority: a low-priority launch waits until no high-priority process has launched on the
  // GPU for this long.
  static constexpr int64_t kYieldNs = 10'000'000;
  // Event pairs per device and process.
  static constexpr int kEventPairs = 32;

  struct Options {
    bool work_conserving = false;
    int task_priority = -1;  // 0 high, 1 low, -1 none
    std::string node_board_path;
    // With a limits file: the shares to enforce, per device, taken from the file rather than from
    // the region (which the container can write). Null: the region's sm limits.
    const region::RegionConfig* fixed_limits = nullptr;
  };

  // What Admit() decided, for Complete().
  struct Ticket {
    int device = -1;  // -1: the launch is not limited
    int event = -1;   // the event pair measuring it, or -1
    uintptr_t key = 0;
    int64_t charged_ns = 0;
  };

  Limiter(const CudaTable& cuda, NvmlDevices& nvml, DeviceMap& devices, region::Region* region,
          const Options& options);
  ~Limiter();
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  // Before launching work `key` (a function or graph exec) on `stream` in the current context:
  // yields to high priority, charges, waits out any debt, starts the measurement.
  Ticket Admit(uintptr_t key, CUstream stream);
  // After the driver answered `result` for that launch.
  void Complete(const Ticket& ticket, CUstream stream, CUresult result);

  // Stream capture (cuStreamBeginCapture[_v2], cuStreamEndCapture): launches into a capture
  // pass straight through, and no finished measurement is collected (cuEventQuery) while a
  // capture forbids queries: this thread's non-relaxed one, or any thread's global one.
  void OnCaptureBegun(CUstream stream, CUstreamCaptureMode mode);
  void OnCaptureEnded(CUstream stream);

  // Around fork: the mutex is held across it (no other thread can leave it locked in the child);
  // in the child the parent's events and contexts are forgotten.
  void OnForkPrepare() { mutex_.lock(); }
  void OnForkParent() { mutex_.unlock(); }
  void OnForkChild();

 private:
  struct EventPool;

  int CurrentDevice() const;
  void Poll(int device);  // REQUIRES: mutex_ held
  bool QueriesForbidden() const;
  void ForgetCaptureLocked(CUstream stream);  // REQUIRES: mutex_ held
  // cuEventElapsedTime_v2, or cuEventElapsedTime where the driver lacks it. REQUIRES: mutex_ held
  CUresult ElapsedTime(float* milliseconds, CUevent start, CUevent end);
  int TakeEvent(int device);  // REQUIRES: mutex_ held
  void WaitUntil(int device, int64_t ready_ns);
  bool DeviceHasSpareTime(int device);
  void ApplyPriority(int device);

  const CudaTable& cuda_;
  NvmlDevices& nvml_;   // the shim's; UUIDs and handles of the container's GPUs
  DeviceMap& devices_;  // the shim's; CUDA ordinals to container devices
  region::Region* region_;
  Options options_;
  // The share in force on `device`: the fixed limits' when given, else the region's.
  uint32_t SmPercent(int device) const {
    return options_.fixed_limits != nullptr ? options_.fixed_limits->devices[device].sm_percent
                                            : region_->Limits(device).sm_percent;
  }
  std::unique_ptr<NodeBoard> node_board_;

  std::mutex mutex_;  // guards everything below
  CostEstimator estimator_;
  std::unique_ptr<EventPool> pools_[region::kMaxDevices];
  bool elapsed_v2_ = true;  // until the driver says it has no cuEventElapsedTime_v2
  struct CaptureSeen {
    CUstreamCaptureMode mode;
    std::thread::id thread;
  };
  std::unordered_map<CUstream, CaptureSeen> captures_;
  std::atomic<int> global_captures_{0};  // written under mutex_, read without
  int64_t utilisation_read_at_[region::kMaxDevices] = {};
  unsigned utilisation_[region::kMaxDevices] = {};
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_LIMITER_H_
