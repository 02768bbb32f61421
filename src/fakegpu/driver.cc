#include "fakegpu/driver.h"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/log.h"
#include "fakegpu/faults.h"
#include "fakegpu/node_pids.h"
#include "fakegpu/visible_devices.h"

namespace tessera::fakegpu {

std::atomic<InitState> g_init_state{InitState::kUninitialized};
__thread CUctx_st* g_current_context __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// Device addresses start far from where Linux puts host memory, so a host pointer is never
// mistaken for a device one.
constexpr CUdeviceptr kDeviceAddressBase = 1ull << 44;

std::atomic<bool> g_driver_created{false};

// The rest of the calling thread's context stack; its top is g_current_context.
thread_local std::vector<CUctx_st*> t_context_stack;

void SyncCurrent() {
  g_current_context = t_context_stack.empty() ? nullptr : t_context_stack.back();
}

// Kernels longer than this are not busy_us_ kernels but ordinary names: an hour of device time is
// more than any test means.
constexpr uint64_t kMaxBusyMicroseconds = 3'600'000'000ull;

// The device time of one launch of a function with this name: N µs for `busy_us_<N>` (N a decimal
// from 1 to kMaxBusyMicroseconds), N µs per block of the grid for `busy_grid_us_<N>`
// (*per_block set), else 0.
uint64_t BusyKernelNs(const char* name, bool* per_block) {
  constexpr char kPrefix[] = "busy_us_";
  constexpr char kGridPrefix[] = "busy_grid_us_";
  size_t prefix_length = 0;
  if (std::strncmp(name, kPrefix, sizeof kPrefix - 1) == 0) {
    prefix_length = sizeof kPrefix - 1;
  } else if (std::strncmp(name, kGridPrefix, sizeof kGridPrefix - 1) == 0) {
    prefix_length = sizeof kGridPrefix - 1;
  }
  if (prefix_length == 0 || name[prefix_length] == '\0') return 0;
  uint64_t microseconds = 0;
  for (const char* digit = name + prefix_length; *digit != '\0'; ++digit) {
    if (*digit < '0' || *digit > '9') return 0;
    microseconds = microseconds * 10 + static_cast<uint64_t>(*digit - '0');
    if (microseconds > kMaxBusyMicroseconds) return 0;
  }
  *per_block = prefix_length == sizeof kGridPrefix - 1;
  return microseconds * 1000;
}

bool IsDefaultStream(CUstream stream) { return reinterpret_cast<uintptr_t>(stream) <= 2; }

void RaiseTo(std::atomic<uint64_t>& value, uint64_t at_least) {
  uint64_t current = value.load(std::memory_order_relaxed);
  while (current < at_least &&
         !value.compare_exchange_weak(current, at_least, std::memory_order_release,
                                      std::memory_order_relaxed)) {
  }
}

// Simulated device time passes in real time: waiting for the device is sleeping until its work
// ends. clock_nanosleep reports errors by its result, so errno stays the caller's.
void SleepUntil(uint64_t monotonic_ns) {
  if (monotonic_ns <= static_cast<uint64_t>(MonotonicNs())) return;
  timespec until{static_cast<time_t>(monotonic_ns / 1'000'000'000ull),
                 static_cast<long>(monotonic_ns % 1'000'000'000ull)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
  }
}

// Driver teardown at process exit (or dlclose): what the process held goes back to the node.
__attribute__((destructor)) void TearDownAtExit() {
  if (g_driver_created.load()) Driver::Get().TearDown();
}

}  // namespace

Driver& Driver::Get() {
  static Driver* driver = new Driver();
  return *driver;
}

Driver::Driver() : pid_(NodePid()), next_address_(kDeviceAddressBase) {
  g_driver_created.store(true);
  pthread_atfork(&Driver::PrepareFork, &Driver::AfterForkInParent, &Driver::AfterForkInChild);
}

void Driver::PrepareFork() { Get().mutex_.lock(); }
void Driver::AfterForkInParent() { Get().mutex_.unlock(); }

// The child keeps the parent's handles but none of its memory: it gets a slot of its own on its
// first charge, and what the parent charged is never given back by the child.
void Driver::AfterForkInChild() {
  Driver& driver = Get();
  driver.pid_ = NodePid();
  driver.slot_ = -1;
  driver.mutex_.unlock();
}

CUresult Driver::Ready() {
  switch (g_init_state.load(std::memory_order_acquire)) {
    case InitState::kReady:
      return CUDA_SUCCESS;
    case InitState::kTornDown:
      return CUDA_ERROR_DEINITIALIZED;
    case InitState::kUninitialized:
    case InitState::kFailed:
      break;
  }
  return CUDA_ERROR_NOT_INITIALIZED;
}

CUresult Driver::Init() {
  std::lock_guard<std::mutex> lock(mutex_);
  switch (g_init_state.load()) {
    case InitState::kReady:
      return CUDA_SUCCESS;
    case InitState::kFailed:
      return CUDA_ERROR_NO_DEVICE;
    case InitState::kTornDown:
      return CUDA_ERROR_DEINITIALIZED;
    case InitState::kUninitialized:
      break;
  }
  auto fail = [](const std::string& why) {
    if (!why.empty()) {
      log::Write(log::Level::kError, "fakegpu", "%s; cuInit returns CUDA_ERROR_NO_DEVICE",
                 why.c_str());
    }
    g_init_state.store(InitState::kFailed);
    return CUDA_ERROR_NO_DEVICE;
  };
  if (FaultConfigurationBroken()) return fail("");  // already said when the library loaded
  Result<NodeSpec> spec = LoadNodeConfig();
  if (!spec.ok()) return fail(spec.status().message());
  const int driver_version = spec->driver_version;
  Result<std::vector<DeviceSpec>> node = std::move(spec->devices);
  Result<std::vector<VisibleGpu>> visible = VisibleGpusFromEnvironment(*node);
  if (!visible.ok()) return fail(visible.status().message());
  std::vector<CudaDevice> devices;
  for (DeviceRef ref : CudaDevicesFromEnvironment(*node, *visible)) {
    const DeviceSpec& gpu = (*node)[static_cast<size_t>(ref.gpu)];
    CudaDevice device;
    device.name = gpu.name;
    device.memory_bytes = gpu.memory_bytes;
    device.multiprocessors = gpu.multiprocessors;
    device.uuid = gpu.uuid;
    device.context_memory_bytes = gpu.context_memory_bytes;
    device.ref = ref;
    // A MIG device is the instance: its own name, memory, SMs and MIG UUID.
    if (ref.mig >= 0) {
      const MigInstance& instance = gpu.mig[static_cast<size_t>(ref.mig)];
      device.name = MigDeviceName(gpu.name, *instance.profile);
      device.memory_bytes = instance.memory_bytes;
      device.multiprocessors = instance.multiprocessors;
      device.uuid = instance.uuid;
    }
    devices.push_back(std::move(device));
  }
  if (devices.empty()) return fail("");
  Result<std::unique_ptr<SharedState>> state = SharedState::OpenForNode(DefaultStatePath(), *node);
  if (!state.ok()) return fail(state.status().message());
  // A GPU that has fallen off the bus is not found until it is reset: no device, for now only
  // (not kFailed), so that a cuInit after the fault is cleared succeeds.
  for (const CudaDevice& device : devices) {
    Result<GpuHealth> health = (*state)->Health(device.ref.gpu);
    if (!health.ok()) return fail(health.status().message());
    if (!health->lost) continue;
    log::Write(log::Level::kWarn, "fakegpu",
               "GPU %d has fallen off the bus (Xid %u); cuInit returns CUDA_ERROR_NO_DEVICE",
               device.ref.gpu, kXidFallenOffTheBus);
    return CUDA_ERROR_NO_DEVICE;
  }

  devices_ = std::move(devices);
  driver_version_ = driver_version;
  state_ = std::move(state).value();
  pid_ = NodePid();
  slot_ = -1;
  for (int device = 0; device < DeviceCount(); ++device) {
    CUctx_st* primary = contexts_.Create();
    primary->live.store(false);
    primary->device = device;
    primary->primary = true;
    primary_contexts_.push_back(primary);
    CUmemPoolHandle_st* pool = pools_.Create();
    CreatePoolLocked(pool, device);
    pool->is_default = true;
    default_pools_.push_back(pool);
  }
  current_pools_ = default_pools_;
  g_init_state.store(InitState::kReady, std::memory_order_release);
  return CUDA_SUCCESS;
}

void Driver::TearDown() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ != nullptr && slot_ >= 0) {
    // Runs at exit (a destructor), where no caller is left to return an error to: it is logged.
    if (Status released = state_->ReleaseProcess(slot_); !released.ok()) {
      log::Write(log::Level::kError, "fakegpu", "%s; this process's memory stays charged",
                 released.message().c_str());
    }
  }
  slot_ = -1;
  if (g_init_state.load() == InitState::kReady) g_init_state.store(InitState::kTornDown);
}

