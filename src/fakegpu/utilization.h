// What NVML's utilisation queries report. The fake runs no kernels yet, so every device and every
// process is idle (0 %); a kernel timeline shared across processes will feed these functions later
// without NVML's code (nvml_exports.cc) changing.
#ifndef TESSERA_FAKEGPU_UTILIZATION_H_
#define TESSERA_FAKEGPU_UTILIZATION_H_

#include <cstdint>
#include <vector>

#include "fakegpu/state_reader.h"

namespace tessera::fakegpu {

struct DeviceUtilization {
  unsigned gpu_percent = 0;     // time a kernel ran, over the last sample period
  unsigned memory_percent = 0;  // time device memory was read or written
};

struct ProcessUtilizationSample {
  int pid = 0;
  uint64_t timestamp_us = 0;  // CPU time of the sample, microseconds since the epoch
  unsigned sm_percent = 0;
  unsigned memory_percent = 0;
};

DeviceUtilization SampleDeviceUtilization(const StateSnapshot& snapshot, int device);

// One sample per process holding memory on `device`, taken after `since_us`.
std::vector<ProcessUtilizationSample> SampleProcessUtilization(const StateSnapshot& snapshot,
                                                               int device, uint64_t since_us);

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_UTILIZATION_H_
