// The reports of `tessera sim mix`, from results made by hand: the JSON's keys, layout and numbers,
// and text that no fixed buffer cuts short.
#include "sim/mix/report.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "common/json.h"

namespace tessera::sim::mix {
namespace {

Scenario TinyScenario() {
  Scenario scenario;
  scenario.name = "tiny";
  scenario.hours = 12;
  scenario.nodes = 2;
  scenario.gpus_per_node = 4;
  return scenario;
}

StrategyStats Stats(const std::string& name) {
  StrategyStats stats;
  stats.strategy = name;
  stats.gpus = 8;
  stats.makespan_hours = 13;
  ClassStats ci;
  ci.name = "ci";
  ci.jobs = 10;
  ci.completed = 9;
  ci.failed_attempts = 1;
  ci.held_gpu_hours = 3;
  ci.useful_gpu_hours = 2;
  ci.mean_queue_hours = 0.25;
  ci.p95_queue_hours = 1.5;
  ci.mean_stretch = 1.125;
  stats.classes.push_back(ci);
  return stats;
}

std::vector<std::string> Keys(const Json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

TEST(MixReportJson, HasTheDocumentedKeysInOrderIndented) {
  const Scenario scenario = TinyScenario();
  MixReport report;
  report.scenario = &scenario;
  report.seed = 7;
  report.strategies = {Stats("whole"), Stats("shares")};
  const std::string text = FormatJson(report);
  EXPECT_EQ(text.rfind("{\n  \"scenario\": \"tiny\",\n  \"seed\": 7,\n", 0), 0u) << text;
  EXPECT_EQ(text.back(), '\n');

  const Json json = Json::parse(text);
  EXPECT_EQ(Keys(json),
            (std::vector<std::string>{"scenario", "seed", "gpus", "hours", "strategies", "sweep"}));
  EXPECT_EQ(json["gpus"], 8);
  EXPECT_EQ(json["hours"], 12.0);
  ASSERT_EQ(json["strategies"].size(), 2u);
  const Json& shares = json["strategies"][1];
  EXPECT_EQ(Keys(shares), (std::vector<std::string>{"name", "makespan_hours", "held_gpu_hours",
                                                    "useful_gpu_hours", "cluster_utilisation",
                                                    "unfinished_jobs", "classes"}));
  EXPECT_EQ(shares["name"], "shares");
  EXPECT_EQ(shares["held_gpu_hours"], 3.0);
  EXPECT_EQ(shares["cluster_utilisation"], 0.0192308);  // 2 / (8 x 13), to 6 digits
  const Json& ci = shares["classes"][0];
  EXPECT_EQ(Keys(ci),
            (std::vector<std::string>{"name", "jobs", "completed", "killed_attempts",
                                      "held_gpu_hours", "useful_gpu_hours", "utilisation",
                                      "mean_queue_hours", "p95_queue_hours", "mean_stretch"}));
  EXPECT_EQ(ci["killed_attempts"], 1);
  EXPECT_EQ(ci["utilisation"], 0.666667);
  EXPECT_EQ(ci["mean_stretch"], 1.125);
  EXPECT_EQ(json["sweep"], Json::array());
}

TEST(MixReportJson, NamesEachSweepPartition) {
  const Scenario scenario = TinyScenario();
  MixReport report;
  report.scenario = &scenario;
  report.sweep = {{1, 10, 5, 1.5, 1}, {4, 31.25, 7, 2, 3.5}};
  const Json json = Json::parse(FormatJson(report));
  EXPECT_EQ(json["strategies"], Json::array());
  ASSERT_EQ(json["sweep"].size(), 2u);
  EXPECT_EQ(json["sweep"][1]["partition"], "1/4");
  EXPECT_EQ(json["sweep"][1]["denominator"], 4);
  EXPECT_EQ(json["sweep"][1]["jobs_per_hour"], 31.25);
  EXPECT_EQ(json["sweep"][1]["mean_jobs_per_busy_gpu"], 3.5);
}

// JSON has no NaN or infinity: such a number is written as null, and the report still parses.
TEST(MixReportJson, WritesNumbersThatAreNotFiniteAsNull) {
  const Scenario scenario = TinyScenario();
  MixReport report;
  report.scenario = &scenario;
  StrategyStats stats = Stats("whole");
  stats.makespan_hours = std::numeric_limits<double>::infinity();
  stats.classes[0].mean_stretch = std::numeric_limits<double>::quiet_NaN();
  stats.classes[0].p95_queue_hours = -std::numeric_limits<double>::infinity();
  report.strategies = {stats};
  report.sweep = {{2, std::numeric_limits<double>::quiet_NaN(), 1, 1, 1}};
  const std::string text = FormatJson(report);
  EXPECT_EQ(text.find("nan"), std::string::npos) << text;
  EXPECT_EQ(text.find("inf"), std::string::npos) << text;
  const Json json = Json::parse(text);
  EXPECT_TRUE(json["strategies"][0]["makespan_hours"].is_null());
  EXPECT_TRUE(json["strategies"][0]["classes"][0]["mean_stretch"].is_null());
  EXPECT_TRUE(json["strategies"][0]["classes"][0]["p95_queue_hours"].is_null());
  EXPECT_EQ(json["strategies"][0]["classes"][0]["mean_queue_hours"], 0.25);
  EXPECT_TRUE(json["sweep"][0]["jobs_per_hour"].is_null());
}

// The text's lines were once written into a 512-byte buffer; a long scenario name was cut off.
TEST(MixReportText, KeepsALongScenarioNameWhole) {
  Scenario scenario = TinyScenario();
  scenario.name = std::string(600, 'n');
  MixReport report;
  report.scenario = &scenario;
  report.sweep = {{1, 10, 5, 1.5, 1}};
  const std::string text = FormatText(report);
  EXPECT_NE(text.find("scenario " + scenario.name + ": 2 nodes x 4 GPUs"), std::string::npos)
      << text;
  EXPECT_NE(text.find("partition sweep"), std::string::npos) << text;
}

}  // namespace
}  // namespace tessera::sim::mix
