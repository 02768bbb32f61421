// Summaries of replays over seeds, and their presentations: a text table, one JSON object, and
// an SVG chart of allocated versus arrived GPU share.
#ifndef TESSERA_SIM_ALIBABA_REPORT_H_
#define TESSERA_SIM_ALIBABA_REPORT_H_

#include <string>
#include <vector>

#include "sim/alibaba/replay.h"

namespace tessera::sim::alibaba {

struct PolicySummary {
  std::string name;
  std::vector<ReplayResult> runs;  // one per seed

  // Mean and sample standard deviation over seeds of unallocated GPU % at `arrived_pct`.
  double UnallocatedMean(int arrived_pct) const;
  double UnallocatedSd(int arrived_pct) const;
  // Mean over seeds of a curve, index = arrived %.
  std::vector<double> MeanCurve(std::vector<double> ReplayResult::*curve) const;
  double MeanSeconds() const;
};

struct VariantReport {
  std::string variant;
  std::vector<PolicySummary> policies;
};

// A table per variant: unallocated % at 100 % and 130 % arrived, fragmentation rate, failures;
// with `detail`, also where the free share sits at 100 % arrived.
std::string FormatText(const std::vector<VariantReport>& reports, bool detail = false);

// One JSON object. For a single variant:
//   {"trace": ..., "variant": ..., "policies": [{"name", "unallocated_pct_mean",
//    "unallocated_pct_sd", "unallocated_130_pct_mean", "frag_rate_pct", "seeds": [...],
//    "curve": {...}}]}
// For several, {"trace": ..., "variant": "all", "variants": [{"variant", "policies"}...]}.
std::string FormatJson(const std::string& trace_path, const std::vector<VariantReport>& reports);

// Allocated vs arrived GPU share per policy (mean over seeds), one panel per variant, with the
// ideal line; a second panel zooms on unallocated % from 80 % to 130 % arrived.
std::string RenderSvg(const std::vector<VariantReport>& reports);

}  // namespace tessera::sim::alibaba

#endif  // TESSERA_SIM_ALIBABA_REPORT_H_
