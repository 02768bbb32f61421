// The fake libcuda.so.1 in this process: devices, contexts, memory accounting and its footprint
// rules, VMM, stream-ordered allocation, arrays, graphs, launches and cuGetProcAddress.
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "cuda/footprint.h"
#include "fake_gpu_test_support.h"

namespace tessera::fakegpu {
namespace {

constexpr uint64_t kContextBytes = 256 * kMiB;

using FakeGpu = FakeGpuTest;

TEST_F(FakeGpu, CallsBeforeCuInitReturnNotInitialized) {
  int count = -1;
  EXPECT_EQ(cuDeviceGetCount(&count), CUDA_ERROR_NOT_INITIALIZED);
  CUdeviceptr pointer = 0;
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_ERROR_NOT_INITIALIZED);
  int version = 0;
  EXPECT_EQ(cuDriverGetVersion(&version), CUDA_SUCCESS);  // the one call that needs no cuInit
  EXPECT_EQ(version, 13000);
}

TEST_F(FakeGpu, DefaultConfigurationHasTwoH100s) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  int count = 0;
  ASSERT_EQ(cuDeviceGetCount(&count), CUDA_SUCCESS);
  EXPECT_EQ(count, 2);
  char name[128];
  ASSERT_EQ(cuDeviceGetName(name, sizeof name, 1), CUDA_SUCCESS);
  EXPECT_STREQ(name, "Tessera Fake H100");
  size_t total = 0;
  ASSERT_EQ(cuDeviceTotalMem_v2(&total, 0), CUDA_SUCCESS);
  EXPECT_EQ(total, 80 * kGiB);
  int value = 0;
  ASSERT_EQ(cuDeviceGetAttribute(&value, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(value, 132);
  ASSERT_EQ(cuDeviceGetAttribute(&value, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(value, 9);
  ASSERT_EQ(cuDeviceGetAttribute(&value, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0), CUDA_SUCCESS);
  EXPECT_EQ(value, 32);
  EXPECT_EQ(cuDeviceGetName(name, sizeof name, 2), CUDA_ERROR_INVALID_DEVICE);
  CUdevice device = -1;
  EXPECT_EQ(cuDeviceGet(&device, 2), CUDA_ERROR_INVALID_DEVICE);
}

TEST_F(FakeGpu, DevicesHaveDistinctStableUuidsAndBusIds) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUuuid first{}, second{}, first_again{};
  ASSERT_EQ(cuDeviceGetUuid(&first, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetUuid_v2(&second, 1), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetUuid_v2(&first_again, 0), CUDA_SUCCESS);
  EXPECT_NE(std::memcmp(first.bytes, second.bytes, 16), 0);
  EXPECT_EQ(std::memcmp(first.bytes, first_again.bytes, 16), 0);
  char bus[32];
  ASSERT_EQ(cuDeviceGetPCIBusId(bus, sizeof bus, 1), CUDA_SUCCESS);
  EXPECT_STREQ(bus, "0000:19:00.0");
}

TEST_F(FakeGpu, ConfigFileDescribesTheDevices) {
  UseConfig(
      "# a small node\n"
      "device name=\"Small GPU\" memory=8GiB sms=16 "
      "uuid=GPU-00000000-1111-2222-3333-444444444444 context_memory=0\n"
      "\n"
      "device memory=4g  # defaults for the rest\n");
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  int count = 0;
  ASSERT_EQ(cuDeviceGetCount(&count), CUDA_SUCCESS);
  ASSERT_EQ(count, 2);
  char name[64];
  ASSERT_EQ(cuDeviceGetName(name, sizeof name, 0), CUDA_SUCCESS);
  EXPECT_STREQ(name, "Small GPU");
  size_t total = 0;
  ASSERT_EQ(cuDeviceTotalMem_v2(&total, 1), CUDA_SUCCESS);
  EXPECT_EQ(total, 4 * kGiB);
  int sms = 0;
  ASSERT_EQ(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0), CUDA_SUCCESS);
  EXPECT_EQ(sms, 16);
  CUuuid uuid{};
  ASSERT_EQ(cuDeviceGetUuid_v2(&uuid, 0), CUDA_SUCCESS);
  EXPECT_EQ(static_cast<unsigned char>(uuid.bytes[4]), 0x11);
  EXPECT_EQ(static_cast<unsigned char>(uuid.bytes[15]), 0x44);
}

TEST_F(FakeGpu, BadConfigFileMakesCuInitReturnNoDevice) {
  UseConfig("device memory=lots\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  std::string message = testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find("devices.conf:1:"), std::string::npos) << message;
  EXPECT_NE(message.find("memory"), std::string::npos) << message;
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);  // remembered, and said once
}

TEST_F(FakeGpu, MemoryFunctionsNeedACurrentContext) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUdeviceptr pointer = 0;
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_ERROR_INVALID_CONTEXT);
  size_t free = 0, total = 0;
  EXPECT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_ERROR_INVALID_CONTEXT);
  CUcontext context = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&context, 0), CUDA_SUCCESS);
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_ERROR_INVALID_CONTEXT);  // retained, not current
  ASSERT_EQ(cuCtxSetCurrent(context), CUDA_SUCCESS);
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_SUCCESS);
}

