#include "placement/fragmentation.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <tuple>

namespace tessera::placement {

Workload::Workload(const Cluster& cluster, std::vector<WeightedShape> shapes) {
  double total = 0;
  for (const WeightedShape& s : shapes) {
    if (s.weight > 0) total += s.weight;
  }
  for (WeightedShape& s : shapes) {
    if (s.weight <= 0) continue;
    s.weight /= total;
    shapes_.push_back(std::move(s));
  }
  // One table per model id, plus one (the last) for nodes of no single model, where only
  // unconstrained shapes can run.
  per_model_.resize(static_cast<size_t>(cluster.model_count()) + 1);
  for (size_t model = 0; model < per_model_.size(); ++model) {
    PerModel& table = per_model_[model];
    bool known = model < static_cast<size_t>(cluster.model_count());
    for (const WeightedShape& s : shapes_) {
      const TaskShape& shape = s.shape;
      bool allowed = shape.gpu_types.empty() ||
                     (known && std::find(shape.gpu_types.begin(), shape.gpu_types.end(),
                                         cluster.model_name(static_cast<int>(model))) !=
                                   shape.gpu_types.end());
      if (shape.gpu_milli <= 0 || shape.gpu_count <= 0 || !allowed) {
        table.always_weight += s.weight;
      } else {
        table.entries.push_back({shape.gpu_milli, shape.gpu_count, shape.cpu_milli, s.weight});
      }
    }
    std::stable_sort(table.entries.begin(), table.entries.end(),
                     [](const Entry& a, const Entry& b) { return a.gpu_milli > b.gpu_milli; });
  }
}

double Workload::NodeFragmentation(int model, int64_t free_cpu_milli,
                                   std::span<const int32_t> free_milli) const {
  if (shapes_.empty() || free_milli.empty()) return 0;
  const PerModel& table = model >= 0 && static_cast<size_t>(model) + 1 < per_model_.size()
                              ? per_model_[model]
                              : per_model_.back();
  int32_t sorted[kMaxGpusPerNode];
  const size_t n = std::min(free_milli.size(), static_cast<size_t>(kMaxGpusPerNode));
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    sorted[i] = free_milli[i];
    total += free_milli[i];
  }
  std::sort(sorted, sorted + n, std::greater<int32_t>());
  // Walk shapes by share descending and GPUs by free share descending together: after the
  // inner loop, `fitting` GPUs have R >= d and hold `usable_sum` between them.
  double usable = 0;
  size_t fitting = 0;
  int64_t usable_sum = 0;
  double all_weight = table.always_weight;
  for (const Entry& e : table.entries) {
    all_weight += e.weight;
    while (fitting < n && sorted[fitting] >= e.gpu_milli) usable_sum += sorted[fitting++];
    if (fitting >= static_cast<size_t>(e.gpu_count) && free_cpu_milli >= e.cpu_milli) {
      usable += e.weight * static_cast<double>(usable_sum);
    }
  }
  return static_cast<double>(total) * all_weight - usable;
}

double Workload::NodeCapacityWaste(int model, int64_t free_cpu_milli,
                                   std::span<const int32_t> free_milli) const {
  if (shapes_.empty() || free_milli.empty()) return 0;
  const PerModel& table = model >= 0 && static_cast<size_t>(model) + 1 < per_model_.size()
                              ? per_model_[model]
                              : per_model_.back();
  int64_t total = 0;
  for (int32_t r : free_milli) total += r;
  double usable = 0;
  double all_weight = table.always_weight;
  for (const Entry& e : table.entries) {
    all_weight += e.weight;
    int64_t slots = 0;
    for (int32_t r : free_milli) slots += r / e.gpu_milli;
    int64_t copies = slots / e.gpu_count;
    if (e.cpu_milli > 0) {
      copies = std::min<int64_t>(copies, std::max<int64_t>(0, free_cpu_milli) / e.cpu_milli);
    }
    usable += e.weight * static_cast<double>(copies * e.gpu_count * e.gpu_milli);
  }
  return static_cast<double>(total) * all_weight - usable;
}

