#include "shim/limiter.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "common/log.h"
#include "common/process.h"

namespace tessera::shim {
namespace {

// Sleeps until `deadline_ns` on CLOCK_MONOTONIC, leaving errno as the application had it.
void SleepUntil(int64_t deadline_ns) {
  int saved_errno = errno;
  timespec deadline{static_cast<time_t>(deadline_ns / 1'000'000'000),
                    static_cast<long>(deadline_ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) == EINTR) {
  }
  errno = saved_errno;
}

}  // namespace

// Events of one device, created in the first context that launched limited work on it. A launch
// in another context of the same device is charged its estimate but not measured.
struct Limiter::EventPool {
  CUcontext context = nullptr;
  CUevent start[kEventPairs] = {};
  CUevent end[kEventPairs] = {};
  int free[kEventPairs] = {};
  int free_count = 0;
  struct Pending {
    int event;
    uintptr_t key;
    int64_t charged_ns;
  };
  Pending pending[kEventPairs] = {};  // a FIFO ring
  int pending_head = 0;
  int pending_count = 0;
};

Limiter::Limiter(const CudaTable& cuda, NvmlDevices& nvml, DeviceMap& devices,
                 region::Region* region, const Options& options)
    : cuda_(cuda), nvml_(nvml), devices_(devices), region_(region), options_(options) {
  if (options_.task_priority >= 0) {
    auto board = NodeBoard::Open(options_.node_board_path);
    if (board.ok()) {
      node_board_ = std::move(board).value();
    } else {
      log::Write(log::Level::kError, "shim", "%s; CUDA_TASK_PRIORITY has no effect",
                 board.status().message().c_str());
    }
  }
}

// The events are left to the driver's teardown: the Shim is never destroyed.
Limiter::~Limiter() = default;

namespace {

// Captures begun on this thread in a mode other than relaxed: while there are any, this thread
// may make no potentially unsafe call (an event query among them).
thread_local int t_strict_captures = 0;

}  // namespace

void Limiter::OnForkChild() {
  // The mutex is held since OnForkPrepare and no other thread exists; the parent's events and
  // handles are not ours.
  for (auto& pool : pools_) pool.reset();
  estimator_.Clear();
  captures_.clear();  // a capture is the thread's that began it, in the parent
  global_captures_.store(0);
  t_strict_captures = 0;
  mutex_.unlock();
}

int Limiter::CurrentDevice() const {
  CUdevice ordinal = -1;
  if (cuda_.cuCtxGetDevice(&ordinal) != CUDA_SUCCESS) return -1;
  return devices_.Of(ordinal);
}

void Limiter::OnCaptureBegun(CUstream stream, CUstreamCaptureMode mode) {
  std::lock_guard<std::mutex> lock(mutex_);
  // The driver began a capture on a stream we took for capturing still: its end went unseen.
  if (captures_.count(stream) != 0) ForgetCaptureLocked(stream);
  captures_[stream] = {mode, std::this_thread::get_id()};
  if (mode == CU_STREAM_CAPTURE_MODE_GLOBAL) global_captures_.fetch_add(1);
  if (mode != CU_STREAM_CAPTURE_MODE_RELAXED) ++t_strict_captures;
}

void Limiter::OnCaptureEnded(CUstream stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  ForgetCaptureLocked(stream);
}

void Limiter::ForgetCaptureLocked(CUstream stream) {
  auto capture = captures_.find(stream);
  if (capture == captures_.end()) return;  // begun where the shim did not see it
  if (capture->second.mode == CU_STREAM_CAPTURE_MODE_GLOBAL) global_captures_.fetch_sub(1);
  if (capture->second.mode != CU_STREAM_CAPTURE_MODE_RELAXED &&
      capture->second.thread == std::this_thread::get_id() && t_strict_captures > 0) {
    --t_strict_captures;
  }
  captures_.erase(capture);
}

bool Limiter::QueriesForbidden() const {
  return t_strict_captures > 0 || global_captures_.load(std::memory_order_relaxed) > 0;
}

Limiter::Ticket Limiter::Admit(uintptr_t key, CUstream stream) {
  Ticket ticket;
  int device = CurrentDevice();
  if (device < 0) return ticket;
  // Work launched into a capture does not run now: it is neither charged nor waited for (its
  // graph is, at each launch), and nothing is recorded on the stream.
  CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
  if (cuda_.cuStreamIsCapturing(stream, &capturing) == CUDA_SUCCESS &&
      capturing != CU_STREAM_CAPTURE_STATUS_NONE) {
    return ticket;
  }
  if (node_board_ != nullptr) ApplyPriority(device);
  uint32_t percent = SmPercent(device);
  if (percent == 0) return ticket;

  int64_t cost = kUnknownCostNs;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // cuEventQuery during a capture that forbids it would invalidate the capture: the
    // measurements wait until it ends.
    if (!QueriesForbidden()) Poll(device);
    if (auto estimate = estimator_.Estimate(key)) cost = *estimate;
  }
  int64_t now = MonotonicNs();
  int64_t ready = region_->ChargeCompute(device, cost, now, percent);
  if (ready > now) WaitUntil(device, ready);
  if (log::Enabled(log::Level::kDebug)) {
    log::Write(log::Level::kDebug, "limiter", "device %d: charged %lld ns, waited %lld ns", device,
               static_cast<long long>(cost),
               static_cast<long long>(std::max<int64_t>(0, ready - now)));
  }

