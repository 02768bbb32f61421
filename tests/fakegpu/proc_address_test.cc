// cuGetProcAddress answers from cuda/proc_address.def with the fake's own functions.
#include "fake_gpu_test_support.h"

namespace tessera::fakegpu {
namespace {

using FakeGpuProcAddress = FakeGpuTest;

void* Lookup(const char* symbol, int version, cuuint64_t flags,
             CUdriverProcAddressQueryResult* status, CUresult* result) {
  void* pointer = reinterpret_cast<void*>(1);
  *result = cuGetProcAddress_v2(symbol, &pointer, version, flags, status);
  return pointer;
}

TEST_F(FakeGpuProcAddress, PicksTheNewestVariantNoNewerThanTheCaller) {
  CUdriverProcAddressQueryResult status{};
  CUresult result;
  EXPECT_EQ(Lookup("cuCtxCreate", 13000, 0, &status, &result),
            reinterpret_cast<void*>(&cuCtxCreate_v4));
  EXPECT_EQ(result, CUDA_SUCCESS);
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SUCCESS);
  EXPECT_EQ(Lookup("cuCtxCreate", 12000, 0, &status, &result),
            reinterpret_cast<void*>(&cuCtxCreate_v3));
  EXPECT_EQ(Lookup("cuCtxCreate", 11040, 0, &status, &result),
            reinterpret_cast<void*>(&cuCtxCreate_v3));
  EXPECT_EQ(Lookup("cuCtxCreate", 11030, 0, &status, &result),
            reinterpret_cast<void*>(&cuCtxCreate_v2));
  void* pointer = nullptr;
  ASSERT_EQ(cuGetProcAddress("cuGetProcAddress", &pointer, 12000, 0), CUDA_SUCCESS);
  EXPECT_EQ(pointer, reinterpret_cast<void*>(&cuGetProcAddress_v2));
}

TEST_F(FakeGpuProcAddress, PerThreadDefaultStreamFlagPrefersThePtszVariant) {
  CUdriverProcAddressQueryResult status{};
  CUresult result;
  EXPECT_EQ(Lookup("cuLaunchKernel", 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &status,
                   &result),
            reinterpret_cast<void*>(&cuLaunchKernel_ptsz));
  EXPECT_EQ(Lookup("cuLaunchKernel", 13000, CU_GET_PROC_ADDRESS_DEFAULT, &status, &result),
            reinterpret_cast<void*>(&cuLaunchKernel));
  EXPECT_EQ(Lookup("cuLaunchKernel", 13000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &status, &result),
            reinterpret_cast<void*>(&cuLaunchKernel));
  // No ptsz row old enough: the legacy one.
  EXPECT_EQ(Lookup("cuLaunchKernel", 5000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &status,
                   &result),
            reinterpret_cast<void*>(&cuLaunchKernel));
  // No ptsz row at all: the only one.
  EXPECT_EQ(
      Lookup("cuMemFree", 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &status, &result),
      reinterpret_cast<void*>(&cuMemFree_v2));
}

TEST_F(FakeGpuProcAddress, AnOlderDriverLacksWhatCameAfterIt) {
  CUdriverProcAddressQueryResult status{};
  CUresult result;
  // The newest driver: a CUDA 13 caller's cuEventElapsedTime is the second version.
  EXPECT_EQ(Lookup("cuEventElapsedTime", 13000, 0, &status, &result),
            reinterpret_cast<void*>(&cuEventElapsedTime_v2));
  EXPECT_EQ(Lookup("cuEventElapsedTime", 12020, 0, &status, &result),
            reinterpret_cast<void*>(&cuEventElapsedTime));

  UseConfig("driver version=12020\ndevice\n");  // R535
  int version = 0;
  ASSERT_EQ(cuDriverGetVersion(&version), CUDA_SUCCESS);
  EXPECT_EQ(version, 12020);
  EXPECT_EQ(Lookup("cuEventElapsedTime", 13000, 0, &status, &result),
            reinterpret_cast<void*>(&cuEventElapsedTime));
  EXPECT_EQ(Lookup("cuCtxCreate", 13000, 0, &status, &result),
            reinterpret_cast<void*>(&cuCtxCreate_v3));
  InitWithContext();
  ASSERT_EQ(cuDriverGetVersion(&version), CUDA_SUCCESS);
  EXPECT_EQ(version, 12020);
  CUevent start = nullptr, end = nullptr;
  ASSERT_EQ(cuEventCreate(&start, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventCreate(&end, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(start, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(end, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuEventSynchronize(end), CUDA_SUCCESS);
  float milliseconds = -1;
  EXPECT_EQ(cuEventElapsedTime_v2(&milliseconds, start, end), CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(cuEventElapsedTime(&milliseconds, start, end), CUDA_SUCCESS);
  EXPECT_GE(milliseconds, 0.0f);
  CUcontext context = nullptr;
  EXPECT_EQ(cuCtxCreate_v4(&context, nullptr, 0, 0), CUDA_ERROR_NOT_FOUND);
}

TEST_F(FakeGpuProcAddress, StreamCaptureHasItsPerThreadStreamVariants) {
  CUdriverProcAddressQueryResult status{};
  CUresult result;
  EXPECT_EQ(Lookup("cuStreamBeginCapture", 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
                   &status, &result),
            reinterpret_cast<void*>(&cuStreamBeginCapture_v2_ptsz));
  EXPECT_EQ(Lookup("cuStreamEndCapture", 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
                   &status, &result),
            reinterpret_cast<void*>(&cuStreamEndCapture_ptsz));
  EXPECT_EQ(Lookup("cuStreamBeginCapture", 13000, 0, &status, &result),
            reinterpret_cast<void*>(&cuStreamBeginCapture_v2));
}

TEST_F(FakeGpuProcAddress, TooOldACallerGetsVersionNotSufficient) {
  CUdriverProcAddressQueryResult status{};
  CUresult result;
  EXPECT_EQ(Lookup("cuMemCreate", 10010, 0, &status, &result), nullptr);
  EXPECT_EQ(result, CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
}

TEST_F(FakeGpuProcAddress, UnknownNamesGetSymbolNotFound) {
  CUdriverProcAddressQueryResult status{};
  CUresult result;
  EXPECT_EQ(Lookup("cuNoSuchFunction", 13000, 0, &status, &result), nullptr);
  EXPECT_EQ(result, CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
  EXPECT_EQ(Lookup("cuMemAlloc_v2", 13000, 0, &status, &result), nullptr);  // base names only
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
}

// This test binary links an interposer exporting cuMemAlloc_v2 ahead of the fake, as an
// LD_PRELOADed shim would be.
TEST_F(FakeGpuProcAddress, HandsOutItsOwnFunctionEvenWhenTheSymbolIsInterposed) {
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_ERROR_NOT_PERMITTED);  // the interposer's
  void* found = nullptr;
  ASSERT_EQ(cuGetProcAddress("cuMemAlloc", &found, 13000, 0), CUDA_SUCCESS);
  auto fake_alloc = reinterpret_cast<decltype(&cuMemAlloc_v2)>(found);
  EXPECT_EQ(fake_alloc(&pointer, 1), CUDA_ERROR_NOT_INITIALIZED);  // the fake's
  InitWithContext();
  EXPECT_EQ(fake_alloc(&pointer, 1), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), 256 * kMiB + 2 * kMiB);
}

}  // namespace
}  // namespace tessera::fakegpu
