#include "sim/mix/contention.h"

#include <algorithm>
#include <cmath>

namespace tessera::sim::mix {
namespace {

// Share of wall time a job with busy fraction b spends in GPU phases at speed v.
double GpuPhaseProbability(const Tenant& tenant, double gpu_speed) {
  const double gpu_time = tenant.busy / gpu_speed;
  return gpu_time / ((1 - tenant.busy) / tenant.host_speed + gpu_time);
}

}  // namespace

double ProgressRate(double busy, double gpu_speed, double host_speed) {
  return 1 / ((1 - busy) / host_speed + busy / gpu_speed);
}

std::vector<double> GpuPhaseSpeeds(std::span<const Tenant> tenants) {
  std::vector<double> speeds(tenants.size());
  for (size_t i = 0; i < tenants.size(); ++i) speeds[i] = tenants[i].cap / tenants[i].slowdown;
  if (tenants.size() < 2) return speeds;
  // The map is monotone, so this converges from above; 1e-12 is far below what the reports show.
  for (int iteration = 0; iteration < 1000; ++iteration) {
    double busy_weight = 0;
    for (size_t j = 0; j < tenants.size(); ++j) {
      busy_weight += tenants[j].weight * GpuPhaseProbability(tenants[j], speeds[j]);
    }
    double largest_change = 0;
    for (size_t i = 0; i < tenants.size(); ++i) {
      const Tenant& tenant = tenants[i];
      const double others = busy_weight - tenant.weight * GpuPhaseProbability(tenant, speeds[i]);
      const double share = tenant.weight / (tenant.weight + std::max(0.0, others));
      const double speed = std::min(tenant.cap, share) / tenant.slowdown;
      largest_change = std::max(largest_change, std::abs(speed - speeds[i]));
      speeds[i] = speed;
    }
    if (largest_change < 1e-12) break;
  }
  return speeds;
}

std::vector<double> ProgressRates(std::span<const Tenant> tenants) {
  std::vector<double> speeds = GpuPhaseSpeeds(tenants);
  std::vector<double> rates(tenants.size());
  for (size_t i = 0; i < tenants.size(); ++i) {
    rates[i] = ProgressRate(tenants[i].busy, speeds[i], tenants[i].host_speed);
  }
  return rates;
}

}  // namespace tessera::sim::mix