TEST_F(FakeGpu, AllocationsOccupyWhole2MiBPages) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUdeviceptr small = 0, large = 0;
  ASSERT_EQ(cuMemAlloc_v2(&small, 1), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 2 * kMiB);
  ASSERT_EQ(cuMemAlloc_v2(&large, 3 * kMiB + 1), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 6 * kMiB);
  EXPECT_EQ(small % (2 * kMiB), 0u);
  ASSERT_EQ(cuMemFree_v2(small), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFree_v2(large), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), before);
  EXPECT_EQ(cuMemFree_v2(large), CUDA_ERROR_INVALID_VALUE);  // twice
}

TEST_F(FakeGpu, MemGetInfoReportsNodeWideFreeMemory) {
  InitWithContext();
  size_t free = 0, total = 0;
  ASSERT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_SUCCESS);
  EXPECT_EQ(total, 80 * kGiB);
  EXPECT_EQ(free, total - kContextBytes);
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kGiB), CUDA_SUCCESS);
  ASSERT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_SUCCESS);
  EXPECT_EQ(free, total - kContextBytes - kGiB);
}

TEST_F(FakeGpu, ContextLimitsHoldDeviceMemoryBeyondTheirDefaults) {
  InitWithContext();
  auto used = [] {
    size_t free = 0, total = 0;
    EXPECT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_SUCCESS);
    return total - free;
  };
  const size_t base = used();
  size_t value = 0;
  ASSERT_EQ(cuCtxGetLimit(&value, CU_LIMIT_MALLOC_HEAP_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(value, 8 * kMiB);
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 64 * kMiB), CUDA_SUCCESS);
  EXPECT_EQ(used(), base + 56 * kMiB);
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_PRINTF_FIFO_SIZE, 9 * kMiB), CUDA_SUCCESS);
  EXPECT_EQ(used(), base + 64 * kMiB);
  // The stack: 1 KiB more per thread, 2,048 threads on each of the H100's 132 SMs.
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 2048), CUDA_SUCCESS);
  EXPECT_EQ(used(), base + 64 * kMiB + 1024ull * 2048 * 132);
  ASSERT_EQ(cuCtxGetLimit(&value, CU_LIMIT_STACK_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(value, 2048u);
  // Beyond the device's memory: refused, the old value kept.
  EXPECT_EQ(cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 100 * kGiB), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_EQ(cuCtxGetLimit(&value, CU_LIMIT_MALLOC_HEAP_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(value, 64 * kMiB);
  // Back to the defaults: nothing held.
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 8 * kMiB), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_PRINTF_FIFO_SIZE, 1 * kMiB), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 1024), CUDA_SUCCESS);
  EXPECT_EQ(used(), base);
  // Limits that take no memory are kept; an unknown one is refused.
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH, 4), CUDA_SUCCESS);
  EXPECT_EQ(used(), base);
  EXPECT_EQ(cuCtxSetLimit(static_cast<CUlimit>(10), 1), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(FakeGpu, OutOfPhysicalMemoryReturnsOutOfMemory) {
  UseConfig("device memory=1GiB context_memory=0\n");
  InitWithContext();
  CUdeviceptr most = 0, too_much = 0, rest = 0;
  ASSERT_EQ(cuMemAlloc_v2(&most, 1000 * kMiB), CUDA_SUCCESS);
  EXPECT_EQ(cuMemAlloc_v2(&too_much, 25 * kMiB), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(cuMemAlloc_v2(&rest, 24 * kMiB), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), kGiB);
  ASSERT_EQ(cuMemFree_v2(most), CUDA_SUCCESS);
  EXPECT_EQ(cuMemAlloc_v2(&too_much, 25 * kMiB), CUDA_SUCCESS);
}

TEST_F(FakeGpu, PeakIsTheHighWaterMarkUntilReset) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kGiB), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFree_v2(pointer), CUDA_SUCCESS);
  EXPECT_EQ(Snapshot().devices[0].peak_bytes, kContextBytes + kGiB);
  ASSERT_EQ(tesseraFakeResetPeaks(), 0);
  EXPECT_EQ(Snapshot().devices[0].peak_bytes, kContextBytes);
}

