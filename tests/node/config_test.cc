#include "node/config.h"

#include <gtest/gtest.h>

namespace tessera::node {
namespace {

Result<NodeConfig> Parse(const std::string& text) { return ParseNodeConfig(text, "node.yaml"); }

std::string ErrorOf(const std::string& text) {
  auto config = Parse(text);
  EXPECT_FALSE(config.ok()) << text;
  return config.ok() ? "" : config.status().message();
}

TEST(NodeConfig, AnEmptyFileMakesEveryGpuWhole) {
  auto config = Parse("");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->default_mode, GpuMode::kWhole);
  EXPECT_TRUE(config->gpus.empty());
}

TEST(NodeConfig, ReadsEachGpusModeReplicasAndMigLayout) {
  auto config = Parse(R"(
defaultMode: shared
gpus:
  - {index: 0, mode: whole}
  - index: 1
    mode: time-sliced
    replicas: 4
  - index: 2
    mode: mig
    mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]
)");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->default_mode, GpuMode::kShared);
  ASSERT_EQ(config->gpus.size(), 3u);
  EXPECT_EQ(config->Find(0)->mode, GpuMode::kWhole);
  EXPECT_EQ(config->Find(1)->mode, GpuMode::kTimeSliced);
  EXPECT_EQ(config->Find(1)->replicas, 4);
  EXPECT_EQ(config->Find(2)->mode, GpuMode::kMig);
  EXPECT_EQ(config->Find(2)->mig_layout,
            (std::vector<std::string>{"3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"}));
  EXPECT_EQ(config->Find(3), nullptr);
}

TEST(NodeConfig, ASharedGpuHasReplicasDefaulting32AndCheckedLikeTimeSliced) {
  auto config =
      Parse("gpus:\n  - {index: 0, mode: shared}\n  - {index: 1, mode: shared, replicas: 10}\n");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->Find(0)->replicas, 32);
  EXPECT_EQ(config->Find(1)->replicas, 10);
  EXPECT_EQ(config->ReplicasOf(1), 10);
  EXPECT_EQ(config->ReplicasOf(5), 0);  // defaultMode whole
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 0, mode: shared, replicas: 65}\n").find("gpus[0].replicas"),
            std::string::npos);
}

TEST(NodeConfig, AnUnknownModeIsNamedWithItsFieldAndFile) {
  const std::string error = ErrorOf("gpus:\n  - {index: 0, mode: fractional}\n");
  EXPECT_NE(error.find("node.yaml"), std::string::npos) << error;
  EXPECT_NE(error.find("gpus[0].mode"), std::string::npos) << error;
  EXPECT_NE(error.find("\"fractional\""), std::string::npos) << error;
}

TEST(NodeConfig, ZeroReplicasAreRefused) {
  const std::string error = ErrorOf("gpus:\n  - {index: 1, mode: time-sliced, replicas: 0}\n");
  EXPECT_NE(error.find("gpus[0].replicas"), std::string::npos) << error;
  EXPECT_NE(error.find("0 is out of range"), std::string::npos) << error;
}

TEST(NodeConfig, TimeSlicingNeedsAReplicaCount) {
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 1, mode: time-sliced}\n").find("gpus[0].replicas"),
            std::string::npos);
}

TEST(NodeConfig, MalformedYamlNamesTheLine) {
  const std::string error = ErrorOf("gpus:\n  - {index: 0, mode: whole\n");
  EXPECT_NE(error.find("node.yaml: not valid YAML at line"), std::string::npos) << error;
}

TEST(NodeConfig, RefusesWhatItDoesNotKnow) {
  EXPECT_NE(ErrorOf("gpu: []\n").find("gpu: unknown field"), std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 0, mode: whole, replica: 2}\n").find("gpus[0].replica"),
            std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: -1, mode: whole}\n").find("gpus[0].index"),
            std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: x, mode: whole}\n").find("\"x\" is not an integer"),
            std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {mode: whole}\n").find("gpus[0]: has no index"), std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 0}\n").find("has no mode"), std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 0, mode: whole}\n  - {index: 0, mode: mig}\n")
                .find("gpus[1].index: 0 is listed twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 0, mode: whole, replicas: 2}\n")
                .find("only a time-sliced or shared GPU has replicas"),
            std::string::npos);
  EXPECT_NE(ErrorOf("gpus:\n  - {index: 0, mode: mig, mig: [big]}\n").find("gpus[0].mig[0]"),
            std::string::npos);
  EXPECT_NE(ErrorOf("defaultMode: time-sliced\n").find("defaultMode"), std::string::npos);
  EXPECT_NE(ErrorOf("[1, 2]\n").find("top level"), std::string::npos);
}

TEST(NodeConfig, AMissingFileIsNamed) {
  auto config = LoadNodeConfig("/nonexistent/tessera-node.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("/nonexistent/tessera-node.yaml"), std::string::npos);
}

}  // namespace
}  // namespace tessera::node
