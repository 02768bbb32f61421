// MIG devices through NVML and CUDA: a GPU in MIG mode lists its MIG devices, and a MIG device
// given to a process is one CUDA device with the instance's name, SMs, UUID and memory, which runs
// out at the instance's size.
#include <array>
#include <cstring>

#include "cuda/nvml_api.h"
#include "fake_gpu_test_support.h"
#include "fakegpu/config.h"

namespace tessera::fakegpu {
namespace {

constexpr uint64_t kContextBytes = 256 * kMiB;
// GPU 0 whole; GPU 1 in MIG mode: 3g.40gb at 4 (GI 2), 2g.20gb at 0 (GI 3), 1g.10gb at 2 and 3
// (GI 9 and 10).
constexpr const char* kConfig =
    "device\n"
    "device mig=3g.40gb,2g.20gb,1g.10gb,1g.10gb\n";

class FakeGpuMigDevices : public FakeGpuTest {
 protected:
  void SetUp() override {
    FakeGpuTest::SetUp();
    UseConfig(kConfig);
    Result<std::vector<DeviceSpec>> node = ParseDeviceConfig(kConfig, "x");
    ASSERT_TRUE(node.ok());
    node_ = *node;
  }

  void TearDown() override {
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    FakeGpuTest::TearDown();
  }

  std::string GpuUuid(int gpu) const { return FormatUuid(node_[static_cast<size_t>(gpu)].uuid); }
  std::string MigUuid(int mig) const {
    return FormatMigUuid(node_[1].mig[static_cast<size_t>(mig)].uuid);
  }

  static nvmlDevice_t Gpu(unsigned index) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(index, &device), NVML_SUCCESS);
    return device;
  }

  static nvmlDevice_t MigDevice(nvmlDevice_t gpu, unsigned index) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(nvmlDeviceGetMigDeviceHandleByIndex(gpu, index, &device), NVML_SUCCESS);
    return device;
  }

  static std::string Uuid(nvmlDevice_t device) {
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
    EXPECT_EQ(nvmlDeviceGetUUID(device, uuid, sizeof uuid), NVML_SUCCESS);
    return uuid;
  }

  static std::string Name(nvmlDevice_t device) {
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
    EXPECT_EQ(nvmlDeviceGetName(device, name, sizeof name), NVML_SUCCESS);
    return name;
  }

  static std::string CudaUuid(CUdevice device) {
    CUuuid uuid{};
    EXPECT_EQ(cuDeviceGetUuid_v2(&uuid, device), CUDA_SUCCESS);
    std::array<unsigned char, 16> bytes{};
    std::memcpy(bytes.data(), uuid.bytes, bytes.size());
    return FormatMigUuid(bytes);
  }

  std::vector<DeviceSpec> node_;
};

