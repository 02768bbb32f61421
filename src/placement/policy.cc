// The scoring framework, the factory, and the baseline policies. The baselines follow the FGD
// artifact's plugins (docs: reference/fgd-trace.md §7), including their integer scores, because
// integer scores tie and ties change results.
#include "placement/policy.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "placement/policy_internal.h"

namespace tessera::placement {

std::vector<uint32_t> TieRanks(size_t nodes, uint64_t seed) {
  std::vector<uint32_t> order(nodes);
  for (size_t i = 0; i < nodes; ++i) order[i] = static_cast<uint32_t>(i);
  std::mt19937_64 rng(seed ^ 0x7e55e7a7135ULL);
  for (size_t i = nodes; i > 1; --i) std::swap(order[i - 1], order[UniformIndex(rng, i)]);
  std::vector<uint32_t> ranks(nodes);
  for (size_t place = 0; place < nodes; ++place) ranks[order[place]] = static_cast<uint32_t>(place);
  return ranks;
}

ScoringPolicy::ScoringPolicy(const Cluster& cluster, uint64_t seed)
    : tie_ranks_(TieRanks(cluster.node_count(), seed)) {}

std::optional<Assignment> ScoringPolicy::Choose(const Cluster& cluster, const Demand& demand) {
  BeginChoose(cluster, demand);
  size_t best_node = cluster.node_count();
  double best_score = 0;
  int best_hint = -1;
  auto better = [&](double score, size_t node) {
    return best_node == cluster.node_count() || score > best_score ||
           (score == best_score && tie_ranks_[node] < tie_ranks_[best_node]);
  };
  if (!normalises_) {
    for (size_t node = 0; node < cluster.node_count(); ++node) {
      if (!FitsNode(cluster, node, demand)) continue;
      double score = 0;
      int hint = -1;
      if (!Score(cluster, node, demand, &score, &hint)) continue;
      if (better(score, node)) {
        best_node = node;
        best_score = score;
        best_hint = hint;
      }
    }
  } else {
    candidates_.clear();
    raw_.clear();
    hints_.clear();
    for (size_t node = 0; node < cluster.node_count(); ++node) {
      if (!FitsNode(cluster, node, demand)) continue;
      double score = 0;
      int hint = -1;
      if (!Score(cluster, node, demand, &score, &hint)) continue;
      candidates_.push_back(node);
      raw_.push_back(score);
      hints_.push_back(hint);
    }
    Normalise(raw_);
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (better(raw_[i], candidates_[i])) {
        best_node = candidates_[i];
        best_score = raw_[i];
        best_hint = hints_[i];
      }
    }
  }
  if (best_node == cluster.node_count()) return std::nullopt;
  Assignment assignment;
  assignment.node = best_node;
  if (!ChooseGpus(cluster, best_node, demand, best_hint, &assignment.gpus)) return std::nullopt;
  return assignment;
}

bool ScoringPolicy::ChooseGpus(const Cluster& cluster, size_t node, const Demand& demand, int hint,
                               GpuChoice* choice) {
  if (hint >= 0 && demand.gpu_count == 1) {
    choice->count = 1;
    choice->gpus[0] = hint;
    return true;
  }
  return ChooseGpusBestFit(cluster, node, demand, choice);
}

namespace {

// The artifact's fixed normalisers: the largest node has 128 CPUs and 8 GPUs.
constexpr double kMaxSpecCpu = 128000;
constexpr double kMaxSpecGpu = 8000;

int64_t FreeGpuMilli(const Cluster& cluster, size_t node) {
  return cluster.state(node).free_gpu_milli;
}

int64_t DemandMilli(const Demand& demand) {
  return int64_t{demand.gpu_count} *
         (demand.gpu_milli > 0 ? demand.gpu_milli : demand.gpu_cores_percent * 10);
}

// random: one fitting node uniformly at random; for a fraction, a random fitting GPU.
class RandomPolicy : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed ^ 0x4a4d0b5eULL) {}
  std::string_view name() const override { return "random"; }
  std::optional<Assignment> Choose(const Cluster& cluster, const Demand& demand) override {
    fitting_.clear();
    for (size_t node = 0; node < cluster.node_count(); ++node) {
      if (FitsNode(cluster, node, demand)) fitting_.push_back(node);
    }
    if (fitting_.empty()) return std::nullopt;
    Assignment assignment;
    assignment.node = fitting_[UniformIndex(rng_, fitting_.size())];
    if (!demand.needs_gpu()) return assignment;
    int gpus[kMaxGpusPerNode];
    int n = 0;
    for (int g = 0; g < cluster.gpu_count(assignment.node); ++g) {
      if (FitsGpu(cluster, assignment.node, g, demand, nullptr)) gpus[n++] = g;
    }
    if (demand.is_fractional()) {
      assignment.gpus.count = 1;
      assignment.gpus.gpus[0] = gpus[UniformIndex(rng_, static_cast<size_t>(n))];
    } else if (!TakePreferred(cluster, assignment.node, demand, gpus, n, &assignment.gpus)) {
      return std::nullopt;  // FitsNode said they fit
    }
    return assignment;
  }

 private:
  std::mt19937_64 rng_;
  std::vector<size_t> fitting_;
};

