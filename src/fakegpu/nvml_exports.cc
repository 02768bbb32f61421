// libnvidia-ml.so.1: NVML over the same devices (TESSERA_FAKEGPU_CONFIG, seen through
// NVIDIA_VISIBLE_DEVICES) and the same node-wide state (TESSERA_FAKEGPU_STATE) as the fake
// libcuda.so.1. NVML only reads the state, except for raising and clearing faults: it holds no
// memory and claims no process slot.
//
// Handles: one per GPU of the node and one per MIG device, at fixed addresses; a handle is usable
// while its device is visible in this process. Indices are this process's (renumbered from 0),
// except nvmlDeviceGetMinorNumber's, which is the GPU's index on the node (its /dev/nvidiaN).
// Events: nvmlEventSetWait_v2 polls the state file's Xid sequence number every few milliseconds,
// so an Xid raised by any process reaches every event set registered for the GPU when it was
// raised, once.
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "cuda/nvml_api.h"
#include "fakegpu/config.h"
#include "fakegpu/control.h"
#include "fakegpu/export.h"
#include "fakegpu/fault_control.h"
#include "fakegpu/faults.h"
#include "fakegpu/shared_state.h"
#include "fakegpu/utilization.h"
#include "fakegpu/visible_devices.h"

struct nvmlDevice_st {
  int gpu;  // index on the node
  int mig;  // index into the GPU's DeviceSpec::mig, or -1 for the whole GPU
};

struct nvmlEventSet_st {
  // One device's registration: the Xids numbered after `seen` are still to be delivered.
  struct Registration {
    nvmlDevice_t device = nullptr;
    int gpu = 0;
    unsigned long long event_types = 0;
    uint64_t seen = 0;
  };
  bool live = false;
  std::vector<Registration> registrations;
};

namespace {

using tessera::fakegpu::Api;
using tessera::fakegpu::CheckFault;
using tessera::fakegpu::DeviceRef;
using tessera::fakegpu::DeviceSpec;
using tessera::fakegpu::Fault;
using tessera::fakegpu::kMaxDevices;
using tessera::fakegpu::kMaxMigInstances;
using tessera::fakegpu::MigInstance;
using tessera::fakegpu::MigProfile;
using tessera::fakegpu::SharedState;
using tessera::fakegpu::VisibleGpu;

constexpr const char* kDriverVersion = "580.65.06";
// Not in MIG mode, or not attributable to an instance (nvmlProcessInfo_t, nvmlEventData_t).
constexpr unsigned kNoInstance = 0xFFFFFFFFu;
// NVML_GPU_INSTANCE_PROFILE_* values end below this (R580's NVML_GPU_INSTANCE_PROFILE_COUNT).
constexpr unsigned kGpuInstanceProfileCount = 0x11;
constexpr unsigned long long kSupportedEventTypes =
    nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError | nvmlEventTypePState |
    nvmlEventTypeXidCriticalError;
// How often a waiting event set looks at the state file's Xid sequence number.
constexpr long kEventPollIntervalNs = 5'000'000;
// The PCI ids of an H100 SXM5 80GB: device 0x2330, vendor NVIDIA 0x10de.
constexpr unsigned kPciDeviceId = 0x233010de;
constexpr unsigned kPciSubSystemId = 0x16c110de;

__attribute__((constructor)) void ArmFaultsAtLoad() {
  tessera::fakegpu::ArmFaultsFromEnvironment();
}

template <typename T>
nvmlReturn_t Faulted(Fault fault, T* output) {
  if (fault.kind != Fault::Kind::kNull) return static_cast<nvmlReturn_t>(fault.code);
  if (output != nullptr) *output = T{};
  return NVML_SUCCESS;
}

nvmlReturn_t Faulted(Fault fault) {
  return fault.kind == Fault::Kind::kNull ? NVML_SUCCESS : static_cast<nvmlReturn_t>(fault.code);
}

// What a call returns when the state file's lock cannot be had: the state stands in for the
// GPUs' driver, and a real NVML answers a driver it cannot make sense of with NVML_ERROR_UNKNOWN
// (it has no code for broken bookkeeping). Says why on stderr, as the fake libcuda does.
nvmlReturn_t StateError(const tessera::Status& status) {
  tessera::log::Write(tessera::log::Level::kError, "fakegpu",
                      "%s; the call returns NVML_ERROR_UNKNOWN", status.message().c_str());
  return NVML_ERROR_UNKNOWN;
}

// What a handle names, resolved against this process's view: a visible GPU or a visible MIG
// device of one.
struct Target {
  int gpu = 0;                            // index on the node
  int mig = -1;                           // index into DeviceSpec::mig, or -1 for the whole GPU
  const DeviceSpec* spec = nullptr;       // the GPU
  const MigInstance* instance = nullptr;  // the MIG instance, or null
  const VisibleGpu* visible = nullptr;    // the GPU as this process sees it
  unsigned index = 0;                     // the GPU's NVML index in this process
  bool is_mig() const { return mig >= 0; }
  DeviceRef ref() const { return {gpu, mig}; }
};

// Which handles a query takes, and whether it still answers for a GPU that fell off the bus.
enum Accepts : unsigned {
  kGpuHandle = 1,  // a MIG handle gets NVML_ERROR_NOT_SUPPORTED
  kMigHandle = 2,  // a GPU handle gets NVML_ERROR_INVALID_ARGUMENT (unless kGpuHandle too)
  kAnyHandle = kGpuHandle | kMigHandle,
  kEvenIfLost = 4,  // handle bookkeeping, answered without reaching the GPU
};

// NVML's state in this process: reference-counted initialisation, as nvmlInit/nvmlShutdown nest.
// Every member takes the mutex (NVML is not a hot path), except that nvmlEventSetWait_v2 sleeps
// without it between polls of the state file.
class Nvml {
 public:
  static Nvml& Get() {
    static Nvml* nvml = new Nvml();  // never destroyed: NVML may be called during exit
    return *nvml;
  }

