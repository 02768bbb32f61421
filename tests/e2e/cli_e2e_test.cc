// The tessera command end to end: `run` puts a real program under limits on the fake GPU,
// `status` shows it, in a table and in JSON.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fake_node.h"
#include "tests/support/child_process.h"

namespace tessera {
namespace {

using testing::Child;
using testing::Fields;
using testing::Number;

constexpr long long kMiB = 1ll << 20;

class TesseraCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(node_.ok());
    directory_ = node_.directory();
  }

  std::vector<std::string> Environment() const {
    return node_.Environment({"TESSERA_REGION_DIR=" + node_.Path("regions"),
                              std::string("TESSERA_SHIM=") + TESSERA_SHIM_PATH});
  }
  std::vector<std::string> Tessera(std::vector<std::string> args) const {
    args.insert(args.begin(), TESSERA_CLI);
    return args;
  }

  testing::FakeNode node_{"device memory=16GiB context_memory=32MiB\n"};
  std::string directory_;
};

TEST_F(TesseraCommand, RunHoldsAProgramToItsLimitAndRemovesTheRegionAfter) {
  Child run(Tessera({"run", "--gpu-memory", "1GiB", "--", TESSERA_CLIENT, "dlopen", "fill", "64M"}),
            Environment());
  ASSERT_EQ(run.Finish(), 0) << run.output();
  auto fields = Fields(run.output());
  EXPECT_EQ(Number(fields, "allocated"), 15 * 64 * kMiB);
  EXPECT_EQ(Number(fields, "total"), 1024 * kMiB);
  Child status(Tessera({"status"}), Environment());
  EXPECT_EQ(status.Finish(), 0);
  EXPECT_NE(status.output().find("No Tessera regions"), std::string::npos) << status.output();
}

TEST_F(TesseraCommand, RunPassesTheProgramsExitCodeThrough) {
  Child run(Tessera({"run", "--gpu-memory", "1GiB", "--", "/bin/sh", "-c", "exit 7"}),
            Environment());
  EXPECT_EQ(run.Finish(), 7);
}

TEST_F(TesseraCommand, RunRejectsABadSizeNamingTheFlag) {
  Child run(Tessera({"run", "--gpu-memory", "4XB", "--", "true"}), Environment());
  EXPECT_EQ(run.Finish(), 2);
  EXPECT_NE(run.output().find("--gpu-memory=\"4XB\""), std::string::npos) << run.output();
}

// Everything after "--" is the command's, its own options included.
TEST_F(TesseraCommand, RunLeavesTheCommandsOwnOptionsToIt) {
  Child run(Tessera({"run", "--gpu-memory", "1GiB", "--", "/bin/sh", "-c", "echo \"[$0 $1]\"", "-v",
                     "--region"}),
            Environment());
  EXPECT_EQ(run.Finish(), 0) << run.output();
  EXPECT_NE(run.output().find("[-v --region]"), std::string::npos) << run.output();
}

// One value a flag: a second is refused, not taken for the limit.
TEST_F(TesseraCommand, RunRefusesAStrayValueAnUnknownFlagAndNoCommand) {
  Child stray(Tessera({"run", "--gpu-memory", "1GiB", "2GiB", "--", "true"}), Environment());
  EXPECT_EQ(stray.Finish(), 2);
  EXPECT_NE(stray.output().find("2GiB"), std::string::npos) << stray.output();
  Child unknown(Tessera({"run", "--gpu-memroy", "1GiB", "--", "true"}), Environment());
  EXPECT_EQ(unknown.Finish(), 2);
  EXPECT_NE(unknown.output().find("--gpu-memroy"), std::string::npos) << unknown.output();
  Child none(Tessera({"run", "--gpu-memory", "1GiB"}), Environment());
  EXPECT_EQ(none.Finish(), 2);
  EXPECT_NE(none.output().find("no command to run after --"), std::string::npos) << none.output();
}

// The limits reach the program in the contract's variables, per device, the bare value for every
// device and an I=SIZE over it.
TEST_F(TesseraCommand, RunStatesTheLimitsInTheShimsVariables) {
  Child run(Tessera({"run", "--gpu-memory", "1GiB", "--gpu-memory", "1=2GiB", "--gpu-cores", "1=40",
                     "--", "/bin/sh", "-c",
                     "echo \"[$CUDA_DEVICE_MEMORY_LIMIT_0 $CUDA_DEVICE_MEMORY_LIMIT_1 "
                     "${CUDA_DEVICE_SM_LIMIT_0:-none} $CUDA_DEVICE_SM_LIMIT_1 "
                     "${CUDA_DEVICE_MEMORY_LIMIT:-unset}]\""}),
            node_.Environment({"TESSERA_REGION_DIR=" + node_.Path("regions"),
                               std::string("TESSERA_SHIM=") + TESSERA_SHIM_PATH,
                               "CUDA_DEVICE_MEMORY_LIMIT=9g"}));
  EXPECT_EQ(run.Finish(), 0) << run.output();
  EXPECT_NE(run.output().find("[1024m 2048m none 40 unset]"), std::string::npos) << run.output();
}

