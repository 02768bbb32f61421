#include "placement/request.h"

#include <algorithm>
#include <map>

namespace tessera::placement {

Status ValidateRequest(const Request& request) {
  if (request.gpu_count < 0 || request.gpu_count > kMaxGpusPerNode) {
    return Status::Error("GPU count " + std::to_string(request.gpu_count) + " is not in 0.." +
                         std::to_string(kMaxGpusPerNode));
  }
  if (request.cpu_milli < 0 || request.memory_mib < 0) {
    return Status::Error("negative CPU or memory request");
  }
  if (request.gpu_milli < 0 || request.gpu_milli > kMilliPerGpu) {
    return Status::Error("GPU share " + std::to_string(request.gpu_milli) +
                         " milli is not in 0..1000");
  }
  if (request.gpu_memory_mib < 0) return Status::Error("negative GPU memory request");
  if (request.gpu_cores_percent < 0 || request.gpu_cores_percent > 100) {
    return Status::Error("GPU cores " + std::to_string(request.gpu_cores_percent) +
                         "% is not in 0..100");
  }
  if (request.gpu_count > 0 && request.gpu_milli == 0 && request.gpu_memory_mib == 0 &&
      request.gpu_cores_percent == 0) {
    return Status::Error("a GPU request needs a share (milli-GPU) or GPU memory or cores");
  }
  if (request.gpu_count > 0 && request.gpu_milli > 0 &&
      (request.gpu_memory_mib > 0 || request.gpu_cores_percent > 0)) {
    return Status::Error("a GPU request gives either a share or memory and cores, not both");
  }
  return Status::Ok();
}

Demand CompileDemand(const Cluster& cluster, const Request& request) {
  Demand demand;
  demand.gpu_count = request.gpu_count;
  demand.gpu_milli = request.gpu_milli;
  demand.gpu_memory_mib = request.gpu_memory_mib;
  demand.gpu_cores_percent = request.gpu_cores_percent;
  demand.cpu_milli = request.cpu_milli;
  demand.memory_mib = request.memory_mib;
  if (!request.gpu_types.empty()) {
    demand.allowed_models = 0;
    for (const std::string& type : request.gpu_types) {
      int id = cluster.ModelId(type);
      if (id >= 0) demand.allowed_models |= uint64_t{1} << id;
    }
  }
  for (const std::string& type : request.excluded_gpu_types) {
    int id = cluster.ModelId(type);
    if (id >= 0) demand.allowed_models &= ~(uint64_t{1} << id);
  }
  if (!request.gpu_uuids.empty() || !request.excluded_gpu_uuids.empty()) {
    demand.uuid_constraints = &request;
  }
  demand.numa_bind = request.numa_bind && request.gpu_count > 1;
  return demand;
}

int32_t ShareOn(const GpuSpec& /*gpu*/, const Demand& demand) {
  if (demand.gpu_milli > 0) return demand.gpu_milli;
  // HAMi's form: compute (gpucores) and memory (gpumem) are two separate limits, each summed on
  // its own, so the share is the compute alone; FitsGpu holds the memory apart. A tenant with no
  // compute limit still takes one milli: it cannot join a GPU whose compute is all given, nor a
  // GPU that someone holds exclusively (gpucores 100), as in HAMi.
  return std::max<int32_t>(demand.gpu_cores_percent * (kMilliPerGpu / 100), 1);
}

int64_t MemoryOfShare(int64_t gpu_memory_mib, int32_t milli) {
  return gpu_memory_mib * milli / kMilliPerGpu;
}

int32_t ShareHoldingMemory(int64_t gpu_memory_mib, int32_t unit_milli, int64_t memory_mib) {
  if (memory_mib <= 0 || gpu_memory_mib <= 0) return unit_milli;
  // MemoryOfShare(k * unit) = floor(gpu * k * unit / 1000) >= memory exactly when
  // gpu * k * unit >= memory * 1000 (memory is whole MiB), so the least k is a ceiling division.
  const int64_t unit_memory = gpu_memory_mib * unit_milli;
  const int64_t units =
      std::max<int64_t>(1, (memory_mib * kMilliPerGpu + unit_memory - 1) / unit_memory);
  return static_cast<int32_t>(std::min<int64_t>(units * unit_milli, kMilliPerGpu));
}

namespace {

// Memory a demand takes on a GPU whose memory is modelled: a share's fraction of it
// (MemoryOfShare), or the memory form's own limit.
int64_t MemoryOn(const GpuSpec& gpu, const Demand& demand) {
  if (demand.gpu_milli > 0) return MemoryOfShare(gpu.memory_mib, demand.gpu_milli);
  return demand.gpu_memory_mib;
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

bool FitsGpu(const Cluster& cluster, size_t node, int gpu, const Demand& demand,
             GpuCharge* charge) {
  if (((demand.allowed_models >> cluster.gpu_model(node, gpu)) & 1) == 0) return false;
  const GpuSpec& spec = cluster.spec(node).gpus[gpu];
  if (demand.uuid_constraints != nullptr) {
    const Request& r = *demand.uuid_constraints;
    if (!r.gpu_uuids.empty() && !Contains(r.gpu_uuids, spec.uuid)) return false;
    if (Contains(r.excluded_gpu_uuids, spec.uuid)) return false;
  }
  const GpuState& state = cluster.gpus(node)[gpu];
  GpuCharge result;
  result.gpu = gpu;
  switch (spec.mode) {
    case SharingMode::kShared: {
      if (spec.max_tenants > 0 && state.tenants >= static_cast<uint32_t>(spec.max_tenants)) {
        return false;
      }
      int32_t share = ShareOn(spec, demand);
      if (state.free_milli < share) return false;
      int64_t memory = spec.memory_mib > 0 ? MemoryOn(spec, demand) : 0;
      if (memory > state.free_memory_mib) return false;
      result.milli = share;
      result.memory_mib = memory;
      break;
    }
    case SharingMode::kWhole:
      if (demand.shares_only || state.tenants > 0) return false;
      if (spec.memory_mib > 0 && MemoryOn(spec, demand) > spec.memory_mib) return false;
      result.milli = state.free_milli;
      result.memory_mib = state.free_memory_mib;
      break;
    case SharingMode::kTimeSliced: {
      auto replicas = static_cast<uint32_t>(spec.time_slice_replicas);
      if (state.tenants >= replicas) return false;
      // No memory isolation: a tenant is only refused if it wants more than the whole GPU.
      if (spec.memory_mib > 0 && MemoryOn(spec, demand) > spec.memory_mib) return false;
      // Equal turns; the last tenant takes whatever rounding left.
      result.milli = state.free_milli / static_cast<int32_t>(replicas - state.tenants);
      break;
    }
    case SharingMode::kMig: {
      int best = -1;
      int32_t share = demand.gpu_milli > 0 ? demand.gpu_milli : demand.gpu_cores_percent * 10;
      for (size_t i = 0; i < spec.mig_slices.size(); ++i) {
        if ((state.used_mig_slices >> i) & 1) continue;
        const MigSlice& slice = spec.mig_slices[i];
        int64_t memory = demand.gpu_milli > 0 ? spec.memory_mib * demand.gpu_milli / kMilliPerGpu
                                              : demand.gpu_memory_mib;
        if (slice.compute_milli < share || slice.memory_mib < memory) continue;
        if (best < 0 || slice.compute_milli < spec.mig_slices[best].compute_milli ||
            (slice.compute_milli == spec.mig_slices[best].compute_milli &&
             slice.memory_mib < spec.mig_slices[best].memory_mib)) {
          best = static_cast<int>(i);
        }
      }
      if (best < 0) return false;
      result.milli = spec.mig_slices[best].compute_milli;
      result.memory_mib = spec.mig_slices[best].memory_mib;
      result.mig_slice = best;
      break;
    }
  }
  if (charge != nullptr) *charge = result;
  return true;
}

bool FitsNode(const Cluster& cluster, size_t node, const Demand& demand) {
  if (demand.candidate_nodes != nullptr && !(*demand.candidate_nodes)[node]) return false;
  if (!FitsHost(cluster.state(node), demand)) return false;
  if (!demand.needs_gpu()) return true;
  int need = demand.gpu_count;
  std::span<const GpuState> gpus = cluster.gpus(node);
  if (demand.numa_bind) {
    int fitting[kMaxGpusPerNode];
    int n = 0;
    for (int g = 0; g < static_cast<int>(gpus.size()); ++g) {
      if (FitsGpu(cluster, node, g, demand, nullptr)) fitting[n++] = g;
    }
    GpuChoice choice;
    return TakePreferred(cluster, node, demand, fitting, n, &choice);
  }
  if (cluster.node_is_simple(node) && demand.uuid_constraints == nullptr && demand.gpu_milli > 0) {
    int model = cluster.node_model(node);
    if (model >= 0 && ((demand.allowed_models >> model) & 1) == 0) return false;
    if (model >= 0) {
      for (const GpuState& gpu : gpus) {
        if (gpu.free_milli >= demand.gpu_milli && --need == 0) return true;
      }
      return false;
    }
  }
  for (int g = 0; g < static_cast<int>(gpus.size()); ++g) {
    if (FitsGpu(cluster, node, g, demand, nullptr) && --need == 0) return true;
  }
  return false;
}

bool ChooseGpusBestFit(const Cluster& cluster, size_t node, const Demand& demand,
                       GpuChoice* choice) {
  choice->count = 0;
  if (!demand.needs_gpu()) return true;
  std::span<const GpuState> gpus = cluster.gpus(node);
  // Fitting GPUs ordered by (free share, index); the first gpu_count of them.
  int fitting[kMaxGpusPerNode];
  int n = 0;
  for (int g = 0; g < static_cast<int>(gpus.size()); ++g) {
    if (FitsGpu(cluster, node, g, demand, nullptr)) fitting[n++] = g;
  }
  if (n < demand.gpu_count) return false;
  std::stable_sort(fitting, fitting + n,
                   [&](int a, int b) { return gpus[a].free_milli < gpus[b].free_milli; });
  return TakePreferred(cluster, node, demand, fitting, n, choice);
}

bool TakePreferred(const Cluster& cluster, size_t node, const Demand& demand, const int* fitting,
                   int n, GpuChoice* choice) {
  choice->count = 0;
  if (n < demand.gpu_count) return false;
  if (!demand.numa_bind) {
    choice->count = demand.gpu_count;
    std::copy(fitting, fitting + demand.gpu_count, choice->gpus);
  } else {
    // Walk the preference order gathering per NUMA node; the first to reach gpu_count wins.
    const std::vector<GpuSpec>& specs = cluster.spec(node).gpus;
    std::map<int, GpuChoice> per_numa;
    for (int i = 0; i < n; ++i) {
      GpuChoice& same = per_numa[specs[static_cast<size_t>(fitting[i])].numa];
      same.gpus[same.count++] = fitting[i];
      if (same.count == demand.gpu_count) {
        *choice = same;
        break;
      }
    }
    if (choice->count == 0) return false;
  }
  std::sort(choice->gpus, choice->gpus + choice->count);
  return true;
}

}  // namespace tessera::placement
