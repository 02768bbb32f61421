#include "shim/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace tessera::shim {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

Config Parse(std::vector<std::string_view> environment) { return ParseConfig(environment); }

TEST(ShimConfig, NoVariablesMeansNoLimitsAndNoErrors) {
  Config config = Parse({"PATH=/usr/bin", "HOME=/root"});
  EXPECT_TRUE(config.errors.empty());
  EXPECT_FALSE(config.any_limit);
  EXPECT_FALSE(config.disabled);
  EXPECT_TRUE(config.region_path.empty());
}

TEST(ShimConfig, DefaultLimitAppliesToEveryDevice) {
  Config config = Parse({"CUDA_DEVICE_MEMORY_LIMIT=4g"});
  ASSERT_TRUE(config.errors.empty());
  for (int device = 0; device < region::kMaxDevices; ++device) {
    EXPECT_EQ(config.limits.devices[device].memory_bytes, 4 * kGiB);
  }
}

TEST(ShimConfig, PerDeviceLimitOverridesTheDefaultWhateverTheOrder) {
  Config config = Parse({"CUDA_DEVICE_MEMORY_LIMIT_1=1GiB", "CUDA_DEVICE_MEMORY_LIMIT=4096m"});
  ASSERT_TRUE(config.errors.empty());
  EXPECT_EQ(config.limits.devices[0].memory_bytes, 4 * kGiB);
  EXPECT_EQ(config.limits.devices[1].memory_bytes, kGiB);
}

TEST(ShimConfig, AcceptsEveryDocumentedUnit) {
  EXPECT_EQ(Parse({"CUDA_DEVICE_MEMORY_LIMIT=1073741824"}).limits.devices[0].memory_bytes, kGiB);
  EXPECT_EQ(Parse({"CUDA_DEVICE_MEMORY_LIMIT=1048576k"}).limits.devices[0].memory_bytes, kGiB);
  EXPECT_EQ(Parse({"CUDA_DEVICE_MEMORY_LIMIT=1024M"}).limits.devices[0].memory_bytes, kGiB);
  EXPECT_EQ(Parse({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}).limits.devices[0].memory_bytes, kGiB);
  EXPECT_EQ(Parse({"CUDA_DEVICE_MEMORY_LIMIT=1024MiB"}).limits.devices[0].memory_bytes, kGiB);
}

TEST(ShimConfig, SmLimitIsAPercentage) {
  Config config = Parse({"CUDA_DEVICE_SM_LIMIT=25", "CUDA_DEVICE_SM_LIMIT_2=50%"});
  ASSERT_TRUE(config.errors.empty());
  EXPECT_EQ(config.limits.devices[0].sm_percent, 25u);
  EXPECT_EQ(config.limits.devices[2].sm_percent, 50u);
  EXPECT_TRUE(config.any_limit);
}

TEST(ShimConfig, DisableControlAcceptsTrueAndFalseOnly) {
  EXPECT_TRUE(Parse({"CUDA_DISABLE_CONTROL=true"}).disabled);
  EXPECT_TRUE(Parse({"CUDA_DISABLE_CONTROL=1"}).disabled);
  EXPECT_FALSE(Parse({"CUDA_DISABLE_CONTROL=false"}).disabled);
  Config bad = Parse({"CUDA_DISABLE_CONTROL=yes please"});
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].find("CUDA_DISABLE_CONTROL"), std::string::npos);
}

TEST(ShimConfig, RegionPathIsTaken) {
  EXPECT_EQ(Parse({"CUDA_DEVICE_MEMORY_SHARED_CACHE=/tmp/x.region"}).region_path, "/tmp/x.region");
}

struct BadCase {
  const char* entry;
  const char* variable;
  const char* says;
};

class ShimConfigRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(ShimConfigRejects, WithOneMessageThatNamesTheVariable) {
  Config config = Parse({GetParam().entry});
  ASSERT_EQ(config.errors.size(), 1u);
  EXPECT_EQ(config.errors[0].rfind(GetParam().variable, 0), 0u) << config.errors[0];
  EXPECT_NE(config.errors[0].find(GetParam().says), std::string::npos) << config.errors[0];
  EXPECT_FALSE(config.any_limit) << "a bad value is never a silent limit or a silent no-limit";
}

