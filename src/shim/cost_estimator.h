// What one launch of a kernel (or a CUDA graph) costs in device time, learned from measurements.
//
// A measurement is the time between two events recorded around the launch on its stream. On a
// shared GPU it includes waiting behind other containers' kernels, so it is never below the cost:
// the estimate is the minimum of the last kSamples measurements, which follows a cost that
// shrinks at once and one that grows after kSamples launches. (When every measurement waited,
// as for a small share next to a saturating neighbour, the estimate stays high and the container
// gets somewhat less than its share: docs/limiter.md.)
// REQUIRES: external synchronization.
#ifndef TESSERA_SHIM_COST_ESTIMATOR_H_
#define TESSERA_SHIM_COST_ESTIMATOR_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <unordered_map>

namespace tessera::shim {

class CostEstimator {
 public:
  static constexpr int kSamples = 64;  // at 1,000 launches/s, 64 ms of history

  // The estimated cost of `key` (a CUfunction or CUgraphExec), or nullopt before any sample.
  std::optional<int64_t> Estimate(uintptr_t key) const {
    auto found = samples_.find(key);
    if (found == samples_.end()) return std::nullopt;
    return found->second.minimum;
  }

  // Adds a measurement of `key` and returns the new estimate.
  int64_t AddSample(uintptr_t key, int64_t measured_ns) {
    Samples& samples = samples_[key];
    int64_t evicted = samples.values[samples.next];
    int64_t sample = std::max<int64_t>(measured_ns, 0);
    samples.values[samples.next] = sample;
    samples.next = (samples.next + 1) % kSamples;
    bool full = samples.count == kSamples;
    samples.count = std::min(samples.count + 1, kSamples);
    // The minimum is kept up to date; it is recomputed only when the evicted sample was it.
    if (samples.count == 1 || sample <= samples.minimum) {
      samples.minimum = sample;
    } else if (full && evicted == samples.minimum) {
      samples.minimum = *std::min_element(samples.values, samples.values + samples.count);
    }
    return samples.minimum;
  }

  void Forget(uintptr_t key) { samples_.erase(key); }
  void Clear() { samples_.clear(); }

 private:
  struct Samples {
    int64_t values[kSamples] = {};
    int count = 0;
    int next = 0;
    int64_t minimum = 0;
  };
  std::unordered_map<uintptr_t, Samples> samples_;
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_COST_ESTIMATOR_H_