  nvmlReturn_t Init() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (init_count_ > 0) {
      ++init_count_;
      return NVML_SUCCESS;
    }
    if (tessera::fakegpu::FaultConfigurationBroken()) return NVML_ERROR_DRIVER_NOT_LOADED;
    auto fail = [](const std::string& why) {
      tessera::log::Write(tessera::log::Level::kError, "fakegpu",
                          "%s; nvmlInit returns NVML_ERROR_DRIVER_NOT_LOADED", why.c_str());
      return NVML_ERROR_DRIVER_NOT_LOADED;
    };
    tessera::Result<std::vector<DeviceSpec>> node = tessera::fakegpu::LoadDeviceConfig();
    if (!node.ok()) return fail(node.status().message());
    tessera::Result<std::vector<VisibleGpu>> visible =
        tessera::fakegpu::VisibleGpusFromEnvironment(*node);
    if (!visible.ok()) return fail(visible.status().message());
    tessera::Result<std::unique_ptr<SharedState>> state =
        SharedState::OpenForNode(tessera::fakegpu::DefaultStatePath(), *node);
    if (!state.ok()) return fail(state.status().message());
    node_ = std::move(node).value();
    visible_ = std::move(visible).value();
    state_ = std::move(state).value();
    for (int gpu = 0; gpu < kMaxDevices; ++gpu) {
      gpu_handles_[gpu] = {gpu, -1};
      for (int mig = 0; mig < kMaxMigInstances; ++mig) mig_handles_[gpu][mig] = {gpu, mig};
    }
    init_count_ = 1;
    return NVML_SUCCESS;
  }

  nvmlReturn_t Shutdown() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (init_count_ == 0) return NVML_ERROR_UNINITIALIZED;
    if (--init_count_ == 0) {
      node_.clear();
      visible_.clear();
      state_.reset();
      for (const std::unique_ptr<nvmlEventSet_st>& set : event_sets_) set->live = false;
    }
    return NVML_SUCCESS;
  }

  // The calls below hold the lock for the caller: Call([&](Access& nvml) { ... }).
  struct Access {
    const std::vector<DeviceSpec>& node;
    const std::vector<VisibleGpu>& visible;
    SharedState& state;
    Nvml& owner;

    nvmlDevice_t GpuHandle(int gpu) { return &owner.gpu_handles_[gpu]; }
    nvmlDevice_t MigHandle(int gpu, int mig) { return &owner.mig_handles_[gpu][mig]; }

    // What `device` names, or nullopt when it is not a handle this process may use.
    std::optional<Target> Resolve(nvmlDevice_t device) {
      if (device == nullptr) return std::nullopt;
      for (size_t index = 0; index < visible.size(); ++index) {
        const VisibleGpu& gpu = visible[index];
        const DeviceSpec& spec = node[static_cast<size_t>(gpu.gpu)];
        Target target{gpu.gpu, -1, &spec, nullptr, &gpu, static_cast<unsigned>(index)};
        if (device == GpuHandle(gpu.gpu)) return target;
        for (int mig : gpu.mig) {
          if (device != MigHandle(gpu.gpu, mig)) continue;
          target.mig = mig;
          target.instance = &spec.mig[static_cast<size_t>(mig)];
          return target;
        }
      }
      return std::nullopt;
    }

    nvmlEventSet_st* FindEventSet(nvmlEventSet_t set) {
      for (const std::unique_ptr<nvmlEventSet_st>& owned : owner.event_sets_) {
        if (owned.get() == set && owned->live) return owned.get();
      }
      return nullptr;
    }

    nvmlEventSet_st* CreateEventSet() {
      for (const std::unique_ptr<nvmlEventSet_st>& owned : owner.event_sets_) {
        if (owned->live) continue;
        *owned = nvmlEventSet_st{};
        owned->live = true;
        return owned.get();
      }
      // Event sets are never freed, only marked dead: a stale handle stays safe to check.
      owner.event_sets_.push_back(std::make_unique<nvmlEventSet_st>());
      owner.event_sets_.back()->live = true;
      return owner.event_sets_.back().get();
    }
  };

  template <typename Body>
  nvmlReturn_t Call(Body body) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (init_count_ == 0) return NVML_ERROR_UNINITIALIZED;
    Access access{node_, visible_, *state_, *this};
    return body(access);
  }

  template <typename Body>
  nvmlReturn_t CallOnDevice(nvmlDevice_t device, unsigned accepts, Body body) {
    return Call([&](Access& nvml) {
      std::optional<Target> target = nvml.Resolve(device);
      if (!target) return NVML_ERROR_INVALID_ARGUMENT;
      if (target->is_mig() && (accepts & kMigHandle) == 0) return NVML_ERROR_NOT_SUPPORTED;
      if (!target->is_mig() && (accepts & kGpuHandle) == 0) return NVML_ERROR_INVALID_ARGUMENT;
      if ((accepts & kEvenIfLost) == 0) {
        tessera::Result<tessera::fakegpu::GpuHealth> health = nvml.state.Health(target->gpu);
        if (!health.ok()) return StateError(health.status());
        if (health->lost) return NVML_ERROR_GPU_IS_LOST;
      }
      return body(nvml, *target);
    });
  }

 private:
  Nvml() = default;
  std::mutex mutex_;
  int init_count_ = 0;
  std::vector<DeviceSpec> node_;
  std::vector<VisibleGpu> visible_;
  std::unique_ptr<SharedState> state_;
  // Handles live as long as the library, at fixed addresses: one per possible GPU and MIG device.
  nvmlDevice_st gpu_handles_[kMaxDevices] = {};
  nvmlDevice_st mig_handles_[kMaxDevices][kMaxMigInstances] = {};
  std::vector<std::unique_ptr<nvmlEventSet_st>> event_sets_;
};

