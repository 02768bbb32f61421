#include "placement/cluster.h"

#include <unordered_set>

namespace tessera::placement {

std::string_view SharingModeName(SharingMode mode) {
  switch (mode) {
    case SharingMode::kShared:
      return "shared";
    case SharingMode::kWhole:
      return "whole";
    case SharingMode::kMig:
      return "mig";
    case SharingMode::kTimeSliced:
      return "time-sliced";
  }
  return "unknown";
}

namespace {

Status ValidateGpu(const NodeSpec& node, size_t index, const GpuSpec& gpu) {
  auto where = [&] { return "node \"" + node.name + "\" GPU " + std::to_string(index) + ": "; };
  if (gpu.memory_mib < 0) return Status::Error(where() + "negative memory");
  switch (gpu.mode) {
    case SharingMode::kMig: {
      if (gpu.mig_slices.empty() || gpu.mig_slices.size() > 64) {
        return Status::Error(where() + "a MIG GPU needs 1 to 64 slices");
      }
      int64_t compute = 0;
      for (const MigSlice& slice : gpu.mig_slices) {
        if (slice.compute_milli <= 0 || slice.memory_mib < 0) {
          return Status::Error(where() + "MIG slice \"" + slice.profile +
                               "\" needs positive compute and non-negative memory");
        }
        compute += slice.compute_milli;
      }
      if (compute > kMilliPerGpu) {
        return Status::Error(where() + "MIG slices add up to more than the whole GPU");
      }
      break;
    }
    case SharingMode::kTimeSliced:
      if (gpu.time_slice_replicas < 1 || gpu.time_slice_replicas > kMilliPerGpu) {
        return Status::Error(where() + "time-slice replicas must be 1..1000");
      }
      break;
    case SharingMode::kShared:
      if (gpu.max_tenants < 0) return Status::Error(where() + "max_tenants must be >= 0");
      break;
    case SharingMode::kWhole:
      break;
  }
  return Status::Ok();
}

}  // namespace

Result<Cluster> Cluster::Create(std::vector<NodeSpec> nodes) {
  Cluster cluster;
  std::unordered_set<std::string> names;
  cluster.gpu_offset_.push_back(0);
  for (const NodeSpec& node : nodes) {
    if (node.name.empty()) return Status::Error("a node has an empty name");
    if (!names.insert(node.name).second) {
      return Status::Error("node \"" + node.name + "\" appears twice");
    }
    if (node.cpu_milli < 0 || node.memory_mib < 0) {
      return Status::Error("node \"" + node.name + "\": negative CPU or memory");
    }
    if (node.gpus.size() > static_cast<size_t>(kMaxGpusPerNode)) {
      return Status::Error("node \"" + node.name + "\": more than " +
                           std::to_string(kMaxGpusPerNode) + " GPUs");
    }
    NodeState state;
    state.free_cpu_milli = node.cpu_milli;
    state.free_memory_mib = node.memory_mib;
    cluster.states_.push_back(std::move(state));
    int node_model = -2;  // -2: no GPU seen yet
    bool simple = true;
    for (size_t i = 0; i < node.gpus.size(); ++i) {
      const GpuSpec& gpu = node.gpus[i];
      if (Status s = ValidateGpu(node, i, gpu); !s.ok()) return s;
      int model = cluster.ModelId(gpu.model);
      if (model < 0) {
        if (cluster.models_.size() >= static_cast<size_t>(kMaxGpuModels)) {
          return Status::Error("more than " + std::to_string(kMaxGpuModels) + " GPU models");
        }
        model = static_cast<int>(cluster.models_.size());
        cluster.models_.push_back(gpu.model);
      }
      cluster.gpu_model_.push_back(model);
      node_model = node_model == -2 || node_model == model ? model : -1;
      GpuState gpu_state;
      gpu_state.free_memory_mib = gpu.memory_mib;
      if (gpu.mode == SharingMode::kMig) {
        int32_t compute = 0;
        for (const MigSlice& slice : gpu.mig_slices) compute += slice.compute_milli;
        gpu_state.free_milli = compute;
      }
      simple =
          simple && gpu.mode == SharingMode::kShared && gpu.memory_mib == 0 && gpu.max_tenants == 0;
      cluster.states_.back().free_gpu_milli += gpu_state.free_milli;
      cluster.gpu_states_.push_back(gpu_state);
    }
    cluster.node_model_.push_back(node_model == -2 ? -1 : node_model);
    cluster.node_simple_.push_back(simple);
    cluster.gpu_offset_.push_back(cluster.gpu_states_.size());
    cluster.total_gpus_ += static_cast<int64_t>(node.gpus.size());
    cluster.total_cpu_milli_ += node.cpu_milli;
  }
  cluster.specs_ = std::move(nodes);
  return cluster;
}

int Cluster::ModelId(std::string_view model) const {
  for (size_t i = 0; i < models_.size(); ++i) {
    if (models_[i] == model) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace tessera::placement