TEST_F(FakeGpu, PitchedAllocationsUsePitchFor) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUdeviceptr pointer = 0;
  size_t pitch = 0;
  ASSERT_EQ(cuMemAllocPitch_v2(&pointer, &pitch, 1000, 3000, 4), CUDA_SUCCESS);
  EXPECT_EQ(pitch, cuda::PitchFor(1000));
  EXPECT_EQ(UsedBytes() - before, cuda::PageBytes(pitch * 3000));
  EXPECT_EQ(cuMemAllocPitch_v2(&pointer, &pitch, 1000, 3000, 3), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(FakeGpu, ManagedMemoryCountsAsDeviceMemoryAndHostMemoryDoesNot) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUdeviceptr managed = 0;
  ASSERT_EQ(cuMemAllocManaged(&managed, 5 * kMiB, CU_MEM_ATTACH_GLOBAL), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 6 * kMiB);
  void* host = nullptr;
  ASSERT_EQ(cuMemAllocHost_v2(&host, 64 * kMiB), CUDA_SUCCESS);
  std::memset(host, 1, 64 * kMiB);  // real memory
  void* mapped = nullptr;
  ASSERT_EQ(cuMemHostAlloc(&mapped, 4096, CU_MEMHOSTALLOC_DEVICEMAP), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 6 * kMiB);
  EXPECT_EQ(cuMemFreeHost(host), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFreeHost(mapped), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFreeHost(mapped), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemFree_v2(managed), CUDA_SUCCESS);
}

TEST_F(FakeGpu, AddressRangeFindsTheAllocationOfAnInteriorPointer) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, 3000), CUDA_SUCCESS);
  CUdeviceptr base = 0;
  size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange_v2(&base, &size, pointer + 2999), CUDA_SUCCESS);
  EXPECT_EQ(base, pointer);
  EXPECT_EQ(size, 3000u);
  EXPECT_EQ(cuMemGetAddressRange_v2(&base, &size, pointer + 3000), CUDA_ERROR_NOT_FOUND);
}

