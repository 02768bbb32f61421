#include "shim/nvml_devices.h"

#include "shim/shim.h"

namespace tessera::shim {

void NvmlDevices::SetUuid(int device, const std::string& uuid) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (uuid_[device] != uuid) handle_[device] = nullptr;
  uuid_[device] = uuid;
}

std::string NvmlDevices::Uuid(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  return uuid_[device];
}

nvmlDevice_t NvmlDevices::Handle(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (uuid_[device].empty()) return nullptr;
  // Initialised by this process even when the program's handle is known: the program may shut
  // its NVML down.
  if (!initialized_) initialized_ = nvml_.nvmlInit_v2() == NVML_SUCCESS;
  if (!initialized_) return nullptr;
  if (handle_[device] != nullptr) return handle_[device];
  nvmlDevice_t handle = nullptr;
  if (nvml_.nvmlDeviceGetHandleByUUID(uuid_[device].c_str(), &handle) != NVML_SUCCESS) {
    // CUDA's UUID bytes do not say MIG; its text was spelt "GPU-" then.
    if (uuid_[device].rfind("GPU-", 0) != 0) return nullptr;
    std::string mig = "MIG-" + uuid_[device].substr(4);
    if (nvml_.nvmlDeviceGetHandleByUUID(mig.c_str(), &handle) != NVML_SUCCESS) return nullptr;
  }
  handle_[device] = handle;
  return handle;
}

int NvmlDevices::DeviceOf(nvmlDevice_t handle,
                          const std::function<int(const char* uuid)>& find_uuid) {
  if (handle == nullptr) return -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int device = 0; device < region::kMaxDevices; ++device) {
      if (handle_[device] == handle) return device;
    }
  }
  // The program's handle works whether or not this process initialised NVML itself.
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
  if (nvml_.nvmlDeviceGetUUID(handle, uuid, sizeof uuid) != NVML_SUCCESS) return -1;
  int device = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int d = 0; d < region::kMaxDevices && device < 0; ++d) {
      if (uuid_[d] == uuid) device = d;
    }
  }
  if (device < 0) device = find_uuid(uuid);
  if (device < 0 || device >= region::kMaxDevices) return -1;
  std::lock_guard<std::mutex> lock(mutex_);
  handle_[device] = handle;
  return device;
}

void NvmlDevices::OnForkChild() {
  initialized_ = false;
  for (nvmlDevice_t& handle : handle_) handle = nullptr;
  mutex_.unlock();
}

}  // namespace tessera::shim