INSTANTIATE_TEST_SUITE_P(
    BadValues, ShimConfigRejects,
    ::testing::Values(
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=", "CUDA_DEVICE_MEMORY_LIMIT", "is empty"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=-1", "CUDA_DEVICE_MEMORY_LIMIT", "is negative"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=abc", "CUDA_DEVICE_MEMORY_LIMIT", "not a number"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=0x100", "CUDA_DEVICE_MEMORY_LIMIT", "unknown unit"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=1.5g", "CUDA_DEVICE_MEMORY_LIMIT", "unknown unit"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=4 g", "CUDA_DEVICE_MEMORY_LIMIT", "unknown unit"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=4gb", "CUDA_DEVICE_MEMORY_LIMIT", "unknown unit"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=18446744073709551616", "CUDA_DEVICE_MEMORY_LIMIT",
                "too large"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=17179869184g", "CUDA_DEVICE_MEMORY_LIMIT", "too large"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT=0", "CUDA_DEVICE_MEMORY_LIMIT", "zero"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT_0=0m", "CUDA_DEVICE_MEMORY_LIMIT_0", "zero"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT_a=1g", "CUDA_DEVICE_MEMORY_LIMIT_a", "device index"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT_16=1g", "CUDA_DEVICE_MEMORY_LIMIT_16", "device index"},
        BadCase{"CUDA_DEVICE_MEMORY_LIMIT_-1=1g", "CUDA_DEVICE_MEMORY_LIMIT_-1", "device index"},
        BadCase{"CUDA_DEVICE_SM_LIMIT=101", "CUDA_DEVICE_SM_LIMIT", "percentage"},
        BadCase{"CUDA_DEVICE_SM_LIMIT=-5", "CUDA_DEVICE_SM_LIMIT", "percentage"},
        BadCase{"CUDA_DEVICE_SM_LIMIT=", "CUDA_DEVICE_SM_LIMIT", "percentage"},
        BadCase{"CUDA_DEVICE_SM_LIMIT_0=3.5", "CUDA_DEVICE_SM_LIMIT_0", "percentage"},
        BadCase{"CUDA_DEVICE_MEMORY_SHARED_CACHE=", "CUDA_DEVICE_MEMORY_SHARED_CACHE", "empty"},
        BadCase{"CUDA_DISABLE_CONTROL=", "CUDA_DISABLE_CONTROL", "true or false"},
        BadCase{"TESSERA_DEVICE_UUID_0=GPU-1", "TESSERA_DEVICE_UUID_0",
                "expected a GPU or MIG UUID"},
        BadCase{"TESSERA_DEVICE_UUID_0=", "TESSERA_DEVICE_UUID_0", "expected a GPU or MIG UUID"},
        BadCase{"TESSERA_DEVICE_UUID_0=gpu-00000000-1111-2222-3333-444444444444",
                "TESSERA_DEVICE_UUID_0", "expected a GPU or MIG UUID"},
        BadCase{"TESSERA_DEVICE_UUID=GPU-00000000-1111-2222-3333-444444444444",
                "TESSERA_DEVICE_UUID", "names no device"},
        BadCase{"TESSERA_DEVICE_UUID_16=GPU-00000000-1111-2222-3333-444444444444",
                "TESSERA_DEVICE_UUID_16", "device index"},
        BadCase{"TESSERA_DEVICE_UUID_1=GPU-00000000-1111-2222-3333-444444444444",
                "TESSERA_DEVICE_UUID_1", "without a gap"}));

constexpr char kUuidA[] = "GPU-00000000-1111-2222-3333-444444444444";
constexpr char kUuidB[] = "MIG-55555555-6666-7777-8888-999999999999";

TEST(ShimConfig, TheContainersDevicesAreTesseraDeviceUuidInOrder) {
  Config config = Parse({std::string("TESSERA_DEVICE_UUID_1=") + kUuidB,
                         std::string("TESSERA_DEVICE_UUID_0=") + kUuidA,
                         std::string("NVIDIA_VISIBLE_DEVICES=") + kUuidB});
  ASSERT_TRUE(config.errors.empty()) << config.errors.front();
  EXPECT_EQ(config.device_uuids, (std::vector<std::string>{kUuidA, kUuidB}));
  EXPECT_FALSE(config.any_limit) << "devices are not limits";
}