void Driver::ReleaseEverythingLocked() {
  // The slot is released as a whole below; the individual charges need no giving back.
  allocations_.clear();
  memory_pools_.clear();
  physical_.clear();
  reservations_.clear();
  mappings_.clear();
  for (auto& [pointer, size] : host_allocations_) std::free(pointer);
  host_allocations_.clear();
  contexts_.ForEachLive([this](CUctx_st* context) {
    if (context->primary) {
      context->live.store(false);
    } else {
      contexts_.Destroy(context);
    }
  });
  modules_.ForEachLive([this](CUmod_st* module) { modules_.Destroy(module); });
  libraries_.ForEachLive([this](CUlib_st* library) { libraries_.Destroy(library); });
  functions_.ForEachLive([this](CUfunc_st* function) { functions_.Destroy(function); });
  streams_.ForEachLive([this](CUstream_st* stream) { streams_.Destroy(stream); });
  events_.ForEachLive([this](CUevent_st* event) { events_.Destroy(event); });
  arrays_.ForEachLive([this](CUarray_st* array) { arrays_.Destroy(array); });
  mipmapped_arrays_.ForEachLive(
      [this](CUmipmappedArray_st* array) { mipmapped_arrays_.Destroy(array); });
  pools_.ForEachLive([this](CUmemPoolHandle_st* pool) { pools_.Destroy(pool); });
  graphs_.ForEachLive([this](CUgraph_st* graph) { graphs_.Destroy(graph); });
  graph_nodes_.ForEachLive([this](CUgraphNode_st* node) { graph_nodes_.Destroy(node); });
  graph_execs_.ForEachLive([this](CUgraphExec_st* exec) { graph_execs_.Destroy(exec); });
}