TEST_F(TesseraCommand, StatusShowsEachLimitUseAndProcessWhileItRuns) {
  Child run(Tessera({"run", "--gpu-memory", "2GiB", "--gpu-memory", "1=1GiB", "--region",
                     directory_ + "/c.region", "--", TESSERA_CLIENT, "dlopen", "hold", "512M"}),
            Environment());
  ASSERT_TRUE(run.WaitFor("ready")) << run.output();
  Child table(Tessera({"status", directory_ + "/c.region"}), Environment());
  ASSERT_EQ(table.Finish(), 0) << table.output();
  EXPECT_NE(table.output().find("544 MiB"), std::string::npos) << "512 MiB + 32 MiB context\n"
                                                               << table.output();
  EXPECT_NE(table.output().find("2 GiB"), std::string::npos) << table.output();
  EXPECT_NE(table.output().find("27%"), std::string::npos) << table.output();
  // The node has one GPU: the table shows one GPU row, none for the region's other indexes.
  EXPECT_NE(table.output().find("\n  0    GPU-"), std::string::npos) << table.output();
  EXPECT_EQ(table.output().find("\n  1 "), std::string::npos) << table.output();
  EXPECT_EQ(table.output().find("more GPU"), std::string::npos) << table.output();
  Child json(Tessera({"status", "--json", directory_ + "/c.region"}), Environment());
  ASSERT_EQ(json.Finish(), 0) << json.output();
  const std::string& text = json.output();
  EXPECT_EQ(text.rfind("{\"regions\":[{\"path\":", 0), 0u) << text;
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "one object, one line\n" << text;
  const nlohmann::json status = nlohmann::json::parse(text);
  ASSERT_EQ(status["regions"].size(), 1u) << text;
  const nlohmann::json& region = status["regions"][0];
  EXPECT_EQ(region["path"], directory_ + "/c.region");
  // The region holds limits for every device index: 2 GiB by default, 1 GiB for index 1.
  ASSERT_GE(region["devices"].size(), 2u) << text;
  EXPECT_EQ(region["devices"][0]["memory_limit_bytes"], 2147483648u) << text;
  EXPECT_EQ(region["devices"][1]["memory_limit_bytes"], 1073741824u) << text;
  EXPECT_EQ(region["devices"][0]["memory_used_bytes"], 570425344u) << text;
  ASSERT_EQ(region["processes"].size(), 1u) << text;
  EXPECT_EQ(region["processes"][0]["alive"], true) << text;
  EXPECT_EQ(region["processes"][0]["devices"],
            nlohmann::json::parse(R"([{"index":0,"memory_used_bytes":570425344}])"))
      << text;
  EXPECT_EQ(status["errors"], nlohmann::json::array()) << text;
  EXPECT_EQ(run.Finish(), 0);
}

TEST_F(TesseraCommand, StatusFromAnotherPidNamespaceLeavesTheProcessesItCannotSeeAlone) {
  const std::string path = directory_ + "/ns.region";
  Child run(Tessera({"run", "--gpu-memory", "2GiB", "--region", path, "--", TESSERA_CLIENT,
                     "dlopen", "hold", "512M"}),
            Environment());
  ASSERT_TRUE(run.WaitFor("ready")) << run.output();
  // As a node agent reads a container's region, the other way round: the holder's pid means
  // another process, or none, in this status's pid namespace and its /proc.
  Child outside({"/usr/bin/unshare", "--pid", "--fork", "--mount", "--mount-proc", TESSERA_CLI,
                 "status", "--json", path},
                Environment());
  int exit_code = outside.Finish();
  if (exit_code != 0 && outside.output().rfind("unshare:", 0) == 0) {
    GTEST_SKIP() << "no pid namespace with its own /proc here: " << outside.output();
  }
  ASSERT_EQ(exit_code, 0) << outside.output();
  const nlohmann::json seen = nlohmann::json::parse(outside.output());
  ASSERT_EQ(seen["regions"].size(), 1u) << outside.output();
  const nlohmann::json& region = seen["regions"][0];
  EXPECT_EQ(region["devices"][0]["memory_used_bytes"], 570425344u) << outside.output();
  ASSERT_EQ(region["processes"].size(), 1u) << outside.output();
  EXPECT_TRUE(region["processes"][0]["alive"].is_null()) << outside.output();
  EXPECT_NE(region["processes"][0]["pid_namespace"], 0u) << outside.output();

  // In the holder's namespace it is alive, with its charge.
  Child here(Tessera({"status", "--json", path}), Environment());
  ASSERT_EQ(here.Finish(), 0) << here.output();
  const nlohmann::json status = nlohmann::json::parse(here.output());
  EXPECT_EQ(status["regions"][0]["processes"][0]["alive"], true) << here.output();
  EXPECT_EQ(status["regions"][0]["devices"][0]["memory_used_bytes"], 570425344u) << here.output();
  EXPECT_EQ(run.Finish(), 0) << run.output();
}

