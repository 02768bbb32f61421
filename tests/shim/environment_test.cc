// The environment contract's writer against its reader: whatever `tessera run` sets and
// tessera-node writes, the shim parses back to exactly the limits meant.
#include "shim/environment.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "shim/config.h"

namespace tessera::shim {
namespace {

std::vector<std::string_view> Views(const std::vector<std::string>& assignments) {
  return {assignments.begin(), assignments.end()};
}

void ExpectSameLimits(const region::RegionConfig& parsed, const region::RegionConfig& meant) {
  for (int device = 0; device < region::kMaxDevices; ++device) {
    EXPECT_EQ(parsed.devices[device].memory_bytes, meant.devices[device].memory_bytes)
        << "device " << device;
    EXPECT_EQ(parsed.devices[device].sm_percent, meant.devices[device].sm_percent)
        << "device " << device;
  }
}

// Random limits: each device limited or not in memory (whole MiB, or any byte count) and in
// compute.
region::RegionConfig RandomLimits(std::mt19937_64& rng) {
  region::RegionConfig limits;
  for (int device = 0; device < region::kMaxDevices; ++device) {
    switch (rng() % 3) {
      case 0:
        break;
      case 1:
        limits.devices[device].memory_bytes = (1 + rng() % (1u << 20)) << 20;
        break;
      default:
        limits.devices[device].memory_bytes = 1 + rng() % (uint64_t{1} << 44);
    }
    if (rng() % 2) limits.devices[device].sm_percent = static_cast<uint32_t>(1 + rng() % 100);
  }
  return limits;
}

TEST(ShimEnvironment, AssignmentsParseBackToTheSameLimits) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 500; ++round) {
    const region::RegionConfig limits = RandomLimits(rng);
    const std::vector<std::string> assignments = LimitAssignments(limits);
    Config config = ParseConfig(Views(assignments));
    ASSERT_TRUE(config.errors.empty()) << config.errors.front();
    ExpectSameLimits(config.limits, limits);
  }
}

TEST(ShimEnvironment, ALimitsFileParsesBackToTheSameLimits) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 500; ++round) {
    const region::RegionConfig limits = RandomLimits(rng);
    const std::string text = FormatLimitsFile(limits, {}, "pod ns/p container main");
    Config config = ParseConfigWithLimitsFile({}, "/etc/tessera/limits", text);
    ASSERT_TRUE(config.errors.empty()) << config.errors.front() << "\n" << text;
    ExpectSameLimits(config.limits, limits);
  }
}

TEST(ShimEnvironment, WholeMebibytesAreWrittenInMebibytes) {
  region::RegionConfig limits;
  limits.devices[0].memory_bytes = uint64_t{3000} << 20;
  limits.devices[0].sm_percent = 30;
  limits.devices[2].memory_bytes = 1000;
  EXPECT_EQ(FormatLimitsFile(limits, {}, "a comment"),
            "# a comment\n"
            "CUDA_DEVICE_MEMORY_LIMIT_0=3000m\n"
            "CUDA_DEVICE_SM_LIMIT_0=30\n"
            "CUDA_DEVICE_MEMORY_LIMIT_2=1000\n");
}

TEST(ShimEnvironment, NoLimitsWriteNothingButTheComment) {
  EXPECT_EQ(FormatLimitsFile(region::RegionConfig{}, {}, ""), "");
  EXPECT_TRUE(LimitAssignments(region::RegionConfig{}).empty());
}

TEST(ShimEnvironment, TheContainersDevicesParseBackInOrder) {
  const std::vector<std::string> uuids = {"MIG-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
                                          "GPU-ffffffff-0000-1111-2222-333333333333"};
  region::RegionConfig limits;
  limits.devices[1].memory_bytes = uint64_t{2} << 30;
  const std::string text = FormatLimitsFile(limits, uuids, "");
  EXPECT_EQ(text.substr(0, text.find("CUDA_")),
            "TESSERA_DEVICE_UUID_0=" + uuids[0] + "\nTESSERA_DEVICE_UUID_1=" + uuids[1] + "\n");
  Config config = ParseConfigWithLimitsFile({}, "/etc/tessera/limits", text);
  ASSERT_TRUE(config.errors.empty()) << config.errors.front();
  EXPECT_EQ(config.device_uuids, uuids);
  EXPECT_EQ(config.device_uuids_source, "/etc/tessera/limits");
  ExpectSameLimits(config.limits, limits);
}

// Every name the reader takes a limit from is among the names a writer clears first.
TEST(ShimEnvironment, LimitVariableNamesCoverEveryNameTheReaderTakes) {
  const std::vector<std::string> names = LimitVariableNames();
  EXPECT_EQ(names.size(), 2u * (1 + region::kMaxDevices));
  for (const std::string& name : names) {
    const std::string assignment = name + "=1";
    Config config = ParseConfig({assignment});
    EXPECT_TRUE(config.errors.empty()) << name;
    EXPECT_TRUE(config.any_limit) << name;
  }
}

}  // namespace
}  // namespace tessera::shim
