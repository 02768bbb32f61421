#include "scheduler/state.h"

#include <algorithm>
#include <cctype>

#include "common/log.h"
#include "common/strings.h"

namespace tessera::scheduler {
namespace pl = placement;
using nlohmann::json;

namespace {

// The GPUs a container takes: nvidia.com/gpu, or HAMi's default of one when it asks only for
// memory or cores (the webhook adds that; this covers pods it did not see).
int32_t GpuCount(const ContainerGpuRequest& container) {
  if (container.count > 0) return container.count;
  return container.asks_for_gpu() ? 1 : 0;
}

std::string PodName(const json& pod) {
  const json& meta = pod.value("metadata", json::object());
  return meta.value("namespace", "") + "/" + meta.value("name", "");
}

std::string PodUid(const json& pod) {
  return pod.value("metadata", json::object()).value("uid", "");
}

bool Terminal(const json& pod) {
  std::string phase = pod.value("status", json::object()).value("phase", "");
  return phase == "Succeeded" || phase == "Failed";
}

// HAMi matches card types as case-insensitive substrings of the device's type; the engine
// matches model names exactly. So a pattern list becomes the exact names of the cluster's models
// that it matches (a list that matches none becomes a name no GPU has).
std::vector<std::string> MatchModels(const pl::Cluster& cluster,
                                     const std::vector<std::string>& patterns) {
  std::vector<std::string> models;
  for (int id = 0; id < cluster.model_count(); ++id) {
    std::string name = ToLowerAscii(cluster.model_name(id));
    for (const std::string& pattern : patterns) {
      if (name.find(ToLowerAscii(pattern)) != std::string::npos) {
        models.push_back(cluster.model_name(id));
        break;
      }
    }
  }
  if (models.empty()) models.emplace_back("\x01 no such model");
  return models;
}

// The engine request for one container, before a GPU is chosen: a percentage of memory is a
// share of the GPU (the GPU's memory is not known yet); memory in MiB with cores is the memory
// form; no memory at all means the whole of each GPU (HAMi's default: 100 % of the card).
pl::Request EngineRequest(const pl::Cluster& cluster, const ContainerGpuRequest& container,
                          const PodGpuRequest& pod, const std::vector<std::string>& unhealthy) {
  pl::Request r;
  r.gpu_count = GpuCount(container);
  if (container.memory_percent > 0) {
    r.gpu_milli = std::max(container.memory_percent, container.cores) * 10;
  } else if (container.memory_mib > 0) {
    r.gpu_memory_mib = container.memory_mib;
    r.gpu_cores_percent = container.cores;
  } else {
    r.gpu_milli = pl::kMilliPerGpu;
  }
  if (!pod.use_types.empty()) r.gpu_types = MatchModels(cluster, pod.use_types);
  if (!pod.nouse_types.empty()) {
    for (std::string& model : MatchModels(cluster, pod.nouse_types)) {
      r.excluded_gpu_types.push_back(std::move(model));
    }
  }
  r.gpu_uuids = pod.use_uuids;
  r.excluded_gpu_uuids = pod.nouse_uuids;
  r.excluded_gpu_uuids.insert(r.excluded_gpu_uuids.end(), unhealthy.begin(), unhealthy.end());
  r.numa_bind = pod.numa_bind;
  return r;
}

// What a container is granted on one chosen GPU.
kube::GpuGrant GrantOn(const NodeGpu& gpu, const ContainerGpuRequest& container) {
  kube::GpuGrant grant;
  grant.uuid = gpu.uuid;
  if (container.memory_percent > 0) {
    grant.memory_mib = gpu.memory_mib * container.memory_percent / 100;
    grant.cores = container.cores;
  } else if (container.memory_mib > 0) {
    grant.memory_mib = container.memory_mib;
    grant.cores = container.cores;
  } else {
    grant.memory_mib = gpu.memory_mib;
    grant.cores = container.cores_given ? container.cores : 100;
  }
  return grant;
}

// The engine request that charges exactly a grant: the memory form, so that a ledger rebuilt
// from annotations charges what the live one did.
pl::Request ChargeRequest(int32_t count, const kube::GpuGrant& grant) {
  pl::Request r;
  r.gpu_count = count;
  r.gpu_memory_mib = grant.memory_mib;
  r.gpu_cores_percent = grant.cores;
  return r;
}

}  // namespace

Result<std::optional<NodeGpus>> ReadNodeGpus(const json& node) {
  const json& meta = node.value("metadata", json::object());
  const std::string name = meta.value("name", "");
  const json& annotations = meta.value("annotations", json::object());
  auto it = annotations.find(kNodeGpusAnnotation);
  if (it == annotations.end() || !it->is_string()) return std::optional<NodeGpus>();
  const std::string where = "node " + name + ": annotation " + kNodeGpusAnnotation;
  json document = json::parse(it->get<std::string>(), nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    return Status::Error(where + " is not a JSON object");
  }
  auto gpus = document.find("gpus");
  if (gpus == document.end() || !gpus->is_array()) {
    return Status::Error(where + ": \"gpus\" is not an array");
  }
  NodeGpus result;
  result.name = name;
  for (size_t i = 0; i < gpus->size(); ++i) {
    const json& entry = (*gpus)[i];
    const std::string at = where + ": gpus[" + std::to_string(i) + "]";
    if (!entry.is_object()) return Status::Error(at + " is not an object");
    std::string mode = entry.value("mode", "");
    NodeGpu gpu;
    if (mode == "shared") {
      gpu.mode = pl::SharingMode::kShared;
    } else if (mode == "whole") {
      gpu.mode = pl::SharingMode::kWhole;
    } else {
      continue;  // MIG and time-sliced GPUs are kubelet's (their own resources)
    }
    auto uuid = entry.find("uuid");
    auto memory = entry.find("memoryMiB");
    if (uuid == entry.end() || !uuid->is_string() || uuid->get<std::string>().empty()) {
      return Status::Error(at + ": \"uuid\" must be a non-empty string");
    }
    if (memory == entry.end() || !memory->is_number_integer() || memory->get<int64_t>() <= 0) {
      return Status::Error(at + ": \"memoryMiB\" must be a positive integer");
    }
    gpu.uuid = uuid->get<std::string>();
    gpu.memory_mib = memory->get<int64_t>();
    if (auto model = entry.find("model"); model != entry.end() && model->is_string()) {
      gpu.model = model->get<std::string>();
    }
    if (auto numa = entry.find("numa"); numa != entry.end() && numa->is_number_integer()) {
      gpu.numa = numa->get<int>();
    }
    if (auto healthy = entry.find("healthy"); healthy != entry.end() && healthy->is_boolean()) {
      gpu.healthy = healthy->get<bool>();
    }
    if (auto replicas = entry.find("replicas");
        gpu.mode == pl::SharingMode::kShared && replicas != entry.end()) {
      if (!replicas->is_number_integer() || replicas->get<int64_t>() < 1 ||
          replicas->get<int64_t>() > pl::kMilliPerGpu) {
        return Status::Error(at + ": \"replicas\" must be an integer in 1..1000");
      }
      gpu.replicas = replicas->get<int32_t>();
    }
    if (result.gpus.size() == static_cast<size_t>(pl::kMaxGpusPerNode)) {
      return Status::Error(where + ": more than " + std::to_string(pl::kMaxGpusPerNode) + " GPUs");
    }
    result.gpus.push_back(std::move(gpu));
  }
  return std::optional<NodeGpus>(std::move(result));
}

State::State(StateOptions options) : options_(std::move(options)) {}

void State::UpsertNode(const json& node) {
  Result<std::optional<NodeGpus>> gpus = ReadNodeGpus(node);
  std::lock_guard lock(mutex_);
  const std::string name = node.value("metadata", json::object()).value("name", "");
  if (!gpus.ok()) {
    log::Write(log::Level::kWarn, "state", "%s; its GPUs are left as they were",
               gpus.status().message().c_str());
    return;
  }
  if (!gpus->has_value() || (*gpus)->gpus.empty()) {
    if (nodes_.erase(name) > 0) dirty_ = true;
    return;
  }
  auto it = nodes_.find(name);
  if (it != nodes_.end() && it->second.gpus == (*gpus)->gpus) return;
  nodes_[name] = std::move(**gpus);
  dirty_ = true;
}

void State::RemoveNode(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (nodes_.erase(name) > 0) dirty_ = true;
}

void State::ReplaceAllNodes(const std::vector<json>& nodes) {
  {
    std::lock_guard lock(mutex_);
    nodes_.clear();
    dirty_ = true;
  }
  for (const json& node : nodes) UpsertNode(node);
}

void State::UpsertPod(const json& pod) {
  const std::string uid = PodUid(pod);
  if (uid.empty()) return;
  std::lock_guard lock(mutex_);
  if (Terminal(pod)) {
    DropLocked(uid);
    return;
  }
  const json& meta = pod.value("metadata", json::object());
  const json& annotations = meta.value("annotations", json::object());
  auto it = annotations.find(kube::kAllocationAnnotation);
  const std::string node = pod.value("spec", json::object()).value("nodeName", "");
  if (it == annotations.end() || !it->is_string() || node.empty()) return;
  Result<kube::PodAllocation> allocation = kube::DecodePodAllocation(it->get<std::string>());
  if (!allocation.ok()) {
    log::Write(log::Level::kWarn, "state", "pod %s: %s; not counted", PodName(pod).c_str(),
               allocation.status().message().c_str());
    return;
  }
  auto held = holdings_.find(uid);
  if (held != holdings_.end() && held->second.allocation == *allocation) {
    held->second.reservation = false;
    return;
  }
  DropLocked(uid);
  Holding holding;
  holding.uid = uid;
  holding.name = PodName(pod);
  holding.allocation = std::move(allocation).value();
  EnsureBuiltLocked();
  if (Status charged = ChargeLocked(holding); !charged.ok()) {
    log::Write(log::Level::kError, "state", "pod %s holds GPUs the ledger cannot charge: %s",
               holding.name.c_str(), charged.message().c_str());
  }
  holdings_.emplace(uid, std::move(holding));
}

void State::RemovePod(const json& pod) {
  std::lock_guard lock(mutex_);
  DropLocked(PodUid(pod));
}

void State::ReplaceAllPods(const std::vector<json>& pods) {
  {
    std::lock_guard lock(mutex_);
    std::unordered_map<std::string, Holding> kept;
    for (auto& [uid, holding] : holdings_) {
      if (holding.reservation) kept.emplace(uid, std::move(holding));
    }
    holdings_ = std::move(kept);
    dirty_ = true;
  }
  for (const json& pod : pods) UpsertPod(pod);
}

void State::EnsureBuiltLocked() {
  if (dirty_) RebuildLocked();
}

void State::RebuildLocked() {
  std::vector<pl::NodeSpec> specs;
  node_index_.clear();
  gpu_index_.clear();
  unhealthy_uuids_.clear();
  for (const auto& [name, node] : nodes_) {
    pl::NodeSpec spec;
    spec.name = name;
    // kube-scheduler checks CPU and memory; the engine looks at GPUs only.
    spec.cpu_milli = int64_t{1} << 40;
    spec.memory_mib = int64_t{1} << 40;
    for (const NodeGpu& gpu : node.gpus) {
      pl::GpuSpec g;
      g.uuid = gpu.uuid;
      g.model = gpu.model;
      g.memory_mib = gpu.memory_mib;
      g.mode = gpu.mode;
      g.max_tenants = gpu.mode == pl::SharingMode::kShared ? gpu.replicas : 0;
      g.numa = gpu.numa;
      gpu_index_[gpu.uuid] = GpuRef{specs.size(), static_cast<int>(spec.gpus.size())};
      if (!gpu.healthy) unhealthy_uuids_.push_back(gpu.uuid);
      spec.gpus.push_back(std::move(g));
    }
    node_index_[name] = specs.size();
    specs.push_back(std::move(spec));
  }
  Result<pl::Cluster> cluster = pl::Cluster::Create(std::move(specs));
  if (!cluster.ok()) {
    // Node names are unique and the annotation's values were checked; this would be a bug.
    log::Write(log::Level::kError, "state", "the cluster model is invalid: %s",
               cluster.status().message().c_str());
    cluster = pl::Cluster();
    node_index_.clear();
    gpu_index_.clear();
  }
  ledger_ = std::make_unique<pl::Ledger>(std::move(cluster).value());
  policies_.clear();
  dirty_ = false;
  for (auto& [uid, holding] : holdings_) {
    holding.placements.clear();
    if (Status charged = ChargeLocked(holding); !charged.ok()) {
      log::Write(log::Level::kError, "state", "pod %s: %s", holding.name.c_str(),
                 charged.message().c_str());
    }
  }
}

Status State::ChargeLocked(Holding& holding) {
  auto node = node_index_.find(holding.allocation.node);
  if (node == node_index_.end()) {
    return Status::Error("node " + holding.allocation.node + " has no Tessera GPUs now");
  }
  for (const kube::ContainerGrant& container : holding.allocation.containers) {
    if (container.gpus.empty()) continue;
    bool uniform =
        std::all_of(container.gpus.begin(), container.gpus.end(), [&](const kube::GpuGrant& g) {
          return g.memory_mib == container.gpus[0].memory_mib && g.cores == container.gpus[0].cores;
        });
    // One placement per container when its GPUs carry one grant, else one per GPU.
    std::vector<std::pair<pl::Request, pl::Assignment>> charges;
    pl::Assignment together{node->second, {}};
    for (const kube::GpuGrant& grant : container.gpus) {
      auto gpu = gpu_index_.find(grant.uuid);
      if (gpu == gpu_index_.end() || gpu->second.node != node->second) {
        return Status::Error("GPU " + grant.uuid + " is not a Tessera GPU of node " +
                             holding.allocation.node);
      }
      if (uniform) {
        together.gpus.gpus[together.gpus.count++] = gpu->second.gpu;
      } else {
        pl::Assignment one{node->second, {}};
        one.gpus.gpus[one.gpus.count++] = gpu->second.gpu;
        charges.emplace_back(ChargeRequest(1, grant), one);
      }
    }
    if (uniform) {
      std::sort(together.gpus.gpus, together.gpus.gpus + together.gpus.count);
      charges.emplace_back(ChargeRequest(together.gpus.count, container.gpus[0]), together);
    }
    for (const auto& [request, assignment] : charges) {
      Result<pl::PlacementId> id = ledger_->Place(request, assignment);
      if (!id.ok()) {
        ReleaseLocked(holding);
        return Status::Error("container " + container.name + " does not fit node " +
                             holding.allocation.node + ": " + id.status().message());
      }
      holding.placements.push_back(*id);
    }
  }
  return Status::Ok();
}

void State::ReleaseLocked(Holding& holding) {
  for (pl::PlacementId id : holding.placements) {
    Status released = ledger_->Release(id);
    (void)released;  // ids come from this ledger; a rebuild clears them first
  }
  holding.placements.clear();
}

void State::DropLocked(const std::string& uid) {
  auto it = holdings_.find(uid);
  if (it == holdings_.end()) return;
  if (!dirty_ && ledger_ != nullptr) ReleaseLocked(it->second);
  holdings_.erase(it);
}

pl::Policy* State::PolicyFor(const PodGpuRequest& request) {
  std::string name = options_.policy;
  if (request.node_policy == "binpack" || request.node_policy == "spread") {
    name = request.node_policy;
  } else {
    for (const std::string& gpu_policy : request.gpu_policy) {
      if (gpu_policy == "binpack" || gpu_policy == "spread") {
        name = gpu_policy;
        break;
      }
    }
  }
  auto it = policies_.find(name);
  if (it != policies_.end()) return it->second.get();
  pl::PolicyOptions policy_options;
  policy_options.seed = options_.seed;
  auto policy = pl::MakePolicy(name, ledger_->cluster(), policy_options);
  if (!policy.ok()) return nullptr;
  return policies_.emplace(name, std::move(policy).value()).first->second.get();
}

FilterOutcome State::Filter(const json& pod, const PodGpuRequest& request,
                            const std::vector<std::string>& candidates) {
  FilterOutcome outcome;
  if (Status checked = CheckPodGpuRequest(request, MaxGpusPerNode()); !checked.ok()) {
    outcome.error = checked.message();
    return outcome;
  }
  std::lock_guard lock(mutex_);
  EnsureBuiltLocked();
  DropLocked(PodUid(pod));
  std::vector<bool> mask(ledger_->cluster().node_count(), false);
  for (const std::string& name : candidates) {
    auto it = node_index_.find(name);
    if (it == node_index_.end()) {
      outcome.unresolvable[name] = "node has no Tessera GPUs (shared or whole)";
    } else {
      mask[it->second] = true;
    }
  }
  Holding holding;
  holding.uid = PodUid(pod);
  holding.name = PodName(pod);
  FilterOutcome placed = PlaceLocked(request, mask, &holding);
  for (auto& [node, reason] : placed.failed) outcome.failed[node] = reason;
  for (auto& [node, reason] : placed.unresolvable) outcome.unresolvable[node] = reason;
  outcome.error = placed.error;
  outcome.node = placed.node;
  if (outcome.node.has_value()) {
    holding.reservation = true;
    holding.reserved_at = std::chrono::steady_clock::now();
    holdings_[holding.uid] = std::move(holding);
  }
  return outcome;
}

FilterOutcome State::PlaceLocked(const PodGpuRequest& request, const std::vector<bool>& candidates,
                                 Holding* holding) {
  FilterOutcome outcome;
  if (!request.vgpu_mode.empty() && request.vgpu_mode.find("hami-core") == std::string::npos) {
    outcome.error = "nvidia.com/vgpu-mode \"" + request.vgpu_mode +
                    "\": Tessera shares GPUs in mode hami-core; a MIG instance is asked for as "
                    "nvidia.com/mig-<profile>";
    return outcome;
  }
  pl::Policy* policy = PolicyFor(request);
  if (policy == nullptr) {
    outcome.error = "placement policy \"" + options_.policy + "\" is unknown";
    return outcome;
  }
  const pl::Cluster& cluster = ledger_->cluster();
  std::vector<bool> mask = candidates;
  std::vector<pl::Request> requests;  // per container, kept alive for the demands
  requests.reserve(request.containers.size());
  for (const ContainerGpuRequest& container : request.containers) {
    requests.push_back(EngineRequest(cluster, container, request, unhealthy_uuids_));
  }
  // Try nodes in the policy's order until all of the pod's containers fit on one.
  for (size_t attempt = 0; attempt <= cluster.node_count(); ++attempt) {
    kube::PodAllocation allocation;
    std::vector<pl::PlacementId> placed;
    std::optional<size_t> node;
    bool failed = false;
    for (size_t c = 0; c < request.containers.size() && !failed; ++c) {
      const ContainerGpuRequest& container = request.containers[c];
      kube::ContainerGrant grant{container.container, container.init, {}};
      if (GpuCount(container) > 0) {
        if (Status valid = pl::ValidateRequest(requests[c]); !valid.ok()) {
          outcome.error = "container " + container.container + ": " + valid.message();
          return outcome;
        }
        pl::Demand demand = pl::CompileDemand(cluster, requests[c]);
        demand.shares_only = requests[c].gpu_milli != pl::kMilliPerGpu;
        std::vector<bool> only_node;
        if (node.has_value()) {
          only_node.assign(cluster.node_count(), false);
          only_node[*node] = true;
          demand.candidate_nodes = &only_node;
        } else {
          demand.candidate_nodes = &mask;
        }
        policy->Observe(demand);
        std::optional<pl::Assignment> choice = policy->Choose(cluster, demand);
        if (!choice.has_value()) {
          failed = true;
          break;
        }
        node = choice->node;
        const NodeGpus& gpus = nodes_.at(cluster.spec(*node).name);
        for (int i = 0; i < choice->gpus.count; ++i) {
          grant.gpus.push_back(GrantOn(gpus.gpus[choice->gpus.gpus[i]], container));
        }
        Holding charge;
        charge.allocation.node = cluster.spec(*node).name;
        charge.allocation.containers.push_back(grant);
        if (Status charged = ChargeLocked(charge); !charged.ok()) {
          failed = true;
          break;
        }
        placed.insert(placed.end(), charge.placements.begin(), charge.placements.end());
      }
      allocation.containers.push_back(std::move(grant));
    }
    if (!failed && node.has_value()) {
      allocation.node = cluster.spec(*node).name;
      holding->allocation = std::move(allocation);
      holding->placements = std::move(placed);
      outcome.node = holding->allocation.node;
      return outcome;
    }
    for (pl::PlacementId id : placed) (void)ledger_->Release(id);
    if (!node.has_value()) break;  // the first container fits no candidate
    // The first container fitted `node` but the others did not: try without it.
    outcome.failed[cluster.spec(*node).name] = "the pod's containers do not fit together";
    mask[*node] = false;
  }
  // Say why, per candidate node.
  int32_t most = request.max_count();
  for (size_t n = 0; n < cluster.node_count(); ++n) {
    if (!candidates[n]) continue;
    const std::string& name = cluster.spec(n).name;
    if (outcome.failed.count(name) > 0) continue;
    if (cluster.gpu_count(n) < most) {
      outcome.unresolvable[name] = "node has " + std::to_string(cluster.gpu_count(n)) +
                                   " Tessera GPUs; a container asks for " + std::to_string(most);
    } else {
      outcome.failed[name] = "no GPU with the memory, compute and replicas asked for is free";
    }
  }
  return outcome;
}

std::optional<kube::PodAllocation> State::Reservation(const std::string& uid) const {
  std::lock_guard lock(mutex_);
  auto it = holdings_.find(uid);
  if (it == holdings_.end()) return std::nullopt;
  return it->second.allocation;
}

void State::Bound(const std::string& uid) {
  std::lock_guard lock(mutex_);
  auto it = holdings_.find(uid);
  if (it != holdings_.end()) it->second.reservation = false;
}

void State::BindFailed(const std::string& uid) {
  std::lock_guard lock(mutex_);
  DropLocked(uid);
}

bool State::FitsAfterEviction(const PodGpuRequest& request, const std::string& node,
                              const std::vector<std::string>& victim_uids) {
  std::lock_guard lock(mutex_);
  EnsureBuiltLocked();
  auto index = node_index_.find(node);
  if (index == node_index_.end()) return false;
  // Try on a copy of the ledger, with the victims' GPUs given back.
  pl::Ledger trial = *ledger_;
  for (const std::string& uid : victim_uids) {
    auto it = holdings_.find(uid);
    if (it == holdings_.end()) continue;
    for (pl::PlacementId id : it->second.placements) (void)trial.Release(id);
  }
  std::vector<bool> only(trial.cluster().node_count(), false);
  only[index->second] = true;
  for (const ContainerGpuRequest& container : request.containers) {
    if (GpuCount(container) == 0) continue;
    pl::Request r = EngineRequest(trial.cluster(), container, request, unhealthy_uuids_);
    if (!pl::ValidateRequest(r).ok()) return false;
    pl::Demand demand = pl::CompileDemand(trial.cluster(), r);
    demand.shares_only = r.gpu_milli != pl::kMilliPerGpu;
    demand.candidate_nodes = &only;
    pl::GpuChoice choice;
    if (!pl::FitsNode(trial.cluster(), index->second, demand) ||
        !pl::ChooseGpusBestFit(trial.cluster(), index->second, demand, &choice) ||
        !trial.Place(demand, pl::Assignment{index->second, choice}).ok()) {
      return false;
    }
  }
  return true;
}

int32_t State::MaxGpusPerNode() const {
  std::lock_guard lock(mutex_);
  size_t most = 0;
  for (const auto& [name, node] : nodes_) most = std::max(most, node.gpus.size());
  return static_cast<int32_t>(most);
}

std::vector<GpuView> State::Gpus() const {
  std::lock_guard lock(mutex_);
  std::vector<GpuView> views;
  if (ledger_ == nullptr || dirty_) return views;
  const pl::Cluster& cluster = ledger_->cluster();
  for (size_t n = 0; n < cluster.node_count(); ++n) {
    const NodeGpus& node = nodes_.at(cluster.spec(n).name);
    for (int g = 0; g < cluster.gpu_count(n); ++g) {
      const pl::GpuState& state = cluster.gpus(n)[g];
      GpuView view;
      view.node = node.name;
      view.uuid = node.gpus[g].uuid;
      view.model = node.gpus[g].model;
      view.memory_mib = node.gpus[g].memory_mib;
      view.allocated_memory_mib = node.gpus[g].memory_mib - state.free_memory_mib;
      view.allocated_milli = pl::kMilliPerGpu - state.free_milli;
      view.tenants = state.tenants;
      view.shared = node.gpus[g].mode == pl::SharingMode::kShared;
      views.push_back(std::move(view));
    }
  }
  return views;
}

size_t State::pods_holding() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& [uid, holding] : holdings_) n += holding.reservation ? 0 : 1;
  return n;
}

size_t State::reservations() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& [uid, holding] : holdings_) n += holding.reservation ? 1 : 0;
  return n;
}

size_t State::ExpireReservations() {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::string> expired;
  for (const auto& [uid, holding] : holdings_) {
    if (holding.reservation && now - holding.reserved_at > options_.reservation_timeout) {
      expired.push_back(uid);
    }
  }
  for (const std::string& uid : expired) {
    log::Write(log::Level::kInfo, "state", "reservation of pod %s expired unbound",
               holdings_.at(uid).name.c_str());
    DropLocked(uid);
  }
  return expired.size();
}

}  // namespace tessera::scheduler
