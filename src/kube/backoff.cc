#include "kube/backoff.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <mutex>

namespace tessera::kube {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed)
    : policy_(policy), random_(seed), next_ms_(static_cast<double>(policy.initial_delay.count())) {}

void Backoff::Reset() {
  next_ms_ = static_cast<double>(policy_.initial_delay.count());
  retries_ = 0;
}

std::optional<Milliseconds> Backoff::NextDelay(Milliseconds elapsed,
                                               std::optional<Milliseconds> retry_after) {
  if (policy_.max_retries > 0 && retries_ >= policy_.max_retries) return std::nullopt;
  double cap = static_cast<double>(policy_.max_delay.count());
  double base = std::min(next_ms_, cap);
  double jitter = std::clamp(policy_.jitter, 0.0, 1.0);
  double factor = 1.0 - jitter * std::uniform_real_distribution<double>(0.0, 1.0)(random_);
  Milliseconds delay(static_cast<int64_t>(base * factor));
  if (retry_after && *retry_after > delay) delay = *retry_after;
  if (policy_.deadline.count() > 0 && elapsed + delay > policy_.deadline) return std::nullopt;
  next_ms_ = std::min(next_ms_ * std::max(policy_.multiplier, 1.0), cap);
  ++retries_;
  return delay;
}

std::optional<Milliseconds> ParseRetryAfter(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r')) {
    value.remove_suffix(1);
  }
  int64_t seconds = 0;
  auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (value.empty() || error != std::errc() || end != value.data() + value.size() || seconds < 0) {
    return std::nullopt;
  }
  return Milliseconds(std::min<int64_t>(seconds, 3600) * 1000);
}

namespace {

class RealClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override { return std::chrono::steady_clock::now(); }

  bool SleepFor(Milliseconds delay, std::stop_token stop) override {
    std::mutex mutex;
    std::condition_variable_any woken;
    std::unique_lock lock(mutex);
    // Nothing notifies `woken`: the wait ends at the deadline or when `stop` is requested.
    woken.wait_for(lock, stop, delay, [] { return false; });
    return !stop.stop_requested();
  }
};

}  // namespace

Clock& Clock::Real() {
  static RealClock* clock = new RealClock();  // never destroyed: usable from any thread at exit
  return *clock;
}

}  // namespace tessera::kube