int Driver::Shutdown() {
  std::lock_guard<std::mutex> lock(mutex_);
  ReleaseEverythingLocked();
  int result = 0;
  if (state_ != nullptr && slot_ >= 0) {
    if (Status released = state_->ReleaseProcess(slot_); !released.ok()) {
      log::Write(log::Level::kError, "fakegpu", "%s; this process's memory stays charged",
                 released.message().c_str());
      result = -1;
    }
  }
  slot_ = -1;
  state_.reset();
  devices_.clear();
  primary_contexts_.clear();
  default_pools_.clear();
  current_pools_.clear();
  t_context_stack.clear();
  SyncCurrent();
  g_init_state.store(InitState::kUninitialized);
  return result;
}

int Driver::ResetPeaks() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == nullptr) {
    Result<std::unique_ptr<SharedState>> state = SharedState::Open(DefaultStatePath(), false);
    if (!state.ok()) return -1;
    return (*state)->ResetPeaks().ok() ? 0 : -1;
  }
  return state_->ResetPeaks().ok() ? 0 : -1;
}

const CudaDevice* Driver::Device(CUdevice device) const {
  if (device < 0 || device >= DeviceCount()) return nullptr;
  return &devices_[static_cast<size_t>(device)];
}

CUresult Driver::CheckNotLost(CUdevice device) {
  Result<GpuHealth> health = state_->Health(Device(device)->ref.gpu);
  if (!health.ok()) return StateError(health.status());
  return health->lost ? CUDA_ERROR_INVALID_DEVICE : CUDA_SUCCESS;
}

// ---- Charging device memory ------------------------------------------------------------------

