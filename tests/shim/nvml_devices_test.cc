// The shim's one owner of NVML state, against the fake GPU's NVML library: one initialisation for
// every user, handles found by UUID, a program's handles mapped back to container devices, and a
// fork child that starts again.
#include "shim/nvml_devices.h"

#include <gtest/gtest.h>

#include "shim/shim.h"
#include "tests/fakegpu/fake_gpu_test_support.h"

namespace tessera::shim {
namespace {

class NvmlDevicesTest : public fakegpu::FakeGpuTest {
 protected:
  void SetUp() override {
    FakeGpuTest::SetUp();
#define TESSERA_NVML_HOOK(name) table_.name = &::name;
#define TESSERA_NVML_CALL(name) table_.name = &::name;
#define TESSERA_CUDA_HOOK(name)
#define TESSERA_CUDA_CALL(name)
#include "shim/hooks.def"
  }
  void TearDown() override {
    tesseraFakeNvmlSetFaults("");
    // NvmlDevices never shuts NVML down (the shim's lives as long as the process): undo its
    // initialisations so that the next test's NVML starts from its own state file.
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    FakeGpuTest::TearDown();
  }

  // The UUID NVML gives GPU `index` of the fake node, through a program's own initialisation.
  std::string UuidOf(unsigned index) {
    EXPECT_EQ(nvmlInit_v2(), NVML_SUCCESS);
    nvmlDevice_t handle = nullptr;
    EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(index, &handle), NVML_SUCCESS);
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
    EXPECT_EQ(nvmlDeviceGetUUID(handle, uuid, sizeof uuid), NVML_SUCCESS);
    EXPECT_EQ(nvmlShutdown(), NVML_SUCCESS);
    return uuid;
  }

  NvmlTable table_{};
};

TEST_F(NvmlDevicesTest, InitialisesNvmlOnceForEveryDeviceAndCaller) {
  const std::string first = UuidOf(0);
  const std::string second = UuidOf(1);
  NvmlDevices devices(table_);
  devices.SetUuid(0, first);
  devices.SetUuid(1, second);
  // From here on, a second nvmlInit fails: two owners would each initialise NVML.
  ASSERT_EQ(tesseraFakeNvmlSetFaults("nvmlInit_v2:2+=999"), 0);
  nvmlDevice_t zero = devices.Handle(0);
  nvmlDevice_t one = devices.Handle(1);
  ASSERT_NE(zero, nullptr);
  ASSERT_NE(one, nullptr);
  EXPECT_NE(zero, one);
  EXPECT_EQ(devices.Handle(0), zero);
  EXPECT_EQ(devices.Uuid(1), second);
}

TEST_F(NvmlDevicesTest, ADeviceWithoutAKnownGpuHasNoHandle) {
  NvmlDevices devices(table_);
  EXPECT_EQ(devices.Handle(0), nullptr);  // no UUID yet
  devices.SetUuid(0, "GPU-00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(devices.Handle(0), nullptr);  // NVML knows no such GPU
}

TEST_F(NvmlDevicesTest, MapsAProgramsHandleBackToItsDeviceAskingTheRegionOnlyForUnboundGpus) {
  const std::string second = UuidOf(1);
  NvmlDevices devices(table_);
  devices.SetUuid(1, second);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);  // the program's own
  nvmlDevice_t program_zero = nullptr;
  nvmlDevice_t program_one = nullptr;
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &program_zero), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(1, &program_one), NVML_SUCCESS);
  int asked = 0;
  auto region = [&](const char*) {
    ++asked;
    return 0;  // another process bound GPU 0 as container device 0
  };
  EXPECT_EQ(devices.DeviceOf(program_one, region), 1);
  EXPECT_EQ(asked, 0);
  EXPECT_EQ(devices.DeviceOf(program_zero, region), 0);
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(devices.DeviceOf(program_zero, region), 0);
  EXPECT_EQ(asked, 1) << "the handle is remembered";
  EXPECT_EQ(devices.DeviceOf(nullptr, region), -1);
  EXPECT_EQ(nvmlShutdown(), NVML_SUCCESS);
}

TEST_F(NvmlDevicesTest, AForkChildInitialisesNvmlAgainAndKeepsTheUuids) {
  const std::string first = UuidOf(0);
  NvmlDevices devices(table_);
  devices.SetUuid(0, first);
  ASSERT_NE(devices.Handle(0), nullptr);
  devices.OnForkPrepare();
  devices.OnForkChild();  // as in the child: the parent's initialisation is not the child's
  ASSERT_EQ(tesseraFakeNvmlSetFaults("nvmlInit_v2:1=999"), 0);
  EXPECT_EQ(devices.Handle(0), nullptr) << "the child initialises NVML itself";
  ASSERT_EQ(tesseraFakeNvmlSetFaults(""), 0);
  EXPECT_NE(devices.Handle(0), nullptr);
  EXPECT_EQ(devices.Uuid(0), first);
}

}  // namespace
}  // namespace tessera::shim
