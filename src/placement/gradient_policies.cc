// Fragmentation-gradient policies: FGD as its artifact runs it, and Tessera's policy.
//
// Both put a request where a fragmentation measure of the cluster grows least. F_n changes
// only on the node that receives the request, so a policy scores a node by
// delta = F_n(M) after - F_n(M) before. Scores depend only on the node's state and the request's
// shape, so they are cached per (shape, node) under the node's version: after the first requests
// of each shape, one Choose costs one cache probe per node plus one fresh score for the node that
// changed last.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>
#include <unordered_map>

#include "placement/policy_internal.h"

namespace tessera::placement {
namespace {

struct ShapeKey {
  int64_t cpu_milli;
  int64_t gpu_memory_mib;
  int32_t gpu_milli;
  int32_t gpu_count;
  int32_t gpu_cores_percent;
  uint64_t allowed_models;
  friend bool operator==(const ShapeKey&, const ShapeKey&) = default;
};

struct ShapeKeyHash {
  size_t operator()(const ShapeKey& k) const {
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
    mix(static_cast<uint64_t>(k.cpu_milli));
    mix(static_cast<uint64_t>(k.gpu_memory_mib));
    mix(static_cast<uint64_t>(k.gpu_milli));
    mix(static_cast<uint64_t>(k.gpu_count));
    mix(static_cast<uint64_t>(k.gpu_cores_percent));
    mix(k.allowed_models);
    return static_cast<size_t>(h);
  }
};

ShapeKey KeyOf(const Demand& d) {
  return {d.cpu_milli, d.gpu_memory_mib,    d.gpu_milli,
          d.gpu_count, d.gpu_cores_percent, d.allowed_models};
}

// The artifact's score: floor(100 * sigmoid(-delta / 1000)). Many nodes tie and ties go to the
// seeded ranks; that matters: an exact argmin does much worse (docs/placement.md).
double ExactScore(double delta) { return 100.0 / (1.0 + std::exp(delta / 1000.0)); }
double QuantisedScore(double delta) { return std::floor(ExactScore(delta)); }

// Scores nodes by the growth of a fragmentation measure, with scores cached per (shape, node)
// under the node's version.
class GradientPolicy : public ScoringPolicy {
 public:
  // The measure is (1 - capacity_weight) F_n(M) + capacity_weight K_n(M) + hole_weight W_n
  // (fragmentation.h; W_n only when `holes` is not empty).
  GradientPolicy(const Cluster& cluster, uint64_t seed, Workload workload, double capacity_weight,
                 HoleWaste holes = {}, double hole_weight = 0, bool exact_fraction_ties = false)
      : ScoringPolicy(cluster, seed),
        nodes_(cluster.node_count()),
        capacity_weight_(capacity_weight),
        hole_weight_(hole_weight),
        exact_fraction_ties_(exact_fraction_ties),
        workload_(std::move(workload)),
        holes_(std::move(holes)) {}

 protected:
  // The score of a node from the growth `delta` (milli-GPU) of the measure if the demand goes
  // there (higher is better).
  virtual double ScoreOf(double delta) const = 0;

  void SetWorkload(Workload workload, HoleWaste holes) {
    workload_ = std::move(workload);
    holes_ = std::move(holes);
    std::fill(cache_.begin(), cache_.end(), CacheEntry{});
  }

  void BeginChoose(const Cluster& /*cluster*/, const Demand& demand) override {
    if (demand.uuid_constraints != nullptr) {
      shape_ = -1;  // constraints on GPU identity: too rare to cache
      return;
    }
    auto [it, inserted] = shape_ids_.try_emplace(KeyOf(demand), shape_ids_.size());
    shape_ = static_cast<int64_t>(it->second);
    if (inserted) cache_.resize(cache_.size() + nodes_);
  }

  bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
             int* hint) override {
    CacheEntry* entry = nullptr;
    const uint64_t version = cluster.state(node).version + 1;  // 0 marks an empty entry
    if (shape_ >= 0) {
      entry = &cache_[static_cast<size_t>(shape_) * nodes_ + node];
      if (entry->version == version) {
        *score = entry->score;
        *hint = entry->gpu;
        return entry->gpu != kNoFit;
      }
    }
    int gpu = -1;
    bool fits = BestDelta(cluster, node, demand, score, &gpu);
    if (entry != nullptr) *entry = {version, *score, fits ? gpu : kNoFit};
    *hint = gpu;
    return fits;
  }

