// NVML as the container sees it, for nvidia-smi, pynvml and the frameworks:
//  * memory agrees with cuMemGetInfo: total = min(limit, physical total), used = the container's
//    charges, free = min(limit - used, physical free), never below zero;
//  * the running processes are the container's own, by their pids in the container (the driver
//    lists every process on the GPU by its node pid);
//  * utilisation is the container's own: its processes' samples of the last second, each
//    process's mean, summed.
// Only for the container's devices (DeviceOfNvmlHandle); anything else is the driver's answer.
#include <sys/time.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "shim/shim.h"

using tessera::shim::Shim;

namespace {

// NVML's sample period: utilisation is what ran in the last second.
constexpr unsigned long long kSamplePeriodUs = 1'000'000;
// The most entries asked of the driver; a GPU runs at most a few dozen processes.
constexpr unsigned kMostEntries = 4096;

// What the driver lists, filtered to the container's processes, their pids made the
// container's. `list(count, entries)` is the driver's call. Returns the driver's error, or
// NVML_SUCCESS with `kept` filled.
template <typename Entry, typename List>
nvmlReturn_t ContainersEntries(Shim& shim, List list, std::vector<Entry>& kept) {
  std::vector<Entry> all(64);
  nvmlReturn_t result = NVML_SUCCESS;
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto count = static_cast<unsigned>(all.size());
    result = list(&count, all.data());
    if (result == NVML_ERROR_INSUFFICIENT_SIZE && count > all.size() && count <= kMostEntries) {
      all.resize(count + 8);  // room for a few that start meanwhile
      continue;
    }
    all.resize(result == NVML_SUCCESS ? std::min<size_t>(count, all.size()) : 0);
    break;
  }
  if (result != NVML_SUCCESS) return result;
  const std::unordered_map<unsigned, unsigned> own = shim.ContainerProcesses();
  for (Entry entry : all) {
    auto found = own.find(entry.pid);
    if (found == own.end()) continue;
    entry.pid = found->second;
    kept.push_back(entry);
  }
  return NVML_SUCCESS;
}

// The entries out in NVML's way: INSUFFICIENT_SIZE with the count when there is no room.
template <typename Entry>
nvmlReturn_t CopyOut(const std::vector<Entry>& kept, unsigned* count, Entry* entries) {
  const unsigned capacity = *count;
  *count = static_cast<unsigned>(kept.size());
  if (kept.empty()) return NVML_SUCCESS;
  if (entries == nullptr || capacity < kept.size()) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::copy(kept.begin(), kept.end(), entries);
  return NVML_SUCCESS;
}

template <typename Entry, typename Real>
nvmlReturn_t RunningProcesses(Real real, nvmlDevice_t device, unsigned* count, Entry* entries) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || count == nullptr || shim.DeviceOfNvmlHandle(device) < 0) {
    return real(device, count, entries);
  }
  std::vector<Entry> kept;
  nvmlReturn_t result = ContainersEntries<Entry>(
      shim, [&](unsigned* listed, Entry* into) { return real(device, listed, into); }, kept);
  if (result != NVML_SUCCESS) return result;
  return CopyOut(kept, count, entries);
}

unsigned long long NowUs() {
  timeval now{};
  gettimeofday(&now, nullptr);
  return static_cast<unsigned long long>(now.tv_sec) * 1'000'000 +
         static_cast<unsigned long long>(now.tv_usec);
}

// The container's process samples newer than `since` (µs since the epoch). NOT_FOUND, as
// NVML's, when there are none.
nvmlReturn_t ContainersSamples(Shim& shim, nvmlDevice_t device, unsigned long long since,
                               std::vector<nvmlProcessUtilizationSample_t>& kept) {
  return ContainersEntries<nvmlProcessUtilizationSample_t>(
      shim,
      [&](unsigned* listed, nvmlProcessUtilizationSample_t* into) {
        nvmlReturn_t result =
            shim.nvml().nvmlDeviceGetProcessUtilization(device, into, listed, since);
        if (result == NVML_ERROR_NOT_FOUND) {
          *listed = 0;
          return NVML_SUCCESS;  // nobody ran: an empty list
        }
        return result;
      },
      kept);
}

// Returns false when `device` has no limit (the driver's answer stands).
bool Virtualise(Shim& shim, int device, unsigned long long* total, unsigned long long* used,
                unsigned long long* free) {
  uint64_t limit = shim.Limit(device);
  if (limit == 0) return false;
  uint64_t charged = shim.Used(device);
  uint64_t remaining = limit > charged ? limit - charged : 0;
  *total = std::min<unsigned long long>(limit, *total);
  *free = std::min<unsigned long long>(remaining, *free);
  *used = charged;
  return true;
}

}  // namespace

