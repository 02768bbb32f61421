// Stream-ordered pools charged at what they reserve (pool_accounting.h).
#include "shim/pool_accounting.h"

#include <pthread.h>

#include <new>

#include "cuda/footprint.h"

namespace tessera::shim {
namespace {

bool Attribute(Shim& shim, CUmemoryPool pool, CUmemPool_attribute attribute, uint64_t* value) {
  cuuint64_t read = 0;
  if (shim.cuda().cuMemPoolGetAttribute(pool, attribute, &read) != CUDA_SUCCESS) return false;
  *value = read;
  return true;
}

}  // namespace

PoolAccounting& PoolAccounting::Get() {
  // Never destroyed: hooks may run during static destruction.
  static PoolAccounting* const pools = [] {
    auto* created = new PoolAccounting();
    pthread_atfork([] { Get().mutex_.lock(); }, [] { Get().mutex_.unlock(); },
                   [] {
                     PoolAccounting& child = Get();
                     child.pools_.clear();
                     child.pointers_.clear();
                     child.device_pools_.store(false);
                     child.mutex_.unlock();
                   });
    return created;
  }();
  return *pools;
}

PoolAccounting::Pool& PoolAccounting::RecordLocked(Shim& shim, CUmemoryPool pool) {
  auto found = pools_.find(pool);
  if (found != pools_.end()) return found->second;
  Pool record;
  record.device = shim.CurrentDevice();
  int count = 0;
  if (shim.cuda().cuDeviceGetCount(&count) == CUDA_SUCCESS) {
    for (CUdevice ordinal = 0; ordinal < count; ++ordinal) {
      CUmemoryPool default_pool = nullptr;
      if (shim.cuda().cuDeviceGetDefaultMemPool(&default_pool, ordinal) == CUDA_SUCCESS &&
          default_pool == pool) {
        record.device = shim.DeviceOf(ordinal);
        break;
      }
    }
  }
  if (record.device >= 0) device_pools_.store(true, std::memory_order_release);
  return pools_.emplace(pool, record).first->second;
}

void PoolAccounting::OnCreated(Shim& shim, CUmemoryPool pool, const CUmemPoolProps& props) {
  std::lock_guard<std::mutex> lock(mutex_);
  Pool record;
  // Only device memory counts: a host pool is pinned host memory.
  if (props.location.type == CU_MEM_LOCATION_TYPE_DEVICE) {
    record.device = shim.DeviceOf(props.location.id);
    if (record.device >= 0) device_pools_.store(true, std::memory_order_release);
  }
  pools_[pool] = record;
}

CUresult PoolAccounting::ReserveLocked(Shim& shim, CUmemoryPool pool, size_t bytes,
                                       Pending* pending) {
  if (pool == nullptr) {
    int ordinal = shim.CurrentOrdinal();
    if (ordinal < 0 || shim.cuda().cuDeviceGetMemPool(&pool, ordinal) != CUDA_SUCCESS) {
      return CUDA_SUCCESS;  // the driver will say what is wrong
    }
  }
  Pool& record = RecordLocked(shim, pool);
  uint64_t reserved = 0;
  uint64_t used = 0;
  if (record.device < 0 ||
      !Attribute(shim, pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved) ||
      !Attribute(shim, pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used)) {
    return CUDA_SUCCESS;
  }
  // What the pool released or took behind the shim's back (a synchronisation it did not see).
  ChargeReserveLocked(shim, record, reserved, record.charged);
  pending->pool = pool;
  pending->device = record.device;
  pending->before = record.charged;
  // What the pool's free reserve cannot hold, it will reserve from the device: ask first.
  const uint64_t free_in_pool = reserved > used ? reserved - used : 0;
  if (free_in_pool < bytes) {
    pending->reserved = cuda::PageBytes(bytes);
    if (!shim.Reserve(record.device, pending->reserved)) return CUDA_ERROR_OUT_OF_MEMORY;
  }
  return CUDA_SUCCESS;
}

CUresult PoolAccounting::SettleLocked(Shim& shim, const Pending& pending, CUresult result,
                                      CUdeviceptr* pointer, CUstream stream,
                                      decltype(&::cuMemFreeAsync) free_async) {
  if (pending.pool == nullptr) return result;
  Pool& record = pools_[pending.pool];
  const uint64_t held = record.charged + pending.reserved;
  if (result != CUDA_SUCCESS) {
    if (pending.reserved != 0) shim.Release(pending.device, pending.reserved);
    return result;
  }
  if (TrueUpLocked(shim, record, pending.pool, held)) {
    pointers_[*pointer] = pending.pool;
    ++record.pointers;
    return CUDA_SUCCESS;
  }
  // The pool grew by more than was reserved and the rest passes the limit: undo the allocation
  // and give the growth back to the device.
  free_async(*pointer, stream);
  shim.cuda().cuMemPoolTrimTo(pending.pool, pending.before);
  TrueUpLocked(shim, record, pending.pool, record.charged);
  *pointer = 0;
  return CUDA_ERROR_OUT_OF_MEMORY;
}

bool PoolAccounting::TrueUpLocked(Shim& shim, Pool& pool, CUmemoryPool handle, uint64_t held) {
  uint64_t reserved = 0;
  if (!Attribute(shim, handle, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved)) {
    pool.charged = held;
    return true;
  }
  return ChargeReserveLocked(shim, pool, reserved, held);
}

bool PoolAccounting::ChargeReserveLocked(Shim& shim, Pool& pool, uint64_t reserved, uint64_t held) {
  if (reserved > held && !shim.Reserve(pool.device, reserved - held)) {
    pool.charged = held;
    return false;
  }
  if (reserved < held) shim.Release(pool.device, held - reserved);
  pool.charged = reserved;
  return true;
}

void PoolAccounting::TrueUpAll(Shim& shim) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [handle, pool] : pools_) {
    if (pool.device >= 0 && !pool.destroyed) TrueUpLocked(shim, pool, handle, pool.charged);
  }
}

void PoolAccounting::OnFreed(Shim& shim, CUdeviceptr pointer) {
  if (!device_pools_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = pointers_.find(pointer);
  if (found == pointers_.end()) return;
  CUmemoryPool handle = found->second;
  pointers_.erase(found);
  auto pool = pools_.find(handle);
  if (pool == pools_.end()) return;
  if (pool->second.pointers > 0) --pool->second.pointers;
  if (pool->second.destroyed) {
    if (pool->second.pointers == 0) ForgetLocked(shim, handle);
    return;
  }
  // The memory goes back to the pool, not to the device: the reserve changes only if the pool
  // gives it back at once.
  TrueUpLocked(shim, pool->second, handle, pool->second.charged);
}

void PoolAccounting::OnDestroyed(Shim& shim, CUmemoryPool pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = pools_.find(pool);
  if (found == pools_.end()) return;
  // The driver frees a destroyed pool's memory once its last allocation is freed; its reserve
  // can no longer be asked for, so the whole charge stays until then.
  found->second.destroyed = true;
  if (found->second.pointers == 0) ForgetLocked(shim, pool);
}

void PoolAccounting::OnTrimmed(Shim& shim, CUmemoryPool pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = pools_.find(pool);
  if (found == pools_.end() || found->second.device < 0) return;
  TrueUpLocked(shim, found->second, pool, found->second.charged);
}

void PoolAccounting::ForgetLocked(Shim& shim, CUmemoryPool handle) {
  auto found = pools_.find(handle);
  if (found == pools_.end()) return;
  if (found->second.device >= 0 && found->second.charged != 0) {
    shim.Release(found->second.device, found->second.charged);
  }
  pools_.erase(found);
}

}  // namespace tessera::shim