TEST(ShimConfig, WithoutThemNvidiaVisibleDevicesListsTheContainersDevices) {
  Config config = Parse({std::string("NVIDIA_VISIBLE_DEVICES=") + kUuidB + ", " + kUuidA});
  ASSERT_TRUE(config.errors.empty()) << config.errors.front();
  EXPECT_EQ(config.device_uuids, (std::vector<std::string>{kUuidB, kUuidA}));
  EXPECT_EQ(config.device_uuids_source, "NVIDIA_VISIBLE_DEVICES");
}

TEST(ShimConfig, NvidiaVisibleDevicesThatIsNotAListOfUuidsListsNothing) {
  const std::string uuid = kUuidA;
  for (const std::string& value : std::vector<std::string>{
           "all", "0,1", "none", "void", "", uuid + ",1", uuid + "," + uuid, uuid + ",,"}) {
    Config config = Parse({"NVIDIA_VISIBLE_DEVICES=" + value});
    EXPECT_TRUE(config.errors.empty()) << value << ": not the shim's variable, never an error";
    EXPECT_TRUE(config.device_uuids.empty()) << value;
  }
}

TEST(ShimConfig, ADeviceListedTwiceIsAnError) {
  Config config = Parse({std::string("TESSERA_DEVICE_UUID_0=") + kUuidA,
                         std::string("TESSERA_DEVICE_UUID_1=") + kUuidA});
  ASSERT_EQ(config.errors.size(), 1u);
  EXPECT_NE(config.errors[0].find("listed once"), std::string::npos) << config.errors[0];
  EXPECT_TRUE(config.device_uuids.empty());
}

TEST(ShimConfig, EveryBadVariableIsReportedNotJustTheFirst) {
  Config config = Parse({"CUDA_DEVICE_MEMORY_LIMIT=x", "CUDA_DEVICE_SM_LIMIT=y"});
  EXPECT_EQ(config.errors.size(), 2u);
}

TEST(ShimConfig, UnrelatedVariablesWithASimilarPrefixAreIgnored) {
  Config config = Parse({"CUDA_DEVICE_MEMORY_LIMITS=1", "CUDA_DEVICE_SM_LIMITER=2"});
  EXPECT_TRUE(config.errors.empty());
}

TEST(ShimConfig, LimiterVariables) {
  Config config = Parse(
      {"TESSERA_SM_WORK_CONSERVING=true", "CUDA_TASK_PRIORITY=1", "TESSERA_NODE_BOARD=/tmp/board"});
  ASSERT_TRUE(config.errors.empty());
  EXPECT_TRUE(config.work_conserving);
  EXPECT_EQ(config.task_priority, 1);
  EXPECT_EQ(config.node_board_path, "/tmp/board");
  Config defaults = Parse({});
  EXPECT_FALSE(defaults.work_conserving);
  EXPECT_EQ(defaults.task_priority, -1);
}

TEST(ShimConfig, BadLimiterVariablesAreErrorsNamingThem) {
  Config config =
      Parse({"TESSERA_SM_WORK_CONSERVING=maybe", "CUDA_TASK_PRIORITY=2", "TESSERA_NODE_BOARD="});
  ASSERT_EQ(config.errors.size(), 3u);
  EXPECT_NE(config.errors[0].find("TESSERA_SM_WORK_CONSERVING"), std::string::npos);
  EXPECT_NE(config.errors[1].find("CUDA_TASK_PRIORITY"), std::string::npos);
  EXPECT_NE(config.errors[2].find("TESSERA_NODE_BOARD"), std::string::npos);
}

// ---- The limits file ---------------------------------------------------------------------------
constexpr std::string_view kFile = "/etc/tessera/limits";
constexpr uint64_t kMiB = 1ull << 20;

