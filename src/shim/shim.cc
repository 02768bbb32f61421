#include "shim/shim.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/log.h"
#include "common/process.h"
#include "shim/limiter.h"

namespace tessera::shim {

// ---- Finding glibc's dlsym: dlsym_next.cc ----------------------------------------------------
using DlsymFunction = void* (*)(void*, const char*);
extern "C" DlsymFunction tessera_resolve_next_dlsym();

namespace {

__attribute__((no_sanitize("address", "undefined"))) void* RealDlsym(void* handle,
                                                                     const char* name) {
  return tessera_resolve_next_dlsym()(handle, name);
}

// ---- The hook registry, from hooks.def ------------------------------------------------------
struct HookEntry {
  const char* name;
  void* hook;
  bool nvml;
};

const HookEntry kHooks[] = {
#define TESSERA_CUDA_HOOK(name) {#name, reinterpret_cast<void*>(&::name), false},
#define TESSERA_NVML_HOOK(name) {#name, reinterpret_cast<void*>(&::name), true},
#include "shim/hooks.def"
};
static_assert(sizeof(kHooks) / sizeof(kHooks[0]) == kHookCount, "one entry per hook");

// What cuGetProcAddress answers, from proc_address.def.
struct ProcRow {
  const char* base;
  const char* symbol;
  int version;
  bool per_thread_stream;
};

const ProcRow kProcRows[] = {
#define TESSERA_PROC(base, symbol, version, ptds) {#base, #symbol, version, (ptds) != 0},
#include "cuda/proc_address.def"
#undef TESSERA_PROC
};

// The exported variant a driver returns for (base, version, flags), or nullptr.
const char* ProcVariant(const char* base, int cuda_version, cuuint64_t flags) {
  bool want_ptds = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  const ProcRow* best[2] = {nullptr, nullptr};  // [legacy, per-thread]
  for (const ProcRow& row : kProcRows) {
    if (row.version > cuda_version || std::strcmp(row.base, base) != 0) continue;
    const ProcRow*& slot = best[row.per_thread_stream ? 1 : 0];
    if (slot == nullptr || row.version >= slot->version) slot = &row;
  }
  if (want_ptds && best[1] != nullptr) return best[1]->symbol;
  return best[0] != nullptr ? best[0]->symbol : nullptr;
}

// Stands in for a function the driver does not have.
template <typename Function>
struct Missing;
template <typename R, typename... Args>
struct Missing<R (*)(Args...)> {
  static R Call(Args...) {
    if constexpr (std::is_same_v<R, CUresult>) {
      return CUDA_ERROR_NOT_FOUND;
    } else {
      return NVML_ERROR_FUNCTION_NOT_FOUND;
    }
  }
};

template <typename Function>
Function Resolve(void* library, const char* name) {
  void* found = library != nullptr ? RealDlsym(library, name) : nullptr;
  if (found == nullptr) return &Missing<Function>::Call;
  return reinterpret_cast<Function>(found);
}

std::string FormatUuid(const CUuuid& uuid) {
  const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
  char text[48];
  std::snprintf(text, sizeof text,
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return text;
}

std::string CommandName() {
  char name[32] = {};
  int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t length = ::read(fd, name, sizeof name - 1);
    ::close(fd);
    if (length > 0 && name[length - 1] == '\n') name[length - 1] = '\0';
  }
  return name;
}

// Gives a charge back to the region. When the region's lock cannot be had the charge stays in the
// region (too much rather than too little is counted) until this process is reaped.
void ReleaseCharge(region::Region& region, int slot, int device, uint64_t bytes) {
  Status released = region.Release(slot, device, bytes);
  if (!released.ok()) {
    log::Write(log::Level::kError, "shim", "%s; %llu bytes stay charged on device %d",
               released.message().c_str(), static_cast<unsigned long long>(bytes), device);
  }
}

}  // namespace

// ---- Construction ----------------------------------------------------------------------------
namespace {

// Set while this thread runs the Shim's constructor.
thread_local bool t_creating_shim = false;

}  // namespace

Shim* Shim::Create() {
  if (t_creating_shim) return nullptr;
  std::lock_guard<std::mutex> lock(create_mutex_);
  if (Shim* shim = instance_.load(std::memory_order_acquire)) return shim;  // another thread's
  t_creating_shim = true;
  Shim* shim = new Shim();  // never destroyed: hooks may run during exit
  t_creating_shim = false;
  instance_.store(shim, std::memory_order_release);
  return shim;
}

Shim& Shim::CreateForHook() {
  Shim* shim = Create();
  if (shim == nullptr) {
    // A driver entry point called from inside the shim's own start-up (the driver's or NVML's
    // loading): the shim has no table to forward it with yet. Waiting would deadlock this thread.
    log::Write(log::Level::kError, "shim",
               "a CUDA or NVML function was called while the shim was starting (from the "
               "driver's loading); this process cannot go on");
    std::abort();
  }
  return *shim;
}

Shim::Shim() : config_(ReadConfigFromEnvironment()) {
  authoritative_ = !config_.limits_file.empty();
  for (const std::string& notice : config_.notices) {
    log::Write(log::Level::kWarn, "shim", "%s", notice.c_str());
  }
  if (!config_.errors.empty()) {
    for (const std::string& error : config_.errors) {
      log::Write(log::Level::kError, "shim", "%s", error.c_str());
    }
    log::Write(log::Level::kError, "shim",
               "CUDA is refused in this process until the %s above %s fixed",
               authoritative_              ? "limits file"
               : config_.errors.size() > 1 ? "variables"
                                           : "variable",
               config_.errors.size() > 1 && !authoritative_ ? "are" : "is");
    refusing_ = true;
  }
  LoadDriver();
  LoadNvml();
  if (refusing_) {
    FailClosed();
    return;
  }
  if (config_.disabled) return;

  auto region = config_.region_path.empty()
                    ? region::Region::CreatePrivate(config_.limits)
                    : region::Region::Open(config_.region_path, &config_.limits);
  if (!region.ok()) {
    log::Write(log::Level::kError, "shim", "%s; CUDA is refused in this process",
               region.status().message().c_str());
    refusing_ = true;
    FailClosed();
    return;
  }
  region_ = std::move(region).value();
  bool any_sm_limit = false;
  int first_differing = -1;
  for (int device = 0; device < region::kMaxDevices; ++device) {
    region::DeviceLimits wanted = config_.limits.devices[device];
    region::DeviceLimits held = region_->Limits(device);
    if (authoritative_) {
      // The file's limits are the ones enforced whatever the region says; the region is brought
      // back in line so that `tessera status` and the node agent show them too.
      if (wanted.sm_percent != 0) any_sm_limit = true;
      if (wanted.memory_bytes != held.memory_bytes || wanted.sm_percent != held.sm_percent) {
        if (first_differing < 0) {
          first_differing = device;
          log::Write(log::Level::kWarn, "shim",
                     "region %s holds limits other than limits file %s (device %d: %llu bytes, "
                     "%u%% instead of %llu bytes, %u%%); the file's apply and are put back",
                     region_->path().c_str(), config_.limits_file.c_str(), device,
                     static_cast<unsigned long long>(held.memory_bytes), held.sm_percent,
                     static_cast<unsigned long long>(wanted.memory_bytes), wanted.sm_percent);
        }
        Status set = region_->SetLimits(device, wanted);
        if (!set.ok()) {
          // Enforcement does not depend on it: the file's limits apply whatever the region says.
          log::Write(log::Level::kError, "shim", "%s", set.message().c_str());
        }
      }
      continue;
    }
    if (wanted.memory_bytes != 0 && wanted.memory_bytes != held.memory_bytes) {
      log::Write(log::Level::kWarn, "shim",
                 "device %d: this process asks for a %llu-byte memory limit, but region %s "
                 "holds %llu bytes for the container; the region's limit applies",
                 device, static_cast<unsigned long long>(wanted.memory_bytes),
                 region_->path().c_str(), static_cast<unsigned long long>(held.memory_bytes));
    }
    if (held.sm_percent != 0) any_sm_limit = true;
    if (wanted.sm_percent != 0 && wanted.sm_percent != held.sm_percent) {
      log::Write(log::Level::kWarn, "shim",
                 "device %d: this process asks for an sm limit of %u%%, but region %s holds %u%% "
                 "for the container; the region's limit applies",
                 device, wanted.sm_percent, region_->path().c_str(), held.sm_percent);
    }
  }
  if (any_sm_limit || config_.task_priority >= 0) {
    limiter_ = std::make_unique<Limiter>(
        cuda_, nvml_devices_, devices_, region_.get(),
        Limiter::Options{config_.work_conserving, config_.task_priority, config_.node_board_path,
                         authoritative_ ? &config_.limits : nullptr});
    governs_launches_ = true;
  }
  pthread_atfork([] { Get().OnForkPrepare(); }, [] { Get().OnForkParent(); },
                 [] { Get().OnForkChild(); });
  // No exit handler gives the slot back: the driver frees a process's memory only in its own
  // teardown, after exit handlers have run, so releasing the charge at exit would let another
  // process claim memory the driver still holds. The slot is reclaimed once the process is
  // gone (a zombie or no more), by the next process that touches the region.
  log::Write(log::Level::kInfo, "shim", "accounting in region %s%s%s", region_->path().c_str(),
             authoritative_ ? ", limits from " : "",
             authoritative_ ? config_.limits_file.c_str() : "");
}

void Shim::FailClosed() {
  // Without a limits file a refusing shim passes the hooks through (cuInit refuses, so nothing
  // else can work). With one, the hooks keep running against a private region and every charge
  // is refused, so even a driver initialised behind the shim's back gets no memory.
  if (!authoritative_) return;
  auto region = region::Region::CreatePrivate(config_.limits);
  if (region.ok()) region_ = std::move(region).value();
}

void Shim::LoadDriver() {
  // RTLD_NODELETE: the table must stay valid whatever the application does with its handles.
  void* library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (library == nullptr) {
    log::Write(log::Level::kDebug, "shim", "cannot load libcuda.so.1: %s", dlerror());
  }
#define TESSERA_CUDA_HOOK(name) cuda_.name = Resolve<decltype(&::name)>(library, #name);
#define TESSERA_CUDA_CALL(name) cuda_.name = Resolve<decltype(&::name)>(library, #name);
#include "shim/hooks.def"
  for (int i = 0; i < kHookCount; ++i) {
    if (!kHooks[i].nvml && library != nullptr) real_hooks_[i] = RealDlsym(library, kHooks[i].name);
  }
}

void Shim::LoadNvml() {
  void* library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
#define TESSERA_NVML_HOOK(name) nvml_.name = Resolve<decltype(&::name)>(library, #name);
#define TESSERA_NVML_CALL(name) nvml_.name = Resolve<decltype(&::name)>(library, #name);
#include "shim/hooks.def"
  for (int i = 0; i < kHookCount; ++i) {
    if (kHooks[i].nvml && library != nullptr) real_hooks_[i] = RealDlsym(library, kHooks[i].name);
  }
}

// ---- Accounting -------------------------------------------------------------------------------
int Shim::CurrentOrdinal() const {
  CUdevice ordinal = -1;
  if (cuda_.cuCtxGetDevice(&ordinal) != CUDA_SUCCESS) return -1;
  return ordinal;
}

int Shim::CurrentDevice() { return devices_.Of(CurrentOrdinal()); }

bool Shim::EnsureSlot() {
  if (slot_ >= 0) return true;
  // The pid its /proc knows it by: getpid(), or in a container that keeps the node's /proc its
  // node pid, which every process that sees that /proc can check.
  const ProcIdentity self = ThisProcessInProc();
  const pid_t pid = self.pid;
  auto slot = region_->ClaimSlot(pid, ProcessStartTime(pid), CommandName());
  if (!slot.ok()) {
    log::Write(log::Level::kError, "shim", "%s; allocations are refused",
               slot.status().message().c_str());
    return false;
  }
  slot_ = *slot;
  // Numbered by the node's own pid namespace, that pid is the one the driver knows; in a
  // container's it is learnt when the process makes its first context (LearnDriverPid).
  if (self.pid_namespace == kInitialPidNamespace) {
    RecordDriverPid(static_cast<uint32_t>(pid));
  } else if (const uint32_t learnt = DriverPid(); learnt != 0) {
    RecordDriverPid(learnt);  // learnt before the slot was claimed
  }
  return true;
}

void Shim::RecordDriverPid(uint32_t pid) {
  driver_pid_.store(pid, std::memory_order_release);
  if (region_ == nullptr || slot_ < 0) return;
  Status told = region_->SetDriverPid(slot_, pid);
  if (!told.ok()) log::Write(log::Level::kError, "shim", "%s", told.message().c_str());
}

bool Shim::Reserve(int device, uint64_t bytes) {
  if (device < 0 || region_ == nullptr) return true;
  if (refusing_) {
    log::Write(log::Level::kInfo, "shim",
               "refused %llu bytes on device %d: the configuration is unusable (see the first "
               "message)",
               static_cast<unsigned long long>(bytes), device);
    return false;
  }
  uint64_t limit = Limit(device);
  std::lock_guard<std::mutex> lock(mutex_);
  // This process's own total is checked first, from memory the container cannot write: whatever
  // another process forges in the region, one process never holds more than the limit. The
  // region's check is what keeps the container's processes within it together; its totals are
  // only as honest as the processes that write them (docs/memory-limits.md).
  if (limit != 0 && (bytes > limit || process_charged_[device] > limit - bytes)) {
    log::Write(log::Level::kInfo, "shim",
               "refused %llu bytes on device %d: this process holds %llu of the %llu-byte limit",
               static_cast<unsigned long long>(bytes), device,
               static_cast<unsigned long long>(process_charged_[device]),
               static_cast<unsigned long long>(limit));
    return false;
  }
  if (!EnsureSlot()) return false;
  // With a limits file the limit checked is the file's, never the region's.
  Result<bool> admitted = authoritative_ ? region_->Reserve(slot_, device, bytes, limit)
                                         : region_->Reserve(slot_, device, bytes);
  if (!admitted.ok()) {
    log::Write(log::Level::kError, "shim", "%s; refused %llu bytes on device %d",
               admitted.status().message().c_str(), static_cast<unsigned long long>(bytes), device);
    return false;
  }
  if (!*admitted) {
    log::Write(log::Level::kInfo, "shim",
               "refused %llu bytes on device %d: %llu of %llu bytes in use",
               static_cast<unsigned long long>(bytes), device,
               static_cast<unsigned long long>(region_->Used(device)),
               static_cast<unsigned long long>(limit));
    return false;
  }
  process_charged_[device] += bytes;
  return true;
}

void Shim::Release(int device, uint64_t bytes) {
  if (device < 0 || region_ == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (slot_ < 0) return;
  ReleaseCharge(*region_, slot_, device, bytes);
  process_charged_[device] -= bytes <= process_charged_[device] ? bytes : process_charged_[device];
}

void Shim::Track(ChargeKind kind, uint64_t key, int device, uint64_t bytes, uintptr_t owner) {
  if (device < 0 || region_ == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto [entry, inserted] = charges_.try_emplace(Key{kind, key}, Charge{device, bytes, owner});
  if (!inserted) {
    // The driver handed out a handle we still hold a charge for: the earlier one was freed by a
    // path we do not see (e.g. a context teardown). Its charge goes with it.
    if (slot_ >= 0) ReleaseCharge(*region_, slot_, entry->second.device, entry->second.bytes);
    process_charged_[entry->second.device] -= entry->second.bytes;
    entry->second = Charge{device, bytes, owner};
  }
}

bool Shim::Untrack(ChargeKind kind, uint64_t key) {
  if (region_ == nullptr) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto entry = charges_.find(Key{kind, key});
  if (entry == charges_.end()) return false;
  if (slot_ >= 0) ReleaseCharge(*region_, slot_, entry->second.device, entry->second.bytes);
  process_charged_[entry->second.device] -= entry->second.bytes;
  charges_.erase(entry);
  return true;
}

void Shim::UntrackOwner(uintptr_t owner) {
  if (region_ == nullptr || owner == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto entry = charges_.begin(); entry != charges_.end();) {
    if (entry->second.owner != owner) {
      ++entry;
      continue;
    }
    if (slot_ >= 0) ReleaseCharge(*region_, slot_, entry->second.device, entry->second.bytes);
    process_charged_[entry->second.device] -= entry->second.bytes;
    entry = charges_.erase(entry);
  }
}

void Shim::OnVmmMapped(CUdeviceptr pointer, CUmemGenericAllocationHandle handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  vmm_mappings_[pointer] = handle;
  ++vmm_handles_[handle].mappings;
}

void Shim::OnVmmReleased(CUmemGenericAllocationHandle handle) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto mapped = vmm_handles_.find(handle);
    if (mapped != vmm_handles_.end() && mapped->second.mappings > 0) {
      mapped->second.released = true;  // the mappings keep the memory
      return;
    }
  }
  Untrack(ChargeKind::kVmmHandle, handle);
}

void Shim::OnVmmUnmapped(CUdeviceptr pointer, size_t size) {
  std::vector<CUmemGenericAllocationHandle> freed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto mapping = vmm_mappings_.lower_bound(pointer);
    while (mapping != vmm_mappings_.end() && mapping->first - pointer < size) {
      auto handle = vmm_handles_.find(mapping->second);
      if (handle != vmm_handles_.end() && --handle->second.mappings <= 0) {
        if (handle->second.released) freed.push_back(handle->first);
        vmm_handles_.erase(handle);
      }
      mapping = vmm_mappings_.erase(mapping);
    }
  }
  for (CUmemGenericAllocationHandle handle : freed) Untrack(ChargeKind::kVmmHandle, handle);
}

