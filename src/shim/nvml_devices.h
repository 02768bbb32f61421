// The container's GPUs as NVML knows them, with one owner for the shim and its limiter: NVML is
// initialised once, on first need; each container device's UUID (bound after cuInit) and NVML
// handle are kept here. Thread-safe; calls into NVML are made under its lock, which is taken
// after the limiter's and never before it.
#ifndef TESSERA_SHIM_NVML_DEVICES_H_
#define TESSERA_SHIM_NVML_DEVICES_H_

#include <functional>
#include <mutex>
#include <string>

#include "cuda/nvml_api.h"
#include "region/region.h"

namespace tessera::shim {

struct NvmlTable;

class NvmlDevices {
 public:
  explicit NvmlDevices(const NvmlTable& nvml) : nvml_(nvml) {}
  NvmlDevices(const NvmlDevices&) = delete;
  NvmlDevices& operator=(const NvmlDevices&) = delete;

  const NvmlTable& table() const { return nvml_; }

  // Container device `device` is the GPU `uuid`.
  void SetUuid(int device, const std::string& uuid);
  // Its UUID; empty before SetUuid.
  std::string Uuid(int device);

  // Its NVML handle, initialising NVML first if need be; nullptr when NVML cannot be initialised
  // or does not know the GPU (or its UUID is not known yet).
  nvmlDevice_t Handle(int device);

  // The container device a program's NVML `handle` is, or -1. A GPU whose UUID this process has
  // not bound is looked up with `find_uuid` (the region: another process may have bound it).
  int DeviceOf(nvmlDevice_t handle, const std::function<int(const char* uuid)>& find_uuid);

  // fork(): the parent holds the lock across the fork; the child forgets the parent's NVML
  // initialisation and handles (the UUIDs stay: they are the GPUs').
  void OnForkPrepare() { mutex_.lock(); }
  void OnForkParent() { mutex_.unlock(); }
  void OnForkChild();

 private:
  const NvmlTable& nvml_;
  std::mutex mutex_;  // guards everything below
  bool initialized_ = false;
  std::string uuid_[region::kMaxDevices];
  nvmlDevice_t handle_[region::kMaxDevices] = {};
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_NVML_DEVICES_H_
