// Scoring policies: given the cluster and a request, where should it go?
//
// Every policy filters the same way (FitsNode), scores each fitting node, and takes the highest
// score; ties go to the node with the smallest tie rank. Tie ranks are a seeded random
// permutation of the nodes (the FGD artifact breaks ties by a randomly prefixed node name), so a
// seed fixes every choice and different seeds explore different ties.
//
//   random        a uniformly random fitting node; a random fitting GPU for fractions
//   spread        the node, then the GPU, with the most free share left (HAMi's spread)
//   binpack       the node, then the GPU, with the least free share left (HAMi's binpack)
//   bestfit       least weighted CPU+GPU leftover after placement, min-max normalised (artifact)
//   dotprod       smallest dot product of free resources and demand (Tetris, artifact)
//   gpupacking    share a shared GPU > open a GPU on a used node > use an empty node (artifact)
//   gpuclustering prefer nodes hosting only pods of the same GPU kind (artifact)
//   fgd           fragmentation gradient descent: least growth of F_n(M) (artifact, quantised)
//   tessera       Tessera's policy: see tessera_policy.cc and docs/placement.md
//   tessera-online the same, learning the workload only from requests already seen
//
// A policy may keep caches keyed by node version, and online policies learn from the requests
// they see, so a policy object belongs to one cluster (and one ledger) for its life.
#ifndef TESSERA_PLACEMENT_POLICY_H_
#define TESSERA_PLACEMENT_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "placement/cluster.h"
#include "placement/fragmentation.h"
#include "placement/ledger.h"
#include "placement/request.h"

namespace tessera::placement {

struct PolicyOptions {
  uint64_t seed = 0;  // tie ranks, and the random policy's draws
  // The target workload M for fgd and tessera (for tessera: the trace's shapes with counts; it
  // derives its own weights). Unused by other policies. Copied by the policy.
  std::vector<ShapeCount> shape_counts;
  // fgd: quantise scores to floor(100 * sigmoid(-delta / 1000)) as the artifact does (true), or
  // take the exact minimum (false).
  bool fgd_quantised = true;
  // fgd: fraction of pods the typical shapes must cover (the artifact uses 0.95).
  double fgd_coverage = 0.95;
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string_view name() const = 0;
  // Where the demand should go, or nullopt when no node fits.
  virtual std::optional<Assignment> Choose(const Cluster& cluster, const Demand& demand) = 0;
  // Told of every request the policy was asked about, placed or not (for online learning).
  virtual void Observe(const Demand& /*demand*/) {}
};

// The names MakePolicy accepts, in the order of the list above.
const std::vector<std::string>& PolicyNames();

// The policy called `name` for `cluster`. Fails on an unknown name.
Result<std::unique_ptr<Policy>> MakePolicy(std::string_view name, const Cluster& cluster,
                                           const PolicyOptions& options);

// Base for policies that score nodes one at a time: filters with FitsNode, scores, and takes
// the highest score, ties to the smallest tie rank; then asks for the GPUs on the winner only.
class ScoringPolicy : public Policy {
 public:
  ScoringPolicy(const Cluster& cluster, uint64_t seed);
  std::optional<Assignment> Choose(const Cluster& cluster, const Demand& demand) override;

 protected:
  // Called once per Choose before any Score.
  virtual void BeginChoose(const Cluster& /*cluster*/, const Demand& /*demand*/) {}
  // Scores a node that FitsNode accepted (higher is better). `hint` is passed back to ChooseGpus
  // if the node wins (e.g. the GPU the score was computed for). False: do not use this node.
  virtual bool Score(const Cluster& cluster, size_t node, const Demand& demand, double* score,
                     int* hint) = 0;
  // The GPUs on the winning node. Default: `hint` as the GPU of a fractional demand when it is
  // >= 0, else ChooseGpusBestFit.
  virtual bool ChooseGpus(const Cluster& cluster, size_t node, const Demand& demand, int hint,
                          GpuChoice* choice);
  // Policies whose scores depend on all fitting nodes (BestFit's min-max normalisation) set
  // this, and Normalise maps the raw scores of all fitting nodes to final scores.
  void set_normalises(bool normalises) { normalises_ = normalises; }
  virtual void Normalise(std::vector<double>& /*scores*/) {}

  const std::vector<uint32_t>& tie_ranks() const { return tie_ranks_; }

 private:
  std::vector<uint32_t> tie_ranks_;
  bool normalises_ = false;
  std::vector<size_t> candidates_;
  std::vector<double> raw_;
  std::vector<int> hints_;
};

// A seeded permutation: ranks[i] is node i's place in the tie order.
std::vector<uint32_t> TieRanks(size_t nodes, uint64_t seed);

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_POLICY_H_
