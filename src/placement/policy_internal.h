// Pieces shared by the policy implementations; not part of the engine's public surface.
#ifndef TESSERA_PLACEMENT_POLICY_INTERNAL_H_
#define TESSERA_PLACEMENT_POLICY_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <random>

#include "placement/policy.h"

namespace tessera::placement {

// A uniform index in [0, n) that is the same on every platform (std::uniform_int_distribution
// is not). REQUIRES: n > 0.
inline size_t UniformIndex(std::mt19937_64& rng, size_t n) {
  // Rejection sampling removes the modulo bias.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return static_cast<size_t>(x % n);
}

std::unique_ptr<Policy> MakeFgdPolicy(const Cluster& cluster, const PolicyOptions& options);
std::unique_ptr<Policy> MakeTesseraPolicy(const Cluster& cluster, const PolicyOptions& options,
                                          bool online);

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_POLICY_INTERNAL_H_
