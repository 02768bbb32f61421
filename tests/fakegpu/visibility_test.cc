// NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES in effect: what a container's processes see of
// the node, renumbered from 0, while every process charges the node's physical devices.
#include <sys/wait.h>

#include <array>
#include <cstring>

#include "cuda/nvml_api.h"
#include "fake_gpu_test_support.h"
#include "fakegpu/config.h"
#include "tests/support/child_process.h"

namespace tessera::fakegpu {
namespace {

using ChildProcess = ::tessera::testing::Child;

constexpr uint64_t kContextBytes = 256 * kMiB;

class FakeGpuVisibility : public FakeGpuTest {
 protected:
  void TearDown() override {
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    FakeGpuTest::TearDown();
  }

  // The node's devices (the config in use, or the default two).
  static std::vector<DeviceSpec> Node() {
    Result<std::vector<DeviceSpec>> node = LoadDeviceConfig();
    EXPECT_TRUE(node.ok());
    return node.ok() ? *node : std::vector<DeviceSpec>{};
  }

  static std::string CudaUuid(CUdevice device) {
    CUuuid uuid{};
    EXPECT_EQ(cuDeviceGetUuid_v2(&uuid, device), CUDA_SUCCESS);
    std::array<unsigned char, 16> bytes{};
    std::memcpy(bytes.data(), uuid.bytes, bytes.size());
    return FormatUuid(bytes);
  }

  static int CudaCount() {
    int count = -1;
    EXPECT_EQ(cuDeviceGetCount(&count), CUDA_SUCCESS);
    return count;
  }

  static unsigned NvmlCount() {
    unsigned count = 99;
    EXPECT_EQ(nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
    return count;
  }

  static std::string NvmlUuid(unsigned index) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(index, &device), NVML_SUCCESS);
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
    EXPECT_EQ(nvmlDeviceGetUUID(device, uuid, sizeof uuid), NVML_SUCCESS);
    return uuid;
  }

  std::vector<std::string> Helper(std::vector<std::string> args) {
    args.insert(args.begin(), TESSERA_FAKEGPU_HELPER);
    return args;
  }
};

TEST_F(FakeGpuVisibility, AnIndexShowsThatGpuAsDeviceZeroToCudaAndNvml) {
  setenv("NVIDIA_VISIBLE_DEVICES", "1", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(CudaCount(), 1);
  EXPECT_EQ(CudaUuid(0), FormatUuid(Node()[1].uuid));
  char bus[16];
  ASSERT_EQ(cuDeviceGetPCIBusId(bus, sizeof bus, 0), CUDA_SUCCESS);
  EXPECT_STREQ(bus, "0000:19:00.0") << "the physical GPU's bus";
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  ASSERT_EQ(NvmlCount(), 1u);
  EXPECT_EQ(NvmlUuid(0), FormatUuid(Node()[1].uuid));
  nvmlDevice_t device = nullptr;
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &device), NVML_SUCCESS);
  unsigned index = 9, minor = 9;
  ASSERT_EQ(nvmlDeviceGetIndex(device, &index), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceGetMinorNumber(device, &minor), NVML_SUCCESS);
  EXPECT_EQ(index, 0u);
  EXPECT_EQ(minor, 1u);
  nvmlPciInfo_t pci{};
  ASSERT_EQ(nvmlDeviceGetPciInfo_v3(device, &pci), NVML_SUCCESS);
  EXPECT_STREQ(pci.busIdLegacy, "0000:19:00.0");
  EXPECT_STREQ(pci.busId, "00000000:19:00.0");
  nvmlDevice_t hidden = nullptr;
  EXPECT_EQ(nvmlDeviceGetHandleByUUID(FormatUuid(Node()[0].uuid).c_str(), &hidden),
            NVML_ERROR_NOT_FOUND);
}

