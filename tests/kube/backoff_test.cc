#include "kube/backoff.h"

#include <gtest/gtest.h>

#include <set>

namespace tessera::kube {
namespace {

using std::chrono::milliseconds;

BackoffPolicy Exact(milliseconds initial, double multiplier, milliseconds cap) {
  BackoffPolicy policy;
  policy.initial_delay = initial;
  policy.multiplier = multiplier;
  policy.max_delay = cap;
  policy.jitter = 0;
  policy.deadline = milliseconds(0);
  return policy;
}

TEST(Backoff, GrowsByTheMultiplierUpToTheCap) {
  Backoff backoff(Exact(milliseconds(100), 2.0, milliseconds(500)));
  std::vector<long long> delays;
  for (int i = 0; i < 6; ++i) delays.push_back(backoff.NextDelay(milliseconds(0))->count());
  EXPECT_EQ(delays, (std::vector<long long>{100, 200, 400, 500, 500, 500}));
  EXPECT_EQ(backoff.retries(), 6);
}

TEST(Backoff, JitterShortensEachDelayWithinItsBandAndNeverPassesTheCap) {
  BackoffPolicy policy = Exact(milliseconds(1000), 1.0, milliseconds(1000));
  policy.jitter = 0.5;
  Backoff backoff(policy, /*seed=*/42);
  std::set<long long> seen;
  for (int i = 0; i < 200; ++i) {
    long long delay = backoff.NextDelay(milliseconds(0))->count();
    EXPECT_GE(delay, 500);
    EXPECT_LE(delay, 1000);
    seen.insert(delay);
  }
  EXPECT_GT(seen.size(), 50u) << "jittered delays should differ";
}

TEST(Backoff, TheSameSeedGivesTheSameDelays) {
  BackoffPolicy policy;
  Backoff a(policy, 7), b(policy, 7);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(a.NextDelay(milliseconds(0)), b.NextDelay(milliseconds(0)));
  }
}

TEST(Backoff, RetryAfterIsAFloorAndMayExceedTheCap) {
  Backoff backoff(Exact(milliseconds(100), 2.0, milliseconds(500)));
  EXPECT_EQ(backoff.NextDelay(milliseconds(0), milliseconds(3000)), milliseconds(3000));
  // A shorter Retry-After does not shorten the computed delay (200 after the first 100).
  EXPECT_EQ(backoff.NextDelay(milliseconds(0), milliseconds(10)), milliseconds(200));
}

TEST(Backoff, NoRetryStartsPastTheDeadline) {
  BackoffPolicy policy = Exact(milliseconds(100), 2.0, milliseconds(10'000));
  policy.deadline = milliseconds(1000);
  Backoff backoff(policy);
  EXPECT_EQ(backoff.NextDelay(milliseconds(0)), milliseconds(100));
  EXPECT_EQ(backoff.NextDelay(milliseconds(700)), milliseconds(200));  // retry at 900
  EXPECT_EQ(backoff.NextDelay(milliseconds(700)), std::nullopt);       // would be at 1100
  EXPECT_EQ(backoff.NextDelay(milliseconds(0), milliseconds(2000)), std::nullopt);
}

TEST(Backoff, StopsAfterMaxRetries) {
  BackoffPolicy policy = Exact(milliseconds(1), 1.0, milliseconds(1));
  policy.max_retries = 3;
  Backoff backoff(policy);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(backoff.NextDelay(milliseconds(0)).has_value());
  EXPECT_FALSE(backoff.NextDelay(milliseconds(0)).has_value());
}

TEST(Backoff, ResetStartsOverAtTheInitialDelay) {
  Backoff backoff(Exact(milliseconds(100), 3.0, milliseconds(10'000)));
  backoff.NextDelay(milliseconds(0));
  backoff.NextDelay(milliseconds(0));
  backoff.Reset();
  EXPECT_EQ(backoff.NextDelay(milliseconds(0)), milliseconds(100));
  EXPECT_EQ(backoff.retries(), 1);
}

TEST(ParseRetryAfter, ReadsDeltaSeconds) {
  EXPECT_EQ(ParseRetryAfter("3"), milliseconds(3000));
  EXPECT_EQ(ParseRetryAfter(" 7\r"), milliseconds(7000));
  EXPECT_EQ(ParseRetryAfter("0"), milliseconds(0));
}

TEST(ParseRetryAfter, CapsAtAnHour) {
  EXPECT_EQ(ParseRetryAfter("99999"), milliseconds(3'600'000));
}

TEST(ParseRetryAfter, RefusesAnythingElse) {
  for (const char* value : {"", "-1", "abc", "3s", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT"}) {
    EXPECT_EQ(ParseRetryAfter(value), std::nullopt) << value;
  }
}

TEST(RealClock, SleepEndsEarlyWhenStopped) {
  std::stop_source stop;
  stop.request_stop();
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(Clock::Real().SleepFor(milliseconds(60'000), stop.get_token()));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(Clock::Real().SleepFor(milliseconds(1), {}));
}

}  // namespace
}  // namespace tessera::kube
