// The ledger of placements: the only thing that changes a Cluster. Place charges a request to a
// node and its GPUs after checking that it fits; Release gives back exactly what was charged.
// Both are O(GPUs of the request) and allocate only when the ledger grows past its high-water
// mark. Ids of released placements are reused.
//
// REQUIRES external synchronisation; the ledger and its cluster are one unit of state.
#ifndef TESSERA_PLACEMENT_LEDGER_H_
#define TESSERA_PLACEMENT_LEDGER_H_

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "placement/cluster.h"
#include "placement/request.h"

namespace tessera::placement {

// Where a policy wants a request to go.
struct Assignment {
  size_t node = 0;
  GpuChoice gpus;
};

using PlacementId = uint32_t;

struct Placement {
  size_t node = 0;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  int32_t gpu_count = 0;  // as requested; with shared_gpu, tells the pod's kind
  bool shared_gpu = false;
  std::vector<GpuCharge> charges;
};

class Ledger {
 public:
  explicit Ledger(Cluster cluster) : cluster_(std::move(cluster)) {}

  const Cluster& cluster() const { return cluster_; }

  // Charges `request` to the assignment. Fails, changing nothing, when the node or one of the
  // chosen GPUs cannot hold it, or when the GPU choice is malformed (wrong count, duplicates).
  Result<PlacementId> Place(const Request& request, const Assignment& assignment);
  // The same for an already compiled demand (the replay's hot path).
  Result<PlacementId> Place(const Demand& demand, const Assignment& assignment);

  // Gives back what placement `id` was charged. Fails for an unknown or released id.
  Status Release(PlacementId id);

  // REQUIRES: `id` is live.
  const Placement& placement(PlacementId id) const { return placements_[id]; }
  size_t live_placements() const { return live_; }

 private:
  Cluster cluster_;
  std::vector<Placement> placements_;
  std::vector<bool> live_flags_;
  std::vector<PlacementId> free_ids_;
  size_t live_ = 0;
};

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_LEDGER_H_