nvmlReturn_t CopyString(const std::string& text, char* buffer, unsigned int length) {
  if (buffer == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (length < text.size() + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(buffer, text.c_str(), text.size() + 1);
  return NVML_SUCCESS;
}

const char* ErrorText(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED:
      return "Already Initialized";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT:
      return "Timeout";
    case NVML_ERROR_FUNCTION_NOT_FOUND:
      return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED:
      return "GPU requires restart";
    case NVML_ERROR_IN_USE:
      return "In use by another client";
    case NVML_ERROR_NO_DATA:
      return "No data";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Argument Version Mismatch";
    case NVML_ERROR_UNKNOWN:
      return "Unknown Error";
  }
  return "Unknown Error";
}

}  // namespace

// The driver's entry points, with nvml.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlInit_v2(void) {
  if (Fault fault = CheckFault(Api::nvmlInit_v2)) return Faulted(fault);
  return Nvml::Get().Init();
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
  if (Fault fault = CheckFault(Api::nvmlInitWithFlags)) return Faulted(fault);
  (void)flags;  // NO_GPUS / NO_ATTACH change nothing the fake simulates
  return Nvml::Get().Init();
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlShutdown(void) {
  if (Fault fault = CheckFault(Api::nvmlShutdown)) return Faulted(fault);
  return Nvml::Get().Shutdown();
}

// A fault's code becomes the text of that code; `null` returns NULL.
TESSERA_FAKE_EXPORT const char* nvmlErrorString(nvmlReturn_t result) {
  if (Fault fault = CheckFault(Api::nvmlErrorString)) {
    return fault.kind == Fault::Kind::kNull ? nullptr
                                            : ErrorText(static_cast<nvmlReturn_t>(fault.code));
  }
  return ErrorText(result);
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  if (Fault fault = CheckFault(Api::nvmlSystemGetDriverVersion)) return Faulted(fault, version);
  return Nvml::Get().Call(
      [&](Nvml::Access&) { return CopyString(kDriverVersion, version, length); });
}

// ---- Devices ---------------------------------------------------------------------------------

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* deviceCount) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetCount_v2)) return Faulted(fault, deviceCount);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (deviceCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = static_cast<unsigned>(nvml.visible.size());
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                                               nvmlDevice_t* device) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetHandleByIndex_v2)) return Faulted(fault, device);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (device == nullptr || index >= nvml.visible.size()) return NVML_ERROR_INVALID_ARGUMENT;
    *device = nvml.GpuHandle(nvml.visible[index].gpu);
    return NVML_SUCCESS;
  });
}

// A GPU UUID or a MIG UUID, of a device this process sees.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetHandleByUUID)) return Faulted(fault, device);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (uuid == nullptr || device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    for (const VisibleGpu& gpu : nvml.visible) {
      if (tessera::fakegpu::DeviceUuidText(nvml.node, {gpu.gpu, -1}) == uuid) {
        *device = nvml.GpuHandle(gpu.gpu);
        return NVML_SUCCESS;
      }
      for (int mig : gpu.mig) {
        if (tessera::fakegpu::DeviceUuidText(nvml.node, {gpu.gpu, mig}) == uuid) {
          *device = nvml.MigHandle(gpu.gpu, mig);
          return NVML_SUCCESS;
        }
      }
    }
    return NVML_ERROR_NOT_FOUND;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetIndex)) return Faulted(fault, index);
  return Nvml::Get().CallOnDevice(device, kGpuHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target& target) {
                                    if (index == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *index = target.index;
                                    return NVML_SUCCESS;
                                  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name,
                                                   unsigned int length) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetName)) return Faulted(fault, name);
  return Nvml::Get().CallOnDevice(device, kAnyHandle, [&](Nvml::Access&, const Target& target) {
    if (!target.is_mig()) return CopyString(target.spec->name, name, length);
    return CopyString(tessera::fakegpu::MigDeviceName(target.spec->name, *target.instance->profile),
                      name, length);
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid,
                                                   unsigned int length) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetUUID)) return Faulted(fault, uuid);
  return Nvml::Get().CallOnDevice(
      device, kAnyHandle, [&](Nvml::Access& nvml, const Target& target) {
        return CopyString(tessera::fakegpu::DeviceUuidText(nvml.node, target.ref()), uuid, length);
      });
}