TEST_F(FakeGpuVisibility, NumaNodesDecideTheCommonAncestorWhateverTheProcessSees) {
  UseConfig("device numa=0\ndevice numa=1\ndevice numa=1\n");
  setenv("NVIDIA_VISIBLE_DEVICES", "1,2", 1);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t first = nullptr, second = nullptr;
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &first), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(1, &second), NVML_SUCCESS);
  unsigned numa = 9;
  ASSERT_EQ(nvmlDeviceGetNumaNodeId(first, &numa), NVML_SUCCESS);
  EXPECT_EQ(numa, 1u);
  nvmlGpuTopologyLevel_t level = NVML_TOPOLOGY_SINGLE;
  ASSERT_EQ(nvmlDeviceGetTopologyCommonAncestor(first, second, &level), NVML_SUCCESS);
  EXPECT_EQ(level, NVML_TOPOLOGY_NODE);
  ASSERT_EQ(nvmlDeviceGetTopologyCommonAncestor(first, first, &level), NVML_SUCCESS);
  EXPECT_EQ(level, NVML_TOPOLOGY_INTERNAL);
  ASSERT_EQ(nvmlShutdown(), NVML_SUCCESS);
  unsetenv("NVIDIA_VISIBLE_DEVICES");
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &first), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(2, &second), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceGetTopologyCommonAncestor(first, second, &level), NVML_SUCCESS);
  EXPECT_EQ(level, NVML_TOPOLOGY_SYSTEM);
}

