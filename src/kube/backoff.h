// When to try again: exponential backoff with jitter, a cap on each delay and a total deadline,
// honouring a server's Retry-After. Also the clock the client waits on, so that tests can run
// retries without waiting.
#ifndef TESSERA_KUBE_BACKOFF_H_
#define TESSERA_KUBE_BACKOFF_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <stop_token>
#include <string_view>

namespace tessera::kube {

using Milliseconds = std::chrono::milliseconds;

struct BackoffPolicy {
  Milliseconds initial_delay{200};
  double multiplier = 2.0;
  Milliseconds max_delay{10'000};  // no computed delay is longer (a Retry-After may be)
  // Each delay is drawn from [(1 - jitter) * d, d], so that clients that failed together do not
  // retry together. 0 makes delays exact.
  double jitter = 0.2;
  // No retry starts later than this after the first attempt; 0 means no deadline.
  Milliseconds deadline{30'000};
  int max_retries = 0;  // 0 means no limit but the deadline
};

// The delays of one sequence of retries. Not thread-safe: one per operation.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy, uint64_t seed = std::random_device{}());

  // The wait before the next attempt, `elapsed` after the first began; nullopt when that attempt
  // would start past the deadline or the retries are used up. A Retry-After from the server is a
  // floor for the delay.
  std::optional<Milliseconds> NextDelay(Milliseconds elapsed,
                                        std::optional<Milliseconds> retry_after = std::nullopt);

  // Starts over at initial_delay (after an attempt that made progress).
  void Reset();

  int retries() const { return retries_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  std::mt19937_64 random_;
  double next_ms_;
  int retries_ = 0;
};

// A Retry-After header's value in delta-seconds ("3"); nullopt for anything else (the HTTP-date
// form is not used by the apiserver). Capped at an hour.
std::optional<Milliseconds> ParseRetryAfter(std::string_view value);

// Time and waiting, where the environment enters.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  // Waits `delay`; returns false, early, when `stop` is requested.
  virtual bool SleepFor(Milliseconds delay, std::stop_token stop) = 0;

  // The process's steady clock.
  static Clock& Real();
};

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_BACKOFF_H_
