// The Driver's memory: linear, managed, host, VMM, stream-ordered, arrays and graph allocations.
#include <cstdlib>
#include <cstring>

#include "cuda/footprint.h"
#include "fakegpu/driver.h"

namespace tessera::fakegpu {
namespace {

using cuda::kAllocationGranule;
using cuda::PageBytes;
using cuda::RoundUpTo;

bool IsPowerOfTwo(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

}  // namespace

// Addresses are handed out once and never reused, with a free page between neighbours, so a stale
// pointer or an overrun is never mistaken for another allocation.
CUdeviceptr Driver::ReserveAddressLocked(uint64_t size, uint64_t alignment) {
  CUdeviceptr base = RoundUpTo(next_address_, alignment);
  next_address_ = base + RoundUpTo(size, kAllocationGranule) + kAllocationGranule;
  return base;
}

CUresult Driver::MemGetInfo(size_t* free, size_t* total) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (free == nullptr || total == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  Result<DeviceUsage> usage = state_->Usage(devices_[static_cast<size_t>(context->device)].ref);
  if (!usage.ok()) return StateError(usage.status());
  *free = usage->total_bytes - usage->used_bytes;
  *total = usage->total_bytes;
  return CUDA_SUCCESS;
}

CUresult Driver::AllocateLocked(CUdeviceptr* pointer, uint64_t size, AllocationKind kind,
                                int device, CUctx_st* context) {
  DeviceAllocation allocation;
  allocation.size = size;
  allocation.kind = kind;
  allocation.context = context;
  CUresult charged = ChargeLocked(device, PageBytes(size), &allocation.charge);
  if (charged != CUDA_SUCCESS) return charged;
  CUdeviceptr base = ReserveAddressLocked(size, kAllocationGranule);
  allocations_.emplace(base, allocation);
  *pointer = base;
  return CUDA_SUCCESS;
}

CUresult Driver::Allocate(CUdeviceptr* pointer, uint64_t size, AllocationKind kind, int device) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (pointer == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  return AllocateLocked(pointer, size, kind, device < 0 ? context->device : device, context);
}

CUresult Driver::FreeLocked(std::map<CUdeviceptr, DeviceAllocation>::iterator allocation) {
  if (allocation->second.pool != 0) {
    uint64_t pool = allocation->second.pool;
    CUdeviceptr pointer = allocation->first;
    allocations_.erase(allocation);
    return ReturnToPoolLocked(pool, pointer);
  }
  CUresult uncharged = UnchargeLocked(&allocation->second.charge);
  allocations_.erase(allocation);
  return uncharged;
}

CUresult Driver::FreeAllocationLocked(CUdeviceptr pointer, bool stream_ordered) {
  auto found = allocations_.find(pointer);
  if (found == allocations_.end()) return CUDA_ERROR_INVALID_VALUE;
  // Graph memory belongs to its graph; cuMemFreeAsync takes stream-ordered memory only.
  if (found->second.kind == AllocationKind::kGraph) return CUDA_ERROR_INVALID_VALUE;
  if (stream_ordered && found->second.kind != AllocationKind::kStreamOrdered) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return FreeLocked(found);
}

CUresult Driver::Free(CUdeviceptr pointer) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  return FreeAllocationLocked(pointer, /*stream_ordered=*/false);
}

CUresult Driver::AddressRange(CUdeviceptr* base, size_t* size, CUdeviceptr pointer) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  auto after = allocations_.upper_bound(pointer);
  if (after == allocations_.begin()) return CUDA_ERROR_NOT_FOUND;
  auto found = std::prev(after);
  if (pointer - found->first >= found->second.size) return CUDA_ERROR_NOT_FOUND;
  if (base != nullptr) *base = found->first;
  if (size != nullptr) *size = found->second.size;
  return CUDA_SUCCESS;
}

