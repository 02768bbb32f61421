// The fake libnvidia-ml.so.1: the same devices and memory as the fake libcuda.so.1.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "cuda/nvml_api.h"
#include "fake_gpu_test_support.h"
#include "tests/support/child_process.h"

namespace tessera::fakegpu {
namespace {

using ChildProcess = ::tessera::testing::Child;

constexpr uint64_t kContextBytes = 256 * kMiB;

class FakeNvml : public FakeGpuTest {
 protected:
  void TearDown() override {
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    tesseraFakeNvmlSetFaults("");
    FakeGpuTest::TearDown();
  }

  nvmlDevice_t DeviceAt(unsigned index) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(index, &device), NVML_SUCCESS);
    return device;
  }
};

TEST_F(FakeNvml, CallsBeforeInitReturnUninitialized) {
  unsigned count = 0;
  EXPECT_EQ(nvmlDeviceGetCount_v2(&count), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(nvmlShutdown(), NVML_ERROR_UNINITIALIZED);
  EXPECT_STREQ(nvmlErrorString(NVML_ERROR_UNINITIALIZED), "Uninitialized");
}

TEST_F(FakeNvml, InitNestsLikeNvml) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  ASSERT_EQ(nvmlInitWithFlags(0), NVML_SUCCESS);
  ASSERT_EQ(nvmlShutdown(), NVML_SUCCESS);
  unsigned count = 0;
  EXPECT_EQ(nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  ASSERT_EQ(nvmlShutdown(), NVML_SUCCESS);
  EXPECT_EQ(nvmlDeviceGetCount_v2(&count), NVML_ERROR_UNINITIALIZED);
}

TEST_F(FakeNvml, SeesTheSameDevicesAndUuidsAsCuda) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  unsigned count = 0;
  ASSERT_EQ(nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  ASSERT_EQ(count, 2u);
  for (unsigned i = 0; i < count; ++i) {
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    ASSERT_EQ(nvmlDeviceGetUUID(DeviceAt(i), uuid, sizeof uuid), NVML_SUCCESS);
    CUuuid cuda_uuid{};
    ASSERT_EQ(cuDeviceGetUuid_v2(&cuda_uuid, static_cast<CUdevice>(i)), CUDA_SUCCESS);
    char expected[64];
    const auto* b = reinterpret_cast<const unsigned char*>(cuda_uuid.bytes);
    std::snprintf(expected, sizeof expected,
                  "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                  b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                  b[14], b[15]);
    EXPECT_STREQ(uuid, expected);
    nvmlDevice_t by_uuid = nullptr;
    ASSERT_EQ(nvmlDeviceGetHandleByUUID(uuid, &by_uuid), NVML_SUCCESS);
    EXPECT_EQ(by_uuid, DeviceAt(i));
    unsigned index = 99;
    ASSERT_EQ(nvmlDeviceGetIndex(by_uuid, &index), NVML_SUCCESS);
    EXPECT_EQ(index, i);
  }
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  ASSERT_EQ(nvmlDeviceGetName(DeviceAt(0), name, sizeof name), NVML_SUCCESS);
  EXPECT_STREQ(name, "Tessera Fake H100");
  EXPECT_EQ(nvmlDeviceGetName(DeviceAt(0), name, 4), NVML_ERROR_INSUFFICIENT_SIZE);
  nvmlDevice_t missing = nullptr;
  EXPECT_EQ(nvmlDeviceGetHandleByUUID("GPU-nope", &missing), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(2, &missing), NVML_ERROR_INVALID_ARGUMENT);
  char version[32];
  ASSERT_EQ(nvmlSystemGetDriverVersion(version, sizeof version), NVML_SUCCESS);
  EXPECT_STREQ(version, "580.65.06");
}

TEST_F(FakeNvml, MemoryInfoV1AndV2ReportNodeWideUse) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kGiB), CUDA_SUCCESS);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlMemory_t v1{};
  ASSERT_EQ(nvmlDeviceGetMemoryInfo(DeviceAt(0), &v1), NVML_SUCCESS);
  EXPECT_EQ(v1.total, 80 * kGiB);
  EXPECT_EQ(v1.used, kContextBytes + kGiB);
  EXPECT_EQ(v1.free, v1.total - v1.used);
  nvmlMemory_v2_t v2{};
  v2.version = nvmlMemory_v2;
  ASSERT_EQ(nvmlDeviceGetMemoryInfo_v2(DeviceAt(0), &v2), NVML_SUCCESS);
  EXPECT_EQ(v2.total, v1.total);
  EXPECT_EQ(v2.used, v1.used);
  EXPECT_EQ(v2.free, v1.free);
  EXPECT_EQ(v2.reserved, 0u);
}

