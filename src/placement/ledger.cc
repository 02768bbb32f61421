#include "placement/ledger.h"

namespace tessera::placement {

Result<PlacementId> Ledger::Place(const Request& request, const Assignment& assignment) {
  if (Status s = ValidateRequest(request); !s.ok()) return s;
  return Place(CompileDemand(cluster_, request), assignment);
}

Result<PlacementId> Ledger::Place(const Demand& demand, const Assignment& assignment) {
  const size_t node = assignment.node;
  if (node >= cluster_.node_count()) {
    return Status::Error("node index " + std::to_string(node) + " is out of range");
  }
  const std::string& name = cluster_.spec(node).name;
  if (!FitsHost(cluster_.state(node), demand)) {
    return Status::Error("node \"" + name + "\" lacks the CPU or memory for the request");
  }
  if (assignment.gpus.count != demand.gpu_count) {
    return Status::Error("the request wants " + std::to_string(demand.gpu_count) + " GPUs but " +
                         std::to_string(assignment.gpus.count) + " were chosen on node \"" + name +
                         "\"");
  }
  // Check every GPU before charging any, so a refusal changes nothing.
  GpuCharge charges[kMaxGpusPerNode];
  uint64_t seen = 0;
  for (int i = 0; i < assignment.gpus.count; ++i) {
    int gpu = assignment.gpus.gpus[i];
    if (gpu < 0 || gpu >= cluster_.gpu_count(node) || ((seen >> gpu) & 1)) {
      return Status::Error("GPU " + std::to_string(gpu) + " on node \"" + name +
                           "\" is out of range or chosen twice");
    }
    seen |= uint64_t{1} << gpu;
    if (!FitsGpu(cluster_, node, gpu, demand, &charges[i])) {
      return Status::Error("GPU " + std::to_string(gpu) + " on node \"" + name +
                           "\" cannot hold the request");
    }
  }

  PlacementId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<PlacementId>(placements_.size());
    placements_.emplace_back();
    live_flags_.push_back(false);
  }
  Placement& placement = placements_[id];
  placement.node = node;
  placement.cpu_milli = demand.cpu_milli;
  placement.memory_mib = demand.memory_mib;
  placement.gpu_count = demand.gpu_count;
  placement.shared_gpu = demand.gpu_count == 1 && charges[0].milli < kMilliPerGpu;
  placement.charges.assign(charges, charges + assignment.gpus.count);
  live_flags_[id] = true;
  ++live_;

  NodeState& state = cluster_.states_[node];
  state.free_cpu_milli -= demand.cpu_milli;
  state.free_memory_mib -= demand.memory_mib;
  ++state.version;
  ++state.pods;
  if (placement.shared_gpu) {
    ++state.shared_gpu_pods;
  } else if (demand.gpu_count > 0) {
    if (state.whole_gpu_pods.size() <= static_cast<size_t>(demand.gpu_count)) {
      state.whole_gpu_pods.resize(static_cast<size_t>(demand.gpu_count) + 1);
    }
    ++state.whole_gpu_pods[static_cast<size_t>(demand.gpu_count)];
  }
  for (const GpuCharge& charge : placement.charges) {
    GpuState& gpu = cluster_.mutable_gpu(node, charge.gpu);
    gpu.free_milli -= charge.milli;
    state.free_gpu_milli -= charge.milli;
    gpu.free_memory_mib -= charge.memory_mib;
    ++gpu.tenants;
    if (charge.mig_slice >= 0) gpu.used_mig_slices |= uint64_t{1} << charge.mig_slice;
    cluster_.allocated_gpu_milli_ += charge.milli;
  }
  return id;
}

Status Ledger::Release(PlacementId id) {
  if (id >= placements_.size() || !live_flags_[id]) {
    return Status::Error("placement " + std::to_string(id) + " is not live");
  }
  const Placement& placement = placements_[id];
  NodeState& state = cluster_.states_[placement.node];
  state.free_cpu_milli += placement.cpu_milli;
  state.free_memory_mib += placement.memory_mib;
  ++state.version;
  --state.pods;
  if (placement.shared_gpu) {
    --state.shared_gpu_pods;
  } else if (placement.gpu_count > 0) {
    --state.whole_gpu_pods[static_cast<size_t>(placement.gpu_count)];
  }
  for (const GpuCharge& charge : placement.charges) {
    GpuState& gpu = cluster_.mutable_gpu(placement.node, charge.gpu);
    gpu.free_milli += charge.milli;
    state.free_gpu_milli += charge.milli;
    gpu.free_memory_mib += charge.memory_mib;
    --gpu.tenants;
    if (charge.mig_slice >= 0) gpu.used_mig_slices &= ~(uint64_t{1} << charge.mig_slice);
    cluster_.allocated_gpu_milli_ -= charge.milli;
  }
  live_flags_[id] = false;
  --live_;
  free_ids_.push_back(id);
  return Status::Ok();
}

}  // namespace tessera::placement
