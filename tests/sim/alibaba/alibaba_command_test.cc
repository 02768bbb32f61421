#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sim/sim_command.h"

namespace tessera::sim {
namespace {

namespace fs = std::filesystem;

// A trace folder with two nodes and a handful of pods, removed afterwards.
class AlibabaCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tessera_alibaba_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    Write("openb_node_list_gpu_node.csv",
          "sn,cpu_milli,memory_mib,gpu,model\nn1,32000,65536,2,T4\nn2,32000,65536,2,T4\n");
    Write("openb_pod_list_default.csv",
          "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,4000,1024,1,500\np2,4000,1024,1,500\n"
          "p3,4000,1024,1,1000\np4,2000,1024,0,0\np5,4000,1024,2,1000\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), "alibaba");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return RunAlibabaCommand(static_cast<int>(argv.size()), argv.data());
  }

  fs::path dir_;
};

TEST_F(AlibabaCommand, HelpSucceedsAndNamesThePolicies) {
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(Run({"--help"}), 0);
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("--trace"), std::string::npos);
  EXPECT_NE(out.find("tessera-online"), std::string::npos);
}

// A user's clone has the trace: with no --trace the command replays the one in data/.
TEST_F(AlibabaCommand, ReplaysTheShippedTraceWithoutTrace) {
  ::testing::internal::CaptureStdout();
  int rc = Run({"--policy", "bestfit", "--seeds", "42", "--json", "--quiet"});
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(out.rfind(std::string("{\"trace\":\"") + TESSERA_ALIBABA_TRACE_DIR + "\"", 0), 0u)
      << out.substr(0, 200);
  EXPECT_NE(out.find("\"name\":\"bestfit\""), std::string::npos) << out.substr(0, 400);
}

TEST_F(AlibabaCommand, AMissingTraceFolderIsNamed) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Run({"--trace", (dir_ / "nowhere").string(), "--quiet"}), 1);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find((dir_ / "nowhere").string()), std::string::npos) << err;
}

TEST_F(AlibabaCommand, PrintsOneJsonObjectAndDrawsThePlot) {
  const std::string svg = (dir_ / "curves.svg").string();
  ::testing::internal::CaptureStdout();
  int rc = Run({"--trace", dir_.string(), "--policy", "fgd,bestfit", "--seeds", "1-3", "--json",
                "--quiet", "--plot", svg});
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(
      out.rfind("{\"trace\":\"" + dir_.string() + "\",\"variant\":\"default\",\"policies\":[", 0),
      0u)
      << out.substr(0, 120);
  EXPECT_NE(out.find("\"name\":\"bestfit\""), std::string::npos);
  EXPECT_EQ(out.find('\n'), out.size() - 1);  // one object, one line
  EXPECT_TRUE(fs::exists(svg));
}

TEST_F(AlibabaCommand, UsageErrorsExitWithTwo) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Run({"--trace", dir_.string(), "--inflation", "0"}), 2);
  EXPECT_EQ(Run({"--trace", dir_.string(), "--jobs"}), 2);
  EXPECT_EQ(Run({"--trace", dir_.string(), "--policy", "firstfit"}), 2);
  EXPECT_EQ(Run({"--trace", dir_.string(), "--seeds", "9-1"}), 2);
  EXPECT_EQ(Run({"--trace", dir_.string(), "--frobnicate"}), 2);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("\"firstfit\""), std::string::npos);
  EXPECT_NE(err.find("--frobnicate"), std::string::npos);
  EXPECT_NE(err.find("--inflation"), std::string::npos);
  EXPECT_NE(err.find("--jobs"), std::string::npos);
}

TEST_F(AlibabaCommand, AMalformedTraceFailsNamingFileAndLine) {
  Write("openb_pod_list_broken.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,x,1,1,1\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Run({"--trace", dir_.string(), "--variant", "broken", "--quiet"}), 1);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("openb_pod_list_broken.csv:2: column cpu_milli"), std::string::npos) << err;
}

}  // namespace
}  // namespace tessera::sim