TEST_F(FakeGpuMigDevices, NvmlListsTheMigDevicesOfAGpuInMigMode) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  unsigned current = 9, pending = 9;
  ASSERT_EQ(nvmlDeviceGetMigMode(Gpu(1), &current, &pending), NVML_SUCCESS);
  EXPECT_EQ(current, static_cast<unsigned>(NVML_DEVICE_MIG_ENABLE));
  EXPECT_EQ(pending, static_cast<unsigned>(NVML_DEVICE_MIG_ENABLE));
  unsigned max = 0;
  ASSERT_EQ(nvmlDeviceGetMaxMigDeviceCount(Gpu(1), &max), NVML_SUCCESS);
  EXPECT_EQ(max, 7u);

  const unsigned expected_ids[] = {2, 3, 9, 10};
  const uint64_t expected_gib[] = {40, 20, 10, 10};
  const unsigned expected_sms[] = {60, 32, 16, 16};
  const char* expected_profiles[] = {"3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"};
  for (unsigned i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    nvmlDevice_t mig = MigDevice(Gpu(1), i);
    unsigned is_mig = 0;
    ASSERT_EQ(nvmlDeviceIsMigDeviceHandle(mig, &is_mig), NVML_SUCCESS);
    EXPECT_EQ(is_mig, 1u);
    nvmlDevice_t parent = nullptr;
    ASSERT_EQ(nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig, &parent), NVML_SUCCESS);
    EXPECT_EQ(parent, Gpu(1));
    unsigned gi = 0, ci = 9;
    ASSERT_EQ(nvmlDeviceGetGpuInstanceId(mig, &gi), NVML_SUCCESS);
    ASSERT_EQ(nvmlDeviceGetComputeInstanceId(mig, &ci), NVML_SUCCESS);
    EXPECT_EQ(gi, expected_ids[i]);
    EXPECT_EQ(ci, 0u);
    EXPECT_EQ(Uuid(mig), MigUuid(static_cast<int>(i)));
    EXPECT_EQ(Name(mig), std::string("Tessera Fake H100 MIG ") + expected_profiles[i]);
    nvmlDevice_t by_uuid = nullptr;
    ASSERT_EQ(nvmlDeviceGetHandleByUUID(Uuid(mig).c_str(), &by_uuid), NVML_SUCCESS);
    EXPECT_EQ(by_uuid, mig);
    nvmlMemory_t memory{};
    ASSERT_EQ(nvmlDeviceGetMemoryInfo(mig, &memory), NVML_SUCCESS);
    EXPECT_EQ(memory.total, expected_gib[i] * kGiB);
    EXPECT_EQ(memory.used, 0u);
    nvmlDeviceAttributes_t attributes{};
    ASSERT_EQ(nvmlDeviceGetAttributes_v2(mig, &attributes), NVML_SUCCESS);
    EXPECT_EQ(attributes.multiprocessorCount, expected_sms[i]);
    EXPECT_EQ(attributes.memorySizeMB, expected_gib[i] * 1024);
    EXPECT_EQ(attributes.gpuInstanceSliceCount, expected_profiles[i][0] - '0');
  }
  nvmlDevice_t missing = nullptr;
  EXPECT_EQ(nvmlDeviceGetMigDeviceHandleByIndex(Gpu(1), 4, &missing), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(nvmlDeviceGetMigDeviceHandleByIndex(Gpu(1), 7, &missing), NVML_ERROR_INVALID_ARGUMENT);
  nvmlMemory_t whole{};
  ASSERT_EQ(nvmlDeviceGetMemoryInfo(Gpu(1), &whole), NVML_SUCCESS);
  EXPECT_EQ(whole.total, 80 * kGiB);
}