// The state file stands in for the device and its kernel driver. When its lock cannot be had, the
// device's bookkeeping is broken in a way the driver API has no code for: a real driver answers
// that with CUDA_ERROR_UNKNOWN. CUDA_ERROR_OPERATING_SYSTEM would say a system call failed, which
// is not what happened. Every call that meets the error returns this one code.
CUresult Driver::StateError(const Status& status) {
  log::Write(log::Level::kError, "fakegpu", "%s; the call returns CUDA_ERROR_UNKNOWN",
             status.message().c_str());
  return CUDA_ERROR_UNKNOWN;
}

CUresult Driver::ChargeLocked(int device, uint64_t bytes, Charge* charge) {
  if (slot_ < 0) {
    Result<std::optional<int>> slot = state_->RegisterProcess(pid_, ThisProcessOnNode().start_time);
    if (!slot.ok()) return StateError(slot.status());
    if (!slot->has_value()) {
      log::Write(log::Level::kError, "fakegpu",
                 "TESSERA_FAKEGPU_STATE=%s: all %d process slots are held by live processes; the "
                 "allocation returns CUDA_ERROR_OUT_OF_MEMORY",
                 state_->path().c_str(), kMaxProcesses);
      return CUDA_ERROR_OUT_OF_MEMORY;
    }
    slot_ = **slot;
  }
  Result<bool> charged = state_->Charge(slot_, devices_[static_cast<size_t>(device)].ref, bytes);
  if (!charged.ok()) return StateError(charged.status());
  if (!*charged) return CUDA_ERROR_OUT_OF_MEMORY;
  *charge = {device, bytes, pid_};
  return CUDA_SUCCESS;
}

CUresult Driver::UnchargeLocked(Charge* charge) {
  if (charge->bytes != 0 && charge->pid == pid_ && slot_ >= 0 &&
      Device(charge->device) != nullptr) {
    Status uncharged =
        state_->Uncharge(slot_, devices_[static_cast<size_t>(charge->device)].ref, charge->bytes);
    if (!uncharged.ok()) return StateError(uncharged);
  }
  *charge = {};
  return CUDA_SUCCESS;
}

// ---- Contexts --------------------------------------------------------------------------------

CUresult Driver::RequireContext(CUctx_st** context) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  CUctx_st* current = g_current_context;
  if (!LooksLive(current)) return CUDA_ERROR_INVALID_CONTEXT;
  *context = current;
  return CUDA_SUCCESS;
}

CUresult Driver::PrimaryRetain(CUcontext* context, CUdevice device) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const CudaDevice* spec = Device(device);
  if (spec == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUctx_st* primary = primary_contexts_[static_cast<size_t>(device)];
  if (primary->retain_count == 0) {
    CUresult charged = ChargeLocked(device, spec->context_memory_bytes, &primary->charge);
    if (charged != CUDA_SUCCESS) return charged;
    primary->live.store(true, std::memory_order_release);
  }
  ++primary->retain_count;
  *context = primary;
  return CUDA_SUCCESS;
}