CUresult Driver::CheckDeviceRange(CUdeviceptr pointer, size_t size) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  if (size == 0) return CUDA_SUCCESS;
  auto after = allocations_.upper_bound(pointer);
  if (after != allocations_.begin()) {
    auto found = std::prev(after);
    uint64_t offset = pointer - found->first;
    if (offset < found->second.size && size <= found->second.size - offset) return CUDA_SUCCESS;
  }
  // VMM: a range may run across adjacent mappings.
  auto mapping = mappings_.upper_bound(pointer);
  if (mapping == mappings_.begin()) return CUDA_ERROR_INVALID_VALUE;
  mapping = std::prev(mapping);
  CUdeviceptr end = pointer + size;
  CUdeviceptr covered = pointer;
  while (mapping != mappings_.end() && mapping->first <= covered) {
    CUdeviceptr mapping_end = mapping->first + mapping->second.size;
    if (mapping_end <= covered) break;
    covered = mapping_end;
    if (covered >= end) return CUDA_SUCCESS;
    ++mapping;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult Driver::AllocateHost(void** pointer, size_t size) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (pointer == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  // Real host memory, page-aligned like pinned memory; it is not device memory.
  void* memory = nullptr;
  if (posix_memalign(&memory, 4096, size) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
  std::lock_guard<std::mutex> lock(mutex_);
  host_allocations_.emplace(memory, size);
  *pointer = memory;
  return CUDA_SUCCESS;
}

CUresult Driver::FreeHost(void* pointer) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = host_allocations_.find(pointer);
  if (found == host_allocations_.end()) return CUDA_ERROR_INVALID_VALUE;
  std::free(found->first);
  host_allocations_.erase(found);
  return CUDA_SUCCESS;
}

// ---- Virtual memory management ---------------------------------------------------------------

CUresult Driver::MemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                           const CUmemAllocationProp* prop) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (handle == nullptr || prop == nullptr || size == 0 || size % kAllocationGranule != 0 ||
      prop->type != CU_MEM_ALLOCATION_TYPE_PINNED) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  bool on_device = prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
  bool on_host = prop->location.type == CU_MEM_LOCATION_TYPE_HOST ||
                 prop->location.type == CU_MEM_LOCATION_TYPE_HOST_NUMA ||
                 prop->location.type == CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT;
  if (!on_device && !on_host) return CUDA_ERROR_INVALID_VALUE;
  if (on_device && Device(prop->location.id) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  PhysicalAllocation physical;
  physical.size = size;
  if (on_device) {
    CUresult charged = ChargeLocked(prop->location.id, size, &physical.charge);
    if (charged != CUDA_SUCCESS) return charged;
  }
  CUmemGenericAllocationHandle created = next_physical_handle_++;
  physical_.emplace(created, physical);
  *handle = created;
  return CUDA_SUCCESS;
}

// Physical memory lives until it is both released and unmapped everywhere.
CUresult Driver::ReleasePhysicalIfUnusedLocked(
    std::unordered_map<CUmemGenericAllocationHandle, PhysicalAllocation>::iterator physical) {
  if (!physical->second.released || physical->second.mappings > 0) return CUDA_SUCCESS;
  CUresult uncharged = UnchargeLocked(&physical->second.charge);
  physical_.erase(physical);
  return uncharged;
}

CUresult Driver::MemRelease(CUmemGenericAllocationHandle handle) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = physical_.find(handle);
  if (found == physical_.end() || found->second.released) return CUDA_ERROR_INVALID_VALUE;
  found->second.released = true;
  return ReleasePhysicalIfUnusedLocked(found);
}

CUresult Driver::AddressReserve(CUdeviceptr* pointer, size_t size, size_t alignment) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (pointer == nullptr || size == 0 || size % kAllocationGranule != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (alignment != 0 && !IsPowerOfTwo(alignment)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUdeviceptr base =
      ReserveAddressLocked(size, alignment > kAllocationGranule ? alignment : kAllocationGranule);
  reservations_.emplace(base, size);
  *pointer = base;
  return CUDA_SUCCESS;
}

CUresult Driver::AddressFree(CUdeviceptr pointer, size_t size) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = reservations_.find(pointer);
  if (found == reservations_.end() || found->second != size) return CUDA_ERROR_INVALID_VALUE;
  auto mapped = mappings_.lower_bound(pointer);
  if (mapped != mappings_.end() && mapped->first < pointer + size) return CUDA_ERROR_INVALID_VALUE;
  reservations_.erase(found);
  return CUDA_SUCCESS;
}