uint64_t Shim::TrackedBytes(ChargeKind kind, uint64_t key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto entry = charges_.find(Key{kind, key});
  return entry == charges_.end() ? 0 : entry->second.bytes;
}

void Shim::SetTracked(ChargeKind kind, uint64_t key, int device, uint64_t bytes, uintptr_t owner) {
  if (device < 0 || region_ == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes == 0) {
    charges_.erase(Key{kind, key});
  } else {
    charges_[Key{kind, key}] = Charge{device, bytes, owner};
  }
}

bool Shim::IsTracked(ChargeKind kind, uint64_t key) {
  std::lock_guard<std::mutex> lock(mutex_);
  return charges_.count(Key{kind, key}) != 0;
}

int Shim::CountPrimaryRetains(int device, int delta, CUcontext context) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (context != nullptr) primary_context_[device] = context;
  primary_retains_[device] += delta;
  if (primary_retains_[device] < 0) primary_retains_[device] = 0;
  return primary_retains_[device];
}

CUcontext Shim::PrimaryContext(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  return primary_context_[device];
}

uint64_t Shim::ProcessCharged(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  return process_charged_[device];
}

uint64_t Shim::Limit(int device) const {
  if (device < 0 || device >= region::kMaxDevices || region_ == nullptr) return 0;
  if (authoritative_) return config_.limits.devices[device].memory_bytes;
  return region_->Limits(device).memory_bytes;
}