TEST_F(FakeGpu, CopiesAndMemsetsStayInsideAllocations) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, 4096), CUDA_SUCCESS);
  std::vector<char> host(4096, 'x');
  EXPECT_EQ(cuMemcpyHtoD_v2(pointer, host.data(), 4096), CUDA_SUCCESS);
  EXPECT_EQ(cuMemcpyHtoD_v2(pointer + 1, host.data(), 4096), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemcpyDtoH_v2(host.data(), pointer, 4096), CUDA_SUCCESS);
  EXPECT_EQ(host[0], 0);  // no storage: reads back zeros
  EXPECT_EQ(cuMemsetD8_v2(pointer + 4000, 7, 96), CUDA_SUCCESS);
  EXPECT_EQ(cuMemsetD8_v2(pointer + 4000, 7, 97), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemsetD8_v2(12345, 7, 1), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(FakeGpu, EachContextOccupiesContextMemoryUntilReleased) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext primary = nullptr, again = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&primary, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&again, 0), CUDA_SUCCESS);
  EXPECT_EQ(primary, again);
  EXPECT_EQ(UsedBytes(), kContextBytes);  // one primary context however often retained
  CUcontext created = nullptr;
  ASSERT_EQ(cuCtxCreate_v2(&created, 0, 0), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), 2 * kContextBytes);
  CUcontext current = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&current), CUDA_SUCCESS);
  EXPECT_EQ(current, created);  // a created context is pushed
  ASSERT_EQ(cuCtxDestroy_v2(created), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), kContextBytes);
  ASSERT_EQ(cuDevicePrimaryCtxRelease_v2(0), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), kContextBytes);
  ASSERT_EQ(cuDevicePrimaryCtxRelease_v2(0), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), 0u);
  EXPECT_EQ(cuDevicePrimaryCtxRelease_v2(0), CUDA_ERROR_INVALID_CONTEXT);
}

TEST_F(FakeGpu, CreateContextVariantsAllOccupyContextMemory) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext v3 = nullptr, v4 = nullptr;
  ASSERT_EQ(cuCtxCreate_v3(&v3, nullptr, 0, 0, 1), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxCreate_v4(&v4, nullptr, 0, 1), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(1), 2 * kContextBytes);
  CUdevice device = -1;
  ASSERT_EQ(cuCtxGetDevice(&device), CUDA_SUCCESS);
  EXPECT_EQ(device, 1);
  EXPECT_EQ(cuCtxDestroy_v2(v3), CUDA_SUCCESS);
  EXPECT_EQ(cuCtxDestroy_v2(v4), CUDA_SUCCESS);
  EXPECT_EQ(cuCtxDestroy_v2(v4), CUDA_ERROR_INVALID_CONTEXT);
}

TEST_F(FakeGpu, DestroyingAContextFreesItsAllocations) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext context = nullptr;
  ASSERT_EQ(cuCtxCreate_v2(&context, 0, 0), CUDA_SUCCESS);
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kGiB), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxDestroy_v2(context), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), 0u);
}

TEST_F(FakeGpu, PrimaryContextResetFreesEverything) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kGiB), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxReset_v2(0), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), 0u);
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_ERROR_INVALID_CONTEXT);  // current but inactive
}

TEST_F(FakeGpu, ContextStackIsPerThread) {
  CUcontext primary = InitWithContext();
  CUcontext created = nullptr;
  ASSERT_EQ(cuCtxCreate_v2(&created, 0, 1), CUDA_SUCCESS);
  std::thread other([&] {
    CUcontext seen = reinterpret_cast<CUcontext>(1);
    EXPECT_EQ(cuCtxGetCurrent(&seen), CUDA_SUCCESS);
    EXPECT_EQ(seen, nullptr);
    EXPECT_EQ(cuCtxPushCurrent_v2(created), CUDA_SUCCESS);
    CUdevice device = -1;
    EXPECT_EQ(cuCtxGetDevice(&device), CUDA_SUCCESS);
    EXPECT_EQ(device, 1);
  });
  other.join();
  CUcontext popped = nullptr;
  ASSERT_EQ(cuCtxPopCurrent_v2(&popped), CUDA_SUCCESS);
  EXPECT_EQ(popped, created);
  CUcontext current = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&current), CUDA_SUCCESS);
  EXPECT_EQ(current, primary);
  ASSERT_EQ(cuCtxPopCurrent_v2(&popped), CUDA_SUCCESS);
  EXPECT_EQ(cuCtxPopCurrent_v2(&popped), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(cuCtxDestroy_v2(created), CUDA_SUCCESS);
}

