// How fast jobs progress when they share one GPU's compute. A pure function of the tenants, so
// the model can be read and tested apart from the event loop.
//
// The job model: a job alone on a whole GPU runs for its natural duration D and keeps the GPU
// busy for a fraction b of it (its GPU phases); the rest (1 - b) is host work (compiling,
// loading data, waiting on a simulator) that no GPU speeds up. If its GPU phases run at speed v
// (1 = a whole idle GPU), the job takes (1 - b) D + b D / v: its progress rate is
//     r = 1 / ((1 - b) + b / v).
//
// Host work can be slowed too: when the jobs beside a GPU ask for more CPU cores than the GPU's
// share of the node has, their host phases run at host_speed h < 1, and
//     r = 1 / ((1 - b) / h + b / v).
//
// On a shared GPU (shares, time-slicing) the driver time-slices between the tenants' contexts.
// Tenant i, while in a GPU phase, gets the GPU in proportion to its weight w_i among the tenants
// that are in a GPU phase at the same moment; tenant j is in one with probability
//     p_j = (b_j / v_j) / ((1 - b_j) / h_j + b_j / v_j)    (the share of its wall time)
// so, taking the mean over the others (a mean-field approximation),
//     v_i = min(cap_i, w_i / (w_i + sum_{j != i} w_j p_j)) / slowdown_i.
// cap_i is 1 when idle compute is lent out (work-conserving) and the share itself when the share
// is a hard cap; slowdown_i >= 1 carries the overheads (interception, interference per
// co-tenant). v and p depend on each other; starting from v = cap / slowdown the iteration
// decreases monotonically to the fixed point, which is what ProgressRates returns.
#ifndef TESSERA_SIM_MIX_CONTENTION_H_
#define TESSERA_SIM_MIX_CONTENTION_H_

#include <span>
#include <vector>

namespace tessera::sim::mix {

struct Tenant {
  double busy = 1;        // b, in [0, 1]
  double weight = 1;      // w > 0
  double cap = 1;         // in (0, 1]
  double slowdown = 1;    // >= 1
  double host_speed = 1;  // in (0, 1]
};

// Progress rate of a job whose GPU phases run at speed `gpu_speed` and host phases at
// `host_speed` (both in (0, 1]).
double ProgressRate(double busy, double gpu_speed, double host_speed = 1);

// GPU-phase speed of each tenant at the fixed point (same order as `tenants`).
std::vector<double> GpuPhaseSpeeds(std::span<const Tenant> tenants);

// Progress rate of each tenant (same order as `tenants`), each in (0, 1].
std::vector<double> ProgressRates(std::span<const Tenant> tenants);

}  // namespace tessera::sim::mix

#endif  // TESSERA_SIM_MIX_CONTENTION_H_