CUresult Driver::MemMap(CUdeviceptr pointer, size_t size, size_t offset,
                        CUmemGenericAllocationHandle handle) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (size == 0 || size % kAllocationGranule != 0 || offset % kAllocationGranule != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  auto physical = physical_.find(handle);
  if (physical == physical_.end() || physical->second.released) return CUDA_ERROR_INVALID_HANDLE;
  if (offset > physical->second.size || size > physical->second.size - offset) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // The range must lie inside one reservation and overlap no mapping.
  auto reservation = reservations_.upper_bound(pointer);
  if (reservation == reservations_.begin()) return CUDA_ERROR_INVALID_VALUE;
  reservation = std::prev(reservation);
  uint64_t into = pointer - reservation->first;
  if (into >= reservation->second || size > reservation->second - into) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  auto next = mappings_.lower_bound(pointer);
  if (next != mappings_.end() && next->first < pointer + size) return CUDA_ERROR_INVALID_VALUE;
  if (next != mappings_.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second.size > pointer) return CUDA_ERROR_INVALID_VALUE;
  }
  mappings_.emplace(pointer, Mapping{size, handle});
  ++physical->second.mappings;
  return CUDA_SUCCESS;
}

CUresult Driver::MemUnmap(CUdeviceptr pointer, size_t size) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  // The range must cover whole mappings, at least one, starting at `pointer`.
  auto first = mappings_.find(pointer);
  if (first == mappings_.end() || size == 0) return CUDA_ERROR_INVALID_VALUE;
  CUdeviceptr end = pointer + size;
  auto last = first;
  while (last != mappings_.end() && last->first < end) {
    if (last->first + last->second.size > end) return CUDA_ERROR_INVALID_VALUE;
    ++last;
  }
  CUresult result = CUDA_SUCCESS;
  for (auto mapping = first; mapping != last;) {
    auto physical = physical_.find(mapping->second.handle);
    mapping = mappings_.erase(mapping);
    if (physical == physical_.end()) continue;
    --physical->second.mappings;
    CUresult released = ReleasePhysicalIfUnusedLocked(physical);
    if (result == CUDA_SUCCESS) result = released;
  }
  return result;
}

CUresult Driver::MemSetAccess(CUdeviceptr pointer, size_t size, const CUmemAccessDesc* desc,
                              size_t count) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (desc == nullptr || count == 0) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    if (desc[i].location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
        Device(desc[i].location.id) == nullptr) {
      return CUDA_ERROR_INVALID_DEVICE;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (mappings_.find(pointer) == mappings_.end()) return CUDA_ERROR_INVALID_VALUE;
  }
  return CheckDeviceRange(pointer, size);
}

// ---- Stream-ordered allocation ---------------------------------------------------------------

uint64_t Driver::CreatePoolLocked(CUmemPoolHandle_st* handle, int device) {
  handle->device = device;
  handle->is_default = false;
  handle->id = next_pool_id_++;
  memory_pools_.emplace(handle->id, MemoryPool(device));
  return handle->id;
}

CUresult Driver::AllocateFromPoolLocked(CUdeviceptr* pointer, uint64_t size, uint64_t pool_id,
                                        CUctx_st* context) {
  MemoryPool& pool = memory_pools_.at(pool_id);
  CUdeviceptr block = pool.Place(size);
  if (block == 0) {
    // No gap: the pool reserves a new chunk of its device's memory (a host pool's is host memory,
    // charged to no device).
    const uint64_t chunk_bytes = MemoryPool::ChunkBytesFor(size);
    Charge charge;
    if (!pool.on_host()) {
      CUresult charged = ChargeLocked(pool.device(), chunk_bytes, &charge);
      if (charged != CUDA_SUCCESS) return charged;
    }
    pool.AddChunk(ReserveAddressLocked(chunk_bytes, MemoryPool::kChunkGranule), chunk_bytes,
                  charge);
    block = pool.Place(size);
  }
  DeviceAllocation allocation;
  allocation.size = size;
  allocation.kind = AllocationKind::kStreamOrdered;
  allocation.context = context;
  allocation.pool = pool_id;
  allocations_.emplace(block, allocation);
  *pointer = block;
  return CUDA_SUCCESS;
}

CUresult Driver::ShrinkPoolLocked(MemoryPool& pool, uint64_t keep) {
  CUresult result = CUDA_SUCCESS;
  for (Charge& charge : pool.Shrink(keep)) {
    CUresult uncharged = UnchargeLocked(&charge);
    if (result == CUDA_SUCCESS) result = uncharged;
  }
  return result;
}

