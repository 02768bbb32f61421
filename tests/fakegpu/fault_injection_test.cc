// TESSERA_FAKEGPU_FAULTS in effect on the fake libcuda.so.1 (set here via tesseraFakeSetFaults,
// which takes the same syntax).
#include "fake_gpu_test_support.h"

namespace tessera::fakegpu {
namespace {

using FakeGpuFaults = FakeGpuTest;

TEST_F(FakeGpuFaults, TheNthCallReturnsTheCodeWithoutDoingTheWork) {
  InitWithContext();
  uint64_t before = UsedBytes();
  ASSERT_EQ(tesseraFakeSetFaults("cuMemAlloc_v2:2=2"), 0);
  CUdeviceptr first = 0, second = 0, third = 0;
  EXPECT_EQ(cuMemAlloc_v2(&first, kMiB), CUDA_SUCCESS);
  EXPECT_EQ(cuMemAlloc_v2(&second, kMiB), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(second, 0u);
  EXPECT_EQ(cuMemAlloc_v2(&third, kMiB), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 4 * kMiB);
}

TEST_F(FakeGpuFaults, NPlusFailsThatCallAndEveryLaterOne) {
  ASSERT_EQ(tesseraFakeSetFaults("cuDeviceGetCount:2+=999"), 0);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  int count = 0;
  EXPECT_EQ(cuDeviceGetCount(&count), CUDA_SUCCESS);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(cuDeviceGetCount(&count), CUDA_ERROR_UNKNOWN);
}

TEST_F(FakeGpuFaults, NullSucceedsButLeavesTheOutputNull) {
  InitWithContext();
  uint64_t before = UsedBytes();
  ASSERT_EQ(tesseraFakeSetFaults("cuMemAlloc_v2:1=null,cuStreamCreate:1=null"), 0);
  CUdeviceptr pointer = 12345;
  EXPECT_EQ(cuMemAlloc_v2(&pointer, kMiB), CUDA_SUCCESS);
  EXPECT_EQ(pointer, 0u);
  EXPECT_EQ(UsedBytes(), before);
  CUstream stream = reinterpret_cast<CUstream>(0x1234);
  EXPECT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  EXPECT_EQ(stream, nullptr);
}

TEST_F(FakeGpuFaults, NullOnAFunctionWithoutOutputSkipsTheWork) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kMiB), CUDA_SUCCESS);
  uint64_t held = UsedBytes();
  ASSERT_EQ(tesseraFakeSetFaults("cuMemFree_v2:1=null"), 0);
  EXPECT_EQ(cuMemFree_v2(pointer), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), held);
  EXPECT_EQ(cuMemFree_v2(pointer), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), held - 2 * kMiB);
}

TEST_F(FakeGpuFaults, LaunchesCanFail) {
  InitWithContext();
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module, "image"), CUDA_SUCCESS);
  ASSERT_EQ(cuModuleGetFunction(&function, module, "k"), CUDA_SUCCESS);
  ASSERT_EQ(tesseraFakeSetFaults("cuLaunchKernel:1=719"), 0);
  EXPECT_EQ(cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr),
            CUDA_ERROR_LAUNCH_FAILED);
  EXPECT_EQ(cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr), CUDA_SUCCESS);
}

TEST_F(FakeGpuFaults, CuInitCanFail) {
  ASSERT_EQ(tesseraFakeSetFaults("cuInit:1=100"), 0);
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  EXPECT_EQ(cuInit(0), CUDA_SUCCESS);
}

TEST_F(FakeGpuFaults, BadSyntaxIsReportedNamingTheVariableAndTheRule) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(tesseraFakeSetFaults("cuMemAlloc_v2:1=2,cuMemAllocc:1=2"), -1);
  std::string message = testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find("TESSERA_FAKEGPU_FAULTS"), std::string::npos) << message;
  EXPECT_NE(message.find("\"cuMemAllocc:1=2\""), std::string::npos) << message;
}

}  // namespace
}  // namespace tessera::fakegpu
