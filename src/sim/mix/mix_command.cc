// `tessera sim mix`: parses the flags, loads the scenario, runs the strategies or the sweep.
#include <cstdio>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/strings.h"
#include "sim/mix/report.h"
#include "sim/mix/scenario.h"
#include "sim/mix/simulator.h"
#include "sim/sim_command.h"

namespace tessera::sim {
namespace {

constexpr const char* kCommand = "tessera sim mix";

// Everything `tessera sim mix` runs with, checked as far as it can be without the scenario.
struct MixOptions {
  std::string scenario = "nio";
  std::vector<std::string> strategies;  // empty: all of the scenario's
  bool has_seed = false;
  uint64_t seed = 0;
  bool sweep = false;
  bool json = false;
  std::string help;  // set: --help was asked for; print it and run nothing
};

Result<MixOptions> ParseMixOptions(int argc, char** argv) {
  MixOptions options;
  std::string strategy_arg;
  CLI::App app{
      "Replays a workload mix (job classes with arrival rates, durations, GPU memory and busy "
      "fractions) on a cluster under several sharing strategies, placing every job with the "
      "placement engine tessera-scheduler runs, and reports per class and per strategy: GPU-hours "
      "held, utilisation of the GPU time held, queue time, stretch (how much longer jobs ran than "
      "alone on a whole GPU) and the makespan.",
      kCommand};
  app.footer("example:\n  tessera sim mix --scenario nio --strategy whole,shares,hybrid");
  app.add_option("--scenario", options.scenario,
                 "a built-in scenario (nio) or a .yaml/.json file; docs/sim-mix.md describes the "
                 "format and the model")
      ->capture_default_str();
  app.add_option("--strategy", strategy_arg,
                 "strategies of the scenario to run, comma-separated (default: all; the first is "
                 "the baseline of the GPU-hours change column)");
  app.add_option("--seed", options.seed,
                 "seed of the arrivals and of the placement policy's tie ranks (default: the "
                 "scenario's)");
  app.add_flag("--sweep-partition", options.sweep,
               "instead: throughput against partition size (1/k of a GPU) under a backlog that "
               "never empties, with the scenario's overhead model");
  app.add_flag("--json", options.json, "machine-readable output");
  if (Status parsed = ParseCommandLine(app, argc, argv, &options.help); !parsed.ok()) {
    return parsed;
  }
  if (!options.help.empty()) return options;
  if (options.scenario.empty()) return Status::Error("--scenario: needs a name or a path");
  options.has_seed = app.count("--seed") > 0;
  if (app.count("--strategy") > 0) {
    for (std::string_view name : Split(strategy_arg, ',')) {
      if (name.empty()) {
        return Status::Error("--strategy: \"" + strategy_arg +
                             "\" has an empty name; give a list like whole,shares");
      }
      options.strategies.emplace_back(name);
    }
  }
  return options;
}

int RunMix(const MixOptions& options) {
  Result<mix::Scenario> scenario = mix::LoadScenario(options.scenario);
  if (!scenario.ok()) {
    std::fprintf(stderr, "%s: %s\n", kCommand, scenario.status().message().c_str());
    return 1;
  }
  // One seed for the arrivals and the policy's tie ranks (the simulator takes the latter from
  // the scenario).
  if (options.has_seed) scenario->seed = options.seed;
  mix::MixReport report;
  report.scenario = &*scenario;
  report.seed = scenario->seed;

  if (options.sweep) {
    report.sweep = mix::SweepPartitions(*scenario, report.seed);
  } else {
    std::vector<int> chosen;
    if (options.strategies.empty()) {
      for (size_t s = 0; s < scenario->strategies.size(); ++s) {
        chosen.push_back(static_cast<int>(s));
      }
    }
    for (const std::string& name : options.strategies) {
      const int index = scenario->StrategyIndex(name);
      if (index < 0) {
        std::string known;
        for (const mix::Strategy& strategy : scenario->strategies) {
          known += (known.empty() ? "" : ", ") + strategy.name;
        }
        return ReportUsageError(kCommand, "--strategy: scenario " + scenario->name +
                                              " has no strategy \"" + name +
                                              "\" (it has: " + known + ")");
      }
      chosen.push_back(index);
    }
    const std::vector<mix::Job> jobs = mix::GenerateJobs(*scenario, report.seed);
    for (int index : chosen) {
      report.strategies.push_back(
          mix::SimulateStrategy(*scenario, scenario->strategies[index], jobs));
    }
  }
  const std::string text = options.json ? mix::FormatJson(report) : mix::FormatText(report);
  std::fputs(text.c_str(), stdout);
  return 0;
}

}  // namespace

int RunMixCommand(int argc, char** argv) {
  return RunCommandLine(kCommand, argc, argv, ParseMixOptions, RunMix);
}

}  // namespace tessera::sim