TEST_F(TesseraCommand, GpuCoresLimitsTheShareAndStatusShowsItBesideTheLimit) {
  // 500 ms of warm-up and 2.5 s measured: status looks during the run, after a full window.
  Child run(Tessera({"run", "--gpu-cores", "25", "--region", directory_ + "/k.region", "--",
                     TESSERA_LIMITER_CLIENT, "launch", "1000", "500", "2500"}),
            Environment());
  ASSERT_TRUE(run.WaitFor("ready")) << run.output();
  run.CloseStdin();
  // No sleep to wait for: status is polled until a full window has been measured.
  std::string table_output;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    Child table(Tessera({"status", directory_ + "/k.region"}), Environment());
    EXPECT_EQ(table.Finish(), 0) << table.output();
    table_output = table.output();
    if (table_output.find("%/25%") != std::string::npos &&
        table_output.find(" 0%/25%") == std::string::npos) {
      break;
    }
  }
  size_t at = table_output.find("%/25%");
  ASSERT_NE(at, std::string::npos) << table_output;
  size_t begin = table_output.rfind(' ', at) + 1;
  int achieved = std::stoi(table_output.substr(begin, at - begin));
  EXPECT_NEAR(achieved, 25, 8) << table_output;
  Child json(Tessera({"status", "--json", directory_ + "/k.region"}), Environment());
  ASSERT_EQ(json.Finish(), 0) << json.output();
  const nlohmann::json status = nlohmann::json::parse(json.output());
  const nlohmann::json& device = status["regions"][0]["devices"][0];
  EXPECT_EQ(device["sm_limit_percent"], 25) << json.output();
  // The share over the last second, in percent with one decimal: near the limit, as above.
  ASSERT_TRUE(device["sm_achieved_percent"].is_number()) << json.output();
  EXPECT_NEAR(device["sm_achieved_percent"].get<double>(), 25, 8) << json.output();
  ASSERT_EQ(run.Finish(), 0) << run.output();
  auto fields = Fields(run.output());
  EXPECT_NEAR(static_cast<double>(Number(fields, "share_permille")) / 10, 25, 8) << run.output();
}

TEST_F(TesseraCommand, RunRejectsABadShareNamingTheFlag) {
  Child run(Tessera({"run", "--gpu-cores", "120", "--", "true"}), Environment());
  EXPECT_EQ(run.Finish(), 2);
  EXPECT_NE(run.output().find("--gpu-cores"), std::string::npos) << run.output();
}

TEST_F(TesseraCommand, StatusReportsARegionItCannotReadAndFails) {
  std::ofstream(directory_ + "/bad.region") << "this is a text file, not a region at all";
  Child status(Tessera({"status", directory_ + "/bad.region"}), Environment());
  EXPECT_EQ(status.Finish(), 1);
  EXPECT_NE(status.output().find("not a Tessera region"), std::string::npos) << status.output();
  // For scripts the error is in the JSON, which stays JSON: the message is quoted.
  Child json(Tessera({"status", "--json", directory_ + "/bad.region"}), Environment());
  EXPECT_EQ(json.Finish(), 1);
  const nlohmann::json parsed = nlohmann::json::parse(json.output());
  EXPECT_EQ(parsed["regions"], nlohmann::json::array()) << json.output();
  ASSERT_EQ(parsed["errors"].size(), 1u) << json.output();
  EXPECT_NE(parsed["errors"][0].get<std::string>().find("not a Tessera region"), std::string::npos)
      << json.output();
}

}  // namespace
}  // namespace tessera
