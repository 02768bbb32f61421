#include "sim/alibaba/trace.h"

#include <gtest/gtest.h>

namespace tessera::sim::alibaba {
namespace {

constexpr const char* kPodHeader =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
    "deletion_time,scheduled_time\n";

void ExpectError(const Status& status, const std::string& fragment) {
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(fragment), std::string::npos) << status.message();
}

TEST(PodCsv, ReadsTheArtifactColumns) {
  auto pods = ParsePodCsv(std::string(kPodHeader) +
                              "openb-pod-0001,6000,12288,1,460,,LS,Running,1,2,1\n"
                              "openb-pod-0002,3000,100,0,0,,BE,Failed,1,2,\n"
                              "openb-pod-0003,8000,100,8,1000,V100M16|V100M32|V100M32,LS,"
                              "Pending,1,2,\n",
                          "pods.csv");
  ASSERT_TRUE(pods.ok()) << pods.status().message();
  ASSERT_EQ(pods->size(), 3u);
  EXPECT_EQ((*pods)[0].name, "openb-pod-0001");
  EXPECT_EQ((*pods)[0].gpu_milli, 460);
  EXPECT_EQ((*pods)[1].num_gpu, 0);
  EXPECT_EQ((*pods)[2].total_gpu_milli(), 8000);
  EXPECT_EQ((*pods)[2].gpu_spec, (std::vector<std::string>{"V100M16", "V100M32"}));
}

TEST(PodCsv, ReadsTheFiveColumnMultiGpuFiles) {
  auto pods = ParsePodCsv("name,cpu_milli,memory_mib,num_gpu,gpu_milli\r\np,1000,10,2,1000\r\n",
                          "multigpu.csv");
  ASSERT_TRUE(pods.ok()) << pods.status().message();
  EXPECT_EQ((*pods)[0].num_gpu, 2);
  EXPECT_TRUE((*pods)[0].gpu_spec.empty());
}

TEST(PodCsv, ANonNumberNamesFileLineAndColumn) {
  auto pods = ParsePodCsv(std::string(kPodHeader) +
                              "a,1000,10,1,500,,LS,Running,1,2,1\n"
                              "b,12k,10,1,500,,LS,Running,1,2,1\n",
                          "pods.csv");
  ExpectError(pods.status(), "pods.csv:3: column cpu_milli: \"12k\"");
}

TEST(PodCsv, AMissingFieldIsAnError) {
  auto pods = ParsePodCsv(std::string(kPodHeader) + "a,1000,10,1,500\n", "pods.csv");
  ExpectError(pods.status(), "pods.csv:2: expected 11 fields, found 5");
}

TEST(PodCsv, AShareAboveOneGpuIsAnError) {
  auto pods = ParsePodCsv("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,1001\n", "p.csv");
  ExpectError(pods.status(), "p.csv:2: column gpu_milli");
}

TEST(PodCsv, NegativeAndOverflowingNumbersAreErrors) {
  ExpectError(
      ParsePodCsv("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,-1,1,1,1\n", "p.csv").status(),
      "p.csv:2");
  ExpectError(ParsePodCsv("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
                          "p,99999999999999999999,1,1,1\n",
                          "p.csv")
                  .status(),
              "column cpu_milli");
}

TEST(PodCsv, AGpuPodWithoutAShareIsAnError) {
  ExpectError(
      ParsePodCsv("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,2,0\n", "p.csv").status(),
      "p.csv:2: pod \"p\" asks for 2 GPUs with gpu_milli 0");
}

TEST(PodCsv, AHeaderWithoutARequiredColumnIsAnError) {
  ExpectError(ParsePodCsv("name,cpu,memory_mib,num_gpu,gpu_milli\n", "p.csv").status(),
              "p.csv:1: header lacks column cpu_milli");
  ExpectError(ParsePodCsv("", "p.csv").status(), "p.csv: empty file");
}

TEST(PodCsv, BlankLinesAreSkipped) {
  auto pods = ParsePodCsv("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n\np,1,1,0,0\n\n", "p.csv");
  ASSERT_TRUE(pods.ok());
  EXPECT_EQ(pods->size(), 1u);
}

TEST(NodeCsv, ReadsNodes) {
  auto nodes = ParseNodeCsv(
      "sn,cpu_milli,memory_mib,gpu,model\nn1,96000,393216,8,G2\n"
      "cpu,32000,1000,0,\n",
      "nodes.csv");
  ASSERT_TRUE(nodes.ok()) << nodes.status().message();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].gpus, 8);
  EXPECT_EQ((*nodes)[0].model, "G2");
}

TEST(NodeCsv, AGpuNodeWithoutModelOrADuplicateIsAnError) {
  ExpectError(ParseNodeCsv("sn,cpu_milli,memory_mib,gpu,model\nn1,1,1,2,\n", "nodes.csv").status(),
              "nodes.csv:2: node \"n1\" has GPUs but no model");
  ExpectError(ParseNodeCsv("sn,cpu_milli,memory_mib,gpu,model\nn1,1,1,0,\nn1,1,1,0,\n", "nodes.csv")
                  .status(),
              "nodes.csv:3: node \"n1\" appears twice");
  ExpectError(
      ParseNodeCsv("sn,cpu_milli,memory_mib,gpu,model\nn1,1,1,65,T4\n", "nodes.csv").status(),
      "nodes.csv:2: column gpu");
}

TEST(ReadPodCsv, AMissingFileNamesThePath) {
  ExpectError(ReadPodCsv("/nonexistent/pods.csv").status(), "/nonexistent/pods.csv: cannot open");
}

TEST(PublishedVariants, AreTheSeventeenWithResults) {
  EXPECT_EQ(PublishedVariants().size(), 17u);
  EXPECT_EQ(PublishedVariants().front(), "default");
}

}  // namespace
}  // namespace tessera::sim::alibaba