// A MIG device's memory is its instance's; a GPU's (in MIG mode too) is the whole device's.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device,
                                                         nvmlMemory_t* memory) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMemoryInfo)) return Faulted(fault, memory);
  return Nvml::Get().CallOnDevice(
      device, kAnyHandle, [&](Nvml::Access& nvml, const Target& target) {
        if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        tessera::Result<tessera::fakegpu::DeviceUsage> usage = nvml.state.Usage(target.ref());
        if (!usage.ok()) return StateError(usage.status());
        memory->total = usage->total_bytes;
        memory->used = usage->used_bytes;
        memory->free = usage->total_bytes - usage->used_bytes;
        return NVML_SUCCESS;
      });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device,
                                                            nvmlMemory_v2_t* memory) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMemoryInfo_v2)) return Faulted(fault, memory);
  return Nvml::Get().CallOnDevice(
      device, kAnyHandle, [&](Nvml::Access& nvml, const Target& target) {
        if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
        tessera::Result<tessera::fakegpu::DeviceUsage> usage = nvml.state.Usage(target.ref());
        if (!usage.ok()) return StateError(usage.status());
        memory->total = usage->total_bytes;
        memory->reserved = 0;
        memory->used = usage->used_bytes;
        memory->free = usage->total_bytes - usage->used_bytes;
        return NVML_SUCCESS;
      });
}

namespace {

// Every compute process on the device (see nvmlDeviceGetComputeRunningProcesses_v3), or the
// error to answer.
nvmlReturn_t RunningProcesses(Nvml::Access& nvml, const Target& target,
                              std::vector<nvmlProcessInfo_t>& running) {
  tessera::Result<tessera::fakegpu::StateSnapshot> snapshot = nvml.state.Snapshot();
  if (!snapshot.ok()) return StateError(snapshot.status());
  size_t gpu = static_cast<size_t>(target.gpu);
  auto Reported = [&](uint64_t used) {
    return target.spec->process_memory_available ? used : NVML_VALUE_NOT_AVAILABLE;
  };
  for (const tessera::fakegpu::ProcessUsage& process : snapshot->processes) {
    unsigned pid = static_cast<unsigned>(process.pid);
    if (!target.spec->mig_enabled()) {
      uint64_t used = process.used_bytes[gpu];
      if (used != 0) running.push_back({pid, Reported(used), kNoInstance, kNoInstance});
      continue;
    }
    for (int mig : target.visible->mig) {
      if (target.is_mig() && mig != target.mig) continue;
      uint64_t used = process.mig_used_bytes[gpu][static_cast<size_t>(mig)];
      const MigInstance& instance = target.spec->mig[static_cast<size_t>(mig)];
      if (used != 0) {
        running.push_back(
            {pid, Reported(used), instance.gpu_instance_id, instance.compute_instance_id});
      }
    }
  }
  return NVML_SUCCESS;
}

// The answer in the caller's layout: INSUFFICIENT_SIZE with the count when it has no room.
template <typename Info>
nvmlReturn_t CopyProcesses(const std::vector<nvmlProcessInfo_t>& running, unsigned* count,
                           Info* infos) {
  unsigned capacity = *count;
  *count = static_cast<unsigned>(running.size());
  if (capacity < running.size()) return NVML_ERROR_INSUFFICIENT_SIZE;
  if (!running.empty() && infos == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  for (size_t i = 0; i < running.size(); ++i) {
    if constexpr (std::is_same_v<Info, nvmlProcessInfo_v1_t>) {
      infos[i] = {running[i].pid, running[i].usedGpuMemory};
    } else {
      infos[i] = running[i];
    }
  }
  return NVML_SUCCESS;
}

template <typename Info>
nvmlReturn_t ListProcesses(nvmlDevice_t device, unsigned* count, Info* infos) {
  return Nvml::Get().CallOnDevice(device, kAnyHandle,
                                  [&](Nvml::Access& nvml, const Target& target) {
                                    if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    std::vector<nvmlProcessInfo_t> running;
                                    nvmlReturn_t listed = RunningProcesses(nvml, target, running);
                                    if (listed != NVML_SUCCESS) return listed;
                                    return CopyProcesses(running, count, infos);
                                  });
}

}  // namespace

// On a GPU in MIG mode, one entry per process and visible instance it uses, with the instance's
// ids; on a MIG device, the processes using it. The older versions differ only in layout.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                                         unsigned int* infoCount,
                                                                         nvmlProcessInfo_t* infos) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetComputeRunningProcesses_v3)) {
    return Faulted(fault, infoCount);
  }
  return ListProcesses(device, infoCount, infos);
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(
    nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v2_t* infos) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetComputeRunningProcesses_v2)) {
    return Faulted(fault, infoCount);
  }
  return ListProcesses(device, infoCount, infos);
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device,
                                                                      unsigned int* infoCount,
                                                                      nvmlProcessInfo_v1_t* infos) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetComputeRunningProcesses)) {
    return Faulted(fault, infoCount);
  }
  return ListProcesses(device, infoCount, infos);
}

namespace {

uint64_t SamplePeriodStart(tessera::fakegpu::SampleTime now) {
  return now.monotonic_ns > tessera::fakegpu::kSamplePeriodNs
             ? now.monotonic_ns - tessera::fakegpu::kSamplePeriodNs
             : 0;
}

}  // namespace