uint64_t Shim::Used(int device) {
  if (device < 0 || device >= region::kMaxDevices || region_ == nullptr) return 0;
  // Never less than this process holds, whatever the region's total says.
  return std::max(region_->Used(device), ProcessCharged(device));
}

// ---- Devices -----------------------------------------------------------------------------------
void Shim::OnDriverInitialized() {
  if (region_ != nullptr) devices_.Of(0);  // binds the devices now, for NVML's sake
}

bool Shim::MapDevices(DeviceMap& map) {
  if (region_ == nullptr) return true;  // nothing is accounted
  int count = 0;
  if (cuda_.cuDeviceGetCount(&count) != CUDA_SUCCESS) return false;  // before cuInit
  for (int ordinal = 0; ordinal < count && ordinal < region::kMaxDevices; ++ordinal) {
    CUdevice device = 0;
    CUuuid uuid{};
    if (cuda_.cuDeviceGet(&device, ordinal) != CUDA_SUCCESS ||
        cuda_.cuDeviceGetUuid_v2(&uuid, device) != CUDA_SUCCESS) {
      log::Write(log::Level::kError, "shim",
                 "CUDA device %d: the driver gives no UUID; it is not accounted", ordinal);
      continue;
    }
    const std::string seen = FormatUuid(uuid);
    Result<int> chosen = ChooseContainerDevice(*region_, config_.device_uuids, seen, ordinal);
    if (!chosen.ok()) {
      log::Write(log::Level::kError, "shim", "CUDA device %d (%s): %s; it is not accounted",
                 ordinal, seen.c_str(), chosen.status().message().c_str());
      continue;
    }
    const auto listed = static_cast<size_t>(*chosen);
    const bool in_list = listed < config_.device_uuids.size();
    if (!config_.device_uuids.empty() && !in_list) {
      log::Write(log::Level::kWarn, "shim",
                 "CUDA device %d (%s) is not one of the container's devices (%s); it is "
                 "accounted as device %d, without the container's limits",
                 ordinal, seen.c_str(), config_.device_uuids_source.c_str(), *chosen);
    }
    map.Set(ordinal, *chosen);
    // The list's spelling says GPU or MIG; the driver's bytes do not.
    nvml_devices_.SetUuid(*chosen, in_list ? config_.device_uuids[listed] : seen);
  }
  return true;
}

