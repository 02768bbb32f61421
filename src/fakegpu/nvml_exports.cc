// libnvidia-ml.so.1: NVML over the same devices (TESSERA_FAKEGPU_CONFIG) and the same node-wide
// memory (TESSERA_FAKEGPU_STATE) as the fake libcuda.so.1. NVML only reads the state: it holds no
// memory and claims no process slot.
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "cuda/nvml_api.h"
#include "fakegpu/config.h"
#include "fakegpu/control.h"
#include "fakegpu/export.h"
#include "fakegpu/faults.h"
#include "fakegpu/shared_state.h"
#include "fakegpu/utilization.h"

struct nvmlDevice_st {
  int index;
};

namespace {

using tessera::fakegpu::Api;
using tessera::fakegpu::CheckFault;
using tessera::fakegpu::DeviceSpec;
using tessera::fakegpu::Fault;
using tessera::fakegpu::kMaxDevices;
using tessera::fakegpu::SharedState;

constexpr const char* kDriverVersion = "580.65.06";

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

// NVML's state in this process: reference-counted initialisation, as nvmlInit/nvmlShutdown nest.
// Every member takes the mutex (NVML is not a hot path).
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
    tessera::Result<std::vector<DeviceSpec>> devices = tessera::fakegpu::LoadDeviceConfig();
    if (!devices.ok()) return fail(devices.status().message());
    tessera::Result<std::unique_ptr<SharedState>> state =
        SharedState::Open(tessera::fakegpu::DefaultStatePath(), true);
    if (!state.ok()) return fail(state.status().message());
    std::vector<uint64_t> sizes;
    for (const DeviceSpec& device : *devices) sizes.push_back(device.memory_bytes);
    tessera::Status configured = (*state)->Configure(sizes);
    if (!configured.ok()) return fail(configured.message());
    devices_ = std::move(devices).value();
    state_ = std::move(state).value();
    for (int i = 0; i < kMaxDevices; ++i) handles_[i].index = i;
    init_count_ = 1;
    return NVML_SUCCESS;
  }

  nvmlReturn_t Shutdown() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (init_count_ == 0) return NVML_ERROR_UNINITIALIZED;
    if (--init_count_ == 0) {
      devices_.clear();
      state_.reset();
    }
    return NVML_SUCCESS;
  }

  // The calls below hold the lock for the caller: Call([&](Access& nvml) { ... }).
  struct Access {
    const std::vector<DeviceSpec>& devices;
    SharedState& state;
    nvmlDevice_st* handles;

    // The device's index, or -1 when `device` is not one of this NVML's handles.
    int IndexOf(nvmlDevice_t device) const {
      if (device == nullptr) return -1;
      for (size_t i = 0; i < devices.size(); ++i) {
        if (device == &handles[i]) return static_cast<int>(i);
      }
      return -1;
    }
  };

  template <typename Body>
  nvmlReturn_t Call(Body body) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (init_count_ == 0) return NVML_ERROR_UNINITIALIZED;
    Access access{devices_, *state_, handles_};
    return body(access);
  }

  template <typename Body>
  nvmlReturn_t CallOnDevice(nvmlDevice_t device, Body body) {
    return Call([&](Access& nvml) {
      int index = nvml.IndexOf(device);
      if (index < 0) return NVML_ERROR_INVALID_ARGUMENT;
      return body(nvml, index);
    });
  }

 private:
  Nvml() = default;
  std::mutex mutex_;
  int init_count_ = 0;
  std::vector<DeviceSpec> devices_;
  std::unique_ptr<SharedState> state_;
  nvmlDevice_st handles_[kMaxDevices] = {};
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
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_FUNCTION_NOT_FOUND:
      return "Function Not Found";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Argument Version Mismatch";
    case NVML_ERROR_UNKNOWN:
      return "Unknown Error";
  }
  return "Unknown Error";
}

}  // namespace

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
  return Nvml::Get().Call([&](Nvml::Access&) { return CopyString(kDriverVersion, version, length); });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* deviceCount) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetCount_v2)) return Faulted(fault, deviceCount);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (deviceCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = static_cast<unsigned>(nvml.devices.size());
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                                               nvmlDevice_t* device) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetHandleByIndex_v2)) return Faulted(fault, device);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (device == nullptr || index >= nvml.devices.size()) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &nvml.handles[index];
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetHandleByUUID)) return Faulted(fault, device);
  return Nvml::Get().Call([&](Nvml::Access& nvml) {
    if (uuid == nullptr || device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    for (size_t i = 0; i < nvml.devices.size(); ++i) {
      if (tessera::fakegpu::FormatUuid(nvml.devices[i].uuid) == uuid) {
        *device = &nvml.handles[i];
        return NVML_SUCCESS;
      }
    }
    return NVML_ERROR_NOT_FOUND;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetIndex)) return Faulted(fault, index);
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access&, int found) {
    if (index == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *index = static_cast<unsigned>(found);
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name,
                                                   unsigned int length) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetName)) return Faulted(fault, name);
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    return CopyString(nvml.devices[static_cast<size_t>(index)].name, name, length);
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid,
                                                   unsigned int length) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetUUID)) return Faulted(fault, uuid);
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    return CopyString(tessera::fakegpu::FormatUuid(nvml.devices[static_cast<size_t>(index)].uuid),
                      uuid, length);
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device,
                                                         nvmlMemory_t* memory) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMemoryInfo)) return Faulted(fault, memory);
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    tessera::fakegpu::DeviceUsage usage = nvml.state.Device(index);
    memory->total = usage.total_bytes;
    memory->used = usage.used_bytes;
    memory->free = usage.total_bytes - usage.used_bytes;
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device,
                                                            nvmlMemory_v2_t* memory) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetMemoryInfo_v2)) return Faulted(fault, memory);
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    tessera::fakegpu::DeviceUsage usage = nvml.state.Device(index);
    memory->total = usage.total_bytes;
    memory->reserved = 0;
    memory->used = usage.used_bytes;
    memory->free = usage.total_bytes - usage.used_bytes;
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(
    nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_t* infos) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetComputeRunningProcesses_v3)) {
    return Faulted(fault, infoCount);
  }
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    if (infoCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    tessera::fakegpu::StateSnapshot snapshot = nvml.state.Snapshot();
    std::vector<nvmlProcessInfo_t> running;
    for (const tessera::fakegpu::ProcessUsage& process : snapshot.processes) {
      uint64_t used = process.used_bytes[static_cast<size_t>(index)];
      if (used == 0) continue;
      // 0xFFFFFFFF: not in a MIG instance.
      running.push_back({static_cast<unsigned>(process.pid), used, 0xFFFFFFFFu, 0xFFFFFFFFu});
    }
    unsigned capacity = *infoCount;
    *infoCount = static_cast<unsigned>(running.size());
    if (capacity < running.size()) return NVML_ERROR_INSUFFICIENT_SIZE;
    if (!running.empty() && infos == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    for (size_t i = 0; i < running.size(); ++i) infos[i] = running[i];
    return NVML_SUCCESS;
  });
}