TEST_F(FakeGpuVisibility, AUuidChoosesItsGpuAndAllOrUnsetShowEveryGpu) {
  setenv("NVIDIA_VISIBLE_DEVICES", FormatUuid(Node()[0].uuid).c_str(), 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(CudaCount(), 1);
  EXPECT_EQ(CudaUuid(0), FormatUuid(Node()[0].uuid));
  tesseraFakeShutdown();
  setenv("NVIDIA_VISIBLE_DEVICES", "all", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(CudaCount(), 2);
  tesseraFakeShutdown();
  unsetenv("NVIDIA_VISIBLE_DEVICES");
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(CudaCount(), 2);
}

TEST_F(FakeGpuVisibility, NoneLeavesNoDevice) {
  for (const char* value : {"none", "void", ""}) {
    SCOPED_TRACE(value);
    setenv("NVIDIA_VISIBLE_DEVICES", value, 1);
    EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
    ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
    EXPECT_EQ(NvmlCount(), 0u);
    ASSERT_EQ(nvmlShutdown(), NVML_SUCCESS);
    tesseraFakeShutdown();
  }
}

TEST_F(FakeGpuVisibility, CudaVisibleDevicesNarrowsCudaButNotNvml) {
  UseConfig("device\ndevice\ndevice\n");
  setenv("NVIDIA_VISIBLE_DEVICES", "0,2", 1);
  setenv("CUDA_VISIBLE_DEVICES", "1", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(CudaCount(), 1);
  EXPECT_EQ(CudaUuid(0), FormatUuid(Node()[2].uuid)) << "CUDA's 1 is the container's second GPU";
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  EXPECT_EQ(NvmlCount(), 2u);
  tesseraFakeShutdown();

  setenv("CUDA_VISIBLE_DEVICES", "1,7,0", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(CudaCount(), 1) << "enumeration stops at the first invalid entry";
  tesseraFakeShutdown();

  setenv("CUDA_VISIBLE_DEVICES", "1,0", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(CudaCount(), 2);
  EXPECT_EQ(CudaUuid(0), FormatUuid(Node()[2].uuid));
  EXPECT_EQ(CudaUuid(1), FormatUuid(Node()[0].uuid));
  tesseraFakeShutdown();

  setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
}

TEST_F(FakeGpuVisibility, AMalformedValueIsReportedNamingTheVariableAndNothingStarts) {
  setenv("NVIDIA_VISIBLE_DEVICES", "0,gpu1", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  std::string cuda_message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(cuda_message.find("NVIDIA_VISIBLE_DEVICES=\"0,gpu1\": \"gpu1\" is not a device index"),
            std::string::npos)
      << cuda_message;
  EXPECT_EQ(cuda_message.find("NVIDIA_VISIBLE_DEVICES"),
            cuda_message.rfind("NVIDIA_VISIBLE_DEVICES="))
      << "said once: " << cuda_message;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(nvmlInit_v2(), NVML_ERROR_DRIVER_NOT_LOADED);
  std::string nvml_message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(nvml_message.find("NVIDIA_VISIBLE_DEVICES=\"0,gpu1\""), std::string::npos)
      << nvml_message;
}

TEST_F(FakeGpuVisibility, AnIndexPastTheNodesGpusIsRefusedRatherThanShowingAll) {
  ChildProcess child(Helper({"devices"}), ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=2"}));
  EXPECT_EQ(child.Finish(), 1);
  EXPECT_NE(child.output().find("NVIDIA_VISIBLE_DEVICES=\"2\": \"2\" names GPU 2, but the node "
                                "has 2 GPU(s) (0 to 1)"),
            std::string::npos)
      << child.output();
  EXPECT_NE(child.output().find("error cuInit 100"), std::string::npos) << child.output();
}

// Two containers given GPU 1 (by index and by UUID) and a third that reaches it through
// CUDA_VISIBLE_DEVICES all charge the same physical memory.
TEST_F(FakeGpuVisibility, ProcessesWithDifferentFiltersContendForTheSamePhysicalMemory) {
  UseConfig("device memory=8GiB\ndevice memory=8GiB\n");
  std::string gpu1 = FormatUuid(Node()[1].uuid);
  ChildProcess by_index(Helper({"hold", std::to_string(3 * kGiB)}),
                        ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=1"}));
  ASSERT_EQ(by_index.ReadLine(), "ready " + std::to_string(by_index.pid()));
  ChildProcess by_uuid(Helper({"hold", std::to_string(3 * kGiB)}),
                       ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=" + gpu1}));
  ASSERT_EQ(by_uuid.ReadLine(), "ready " + std::to_string(by_uuid.pid()));

  StateSnapshot snapshot = Snapshot();
  EXPECT_EQ(snapshot.devices.at(1).used_bytes, 2 * (kContextBytes + 3 * kGiB));
  EXPECT_EQ(snapshot.devices.at(0).used_bytes, 0u);

  ChildProcess third(Helper({"hold", std::to_string(2 * kGiB)}),
                     ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=0,1", "CUDA_VISIBLE_DEVICES=1"}));
  EXPECT_EQ(third.ReadLine(), "error cuMemAlloc_v2 2")
      << "1.25 GiB of GPU 1 is left after its context";
  EXPECT_EQ(third.Finish(), 1);

  // In this process GPU 1 is CUDA device 0 too, and its free memory is what the others left.
  setenv("NVIDIA_VISIBLE_DEVICES", gpu1.c_str(), 1);
  InitWithContext();
  size_t free = 0, total = 0;
  ASSERT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_SUCCESS);
  EXPECT_EQ(total, 8 * kGiB);
  EXPECT_EQ(free, 8 * kGiB - 3 * kContextBytes - 6 * kGiB);
  EXPECT_EQ(ProcessBytes(getpid(), 1), kContextBytes);
}

TEST_F(FakeGpuVisibility, ProcessesGivenOneMigDeviceByUuidAndByIndexShareItsMemory) {
  UseConfig("device mig=1g.10gb,1g.10gb\n");
  std::string mig1 = FormatMigUuid(Node()[0].mig[1].uuid);
  ChildProcess by_uuid(Helper({"hold", std::to_string(6 * kGiB)}),
                       ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=" + mig1}));
  ASSERT_EQ(by_uuid.ReadLine(), "ready " + std::to_string(by_uuid.pid()));
  ChildProcess by_index(Helper({"hold", std::to_string(4 * kGiB)}),
                        ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=0:1"}));
  EXPECT_EQ(by_index.ReadLine(), "error cuMemAlloc_v2 2")
      << "the instance's 10 GiB less 6.25 GiB less this context leave 3.5 GiB";
  ChildProcess other_instance(Helper({"hold", std::to_string(4 * kGiB)}),
                              ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=0:0"}));
  EXPECT_EQ(other_instance.ReadLine(), "ready " + std::to_string(other_instance.pid()));
  ChildProcess listing(Helper({"devices"}), ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=0:1"}));
  ASSERT_EQ(listing.Finish(), 0);
  EXPECT_NE(listing.output().find("count=1\ndevice=0 uuid=" + mig1 +
                                  " memory=" + std::to_string(10 * kGiB) +
                                  " sms=16 name=Tessera Fake H100 MIG 1g.10gb"),
            std::string::npos)
      << listing.output();
}

}  // namespace
}  // namespace tessera::fakegpu
