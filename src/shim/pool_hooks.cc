// Pool hooks: the calls besides allocation and free that change what a stream-ordered pool
// reserves (pool_accounting.h). Each forwards first and trues the pool's charge up after.
#include "shim/pool_accounting.h"
#include "shim/shim.h"

using tessera::shim::PoolAccounting;
using tessera::shim::Shim;

namespace {

// After a synchronisation a pool gives back what it holds beyond its release threshold.
CUresult Synchronized(CUresult result) {
  Shim& shim = Shim::Get();
  if (result == CUDA_SUCCESS && !shim.passthrough()) PoolAccounting::Get().OnSynchronized(shim);
  return result;
}

}  // namespace

// The driver's entry points, with cuda.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)
TESSERA_EXPORT CUresult cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* poolProps) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemPoolCreate(pool, poolProps);
  if (result == CUDA_SUCCESS && !shim.passthrough() && pool != nullptr && poolProps != nullptr) {
    PoolAccounting::Get().OnCreated(shim, *pool, *poolProps);
  }
  return result;
}

TESSERA_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemPoolDestroy(pool);
  if (result == CUDA_SUCCESS && !shim.passthrough()) PoolAccounting::Get().OnDestroyed(shim, pool);
  return result;
}

TESSERA_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemPoolTrimTo(pool, minBytesToKeep);
  if (result == CUDA_SUCCESS && !shim.passthrough()) PoolAccounting::Get().OnTrimmed(shim, pool);
  return result;
}

TESSERA_EXPORT CUresult cuStreamSynchronize(CUstream hStream) {
  return Synchronized(Shim::Get().cuda().cuStreamSynchronize(hStream));
}

TESSERA_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream hStream) {
  return Synchronized(Shim::Get().cuda().cuStreamSynchronize_ptsz(hStream));
}

TESSERA_EXPORT CUresult cuCtxSynchronize(void) {
  return Synchronized(Shim::Get().cuda().cuCtxSynchronize());
}

TESSERA_EXPORT CUresult cuEventSynchronize(CUevent hEvent) {
  return Synchronized(Shim::Get().cuda().cuEventSynchronize(hEvent));
}
// NOLINTEND(readability-identifier-naming)