TEST_F(FakeNvml, MemoryInfoV2RejectsAnotherStructVersion) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlMemory_v2_t memory{};
  memory.version = 1;
  EXPECT_EQ(nvmlDeviceGetMemoryInfo_v2(DeviceAt(0), &memory), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  memory.version = static_cast<unsigned>(sizeof(nvmlMemory_v2_t) | (1u << 24));
  EXPECT_EQ(nvmlDeviceGetMemoryInfo_v2(DeviceAt(0), &memory), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
}

TEST_F(FakeNvml, RunningProcessesFollowTheInsufficientSizeProtocol) {
  InitWithContext(1);
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, 3 * kMiB), CUDA_SUCCESS);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  unsigned count = 0;
  ASSERT_EQ(nvmlDeviceGetComputeRunningProcesses_v3(DeviceAt(1), &count, nullptr),
            NVML_ERROR_INSUFFICIENT_SIZE);
  ASSERT_EQ(count, 1u);
  nvmlProcessInfo_t info{};
  ASSERT_EQ(nvmlDeviceGetComputeRunningProcesses_v3(DeviceAt(1), &count, &info), NVML_SUCCESS);
  EXPECT_EQ(info.pid, static_cast<unsigned>(getpid()));
  EXPECT_EQ(info.usedGpuMemory, kContextBytes + 4 * kMiB);
  count = 0;
  EXPECT_EQ(nvmlDeviceGetComputeRunningProcesses_v3(DeviceAt(0), &count, nullptr), NVML_SUCCESS);
  EXPECT_EQ(count, 0u);  // nothing on device 0
}

TEST_F(FakeNvml, UtilizationIsZeroWhileNothingRuns) {
  InitWithContext();
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlUtilization_t utilization{7, 7};
  ASSERT_EQ(nvmlDeviceGetUtilizationRates(DeviceAt(0), &utilization), NVML_SUCCESS);
  EXPECT_EQ(utilization.gpu, 0u);
  EXPECT_EQ(utilization.memory, 0u);
  // A process that holds memory but ran nothing has no sample.
  unsigned count = 1;
  nvmlProcessUtilizationSample_t sample{};
  EXPECT_EQ(nvmlDeviceGetProcessUtilization(DeviceAt(0), &sample, &count, 0), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(count, 0u);
}

TEST_F(FakeNvml, SaturatingLoopMakesItsDeviceBusyAndLeavesTheOtherIdle) {
  InitWithContext();
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  CUmodule module = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module, "x"), CUDA_SUCCESS);
  CUfunction busy = nullptr;
  ASSERT_EQ(cuModuleGetFunction(&busy, module, "busy_us_50000"), CUDA_SUCCESS);
  // Keeps about 200 ms queued ahead, so the device never idles while the test polls.
  auto queued_until = std::chrono::steady_clock::now();
  unsigned last_gpu = 0;
  bool saturated = WaitFor([&] {
    while (queued_until < std::chrono::steady_clock::now() + std::chrono::milliseconds(200)) {
      EXPECT_EQ(cuLaunchKernel(busy, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr), CUDA_SUCCESS);
      queued_until =
          std::max(queued_until, std::chrono::steady_clock::now()) + std::chrono::milliseconds(50);
    }
    nvmlUtilization_t utilization{};
    EXPECT_EQ(nvmlDeviceGetUtilizationRates(DeviceAt(0), &utilization), NVML_SUCCESS);
    last_gpu = utilization.gpu;
    return utilization.gpu >= 90;
  });
  EXPECT_TRUE(saturated) << "gpu " << last_gpu << "%";
  nvmlUtilization_t other{7, 7};
  ASSERT_EQ(nvmlDeviceGetUtilizationRates(DeviceAt(1), &other), NVML_SUCCESS);
  EXPECT_EQ(other.gpu, 0u);
}