double Workload::NodeFragmentation(const Cluster& cluster, size_t node) const {
  std::span<const GpuState> gpus = cluster.gpus(node);
  int32_t free[kMaxGpusPerNode];
  for (size_t i = 0; i < gpus.size(); ++i) free[i] = gpus[i].free_milli;
  int model = cluster.node_model(node);
  if (model < 0 && !gpus.empty()) model = cluster.gpu_model(node, 0);
  return NodeFragmentation(model, cluster.state(node).free_cpu_milli,
                           std::span<const int32_t>(free, gpus.size()));
}

namespace {

std::string JoinTypes(const std::vector<std::string>& types) {
  std::string joined;
  for (const std::string& t : types) {
    if (!joined.empty()) joined += '|';
    joined += t;
  }
  return joined;
}

auto ShapeKey(const TaskShape& s) {
  return std::make_tuple(s.cpu_milli, s.gpu_milli, s.gpu_count, JoinTypes(s.gpu_types));
}

}  // namespace

std::vector<ShapeCount> CountShapes(std::span<const TaskShape> pods) {
  std::map<decltype(ShapeKey(TaskShape{})), ShapeCount> counts;
  for (const TaskShape& pod : pods) {
    ShapeCount& entry = counts[ShapeKey(pod)];
    if (entry.count == 0) entry.shape = pod;
    ++entry.count;
  }
  std::vector<ShapeCount> result;
  result.reserve(counts.size());
  for (auto& [key, entry] : counts) result.push_back(std::move(entry));
  std::stable_sort(result.begin(), result.end(), [](const ShapeCount& a, const ShapeCount& b) {
    if (a.count != b.count) return a.count > b.count;
    return ShapeKey(a.shape) > ShapeKey(b.shape);
  });
  return result;
}

std::vector<WeightedShape> TypicalShapes(std::span<const ShapeCount> counts, double coverage) {
  int64_t total = 0;
  for (const ShapeCount& c : counts) total += c.count;
  std::vector<WeightedShape> shapes;
  int64_t covered = 0;
  for (const ShapeCount& c : counts) {
    if (static_cast<double>(covered) >= coverage * static_cast<double>(total)) break;
    shapes.push_back({c.shape, static_cast<double>(c.count)});
    covered += c.count;
  }
  return shapes;
}

std::vector<WeightedShape> WeighByScarcity(const Cluster& cluster,
                                           std::vector<WeightedShape> shapes) {
  std::vector<double> gpus_of_model(static_cast<size_t>(cluster.model_count()), 0.0);
  for (size_t n = 0; n < cluster.node_count(); ++n) {
    for (int g = 0; g < cluster.gpu_count(n); ++g) gpus_of_model[cluster.gpu_model(n, g)] += 1;
  }
  const auto all = static_cast<double>(cluster.total_gpus());
  for (WeightedShape& s : shapes) {
    if (s.shape.gpu_types.empty() || s.shape.gpu_count == 0) continue;
    double supply = 0;
    for (const std::string& type : s.shape.gpu_types) {
      int id = cluster.ModelId(type);
      if (id >= 0) supply += gpus_of_model[id];
    }
    if (supply > 0) s.weight *= all / supply;
  }
  return shapes;
}

