// MIG in the device file: `mig=` puts a GPU in MIG mode with H100 80GB profiles, placed and sized
// as fakegpu/mig.h says.
#include "fakegpu/mig.h"

#include <gtest/gtest.h>

#include <set>

#include "fakegpu/config.h"

namespace tessera::fakegpu {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

std::vector<DeviceSpec> Parse(std::string_view text) {
  Result<std::vector<DeviceSpec>> parsed = ParseDeviceConfig(text, "devices.conf");
  EXPECT_TRUE(parsed.ok()) << parsed.status().message();
  return parsed.ok() ? *parsed : std::vector<DeviceSpec>{};
}

std::string ErrorOf(std::string_view text) {
  Result<std::vector<DeviceSpec>> parsed = ParseDeviceConfig(text, "devices.conf");
  return parsed.ok() ? "(parsed)" : parsed.status().message();
}

TEST(FakeGpuMig, ADeviceWithoutMigIsNotInMigMode) {
  std::vector<DeviceSpec> devices = Parse("device\n");
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_FALSE(devices[0].mig_enabled());
  EXPECT_EQ(devices[0].numa_node, 0u);
}

TEST(FakeGpuMig, InstancesTakeTheFirstPlacementsThatLetTheWholeLayoutFit) {
  // 3g.40gb first at 0 would leave no placement for the second 1g.10gb: it goes to 4.
  std::vector<DeviceSpec> devices = Parse("device mig=3g.40gb,2g.20gb,1g.10gb,1g.10gb\n");
  ASSERT_EQ(devices.size(), 1u);
  const std::vector<MigInstance>& mig = devices[0].mig;
  ASSERT_EQ(mig.size(), 4u);
  EXPECT_EQ(mig[0].profile->name, "3g.40gb");
  EXPECT_EQ(mig[0].placement_start, 4u);
  EXPECT_EQ(mig[0].gpu_instance_id, 2u);
  EXPECT_EQ(mig[1].profile->name, "2g.20gb");
  EXPECT_EQ(mig[1].placement_start, 0u);
  EXPECT_EQ(mig[1].gpu_instance_id, 3u);
  EXPECT_EQ(mig[2].placement_start, 2u);
  EXPECT_EQ(mig[3].placement_start, 3u);
  for (const MigInstance& instance : mig) EXPECT_EQ(instance.compute_instance_id, 0u);
  std::set<unsigned> ids;
  for (const MigInstance& instance : mig) ids.insert(instance.gpu_instance_id);
  EXPECT_EQ(ids.size(), mig.size()) << "GPU instance ids are unique on a GPU";
}

TEST(FakeGpuMig, InConfigOrderEachTakesItsFirstFreePlacement) {
  std::vector<DeviceSpec> devices = Parse("device mig=1g.10gb,1g.10gb,2g.20gb,3g.40gb\n");
  const std::vector<MigInstance>& mig = devices.at(0).mig;
  ASSERT_EQ(mig.size(), 4u);
  EXPECT_EQ(mig[0].placement_start, 0u);
  EXPECT_EQ(mig[1].placement_start, 1u);
  EXPECT_EQ(mig[2].placement_start, 2u);
  EXPECT_EQ(mig[3].placement_start, 4u);
}

TEST(FakeGpuMig, AnH100sProfilesHaveItsSizesSlicesAndPlacements) {
  std::vector<DeviceSpec> devices = Parse(
      "device mig=7g.80gb\n"
      "device mig=4g.40gb,3g.40gb\n"
      "device mig=1g.20gb,1g.20gb,1g.20gb,1g.20gb\n");
  ASSERT_EQ(devices.size(), 3u);
  const MigInstance& whole = devices[0].mig.at(0);
  EXPECT_EQ(whole.memory_bytes, 80 * kGiB);
  EXPECT_EQ(whole.multiprocessors, 132u);
  EXPECT_EQ(whole.gpu_instance_id, 0u);
  EXPECT_EQ(devices[1].mig.at(0).memory_bytes, 40 * kGiB);
  EXPECT_EQ(devices[1].mig.at(0).multiprocessors, 64u);
  EXPECT_EQ(devices[1].mig.at(1).memory_bytes, 40 * kGiB);
  EXPECT_EQ(devices[1].mig.at(1).multiprocessors, 60u);
  EXPECT_EQ(devices[1].mig.at(1).placement_start, 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(devices[2].mig.at(i).memory_bytes, 20 * kGiB);
    EXPECT_EQ(devices[2].mig.at(i).multiprocessors, 26u);
    EXPECT_EQ(devices[2].mig.at(i).placement_start, 2 * i);
  }
  const MigProfile* one = FindMigProfileByName("1g.10gb");
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->id, 19u);
  EXPECT_EQ(one->placement_count, 7u);
  EXPECT_EQ(one->placement_starts[6], 6u);
  EXPECT_EQ(FindMigProfileByName("2g.20gb")->placement_starts[2], 4u);
  EXPECT_EQ(FindMigProfileById(9)->name, "3g.40gb");
  EXPECT_EQ(FindMigProfileByNvmlProfile(0x9)->name, "1g.20gb");  // 1_SLICE_REV2
  EXPECT_EQ(FindMigProfileByNvmlProfile(0x7), nullptr);  // 1_SLICE_REV1 is 1g.10gb+me, not offered
}