CUresult Driver::PrimaryRelease(CUdevice device) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (Device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUctx_st* primary = primary_contexts_[static_cast<size_t>(device)];
  if (primary->retain_count == 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (--primary->retain_count == 0) return ReleaseContextLocked(primary);
  return CUDA_SUCCESS;
}

CUresult Driver::PrimaryReset(CUdevice device) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (Device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUctx_st* primary = primary_contexts_[static_cast<size_t>(device)];
  if (primary->retain_count > 0) {
    primary->retain_count = 0;
    return ReleaseContextLocked(primary);
  }
  return CUDA_SUCCESS;
}

CUresult Driver::CreateContext(CUcontext* context, CUdevice device) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const CudaDevice* spec = Device(device);
  if (spec == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUctx_st* created = contexts_.Create();
  created->device = device;
  created->primary = false;
  CUresult charged = ChargeLocked(device, spec->context_memory_bytes, &created->charge);
  if (charged != CUDA_SUCCESS) {
    contexts_.Destroy(created);
    return charged;
  }
  t_context_stack.push_back(created);
  SyncCurrent();
  *context = created;
  return CUDA_SUCCESS;
}

// Everything the context owns goes with it, as on a real driver.
CUresult Driver::ReleaseContextLocked(CUctx_st* context) {
  CUresult result = CUDA_SUCCESS;
  auto keep_first_error = [&result](CUresult released) {
    if (result == CUDA_SUCCESS) result = released;
  };
  for (auto it = allocations_.begin(); it != allocations_.end();) {
    auto next = std::next(it);
    if (it->second.context == context) keep_first_error(FreeLocked(it));
    it = next;
  }
  arrays_.ForEachLive([&](CUarray_st* array) {
    if (array->context != context) return;
    keep_first_error(UnchargeLocked(&array->charge));
    arrays_.Destroy(array);
  });
  mipmapped_arrays_.ForEachLive([&](CUmipmappedArray_st* array) {
    if (array->context != context) return;
    keep_first_error(UnchargeLocked(&array->charge));
    mipmapped_arrays_.Destroy(array);
  });
  streams_.ForEachLive([&](CUstream_st* stream) {
    if (stream->context == context) streams_.Destroy(stream);
  });
  events_.ForEachLive([&](CUevent_st* event) {
    if (event->context == context) events_.Destroy(event);
  });
  libraries_.ForEachLive([&](CUlib_st* library) {
    if (library->module != nullptr && library->module->context == context) {
      library->module = nullptr;
    }
  });
  modules_.ForEachLive([&](CUmod_st* module) {
    if (module->context == context) keep_first_error(UnloadModuleLocked(module));
  });
  keep_first_error(UnchargeLocked(&context->charge));
  keep_first_error(UnchargeLocked(&context->limit_charge));
  // The charges go with the context, given back or not: a primary context's next retain charges
  // afresh.
  context->charge = {};
  context->limit_charge = {};
  for (size_t& limit : context->limits) limit = 0;
  context->live.store(false, std::memory_order_release);
  return result;
}

namespace {

constexpr size_t kDefaultLimits[10] = {1024, 1 << 20, 8 << 20, 2, 2048, 64, 0, 0, 0, 0};
constexpr uint64_t kThreadsPerMultiprocessor = 2048;

}  // namespace

CUresult Driver::SetLimit(CUlimit limit, size_t value) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  const auto index = static_cast<size_t>(limit);
  if (index >= std::size(kDefaultLimits)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  size_t values[3];
  for (size_t i = 0; i < 3; ++i) {
    values[i] = context->limits[i] != 0 ? context->limits[i] : kDefaultLimits[i];
  }
  if (index < 3) values[index] = value;
  // What the three take beyond their defaults, all at once: the new total replaces the old.
  const uint64_t threads =
      devices_[static_cast<size_t>(context->device)].multiprocessors * kThreadsPerMultiprocessor;
  uint64_t extra = 0;
  if (values[0] > kDefaultLimits[0]) extra += (values[0] - kDefaultLimits[0]) * threads;
  for (size_t i = 1; i < 3; ++i) {
    if (values[i] > kDefaultLimits[i]) extra += values[i] - kDefaultLimits[i];
  }
  if (index < 3) {
    // The old total goes first, so that a growth needs only the difference to fit; refused, the
    // old total is taken back (the device had it a moment ago).
    const uint64_t old_extra = context->limit_charge.bytes;
    if (CUresult released = UnchargeLocked(&context->limit_charge); released != CUDA_SUCCESS) {
      return released;  // the old total is still charged, and the limit unchanged
    }
    Charge charge;
    if (extra > 0) {
      if (CUresult charged = ChargeLocked(context->device, extra, &charge);
          charged != CUDA_SUCCESS) {
        if (old_extra > 0) ChargeLocked(context->device, old_extra, &context->limit_charge);
        return charged;
      }
    }
    context->limit_charge = charge;
  }
  context->limits[index] = value;
  return CUDA_SUCCESS;
}

CUresult Driver::GetLimit(size_t* value, CUlimit limit) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  const auto index = static_cast<size_t>(limit);
  if (value == nullptr || index >= std::size(kDefaultLimits)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  *value = context->limits[index] != 0 ? context->limits[index] : kDefaultLimits[index];
  return CUDA_SUCCESS;
}

CUresult Driver::DestroyContext(CUcontext context) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUctx_st* found = contexts_.Find(context);
  if (found == nullptr || found->primary) return CUDA_ERROR_INVALID_CONTEXT;
  CUresult released = ReleaseContextLocked(found);
  contexts_.Destroy(found);
  if (!t_context_stack.empty() && t_context_stack.back() == found) {
    t_context_stack.pop_back();
    SyncCurrent();
  }
  return released;
}

