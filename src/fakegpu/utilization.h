// What NVML's utilisation queries report, computed from a device's kernel timeline (the runs that
// SharedState::KernelRuns returns). Pure functions of the runs and the time of the sample, so that
// they are tested with a fixed clock.
//
// The sample period is 1 s, as NVML's on many GPUs (nvidia-smi's utilization.gpu): a device's gpu
// percentage is the fraction of the last second in which it ran a kernel, a process's sm
// percentage the fraction in which it ran one of that process's kernels. Queued work (a run that
// ends after `now`) counts only up to now. Memory, encoder and decoder utilisation are 0: the fake
// moves no data.
#ifndef TESSERA_FAKEGPU_UTILIZATION_H_
#define TESSERA_FAKEGPU_UTILIZATION_H_

#include <cstdint>
#include <vector>

#include "fakegpu/shared_state.h"

namespace tessera::fakegpu {

inline constexpr uint64_t kSamplePeriodNs = 1'000'000'000;

// One instant on both clocks: the timeline's (CLOCK_MONOTONIC) and NVML's timestamps'
// (CLOCK_REALTIME, microseconds since the epoch).
struct SampleTime {
  uint64_t monotonic_ns = 0;
  uint64_t realtime_us = 0;
  static SampleTime Now();
};

struct DeviceUtilization {
  unsigned gpu_percent = 0;     // time a kernel ran, over the last sample period
  unsigned memory_percent = 0;  // time device memory was read or written
};

struct ProcessUtilizationSample {
  int pid = 0;
  uint64_t timestamp_us = 0;  // when the process last ran in the period (CLOCK_REALTIME µs)
  unsigned sm_percent = 0;
  unsigned memory_percent = 0;
};

DeviceUtilization SampleDeviceUtilization(const std::vector<KernelRun>& runs, SampleTime now);

// One sample per process that ran on the device in the last sample period, in the order each
// first ran there, keeping only those whose timestamp is after `last_seen_us` (NVML's
// lastSeenTimeStamp; 0 for all).
std::vector<ProcessUtilizationSample> SampleProcessUtilization(const std::vector<KernelRun>& runs,
                                                               SampleTime now,
                                                               uint64_t last_seen_us);

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_UTILIZATION_H_
