// The fake GPU's stream-ordered memory pools behave as a driver's: they reserve their device's
// memory in 2 MiB chunks and sub-allocate them, keep what is freed up to their release threshold
// until a synchronisation or a trim, report their reserve and use, and live on their location's
// device (a host pool on none).
#include <cstdint>
#include <functional>
#include <set>
#include <vector>

#include "fake_gpu_test_support.h"

namespace tessera::fakegpu {
namespace {

using FakeGpuPools = FakeGpuTest;

cuuint64_t Attribute(CUmemoryPool pool, CUmemPool_attribute attribute) {
  cuuint64_t value = ~cuuint64_t{0};
  EXPECT_EQ(cuMemPoolGetAttribute(pool, attribute, &value), CUDA_SUCCESS);
  return value;
}

cuuint64_t Reserved(CUmemoryPool pool) {
  return Attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT);
}

cuuint64_t Used(CUmemoryPool pool) { return Attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT); }

CUmemoryPool DefaultPool(CUdevice device) {
  CUmemoryPool pool = nullptr;
  EXPECT_EQ(cuDeviceGetDefaultMemPool(&pool, device), CUDA_SUCCESS);
  return pool;
}

void SetThreshold(CUmemoryPool pool, cuuint64_t bytes) {
  ASSERT_EQ(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &bytes), CUDA_SUCCESS);
}

CUmemoryPool CreatePool(CUmemLocationType type, int id) {
  CUmemPoolProps props{};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = type;
  props.location.id = id;
  CUmemoryPool pool = nullptr;
  EXPECT_EQ(cuMemPoolCreate(&pool, &props), CUDA_SUCCESS);
  return pool;
}

TEST_F(FakeGpuPools, SmallAllocationsShareTwoMiBChunks) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmemoryPool pool = DefaultPool(0);
  std::vector<CUdeviceptr> pointers(1000);
  for (CUdeviceptr& pointer : pointers) {
    ASSERT_EQ(cuMemAllocAsync(&pointer, 4096, nullptr), CUDA_SUCCESS);
  }
  // 512 blocks of 4 KiB fill a chunk: 1,000 take two chunks, not 1,000 pages.
  EXPECT_EQ(UsedBytes() - before, 4 * kMiB);
  EXPECT_EQ(Reserved(pool), 4 * kMiB);
  EXPECT_EQ(Used(pool), 1000 * 4096u);
  // Blocks are distinct and lie inside each other's chunk, not on top of each other.
  std::set<CUdeviceptr> distinct(pointers.begin(), pointers.end());
  EXPECT_EQ(distinct.size(), pointers.size());
  EXPECT_EQ(cuMemsetD8_v2(pointers[1], 0, 4096), CUDA_SUCCESS);
  EXPECT_EQ(cuMemsetD8_v2(pointers[1], 0, 4097), CUDA_ERROR_INVALID_VALUE);
  for (CUdeviceptr pointer : pointers) ASSERT_EQ(cuMemFreeAsync(pointer, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(Used(pool), 0u);
}

TEST_F(FakeGpuPools, ALargeAllocationReservesWholePagesThatLaterOnesShare) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmemoryPool pool = DefaultPool(0);
  CUdeviceptr large = 0, small = 0;
  ASSERT_EQ(cuMemAllocAsync(&large, 3 * kMiB, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 4 * kMiB);
  ASSERT_EQ(cuMemAllocAsync(&small, 512 * 1024, nullptr), CUDA_SUCCESS);  // the chunk's last MiB
  EXPECT_EQ(Reserved(pool), 4 * kMiB);
  EXPECT_EQ(UsedBytes() - before, 4 * kMiB);
  EXPECT_EQ(Used(pool), 3 * kMiB + 512 * 1024);
}

TEST_F(FakeGpuPools, FreedMemoryStaysInThePoolUntilASynchronisation) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmemoryPool pool = DefaultPool(0);
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  CUevent event = nullptr;
  ASSERT_EQ(cuEventCreate(&event, 0), CUDA_SUCCESS);
  const std::vector<std::function<CUresult()>> synchronisations = {
      [&] { return cuStreamSynchronize(stream); },
      [&] { return cuStreamSynchronize_ptsz(nullptr); }, [&] { return cuCtxSynchronize(); },
      [&] {
        EXPECT_EQ(cuEventRecord(event, stream), CUDA_SUCCESS);
        return cuEventSynchronize(event);
      }};
  for (const auto& synchronise : synchronisations) {
    CUdeviceptr pointer = 0;
    ASSERT_EQ(cuMemAllocAsync(&pointer, 8 * kMiB, stream), CUDA_SUCCESS);
    ASSERT_EQ(cuMemFreeAsync(pointer, stream), CUDA_SUCCESS);
    // Back in the pool, not on the device: still reserved, no longer used.
    EXPECT_EQ(UsedBytes() - before, 8 * kMiB);
    EXPECT_EQ(Reserved(pool), 8 * kMiB);
    EXPECT_EQ(Used(pool), 0u);
    // The default threshold (0) gives it back at the next synchronisation.
    ASSERT_EQ(synchronise(), CUDA_SUCCESS);
    EXPECT_EQ(UsedBytes(), before);
    EXPECT_EQ(Reserved(pool), 0u);
  }
}

