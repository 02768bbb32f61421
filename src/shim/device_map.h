// Which container device each of this process's CUDA ordinals is.
//
// Charges and limits are the container's, kept per container device in the region; a CUDA
// ordinal is only this process's name for a device, and processes of one container may number
// the same GPU differently (Ray actors and vLLM workers each get their own CUDA_VISIBLE_DEVICES).
// So a device is known by its UUID (a MIG instance by its own): container device i is the i-th
// of the container's device list when there is one (Config::device_uuids, from the limits file
// or NVIDIA_VISIBLE_DEVICES), else the region record already bound to the UUID, else a free one
// (preferring the ordinal's own index, so a single process's numbering is kept).
#ifndef TESSERA_SHIM_DEVICE_MAP_H_
#define TESSERA_SHIM_DEVICE_MAP_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "region/region.h"

namespace tessera::shim {

// The container device the device `uuid` (this process's CUDA ordinal `ordinal`) is, binding it
// in `region` (see above). A device not in a non-empty `container` list is bound to a record
// after the list's, so it never takes a listed device's limits.
Result<int> ChooseContainerDevice(region::Region& region, const std::vector<std::string>& container,
                                  std::string_view uuid, int ordinal);

class DeviceMap {
 public:
  // `build` fills the map (Set) the first time it is needed, one call at a time, and returns
  // whether it could (false before cuInit: then it is tried again at the next lookup).
  explicit DeviceMap(std::function<bool(DeviceMap&)> build);

  // The container device of CUDA ordinal `ordinal`, or -1 (none: not a device, or beyond what a
  // region holds). Cheap once built.
  int Of(int ordinal) {
    if (__builtin_expect(!built_.load(std::memory_order_acquire), 0)) Build();
    return ordinal >= 0 && ordinal < region::kMaxDevices
               ? devices_[ordinal].load(std::memory_order_relaxed)
               : -1;
  }
  // The CUDA ordinal of container device `device` in this process, or -1 if it sees none.
  int OrdinalOf(int device);

  void Set(int ordinal, int device);

 private:
  void Build();

  std::function<bool(DeviceMap&)> build_;
  std::mutex building_;
  std::atomic<bool> built_{false};
  std::atomic<int> devices_[region::kMaxDevices];
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_DEVICE_MAP_H_