namespace {

uint64_t SamplePeriodStart(tessera::fakegpu::SampleTime now) {
  return now.monotonic_ns > tessera::fakegpu::kSamplePeriodNs
             ? now.monotonic_ns - tessera::fakegpu::kSamplePeriodNs
             : 0;
}

}  // namespace

TESSERA_FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                               nvmlUtilization_t* utilization) {
  if (Fault fault = CheckFault(Api::nvmlDeviceGetUtilizationRates)) {
    return Faulted(fault, utilization);
  }
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    if (utilization == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    tessera::fakegpu::SampleTime now = tessera::fakegpu::SampleTime::Now();
    tessera::fakegpu::DeviceUtilization sample = tessera::fakegpu::SampleDeviceUtilization(
        nvml.state.KernelRuns(index, SamplePeriodStart(now)), now);
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
  return Nvml::Get().CallOnDevice(device, [&](Nvml::Access& nvml, int index) {
    if (processSamplesCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    tessera::fakegpu::SampleTime now = tessera::fakegpu::SampleTime::Now();
    std::vector<tessera::fakegpu::ProcessUtilizationSample> samples =
        tessera::fakegpu::SampleProcessUtilization(
            nvml.state.KernelRuns(index, SamplePeriodStart(now)), now, lastSeenTimeStamp);
    if (samples.empty()) {
      *processSamplesCount = 0;
      return NVML_ERROR_NOT_FOUND;  // no process ran since lastSeenTimeStamp
    }
    unsigned capacity = *processSamplesCount;
    *processSamplesCount = static_cast<unsigned>(samples.size());
    if (utilization == nullptr || capacity < samples.size()) return NVML_ERROR_INSUFFICIENT_SIZE;
    for (size_t i = 0; i < samples.size(); ++i) {
      utilization[i] = {static_cast<unsigned>(samples[i].pid), samples[i].timestamp_us,
                        samples[i].sm_percent, samples[i].memory_percent, 0, 0};
    }
    return NVML_SUCCESS;
  });
}

TESSERA_FAKE_EXPORT int tesseraFakeNvmlSetFaults(const char* spec) {
  tessera::Status armed = tessera::fakegpu::ArmFaults(spec == nullptr ? "" : spec);
  if (armed.ok()) return 0;
  tessera::log::Write(tessera::log::Level::kError, "fakegpu", "%s", armed.message().c_str());
  return -1;
}