HoleWaste::HoleWaste(const Cluster& cluster, std::span<const WeightedShape> shapes,
                     double coverage) {
  tables_.resize(static_cast<size_t>(cluster.model_count()) + 1);
  for (size_t model = 0; model < tables_.size(); ++model) {
    const bool known = model < static_cast<size_t>(cluster.model_count());
    // Weight per one-GPU share allowed on this model.
    std::map<int32_t, double> by_share;
    for (const WeightedShape& s : shapes) {
      const TaskShape& shape = s.shape;
      if (shape.gpu_count != 1 || shape.gpu_milli <= 0 || s.weight <= 0) continue;
      const bool allowed = shape.gpu_types.empty() ||
                           (known && std::find(shape.gpu_types.begin(), shape.gpu_types.end(),
                                               cluster.model_name(static_cast<int>(model))) !=
                                         shape.gpu_types.end());
      if (allowed) by_share[std::min(shape.gpu_milli, kMilliPerGpu)] += s.weight;
    }
    std::vector<std::pair<double, int32_t>> order;  // (-weight, share): heaviest first
    double fractional = 0;
    for (const auto& [share, weight] : by_share) {
      if (share < kMilliPerGpu) fractional += weight;
      order.emplace_back(-weight, share);
    }
    std::sort(order.begin(), order.end());
    std::vector<int32_t> frequent;
    double covered = 0;
    for (const auto& [negative_weight, share] : order) {
      if (share < kMilliPerGpu) {
        if (covered >= coverage * fractional) continue;
        covered -= negative_weight;
      }
      frequent.push_back(share);
    }
    // Unbounded subset sums of the frequent shares, then w(R) = R - largest sum <= R.
    std::vector<char> reachable(static_cast<size_t>(kMilliPerGpu) + 1, 0);
    reachable[0] = 1;
    for (int32_t r = 1; r <= kMilliPerGpu; ++r) {
      for (int32_t d : frequent) {
        if (d <= r && reachable[static_cast<size_t>(r - d)]) {
          reachable[static_cast<size_t>(r)] = 1;
          break;
        }
      }
    }
    PerModel& table = tables_[model];
    table.unfillable.resize(static_cast<size_t>(kMilliPerGpu) + 1);
    int32_t best = 0;
    for (int32_t r = 0; r <= kMilliPerGpu; ++r) {
      if (reachable[static_cast<size_t>(r)]) best = r;
      table.unfillable[static_cast<size_t>(r)] = r - best;
    }
    table.min_cpu_milli = frequent.empty() ? 0 : std::numeric_limits<int64_t>::max();
    for (const WeightedShape& s : shapes) {
      const TaskShape& shape = s.shape;
      if (shape.gpu_count != 1 || shape.gpu_milli <= 0 || s.weight <= 0) continue;
      if (std::find(frequent.begin(), frequent.end(), std::min(shape.gpu_milli, kMilliPerGpu)) ==
          frequent.end()) {
        continue;
      }
      table.min_cpu_milli = std::min(table.min_cpu_milli, shape.cpu_milli);
    }
  }
}

const HoleWaste::PerModel& HoleWaste::Table(int model) const {
  return model >= 0 && static_cast<size_t>(model) + 1 < tables_.size() ? tables_[model]
                                                                       : tables_.back();
}

int32_t HoleWaste::Unfillable(int model, int32_t free_milli) const {
  if (tables_.empty()) return 0;
  return Table(model).unfillable[static_cast<size_t>(std::clamp(free_milli, 0, kMilliPerGpu))];
}

double HoleWaste::NodeHoleWaste(int model, int64_t free_cpu_milli,
                                std::span<const int32_t> free_milli) const {
  if (tables_.empty()) return 0;
  const PerModel& table = Table(model);
  int64_t sum = 0;
  if (free_cpu_milli < table.min_cpu_milli) {
    for (int32_t r : free_milli) sum += r;
  } else {
    for (int32_t r : free_milli) {
      sum += table.unfillable[static_cast<size_t>(std::clamp(r, 0, kMilliPerGpu))];
    }
  }
  return static_cast<double>(sum);
}

ClusterFragmentation MeasureCluster(const Cluster& cluster, const Workload& workload) {
  ClusterFragmentation result;
  for (size_t node = 0; node < cluster.node_count(); ++node) {
    result.amount_milli += workload.NodeFragmentation(cluster, node);
    for (const GpuState& gpu : cluster.gpus(node)) result.free_milli += gpu.free_milli;
  }
  return result;
}

}  // namespace tessera::placement