// spread / binpack: the node with the most (spread) or least (binpack) free GPU share left after
// placement; CPU left for CPU-only requests. Inside the node: the emptiest (spread) or fullest
// (binpack) fitting GPUs.
class SpreadOrBinpackPolicy : public ScoringPolicy {
 public:
  SpreadOrBinpackPolicy(const Cluster& cluster, uint64_t seed, bool spread)
      : ScoringPolicy(cluster, seed), spread_(spread) {}
  std::string_view name() const override { return spread_ ? "spread" : "binpack"; }

 protected:
  bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
             int* /*hint*/) override {
    double left;
    if (demand.needs_gpu()) {
      left = static_cast<double>(FreeGpuMilli(cluster, node) - DemandMilli(demand)) /
             std::max(1, cluster.gpu_count(node));
    } else {
      left = static_cast<double>(cluster.state(node).free_cpu_milli - demand.cpu_milli) /
             static_cast<double>(std::max<int64_t>(1, cluster.spec(node).cpu_milli));
    }
    *score = spread_ ? left : -left;
    return true;
  }
  bool ChooseGpus(const Cluster& cluster, size_t node, const Demand& demand, int /*hint*/,
                  GpuChoice* choice) override {
    if (!spread_) return ChooseGpusBestFit(cluster, node, demand, choice);
    choice->count = 0;
    if (!demand.needs_gpu()) return true;
    std::span<const GpuState> gpus = cluster.gpus(node);
    int fitting[kMaxGpusPerNode];
    int n = 0;
    for (int g = 0; g < static_cast<int>(gpus.size()); ++g) {
      if (FitsGpu(cluster, node, g, demand, nullptr)) fitting[n++] = g;
    }
    if (n < demand.gpu_count) return false;
    std::stable_sort(fitting, fitting + n,
                     [&](int a, int b) { return gpus[a].free_milli > gpus[b].free_milli; });
    return TakePreferred(cluster, node, demand, fitting, n, choice);
  }

 private:
  bool spread_;
};

// bestfit: least weighted leftover of CPU and GPU after placement, min-max normalised to 0..100.
class BestFitPolicy : public ScoringPolicy {
 public:
  BestFitPolicy(const Cluster& cluster, uint64_t seed) : ScoringPolicy(cluster, seed) {
    // Raw scores are integers; when no node exceeds the normalisers they lie in 0..100, and
    // min-max normalisation to 0..100 is then strictly increasing on them: it changes neither
    // the order nor the ties, so the scores can be compared as they come.
    bool within = true;
    for (size_t n = 0; n < cluster.node_count(); ++n) {
      within = within && static_cast<double>(cluster.spec(n).cpu_milli) <= kMaxSpecCpu &&
               cluster.gpu_count(n) * kMilliPerGpu <= static_cast<int>(kMaxSpecGpu);
    }
    set_normalises(!within);
  }
  std::string_view name() const override { return "bestfit"; }

 protected:
  bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
             int* /*hint*/) override {
    double cpu_left =
        static_cast<double>(cluster.state(node).free_cpu_milli - demand.cpu_milli) / kMaxSpecCpu;
    double gpu_left =
        static_cast<double>(FreeGpuMilli(cluster, node) - DemandMilli(demand)) / kMaxSpecGpu;
    *score = std::floor(100 * (1 - (0.5 * cpu_left + 0.5 * gpu_left)));
    return true;
  }
  void Normalise(std::vector<double>& scores) override {
    if (scores.empty()) return;
    auto [lo, hi] = std::minmax_element(scores.begin(), scores.end());
    double min = *lo;
    double range = *hi - *lo;
    for (double& s : scores) s = range > 0 ? std::floor((s - min) * 100 / range) : 100;
  }
};

// dotprod: the smallest dot product of the node's free (CPU, GPU) and the demand.
class DotProductPolicy : public ScoringPolicy {
 public:
  DotProductPolicy(const Cluster& cluster, uint64_t seed) : ScoringPolicy(cluster, seed) {}
  std::string_view name() const override { return "dotprod"; }

 protected:
  bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
             int* /*hint*/) override {
    double dot = static_cast<double>(cluster.state(node).free_cpu_milli) / kMaxSpecCpu *
                     static_cast<double>(demand.cpu_milli) / kMaxSpecCpu +
                 static_cast<double>(FreeGpuMilli(cluster, node)) / kMaxSpecGpu *
                     static_cast<double>(DemandMilli(demand)) / kMaxSpecGpu;
    *score = std::floor(100 * (1 - dot / 2));
    return true;
  }
};

