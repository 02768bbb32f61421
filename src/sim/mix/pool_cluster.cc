#include "sim/mix/pool_cluster.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace tessera::sim::mix {

namespace pl = tessera::placement;

int64_t GpuMemoryMib(const Scenario& scenario) {
  return static_cast<int64_t>(std::llround(scenario.gpu_memory_gib * 1024));
}

int64_t JobMemoryMib(const Scenario& scenario, const Job& job) {
  // A hair below the whole MiB so that a need of exactly n MiB, computed in floating point, is n.
  const double mib = (job.memory_gib + scenario.overheads.context_memory_gib) * 1024;
  return static_cast<int64_t>(std::ceil(mib - 1e-6));
}

int32_t ShareUnitMilli(double share) {
  const auto milli = static_cast<int32_t>(std::floor(share * pl::kMilliPerGpu + 1e-6));
  return std::clamp<int32_t>(milli, 1, pl::kMilliPerGpu);
}

Result<pl::Cluster> BuildPoolCluster(const Scenario& scenario, const Strategy& strategy) {
  const int64_t memory_mib = GpuMemoryMib(scenario);
  std::vector<pl::NodeSpec> nodes;
  for (size_t p = 0; p < strategy.pools.size(); ++p) {
    const Pool& pool = strategy.pools[p];
    pl::GpuSpec gpu;
    gpu.model = "gpu";
    gpu.memory_mib = memory_mib;
    gpu.mode = pool.mode;
    if (pool.mode == pl::SharingMode::kTimeSliced) gpu.time_slice_replicas = pool.replicas;
    for (int profile_index : pool.mig_geometry) {
      const MigProfile& profile = scenario.mig.profiles[profile_index];
      pl::MigSlice slice;
      slice.profile = profile.name;
      slice.compute_milli = profile.compute_slices * pl::kMilliPerGpu / scenario.mig.compute_slices;
      slice.memory_mib = memory_mib * profile.memory_slices / scenario.mig.memory_slices;
      gpu.mig_slices.push_back(std::move(slice));
    }
    for (int n = 0; n < pool.nodes; ++n) {
      pl::NodeSpec& node = nodes.emplace_back();
      // The pool's index keeps names unique even if two pools share a name.
      node.name = std::to_string(p) + "-" + pool.name + "-" + std::to_string(n);
      for (int g = 0; g < scenario.gpus_per_node; ++g) {
        pl::GpuSpec& added = node.gpus.emplace_back(gpu);
        added.uuid = node.name + "-gpu" + std::to_string(g);
      }
    }
  }
  Result<pl::Cluster> cluster = pl::Cluster::Create(std::move(nodes));
  if (!cluster.ok()) {
    return Status::Error("strategy " + strategy.name + ": " + cluster.status().message());
  }
  return cluster;
}

pl::Request JobRequest(const Scenario& scenario, const Pool& pool, const Job& job) {
  const JobClass& job_class = scenario.classes[job.class_index];
  pl::Request request;
  request.gpu_count = 1;
  switch (pool.mode) {
    case pl::SharingMode::kWhole:
      request.gpu_count = job_class.gpus;
      request.gpu_milli = pl::kMilliPerGpu;
      break;
    case pl::SharingMode::kShared:
      request.gpu_milli = pl::ShareHoldingMemory(
          GpuMemoryMib(scenario), ShareUnitMilli(job_class.share), JobMemoryMib(scenario, job));
      break;
    case pl::SharingMode::kMig:
    case pl::SharingMode::kTimeSliced:
      request.gpu_memory_mib = std::max<int64_t>(1, JobMemoryMib(scenario, job));
      break;
  }
  return request;
}

}  // namespace tessera::sim::mix