int Shim::DeviceOfNvmlHandle(nvmlDevice_t handle) {
  if (region_ == nullptr) return -1;
  return nvml_devices_.DeviceOf(handle, [this](const char* uuid) {
    // The container's list first: nvidia-smi in a container sees its limits before any CUDA
    // process has bound a device.
    for (size_t i = 0; i < config_.device_uuids.size() && i < region::kMaxDevices; ++i) {
      if (region::SameDeviceUuid(config_.device_uuids[i], uuid)) return static_cast<int>(i);
    }
    Result<int> found = region_->FindDevice(uuid);
    if (found.ok()) return *found;
    log::Write(log::Level::kError, "shim", "%s", found.status().message().c_str());
    return -1;
  });
}

bool Shim::NvmlProcesses(int device, std::vector<nvmlProcessInfo_t>* processes) {
  nvmlDevice_t handle = nvml_devices_.Handle(device);
  if (handle == nullptr) return false;
  processes->resize(64);
  auto count = static_cast<unsigned>(processes->size());
  if (nvml_.nvmlDeviceGetComputeRunningProcesses_v3(handle, &count, processes->data()) !=
      NVML_SUCCESS) {
    return false;
  }
  processes->resize(std::min<size_t>(count, processes->size()));
  return true;
}

bool Shim::NvmlPids(int device, std::vector<unsigned>* pids) {
  std::vector<nvmlProcessInfo_t> processes;
  if (!NvmlProcesses(device, &processes)) return false;
  pids->clear();
  for (const nvmlProcessInfo_t& process : processes) pids->push_back(process.pid);
  return true;
}

