#include "shim/config.h"

#include <gtest/gtest.h>

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
        BadCase{"CUDA_DISABLE_CONTROL=", "CUDA_DISABLE_CONTROL", "true or false"}));

TEST(ShimConfig, EveryBadVariableIsReportedNotJustTheFirst) {
  Config config = Parse({"CUDA_DEVICE_MEMORY_LIMIT=x", "CUDA_DEVICE_SM_LIMIT=y"});
  EXPECT_EQ(config.errors.size(), 2u);
}

TEST(ShimConfig, UnrelatedVariablesWithASimilarPrefixAreIgnored) {
  Config config = Parse({"CUDA_DEVICE_MEMORY_LIMITS=1", "CUDA_DEVICE_SM_LIMITER=2"});
  EXPECT_TRUE(config.errors.empty());
}

TEST(ShimConfig, LimiterVariables) {
  Config config = Parse({"TESSERA_SM_WORK_CONSERVING=true", "CUDA_TASK_PRIORITY=1",
                         "TESSERA_NODE_BOARD=/tmp/board"});
  ASSERT_TRUE(config.errors.empty());
  EXPECT_TRUE(config.work_conserving);
  EXPECT_EQ(config.task_priority, 1);
  EXPECT_EQ(config.node_board_path, "/tmp/board");
  Config defaults = Parse({});
  EXPECT_FALSE(defaults.work_conserving);
  EXPECT_EQ(defaults.task_priority, -1);
}

TEST(ShimConfig, BadLimiterVariablesAreErrorsNamingThem) {
  Config config = Parse({"TESSERA_SM_WORK_CONSERVING=maybe", "CUDA_TASK_PRIORITY=2",
                         "TESSERA_NODE_BOARD="});
  ASSERT_EQ(config.errors.size(), 3u);
  EXPECT_NE(config.errors[0].find("TESSERA_SM_WORK_CONSERVING"), std::string::npos);
  EXPECT_NE(config.errors[1].find("CUDA_TASK_PRIORITY"), std::string::npos);
  EXPECT_NE(config.errors[2].find("TESSERA_NODE_BOARD"), std::string::npos);
}

}  // namespace
}  // namespace tessera::shim
