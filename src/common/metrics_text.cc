#include "common/metrics_text.h"

#include <cstdio>

namespace tessera::metrics {

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

LatencyHistogram::LatencyHistogram(std::vector<double> bounds_seconds)
    : bounds_(std::move(bounds_seconds)), counts_(bounds_.size() + 1, 0) {}

void LatencyHistogram::Record(std::chrono::nanoseconds latency) {
  const double seconds = std::chrono::duration<double>(latency).count();
  size_t bucket = 0;
  while (bucket < bounds_.size() && seconds > bounds_[bucket]) ++bucket;
  std::lock_guard lock(mutex_);
  ++counts_[bucket];
  sum_ += seconds;
  ++count_;
}

LatencyHistogram::Snapshot LatencyHistogram::Take() const {
  Snapshot snapshot;
  snapshot.bounds = bounds_;
  std::lock_guard lock(mutex_);
  uint64_t running = 0;
  for (uint64_t count : counts_) {
    running += count;
    snapshot.cumulative.push_back(running);
  }
  snapshot.sum = sum_;
  snapshot.count = count_;
  return snapshot;
}

void TextWriter::Family(const std::string& name, const std::string& type, const std::string& help) {
  out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

void TextWriter::Sample(const std::string& name, const Labels& labels, double value) {
  out_ << name;
  if (!labels.empty()) {
    out_ << '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      out_ << (i ? "," : "") << labels[i].first << "=\"" << EscapeLabelValue(labels[i].second)
           << '"';
    }
    out_ << '}';
  }
  char number[64];
  std::snprintf(number, sizeof number, "%.17g", value);
  out_ << ' ' << number << '\n';
}

void TextWriter::Histogram(const std::string& name, const Labels& labels,
                           const LatencyHistogram::Snapshot& histogram) {
  for (size_t i = 0; i < histogram.cumulative.size(); ++i) {
    char bound[32] = "+Inf";
    if (i < histogram.bounds.size()) std::snprintf(bound, sizeof bound, "%g", histogram.bounds[i]);
    Labels with_bound = labels;
    with_bound.emplace_back("le", bound);
    Sample(name + "_bucket", with_bound, static_cast<double>(histogram.cumulative[i]));
  }
  Sample(name + "_sum", labels, histogram.sum);
  Sample(name + "_count", labels, static_cast<double>(histogram.count));
}

}  // namespace tessera::metrics