void Shim::LearnDriverPid(int device, const std::vector<unsigned>& before) {
  if (driver_pid_tried_.exchange(true, std::memory_order_acq_rel)) return;
  std::vector<unsigned> after;
  if (DriverPid() != 0 || !NvmlPids(device, &after)) return;
  const std::unordered_map<unsigned, unsigned> others = ContainerProcesses();
  std::vector<unsigned> appeared;
  for (unsigned pid : after) {
    if (std::find(before.begin(), before.end(), pid) != before.end()) continue;
    if (others.count(pid) != 0) continue;
    if (std::find(appeared.begin(), appeared.end(), pid) == appeared.end()) {
      appeared.push_back(pid);
    }
  }
  if (appeared.size() != 1) {
    log::Write(log::Level::kInfo, "shim",
               "pid %d: cannot tell which of %zu processes new on the GPU is this one; its "
               "contexts and loads are charged estimates, and NVML does not list it",
               static_cast<int>(getpid()), appeared.size());
    return;
  }
  log::Write(log::Level::kInfo, "shim", "pid %d is pid %u on the node (from NVML)",
             static_cast<int>(getpid()), appeared[0]);
  RecordDriverPid(appeared[0]);
}

bool Shim::ProcessMemoryFromNvml(int device, uint64_t* bytes) {
  // Until the driver's pid for this process is known there is nothing to find.
  const uint32_t self = DriverPid();
  std::vector<nvmlProcessInfo_t> processes;
  if (self == 0 || !NvmlProcesses(device, &processes)) return false;
  for (const nvmlProcessInfo_t& process : processes) {
    if (process.pid == self) {
      // NVML cannot always tell: then neither can we, and the estimate stands.
      if (process.usedGpuMemory == NVML_VALUE_NOT_AVAILABLE) return false;
      *bytes = process.usedGpuMemory;
      return true;
    }
  }
  return false;
}