TEST_F(FakeGpuPools, FreedBlocksAreReusedBeforeTheDeviceIsAskedAgain) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmemoryPool pool = DefaultPool(0);
  CUdeviceptr first = 0, second = 0;
  ASSERT_EQ(cuMemAllocAsync(&first, 6 * kMiB, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFreeAsync(first, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocAsync(&second, 5 * kMiB, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 6 * kMiB);
  EXPECT_EQ(UsedBytes() - before, 6 * kMiB);
}

TEST_F(FakeGpuPools, APoolKeepsUpToItsReleaseThresholdUntilTrimmed) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmemoryPool pool = DefaultPool(0);
  EXPECT_EQ(Attribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD), 0u);
  SetThreshold(pool, UINT64_MAX);  // what PyTorch sets
  EXPECT_EQ(Attribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD), UINT64_MAX);
  std::vector<CUdeviceptr> pointers(3);
  for (CUdeviceptr& pointer : pointers) {
    ASSERT_EQ(cuMemAllocAsync(&pointer, 4 * kMiB, nullptr), CUDA_SUCCESS);
  }
  for (CUdeviceptr pointer : pointers) ASSERT_EQ(cuMemFreeAsync(pointer, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 12 * kMiB);
  EXPECT_EQ(UsedBytes() - before, 12 * kMiB);
  // A threshold between: a synchronisation gives back empty chunks until the pool holds no more
  // than the threshold.
  SetThreshold(pool, 5 * kMiB);
  EXPECT_EQ(Reserved(pool), 12 * kMiB);  // not until the next synchronisation
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 4 * kMiB);
  // A trim gives back down to its minimum whatever the threshold, and never a used chunk.
  SetThreshold(pool, UINT64_MAX);
  CUdeviceptr held = 0;
  ASSERT_EQ(cuMemAllocAsync(&held, kMiB, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemPoolTrimTo(pool, 0), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 4 * kMiB);
  EXPECT_EQ(UsedBytes() - before, 4 * kMiB);
  ASSERT_EQ(cuMemFreeAsync(held, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemPoolTrimTo(pool, 4 * kMiB), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 4 * kMiB);
  ASSERT_EQ(cuMemPoolTrimTo(pool, 0), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(pool), 0u);
  EXPECT_EQ(UsedBytes(), before);
}

TEST_F(FakeGpuPools, HighWatermarksFollowTheReserveAndTheUseAndReset) {
  InitWithContext();
  CUmemoryPool pool = DefaultPool(0);
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAllocAsync(&pointer, 10 * kMiB, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFreeAsync(pointer, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_EQ(Attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH), 10 * kMiB);
  EXPECT_EQ(Attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH), 10 * kMiB);
  cuuint64_t zero = 0, one = 1;
  EXPECT_EQ(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &one),
            CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &zero), CUDA_SUCCESS);
  ASSERT_EQ(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH, &zero), CUDA_SUCCESS);
  EXPECT_EQ(Attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH), 0u);
  EXPECT_EQ(Attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH), 0u);
  // The current amounts are the pool's to say, not the caller's.
  EXPECT_EQ(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &zero),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &zero),
            CUDA_ERROR_INVALID_VALUE);
  int reuse = 0;
  ASSERT_EQ(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC, &reuse),
            CUDA_SUCCESS);
  EXPECT_EQ(reuse, 1);
}