TEST_F(FakeGpuMigDevices, AGpuNotInMigModeAnswersAsARealOneDoes) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t gpu = Gpu(0);
  unsigned current = 9, pending = 9;
  ASSERT_EQ(nvmlDeviceGetMigMode(gpu, &current, &pending), NVML_SUCCESS);
  EXPECT_EQ(current, static_cast<unsigned>(NVML_DEVICE_MIG_DISABLE));
  EXPECT_EQ(pending, static_cast<unsigned>(NVML_DEVICE_MIG_DISABLE));
  unsigned max = 9;
  ASSERT_EQ(nvmlDeviceGetMaxMigDeviceCount(gpu, &max), NVML_SUCCESS);
  EXPECT_EQ(max, 0u);
  nvmlDevice_t mig = nullptr;
  EXPECT_EQ(nvmlDeviceGetMigDeviceHandleByIndex(gpu, 0, &mig), NVML_ERROR_NOT_FOUND);
  unsigned is_mig = 9, id = 0;
  ASSERT_EQ(nvmlDeviceIsMigDeviceHandle(gpu, &is_mig), NVML_SUCCESS);
  EXPECT_EQ(is_mig, 0u);
  EXPECT_EQ(nvmlDeviceGetGpuInstanceId(gpu, &id), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(nvmlDeviceGetComputeInstanceId(gpu, &id), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(nvmlDeviceGetDeviceHandleFromMigDeviceHandle(gpu, &mig), NVML_ERROR_INVALID_ARGUMENT);
  nvmlDeviceAttributes_t attributes{};
  EXPECT_EQ(nvmlDeviceGetAttributes_v2(gpu, &attributes), NVML_ERROR_NOT_SUPPORTED);
  // A MIG device answers only what NVML answers for one.
  unsigned minor = 0;
  EXPECT_EQ(nvmlDeviceGetMinorNumber(MigDevice(Gpu(1), 0), &minor), NVML_ERROR_NOT_SUPPORTED);
}

TEST_F(FakeGpuMigDevices, ProfilesAndPlacementsAreAnH100s) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlGpuInstanceProfileInfo_t info{};
  ASSERT_EQ(nvmlDeviceGetGpuInstanceProfileInfo(Gpu(1), NVML_GPU_INSTANCE_PROFILE_3_SLICE, &info),
            NVML_SUCCESS);
  EXPECT_EQ(info.id, 9u);
  EXPECT_EQ(info.sliceCount, 3u);
  EXPECT_EQ(info.instanceCount, 2u);
  EXPECT_EQ(info.multiprocessorCount, 60u);
  EXPECT_EQ(info.memorySizeMB, 40u * 1024);
  ASSERT_EQ(
      nvmlDeviceGetGpuInstanceProfileInfo(Gpu(0), NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2, &info),
      NVML_SUCCESS)
      << "profiles answer for a GPU that could be in MIG mode";
  EXPECT_EQ(info.id, 15u);
  EXPECT_EQ(info.memorySizeMB, 20u * 1024);
  EXPECT_EQ(nvmlDeviceGetGpuInstanceProfileInfo(Gpu(1), NVML_GPU_INSTANCE_PROFILE_6_SLICE, &info),
            NVML_ERROR_NOT_SUPPORTED);

  unsigned count = 0;
  ASSERT_EQ(nvmlDeviceGetGpuInstancePossiblePlacements_v2(Gpu(1), 9, nullptr, &count),
            NVML_SUCCESS);
  ASSERT_EQ(count, 2u);
  nvmlGpuInstancePlacement_t placements[8] = {};
  ASSERT_EQ(nvmlDeviceGetGpuInstancePossiblePlacements_v2(Gpu(1), 9, placements, &count),
            NVML_SUCCESS);
  EXPECT_EQ(placements[0].start, 0u);
  EXPECT_EQ(placements[1].start, 4u);
  EXPECT_EQ(placements[1].size, 4u);
  count = 8;
  ASSERT_EQ(nvmlDeviceGetGpuInstancePossiblePlacements_v2(Gpu(1), 19, placements, &count),
            NVML_SUCCESS);
  EXPECT_EQ(count, 7u);
  EXPECT_EQ(placements[6].start, 6u);
  EXPECT_EQ(placements[6].size, 1u);
  count = 1;
  EXPECT_EQ(nvmlDeviceGetGpuInstancePossiblePlacements_v2(Gpu(1), 14, placements, &count),
            NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(count, 3u);
}

TEST_F(FakeGpuMigDevices, CudaEnumeratesMigDevicesInPlaceOfTheirGpu) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  int count = 0;
  ASSERT_EQ(cuDeviceGetCount(&count), CUDA_SUCCESS);
  ASSERT_EQ(count, 5);  // GPU 0, then GPU 1's four MIG devices
  char name[128];
  ASSERT_EQ(cuDeviceGetName(name, sizeof name, 1), CUDA_SUCCESS);
  EXPECT_STREQ(name, "Tessera Fake H100 MIG 3g.40gb");
  EXPECT_EQ(CudaUuid(4), MigUuid(3));
  size_t total = 0;
  ASSERT_EQ(cuDeviceTotalMem_v2(&total, 2), CUDA_SUCCESS);
  EXPECT_EQ(total, 20 * kGiB);
}