// NVML does not report utilisation on a GPU in MIG mode.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                               nvmlUtilization_t* utilization) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetUtilizationRates)) {
    return Faulted(fault, utilization);
  }
  return Nvml::Get().CallOnDevice(
      device, kGpuHandle, [&](Nvml::Access& nvml, const Target& target) {
        if (utilization == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (target.spec->mig_enabled()) return NVML_ERROR_NOT_SUPPORTED;
        tessera::fakegpu::SampleTime now = tessera::fakegpu::SampleTime::Now();
        tessera::Result<std::vector<tessera::fakegpu::KernelRun>> runs =
            nvml.state.KernelRuns(target.gpu, SamplePeriodStart(now));
        if (!runs.ok()) return StateError(runs.status());
        tessera::fakegpu::DeviceUtilization sample =
            tessera::fakegpu::SampleDeviceUtilization(*runs, now);
        utilization->gpu = sample.gpu_percent;
        utilization->memory = sample.memory_percent;
        return NVML_SUCCESS;
      });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(
    nvmlDevice_t device, nvmlProcessUtilizationSample_t* utilization,
    unsigned int* processSamplesCount, unsigned long long lastSeenTimeStamp) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetProcessUtilization)) {
    return Faulted(fault, processSamplesCount);
  }
  return Nvml::Get().CallOnDevice(
      device, kGpuHandle, [&](Nvml::Access& nvml, const Target& target) {
        if (processSamplesCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (target.spec->mig_enabled()) return NVML_ERROR_NOT_SUPPORTED;
        tessera::fakegpu::SampleTime now = tessera::fakegpu::SampleTime::Now();
        tessera::Result<std::vector<tessera::fakegpu::KernelRun>> runs =
            nvml.state.KernelRuns(target.gpu, SamplePeriodStart(now));
        if (!runs.ok()) return StateError(runs.status());
        std::vector<tessera::fakegpu::ProcessUtilizationSample> samples =
            tessera::fakegpu::SampleProcessUtilization(*runs, now, lastSeenTimeStamp);
        if (samples.empty()) {
          *processSamplesCount = 0;
          return NVML_ERROR_NOT_FOUND;  // no process ran since lastSeenTimeStamp
        }
        unsigned capacity = *processSamplesCount;
        *processSamplesCount = static_cast<unsigned>(samples.size());
        if (utilization == nullptr || capacity < samples.size()) {
          return NVML_ERROR_INSUFFICIENT_SIZE;
        }
        for (size_t i = 0; i < samples.size(); ++i) {
          utilization[i] = {static_cast<unsigned>(samples[i].pid),
                            samples[i].timestamp_us,
                            samples[i].sm_percent,
                            samples[i].memory_percent,
                            0,
                            0};
        }
        return NVML_SUCCESS;
      });
}

// ---- Topology and identity --------------------------------------------------------------------

// Bus 0x18 + the GPU's index on the node, as cuDeviceGetPCIBusId says.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetPciInfo_v3)) return Faulted(fault, pci);
  return Nvml::Get().CallOnDevice(device, kGpuHandle, [&](Nvml::Access&, const Target& target) {
    if (pci == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *pci = nvmlPciInfo_t{};
    pci->domain = 0;
    pci->bus = (0x18u + static_cast<unsigned>(target.gpu)) & 0xffu;
    pci->device = 0;
    pci->pciDeviceId = kPciDeviceId;
    pci->pciSubSystemId = kPciSubSystemId;
    std::snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain,
                  pci->bus, pci->device);
    std::snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", pci->domain, pci->bus,
                  pci->device);
    return NVML_SUCCESS;
  });
}

// The GPU's index on the node: N of its /dev/nvidiaN, the same in every container.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device,
                                                          unsigned int* minorNumber) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMinorNumber)) return Faulted(fault, minorNumber);
  return Nvml::Get().CallOnDevice(device, kGpuHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target& target) {
                                    if (minorNumber == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *minorNumber = static_cast<unsigned>(target.gpu);
                                    return NVML_SUCCESS;
                                  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int* node) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetNumaNodeId)) return Faulted(fault, node);
  return Nvml::Get().CallOnDevice(device, kGpuHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target& target) {
                                    if (node == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *node = target.spec->numa_node;
                                    return NVML_SUCCESS;
                                  });
}

// The same GPU: INTERNAL; GPUs on one NUMA node: NODE; otherwise SYSTEM.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(
    nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuTopologyLevel_t* pathInfo) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetTopologyCommonAncestor)) {
    return Faulted(fault, pathInfo);
  }
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    std::optional<Target> first = nvml.Resolve(device1);
    std::optional<Target> second = nvml.Resolve(device2);
    if (!first || !second || pathInfo == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (first->is_mig() || second->is_mig()) return NVML_ERROR_NOT_SUPPORTED;
    if (first->gpu == second->gpu) {
      *pathInfo = NVML_TOPOLOGY_INTERNAL;
    } else if (first->spec->numa_node == second->spec->numa_node) {
      *pathInfo = NVML_TOPOLOGY_NODE;
    } else {
      *pathInfo = NVML_TOPOLOGY_SYSTEM;
    }
    return NVML_SUCCESS;
  });
}

