// Renders the results of `tessera sim mix` as text for people or JSON for programs.
#ifndef TESSERA_SIM_MIX_REPORT_H_
#define TESSERA_SIM_MIX_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "sim/mix/scenario.h"
#include "sim/mix/simulator.h"

namespace tessera::sim::mix {

struct MixReport {
  const Scenario* scenario = nullptr;
  uint64_t seed = 0;
  std::vector<StrategyStats> strategies;  // the first is the baseline for "change" columns
  std::vector<SweepPoint> sweep;          // empty unless the sweep ran
};

std::string FormatText(const MixReport& report);
std::string FormatJson(const MixReport& report);

// The sweep point with the most jobs per hour (the first of equals), or -1 when empty.
int BestSweepIndex(const std::vector<SweepPoint>& sweep);

}  // namespace tessera::sim::mix

#endif  // TESSERA_SIM_MIX_REPORT_H_