TEST_F(FakeGpuMigDevices, AMigDeviceGivenToAProcessIsItsOneCudaDeviceAndRunsOutAtItsSize) {
  setenv("NVIDIA_VISIBLE_DEVICES", MigUuid(1).c_str(), 1);  // the 2g.20gb
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  int count = 0;
  ASSERT_EQ(cuDeviceGetCount(&count), CUDA_SUCCESS);
  ASSERT_EQ(count, 1);
  char name[128];
  ASSERT_EQ(cuDeviceGetName(name, sizeof name, 0), CUDA_SUCCESS);
  EXPECT_STREQ(name, "Tessera Fake H100 MIG 2g.20gb");
  size_t total = 0;
  ASSERT_EQ(cuDeviceTotalMem_v2(&total, 0), CUDA_SUCCESS);
  EXPECT_EQ(total, 20 * kGiB);
  int sms = 0;
  ASSERT_EQ(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0), CUDA_SUCCESS);
  EXPECT_EQ(sms, 32);
  EXPECT_EQ(CudaUuid(0), MigUuid(1));
  CUuuid v1{};
  ASSERT_EQ(cuDeviceGetUuid(&v1, 0), CUDA_SUCCESS);
  EXPECT_EQ(std::memcmp(v1.bytes, node_[1].mig[1].uuid.data(), 16), 0);

  CUcontext context = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&context, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(context), CUDA_SUCCESS);
  size_t free = 0;
  ASSERT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_SUCCESS);
  EXPECT_EQ(total, 20 * kGiB);
  EXPECT_EQ(free, 20 * kGiB - kContextBytes);
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, 19 * kGiB), CUDA_SUCCESS);
  CUdeviceptr more = 0;
  EXPECT_EQ(cuMemAlloc_v2(&more, kGiB), CUDA_ERROR_OUT_OF_MEMORY)
      << "the GPU has 60 GiB free, the instance does not";
  EXPECT_EQ(cuMemAlloc_v2(&more, 512 * kMiB), CUDA_SUCCESS);

  // The node sees the instance's use, and the GPU's use includes it.
  StateSnapshot snapshot = Snapshot();
  uint64_t used = kContextBytes + 19 * kGiB + 512 * kMiB;
  EXPECT_EQ(snapshot.mig_instances.at(1).at(1).used_bytes, used);
  EXPECT_EQ(snapshot.mig_instances.at(1).at(0).used_bytes, 0u);
  EXPECT_EQ(snapshot.devices.at(1).used_bytes, used);
  EXPECT_EQ(snapshot.devices.at(0).used_bytes, 0u);

  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlMemory_t memory{};
  ASSERT_EQ(nvmlDeviceGetMemoryInfo(MigDevice(Gpu(0), 0), &memory), NVML_SUCCESS);
  EXPECT_EQ(memory.total, 20 * kGiB);
  EXPECT_EQ(memory.used, used);
  nvmlProcessInfo_t infos[4];
  unsigned processes = 4;
  ASSERT_EQ(nvmlDeviceGetComputeRunningProcesses_v3(MigDevice(Gpu(0), 0), &processes, infos),
            NVML_SUCCESS);
  ASSERT_EQ(processes, 1u);
  EXPECT_EQ(infos[0].pid, static_cast<unsigned>(getpid()));
  EXPECT_EQ(infos[0].usedGpuMemory, used);
  EXPECT_EQ(infos[0].gpuInstanceId, 3u);
  EXPECT_EQ(infos[0].computeInstanceId, 0u);
}

TEST_F(FakeGpuMigDevices, NvmlGivenAMigDeviceSeesItsGpuInMigModeWithJustThatDevice) {
  setenv("NVIDIA_VISIBLE_DEVICES", MigUuid(2).c_str(), 1);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  unsigned count = 0;
  ASSERT_EQ(nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(Uuid(Gpu(0)), GpuUuid(1));
  unsigned current = 0, pending = 0, minor = 0;
  ASSERT_EQ(nvmlDeviceGetMigMode(Gpu(0), &current, &pending), NVML_SUCCESS);
  EXPECT_EQ(current, static_cast<unsigned>(NVML_DEVICE_MIG_ENABLE));
  ASSERT_EQ(nvmlDeviceGetMinorNumber(Gpu(0), &minor), NVML_SUCCESS);
  EXPECT_EQ(minor, 1u) << "the GPU's index on the node: its /dev/nvidia1";
  EXPECT_EQ(Uuid(MigDevice(Gpu(0), 0)), MigUuid(2));
  nvmlDevice_t other = nullptr;
  EXPECT_EQ(nvmlDeviceGetMigDeviceHandleByIndex(Gpu(0), 1, &other), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(nvmlDeviceGetHandleByUUID(MigUuid(0).c_str(), &other), NVML_ERROR_NOT_FOUND)
      << "another container's MIG device";
  EXPECT_EQ(nvmlDeviceGetHandleByUUID(GpuUuid(0).c_str(), &other), NVML_ERROR_NOT_FOUND);
}

}  // namespace
}  // namespace tessera::fakegpu