Config WithFile(std::vector<std::string_view> environment, std::string_view text) {
  return ParseConfigWithLimitsFile(environment, kFile, text);
}

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(ShimLimitsFile, TakesTheEnvironmentSyntaxWithCommentsAndBlankLines) {
  Config config = WithFile({},
                           "# tessera-node: pod default/infer-0, container main\n"
                           "\n"
                           "CUDA_DEVICE_MEMORY_LIMIT_0=3000m\n"
                           "   # indented comment\n"
                           "CUDA_DEVICE_SM_LIMIT_0=30\n"
                           "CUDA_DEVICE_MEMORY_LIMIT=1GiB");
  ASSERT_TRUE(config.errors.empty()) << config.errors[0];
  EXPECT_EQ(config.limits_file, kFile);
  EXPECT_EQ(config.limits.devices[0].memory_bytes, 3000 * kMiB);
  EXPECT_EQ(config.limits.devices[0].sm_percent, 30u);
  EXPECT_EQ(config.limits.devices[1].memory_bytes, kGiB) << "the all-devices line, no newline";
  EXPECT_EQ(config.limits.devices[1].sm_percent, 0u);
  EXPECT_TRUE(config.any_limit);
}

TEST(ShimLimitsFile, ReplacesTheEnvironmentsLimitsEntirely) {
  Config config = WithFile({"CUDA_DEVICE_MEMORY_LIMIT=1t", "CUDA_DEVICE_MEMORY_LIMIT_0=1t",
                            "CUDA_DEVICE_SM_LIMIT=100", "CUDA_DEVICE_MEMORY_LIMIT_3=2g"},
                           "CUDA_DEVICE_MEMORY_LIMIT_0=3000m\nCUDA_DEVICE_SM_LIMIT_0=30\n");
  ASSERT_TRUE(config.errors.empty());
  EXPECT_EQ(config.limits.devices[0].memory_bytes, 3000 * kMiB);
  EXPECT_EQ(config.limits.devices[0].sm_percent, 30u);
  EXPECT_EQ(config.limits.devices[3].memory_bytes, 0u) << "a device the file leaves out has none";
  EXPECT_EQ(config.limits.devices[1].sm_percent, 0u);
  ASSERT_EQ(config.notices.size(), 1u);
  EXPECT_TRUE(Contains(config.notices[0], "ignored")) << config.notices[0];
}

TEST(ShimLimitsFile, AnEnvironmentThatAgreesWithTheFileIsNotMentioned) {
  Config config =
      WithFile({"CUDA_DEVICE_MEMORY_LIMIT_0=3000MiB"}, "CUDA_DEVICE_MEMORY_LIMIT_0=3000m");
  EXPECT_TRUE(config.errors.empty());
  EXPECT_TRUE(config.notices.empty());
}

TEST(ShimLimitsFile, BadLimitsInTheEnvironmentAreIgnoredNotErrors) {
  Config config = WithFile({"CUDA_DEVICE_MEMORY_LIMIT=lots"}, "CUDA_DEVICE_MEMORY_LIMIT=1g");
  EXPECT_TRUE(config.errors.empty());
  EXPECT_EQ(config.limits.devices[0].memory_bytes, kGiB);
  EXPECT_EQ(config.notices.size(), 1u);
}

TEST(ShimLimitsFile, DisableControlInTheEnvironmentIsIgnoredAndSaidOnce) {
  for (std::string_view value :
       {"CUDA_DISABLE_CONTROL=true", "CUDA_DISABLE_CONTROL=1", "CUDA_DISABLE_CONTROL=bogus"}) {
    Config config = WithFile({value, value}, "CUDA_DEVICE_MEMORY_LIMIT=1g");
    EXPECT_FALSE(config.disabled) << value;
    EXPECT_TRUE(config.errors.empty()) << value;
    ASSERT_EQ(config.notices.size(), 1u) << value;
    EXPECT_TRUE(Contains(config.notices[0], "CUDA_DISABLE_CONTROL")) << config.notices[0];
  }
}

