#include "sim/mix/scenario.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera::sim::mix {
namespace {

// A small valid scenario; tests break one thing in it at a time.
constexpr const char* kValid = R"(name: tiny
hours: 10
cluster:
  nodes: 2
  gpus_per_node: 4
  gpu_memory_gib: 40
overheads:
  context_memory_gib: 0.5
  shim_slowdown: 0.02
  interference_per_cotenant: 0.03
classes:
  - name: ci
    arrivals_per_hour: 20
    duration_minutes: {median: 10, sigma: 0.5}
    memory_gib: {min: 1, max: 4}
    busy_fraction: {min: 0.05, max: 0.1}
    share: 1/8
  - name: train
    arrivals_per_hour: 0.5
    duration_minutes: {median: 60}
    gpus: 4
    memory_gib: 30
    busy_fraction: 0.9
strategies:
  - name: whole
    pools:
      - {name: all, mode: whole, nodes: 2, classes: [ci, train]}
  - name: shares
    pools:
      - {name: training, mode: whole, nodes: 1, classes: [train]}
      - {name: shared, mode: shares, nodes: 1, classes: [ci]}
sweep:
  nodes: 1
  classes: [ci]
  partitions: [1, 2, 4]
)";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::string ErrorOf(const std::string& text) {
  Result<Scenario> scenario = ParseScenario(text, "test.yaml");
  EXPECT_FALSE(scenario.ok());
  return scenario.ok() ? std::string() : scenario.status().message();
}

TEST(ScenarioParser, ReadsEveryFieldOfAValidScenario) {
  Result<Scenario> scenario = ParseScenario(kValid, "test.yaml");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(scenario->name, "tiny");
  EXPECT_EQ(scenario->gpus(), 8);
  ASSERT_EQ(scenario->classes.size(), 2u);
  EXPECT_DOUBLE_EQ(scenario->classes[0].share, 0.125);
  EXPECT_DOUBLE_EQ(scenario->classes[0].memory_gib.max, 4);
  EXPECT_DOUBLE_EQ(scenario->classes[1].busy_fraction.min, 0.9);
  EXPECT_EQ(scenario->classes[1].gpus, 4);
  ASSERT_EQ(scenario->strategies.size(), 2u);
  EXPECT_EQ(scenario->strategies[1].pools[1].mode, placement::SharingMode::kShared);
  EXPECT_EQ(PoolModeName(scenario->strategies[1].pools[1].mode), "shares");
  EXPECT_EQ(scenario->strategies[1].pools[1].classes, std::vector<int>{0});
  EXPECT_EQ(scenario->sweep.partitions, (std::vector<int>{1, 2, 4}));
}

TEST(ScenarioParser, ReadsTheSameScenarioWrittenAsJson) {
  const std::string json = R"({"name": "tiny", "hours": 10,
    "cluster": {"nodes": 1, "gpus_per_node": 2, "gpu_memory_gib": 40},
    "overheads": {"context_memory_gib": 0, "shim_slowdown": 0, "interference_per_cotenant": 0},
    "classes": [{"name": "ci", "arrivals_per_hour": 5, "duration_minutes": {"median": 10},
                 "memory_gib": 2, "busy_fraction": 0.1, "share": 0.25}],
    "strategies": [{"name": "shares", "pools": [{"name": "p", "mode": "shares", "nodes": 1,
                                                 "classes": ["ci"]}]}],
    "sweep": {"nodes": 1, "classes": ["ci"], "partitions": [1, 4]}})";
  Result<Scenario> scenario = ParseScenario(json, "tiny.json");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_DOUBLE_EQ(scenario->classes[0].share, 0.25);
}

TEST(ScenarioParser, TheBuiltInNioScenarioLoads) {
  Result<Scenario> scenario = LoadScenario("nio");
  ASSERT_TRUE(scenario.ok()) << scenario.status().message();
  EXPECT_EQ(scenario->nodes, 80);
  for (const char* strategy : {"whole", "mig", "time_slicing", "shares", "hybrid"}) {
    EXPECT_GE(scenario->StrategyIndex(strategy), 0) << strategy;
  }
}