CUresult Driver::SetCurrent(CUcontext context) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (context == nullptr) {
    if (!t_context_stack.empty()) t_context_stack.pop_back();
    SyncCurrent();
    return CUDA_SUCCESS;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (contexts_.Find(context) == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (t_context_stack.empty()) {
    t_context_stack.push_back(context);
  } else {
    t_context_stack.back() = context;
  }
  SyncCurrent();
  return CUDA_SUCCESS;
}

CUresult Driver::GetCurrent(CUcontext* context) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *context = g_current_context;
  return CUDA_SUCCESS;
}

CUresult Driver::PushCurrent(CUcontext context) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  if (contexts_.Find(context) == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  t_context_stack.push_back(context);
  SyncCurrent();
  return CUDA_SUCCESS;
}

CUresult Driver::PopCurrent(CUcontext* context) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (t_context_stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  CUctx_st* popped = t_context_stack.back();
  t_context_stack.pop_back();
  SyncCurrent();
  if (context != nullptr) *context = popped;
  return CUDA_SUCCESS;
}

// ---- Modules ---------------------------------------------------------------------------------

CUresult Driver::UnloadModuleLocked(CUmod_st* module) {
  for (auto& [name, function] : module->functions) functions_.Destroy(function);
  module->functions.clear();
  CUresult uncharged = UnchargeLocked(&module->charge);
  modules_.Destroy(module);
  return uncharged;
}

CUresult Driver::ModuleUnload(CUmodule module) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmod_st* found = modules_.Find(module);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return UnloadModuleLocked(found);
}

CUresult Driver::LibraryUnload(CUlibrary library) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUlib_st* found = libraries_.Find(library);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  CUresult result = found->module != nullptr ? UnloadModuleLocked(found->module) : CUDA_SUCCESS;
  found->module = nullptr;
  libraries_.Destroy(found);
  return result;
}

CUresult Driver::ModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (function == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmod_st* found = modules_.Find(module);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  CUfunc_st*& entry = found->functions[name];
  if (entry == nullptr) {
    entry = functions_.Create();
    entry->module = found;
    entry->busy_ns = BusyKernelNs(name, &entry->per_block);
  }
  *function = entry;
  return CUDA_SUCCESS;
}

// ---- Streams and events ----------------------------------------------------------------------

bool Driver::StreamUsableLocked(CUstream stream) const {
  if (stream == nullptr || stream == reinterpret_cast<CUstream>(0x1) ||
      stream == reinterpret_cast<CUstream>(0x2)) {
    return LooksLive(g_current_context);  // the default streams of the current context
  }
  return streams_.Find(stream) != nullptr;
}

// The default streams (NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD) wait for the whole context,
// as the legacy stream synchronises with every other: stricter than the per-thread stream, never
// too early.
uint64_t Driver::StreamWorkEndLocked(CUstream stream) const {
  if (IsDefaultStream(stream)) {
    return g_current_context->work_end_ns.load(std::memory_order_acquire);
  }
  return stream->work_end_ns.load(std::memory_order_acquire);
}

CUresult Driver::QueueBusyKernels(CUstream stream, const uint64_t* durations_ns, size_t count) {
  if (CaptureKernels(stream, durations_ns, count)) {
    return CUDA_SUCCESS;  // nodes of the capture, not work
  }
  CUctx_st* context = g_current_context;
  Result<uint64_t> end = state_->QueueKernels(devices_[static_cast<size_t>(context->device)].ref,
                                              pid_, durations_ns, count);
  if (!end.ok()) return StateError(end.status());
  RaiseTo(context->work_end_ns, *end);
  if (!IsDefaultStream(stream)) RaiseTo(stream->work_end_ns, *end);
  return CUDA_SUCCESS;
}

CUresult Driver::ContextSynchronize() {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (CUresult allowed = CheckUnsafeCall(); allowed != CUDA_SUCCESS) return allowed;
  SleepUntil(context->work_end_ns.load(std::memory_order_acquire));
  return ReleasePoolsToThresholds();
}

CUresult Driver::StreamCreate(CUstream* stream, unsigned flags) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (stream == nullptr || (flags & ~1u) != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUstream_st* created = streams_.Create();
  created->context = context;
  *stream = created;
  return CUDA_SUCCESS;
}