CUresult Driver::ReturnToPoolLocked(uint64_t pool_id, CUdeviceptr pointer) {
  auto found = memory_pools_.find(pool_id);
  if (found == memory_pools_.end()) return CUDA_SUCCESS;
  found->second.Return(pointer);
  if (!found->second.destroyed) return CUDA_SUCCESS;
  CUresult result = ShrinkPoolLocked(found->second, 0);
  if (found->second.empty()) memory_pools_.erase(found);
  return result;
}

CUresult Driver::ReleasePoolsToThresholds() {
  std::lock_guard<std::mutex> lock(mutex_);
  CUresult result = CUDA_SUCCESS;
  for (auto& [id, pool] : memory_pools_) {
    CUresult released = ShrinkPoolLocked(pool, pool.release_threshold);
    if (result == CUDA_SUCCESS) result = released;
  }
  return result;
}

CUresult Driver::AllocateAsync(CUdeviceptr* pointer, size_t size, CUmemoryPool pool,
                               CUstream stream) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (pointer == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!StreamUsableLocked(stream)) return CUDA_ERROR_INVALID_HANDLE;
  // cuMemAllocAsync takes the current pool of the stream's device; cuMemAllocFromPoolAsync the
  // pool it is given, on that pool's own location whatever the current context's device.
  CUmemPoolHandle_st* from = current_pools_[static_cast<size_t>(context->device)];
  if (pool != nullptr) {
    from = pools_.Find(pool);
    if (from == nullptr) return CUDA_ERROR_INVALID_VALUE;
  }
  return AllocateFromPoolLocked(pointer, size, from->id, context);
}

CUresult Driver::FreeAsync(CUdeviceptr pointer, CUstream stream) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!StreamUsableLocked(stream)) return CUDA_ERROR_INVALID_HANDLE;
  // The block goes back to its pool at once (the fake does not wait for the stream to reach the
  // free); the pool keeps the memory until a synchronisation or a trim.
  return FreeAllocationLocked(pointer, /*stream_ordered=*/true);
}

CUresult Driver::PoolCreate(CUmemoryPool* pool, const CUmemPoolProps* props) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (pool == nullptr || props == nullptr || props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // A pool lives on its location: a device's memory, or pinned host memory (CUDA 12.6's host
  // pools), which is no device's.
  int device = -1;
  switch (props->location.type) {
    case CU_MEM_LOCATION_TYPE_DEVICE:
      if (Device(props->location.id) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
      device = props->location.id;
      break;
    case CU_MEM_LOCATION_TYPE_HOST:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA:
      break;
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  CUmemPoolHandle_st* created = pools_.Create();
  CreatePoolLocked(created, device);
  *pool = created;
  return CUDA_SUCCESS;
}

CUresult Driver::PoolDestroy(CUmemoryPool pool) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmemPoolHandle_st* found = pools_.Find(pool);
  if (found == nullptr || found->is_default) return CUDA_ERROR_INVALID_VALUE;
  // A device whose current pool this was goes back to its default pool.
  for (size_t device = 0; device < current_pools_.size(); ++device) {
    if (current_pools_[device] == found) current_pools_[device] = default_pools_[device];
  }
  // Its memory goes once no block is allocated from it any more (now, if none is).
  auto memory = memory_pools_.find(found->id);
  pools_.Destroy(found);
  if (memory == memory_pools_.end()) return CUDA_SUCCESS;
  memory->second.destroyed = true;
  CUresult result = ShrinkPoolLocked(memory->second, 0);
  if (memory->second.empty()) memory_pools_.erase(memory);
  return result;
}

CUresult Driver::DefaultPool(CUmemoryPool* pool, CUdevice device) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (Device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  *pool = default_pools_[static_cast<size_t>(device)];
  return CUDA_SUCCESS;
}

CUresult Driver::SetCurrentPool(CUdevice device, CUmemoryPool pool) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (Device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmemPoolHandle_st* found = pools_.Find(pool);
  // The pool must be one of this device's.
  if (found == nullptr || found->device != device) return CUDA_ERROR_INVALID_VALUE;
  current_pools_[static_cast<size_t>(device)] = found;
  return CUDA_SUCCESS;
}

CUresult Driver::CurrentPool(CUmemoryPool* pool, CUdevice device) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (Device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  *pool = current_pools_[static_cast<size_t>(device)];
  return CUDA_SUCCESS;
}

CUresult Driver::PoolTrimTo(CUmemoryPool pool, size_t keep) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmemPoolHandle_st* found = pools_.Find(pool);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ShrinkPoolLocked(memory_pools_.at(found->id), keep);
}

