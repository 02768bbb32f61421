#include "common/random.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace tessera {
namespace {

// The draws are part of every simulation's reproducibility: a seed gives these indexes on every
// platform. A change to the draw changes recorded figures, and must be made on purpose.
TEST(UniformIndex, GivesTheSameIndexesForASeedEverywhere) {
  std::mt19937_64 rng(42);  // the standard fixes mt19937_64's output exactly
  std::vector<size_t> drawn;
  for (int i = 0; i < 8; ++i) drawn.push_back(UniformIndex(rng, 10));
  EXPECT_EQ(drawn, (std::vector<size_t>{6, 4, 0, 2, 1, 8, 6, 4}));
}

TEST(UniformIndex, RejectsTheBiasedTailOfTheStream) {
  // n = 2^63 + 1: the limit is 2^63 + 1 and about half of all 64-bit values are redrawn, so the
  // result differs from a plain modulo for the first value at or above the limit.
  const size_t n = (size_t{1} << 63) + 1;
  std::mt19937_64 rng(7);
  std::mt19937_64 raw(7);
  for (int i = 0; i < 64; ++i) {
    const uint64_t x = raw();
    if (x >= n) {
      std::mt19937_64 copy = rng;
      EXPECT_NE(UniformIndex(copy, n), static_cast<size_t>(x % n));
      return;
    }
    EXPECT_EQ(UniformIndex(rng, n), static_cast<size_t>(x));
  }
  FAIL() << "no value of the stream reached the rejected tail";
}

TEST(UniformIndex, StaysBelowN) {
  std::mt19937_64 rng(1);
  for (size_t n = 1; n < 50; ++n) EXPECT_LT(UniformIndex(rng, n), n);
}

}  // namespace
}  // namespace tessera