TEST(FakeGpuMig, MemoryAndSmsScaleWithTheDevice) {
  std::vector<DeviceSpec> devices =
      Parse("device memory=40GiB sms=66 mig=3g.40gb,1g.10gb,1g.10gb\n");
  const std::vector<MigInstance>& mig = devices.at(0).mig;
  ASSERT_EQ(mig.size(), 3u);
  EXPECT_EQ(mig[0].memory_bytes, 20 * kGiB);
  EXPECT_EQ(mig[0].multiprocessors, 30u);
  EXPECT_EQ(mig[1].memory_bytes, 5 * kGiB);
  EXPECT_EQ(mig[1].multiprocessors, 8u);
}

TEST(FakeGpuMig, MigUuidsComeFromTheGpuUuidAndTheInstanceId) {
  std::vector<DeviceSpec> first = Parse("device mig=1g.10gb,1g.10gb\ndevice mig=1g.10gb\n");
  std::vector<DeviceSpec> again = Parse("device mig=1g.10gb,1g.10gb\ndevice mig=1g.10gb\n");
  ASSERT_EQ(first.size(), 2u);
  std::string uuid = FormatMigUuid(first[0].mig[0].uuid);
  EXPECT_EQ(uuid.size(), 40u);
  EXPECT_EQ(uuid.substr(0, 4), "MIG-");
  EXPECT_EQ(uuid[12], '-');
  EXPECT_EQ(uuid, FormatMigUuid(again[0].mig[0].uuid)) << "the same in every process";
  EXPECT_EQ(first[0].mig[0].uuid, MigUuid(first[0].uuid, first[0].mig[0].gpu_instance_id));
  EXPECT_NE(first[0].mig[0].uuid, first[0].mig[1].uuid);
  EXPECT_NE(first[0].mig[0].uuid, first[1].mig[0].uuid) << "another GPU, the same instance id";
  EXPECT_NE(first[0].mig[0].uuid, first[0].uuid);
}

TEST(FakeGpuMig, NumaNodeIsAKey) {
  std::vector<DeviceSpec> devices = Parse("device numa=1\ndevice numa=0\n");
  EXPECT_EQ(devices.at(0).numa_node, 1u);
  EXPECT_NE(ErrorOf("device numa=64\n").find("devices.conf:1: numa=\"64\": is out of range"),
            std::string::npos)
      << ErrorOf("device numa=64\n");
}

TEST(FakeGpuMig, BadLayoutsAreRefusedNamingTheFileTheLineAndTheValue) {
  EXPECT_EQ(ErrorOf("device\ndevice mig=3g.40gb,5g.50gb\n"),
            "devices.conf:2: mig=3g.40gb,5g.50gb: unknown profile \"5g.50gb\"; expected 1g.10gb, "
            "1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb or 7g.80gb");
  EXPECT_EQ(ErrorOf("device mig=4g.40gb,4g.40gb\n"),
            "devices.conf:1: mig=4g.40gb,4g.40gb does not fit on one GPU: 4g.40gb (instance 2) has "
            "no free placement beside the instances before it (a GPU has 7 compute and 8 memory "
            "slices)");
  EXPECT_NE(ErrorOf("device mig=7g.80gb,1g.10gb\n").find("1g.10gb (instance 2) has no free"),
            std::string::npos);
  EXPECT_NE(ErrorOf("device mig=3g.40gb,3g.40gb,1g.10gb\n").find("(instance 3)"),
            std::string::npos);
  std::string eight = "device mig=1g.10gb";
  for (int i = 0; i < 7; ++i) eight += ",1g.10gb";
  EXPECT_NE(ErrorOf(eight + "\n").find("1g.10gb (instance 8) has no free placement"),
            std::string::npos);
  EXPECT_NE(ErrorOf("device mig=1g.10gb,,1g.10gb\n")
                .find("devices.conf:1: mig=1g.10gb,,1g.10gb has an empty profile"),
            std::string::npos);
  EXPECT_NE(ErrorOf("device mig=\n").find("devices.conf:1: mig= is empty"), std::string::npos);
}

TEST(FakeGpuMig, OnlyADeviceWithEnoughMemoryAndSmsCanBeInMigMode) {
  EXPECT_EQ(ErrorOf("device memory=4GiB mig=1g.10gb\n"),
            "devices.conf:1: mig=1g.10gb: MIG needs a device with memory of at least 8GiB and sms "
            "of at least 14 (this one has 4096 MiB and 132 SMs)");
  EXPECT_NE(ErrorOf("device sms=8 mig=1g.10gb\n").find("8 SMs"), std::string::npos);
  EXPECT_EQ(ErrorOf("device memory=8GiB sms=14 mig=7g.80gb\n"), "(parsed)");
  std::string long_name(90, 'x');
  EXPECT_NE(
      ErrorOf("device name=\"" + long_name + "\" mig=1g.10gb\n").find("name is too long for MIG"),
      std::string::npos);
}

}  // namespace
}  // namespace tessera::fakegpu