// gpupacking: share an already shared GPU > open a free GPU on a used node > use an idle node,
// and among idle nodes the smaller.
class GpuPackingPolicy : public ScoringPolicy {
 public:
  GpuPackingPolicy(const Cluster& cluster, uint64_t seed) : ScoringPolicy(cluster, seed) {}
  std::string_view name() const override { return "gpupacking"; }

 protected:
  bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
             int* /*hint*/) override {
    if (!demand.needs_gpu()) {
      *score = 0;
      return true;
    }
    std::span<const GpuState> gpus = cluster.gpus(node);
    const int count = static_cast<int>(gpus.size());
    bool all_free = std::all_of(gpus.begin(), gpus.end(),
                                [](const GpuState& g) { return g.free_milli == kMilliPerGpu; });
    if (all_free) {
      *score = std::max(33 - count, count);
      return true;
    }
    GpuChoice choice;
    if (!ChooseGpusBestFit(cluster, node, demand, &choice)) return false;
    int fully_free = 0;
    int64_t percent_sum = 0;
    for (int i = 0; i < choice.count; ++i) {
      int32_t free = gpus[choice.gpus[i]].free_milli;
      if (free == kMilliPerGpu) ++fully_free;
      percent_sum += free * 100 / kMilliPerGpu;
    }
    if (fully_free > 0) {
      *score = std::max(50 - fully_free, 33);
    } else {
      *score = static_cast<double>(std::max<int64_t>(100 - percent_sum / 10, 50));
    }
    return true;
  }
};

// gpuclustering: prefer nodes whose GPU pods are all of the request's kind ("share-gpu" or
// "<k>-gpu"), then fuller nodes.
class GpuClusteringPolicy : public ScoringPolicy {
 public:
  GpuClusteringPolicy(const Cluster& cluster, uint64_t seed) : ScoringPolicy(cluster, seed) {}
  std::string_view name() const override { return "gpuclustering"; }

 protected:
  bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
             int* /*hint*/) override {
    if (!demand.needs_gpu()) {
      *score = 0;
      return true;
    }
    const NodeState& state = cluster.state(node);
    const bool shared = demand.is_fractional();
    bool hosts_same = false;
    bool hosts_other = false;
    if (state.shared_gpu_pods > 0) (shared ? hosts_same : hosts_other) = true;
    for (size_t k = 1; k < state.whole_gpu_pods.size(); ++k) {
      if (state.whole_gpu_pods[k] == 0) continue;
      (!shared && static_cast<int>(k) == demand.gpu_count ? hosts_same : hosts_other) = true;
    }
    int base = hosts_same ? (hosts_other ? 50 : 75) : (hosts_other ? 0 : 25);
    int64_t used = static_cast<int64_t>(kMaxSpecGpu) - FreeGpuMilli(cluster, node);
    // Integer division on purpose: the artifact scores in integers, and its ties matter.
    const int64_t fullness = 25 * used / static_cast<int64_t>(kMaxSpecGpu);
    *score = static_cast<double>(base + fullness);
    return true;
  }
};

}  // namespace

const std::vector<std::string>& PolicyNames() {
  static const std::vector<std::string> names = {
      "random",     "spread",        "binpack", "bestfit", "dotprod",
      "gpupacking", "gpuclustering", "fgd",     "tessera", "tessera-online"};
  return names;
}

Result<std::unique_ptr<Policy>> MakePolicy(std::string_view name, const Cluster& cluster,
                                           const PolicyOptions& options) {
  std::unique_ptr<Policy> policy;
  if (name == "random") {
    policy = std::make_unique<RandomPolicy>(options.seed);
  } else if (name == "spread" || name == "binpack") {
    policy = std::make_unique<SpreadOrBinpackPolicy>(cluster, options.seed, name == "spread");
  } else if (name == "bestfit") {
    policy = std::make_unique<BestFitPolicy>(cluster, options.seed);
  } else if (name == "dotprod") {
    policy = std::make_unique<DotProductPolicy>(cluster, options.seed);
  } else if (name == "gpupacking") {
    policy = std::make_unique<GpuPackingPolicy>(cluster, options.seed);
  } else if (name == "gpuclustering") {
    policy = std::make_unique<GpuClusteringPolicy>(cluster, options.seed);
  } else if (name == "fgd") {
    policy = MakeFgdPolicy(cluster, options);
  } else if (name == "tessera") {
    policy = MakeTesseraPolicy(cluster, options, /*online=*/false);
  } else if (name == "tessera-online") {
    policy = MakeTesseraPolicy(cluster, options, /*online=*/true);
  } else {
    std::string known;
    for (const std::string& n : PolicyNames()) known += (known.empty() ? "" : ", ") + n;
    return Status::Error("unknown policy \"" + std::string(name) + "\" (known: " + known + ")");
  }
  return policy;
}

}  // namespace tessera::placement
