#include "sim/mix/report.h"

#include <utility>

#include "common/json.h"
#include "common/strings.h"

namespace tessera::sim::mix {
namespace {

std::string Percent(double fraction) { return Format("%.1f %%", 100 * fraction); }

std::string Change(double from, double to) {
  if (from <= 0) return "";
  return Format("%+.1f %%", 100 * (to - from) / from);
}

// Six significant digits: the simulation's own noise is far larger.
double Number(double value) { return RoundToSignificantDigits(value, 6); }

std::string SweepText(const MixReport& report) {
  const Scenario& scenario = *report.scenario;
  std::string classes;
  for (int c : scenario.sweep.classes) {
    classes += (classes.empty() ? "" : ", ") + scenario.classes[c].name;
  }
  std::string out = Format(
      "partition sweep: %d nodes x %d GPUs cut into equal partitions (memory and compute), "
      "classes %s;\n  a backlog that never empties (strict FIFO, mix as the arrival rates), "
      "%.0f h measured after %.0f h warm-up\n\n",
      scenario.sweep.nodes, scenario.gpus_per_node, classes.c_str(), scenario.sweep.hours,
      scenario.sweep.warmup_hours);
  out += "  partition   jobs/h   useful GPU-h/h   mean stretch   jobs per busy GPU\n";
  const int best = BestSweepIndex(report.sweep);
  for (size_t i = 0; i < report.sweep.size(); ++i) {
    const SweepPoint& point = report.sweep[i];
    out += Format("  1/%-8d %7.1f   %14.1f   %12.2f   %17.2f%s\n", point.denominator,
                  point.jobs_per_hour, point.useful_gpu_hours_per_hour, point.mean_stretch,
                  point.mean_jobs_per_busy_gpu,
                  static_cast<int>(i) == best ? "   <- most jobs/h" : "");
  }
  return out;
}

}  // namespace

int BestSweepIndex(const std::vector<SweepPoint>& sweep) {
  int best = -1;
  for (size_t i = 0; i < sweep.size(); ++i) {
    if (best < 0 || sweep[i].jobs_per_hour > sweep[best].jobs_per_hour) best = static_cast<int>(i);
  }
  return best;
}

std::string FormatText(const MixReport& report) {
  const Scenario& scenario = *report.scenario;
  std::string out = Format(
      "tessera sim mix: scenario %s: %d nodes x %d GPUs = %d GPUs of %.0f GiB, %.0f h of "
      "arrivals, seed %llu\n\n",
      scenario.name.c_str(), scenario.nodes, scenario.gpus_per_node, scenario.gpus(),
      scenario.gpu_memory_gib, scenario.hours, static_cast<unsigned long long>(report.seed));
  if (!report.sweep.empty()) return out + SweepText(report);

  for (const StrategyStats& stats : report.strategies) {
    const Strategy& strategy = scenario.strategies[scenario.StrategyIndex(stats.strategy)];
    out += "strategy " + stats.strategy + ": " + strategy.description + "\n";
    out += "  pools:";
    for (const Pool& pool : strategy.pools) {
      out += Format(" %s (%s, %d nodes)", pool.name.c_str(),
                    std::string(PoolModeName(pool.mode)).c_str(), pool.nodes);
    }
    out +=
        "\n  class          jobs   GPU-hours  utilisation  queue mean  queue p95  stretch  "
        "killed\n";
    for (const ClassStats& c : stats.classes) {
      out += Format("  %-11s %7d %11.0f %11s %9.2f h %8.2f h %8.2f %7d\n", c.name.c_str(), c.jobs,
                    c.held_gpu_hours, Percent(c.Utilisation()).c_str(), c.mean_queue_hours,
                    c.p95_queue_hours, c.mean_stretch, c.failed_attempts);
    }
    out +=
        Format("  all                 %11.0f %11s   cluster utilisation %s, makespan %.1f h\n",
               stats.HeldGpuHours(), Percent(stats.UsefulGpuHours() / stats.HeldGpuHours()).c_str(),
               Percent(stats.ClusterUtilisation()).c_str(), stats.makespan_hours);
    if (stats.unfinished_jobs > 0) {
      out +=
          Format("  WARNING: %d jobs had not finished at the safety stop\n", stats.unfinished_jobs);
    }
    out += "\n";
  }

  // Class x strategy views: what the issue asks to see side by side.
  const StrategyStats& baseline = report.strategies.front();
  out += "utilisation of held GPU time (useful GPU-hours / GPU-hours held), by class\n";
  out += Format("  %-11s", "class");
  for (const StrategyStats& stats : report.strategies) {
    out += Format(" %13s", stats.strategy.c_str());
  }
  out += "\n";
  for (size_t c = 0; c < scenario.classes.size(); ++c) {
    out += Format("  %-11s", scenario.classes[c].name.c_str());
    for (const StrategyStats& stats : report.strategies) {
      out += Format(" %13s", Percent(stats.classes[c].Utilisation()).c_str());
    }
    out += "\n";
  }
  out += "\nGPU-hours held, by class (change against " + baseline.strategy + ")\n";
  out += Format("  %-11s", "class");
  for (const StrategyStats& stats : report.strategies) {
    out += Format(" %17s", stats.strategy.c_str());
  }
  out += "\n";
  for (size_t c = 0; c < scenario.classes.size(); ++c) {
    out += Format("  %-11s", scenario.classes[c].name.c_str());
    for (const StrategyStats& stats : report.strategies) {
      const double hours = stats.classes[c].held_gpu_hours;
      const std::string change =
          &stats == &baseline ? std::string() : Change(baseline.classes[c].held_gpu_hours, hours);
      out += Format(" %8.0f %8s", hours, change.c_str());
    }
    out += "\n";
  }
  out += Format("  %-11s", "all");
  for (const StrategyStats& stats : report.strategies) {
    const std::string change =
        &stats == &baseline ? std::string() : Change(baseline.HeldGpuHours(), stats.HeldGpuHours());
    out += Format(" %8.0f %8s", stats.HeldGpuHours(), change.c_str());
  }
  out += "\n";
  return out;
}

std::string FormatJson(const MixReport& report) {
  const Scenario& scenario = *report.scenario;
  Json strategies = Json::array();
  for (const StrategyStats& stats : report.strategies) {
    Json classes = Json::array();
    for (const ClassStats& cls : stats.classes) {
      classes.push_back({{"name", cls.name},
                         {"jobs", cls.jobs},
                         {"completed", cls.completed},
                         {"killed_attempts", cls.failed_attempts},
                         {"held_gpu_hours", Number(cls.held_gpu_hours)},
                         {"useful_gpu_hours", Number(cls.useful_gpu_hours)},
                         {"utilisation", Number(cls.Utilisation())},
                         {"mean_queue_hours", Number(cls.mean_queue_hours)},
                         {"p95_queue_hours", Number(cls.p95_queue_hours)},
                         {"mean_stretch", Number(cls.mean_stretch)}});
    }
    strategies.push_back({{"name", stats.strategy},
                          {"makespan_hours", Number(stats.makespan_hours)},
                          {"held_gpu_hours", Number(stats.HeldGpuHours())},
                          {"useful_gpu_hours", Number(stats.UsefulGpuHours())},
                          {"cluster_utilisation", Number(stats.ClusterUtilisation())},
                          {"unfinished_jobs", stats.unfinished_jobs},
                          {"classes", std::move(classes)}});
  }
  Json sweep = Json::array();
  for (const SweepPoint& point : report.sweep) {
    sweep.push_back({{"partition", "1/" + std::to_string(point.denominator)},
                     {"denominator", point.denominator},
                     {"jobs_per_hour", Number(point.jobs_per_hour)},
                     {"useful_gpu_hours_per_hour", Number(point.useful_gpu_hours_per_hour)},
                     {"mean_stretch", Number(point.mean_stretch)},
                     {"mean_jobs_per_busy_gpu", Number(point.mean_jobs_per_busy_gpu)}});
  }
  const Json out = {{"scenario", scenario.name},
                    {"seed", report.seed},
                    {"gpus", scenario.gpus()},
                    {"hours", Number(scenario.hours)},
                    {"strategies", std::move(strategies)},
                    {"sweep", std::move(sweep)}};
  return WriteJson(out, JsonLayout::kIndented) + "\n";
}

}  // namespace tessera::sim::mix
