// Prometheus's text format (version 0.0.4) and a latency histogram, for every /metrics endpoint
// (tessera-node, tessera-scheduler), so that escaping and histogram series are written one way.
#ifndef TESSERA_COMMON_METRICS_TEXT_H_
#define TESSERA_COMMON_METRICS_TEXT_H_

#include <chrono>
#include <cstdint>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace tessera::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A label value as the text format writes it: \, " and newline escaped.
std::string EscapeLabelValue(const std::string& value);

// Latencies counted in fixed buckets (upper bounds in seconds). Thread-safe.
class LatencyHistogram {
 public:
  explicit LatencyHistogram(std::vector<double> bounds_seconds);

  void Record(std::chrono::nanoseconds latency);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bound, then over every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

class TextWriter {
 public:
  // "# HELP" and "# TYPE" of a family; its samples follow.
  void Family(const std::string& name, const std::string& type, const std::string& help);
  void Sample(const std::string& name, const Labels& labels, double value);
  // NAME_bucket{...,le=...} for each bound and +Inf, NAME_sum and NAME_count.
  void Histogram(const std::string& name, const Labels& labels,
                 const LatencyHistogram::Snapshot& histogram);
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace tessera::metrics

#endif  // TESSERA_COMMON_METRICS_TEXT_H_