std::unordered_map<unsigned, unsigned> Shim::ContainerProcesses() {
  std::unordered_map<unsigned, unsigned> processes;
  if (region_ == nullptr) return processes;
  Result<region::Snapshot> snapshot = region_->TakeSnapshot();
  if (!snapshot.ok()) {
    log::Write(log::Level::kError, "shim", "%s", snapshot.status().message().c_str());
    return processes;
  }
  for (const region::ProcessUsage& process : snapshot->processes) {
    if (process.driver_pid == 0 || process.liveness == region::Liveness::kDead) continue;
    processes[process.driver_pid] = static_cast<unsigned>(process.pid);
  }
  return processes;
}

// ---- Symbol lookups ---------------------------------------------------------------------------
void* Shim::HookForDlsym(const char* name, void* found) {
  if (config_.disabled) return found;
  for (int i = 0; i < kHookCount; ++i) {
    if (std::strcmp(kHooks[i].name, name) != 0) continue;
    // Only what the caller's handle resolved to the real driver (or to the shim) is replaced;
    // a library with a symbol of the same name keeps it.
    return found == real_hooks_[i] || found == kHooks[i].hook ? kHooks[i].hook : found;
  }
  return found;
}

void* Shim::HookForProcAddress(const char* symbol, void* found, int cuda_version,
                               cuuint64_t flags) {
  if (config_.disabled) return found;
  for (int i = 0; i < kHookCount; ++i) {
    if (found == real_hooks_[i]) return kHooks[i].hook;
  }
  // A driver may hand out internal entry points: decide by what the request means.
  const char* variant = ProcVariant(symbol, cuda_version, flags);
  if (variant == nullptr) return found;
  for (int i = 0; i < kHookCount; ++i) {
    if (!kHooks[i].nvml && real_hooks_[i] != nullptr && std::strcmp(kHooks[i].name, variant) == 0) {
      return kHooks[i].hook;
    }
  }
  return found;
}

