#include "node/nvml.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/nvml_api.h"

namespace tessera::node {

// The NVML functions tessera-node calls, typed from nvml_api.h so a wrong signature fails to
// compile.
#define TESSERA_NODE_NVML_FUNCTIONS(X)      \
  X(nvmlInit_v2)                            \
  X(nvmlShutdown)                           \
  X(nvmlErrorString)                        \
  X(nvmlSystemGetDriverVersion)             \
  X(nvmlDeviceGetCount_v2)                  \
  X(nvmlDeviceGetHandleByIndex_v2)          \
  X(nvmlDeviceGetHandleByUUID)              \
  X(nvmlDeviceGetName)                      \
  X(nvmlDeviceGetUUID)                      \
  X(nvmlDeviceGetMemoryInfo)                \
  X(nvmlDeviceGetUtilizationRates)          \
  X(nvmlDeviceGetMinorNumber)               \
  X(nvmlDeviceGetNumaNodeId)                \
  X(nvmlDeviceGetTopologyCommonAncestor)    \
  X(nvmlDeviceGetMigMode)                   \
  X(nvmlDeviceGetMaxMigDeviceCount)         \
  X(nvmlDeviceGetMigDeviceHandleByIndex)    \
  X(nvmlDeviceGetGpuInstanceId)             \
  X(nvmlDeviceGetComputeInstanceId)         \
  X(nvmlDeviceGetGpuInstanceProfileInfo)    \
  X(nvmlDeviceGetRetiredPagesPendingStatus) \
  X(nvmlDeviceGetRemappedRows)              \
  X(nvmlEventSetCreate)                     \
  X(nvmlEventSetFree)                       \
  X(nvmlEventSetWait_v2)                    \
  X(nvmlDeviceGetSupportedEventTypes)       \
  X(nvmlDeviceRegisterEvents)

struct Nvml::Table {
#define TESSERA_NODE_NVML_POINTER(name) decltype(&::name) name = nullptr;
  TESSERA_NODE_NVML_FUNCTIONS(TESSERA_NODE_NVML_POINTER)
#undef TESSERA_NODE_NVML_POINTER
};

namespace {

// Functions older drivers lack: their absence is not an error.
bool Optional(const char* name) {
  const std::string n = name;
  return n == "nvmlDeviceGetNumaNodeId" || n == "nvmlDeviceGetTopologyCommonAncestor" ||
         n == "nvmlDeviceGetRetiredPagesPendingStatus" || n == "nvmlDeviceGetRemappedRows";
}

std::string Error(const Nvml::Table& t, const char* function, nvmlReturn_t result) {
  return std::string(function) + ": " +
         (t.nvmlErrorString != nullptr ? t.nvmlErrorString(result) : "error") + " (" +
         std::to_string(static_cast<int>(result)) + ")";
}

// The MIG profile name NVIDIA's tools use: "<GPU instance slices>g.<memory GB>gb", where the
// memory is the instance's share of the GPU rounded up to eighths, times the GPU's whole GB
// (so an H100's 80896 MiB instance is "7g.80gb", not 79), and the suffix of the profile's media
// or graphics variant ("1g.10gb+me").
std::string MigProfileName(unsigned profile_id, unsigned slices, unsigned long long memory_mib,
                           unsigned long long device_bytes) {
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  const double fraction = std::ceil(static_cast<double>(memory_mib) * 1024.0 * 1024.0 /
                                    static_cast<double>(device_bytes) * 8.0) /
                          8.0;
  const double device_gb = std::ceil(static_cast<double>(device_bytes) / kGiB);
  std::string name =
      std::to_string(slices) + "g." +
      std::to_string(static_cast<unsigned long long>(std::llround(fraction * device_gb))) + "gb";
  switch (profile_id) {
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1:
      return name + "+me";
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_GFX:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_GFX:
    case NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX:
      return name + "+gfx";
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_NO_ME:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:
      return name + "-me";
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME:
      return name + "+me.all";
    default:
      return name;
  }
}

// Whether a failed device query means the GPU itself is broken (rather than, say, a query this
// GPU or this process may not make).
bool MeansBroken(nvmlReturn_t result) {
  return result == NVML_ERROR_GPU_IS_LOST || result == NVML_ERROR_RESET_REQUIRED ||
         result == NVML_ERROR_UNKNOWN;
}

}  // namespace

Result<std::unique_ptr<Nvml>> Nvml::Load(const std::string& library) {
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Status::Error("cannot load NVML (" + library + "): " + (why ? why : "unknown error"));
  }
  auto table = std::make_unique<Table>();
#define TESSERA_NODE_NVML_RESOLVE(name)                                                     \
  table->name = reinterpret_cast<decltype(table->name)>(dlsym(handle, #name));              \
  if (table->name == nullptr && !Optional(#name)) {                                         \
    dlclose(handle);                                                                        \
    return Status::Error("NVML (" + library + ") has no " #name "; the driver is too old"); \
  }
  TESSERA_NODE_NVML_FUNCTIONS(TESSERA_NODE_NVML_RESOLVE)
#undef TESSERA_NODE_NVML_RESOLVE
  const nvmlReturn_t result = table->nvmlInit_v2();
  if (result != NVML_SUCCESS) {
    const std::string message = Error(*table, "nvmlInit_v2", result);
    dlclose(handle);
    return Status::Error(message);
  }
  return std::unique_ptr<Nvml>(new Nvml(handle, std::move(table)));
}

Nvml::Nvml(void* library, std::unique_ptr<Table> table)
    : library_(library), table_(std::move(table)) {}

Nvml::~Nvml() {
  if (event_set_ != nullptr) table_->nvmlEventSetFree(static_cast<nvmlEventSet_t>(event_set_));
  table_->nvmlShutdown();
  dlclose(library_);
}

Result<Inventory> Nvml::Discover() {
  const Table& t = *table_;
  Inventory inventory;
  char version[96] = {};
  if (auto r = t.nvmlSystemGetDriverVersion(version, sizeof version); r == NVML_SUCCESS) {
    inventory.driver_version = version;
  }
  unsigned count = 0;
  if (auto r = t.nvmlDeviceGetCount_v2(&count); r != NVML_SUCCESS) {
    return Status::Error(Error(t, "nvmlDeviceGetCount_v2", r));
  }
  std::vector<nvmlDevice_t> handles;
  for (unsigned index = 0; index < count; ++index) {
    nvmlDevice_t device = nullptr;
    if (auto r = t.nvmlDeviceGetHandleByIndex_v2(index, &device); r != NVML_SUCCESS) {
      return Status::Error(Error(t, "nvmlDeviceGetHandleByIndex_v2", r) + " for GPU " +
                           std::to_string(index));
    }
    handles.push_back(device);
    Gpu gpu;
    gpu.index = index;
    char text[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
    if (auto r = t.nvmlDeviceGetUUID(device, text, sizeof text); r != NVML_SUCCESS) {
      return Status::Error(Error(t, "nvmlDeviceGetUUID", r) + " for GPU " + std::to_string(index));
    }
    gpu.uuid = text;
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
    if (t.nvmlDeviceGetName(device, name, sizeof name) == NVML_SUCCESS) gpu.name = name;
    unsigned minor = index;
    if (t.nvmlDeviceGetMinorNumber(device, &minor) == NVML_SUCCESS) {
      gpu.minor = minor;
    } else {
      gpu.minor = index;
    }
    unsigned numa = 0;
    if (t.nvmlDeviceGetNumaNodeId != nullptr &&
        t.nvmlDeviceGetNumaNodeId(device, &numa) == NVML_SUCCESS) {
      gpu.numa_node = static_cast<int>(numa);
    }
    unsigned current = NVML_DEVICE_MIG_DISABLE;
    unsigned pending = NVML_DEVICE_MIG_DISABLE;
    if (t.nvmlDeviceGetMigMode(device, &current, &pending) == NVML_SUCCESS) {
      gpu.mig_enabled = current == NVML_DEVICE_MIG_ENABLE;
    }
    nvmlMemory_t memory = {};
    if (auto r = t.nvmlDeviceGetMemoryInfo(device, &memory); r == NVML_SUCCESS) {
      gpu.memory_bytes = memory.total;
    } else if (gpu.mig_enabled && r == NVML_ERROR_NO_PERMISSION) {
      // A MIG-enabled GPU's aggregate memory needs privilege; its full profile says the same.
      nvmlGpuInstanceProfileInfo_t full = {};
      if (t.nvmlDeviceGetGpuInstanceProfileInfo(device, NVML_GPU_INSTANCE_PROFILE_7_SLICE, &full) ==
          NVML_SUCCESS) {
        gpu.memory_bytes = full.memorySizeMB << 20;
      }
    } else {
      return Status::Error(Error(t, "nvmlDeviceGetMemoryInfo", r) + " for GPU " + gpu.uuid);
    }
    if (gpu.mig_enabled) {
      // Every profile id R580 knows; a GPU answers NOT_SUPPORTED for those it lacks.
      for (unsigned profile = 0; profile <= NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME; ++profile) {
        nvmlGpuInstanceProfileInfo_t info = {};
        if (t.nvmlDeviceGetGpuInstanceProfileInfo(device, profile, &info) != NVML_SUCCESS) continue;
        const std::string profile_name =
            MigProfileName(profile, info.sliceCount, info.memorySizeMB, gpu.memory_bytes);
        if (std::find(gpu.mig_profiles.begin(), gpu.mig_profiles.end(), profile_name) ==
            gpu.mig_profiles.end()) {
          gpu.mig_profiles.push_back(profile_name);
        }
      }
      unsigned max_instances = 0;
      if (auto r = t.nvmlDeviceGetMaxMigDeviceCount(device, &max_instances); r != NVML_SUCCESS) {
        return Status::Error(Error(t, "nvmlDeviceGetMaxMigDeviceCount", r) + " for GPU " +
                             gpu.uuid);
      }
      for (unsigned i = 0; i < max_instances; ++i) {
        nvmlDevice_t mig = nullptr;
        const nvmlReturn_t r = t.nvmlDeviceGetMigDeviceHandleByIndex(device, i, &mig);
        if (r == NVML_ERROR_NOT_FOUND) continue;  // an empty slot
        if (r != NVML_SUCCESS) {
          return Status::Error(Error(t, "nvmlDeviceGetMigDeviceHandleByIndex", r) + " for GPU " +
                               gpu.uuid);
        }
        MigInstance instance;
        char mig_uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
        if (auto u = t.nvmlDeviceGetUUID(mig, mig_uuid, sizeof mig_uuid); u != NVML_SUCCESS) {
          return Status::Error(Error(t, "nvmlDeviceGetUUID", u) + " for a MIG device of " +
                               gpu.uuid);
        }
        instance.uuid = mig_uuid;
        nvmlMemory_t mig_memory = {};
        if (t.nvmlDeviceGetMemoryInfo(mig, &mig_memory) == NVML_SUCCESS) {
          instance.memory_bytes = mig_memory.total;
        }
        t.nvmlDeviceGetGpuInstanceId(mig, &instance.gpu_instance_id);
        t.nvmlDeviceGetComputeInstanceId(mig, &instance.compute_instance_id);
        // The profile: the name's suffix ("NVIDIA H100 80GB HBM3 MIG 1g.10gb"), as NVIDIA's tools
        // print it.
        char mig_name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
        t.nvmlDeviceGetName(mig, mig_name, sizeof mig_name);
        const std::string full = mig_name;
        const size_t at = full.rfind(" MIG ");
        if (at == std::string::npos) {
          return Status::Error("MIG device " + instance.uuid + " of " + gpu.uuid +
                               " has no profile in its name \"" + full + "\"");
        }
        instance.profile = full.substr(at + 5);
        gpu.mig_instances.push_back(std::move(instance));
      }
    }
    inventory.gpus.push_back(std::move(gpu));
  }
  if (t.nvmlDeviceGetTopologyCommonAncestor != nullptr) {
    for (unsigned a = 0; a < count; ++a) {
      for (unsigned b = a + 1; b < count; ++b) {
        nvmlGpuTopologyLevel_t level = NVML_TOPOLOGY_SYSTEM;
        if (t.nvmlDeviceGetTopologyCommonAncestor(handles[a], handles[b], &level) == NVML_SUCCESS) {
          inventory.topology[{a, b}] = static_cast<int>(level);
        }
      }
    }
  }
  return inventory;
}

HealthProbe Nvml::Probe(const std::string& gpu_uuid) {
  const Table& t = *table_;
  nvmlDevice_t device = nullptr;
  if (auto r = t.nvmlDeviceGetHandleByUUID(gpu_uuid.c_str(), &device); r != NVML_SUCCESS) {
    return {false, Error(t, "nvmlDeviceGetHandleByUUID", r)};
  }
  nvmlMemory_t memory = {};
  if (auto r = t.nvmlDeviceGetMemoryInfo(device, &memory); MeansBroken(r)) {
    return {false, Error(t, "nvmlDeviceGetMemoryInfo", r)};
  }
  if (t.nvmlDeviceGetRemappedRows != nullptr) {
    unsigned corrected = 0;
    unsigned uncorrected = 0;
    unsigned pending = 0;
    unsigned failed = 0;
    if (t.nvmlDeviceGetRemappedRows(device, &corrected, &uncorrected, &pending, &failed) ==
        NVML_SUCCESS) {
      if (failed != 0) return {false, "row remapping failed (the GPU needs servicing)"};
      if (pending != 0) return {false, "row remapping pending (the GPU needs a reset)"};
    }
  }
  if (t.nvmlDeviceGetRetiredPagesPendingStatus != nullptr) {
    nvmlEnableState_t pending = NVML_FEATURE_DISABLED;
    if (t.nvmlDeviceGetRetiredPagesPendingStatus(device, &pending) == NVML_SUCCESS &&
        pending == NVML_FEATURE_ENABLED) {
      return {false, "page retirement pending (the GPU needs a reset)"};
    }
  }
  return {};
}

Result<GpuSample> Nvml::Sample(const std::string& gpu_uuid) {
  const Table& t = *table_;
  nvmlDevice_t device = nullptr;
  if (auto r = t.nvmlDeviceGetHandleByUUID(gpu_uuid.c_str(), &device); r != NVML_SUCCESS) {
    return Status::Error(Error(t, "nvmlDeviceGetHandleByUUID", r));
  }
  GpuSample sample;
  nvmlMemory_t memory = {};
  if (auto r = t.nvmlDeviceGetMemoryInfo(device, &memory); r != NVML_SUCCESS) {
    return Status::Error(Error(t, "nvmlDeviceGetMemoryInfo", r));
  }
  sample.memory_total_bytes = memory.total;
  sample.memory_used_bytes = memory.used;
  nvmlUtilization_t utilization = {};
  if (t.nvmlDeviceGetUtilizationRates(device, &utilization) == NVML_SUCCESS) {
    sample.utilization_percent = utilization.gpu;
  }
  return sample;
}

Status Nvml::WatchXids(const Inventory& inventory) {
  const Table& t = *table_;
  nvmlEventSet_t set = nullptr;
  if (auto r = t.nvmlEventSetCreate(&set); r != NVML_SUCCESS) {
    return Status::Error(Error(t, "nvmlEventSetCreate", r));
  }
  event_set_ = set;
  // A GPU that cannot be watched is left to the probe; the others are still watched.
  std::string skipped;
  for (const auto& gpu : inventory.gpus) {
    nvmlDevice_t device = nullptr;
    unsigned long long supported = 0;
    nvmlReturn_t r = t.nvmlDeviceGetHandleByUUID(gpu.uuid.c_str(), &device);
    if (r == NVML_SUCCESS) r = t.nvmlDeviceGetSupportedEventTypes(device, &supported);
    const unsigned long long wanted =
        supported & (nvmlEventTypeXidCriticalError | nvmlEventTypeDoubleBitEccError);
    if (r == NVML_SUCCESS && wanted != 0) r = t.nvmlDeviceRegisterEvents(device, wanted, set);
    if (r == NVML_SUCCESS && wanted != 0) {
      event_devices_[device] = gpu.uuid;
    } else {
      skipped +=
          (skipped.empty() ? "" : ", ") + gpu.uuid +
          (r == NVML_SUCCESS ? std::string(" (no Xid events)") : " (" + Error(t, "NVML", r) + ")");
    }
  }
  if (event_devices_.empty()) {
    return Status::Error("no GPU can report Xid events: " + (skipped.empty() ? "no GPU" : skipped));
  }
  if (!skipped.empty()) return Status::Error("Xid events only from some GPUs; not from " + skipped);
  return Status::Ok();
}

Result<std::optional<XidEvent>> Nvml::WaitXid(unsigned timeout_ms) {
  const Table& t = *table_;
  nvmlEventData_t data = {};
  const nvmlReturn_t r =
      t.nvmlEventSetWait_v2(static_cast<nvmlEventSet_t>(event_set_), &data, timeout_ms);
  if (r == NVML_ERROR_TIMEOUT) return std::optional<XidEvent>();
  if (r != NVML_SUCCESS) return Status::Error(Error(t, "nvmlEventSetWait_v2", r));
  XidEvent event;
  // The UUID from the handle we registered: a GPU that fell off the bus (Xid 79) no longer
  // answers nvmlDeviceGetUUID.
  auto known = event_devices_.find(static_cast<const void*>(data.device));
  if (known != event_devices_.end()) {
    event.gpu_uuid = known->second;
  } else {
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
    if (data.device != nullptr) t.nvmlDeviceGetUUID(data.device, uuid, sizeof uuid);
    event.gpu_uuid = uuid;
  }
  // A double-bit ECC error is reported as its own event type; treat it as Xid 48, which it is.
  event.xid = data.eventType == nvmlEventTypeDoubleBitEccError ? 48 : data.eventData;
  return std::optional<XidEvent>(event);
}

}  // namespace tessera::node