// ---- Health -----------------------------------------------------------------------------------

// Pending while a memory Xid (48, 63, 64, 94, 95) raised on the GPU is not cleared, as a real GPU
// keeps its pages pending retirement until it is reset.
TESSERA_FAKE_EXPORT nvmlReturn_t
nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t* isPending) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetRetiredPagesPendingStatus)) {
    return Faulted(fault, isPending);
  }
  return Nvml::Get().CallOnDevice(
      device, kGpuHandle, [&](Nvml::Access& nvml, const Target& target) {
        if (isPending == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        tessera::Result<tessera::fakegpu::GpuHealth> health = nvml.state.Health(target.gpu);
        if (!health.ok()) return StateError(health.status());
        *isPending = health->retired_pages_pending ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
        return NVML_SUCCESS;
      });
}

// ---- MIG --------------------------------------------------------------------------------------

// The fake's GPUs never change mode: current and pending are the config's.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device,
                                                      unsigned int* currentMode,
                                                      unsigned int* pendingMode) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMigMode)) return Faulted(fault, currentMode);
  return Nvml::Get().CallOnDevice(device, kGpuHandle, [&](Nvml::Access&, const Target& target) {
    if (currentMode == nullptr || pendingMode == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned mode = target.spec->mig_enabled() ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    *currentMode = mode;
    *pendingMode = mode;
    return NVML_SUCCESS;
  });
}

// 7 for a GPU in MIG mode (seven 1g instances), 0 otherwise.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device,
                                                                unsigned int* count) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMaxMigDeviceCount)) return Faulted(fault, count);
  return Nvml::Get().CallOnDevice(
      device, kGpuHandle | kEvenIfLost, [&](Nvml::Access&, const Target& target) {
        if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        *count = target.spec->mig_enabled() ? static_cast<unsigned>(kMaxMigInstances) : 0;
        return NVML_SUCCESS;
      });
}

// The index counts the MIG devices this process sees, in config order: NOT_FOUND past the last
// (and on a GPU not in MIG mode), INVALID_ARGUMENT from the maximum count on.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device,
                                                                     unsigned int index,
                                                                     nvmlDevice_t* migDevice) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMigDeviceHandleByIndex)) {
    return Faulted(fault, migDevice);
  }
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    std::optional<Target> target = nvml.Resolve(device);
    if (!target || target->is_mig() || migDevice == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (!target->spec->mig_enabled()) return NVML_ERROR_NOT_FOUND;
    if (index >= static_cast<unsigned>(kMaxMigInstances)) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= target->visible->mig.size()) return NVML_ERROR_NOT_FOUND;
    *migDevice = nvml.MigHandle(target->gpu, target->visible->mig[index]);
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device,
                                                             unsigned int* isMigDevice) {
  if (Fault fault = CheckFault(Api::nvmlDeviceIsMigDeviceHandle)) {
    return Faulted(fault, isMigDevice);
  }
  return Nvml::Get().CallOnDevice(device, kAnyHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target& target) {
                                    if (isMigDevice == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *isMigDevice = target.is_mig() ? 1 : 0;
                                    return NVML_SUCCESS;
                                  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t
nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t* device) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetDeviceHandleFromMigDeviceHandle)) {
    return Faulted(fault, device);
  }
  return Nvml::Get().CallOnDevice(migDevice, kMigHandle | kEvenIfLost,
                                  [&](Nvml::Access& nvml, const Target& target) {
                                    if (device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *device = nvml.GpuHandle(target.gpu);
                                    return NVML_SUCCESS;
                                  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int* id) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetGpuInstanceId)) return Faulted(fault, id);
  return Nvml::Get().CallOnDevice(device, kMigHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target& target) {
                                    if (id == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *id = target.instance->gpu_instance_id;
                                    return NVML_SUCCESS;
                                  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device,
                                                                unsigned int* id) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetComputeInstanceId)) return Faulted(fault, id);
  return Nvml::Get().CallOnDevice(device, kMigHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target& target) {
                                    if (id == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *id = target.instance->compute_instance_id;
                                    return NVML_SUCCESS;
                                  });
}

// As NVML, for MIG device handles only (NOT_SUPPORTED for a GPU's).
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t device,
                                                            nvmlDeviceAttributes_t* attributes) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetAttributes_v2)) return Faulted(fault, attributes);
  return Nvml::Get().CallOnDevice(device, kAnyHandle, [&](Nvml::Access&, const Target& target) {
    if (attributes == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (!target.is_mig()) return NVML_ERROR_NOT_SUPPORTED;
    const MigInstance& instance = *target.instance;
    const MigProfile& profile = *instance.profile;
    attributes->multiprocessorCount = instance.multiprocessors;
    attributes->sharedCopyEngineCount = profile.copy_engines;
    attributes->sharedDecoderCount = profile.decoders;
    attributes->sharedEncoderCount = 0;  // Hopper has no NVENC
    attributes->sharedJpegCount = profile.jpegs;
    attributes->sharedOfaCount = profile.ofas;
    attributes->gpuInstanceSliceCount = profile.compute_slices;
    attributes->computeInstanceSliceCount = profile.compute_slices;
    attributes->memorySizeMB = instance.memory_bytes >> 20;
    return NVML_SUCCESS;
  });
}

