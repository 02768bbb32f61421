// NVML's utilisation from a kernel timeline, at a fixed instant: busy fraction of the last 1 s.
#include "fakegpu/utilization.h"

#include <gtest/gtest.h>

namespace tessera::fakegpu {
namespace {

constexpr uint64_t kMs = 1'000'000;                               // ns
constexpr SampleTime kNow{100'000 * kMs, 1'700'000'000'000'000};  // realtime µs at that instant

TEST(DeviceUtilization, IsZeroWithoutRuns) {
  EXPECT_EQ(SampleDeviceUtilization({}, kNow).gpu_percent, 0u);
}

TEST(DeviceUtilization, IsTheBusyFractionOfTheLastSecond) {
  uint64_t now = kNow.monotonic_ns;
  std::vector<KernelRun> runs = {
      {now - 1500 * kMs, now - 800 * kMs, 1},  // 200 ms of it inside the period
      {now - 500 * kMs, now - 400 * kMs, 2},   // 100 ms
      {now - 100 * kMs, now + 900 * kMs, 1},   // 100 ms so far; the rest is still queued
  };
  DeviceUtilization utilization = SampleDeviceUtilization(runs, kNow);
  EXPECT_EQ(utilization.gpu_percent, 40u);
  EXPECT_EQ(utilization.memory_percent, 0u);
}

TEST(DeviceUtilization, IsAHundredWhenBusyAllSecond) {
  uint64_t now = kNow.monotonic_ns;
  EXPECT_EQ(SampleDeviceUtilization({{now - 3000 * kMs, now + 3000 * kMs, 1}}, kNow).gpu_percent,
            100u);
}

TEST(ProcessUtilization, OneSamplePerProcessThatRanWithItsShareAndLastRunTime) {
  uint64_t now = kNow.monotonic_ns;
  std::vector<KernelRun> runs = {
      {now - 2000 * kMs, now - 1500 * kMs, 7},  // outside the period: process 7 is not listed
      {now - 900 * kMs, now - 600 * kMs, 1},
      {now - 600 * kMs, now - 500 * kMs, 2},
      {now - 500 * kMs, now - 250 * kMs, 1},
  };
  std::vector<ProcessUtilizationSample> samples = SampleProcessUtilization(runs, kNow, 0);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].pid, 1);
  EXPECT_EQ(samples[0].sm_percent, 55u);
  EXPECT_EQ(samples[0].timestamp_us, kNow.realtime_us - 250'000);
  EXPECT_EQ(samples[1].pid, 2);
  EXPECT_EQ(samples[1].sm_percent, 10u);
  EXPECT_EQ(samples[1].timestamp_us, kNow.realtime_us - 500'000);
}

TEST(ProcessUtilization, ARunningProcessIsSampledNow) {
  uint64_t now = kNow.monotonic_ns;
  std::vector<ProcessUtilizationSample> samples =
      SampleProcessUtilization({{now - 300 * kMs, now + 300 * kMs, 4}}, kNow, 0);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].timestamp_us, kNow.realtime_us);
  EXPECT_EQ(samples[0].sm_percent, 30u);
}

TEST(ProcessUtilization, KeepsOnlySamplesNewerThanLastSeen) {
  uint64_t now = kNow.monotonic_ns;
  std::vector<KernelRun> runs = {{now - 900 * kMs, now - 600 * kMs, 1},
                                 {now - 600 * kMs, now - 500 * kMs, 2}};
  std::vector<ProcessUtilizationSample> samples =
      SampleProcessUtilization(runs, kNow, kNow.realtime_us - 550'000);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].pid, 2);
  EXPECT_TRUE(SampleProcessUtilization(runs, kNow, kNow.realtime_us - 500'000).empty());
}

}  // namespace
}  // namespace tessera::fakegpu
