#include "fakegpu/utilization.h"

#include <ctime>

namespace tessera::fakegpu {

namespace {

// The part of `run` inside the sample period that ends at `now_ns`.
uint64_t BusyInPeriod(const KernelRun& run, uint64_t now_ns) {
  uint64_t period_start = now_ns > kSamplePeriodNs ? now_ns - kSamplePeriodNs : 0;
  uint64_t start = run.start_ns > period_start ? run.start_ns : period_start;
  uint64_t end = run.end_ns < now_ns ? run.end_ns : now_ns;
  return end > start ? end - start : 0;
}

unsigned Percent(uint64_t busy_ns) {
  uint64_t percent = (busy_ns * 100 + kSamplePeriodNs / 2) / kSamplePeriodNs;
  return static_cast<unsigned>(percent > 100 ? 100 : percent);
}

}  // namespace

SampleTime SampleTime::Now() {
  // The two clocks are related once per process, and the instant is taken on a whole
  // microsecond: then a finished kernel run's timestamp (now.realtime_us minus the whole
  // microseconds since it ended) is the same in every call, and a sample never looks newer than
  // itself to a caller filtering by lastSeenTimeStamp.
  static const int64_t realtime_minus_monotonic_us = [] {
    timespec realtime{};
    clock_gettime(CLOCK_REALTIME, &realtime);
    int64_t now_realtime_us = static_cast<int64_t>(realtime.tv_sec) * 1'000'000 +
                              static_cast<int64_t>(realtime.tv_nsec) / 1000;
    return now_realtime_us - MonotonicNs() / 1000;
  }();
  auto monotonic_us = static_cast<uint64_t>(MonotonicNs() / 1000);
  return {monotonic_us * 1000,
          static_cast<uint64_t>(static_cast<int64_t>(monotonic_us) + realtime_minus_monotonic_us)};
}

DeviceUtilization SampleDeviceUtilization(const std::vector<KernelRun>& runs, SampleTime now) {
  uint64_t busy = 0;
  for (const KernelRun& run : runs) busy += BusyInPeriod(run, now.monotonic_ns);
  return {Percent(busy), 0};
}

std::vector<ProcessUtilizationSample> SampleProcessUtilization(const std::vector<KernelRun>& runs,
                                                               SampleTime now,
                                                               uint64_t last_seen_us) {
  struct Activity {
    int pid;
    uint64_t busy_ns;
    uint64_t last_ns;  // when it last ran, no later than now
  };
  std::vector<Activity> activities;
  for (const KernelRun& run : runs) {
    uint64_t busy = BusyInPeriod(run, now.monotonic_ns);
    if (busy == 0) continue;
    uint64_t last = run.end_ns < now.monotonic_ns ? run.end_ns : now.monotonic_ns;
    Activity* found = nullptr;
    for (Activity& activity : activities) {
      if (activity.pid == run.pid) found = &activity;
    }
    if (found == nullptr) {
      activities.push_back({run.pid, busy, last});
    } else {
      found->busy_ns += busy;
      if (found->last_ns < last) found->last_ns = last;
    }
  }
  std::vector<ProcessUtilizationSample> samples;
  for (const Activity& activity : activities) {
    uint64_t ago_us = (now.monotonic_ns - activity.last_ns) / 1000;
    uint64_t timestamp_us = now.realtime_us > ago_us ? now.realtime_us - ago_us : 0;
    if (timestamp_us <= last_seen_us) continue;
    samples.push_back({activity.pid, timestamp_us, Percent(activity.busy_ns), 0});
  }
  return samples;
}

}  // namespace tessera::fakegpu