namespace {

// Profile queries answer for a GPU that could be put in MIG mode, in MIG mode or not.
nvmlReturn_t RequireMigCapable(const DeviceSpec& gpu) {
  return tessera::fakegpu::CheckMigCapable(gpu.memory_bytes, gpu.multiprocessors).ok()
             ? NVML_SUCCESS
             : NVML_ERROR_NOT_SUPPORTED;
}

}  // namespace

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(
    nvmlDevice_t device, unsigned int profile, nvmlGpuInstanceProfileInfo_t* info) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetGpuInstanceProfileInfo)) {
    return Faulted(fault, info);
  }
  return Nvml::Get().CallOnDevice(device, kGpuHandle, [&](Nvml::Access&, const Target& target) {
    if (info == nullptr || profile >= kGpuInstanceProfileCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (nvmlReturn_t capable = RequireMigCapable(*target.spec); capable != NVML_SUCCESS) {
      return capable;
    }
    const MigProfile* found = tessera::fakegpu::FindMigProfileByNvmlProfile(profile);
    if (found == nullptr) return NVML_ERROR_NOT_SUPPORTED;  // a profile an H100 does not have
    *info = nvmlGpuInstanceProfileInfo_t{};
    info->id = found->id;
    info->isP2pSupported = 0;
    info->sliceCount = found->compute_slices;
    info->instanceCount = found->instance_count;
    info->multiprocessorCount =
        tessera::fakegpu::MigInstanceMultiprocessors(*found, target.spec->multiprocessors);
    info->copyEngineCount = found->copy_engines;
    info->decoderCount = found->decoders;
    info->encoderCount = 0;
    info->jpegCount = found->jpegs;
    info->ofaCount = found->ofas;
    info->memorySizeMB =
        tessera::fakegpu::MigInstanceMemory(*found, target.spec->memory_bytes) >> 20;
    return NVML_SUCCESS;
  });
}

// Every placement of the profile, free or not; `placements` NULL asks for the count.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstancePossiblePlacements_v2(
    nvmlDevice_t device, unsigned int profileId, nvmlGpuInstancePlacement_t* placements,
    unsigned int* count) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetGpuInstancePossiblePlacements_v2)) {
    return Faulted(fault, count);
  }
  return Nvml::Get().CallOnDevice(device, kGpuHandle, [&](Nvml::Access&, const Target& target) {
    if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (nvmlReturn_t capable = RequireMigCapable(*target.spec); capable != NVML_SUCCESS) {
      return capable;
    }
    const MigProfile* found = tessera::fakegpu::FindMigProfileById(profileId);
    if (found == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned capacity = *count;
    *count = found->placement_count;
    if (placements == nullptr) return NVML_SUCCESS;
    if (capacity < found->placement_count) return NVML_ERROR_INSUFFICIENT_SIZE;
    for (unsigned k = 0; k < found->placement_count; ++k) {
      placements[k] = {found->placement_starts[k], found->memory_slices};
    }
    return NVML_SUCCESS;
  });
}

// ---- Events -----------------------------------------------------------------------------------

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t* set) {
  if (Fault fault = CheckFault(Api::nvmlEventSetCreate)) return Faulted(fault, set);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (set == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *set = nvml.CreateEventSet();
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device,
                                                                  unsigned long long* eventTypes) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetSupportedEventTypes)) {
    return Faulted(fault, eventTypes);
  }
  return Nvml::Get().CallOnDevice(device, kGpuHandle | kEvenIfLost,
                                  [&](Nvml::Access&, const Target&) {
                                    if (eventTypes == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
                                    *eventTypes = kSupportedEventTypes;
                                    return NVML_SUCCESS;
                                  });
}