TEST(ShimLimitsFile, TheEnvironmentsOtherVariablesStillApply) {
  Config config = WithFile({"CUDA_DEVICE_MEMORY_SHARED_CACHE=/run/tessera/region",
                            "CUDA_TASK_PRIORITY=1", "TESSERA_SM_WORK_CONSERVING=true"},
                           "CUDA_DEVICE_SM_LIMIT=20\n");
  ASSERT_TRUE(config.errors.empty());
  EXPECT_EQ(config.region_path, "/run/tessera/region");
  EXPECT_EQ(config.task_priority, 1);
  EXPECT_TRUE(config.work_conserving);
}

TEST(ShimLimitsFile, AnEmptyFileMeansNoLimitsButStillGoverns) {
  Config config =
      WithFile({"CUDA_DEVICE_MEMORY_LIMIT=1g", "CUDA_DISABLE_CONTROL=true"}, "# nothing\n\n");
  EXPECT_TRUE(config.errors.empty());
  EXPECT_FALSE(config.any_limit);
  EXPECT_FALSE(config.disabled);
}

struct BadLine {
  const char* text;
  int line;
  const char* says;
};

class ShimLimitsFileRejects : public ::testing::TestWithParam<BadLine> {};

TEST_P(ShimLimitsFileRejects, WithAMessageNamingTheFileAndLine) {
  Config config = WithFile({"CUDA_DISABLE_CONTROL=true"}, GetParam().text);
  ASSERT_FALSE(config.errors.empty()) << "a bad file fails closed";
  std::string where = std::string(kFile) + ":" + std::to_string(GetParam().line) + ": ";
  EXPECT_EQ(config.errors[0].rfind(where, 0), 0u) << config.errors[0];
  EXPECT_TRUE(Contains(config.errors[0], GetParam().says)) << config.errors[0];
  EXPECT_FALSE(config.disabled);
  for (const std::string& error : config.errors) {
    for (char c : error) EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << "printable: " << error;
  }
}

INSTANTIATE_TEST_SUITE_P(
    BadLines, ShimLimitsFileRejects,
    ::testing::Values(
        BadLine{"CUDA_DEVICE_MEMORY_LIMIT=lots\n", 1, "not a number"},
        BadLine{"# ok\nCUDA_DEVICE_MEMORY_LIMIT_0=0\n", 2, "zero"},
        BadLine{"\n\nCUDA_DEVICE_SM_LIMIT=150", 3, "percentage"},
        BadLine{"CUDA_DEVICE_MEMORY_LIMIT_99=1g", 1, "device index"},
        BadLine{"CUDA_DISABLE_CONTROL=true\n", 1, "may be set in a limits file"},
        BadLine{"CUDA_DEVICE_MEMORY_SHARED_CACHE=/tmp/x\n", 1, "may be set in a limits file"},
        BadLine{"TESSERA_LIMITS_FILE=/tmp/x\n", 1, "may be set in a limits file"},
        BadLine{"CUDA_DEVICE_MEMORY_LIMIT = 1g\n", 1, "may be set in a limits file"},
        BadLine{"CUDA_DEVICE_MEMORY_LIMIT=1g # trailing\n", 1, "unknown unit"},
        BadLine{"CUDA_DEVICE_MEMORY_LIMIT=1g\r\n", 1, "unknown unit"},
        BadLine{"just words\n", 1, "expected NAME=value"},
        BadLine{"CUDA_DEVICE_MEMORY_LIMIT_0=1g\nCUDA_DEVICE_MEMORY_LIMIT_0=2g\n", 2,
                "first on line 1"},
        BadLine{"CUDA_DEVICE_SM_LIMIT_1=10\nCUDA_DEVICE_SM_LIMIT_01=20\n", 2, "first on line 1"},
        BadLine{"\x01\xff\x7f=\x00\x02\n", 1, "may be set"},
        BadLine{"TESSERA_DEVICE_UUID_0=GPU-00000000-1111-2222-3333-444444444444\n"
                "TESSERA_DEVICE_UUID_0=GPU-55555555-6666-7777-8888-999999999999\n",
                2, "first on line 1"},
        BadLine{"TESSERA_DEVICE_UUID_0=GPU-0\n", 1, "expected a GPU or MIG UUID"}));

