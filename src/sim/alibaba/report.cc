#include "sim/alibaba/report.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/json.h"
#include "common/strings.h"

namespace tessera::sim::alibaba {

double PolicySummary::UnallocatedMean(int arrived_pct) const {
  if (runs.empty()) return 0;
  double sum = 0;
  for (const ReplayResult& r : runs) sum += r.unallocated_pct(arrived_pct);
  return sum / static_cast<double>(runs.size());
}

double PolicySummary::UnallocatedSd(int arrived_pct) const {
  if (runs.size() < 2) return 0;
  double mean = UnallocatedMean(arrived_pct);
  double squares = 0;
  for (const ReplayResult& r : runs) {
    double d = r.unallocated_pct(arrived_pct) - mean;
    squares += d * d;
  }
  return std::sqrt(squares / static_cast<double>(runs.size() - 1));
}

std::vector<double> PolicySummary::MeanCurve(std::vector<double> ReplayResult::*curve) const {
  std::vector<double> mean(kCurveMaxPercent + 1, 0.0);
  for (const ReplayResult& r : runs) {
    for (int x = 0; x <= kCurveMaxPercent; ++x) mean[x] += (r.*curve)[x];
  }
  for (double& v : mean) v /= std::max<double>(1, static_cast<double>(runs.size()));
  return mean;
}

double PolicySummary::MeanSeconds() const {
  double sum = 0;
  for (const ReplayResult& r : runs) sum += r.seconds;
  return runs.empty() ? 0 : sum / static_cast<double>(runs.size());
}

namespace {

// Summaries carry 4 places, curves 3: the seeds' spread is far wider than that.
double Summary(double value) { return RoundToDecimals(value, 4); }

Json CurveJson(const std::vector<double>& curve) {
  Json out = Json::array();
  for (double value : curve) out.push_back(RoundToDecimals(value, 3));
  return out;
}

Json PoliciesJson(const VariantReport& report) {
  Json policies = Json::array();
  for (const PolicySummary& s : report.policies) {
    const std::vector<double> rate = s.MeanCurve(&ReplayResult::frag_rate_pct);
    Json seeds = Json::array();
    for (const ReplayResult& r : s.runs) {
      seeds.push_back({{"seed", r.seed},
                       {"unallocated_pct", Summary(r.unallocated_pct(100))},
                       {"unallocated_130_pct", Summary(r.unallocated_pct(kCurveMaxPercent))},
                       {"pods", r.pods},
                       {"failed_pods", r.failed.total()}});
    }
    policies.push_back(
        {{"name", s.name},
         {"unallocated_pct_mean", Summary(s.UnallocatedMean(100))},
         {"unallocated_pct_sd", Summary(s.UnallocatedSd(100))},
         {"unallocated_130_pct_mean", Summary(s.UnallocatedMean(kCurveMaxPercent))},
         {"frag_rate_pct",
          {{"50", Summary(rate[50])}, {"80", Summary(rate[80])}, {"90", Summary(rate[90])}}},
         {"seconds_per_run", Summary(s.MeanSeconds())},
         {"seeds", std::move(seeds)},
         {"curve",
          {{"arrived_pct", "0..130"},
           {"allocated_pct", CurveJson(s.MeanCurve(&ReplayResult::allocated_pct))},
           {"frag_amount_pct", CurveJson(s.MeanCurve(&ReplayResult::frag_amount_pct))},
           {"frag_rate_pct", CurveJson(rate)}}}});
  }
  return policies;
}

}  // namespace

std::string FormatText(const std::vector<VariantReport>& reports, bool detail) {
  std::string out;
  for (const VariantReport& report : reports) {
    size_t seeds = report.policies.empty() ? 0 : report.policies[0].runs.size();
    out += Format("trace %s (%zu seed%s): unallocated GPU %% at arrived workload\n",
                  report.variant.c_str(), seeds, seeds == 1 ? "" : "s");
    out += Format("  %-15s %16s %8s %8s %8s   %-20s %-22s %7s\n", "policy", "100% (mean±sd)", "90%",
                  "110%", "130%", "frag rate 50/80/90%", "failed<=100% fr/1g/mg/cpu", "s/run");
    for (const PolicySummary& s : report.policies) {
      std::vector<double> rate = s.MeanCurve(&ReplayResult::frag_rate_pct);
      FailureCounts f;
      for (const ReplayResult& r : s.runs) {
        f.fractional += r.failed_by_full.fractional;
        f.one_gpu += r.failed_by_full.one_gpu;
        f.multi_gpu += r.failed_by_full.multi_gpu;
        f.cpu_only += r.failed_by_full.cpu_only;
      }
      const auto n = static_cast<double>(std::max<size_t>(1, s.runs.size()));
      out += Format(
          "  %-15s %9.2f ± %4.2f %8.2f %8.2f %8.2f   %5.1f /%5.1f /%5.1f    "
          "%5.0f/%5.0f/%4.0f/%4.0f  %7.3f\n",
          s.name.c_str(), s.UnallocatedMean(100), s.UnallocatedSd(100), s.UnallocatedMean(90),
          s.UnallocatedMean(110), s.UnallocatedMean(kCurveMaxPercent), rate[50], rate[80], rate[90],
          f.fractional / n, f.one_gpu / n, f.multi_gpu / n, f.cpu_only / n, s.MeanSeconds());
    }
    if (!detail) continue;
    out +=
        "  free GPUs at 100 % arrived (mean): whole on nodes with CPU / without CPU, holes "
        "<0.2 / 0.2-0.6 / >0.6\n";
    for (const PolicySummary& s : report.policies) {
      StrandedShare m;
      for (const ReplayResult& r : s.runs) {
        m.whole_with_cpu += r.stranded_at_full.whole_with_cpu;
        m.whole_without_cpu += r.stranded_at_full.whole_without_cpu;
        m.holes_below_200 += r.stranded_at_full.holes_below_200;
        m.holes_200_to_600 += r.stranded_at_full.holes_200_to_600;
        m.holes_above_600 += r.stranded_at_full.holes_above_600;
      }
      const auto n = static_cast<double>(std::max<size_t>(1, s.runs.size()));
      out += Format("  %-15s %6.1f / %6.1f   %6.1f / %6.1f / %6.1f\n", s.name.c_str(),
                    m.whole_with_cpu / n, m.whole_without_cpu / n, m.holes_below_200 / n,
                    m.holes_200_to_600 / n, m.holes_above_600 / n);
    }
  }
  return out;
}

std::string FormatJson(const std::string& trace_path, const std::vector<VariantReport>& reports) {
  Json out = {{"trace", trace_path}};
  if (reports.size() == 1) {
    out["variant"] = reports[0].variant;
    out["policies"] = PoliciesJson(reports[0]);
  } else {
    out["variant"] = "all";
    Json variants = Json::array();
    for (const VariantReport& report : reports) {
      variants.push_back({{"variant", report.variant}, {"policies", PoliciesJson(report)}});
    }
    out["variants"] = std::move(variants);
  }
  return WriteJson(out, JsonLayout::kOneLine) + "\n";
}

namespace {

constexpr const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

// One chart in a box at (x0, y0) of size w x h, data range [x_lo,x_hi] x [y_lo,y_hi].
struct Frame {
  double x0, y0, w, h, x_lo, x_hi, y_lo, y_hi;
  double X(double x) const { return x0 + (x - x_lo) / (x_hi - x_lo) * w; }
  double Y(double y) const {
    return y0 + h - (std::clamp(y, y_lo, y_hi) - y_lo) / (y_hi - y_lo) * h;
  }
};

std::string Axes(const Frame& f, const std::string& title, const std::string& y_label,
                 double x_step, double y_step) {
  std::string out =
      Format("<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#444'/>\n",
             f.x0, f.y0, f.w, f.h);
  out += Format("<text x='%.1f' y='%.1f' font-size='14' text-anchor='middle'>%s</text>\n",
                f.x0 + f.w / 2, f.y0 - 10, title.c_str());
  for (double x = f.x_lo; x <= f.x_hi + 1e-9; x += x_step) {
    out += Format(
        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
        "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%g</text>\n",
        f.X(x), f.y0, f.X(x), f.y0 + f.h, f.X(x), f.y0 + f.h + 14, x);
  }
  for (double y = f.y_lo; y <= f.y_hi + 1e-9; y += y_step) {
    out += Format(
        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
        "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%g</text>\n",
        f.x0, f.Y(y), f.x0 + f.w, f.Y(y), f.x0 - 4, f.Y(y) + 4, y);
  }
  out += Format(
      "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>arrived workload "
      "(%% of cluster GPUs)</text>\n",
      f.x0 + f.w / 2, f.y0 + f.h + 32);
  out += Format(
      "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle' "
      "transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
      f.x0 - 38, f.y0 + f.h / 2, f.x0 - 38, f.y0 + f.h / 2, y_label.c_str());
  return out;
}

std::string Polyline(const Frame& f, const std::vector<double>& ys, int from, int to,
                     const char* colour, bool unallocated) {
  std::string points;
  for (int x = from; x <= to; ++x) {
    double y = unallocated ? 100 - ys[x] : ys[x];
    points += Format("%.1f,%.1f ", f.X(x), f.Y(y));
  }
  return Format("<polyline fill='none' stroke='%s' stroke-width='1.8' points='%s'/>\n", colour,
                points.c_str());
}

}  // namespace

std::string RenderSvg(const std::vector<VariantReport>& reports) {
  const double panel_w = 420;
  const double panel_h = 300;
  const double row_h = panel_h + 110;
  const double width = 2 * panel_w + 260;
  const double height = row_h * static_cast<double>(reports.size()) + 20;
  std::string out = Format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
      "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
      width, height);
  for (size_t v = 0; v < reports.size(); ++v) {
    const VariantReport& report = reports[v];
    const double top = 40 + row_h * static_cast<double>(v);
    Frame full{70, top, panel_w, panel_h, 0, kCurveMaxPercent, 0, 100};
    // The zoom's y range adapts to the worst policy at 100 % arrived.
    double worst = 5;
    for (const PolicySummary& s : report.policies) worst = std::max(worst, s.UnallocatedMean(100));
    double y_hi = std::ceil(worst * 1.3 / 5) * 5;
    Frame zoom{70 + panel_w + 90, top, panel_w, panel_h, 80, kCurveMaxPercent, 0, y_hi};
    out +=
        Axes(full, "trace " + report.variant + ": GPU allocated", "allocated (% of GPUs)", 10, 10);
    out += Axes(zoom, "trace " + report.variant + ": GPU unallocated", "unallocated (% of GPUs)",
                10, y_hi / 5);
    out += Format(
        "<polyline fill='none' stroke='#999' stroke-dasharray='4 3' "
        "points='%.1f,%.1f %.1f,%.1f %.1f,%.1f'/>\n",
        full.X(0), full.Y(0), full.X(100), full.Y(100), full.X(kCurveMaxPercent), full.Y(100));
    for (size_t p = 0; p < report.policies.size(); ++p) {
      const PolicySummary& s = report.policies[p];
      const char* colour = kColours[p % (sizeof(kColours) / sizeof(kColours[0]))];
      std::vector<double> curve = s.MeanCurve(&ReplayResult::allocated_pct);
      out += Polyline(full, curve, 0, kCurveMaxPercent, colour, false);
      out += Polyline(zoom, curve, 80, kCurveMaxPercent, colour, true);
      const double ly = top + 12 + 18 * static_cast<double>(p);
      const double lx = zoom.x0 + zoom.w + 15;
      out += Format(
          "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' "
          "stroke-width='3'/><text x='%.1f' y='%.1f' font-size='12'>%s %.2f%%</text>\n",
          lx, ly, lx + 18, ly, colour, lx + 24, ly + 4, s.name.c_str(), s.UnallocatedMean(100));
    }
  }
  return out + "</svg>\n";
}

}  // namespace tessera::sim::alibaba