// The driver's entry points, with nvml.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)
TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  Shim& shim = Shim::Get();
  nvmlReturn_t result = shim.nvml().nvmlDeviceGetMemoryInfo(device, memory);
  if (result != NVML_SUCCESS || memory == nullptr || shim.passthrough()) return result;
  Virtualise(shim, shim.DeviceOfNvmlHandle(device), &memory->total, &memory->used, &memory->free);
  return result;
}

TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device,
                                                       nvmlMemory_v2_t* memory) {
  Shim& shim = Shim::Get();
  nvmlReturn_t result = shim.nvml().nvmlDeviceGetMemoryInfo_v2(device, memory);
  if (result != NVML_SUCCESS || memory == nullptr || shim.passthrough()) return result;
  if (Virtualise(shim, shim.DeviceOfNvmlHandle(device), &memory->total, &memory->used,
                 &memory->free)) {
    memory->reserved = 0;
  }
  return result;
}

TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                                    unsigned int* infoCount,
                                                                    nvmlProcessInfo_t* infos) {
  return RunningProcesses(Shim::Get().nvml().nvmlDeviceGetComputeRunningProcesses_v3, device,
                          infoCount, infos);
}

TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                                    unsigned int* infoCount,
                                                                    nvmlProcessInfo_v2_t* infos) {
  return RunningProcesses(Shim::Get().nvml().nvmlDeviceGetComputeRunningProcesses_v2, device,
                          infoCount, infos);
}

TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device,
                                                                 unsigned int* infoCount,
                                                                 nvmlProcessInfo_v1_t* infos) {
  return RunningProcesses(Shim::Get().nvml().nvmlDeviceGetComputeRunningProcesses, device,
                          infoCount, infos);
}

TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(
    nvmlDevice_t device, nvmlProcessUtilizationSample_t* utilization,
    unsigned int* processSamplesCount, unsigned long long lastSeenTimeStamp) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || processSamplesCount == nullptr || shim.DeviceOfNvmlHandle(device) < 0) {
    return shim.nvml().nvmlDeviceGetProcessUtilization(device, utilization, processSamplesCount,
                                                       lastSeenTimeStamp);
  }
  std::vector<nvmlProcessUtilizationSample_t> kept;
  nvmlReturn_t result = ContainersSamples(shim, device, lastSeenTimeStamp, kept);
  if (result != NVML_SUCCESS) return result;
  if (kept.empty()) {
    *processSamplesCount = 0;
    return NVML_ERROR_NOT_FOUND;
  }
  return CopyOut(kept, processSamplesCount, utilization);
}

// The container's own utilisation: what its processes ran in the last second, summed (at most
// 100 %). Where the driver has no per-process samples (a GPU in MIG mode) its answer stands.
TESSERA_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                          nvmlUtilization_t* utilization) {
  Shim& shim = Shim::Get();
  nvmlReturn_t result = shim.nvml().nvmlDeviceGetUtilizationRates(device, utilization);
  if (result != NVML_SUCCESS || utilization == nullptr || shim.passthrough() ||
      shim.DeviceOfNvmlHandle(device) < 0) {
    return result;
  }
  std::vector<nvmlProcessUtilizationSample_t> kept;
  const unsigned long long now = NowUs();
  if (ContainersSamples(shim, device, now > kSamplePeriodUs ? now - kSamplePeriodUs : 0, kept) !=
      NVML_SUCCESS) {
    return result;
  }
  // A driver keeps several samples of a process in its buffer: each process counts its mean.
  struct Mean {
    unsigned long long sm = 0;
    unsigned long long memory = 0;
    unsigned samples = 0;
  };
  std::unordered_map<unsigned, Mean> by_process;
  for (const nvmlProcessUtilizationSample_t& sample : kept) {
    Mean& mean = by_process[sample.pid];
    mean.sm += sample.smUtil;
    mean.memory += sample.memUtil;
    ++mean.samples;
  }
  unsigned long long sm = 0;
  unsigned long long memory = 0;
  for (const auto& [pid, mean] : by_process) {
    sm += mean.sm / mean.samples;
    memory += mean.memory / mean.samples;
  }
  utilization->gpu = static_cast<unsigned>(std::min(sm, 100ull));
  utilization->memory = static_cast<unsigned>(std::min(memory, 100ull));
  return result;
}
// NOLINTEND(readability-identifier-naming)
