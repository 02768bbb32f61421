#include "shim/device_map.h"

#include <utility>

namespace tessera::shim {

Result<int> ChooseContainerDevice(region::Region& region, const std::vector<std::string>& container,
                                  std::string_view uuid, int ordinal) {
  for (size_t i = 0; i < container.size() && i < region::kMaxDevices; ++i) {
    if (!region::SameDeviceUuid(container[i], uuid)) continue;
    const int device = static_cast<int>(i);
    // The list is the container's truth; a record bound otherwise (by a process that had no
    // list) is said, and the list's device charged all the same.
    Status bound = region.BindDevice(device, container[i]);
    if (!bound.ok()) return Status::Error(bound.message());
    return device;
  }
  const int listed = static_cast<int>(container.size());
  return region.FindOrBindDevice(uuid, container.empty() ? ordinal : listed + ordinal);
}

DeviceMap::DeviceMap(std::function<bool(DeviceMap&)> build) : build_(std::move(build)) {
  for (auto& device : devices_) device.store(-1, std::memory_order_relaxed);
}

int DeviceMap::OrdinalOf(int device) {
  if (!built_.load(std::memory_order_acquire)) Build();
  for (int ordinal = 0; ordinal < region::kMaxDevices; ++ordinal) {
    if (device >= 0 && devices_[ordinal].load(std::memory_order_relaxed) == device) return ordinal;
  }
  return -1;
}

void DeviceMap::Set(int ordinal, int device) {
  if (ordinal < 0 || ordinal >= region::kMaxDevices) return;
  devices_[ordinal].store(device >= 0 && device < region::kMaxDevices ? device : -1,
                          std::memory_order_relaxed);
}

void DeviceMap::Build() {
  std::lock_guard<std::mutex> lock(building_);
  if (built_.load(std::memory_order_acquire)) return;
  for (auto& device : devices_) device.store(-1, std::memory_order_relaxed);
  if (build_(*this)) built_.store(true, std::memory_order_release);
}

}  // namespace tessera::shim