CUresult Driver::StreamDestroy(CUstream stream) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUstream_st* found = streams_.Find(stream);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  streams_.Destroy(found);
  return CUDA_SUCCESS;
}

CUresult Driver::StreamSynchronize(CUstream stream) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (CUresult allowed = CheckUnsafeCall(); allowed != CUDA_SUCCESS) return allowed;
  uint64_t end = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!StreamUsableLocked(stream)) return CUDA_ERROR_INVALID_HANDLE;
    end = StreamWorkEndLocked(stream);
  }
  SleepUntil(end);
  return ReleasePoolsToThresholds();
}

CUresult Driver::StreamQuery(CUstream stream) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (CUresult allowed = CheckUnsafeCall(); allowed != CUDA_SUCCESS) return allowed;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!StreamUsableLocked(stream)) return CUDA_ERROR_INVALID_HANDLE;
  return StreamWorkEndLocked(stream) > static_cast<uint64_t>(MonotonicNs()) ? CUDA_ERROR_NOT_READY
                                                                            : CUDA_SUCCESS;
}

CUresult Driver::EventCreate(CUevent* event, unsigned flags) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (event == nullptr || (flags & ~0x7u) != 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUevent_st* created = events_.Create();
  created->context = context;
  created->flags = flags;
  *event = created;
  return CUDA_SUCCESS;
}

CUresult Driver::EventDestroy(CUevent event) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUevent_st* found = events_.Find(event);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  events_.Destroy(found);
  return CUDA_SUCCESS;
}

CUresult Driver::EventRecord(CUevent event, CUstream stream) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUevent_st* found = events_.Find(event);
  if (found == nullptr || !StreamUsableLocked(stream)) return CUDA_ERROR_INVALID_HANDLE;
  // On a capturing stream the record is a node of the capture: the event is not reached now.
  if (captures_.count(stream) != 0) return CUDA_SUCCESS;
  // The device reaches the event when the stream's work before it is done, or now if it is idle.
  uint64_t now = static_cast<uint64_t>(MonotonicNs());
  uint64_t work_end = StreamWorkEndLocked(stream);
  found->recorded = true;
  found->recorded_ns = work_end > now ? work_end : now;
  return CUDA_SUCCESS;
}

CUresult Driver::EventSynchronize(CUevent event) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (CUresult allowed = CheckUnsafeCall(); allowed != CUDA_SUCCESS) return allowed;
  uint64_t reached = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    CUevent_st* found = events_.Find(event);
    if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (found->recorded) reached = found->recorded_ns;
  }
  SleepUntil(reached);
  return ReleasePoolsToThresholds();
}

CUresult Driver::EventQuery(CUevent event) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (CUresult allowed = CheckUnsafeCall(); allowed != CUDA_SUCCESS) return allowed;
  std::lock_guard<std::mutex> lock(mutex_);
  CUevent_st* found = events_.Find(event);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return found->recorded && found->recorded_ns > static_cast<uint64_t>(MonotonicNs())
             ? CUDA_ERROR_NOT_READY
             : CUDA_SUCCESS;
}

CUresult Driver::EventElapsedTime(float* milliseconds, CUevent start, CUevent end) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (milliseconds == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  constexpr unsigned kDisableTiming = 0x2;
  CUevent_st* first = events_.Find(start);
  CUevent_st* second = events_.Find(end);
  if (first == nullptr || second == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (!first->recorded || !second->recorded) return CUDA_ERROR_INVALID_HANDLE;
  if ((first->flags & kDisableTiming) != 0 || (second->flags & kDisableTiming) != 0) {
    return CUDA_ERROR_INVALID_HANDLE;
  }
  uint64_t now = static_cast<uint64_t>(MonotonicNs());
  if (first->recorded_ns > now || second->recorded_ns > now) return CUDA_ERROR_NOT_READY;
  double elapsed_ns =
      static_cast<double>(second->recorded_ns) - static_cast<double>(first->recorded_ns);
  *milliseconds = static_cast<float>(elapsed_ns / 1e6);
  return CUDA_SUCCESS;
}

}  // namespace tessera::fakegpu