TEST_F(FakeGpu, VmmPhysicalMemoryLivesUntilReleasedAndUnmapped) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  size_t granularity = 0;
  ASSERT_EQ(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
            CUDA_SUCCESS);
  ASSERT_EQ(granularity, 2 * kMiB);
  CUmemGenericAllocationHandle handle = 0;
  EXPECT_EQ(cuMemCreate(&handle, 3 * kMiB, &prop, 0), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemCreate(&handle, 8 * kMiB, &prop, 0), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 8 * kMiB);

  CUdeviceptr address = 0;
  ASSERT_EQ(cuMemAddressReserve(&address, 16 * kMiB, 0, 0, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuMemMap(address, 8 * kMiB, 0, handle, 0), CUDA_SUCCESS);
  EXPECT_EQ(cuMemMap(address + 4 * kMiB, 4 * kMiB, 0, handle, 0), CUDA_ERROR_INVALID_VALUE);
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  ASSERT_EQ(cuMemSetAccess(address, 8 * kMiB, &access, 1), CUDA_SUCCESS);
  EXPECT_EQ(cuMemsetD8_v2(address, 0, 8 * kMiB), CUDA_SUCCESS);

  ASSERT_EQ(cuMemRelease(handle), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 8 * kMiB);  // still mapped
  ASSERT_EQ(cuMemUnmap(address, 8 * kMiB), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), before);
  EXPECT_EQ(cuMemAddressFree(address, 16 * kMiB), CUDA_SUCCESS);
}

TEST_F(FakeGpu, VmmHostLocatedMemoryIsNotDeviceMemory) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_HOST;
  CUmemGenericAllocationHandle handle = 0;
  ASSERT_EQ(cuMemCreate(&handle, 4 * kMiB, &prop, 0), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), before);
  EXPECT_EQ(cuMemRelease(handle), CUDA_SUCCESS);
}