// ---- Process life ----------------------------------------------------------------------------
void Shim::OnForkPrepare() {
  mutex_.lock();
  if (limiter_ != nullptr) limiter_->OnForkPrepare();
  nvml_devices_.OnForkPrepare();  // last: the limiter takes it under its own lock
}

void Shim::OnForkParent() {
  nvml_devices_.OnForkParent();
  if (limiter_ != nullptr) limiter_->OnForkParent();
  mutex_.unlock();
}

void Shim::OnForkChild() {
  // The child starts with no CUDA state of its own (CUDA forbids using the parent's contexts)
  // and claims its own slot on its first charge.
  slot_ = -1;
  driver_pid_.store(0, std::memory_order_release);
  driver_pid_tried_.store(false, std::memory_order_release);
  charges_.clear();
  vmm_mappings_.clear();
  vmm_handles_.clear();
  for (int device = 0; device < region::kMaxDevices; ++device) {
    process_charged_[device] = 0;
    primary_retains_[device] = 0;
    primary_context_[device] = nullptr;
  }
  nvml_devices_.OnForkChild();
  if (limiter_ != nullptr) limiter_->OnForkChild();
  mutex_.unlock();
}

}  // namespace tessera::shim

// ---- dlsym for every handle but RTLD_NEXT (see dlsym_entry.S) ---------------------------------
// Not instrumented either: sanitizer runtimes look up their interceptors through dlsym while
// they initialise.
extern "C" __attribute__((visibility("hidden"), no_sanitize("address", "undefined"))) void*
tessera_dlsym_hooked(void* handle, const char* name) {
  void* found = tessera::shim::RealDlsym(handle, name);
  if (found == nullptr || name == nullptr) return found;
  // Cheap reject for the thousands of non-driver lookups a large program makes.
  bool candidate = (name[0] == 'c' && name[1] == 'u') || (name[0] == 'n' && name[1] == 'v');
  if (!candidate) return found;
  // The shim's start-up loads the driver, and the driver's loading may look symbols up: those
  // lookups get what they found.
  tessera::shim::Shim* shim = tessera::shim::Shim::GetUnlessStarting();
  return shim != nullptr ? shim->HookForDlsym(name, found) : found;
}