 private:
  static constexpr int kNoFit = -2;
  struct CacheEntry {
    uint64_t version = 0;
    double score = 0;
    int gpu = -1;
  };

  double Measure(int model, int64_t cpu, std::span<const int32_t> free) const {
    double measure = workload_.NodeFragmentation(model, cpu, free);
    if (capacity_weight_ > 0) {
      measure = (1 - capacity_weight_) * measure +
                capacity_weight_ * workload_.NodeCapacityWaste(model, cpu, free);
    }
    if (hole_weight_ > 0) measure += hole_weight_ * holes_.NodeHoleWaste(model, cpu, free);
    return measure;
  }

  // The best score over the ways the demand can go on the node. A fraction may go on any fitting
  // GPU (one try per distinct free share: equal shares give equal scores, and the lowest index
  // wins ties); anything else takes the best-fit GPUs. With exact_fraction_ties_, a fraction's
  // GPU and node are ranked by the unquantised score among equal quantised ones (the node's
  // score becomes (q + exact) / 2, which stays inside q's bucket).
  bool BestDelta(const Cluster& cluster, size_t node, const Demand& demand, double* score,
                 int* gpu) const {
    std::span<const GpuState> gpus = cluster.gpus(node);
    const int count = static_cast<int>(gpus.size());
    int32_t free[kMaxGpusPerNode];
    for (int g = 0; g < count; ++g) free[g] = gpus[g].free_milli;
    int model = cluster.node_model(node);
    if (model < 0 && count > 0) model = cluster.gpu_model(node, 0);
    const int64_t cpu = cluster.state(node).free_cpu_milli;
    std::span<const int32_t> view(free, static_cast<size_t>(count));
    const double before = Measure(model, cpu, view);
    const int64_t cpu_after = cpu - demand.cpu_milli;
    if (demand.gpu_count == 1) {
      bool found = false;
      double best_exact = 0;
      const bool exact_ties = exact_fraction_ties_ && demand.is_fractional();
      int32_t tried[kMaxGpusPerNode];
      int tried_count = 0;
      for (int g = 0; g < count; ++g) {
        GpuCharge charge;
        if (!FitsGpu(cluster, node, g, demand, &charge)) continue;
        if (std::find(tried, tried + tried_count, free[g]) != tried + tried_count) continue;
        tried[tried_count++] = free[g];
        free[g] -= charge.milli;
        const double delta = Measure(model, cpu_after, view) - before;
        const double s = ScoreOf(delta);
        const double exact = exact_ties ? ExactScore(delta) : 0;
        free[g] += charge.milli;
        if (!found || s > *score || (s == *score && exact > best_exact)) {
          found = true;
          *score = s;
          best_exact = exact;
          *gpu = g;
        }
      }
      if (found && exact_ties) *score = (*score + best_exact) / 2;
      return found;
    }
    GpuChoice choice;
    if (!ChooseGpusBestFit(cluster, node, demand, &choice)) return false;
    for (int i = 0; i < choice.count; ++i) {
      GpuCharge charge;
      FitsGpu(cluster, node, choice.gpus[i], demand, &charge);
      free[choice.gpus[i]] -= charge.milli;
    }
    *score = ScoreOf(Measure(model, cpu_after, view) - before);
    *gpu = -1;
    return true;
  }

  size_t nodes_;
  double capacity_weight_;
  double hole_weight_;
  bool exact_fraction_ties_;
  Workload workload_;
  HoleWaste holes_;
  std::unordered_map<ShapeKey, size_t, ShapeKeyHash> shape_ids_;
  int64_t shape_ = -1;
  std::vector<CacheEntry> cache_;  // [shape * nodes_ + node]
};

// fgd: the artifact's policy. The target workload is the trace's most frequent shapes covering
// 95 % of pods, weighted by count.
class FgdPolicy : public GradientPolicy {
 public:
  FgdPolicy(const Cluster& cluster, const PolicyOptions& options)
      : GradientPolicy(cluster, options.seed,
                       Workload(cluster, TypicalShapes(options.shape_counts, options.fgd_coverage)),
                       /*capacity_weight=*/0),
        quantised_(options.fgd_quantised) {}
  std::string_view name() const override { return "fgd"; }

 protected:
  double ScoreOf(double delta) const override {
    return quantised_ ? QuantisedScore(delta) : -delta;
  }

