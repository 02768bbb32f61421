// NVML's memory view, made to agree with cuMemGetInfo: total = min(limit, physical total),
// used = the container's charges, free = min(limit - used, physical free), never below zero.
#include <algorithm>

#include "shim/shim.h"

using tessera::shim::Shim;

namespace {

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