// The set receives the Xids raised on the device from now on. Registering a device again adds
// event types.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device,
                                                          unsigned long long eventTypes,
                                                          nvmlEventSet_t set) {
  if (Fault fault = CheckFault(Api::nvmlDeviceRegisterEvents)) return Faulted(fault);
  return Nvml::Get().CallOnDevice(
      device, kGpuHandle | kEvenIfLost, [&](Nvml::Access& nvml, const Target& target) {
        nvmlEventSet_st* found = nvml.FindEventSet(set);
        if (found == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if ((eventTypes & ~kSupportedEventTypes) != 0) return NVML_ERROR_NOT_SUPPORTED;
        for (nvmlEventSet_st::Registration& registration : found->registrations) {
          if (registration.device != device) continue;
          registration.event_types |= eventTypes;
          return NVML_SUCCESS;
        }
        found->registrations.push_back({device, target.gpu, eventTypes, nvml.state.XidSequence()});
        return NVML_SUCCESS;
      });
}

namespace {

// Delivers the oldest Xid the set has not seen: NVML_SUCCESS, or NVML_ERROR_TIMEOUT when there is
// none yet. REQUIRES: the NVML lock held.
nvmlReturn_t DeliverNextXid(SharedState& state, nvmlEventSet_st& set, nvmlEventData_t* data) {
  uint64_t oldest_seen = UINT64_MAX;
  for (const nvmlEventSet_st::Registration& registration : set.registrations) {
    if (registration.seen < oldest_seen) oldest_seen = registration.seen;
  }
  uint64_t newest = state.XidSequence();
  if (set.registrations.empty() || newest <= oldest_seen) return NVML_ERROR_TIMEOUT;
  tessera::Result<std::vector<tessera::fakegpu::XidEvent>> events =
      state.XidEventsAfter(oldest_seen);
  if (!events.ok()) return StateError(events.status());
  for (const tessera::fakegpu::XidEvent& event : *events) {
    for (nvmlEventSet_st::Registration& registration : set.registrations) {
      if (registration.gpu != event.gpu || event.sequence <= registration.seen) continue;
      registration.seen = event.sequence;
      if ((registration.event_types & nvmlEventTypeXidCriticalError) == 0) continue;
      data->device = registration.device;
      data->eventType = nvmlEventTypeXidCriticalError;
      data->eventData = event.xid;
      data->gpuInstanceId = kNoInstance;  // faults are raised on whole GPUs
      data->computeInstanceId = kNoInstance;
      return NVML_SUCCESS;
    }
  }
  // Nothing up to `newest` was for the set (other GPUs' Xids, or ones that left the ring): the
  // next poll need not read them again.
  for (nvmlEventSet_st::Registration& registration : set.registrations) {
    if (registration.seen < newest) registration.seen = newest;
  }
  return NVML_ERROR_TIMEOUT;
}

}  // namespace

// Polls the state file every kEventPollIntervalNs until an Xid for the set arrives or `timeoutms`
// pass; sleeps without NVML's lock.
TESSERA_FAKE_EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t* data,
                                                     unsigned int timeoutms) {
  if (Fault fault = CheckFault(Api::nvmlEventSetWait_v2)) return Faulted(fault, data);
  uint64_t deadline =
      static_cast<uint64_t>(tessera::MonotonicNs()) + uint64_t{timeoutms} * 1'000'000;
  for (;;) {
    nvmlReturn_t result = Nvml::Get().Call([&](Nvml::Access& nvml) {
      nvmlEventSet_st* found = nvml.FindEventSet(set);
      if (found == nullptr || data == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
      return DeliverNextXid(nvml.state, *found, data);
    });
    if (result != NVML_ERROR_TIMEOUT) return result;
    uint64_t now = static_cast<uint64_t>(tessera::MonotonicNs());
    if (now >= deadline) return NVML_ERROR_TIMEOUT;
    uint64_t pause = deadline - now < kEventPollIntervalNs ? deadline - now : kEventPollIntervalNs;
    timespec interval{static_cast<time_t>(pause / 1'000'000'000),
                      static_cast<long>(pause % 1'000'000'000)};
    // An interrupted sleep just polls sooner; clock_nanosleep leaves errno alone.
    clock_nanosleep(CLOCK_MONOTONIC, 0, &interval, nullptr);
  }
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  if (Fault fault = CheckFault(Api::nvmlEventSetFree)) return Faulted(fault);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    nvmlEventSet_st* found = nvml.FindEventSet(set);
    if (found == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    found->live = false;
    return NVML_SUCCESS;
  });
}

// ---- Control ----------------------------------------------------------------------------------

namespace {

// Runs `body` on NVML's state and devices, or, while NVML is not initialised, on those of
// TESSERA_FAKEGPU_CONFIG and TESSERA_FAKEGPU_STATE (as the tool does). 0, or -1 after printing why.
template <typename Body>
int WithNodeState(Body body) {
  auto report = [](const tessera::Status& status) {
    if (status.ok()) return 0;
    tessera::log::Write(tessera::log::Level::kError, "fakegpu", "%s", status.message().c_str());
    return -1;
  };
  tessera::Status status = tessera::Status::Ok();
  nvmlReturn_t ready = Nvml::Get().Call([&](Nvml::Access& nvml) {
    status = body(nvml.state, nvml.node);
    return NVML_SUCCESS;
  });
  if (ready == NVML_SUCCESS) return report(status);
  tessera::Result<std::vector<DeviceSpec>> node = tessera::fakegpu::LoadDeviceConfig();
  if (!node.ok()) return report(node.status());
  tessera::Result<std::unique_ptr<SharedState>> state =
      SharedState::OpenForNode(tessera::fakegpu::DefaultStatePath(), *node);
  if (!state.ok()) return report(state.status());
  return report(body(**state, *node));
}

}  // namespace

TESSERA_FAKE_EXPORT int tesseraFakeNvmlSetFaults(const char* spec) {
  tessera::Status armed = tessera::fakegpu::ArmFaults(spec == nullptr ? "" : spec);
  if (armed.ok()) return 0;
  tessera::log::Write(tessera::log::Level::kError, "fakegpu", "%s", armed.message().c_str());
  return -1;
}

TESSERA_FAKE_EXPORT int tesseraFakeNvmlRaiseXid(unsigned int index, unsigned int xid) {
  return WithNodeState([&](SharedState& state, const std::vector<DeviceSpec>& node) {
    tessera::Result<uint64_t> raised =
        tessera::fakegpu::RaiseXidOnGpu(state, node, static_cast<int>(index), xid);
    return raised.ok() ? tessera::Status::Ok() : raised.status();
  });
}

TESSERA_FAKE_EXPORT int tesseraFakeNvmlClearFault(unsigned int index) {
  return WithNodeState([&](SharedState& state, const std::vector<DeviceSpec>& node) {
    return tessera::fakegpu::ClearGpuFault(state, node, static_cast<int>(index));
  });
}
// NOLINTEND(readability-identifier-naming)
