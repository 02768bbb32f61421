// The fragmentation measure of FGD (Weng et al., USENIX ATC'23), as its artifact computes it.
//
// A target workload M is a distribution over task shapes m = (CPU c_m, per-GPU share d_m, GPU
// count k_m, allowed models S_m) with weights p_m summing to 1. A node's fragmentation measured
// by one shape is its free GPU share that the shape cannot use:
//   F_n(m) = sum of R_g over GPUs with R_g < d_m   when m fits the node (enough GPUs with
//                                                   R_g >= d_m, and enough free CPU),
//   F_n(m) = sum of all R_g                        otherwise, and always for CPU-only shapes
//                                                   and shapes whose models exclude the node.
// and by the workload F_n(M) = sum_m p_m F_n(m). Units are milli-GPU. Memory plays no part.
//
// Equivalently F_n(M) = sum R_g - sum over fitting GPU shapes of p_m * (sum of R_g >= d_m), which
// is how it is computed: the shapes are compiled per GPU model and sorted by share, so one F_n
// costs O(shapes + GPUs).
#ifndef TESSERA_PLACEMENT_FRAGMENTATION_H_
#define TESSERA_PLACEMENT_FRAGMENTATION_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "placement/cluster.h"

namespace tessera::placement {

struct TaskShape {
  int64_t cpu_milli = 0;
  int32_t gpu_milli = 0;  // 0 for CPU-only shapes
  int32_t gpu_count = 0;
  std::vector<std::string> gpu_types;  // allowed models; empty = any

  friend bool operator==(const TaskShape&, const TaskShape&) = default;
};

struct WeightedShape {
  TaskShape shape;
  double weight = 0;  // need not be normalised; Workload normalises
};

// A workload compiled against one cluster's models.
class Workload {
 public:
  Workload() = default;
  // Weights are normalised to sum to 1; shapes with weight <= 0 are dropped.
  Workload(const Cluster& cluster, std::vector<WeightedShape> shapes);

  bool empty() const { return shapes_.empty(); }
  const std::vector<WeightedShape>& shapes() const { return shapes_; }

  // F_n(M) for a node of GPU model `model` (-1: mixed models, measured per GPU model of the
  // first GPU) with `free_cpu_milli` and per-GPU free shares `free_milli`.
  double NodeFragmentation(int model, int64_t free_cpu_milli,
                           std::span<const int32_t> free_milli) const;
  // F_n(M) for a node of the cluster in its current state.
  double NodeFragmentation(const Cluster& cluster, size_t node) const;

  // The capacity measure (Tessera's addition): for each GPU shape, the free share that the copies
  // of the shape the node could still host at once, limited by its GPUs *and* its CPU, would not
  // use:
  //   K_n(m) = sum R_g - k_m d_m min(floor(sum_g floor(R_g / d_m) / k_m), floor(C_n / c_m)),
  // and sum R_g for CPU-only shapes and shapes that exclude the node, as in F_n; K_n(M) weights
  // them by p_m. Where F_n asks "can the next task run here?", K_n asks "how much of this node
  // can the workload still use?", which sees CPU running out before the GPUs do.
  double NodeCapacityWaste(int model, int64_t free_cpu_milli,
                           std::span<const int32_t> free_milli) const;

 private:
  struct Entry {
    int32_t gpu_milli;
    int32_t gpu_count;
    int64_t cpu_milli;
    double weight;
  };
  struct PerModel {
    double always_weight = 0;    // CPU-only shapes and shapes that exclude this model
    std::vector<Entry> entries;  // GPU shapes allowed on this model, by gpu_milli descending
  };
  std::vector<WeightedShape> shapes_;
  std::vector<PerModel> per_model_;  // indexed by model id
};

// Shapes counted over a list of pods, most frequent first; ties go to the larger shape (CPU,
// then share, then count, then types). This is the artifact's "typical pods" order.
struct ShapeCount {
  TaskShape shape;
  int64_t count = 0;
};
std::vector<ShapeCount> CountShapes(std::span<const TaskShape> pods);

// FGD's target workload: the most frequent shapes until they cover at least `coverage` (0..1]
// of the pods, weighted by count.
std::vector<WeightedShape> TypicalShapes(std::span<const ShapeCount> counts, double coverage);

// Typed shapes weighted by the scarcity of what they may use: p_m times (all GPUs / GPUs of the
// models m allows); untyped and CPU-only shapes keep their weight. Counting pods alone, a model
// that a tenth of the pods need but a twentieth of the GPUs have looks no more precious than any
// other. (Tessera's policy; not part of FGD.)
std::vector<WeightedShape> WeighByScarcity(const Cluster& cluster,
                                           std::vector<WeightedShape> shapes);

// Tessera's hole measure. A GPU's free share R is a hole that future tasks fill with some mix
// of their shares; the part no mix of the *frequent* one-GPU shares can fill is lost for good:
//   w(R) = R - (the largest sum <= R of frequent shares allowed on the GPU's model, any number
//               of each),
// and W_n = sum_g w(R_g), or sum_g R_g when the node's free CPU is below the least CPU of any
// frequent one-GPU shape (then no likely task can use its GPUs). The frequent shares are the
// fractional one-GPU shares, heaviest first, until they cover `coverage` of the fractional
// weight, plus whole GPUs. Rare shares are left out on purpose: the 1 % of pods asking 0.16 GPU
// cannot fill the holes of the 13 % asking 0.81, and counting them would call those holes
// fillable. F_n asks "can the next task use this node?"; W_n asks "can the likely tasks use
// all of it?": 0.47 + 0.47 on a GPU leaves w = 0.06, 0.47 + 0.32 leaves w = 0.21.
// (Not part of FGD.)
class HoleWaste {
 public:
  HoleWaste() = default;
  HoleWaste(const Cluster& cluster, std::span<const WeightedShape> shapes, double coverage);

  bool empty() const { return tables_.empty(); }
  // w(R) on a GPU of `model` (-1 or unknown: only shapes with no model constraint count).
  int32_t Unfillable(int model, int32_t free_milli) const;
  // W_n for a node of GPU model `model` with `free_cpu_milli` and per-GPU free shares
  // `free_milli`.
  double NodeHoleWaste(int model, int64_t free_cpu_milli,
                       std::span<const int32_t> free_milli) const;

 private:
  struct PerModel {
    std::vector<int32_t> unfillable;  // w(R), R in 0..kMilliPerGpu
    int64_t min_cpu_milli = 0;        // least CPU of a one-GPU shape whose share is frequent
  };
  const PerModel& Table(int model) const;
  std::vector<PerModel> tables_;  // [model id], the last for nodes of no single model
};

// Cluster-wide fragmentation: sum of F_n(M) and the rate against total free GPU share.
struct ClusterFragmentation {
  double amount_milli = 0;
  double free_milli = 0;
  double rate() const { return free_milli > 0 ? amount_milli / free_milli : 0; }
};
ClusterFragmentation MeasureCluster(const Cluster& cluster, const Workload& workload);

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_FRAGMENTATION_H_