TEST(ShimLimitsFile, ItsDevicesWinOverTheEnvironments) {
  Config config = WithFile({std::string("TESSERA_DEVICE_UUID_0=") + kUuidB,
                            std::string("NVIDIA_VISIBLE_DEVICES=") + kUuidB},
                           std::string("TESSERA_DEVICE_UUID_0=") + kUuidA + "\n");
  ASSERT_TRUE(config.errors.empty()) << config.errors.front();
  EXPECT_EQ(config.device_uuids, (std::vector<std::string>{kUuidA}));
  EXPECT_EQ(config.notices.size(), 1u) << "the environment's other list is said to be ignored";
}

TEST(ShimLimitsFile, AFileWithoutDevicesLeavesThemToNvidiaVisibleDevices) {
  // As files written before TESSERA_DEVICE_UUID_<i> existed are, in pods that run on.
  Config config = WithFile({std::string("NVIDIA_VISIBLE_DEVICES=") + kUuidB},
                           "CUDA_DEVICE_MEMORY_LIMIT_0=1g\n");
  ASSERT_TRUE(config.errors.empty()) << config.errors.front();
  EXPECT_EQ(config.device_uuids, (std::vector<std::string>{kUuidB}));
}

TEST(ShimLimitsFile, GarbageGivesABoundedNumberOfMessages) {
  std::string garbage;
  for (int i = 0; i < 5000; ++i) garbage += "garbage line " + std::to_string(i) + "\n";
  Config config = WithFile({}, garbage);
  EXPECT_GE(config.errors.size(), 2u);
  EXPECT_LE(config.errors.size(), 10u);
}

// ---- Finding the file: the fixed path first, TESSERA_LIMITS_FILE only without it --------------
class ShimLimitsFileLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tessera-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    directory_ = pattern;
    fixed_ = directory_ + "/fixed";
    named_ = directory_ + "/named";
  }
  void TearDown() override {
    ::unlink(fixed_.c_str());
    ::unlink(named_.c_str());
    ::rmdir((directory_ + "/dir").c_str());
    ::rmdir(directory_.c_str());
  }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  Config Read(std::vector<std::string_view> environment) {
    return ReadConfig(environment, fixed_.c_str());
  }
  std::string directory_, fixed_, named_;
};

TEST_F(ShimLimitsFileLookup, WithoutAnyFileTheEnvironmentGoverns) {
  Config config = Read({"CUDA_DEVICE_MEMORY_LIMIT=2g", "CUDA_DISABLE_CONTROL=true"});
  EXPECT_TRUE(config.errors.empty());
  EXPECT_TRUE(config.limits_file.empty());
  EXPECT_EQ(config.limits.devices[0].memory_bytes, 2 * kGiB);
  EXPECT_TRUE(config.disabled);
}

TEST_F(ShimLimitsFileLookup, TheFixedPathIsAuthoritativeOverTheEnvironment) {
  Write(fixed_, "CUDA_DEVICE_MEMORY_LIMIT_0=3000m\n");
  Config config = Read({"CUDA_DEVICE_MEMORY_LIMIT=1t", "CUDA_DISABLE_CONTROL=true"});
  ASSERT_TRUE(config.errors.empty()) << config.errors[0];
  EXPECT_EQ(config.limits_file, fixed_);
  EXPECT_EQ(config.limits.devices[0].memory_bytes, 3000 * kMiB);
  EXPECT_FALSE(config.disabled);
}

TEST_F(ShimLimitsFileLookup, TesseraLimitsFileIsIgnoredWhenTheFixedPathExists) {
  Write(fixed_, "CUDA_DEVICE_MEMORY_LIMIT=1g\n");
  Write(named_, "CUDA_DEVICE_MEMORY_LIMIT=1t\n");
  std::string variable = "TESSERA_LIMITS_FILE=" + named_;
  Config config = Read({variable});
  ASSERT_TRUE(config.errors.empty());
  EXPECT_EQ(config.limits_file, fixed_);
  EXPECT_EQ(config.limits.devices[0].memory_bytes, kGiB);
  ASSERT_EQ(config.notices.size(), 1u);
  EXPECT_TRUE(Contains(config.notices[0], "TESSERA_LIMITS_FILE is ignored")) << config.notices[0];
  // Nor can it disable the fixed file by naming nothing or something missing.
  EXPECT_EQ(Read({"TESSERA_LIMITS_FILE="}).limits_file, fixed_);
  EXPECT_TRUE(Read({"TESSERA_LIMITS_FILE="}).errors.empty());
  EXPECT_EQ(Read({"TESSERA_LIMITS_FILE=/nonexistent"}).limits.devices[0].memory_bytes, kGiB);
}