TEST_F(FakeGpu, StreamOrderedAllocationsAreChargedByTheirPoolsChunks) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  CUdeviceptr a = 0, b = 0, c = 0;
  ASSERT_EQ(cuMemAllocAsync(&a, kMiB, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocAsync_ptsz(&b, kMiB, nullptr), CUDA_SUCCESS);
  CUmemoryPool pool = nullptr;
  ASSERT_EQ(cuDeviceGetDefaultMemPool(&pool, 1), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocFromPoolAsync(&c, 3 * kMiB, pool, stream), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(0) - before, 2 * kMiB);  // a and b share one chunk (pool_test.cc)
  EXPECT_EQ(UsedBytes(1), 4 * kMiB);           // the pool's device
  ASSERT_EQ(cuMemFreeAsync(a, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFreeAsync_ptsz(b, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFreeAsync(c, stream), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFreeAsync(c, stream), CUDA_ERROR_INVALID_VALUE);
  // The pools keep the memory until the next synchronisation.
  EXPECT_EQ(UsedBytes(0) - before, 2 * kMiB);
  ASSERT_EQ(cuStreamSynchronize(stream), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(0), before);
  EXPECT_EQ(UsedBytes(1), 0u);
  EXPECT_EQ(cuStreamDestroy_v2(stream), CUDA_SUCCESS);
}

TEST_F(FakeGpu, CreatedPoolsAllocateOnTheirDevice) {
  InitWithContext();
  CUmemPoolProps props{};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = 1;
  CUmemoryPool pool = nullptr;
  ASSERT_EQ(cuMemPoolCreate(&pool, &props), CUDA_SUCCESS);
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAllocFromPoolAsync_ptsz(&pointer, 10 * kMiB, pool, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(1), 10 * kMiB);
  ASSERT_EQ(cuMemFreeAsync(pointer, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuMemPoolDestroy(pool), CUDA_SUCCESS);
  CUmemoryPool default_pool = nullptr;
  ASSERT_EQ(cuDeviceGetDefaultMemPool(&default_pool, 0), CUDA_SUCCESS);
  EXPECT_EQ(cuMemPoolDestroy(default_pool), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(FakeGpu, ArraysOccupyArrayBytes) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUDA_ARRAY_DESCRIPTOR flat{4096, 1024, CU_AD_FORMAT_FLOAT, 4};
  CUarray array = nullptr;
  ASSERT_EQ(cuArrayCreate_v2(&array, &flat), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, cuda::ArrayBytes(flat));
  CUDA_ARRAY3D_DESCRIPTOR cube{256, 256, 256, CU_AD_FORMAT_UNSIGNED_INT8, 1, 0};
  CUarray volume = nullptr;
  ASSERT_EQ(cuArray3DCreate_v2(&volume, &cube), CUDA_SUCCESS);
  CUmipmappedArray mipmapped = nullptr;
  ASSERT_EQ(cuMipmappedArrayCreate(&mipmapped, &cube, 4), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before,
            cuda::ArrayBytes(flat) + cuda::ArrayBytes(cube) + cuda::MipmappedArrayBytes(cube, 4));
  CUDA_ARRAY_DESCRIPTOR bad{16, 16, CU_AD_FORMAT_FLOAT, 3};
  CUarray rejected = nullptr;
  EXPECT_EQ(cuArrayCreate_v2(&rejected, &bad), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuArrayDestroy(array), CUDA_SUCCESS);
  EXPECT_EQ(cuArrayDestroy(volume), CUDA_SUCCESS);
  EXPECT_EQ(cuMipmappedArrayDestroy(mipmapped), CUDA_SUCCESS);
  EXPECT_EQ(cuArrayDestroy(array), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(UsedBytes(), before);
}

TEST_F(FakeGpu, GraphMemoryIsAllocatedWhenTheNodeIsAddedAndFreedWithTheGraph) {
  InitWithContext();
  uint64_t before = UsedBytes();
  CUgraph graph = nullptr;
  ASSERT_EQ(cuGraphCreate(&graph, 0), CUDA_SUCCESS);
  CUDA_MEM_ALLOC_NODE_PARAMS params{};
  params.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  params.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  params.poolProps.location.id = 0;
  params.bytesize = 5 * kMiB;
  CUgraphNode alloc_node = nullptr, free_node = nullptr;
  ASSERT_EQ(cuGraphAddMemAllocNode(&alloc_node, graph, nullptr, 0, &params), CUDA_SUCCESS);
  EXPECT_NE(params.dptr, 0u);
  EXPECT_EQ(UsedBytes() - before, 6 * kMiB);
  EXPECT_EQ(cuMemFree_v2(params.dptr), CUDA_ERROR_INVALID_VALUE);  // the graph's, not ours
  ASSERT_EQ(cuGraphAddMemFreeNode(&free_node, graph, &alloc_node, 1, params.dptr), CUDA_SUCCESS);

  CUmodule module = nullptr;
  CUfunction function = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module, "any bytes"), CUDA_SUCCESS);
  ASSERT_EQ(cuModuleGetFunction(&function, module, "kernel"), CUDA_SUCCESS);
  CUDA_KERNEL_NODE_PARAMS kernel{};
  kernel.func = function;
  kernel.gridDimX = kernel.gridDimY = kernel.gridDimZ = 1;
  kernel.blockDimX = kernel.blockDimY = kernel.blockDimZ = 1;
  CUgraphNode kernel_node = nullptr;
  ASSERT_EQ(cuGraphAddKernelNode_v2(&kernel_node, graph, &alloc_node, 1, &kernel), CUDA_SUCCESS);

  CUgraphExec exec = nullptr, exec2 = nullptr;
  ASSERT_EQ(cuGraphInstantiateWithFlags(&exec, graph, 0), CUDA_SUCCESS);
  CUDA_GRAPH_INSTANTIATE_PARAMS instantiate{};
  ASSERT_EQ(cuGraphInstantiateWithParams(&exec2, graph, &instantiate), CUDA_SUCCESS);
  EXPECT_EQ(instantiate.result_out, CUDA_GRAPH_INSTANTIATE_SUCCESS);
  EXPECT_EQ(cuGraphLaunch(exec, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphLaunch_ptsz(exec2, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphExecDestroy(exec), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphLaunch(exec, nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphExecDestroy(exec2), CUDA_SUCCESS);
  ASSERT_EQ(cuGraphDestroy(graph), CUDA_SUCCESS);
  ASSERT_EQ(cuModuleUnload(module), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), before);
}

TEST_F(FakeGpu, ModulesAndLibrariesTakeMemoryUntilUnloadedOrTheirContextGoes) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmodule small = nullptr;
  ASSERT_EQ(cuModuleLoadData(&small, "any bytes"), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 2 * kMiB) << "an image that does not say takes one page";
  CUmodule big = nullptr;
  ASSERT_EQ(cuModuleLoadDataEx(&big, "tessera-fake-module bytes=96M", 0, nullptr, nullptr),
            CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 98 * kMiB);
  CUmodule bad = nullptr;
  EXPECT_EQ(cuModuleLoadData(&bad, "tessera-fake-module bytes=lots"), CUDA_ERROR_INVALID_IMAGE);
  EXPECT_EQ(cuModuleLoad(&bad, "/nonexistent/module.cubin"), CUDA_ERROR_FILE_NOT_FOUND);
  CUlibrary library = nullptr;
  ASSERT_EQ(cuLibraryLoadData(&library, "tessera-fake-module bytes=10M", nullptr, nullptr, 0,
                              nullptr, nullptr, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 108 * kMiB);
  EXPECT_EQ(cuModuleUnload(big), CUDA_SUCCESS);
  EXPECT_EQ(cuModuleUnload(big), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(cuLibraryUnload(library), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 2 * kMiB);

  // A created context's modules and libraries go with it.
  CUcontext primary = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&primary), CUDA_SUCCESS);
  CUcontext created = nullptr;
  ASSERT_EQ(cuCtxCreate_v2(&created, 0, 0), CUDA_SUCCESS);
  const uint64_t with_context = UsedBytes();
  CUmodule in_created = nullptr;
  ASSERT_EQ(cuModuleLoadData(&in_created, "tessera-fake-module bytes=64M"), CUDA_SUCCESS);
  ASSERT_EQ(cuLibraryLoadData(&library, "tessera-fake-module bytes=8M", nullptr, nullptr, 0,
                              nullptr, nullptr, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - with_context, 72 * kMiB);
  ASSERT_EQ(cuCtxDestroy_v2(created), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(primary), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 2 * kMiB);
  EXPECT_EQ(cuModuleUnload(in_created), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(cuLibraryUnload(library), CUDA_SUCCESS) << "a library outlives the context";
  EXPECT_EQ(cuModuleUnload(small), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), before);
}

TEST_F(FakeGpu, LaunchesValidateTheirHandlesAndContext) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr),
            CUDA_ERROR_INVALID_CONTEXT);
  InitWithContext();
  CUmodule module = nullptr;
  CUfunction function = nullptr, same = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module,
                             "\x7f"
                             "ELF"),
            CUDA_SUCCESS);
  ASSERT_EQ(cuModuleGetFunction(&function, module, "add"), CUDA_SUCCESS);
  ASSERT_EQ(cuModuleGetFunction(&same, module, "add"), CUDA_SUCCESS);
  EXPECT_EQ(function, same);
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernel(function, 4, 1, 1, 256, 1, 1, 0, stream, nullptr, nullptr),
            CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernel_ptsz(function, 4, 1, 1, 256, 1, 1, 0, nullptr, nullptr, nullptr),
            CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchCooperativeKernel(function, 1, 1, 1, 32, 1, 1, 0, stream, nullptr),
            CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchCooperativeKernel_ptsz(function, 1, 1, 1, 32, 1, 1, 0, stream, nullptr),
            CUDA_SUCCESS);
  CUlaunchConfig config{};
  config.gridDimX = config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = config.blockDimY = config.blockDimZ = 8;
  config.hStream = stream;
  EXPECT_EQ(cuLaunchKernelEx(&config, function, nullptr, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernelEx_ptsz(&config, function, nullptr, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernel(function, 1, 1, 1, 2048, 1, 1, 0, stream, nullptr, nullptr),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuLaunchKernel(reinterpret_cast<CUfunction>(stream), 1, 1, 1, 1, 1, 1, 0, stream,
                           nullptr, nullptr),
            CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(cuStreamDestroy_v2(stream), CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr),
            CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(cuModuleUnload(module), CUDA_SUCCESS);
  EXPECT_EQ(cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr),
            CUDA_ERROR_INVALID_HANDLE);
}

TEST_F(FakeGpu, EventsMeasureWallClockTime) {
  InitWithContext();
  CUevent start = nullptr, end = nullptr, untimed = nullptr;
  ASSERT_EQ(cuEventCreate(&start, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventCreate(&end, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventCreate(&untimed, 0x2), CUDA_SUCCESS);
  float milliseconds = -1;
  EXPECT_EQ(cuEventElapsedTime_v2(&milliseconds, start, end), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(cuEventRecord(start, nullptr), CUDA_SUCCESS);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the interval being measured
  ASSERT_EQ(cuEventRecord(end, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuEventSynchronize(end), CUDA_SUCCESS);
  ASSERT_EQ(cuEventElapsedTime_v2(&milliseconds, start, end), CUDA_SUCCESS);
  EXPECT_GE(milliseconds, 19.0f);
  EXPECT_LT(milliseconds, 5000.0f);
  ASSERT_EQ(cuEventRecord(untimed, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuEventElapsedTime_v2(&milliseconds, start, untimed), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(cuEventDestroy_v2(start), CUDA_SUCCESS);
  EXPECT_EQ(cuEventDestroy_v2(end), CUDA_SUCCESS);
  EXPECT_EQ(cuEventDestroy_v2(untimed), CUDA_SUCCESS);
}

TEST_F(FakeGpu, ErrorNamesAndStrings) {
  const char* text = nullptr;
  ASSERT_EQ(cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &text), CUDA_SUCCESS);
  EXPECT_STREQ(text, "CUDA_ERROR_OUT_OF_MEMORY");
  ASSERT_EQ(cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &text), CUDA_SUCCESS);
  EXPECT_STREQ(text, "out of memory");
  EXPECT_EQ(cuGetErrorName(static_cast<CUresult>(12), &text), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(text, nullptr);
}

TEST_F(FakeGpu, ShutdownGivesEverythingBackAndCuInitStartsAfresh) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kGiB), CUDA_SUCCESS);
  tesseraFakeShutdown();
  EXPECT_EQ(UsedBytes(), 0u);
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_ERROR_NOT_INITIALIZED);
  InitWithContext();
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 1), CUDA_SUCCESS);
}

TEST_F(FakeGpu, ConcurrentAllocationsKeepExactTotals) {
  InitWithContext();
  CUcontext context = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&context), CUDA_SUCCESS);
  uint64_t before = UsedBytes();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([context] {
      ASSERT_EQ(cuCtxSetCurrent(context), CUDA_SUCCESS);
      std::vector<CUdeviceptr> pointers(50);
      for (int round = 0; round < 20; ++round) {
        for (CUdeviceptr& pointer : pointers) ASSERT_EQ(cuMemAlloc_v2(&pointer, 100), CUDA_SUCCESS);
        for (CUdeviceptr pointer : pointers) ASSERT_EQ(cuMemFree_v2(pointer), CUDA_SUCCESS);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(UsedBytes(), before);
  EXPECT_EQ(ProcessBytes(getpid()), before);
}

}  // namespace
}  // namespace tessera::fakegpu
