// Draws that are the same on every platform and standard library, for reproducible simulations
// (std::uniform_int_distribution and friends are implementation-defined).
#ifndef TESSERA_COMMON_RANDOM_H_
#define TESSERA_COMMON_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <random>

namespace tessera {

// A uniform index in [0, n). Rejection sampling removes the modulo bias. REQUIRES: n > 0.
inline size_t UniformIndex(std::mt19937_64& rng, size_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return static_cast<size_t>(x % n);
}

}  // namespace tessera

#endif  // TESSERA_COMMON_RANDOM_H_