TEST_F(FakeNvml, ProcessUtilizationReportsTheProcessThatRanAfterAskingForTheCount) {
  InitWithContext();
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  CUmodule module = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module, "x"), CUDA_SUCCESS);
  CUfunction busy = nullptr;
  ASSERT_EQ(cuModuleGetFunction(&busy, module, "busy_us_400000"), CUDA_SUCCESS);
  ASSERT_EQ(cuLaunchKernel(busy, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);

  unsigned count = 0;
  ASSERT_EQ(nvmlDeviceGetProcessUtilization(DeviceAt(0), nullptr, &count, 0),
            NVML_ERROR_INSUFFICIENT_SIZE);
  ASSERT_EQ(count, 1u);
  nvmlProcessUtilizationSample_t sample{};
  ASSERT_EQ(nvmlDeviceGetProcessUtilization(DeviceAt(0), &sample, &count, 0), NVML_SUCCESS);
  EXPECT_EQ(sample.pid, static_cast<unsigned>(getpid()));
  EXPECT_GT(sample.smUtil, 0u);
  EXPECT_GT(sample.timeStamp, 0u);
  // The kernel has ended: nothing newer than its sample.
  count = 1;
  nvmlProcessUtilizationSample_t newer{};
  EXPECT_EQ(nvmlDeviceGetProcessUtilization(DeviceAt(0), &newer, &count, sample.timeStamp),
            NVML_ERROR_NOT_FOUND);
  count = 1;
  EXPECT_EQ(nvmlDeviceGetProcessUtilization(DeviceAt(1), &newer, &count, 0), NVML_ERROR_NOT_FOUND);
}

TEST_F(FakeNvml, ProcessUtilizationAttributesKernelsToTheProcessThatLaunchedThem) {
  InitWithContext();  // this process holds memory on device 0 but runs nothing
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  ChildProcess child({TESSERA_FAKEGPU_HELPER, "busy", "40", "50000"});  // 2 s of kernels
  std::string ready = child.ReadLine();
  ASSERT_EQ(ready.rfind("ready ", 0), 0u) << ready;
  unsigned child_pid = static_cast<unsigned>(std::stoi(ready.substr(6)));
  ASSERT_TRUE(child.WriteLine("go"));
  bool seen = WaitFor([&] {
    nvmlProcessUtilizationSample_t samples[8]{};
    unsigned count = 8;
    if (nvmlDeviceGetProcessUtilization(DeviceAt(0), samples, &count, 0) != NVML_SUCCESS) {
      return false;
    }
    bool child_ran = false;
    for (unsigned i = 0; i < count; ++i) {
      EXPECT_NE(samples[i].pid, static_cast<unsigned>(getpid()));
      if (samples[i].pid == child_pid && samples[i].smUtil > 0) child_ran = true;
    }
    return child_ran;
  });
  EXPECT_TRUE(seen);
}

TEST_F(FakeNvml, BadConfigMakesInitReturnDriverNotLoaded) {
  UseConfig("device sms=many\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(nvmlInit_v2(), NVML_ERROR_DRIVER_NOT_LOADED);
  std::string message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find("devices.conf:1: sms=\"many\""), std::string::npos) << message;
}

TEST_F(FakeNvml, FaultsApplyToNvmlFunctions) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  ASSERT_EQ(
      tesseraFakeNvmlSetFaults("nvmlDeviceGetCount_v2:1=999,nvmlDeviceGetHandleByIndex_v2:1=null"),
      0);
  unsigned count = 0;
  EXPECT_EQ(nvmlDeviceGetCount_v2(&count), NVML_ERROR_UNKNOWN);
  EXPECT_EQ(nvmlDeviceGetCount_v2(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 2u);
  nvmlDevice_t device = reinterpret_cast<nvmlDevice_t>(1);
  EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &device), NVML_SUCCESS);
  EXPECT_EQ(device, nullptr);
}

}  // namespace
}  // namespace tessera::fakegpu
