// `tessera sim mix`: parses the flags, loads the scenario, runs the strategies or the sweep.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "common/units.h"
#include "sim/mix/report.h"
#include "sim/mix/scenario.h"
#include "sim/mix/simulator.h"
#include "sim/sim_command.h"

namespace tessera::sim {
namespace {

constexpr const char* kUsage =
    "usage: tessera sim mix [--scenario NAME|PATH] [--strategy A,B,...] [--seed N]\n"
    "                       [--sweep-partition] [--json]\n"
    "\n"
    "Replays a workload mix (job classes with arrival rates, durations, GPU memory and busy\n"
    "fractions) on a cluster under several sharing strategies, and reports per class and per\n"
    "strategy: GPU-hours held, utilisation of the GPU time held, queue time, stretch (how much\n"
    "longer jobs ran than alone on a whole GPU) and the makespan.\n"
    "\n"
    "  --scenario NAME|PATH  a built-in scenario (nio, the default) or a .yaml/.json file;\n"
    "                        docs/sim-mix.md describes the format and the model\n"
    "  --strategy LIST       strategies of the scenario to run, comma-separated (default: all;\n"
    "                        the first is the baseline of the GPU-hours change column)\n"
    "  --seed N              seed of the arrivals (default: the scenario's)\n"
    "  --sweep-partition     instead: throughput against partition size (1/k of a GPU) under a\n"
    "                        backlog that never empties, with the scenario's overhead model\n"
    "  --json                machine-readable output\n"
    "  -h, --help            this text\n"
    "\n"
    "example: tessera sim mix --scenario nio --strategy whole,shares,hybrid\n";

struct Options {
  std::string scenario = "nio";
  std::vector<std::string> strategies;
  bool has_seed = false;
  uint64_t seed = 0;
  bool json = false;
  bool sweep = false;
};

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tessera sim mix: %s\n\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int RunMixCommand(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_value = false;
    if (size_t equals = arg.find('='); arg.starts_with("--") && equals != std::string_view::npos) {
      value = arg.substr(equals + 1);
      arg = arg.substr(0, equals);
      has_value = true;
    }
    auto take_value = [&](std::string_view flag) -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      (void)flag;
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--json" && !has_value) {
      options.json = true;
    } else if (arg == "--sweep-partition" && !has_value) {
      options.sweep = true;
    } else if (arg == "--scenario") {
      if (!take_value(arg) || value.empty()) return UsageError("--scenario needs a name or a path");
      options.scenario = value;
    } else if (arg == "--strategy") {
      if (!take_value(arg)) return UsageError("--strategy needs a list like whole,shares");
      options.strategies.clear();
      for (std::string_view name : Split(value, ',')) options.strategies.emplace_back(name);
    } else if (arg == "--seed") {
      if (!take_value(arg)) return UsageError("--seed needs a number");
      Result<uint64_t> seed = ParseUnsigned(value, "--seed", 0, UINT64_MAX);
      if (!seed.ok()) return UsageError(seed.status().message());
      options.seed = *seed;
      options.has_seed = true;
    } else {
      return UsageError("unknown option \"" + std::string(arg) + "\"");
    }
  }

  Result<mix::Scenario> scenario = mix::LoadScenario(options.scenario);
  if (!scenario.ok()) {
    std::fprintf(stderr, "tessera sim mix: %s\n", scenario.status().message().c_str());
    return 1;
  }
  mix::MixReport report;
  report.scenario = &*scenario;
  report.seed = options.has_seed ? options.seed : scenario->seed;

  if (options.sweep) {
    report.sweep = mix::SweepPartitions(*scenario, report.seed);
  } else {
    std::vector<int> chosen;
    if (options.strategies.empty()) {
      for (size_t s = 0; s < scenario->strategies.size(); ++s)
        chosen.push_back(static_cast<int>(s));
    }
    for (const std::string& name : options.strategies) {
      const int index = scenario->StrategyIndex(name);
      if (index < 0) {
        std::string known;
        for (const mix::Strategy& strategy : scenario->strategies) {
          known += (known.empty() ? "" : ", ") + strategy.name;
        }
        return UsageError("--strategy: scenario " + scenario->name + " has no strategy \"" + name +
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

}  // namespace tessera::sim
