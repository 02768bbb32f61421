// Stream-ordered memory pools: the shim charges what a pool reserves from its device, not each
// allocation. A pool packs small allocations into shared chunks and keeps freed memory up to its
// release threshold, so per-allocation charges were both too high (10,000 × 4 KiB charged 20 GiB)
// and too low (memory a pool keeps after cuMemFreeAsync was uncharged).
//
// The shim does not model the driver's chunking: after every call that can change a pool's
// reserve (a stream-ordered allocation or free, cuMemPoolTrimTo, a stream, event or context
// synchronisation) it asks the driver for CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT and charges or
// releases the difference on the pool's device. Before an allocation that the pool's free
// reserve (RESERVED - USED) cannot hold, it reserves the allocation's size in pages, so the limit
// is checked before the driver is asked; if the pool then grew by more than that and the rest
// would pass the limit, the allocation is freed again, the pool trimmed back and the answer is
// CUDA_ERROR_OUT_OF_MEMORY.
//
// A pool belongs to its location's device (cuMemPoolCreate's props.location; a default pool to
// its device), whatever device is current; a host pool (CU_MEM_LOCATION_TYPE_HOST*) is no
// device's memory and is not charged.
//
// Thread safety: one mutex serialises every pool call the shim follows, so two threads never
// true up the same reserve twice. Lock order: this mutex, then the Shim's.
#ifndef TESSERA_SHIM_POOL_ACCOUNTING_H_
#define TESSERA_SHIM_POOL_ACCOUNTING_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "cuda/driver_api.h"
#include "shim/shim.h"

namespace tessera::shim {

class PoolAccounting {
 public:
  // The process's one record of pools, created on first use; it handles its own fork (a child
  // starts with no pools, as it starts with no CUDA state).
  static PoolAccounting& Get();

  // A stream-ordered allocation from `pool` (null: the current pool of the current device) made
  // by `call`; `free_async` gives it back if its growth of the pool is refused.
  template <typename DriverCall>
  CUresult Allocate(Shim& shim, CUdeviceptr* pointer, size_t bytes, CUmemoryPool pool,
                    CUstream stream, decltype(&::cuMemFreeAsync) free_async, DriverCall call) {
    std::lock_guard<std::mutex> lock(mutex_);
    Pending pending;
    if (CUresult reserved = ReserveLocked(shim, pool, bytes, &pending); reserved != CUDA_SUCCESS) {
      return reserved;
    }
    return SettleLocked(shim, pending, call(), pointer, stream, free_async);
  }

  // After a successful cuMemFreeAsync or cuMemFree of `pointer`.
  void OnFreed(Shim& shim, CUdeviceptr pointer);
  // After a successful cuMemPoolCreate: the pool lives on `props.location`.
  void OnCreated(Shim& shim, CUmemoryPool pool, const CUmemPoolProps& props);
  // After a successful cuMemPoolDestroy: its memory goes when its last allocation is freed.
  void OnDestroyed(Shim& shim, CUmemoryPool pool);
  // After a successful cuMemPoolTrimTo.
  void OnTrimmed(Shim& shim, CUmemoryPool pool);
  // After a successful synchronisation, when a pool may have given memory back: every pool is
  // trued up. Lock-free while the process has no device pool.
  void OnSynchronized(Shim& shim) {
    if (device_pools_.load(std::memory_order_acquire)) TrueUpAll(shim);
  }

 private:
  struct Pool {
    int device = -1;         // -1: a host pool, never charged
    uint64_t charged = 0;    // what the region holds for it
    uint64_t pointers = 0;   // its allocations the shim saw and has not seen freed
    bool destroyed = false;  // its memory goes with its last allocation
  };
  struct Pending {
    CUmemoryPool pool = nullptr;  // null: not accounted, the driver decides
    int device = -1;
    uint64_t reserved = 0;  // reserved ahead of the driver call, beyond the pool's charge
    uint64_t before = 0;    // the pool's reserve before the call
  };

  PoolAccounting() = default;
  // The pool's record, learnt on first sight (a default pool's device, or the current device
  // for a pool the shim did not see created). REQUIRES: mutex_ held.
  Pool& RecordLocked(Shim& shim, CUmemoryPool pool);
  CUresult ReserveLocked(Shim& shim, CUmemoryPool pool, size_t bytes, Pending* pending);
  CUresult SettleLocked(Shim& shim, const Pending& pending, CUresult result, CUdeviceptr* pointer,
                        CUstream stream, decltype(&::cuMemFreeAsync) free_async);
  // Moves the region's charge for `pool`, of which `held` bytes are held now, to what the driver
  // says it reserves. False when growing it would pass the limit (the charge then stays `held`).
  bool TrueUpLocked(Shim& shim, Pool& pool, CUmemoryPool handle, uint64_t held);
  // The same with the reserve already read.
  bool ChargeReserveLocked(Shim& shim, Pool& pool, uint64_t reserved, uint64_t held);
  void TrueUpAll(Shim& shim);
  void ForgetLocked(Shim& shim, CUmemoryPool handle);

  std::mutex mutex_;
  std::unordered_map<CUmemoryPool, Pool> pools_;
  std::unordered_map<CUdeviceptr, CUmemoryPool> pointers_;
  std::atomic<bool> device_pools_{false};  // whether pools_ holds a device pool
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_POOL_ACCOUNTING_H_