TEST_F(FakeGpuPools, APoolAllocatesOnItsOwnDeviceWhateverIsCurrent) {
  InitWithContext(0);
  const uint64_t before = UsedBytes(0);
  CUmemoryPool created = CreatePool(CU_MEM_LOCATION_TYPE_DEVICE, 1);
  CUdeviceptr a = 0, b = 0;
  ASSERT_EQ(cuMemAllocFromPoolAsync(&a, kMiB, created, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocFromPoolAsync_ptsz(&b, 3 * kMiB, DefaultPool(1), nullptr), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(1), 2 * kMiB + 4 * kMiB);
  EXPECT_EQ(UsedBytes(0), before);
}

TEST_F(FakeGpuPools, HostPoolsTakeNoDeviceMemory) {
  InitWithContext();
  const uint64_t before = UsedBytes(0);
  CUmemoryPool host = CreatePool(CU_MEM_LOCATION_TYPE_HOST, 0);
  CUmemoryPool numa = CreatePool(CU_MEM_LOCATION_TYPE_HOST_NUMA, 0);
  CUdeviceptr a = 0, b = 0;
  ASSERT_EQ(cuMemAllocFromPoolAsync(&a, 64 * kMiB, host, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocFromPoolAsync(&b, 4096, numa, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(host), 64 * kMiB);
  EXPECT_EQ(UsedBytes(0), before);
  EXPECT_EQ(UsedBytes(1), 0u);
  // A host pool is no device's current pool.
  EXPECT_EQ(cuDeviceSetMemPool(0, host), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemFreeAsync(a, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFreeAsync(b, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuMemPoolDestroy(host), CUDA_SUCCESS);
  EXPECT_EQ(cuMemPoolDestroy(numa), CUDA_SUCCESS);
}

TEST_F(FakeGpuPools, CuMemAllocAsyncTakesTheDevicesCurrentPool) {
  InitWithContext();
  CUmemoryPool created = CreatePool(CU_MEM_LOCATION_TYPE_DEVICE, 0);
  CUmemoryPool current = nullptr;
  ASSERT_EQ(cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
  EXPECT_EQ(current, DefaultPool(0));
  ASSERT_EQ(cuDeviceSetMemPool(0, created), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
  EXPECT_EQ(current, created);
  EXPECT_EQ(cuDeviceSetMemPool(1, created), CUDA_ERROR_INVALID_VALUE);  // not device 1's pool
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAllocAsync(&pointer, kMiB, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(Reserved(created), 2 * kMiB);
  EXPECT_EQ(Reserved(DefaultPool(0)), 0u);
  ASSERT_EQ(cuMemFreeAsync(pointer, nullptr), CUDA_SUCCESS);
  // Destroying a device's current pool makes its default pool current again.
  ASSERT_EQ(cuMemPoolDestroy(created), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
  EXPECT_EQ(current, DefaultPool(0));
}

TEST_F(FakeGpuPools, ADestroyedPoolGivesItsMemoryBackWhenItsLastBlockIsFreed) {
  InitWithContext();
  const uint64_t before = UsedBytes();
  CUmemoryPool pool = CreatePool(CU_MEM_LOCATION_TYPE_DEVICE, 0);
  SetThreshold(pool, UINT64_MAX);
  CUdeviceptr kept = 0, cached = 0;
  ASSERT_EQ(cuMemAllocFromPoolAsync(&kept, 4 * kMiB, pool, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocFromPoolAsync(&cached, 4 * kMiB, pool, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFreeAsync(cached, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemPoolDestroy(pool), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes() - before, 4 * kMiB);  // the cache went, the live block stays
  EXPECT_EQ(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &kept),
            CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemFreeAsync(kept, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(UsedBytes(), before);
}

TEST_F(FakeGpuPools, APoolThatCannotReserveAChunkFailsWithOutOfMemory) {
  UseConfig("device memory=64MiB context_memory=0\n");
  InitWithContext();
  CUdeviceptr pointer = 0;
  EXPECT_EQ(cuMemAllocAsync(&pointer, 65 * kMiB, nullptr), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(Reserved(DefaultPool(0)), 0u);
  ASSERT_EQ(cuMemAllocAsync(&pointer, 64 * kMiB, nullptr), CUDA_SUCCESS);
}

}  // namespace
}  // namespace tessera::fakegpu