TEST(ScenarioParser, AnUnknownKeyIsNamedWithItsLine) {
  const std::string error =
      ErrorOf(Replace(kValid, "    arrivals_per_hour: 20", "    arrival_rate: 20"));
  EXPECT_NE(error.find("test.yaml:13:"), std::string::npos) << error;
  EXPECT_NE(error.find("classes[0].arrival_rate: unknown key"), std::string::npos) << error;
}

TEST(ScenarioParser, AMissingRequiredKeyIsNamed) {
  const std::string error =
      ErrorOf(Replace(kValid, "    busy_fraction: {min: 0.05, max: 0.1}\n", ""));
  EXPECT_NE(error.find("classes[ci]: missing required key \"busy_fraction\""), std::string::npos)
      << error;
}

TEST(ScenarioParser, AWrongTypeNamesFileLineKeyAndValue) {
  const std::string error =
      ErrorOf(Replace(kValid, "arrivals_per_hour: 20", "arrivals_per_hour: lots"));
  EXPECT_EQ(error, "test.yaml:13: classes[ci].arrivals_per_hour: expected a number, got \"lots\"");
}

TEST(ScenarioParser, AValueOutOfRangeIsRefused) {
  const std::string error =
      ErrorOf(Replace(kValid, "{min: 0.05, max: 0.1}", "{min: 0.05, max: 1.5}"));
  EXPECT_NE(error.find("classes[ci].busy_fraction.max: must be in [0, 1]"), std::string::npos)
      << error;
}

TEST(ScenarioParser, MalformedYamlReportsTheLine) {
  const std::string error = ErrorOf(Replace(kValid, "  gpus_per_node: 4", "  gpus_per_node: [4"));
  EXPECT_NE(error.find("test.yaml:"), std::string::npos);
  EXPECT_NE(error.find("not valid YAML/JSON"), std::string::npos) << error;
}

TEST(ScenarioParser, PoolsMustAddUpToTheCluster) {
  const std::string error = ErrorOf(
      Replace(kValid, "{name: all, mode: whole, nodes: 2,", "{name: all, mode: whole, nodes: 1,"));
  EXPECT_NE(error.find("strategies[whole].pools: the pools hold 1 nodes but cluster.nodes is 2"),
            std::string::npos)
      << error;
}

TEST(ScenarioParser, APoolNamingAnUnknownClassIsRefused) {
  const std::string error =
      ErrorOf(Replace(kValid, "classes: [ci, train]", "classes: [ci, trian]"));
  EXPECT_NE(error.find("strategies[whole].pools[0].classes[1]: no class named \"trian\""),
            std::string::npos)
      << error;
}

TEST(ScenarioParser, AGangClassCannotBeShared) {
  const std::string error = ErrorOf(Replace(kValid, "mode: shares, nodes: 1, classes: [ci]",
                                            "mode: shares, nodes: 1, classes: [ci, train]"));
  EXPECT_NE(error.find("asks for several GPUs per job"), std::string::npos) << error;
}

TEST(ScenarioParser, AClassNoPoolCanRunIsRefused) {
  const std::string error =
      ErrorOf(Replace(kValid, "{name: training, mode: whole, nodes: 1, classes: [train]}",
                      "{name: training, mode: whole, nodes: 1, classes: [ci]}"));
  EXPECT_NE(error.find("no pool can run the largest job of class \"train\""), std::string::npos)
      << error;
}

TEST(ScenarioParser, DuplicateKeysAndAliasesAreRefused) {
  EXPECT_NE(ErrorOf(Replace(kValid, "hours: 10\n", "hours: 10\nhours: 20\n")).find("appears twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kValid, "memory_gib: 30", "memory_gib: *big")).find("alias"),
            std::string::npos);
}

TEST(ScenarioParser, AnEmptyDocumentIsAnError) {
  EXPECT_EQ(ErrorOf(""), "test.yaml: the document is empty");
}

TEST(ScenarioParser, AMissingFileIsNamed) {
  Result<Scenario> scenario = LoadScenario("/nonexistent/mix.yaml");
  ASSERT_FALSE(scenario.ok());
  EXPECT_NE(scenario.status().message().find("/nonexistent/mix.yaml"), std::string::npos);
}

}  // namespace
}  // namespace tessera::sim::mix
