#include "shim/cost_estimator.h"

#include <gtest/gtest.h>

namespace tessera::shim {
namespace {

TEST(CostEstimator, KnowsNothingBeforeTheFirstMeasurement) {
  CostEstimator estimator;
  EXPECT_FALSE(estimator.Estimate(1).has_value());
  EXPECT_EQ(estimator.AddSample(1, 500), 500);
  EXPECT_EQ(estimator.Estimate(1), 500);
  EXPECT_FALSE(estimator.Estimate(2).has_value()) << "each function has its own";
}

TEST(CostEstimator, WaitingBehindOthersDoesNotInflateTheEstimate) {
  CostEstimator estimator;
  // A 1 ms kernel that mostly queued behind another container's work.
  for (int64_t measured : {2'400'000, 1'000'000, 2'900'000, 1'700'000, 2'000'000}) {
    estimator.AddSample(7, measured);
  }
  EXPECT_EQ(estimator.Estimate(7), 1'000'000);
}

TEST(CostEstimator, FollowsACostThatShrinksAtOnce) {
  CostEstimator estimator;
  for (int i = 0; i < CostEstimator::kSamples; ++i) estimator.AddSample(3, 1'000'000);
  EXPECT_EQ(estimator.AddSample(3, 200'000), 200'000);
}

TEST(CostEstimator, FollowsACostThatGrowsAfterKSamplesLaunches) {
  CostEstimator estimator;
  for (int i = 0; i < CostEstimator::kSamples; ++i) estimator.AddSample(3, 100'000);
  for (int i = 0; i < CostEstimator::kSamples - 1; ++i) {
    EXPECT_EQ(estimator.AddSample(3, 900'000), 100'000);
  }
  EXPECT_EQ(estimator.AddSample(3, 900'000), 900'000);
}

TEST(CostEstimator, TheMinimumIsTheSmallestOfExactlyTheLastKSamples) {
  CostEstimator estimator;
  // A falling then rising sequence: the minimum leaves the window and the next smallest takes over.
  for (int i = 0; i < CostEstimator::kSamples; ++i) {
    estimator.AddSample(9, 1000 - i);
  }
  int64_t smallest = 1000 - (CostEstimator::kSamples - 1);
  EXPECT_EQ(estimator.Estimate(9), smallest);
  for (int i = 0; i < CostEstimator::kSamples - 1; ++i) estimator.AddSample(9, 5000);
  EXPECT_EQ(estimator.Estimate(9), smallest) << "still inside the window";
  EXPECT_EQ(estimator.AddSample(9, 5000), 5000) << "every smaller sample has left";
}

TEST(CostEstimator, NegativeMeasurementsCountAsZero) {
  CostEstimator estimator;
  EXPECT_EQ(estimator.AddSample(4, -5), 0);
}

}  // namespace
}  // namespace tessera::shim