CUresult Driver::PoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attribute, void* value) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmemPoolHandle_st* found = pools_.Find(pool);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  MemoryPool& memory = memory_pools_.at(found->id);
  const auto as_int = [value] { return *static_cast<const int*>(value); };
  const auto as_u64 = [value] { return *static_cast<const cuuint64_t*>(value); };
  switch (attribute) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
      memory.reuse_follow_event_dependencies = as_int();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
      memory.reuse_allow_opportunistic = as_int();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
      memory.reuse_allow_internal_dependencies = as_int();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
      // Takes effect at the next synchronisation, as on a driver.
      memory.release_threshold = as_u64();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
      if (as_u64() != 0) return CUDA_ERROR_INVALID_VALUE;
      memory.ResetReservedHigh();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
      if (as_u64() != 0) return CUDA_ERROR_INVALID_VALUE;
      memory.ResetUsedHigh();
      return CUDA_SUCCESS;
    default:  // the current amounts are read-only
      return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult Driver::PoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attribute, void* value) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmemPoolHandle_st* found = pools_.Find(pool);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const MemoryPool& memory = memory_pools_.at(found->id);
  int* as_int = static_cast<int*>(value);
  cuuint64_t* as_u64 = static_cast<cuuint64_t*>(value);
  switch (attribute) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
      *as_int = memory.reuse_follow_event_dependencies;
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
      *as_int = memory.reuse_allow_opportunistic;
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
      *as_int = memory.reuse_allow_internal_dependencies;
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
      *as_u64 = memory.release_threshold;
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
      *as_u64 = memory.reserved();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
      *as_u64 = memory.reserved_high();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
      *as_u64 = memory.used();
      return CUDA_SUCCESS;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
      *as_u64 = memory.used_high();
      return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

// ---- Arrays ----------------------------------------------------------------------------------

// Arrays and mipmapped arrays hold nothing but their footprint, charged to their context's device.
template <typename Object>
CUresult Driver::CreateFootprintLocked(ObjectPool<Object>& pool, CUctx_st* context, uint64_t bytes,
                                       Object** created) {
  Charge charge;
  CUresult charged = ChargeLocked(context->device, bytes, &charge);
  if (charged != CUDA_SUCCESS) return charged;
  *created = pool.Create();
  (*created)->context = context;
  (*created)->charge = charge;
  return CUDA_SUCCESS;
}

template <typename Object>
CUresult Driver::DestroyFootprint(ObjectPool<Object>& pool, Object* handle) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  Object* found = pool.Find(handle);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  CUresult uncharged = UnchargeLocked(&found->charge);
  pool.Destroy(found);
  return uncharged;
}

CUresult Driver::ArrayCreate(CUarray* array, uint64_t bytes) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  return CreateFootprintLocked(arrays_, context, bytes, array);
}

CUresult Driver::ArrayDestroy(CUarray array) { return DestroyFootprint(arrays_, array); }

CUresult Driver::MipmappedArrayCreate(CUmipmappedArray* array, uint64_t bytes) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  std::lock_guard<std::mutex> lock(mutex_);
  return CreateFootprintLocked(mipmapped_arrays_, context, bytes, array);
}

CUresult Driver::MipmappedArrayDestroy(CUmipmappedArray array) {
  return DestroyFootprint(mipmapped_arrays_, array);
}

// ---- Modules and libraries: their code and data take memory ----------------------------------

CUresult Driver::ModuleLoad(CUmodule* module, uint64_t footprint) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  return CreateFootprintLocked(modules_, context, footprint, module);
}

CUresult Driver::LibraryLoad(CUlibrary* library, uint64_t footprint) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUmod_st* module = nullptr;
  if (LooksLive(g_current_context)) {
    CUresult loaded = CreateFootprintLocked(modules_, g_current_context, footprint, &module);
    if (loaded != CUDA_SUCCESS) return loaded;
  }
  CUlib_st* created = libraries_.Create();
  created->module = module;
  *library = created;
  return CUDA_SUCCESS;
}

// ---- Graphs ----------------------------------------------------------------------------------

CUresult Driver::GraphCreate(CUgraph* graph) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  *graph = graphs_.Create();
  return CUDA_SUCCESS;
}