  ticket.device = device;
  ticket.key = key;
  ticket.charged_ns = cost;
  std::lock_guard<std::mutex> lock(mutex_);
  int event = TakeEvent(device);
  if (event >= 0) {
    EventPool& pool = *pools_[device];
    if (cuda_.cuEventRecord(pool.start[event], stream) == CUDA_SUCCESS) {
      ticket.event = event;
    } else {
      pool.free[pool.free_count++] = event;
    }
  }
  return ticket;
}

void Limiter::Complete(const Ticket& ticket, CUstream stream, CUresult result) {
  if (ticket.device < 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  EventPool* pool = pools_[ticket.device].get();
  if (result != CUDA_SUCCESS) {
    // Nothing ran: the charge is given back.
    region_->AdjustCompute(ticket.device, -ticket.charged_ns, SmPercent(ticket.device));
    if (ticket.event >= 0 && pool != nullptr) pool->free[pool->free_count++] = ticket.event;
    return;
  }
  if (ticket.event < 0 || pool == nullptr) return;
  if (cuda_.cuEventRecord(pool->end[ticket.event], stream) != CUDA_SUCCESS) {
    pool->free[pool->free_count++] = ticket.event;
    return;
  }
  int tail = (pool->pending_head + pool->pending_count) % kEventPairs;
  pool->pending[tail] = {ticket.event, ticket.key, ticket.charged_ns};
  ++pool->pending_count;
}

void Limiter::Poll(int device) {
  EventPool* pool = pools_[device].get();
  if (pool == nullptr) return;
  // In launch order: a stream's launches finish in order, and a pair stuck behind a long kernel
  // on another stream only delays its successors' true-up, never loses it.
  while (pool->pending_count > 0) {
    EventPool::Pending& head = pool->pending[pool->pending_head];
    CUresult state = cuda_.cuEventQuery(pool->end[head.event]);
    if (state == CUDA_ERROR_NOT_READY) break;
    float milliseconds = 0;
    if (state == CUDA_SUCCESS && ElapsedTime(&milliseconds, pool->start[head.event],
                                             pool->end[head.event]) == CUDA_SUCCESS) {
      auto measured = static_cast<int64_t>(static_cast<double>(milliseconds) * 1e6);
      int64_t estimate = estimator_.AddSample(head.key, measured);
      if (log::Enabled(log::Level::kDebug)) {
        log::Write(log::Level::kDebug, "limiter", "device %d: measured %lld ns, estimate %lld ns",
                   device, static_cast<long long>(measured), static_cast<long long>(estimate));
      }
      region_->AdjustCompute(device, estimate - head.charged_ns, SmPercent(device));
    }
    pool->free[pool->free_count++] = head.event;
    pool->pending_head = (pool->pending_head + 1) % kEventPairs;
    --pool->pending_count;
  }
}

CUresult Limiter::ElapsedTime(float* milliseconds, CUevent start, CUevent end) {
  if (elapsed_v2_) {
    CUresult result = cuda_.cuEventElapsedTime_v2(milliseconds, start, end);
    if (result != CUDA_ERROR_NOT_FOUND) return result;
    // A driver before CUDA 12.8 (R570, or R535/R550) lacks the second version; the first
    // measures these events just the same.
    elapsed_v2_ = false;
    log::Write(log::Level::kInfo, "limiter",
               "the driver has no cuEventElapsedTime_v2; measuring with cuEventElapsedTime");
  }
  return cuda_.cuEventElapsedTime(milliseconds, start, end);
}

int Limiter::TakeEvent(int device) {
  CUcontext context = nullptr;
  if (cuda_.cuCtxGetCurrent(&context) != CUDA_SUCCESS || context == nullptr) return -1;
  std::unique_ptr<EventPool>& pool = pools_[device];
  if (pool == nullptr) {
    pool = std::make_unique<EventPool>();
    pool->context = context;
    for (int i = 0; i < kEventPairs; ++i) {
      if (cuda_.cuEventCreate(&pool->start[i], 0) != CUDA_SUCCESS) break;
      if (cuda_.cuEventCreate(&pool->end[i], 0) != CUDA_SUCCESS) {
        cuda_.cuEventDestroy_v2(pool->start[i]);
        break;
      }
      pool->free[pool->free_count++] = i;
    }
  }
  if (pool->context != context || pool->free_count == 0) return -1;
  return pool->free[--pool->free_count];
}

void Limiter::WaitUntil(int device, int64_t ready_ns) {
  if (options_.work_conserving && DeviceHasSpareTime(device)) {
    region_->ForgiveComputeDebt(device, MonotonicNs());
    return;
  }
  SleepUntil(ready_ns);
}

bool Limiter::DeviceHasSpareTime(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t now = MonotonicNs();
  if (utilisation_read_at_[device] != 0 &&
      now - utilisation_read_at_[device] < kUtilisationCacheNs) {
    return utilisation_[device] < kSpareBelowPercent;
  }
  utilisation_read_at_[device] = now;
  utilisation_[device] = 100;  // unknown: no spare time
  nvmlDevice_t handle = nvml_.Handle(device);
  if (handle == nullptr) return false;
  nvmlUtilization_t utilisation{};
  if (nvml_.table().nvmlDeviceGetUtilizationRates(handle, &utilisation) != NVML_SUCCESS) {
    return false;
  }
  utilisation_[device] = utilisation.gpu;
  return utilisation_[device] < kSpareBelowPercent;
}

void Limiter::ApplyPriority(int device) {
  const std::string uuid = nvml_.Uuid(device);
  if (uuid.empty()) return;
  if (options_.task_priority == 0) {
    node_board_->MarkHighPriorityLaunch(uuid, MonotonicNs());
    return;
  }
  // Low priority: wait until no high-priority launch on this GPU in the last kYieldNs.
  for (;;) {
    int64_t last = node_board_->LastHighPriorityLaunch(uuid);
    int64_t now = MonotonicNs();
    if (last == 0 || now - last >= kYieldNs) return;
    SleepUntil(last + kYieldNs);
  }
}

}  // namespace tessera::shim