 private:
  bool quantised_;
};

// tessera: FGD's gradient over a better-informed measure.
//  - Measure: 0.92 F_n(M) + 0.08 K_n(M) + 60 W_n. K_n (fragmentation.h) sees CPU running out
//    before the GPUs do, which F_n cannot (a CPU-only pod that takes 32 of a G2 node's 96 CPUs
//    costs F_n nothing); a small weight keeps F_n in charge of the rest (larger weights lose on
//    the multi-GPU traces). W_n (HoleWaste) is the free share no mix of the frequent shares can
//    fill (all of it where the node lacks CPU for every frequent shape); its large weight makes it
//    decide first, so F_n and K_n order the placements that leave equally fillable holes (weights
//    40-200 give the same results).
//  - Workload: typed shapes weighted by scarcity (WeighByScarcity); W_n's frequent shares are
//    the fractional shares covering 85 % of that weight.
//  - Score: FGD's quantised sigmoid with seeded tie ranks, except that a fraction's ties are
//    broken by the exact score (whole and multi-GPU requests keep the seeded ranks).
// Knowledge: `tessera` gets exactly what fgd gets, the trace's shape counts, and keeps the same
// 95 % typical shapes; it also reads the cluster's GPU models. `tessera-online` gets no shapes
// in advance: it counts the requests it is asked about and rebuilds its workload and hole table
// after 1, 2, 4, ..., 1024 requests and every 1024 after that.
class TesseraPolicy : public GradientPolicy {
 public:
  static constexpr double kCapacityWeight = 0.08;
  static constexpr double kHoleWeight = 60;
  static constexpr double kCoverage = 0.95;
  static constexpr double kHoleCoverage = 0.85;

  TesseraPolicy(const Cluster& cluster, const PolicyOptions& options, bool online)
      : TesseraPolicy(cluster, online,
                      online ? Target{} : MakeTarget(cluster, options.shape_counts), options.seed) {
  }
  std::string_view name() const override { return online_ ? "tessera-online" : "tessera"; }

  void Observe(const Demand& demand) override {
    if (!online_) return;
    TaskShape shape{
        demand.cpu_milli, demand.gpu_count > 0 ? demand.gpu_milli : 0, demand.gpu_count, {}};
    if (demand.allowed_models != ~uint64_t{0}) {
      for (int m = 0; m < cluster_.model_count(); ++m) {
        if ((demand.allowed_models >> m) & 1) shape.gpu_types.push_back(cluster_.model_name(m));
      }
    }
    seen_.push_back(std::move(shape));
    if (seen_.size() >= next_refresh_) {
      next_refresh_ = next_refresh_ < 1024 ? next_refresh_ * 2 : next_refresh_ + 1024;
      Target target = MakeTarget(cluster_, CountShapes(seen_));
      SetWorkload(std::move(target.workload), std::move(target.holes));
    }
  }

 protected:
  double ScoreOf(double delta) const override { return QuantisedScore(delta); }

 private:
  struct Target {
    Workload workload;
    HoleWaste holes;
  };

  TesseraPolicy(const Cluster& cluster, bool online, Target target, uint64_t seed)
      : GradientPolicy(cluster, seed, std::move(target.workload), kCapacityWeight,
                       std::move(target.holes), kHoleWeight, /*exact_fraction_ties=*/true),
        cluster_(cluster),
        online_(online) {}

  static Target MakeTarget(const Cluster& cluster, std::span<const ShapeCount> counts) {
    std::vector<WeightedShape> shapes = WeighByScarcity(cluster, TypicalShapes(counts, kCoverage));
    HoleWaste holes(cluster, shapes, kHoleCoverage);
    return {Workload(cluster, std::move(shapes)), std::move(holes)};
  }

  const Cluster& cluster_;
  bool online_;
  std::vector<TaskShape> seen_;
  size_t next_refresh_ = 1;
};

}  // namespace

std::unique_ptr<Policy> MakeFgdPolicy(const Cluster& cluster, const PolicyOptions& options) {
  return std::make_unique<FgdPolicy>(cluster, options);
}

std::unique_ptr<Policy> MakeTesseraPolicy(const Cluster& cluster, const PolicyOptions& options,
                                          bool online) {
  return std::make_unique<TesseraPolicy>(cluster, options, online);
}

}  // namespace tessera::placement
