#include "fakegpu/utilization.h"

#include <chrono>

namespace tessera::fakegpu {

DeviceUtilization SampleDeviceUtilization(const StateSnapshot& snapshot, int device) {
  (void)snapshot, (void)device;  // nothing runs on the fake yet
  return {};
}

std::vector<ProcessUtilizationSample> SampleProcessUtilization(const StateSnapshot& snapshot,
                                                               int device, uint64_t since_us) {
  uint64_t now_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
  std::vector<ProcessUtilizationSample> samples;
  if (now_us <= since_us) return samples;
  for (const ProcessUsage& process : snapshot.processes) {
    if (static_cast<size_t>(device) >= process.used_bytes.size()) continue;
    if (process.used_bytes[static_cast<size_t>(device)] == 0) continue;
    samples.push_back({process.pid, now_us, 0, 0});
  }
  return samples;
}

}  // namespace tessera::fakegpu