CUresult Driver::GraphDestroy(CUgraph graph) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUgraph_st* found = graphs_.Find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUresult result = CUDA_SUCCESS;
  for (CUdeviceptr pointer : found->allocations) {
    auto allocation = allocations_.find(pointer);
    if (allocation == allocations_.end()) continue;
    CUresult freed = FreeLocked(allocation);
    if (result == CUDA_SUCCESS) result = freed;
  }
  for (CUgraphNode_st* node : found->nodes) graph_nodes_.Destroy(node);
  graphs_.Destroy(found);
  return result;
}

CUresult Driver::CheckDependenciesLocked(CUgraph_st* graph, const CUgraphNode* dependencies,
                                         size_t count) const {
  if (count > 0 && dependencies == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    CUgraphNode_st* node = graph_nodes_.Find(dependencies[i]);
    if (node == nullptr || node->graph != graph) return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

CUgraphNode_st* Driver::AddNodeLocked(CUgraph_st* graph) {
  CUgraphNode_st* node = graph_nodes_.Create();
  node->graph = graph;
  graph->nodes.push_back(node);
  return node;
}

CUresult Driver::GraphAddKernelNode(CUgraphNode* node, CUgraph graph,
                                    const CUgraphNode* dependencies, size_t count,
                                    const CUDA_KERNEL_NODE_PARAMS* params) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (node == nullptr || params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUgraph_st* found = graphs_.Find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult checked = CheckDependenciesLocked(found, dependencies, count);
      checked != CUDA_SUCCESS) {
    return checked;
  }
  CUfunc_st* function = functions_.Find(params->func);
  if (function == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  CUgraphNode_st* added = AddNodeLocked(found);
  added->busy_ns = KernelNs(*function, params->gridDimX, params->gridDimY, params->gridDimZ);
  *node = added;
  return CUDA_SUCCESS;
}

CUresult Driver::GraphAddMemAllocNode(CUgraphNode* node, CUgraph graph,
                                      const CUgraphNode* dependencies, size_t count,
                                      CUDA_MEM_ALLOC_NODE_PARAMS* params) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (node == nullptr || params == nullptr || params->bytesize == 0 ||
      params->poolProps.allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
      params->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (Device(params->poolProps.location.id) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUgraph_st* found = graphs_.Find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult checked = CheckDependenciesLocked(found, dependencies, count);
      checked != CUDA_SUCCESS) {
    return checked;
  }
  // The fake reserves graph memory when the node is added (a real driver does so at
  // instantiation at the latest) and gives it back when the graph is destroyed.
  CUdeviceptr pointer = 0;
  CUresult allocated = AllocateLocked(&pointer, params->bytesize, AllocationKind::kGraph,
                                      params->poolProps.location.id, nullptr);
  if (allocated != CUDA_SUCCESS) return allocated;
  found->allocations.push_back(pointer);
  params->dptr = pointer;
  *node = AddNodeLocked(found);
  return CUDA_SUCCESS;
}

CUresult Driver::GraphAddMemFreeNode(CUgraphNode* node, CUgraph graph,
                                     const CUgraphNode* dependencies, size_t count,
                                     CUdeviceptr pointer) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (node == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUgraph_st* found = graphs_.Find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult checked = CheckDependenciesLocked(found, dependencies, count);
      checked != CUDA_SUCCESS) {
    return checked;
  }
  auto allocation = allocations_.find(pointer);
  if (allocation == allocations_.end() || allocation->second.kind != AllocationKind::kGraph) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *node = AddNodeLocked(found);
  return CUDA_SUCCESS;
}

CUresult Driver::GraphInstantiate(CUgraphExec* exec, CUgraph graph) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  CUgraph_st* found = graphs_.Find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUgraphExec_st* created = graph_execs_.Create();
  // A launch queues the kernel nodes one after another in the order they were added (the fake
  // runs a graph's nodes in sequence whatever their dependencies).
  for (const CUgraphNode_st* node : found->nodes) {
    if (node->busy_ns != 0) created->busy_kernels_ns.push_back(node->busy_ns);
  }
  *exec = created;
  return CUDA_SUCCESS;
}

CUresult Driver::GraphExecDestroy(CUgraphExec exec) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  std::lock_guard<std::mutex> lock(mutex_);
  CUgraphExec_st* found = graph_execs_.Find(exec);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  graph_execs_.Destroy(found);
  return CUDA_SUCCESS;
}

}  // namespace tessera::fakegpu