TEST_F(ShimLimitsFileLookup, TesseraLimitsFileNamesTheFileWhenTheFixedPathIsMissing) {
  Write(named_, "CUDA_DEVICE_MEMORY_LIMIT=512m\n");
  std::string variable = "TESSERA_LIMITS_FILE=" + named_;
  Config config = Read({variable, "CUDA_DEVICE_MEMORY_LIMIT=1t", "CUDA_DISABLE_CONTROL=true"});
  ASSERT_TRUE(config.errors.empty());
  EXPECT_EQ(config.limits_file, named_);
  EXPECT_EQ(config.limits.devices[0].memory_bytes, 512 * kMiB);
  EXPECT_FALSE(config.disabled);
}

TEST_F(ShimLimitsFileLookup, AFileThatCannotBeReadFailsClosed) {
  std::string missing = "TESSERA_LIMITS_FILE=" + directory_ + "/missing";
  Config config = Read({missing, "CUDA_DISABLE_CONTROL=true"});
  ASSERT_FALSE(config.errors.empty());
  EXPECT_TRUE(Contains(config.errors[0], directory_ + "/missing")) << config.errors[0];
  EXPECT_FALSE(config.disabled);
  EXPECT_FALSE(Read({"TESSERA_LIMITS_FILE="}).errors.empty());
  // A directory where the file should be.
  ASSERT_EQ(::mkdir(fixed_.c_str(), 0755), 0);
  Config directory = Read({"CUDA_DISABLE_CONTROL=true"});
  ::rmdir(fixed_.c_str());
  ASSERT_FALSE(directory.errors.empty());
  EXPECT_TRUE(Contains(directory.errors[0], fixed_)) << directory.errors[0];
  EXPECT_FALSE(directory.disabled);
}

TEST_F(ShimLimitsFileLookup, ABadLineInTheFixedFileFailsClosedNamingTheLine) {
  Write(fixed_, "CUDA_DEVICE_MEMORY_LIMIT_0=3000m\nCUDA_DISABLE_CONTROL=true\n");
  Config config = Read({"CUDA_DISABLE_CONTROL=true"});
  ASSERT_EQ(config.errors.size(), 1u);
  EXPECT_EQ(config.errors[0].rfind(fixed_ + ":2: ", 0), 0u) << config.errors[0];
  EXPECT_FALSE(config.disabled);
}

TEST_F(ShimLimitsFileLookup, AnOversizedFileIsRefusedUnread) {
  Write(fixed_, std::string(kMaxLimitsFileBytes + 1, '#'));
  Config config = Read({});
  ASSERT_EQ(config.errors.size(), 1u);
  EXPECT_TRUE(Contains(config.errors[0], "larger than")) << config.errors[0];
}

TEST_F(ShimLimitsFileLookup, AFifoIsRefusedWithoutBlocking) {
  ASSERT_EQ(::mkfifo(fixed_.c_str(), 0600), 0);
  Config config = Read({});
  ASSERT_EQ(config.errors.size(), 1u);
  EXPECT_TRUE(Contains(config.errors[0], "not a regular file")) << config.errors[0];
}

TEST_F(ShimLimitsFileLookup, KeepsTheCallersErrno) {
  Write(fixed_, "CUDA_DEVICE_MEMORY_LIMIT=1g\n");
  errno = EAGAIN;
  Read({});
  EXPECT_EQ(errno, EAGAIN);
  errno = EAGAIN;
  std::string missing = "TESSERA_LIMITS_FILE=" + directory_ + "/missing";
  ::unlink(fixed_.c_str());
  Read({missing});
  EXPECT_EQ(errno, EAGAIN);
}

}  // namespace
}  // namespace tessera::shim
