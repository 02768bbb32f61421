#include "sim/mix/contention.h"

#include <gtest/gtest.h>

#include <vector>

namespace tessera::sim::mix {
namespace {

TEST(Contention, AJobAloneOnAWholeGpuRunsAtItsNaturalSpeed) {
  std::vector<Tenant> tenants = {{.busy = 0.4}};
  EXPECT_DOUBLE_EQ(ProgressRates(tenants)[0], 1.0);
}

TEST(Contention, ComputeBoundTenantsSplitTheGpuByWeight) {
  std::vector<Tenant> tenants = {{.busy = 1, .weight = 1}, {.busy = 1, .weight = 3}};
  std::vector<double> rates = ProgressRates(tenants);
  EXPECT_NEAR(rates[0], 0.25, 1e-9);
  EXPECT_NEAR(rates[1], 0.75, 1e-9);
}

TEST(Contention, ACapHoldsEvenOnAnIdleGpu) {
  std::vector<Tenant> tenants = {{.busy = 1, .cap = 0.25}};
  EXPECT_NEAR(ProgressRates(tenants)[0], 0.25, 1e-12);
}

TEST(Contention, HostWorkIsNotSpedUpOrSlowedByTheGpu) {
  // A job that never uses the GPU progresses at its host speed, whatever shares the GPU.
  std::vector<Tenant> tenants = {{.busy = 0, .host_speed = 0.5}, {.busy = 1}};
  EXPECT_NEAR(ProgressRates(tenants)[0], 0.5, 1e-12);
}

TEST(Contention, TenantsNeverUseMoreThanTheWholeGpu) {
  for (int n = 1; n <= 12; ++n) {
    for (double busy : {0.05, 0.3, 0.7, 1.0}) {
      std::vector<Tenant> tenants(n, Tenant{.busy = busy});
      std::vector<double> rates = ProgressRates(tenants);
      double gpu_use = 0;
      for (double rate : rates) {
        EXPECT_GT(rate, 0);
        EXPECT_LE(rate, 1 + 1e-12);
        gpu_use += rate * busy;
      }
      EXPECT_LE(gpu_use, 1 + 1e-9) << n << " tenants at busy " << busy;
    }
  }
}

TEST(Contention, AnotherTenantNeverSpeedsAJobUp) {
  std::vector<Tenant> tenants = {{.busy = 0.5}};
  double previous = ProgressRates(tenants)[0];
  for (int n = 2; n <= 10; ++n) {
    tenants.push_back({.busy = 0.3});
    const double rate = ProgressRates(tenants)[0];
    EXPECT_LE(rate, previous + 1e-12) << n << " tenants";
    previous = rate;
  }
}

TEST(Contention, MostlyIdleTenantsBarelySlowEachOtherDown) {
  // Six jobs that use the GPU 7.5 % of the time collide rarely: the packing CI relies on.
  std::vector<Tenant> tenants(6, Tenant{.busy = 0.075});
  EXPECT_GT(ProgressRates(tenants)[0], 0.95);
}

TEST(Contention, SlowdownStretchesOnlyTheGpuPhases) {
  std::vector<Tenant> tenants = {{.busy = 0.5, .slowdown = 2}};
  // (1 - 0.5) + 0.5 * 2 = 1.5 times the natural duration.
  EXPECT_NEAR(ProgressRates(tenants)[0], 1 / 1.5, 1e-12);
}

}  // namespace
}  // namespace tessera::sim::mix
