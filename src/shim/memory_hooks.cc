// Memory hooks: every allocation family is charged at the size the driver will take, reserved
// before the driver call and rolled back if it fails; what the application is told about memory
// is the container's view. Driver errors pass through unchanged, NULL outputs are the driver's
// to reject, and a free of a handle the shim does not know still goes to the driver.
#include <algorithm>
#include <mutex>
#include <vector>

#include "cuda/footprint.h"
#include "shim/pool_accounting.h"
#include "shim/shim.h"

using tessera::shim::ChargeKind;
using tessera::shim::PoolAccounting;
using tessera::shim::Shim;
namespace cuda = tessera::cuda;

namespace {

// Reserves `bytes` on `device`, makes the driver call, and gives the bytes back if it fails.
// Over the limit the driver is not called and the answer is CUDA_ERROR_OUT_OF_MEMORY.
template <typename DriverCall>
CUresult ReserveThenCall(Shim& shim, int device, uint64_t bytes, DriverCall call) {
  if (!shim.Reserve(device, bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  CUresult result = call();
  if (result != CUDA_SUCCESS) shim.Release(device, bytes);
  return result;
}

// Allocations belong to the context current when they were made: destroying it frees them.
uintptr_t CurrentContext(Shim& shim) {
  CUcontext context = nullptr;
  if (shim.cuda().cuCtxGetCurrent(&context) != CUDA_SUCCESS) return 0;
  return reinterpret_cast<uintptr_t>(context);
}

// A plain device allocation charged in whole pages: cuMemAlloc and managed.
template <typename DriverCall>
CUresult AllocatePages(CUdeviceptr* dptr, size_t bytesize, DriverCall call) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || dptr == nullptr || bytesize == 0) return call();
  int device = shim.CurrentDevice();
  uint64_t bytes = cuda::PageBytes(bytesize);
  CUresult result = ReserveThenCall(shim, device, bytes, call);
  if (result == CUDA_SUCCESS) {
    shim.Track(ChargeKind::kPointer, *dptr, device, bytes, CurrentContext(shim));
  }
  return result;
}

// Frees: the driver decides first; a charge is dropped only for what it really freed.
CUresult Forget(Shim& shim, CUresult result, ChargeKind kind, uint64_t key) {
  if (result == CUDA_SUCCESS && !shim.passthrough()) shim.Untrack(kind, key);
  return result;
}

// Context memory is measured, not guessed: the region's estimate (what the container's last
// context took) is reserved before creation, then trued up to what NVML says this process holds
// beyond its own allocations. Over the limit the new context is destroyed again.
//
// The true-up: something the driver just made under an `estimate` reservation took what NVML's
// figure for this process grew by since `before` (its figure just before the call), or, without
// one, what NVML says the process holds beyond its other charges. Sets `charged` to what stays
// reserved (the estimate when NVML cannot tell) and `measured` to whether NVML told; false, with
// the estimate given back, when the limit cannot hold the measured size (the caller undoes what
// it made).
bool TrueUp(Shim& shim, int device, uint64_t estimate, const uint64_t* before, uint64_t* charged,
            bool* measured) {
  *charged = estimate;
  *measured = false;
  uint64_t process_bytes = 0;
  if (!shim.ProcessMemoryFromNvml(device, &process_bytes)) return true;
  uint64_t others = 0;
  if (before != nullptr) {
    others = *before;
  } else if (const uint64_t charged_here = shim.ProcessCharged(device); charged_here > estimate) {
    others = charged_here - estimate;
  }
  const uint64_t taken = process_bytes > others ? process_bytes - others : 0;
  if (taken > estimate && !shim.Reserve(device, taken - estimate)) {
    shim.Release(device, estimate);
    return false;
  }
  if (taken < estimate) shim.Release(device, estimate - taken);
  *charged = taken;
  *measured = true;
  return true;
}

template <typename Create, typename Destroy>
CUresult CreateChargedContext(Shim& shim, int device, Create create, Destroy destroy,
                              ChargeKind kind, CUcontext* created) {
  uint64_t estimate = shim.region().ContextEstimate(device);
  // A process in a container's pid namespace learns its node pid from its first context.
  std::vector<unsigned> before;
  const bool learn = shim.ShouldLearnDriverPid() && shim.NvmlPids(device, &before);
  CUresult result = ReserveThenCall(shim, device, estimate, create);
  if (result != CUDA_SUCCESS) return result;
  if (learn) shim.LearnDriverPid(device, before);
  uint64_t charged = 0;
  bool measured = false;
  if (!TrueUp(shim, device, estimate, nullptr, &charged, &measured)) {
    destroy();
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  if (measured) shim.region().SetContextEstimate(device, charged);
  uint64_t key = kind == ChargeKind::kPrimaryContext ? static_cast<uint64_t>(device)
                                                     : reinterpret_cast<uint64_t>(*created);
  uintptr_t owner = kind == ChargeKind::kContext ? reinterpret_cast<uintptr_t>(*created) : 0;
  shim.Track(kind, key, device, charged, owner);
  return CUDA_SUCCESS;
}

// A stream-ordered allocation given back, by cuMemFreeAsync or cuMemFree: to its pool.
CUresult FreeToPool(CUdeviceptr dptr, CUresult result) {
  Shim& shim = Shim::Get();
  if (result == CUDA_SUCCESS && !shim.passthrough()) PoolAccounting::Get().OnFreed(shim, dptr);
  return result;
}

}  // namespace

// The driver's entry points, with cuda.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)

// ---- What the application is told ------------------------------------------------------------
TESSERA_EXPORT CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemGetInfo_v2(free, total);
  if (result != CUDA_SUCCESS || shim.passthrough()) return result;
  int device = shim.CurrentDevice();
  uint64_t limit = shim.Limit(device);
  if (limit == 0) return result;
  uint64_t used = shim.Used(device);
  uint64_t remaining = limit > used ? limit - used : 0;
  if (total != nullptr) *total = std::min<size_t>(*total, limit);
  if (free != nullptr) *free = std::min<size_t>(*free, remaining);
  return result;
}

TESSERA_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuDeviceTotalMem_v2(bytes, dev);
  if (result != CUDA_SUCCESS || shim.passthrough() || bytes == nullptr) return result;
  uint64_t limit = shim.Limit(shim.DeviceOf(dev));
  if (limit != 0) *bytes = std::min<size_t>(*bytes, limit);
  return result;
}

// ---- Plain, managed, pitched ---------------------------------------------------------------
TESSERA_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
  return AllocatePages(dptr, bytesize,
                       [&] { return Shim::Get().cuda().cuMemAlloc_v2(dptr, bytesize); });
}

TESSERA_EXPORT CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytesize, unsigned int flags) {
  // Managed memory may live on the device in full, so all of it counts against the limit.
  return AllocatePages(dptr, bytesize,
                       [&] { return Shim::Get().cuda().cuMemAllocManaged(dptr, bytesize, flags); });
}

TESSERA_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pPitch, size_t WidthInBytes,
                                           size_t Height, unsigned int ElementSizeBytes) {
  Shim& shim = Shim::Get();
  auto call = [&] {
    return shim.cuda().cuMemAllocPitch_v2(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
  };
  if (shim.passthrough() || dptr == nullptr || pPitch == nullptr || WidthInBytes == 0 ||
      Height == 0) {
    return call();
  }
  int device = shim.CurrentDevice();
  uint64_t estimate =
      cuda::PageBytes(cuda::MultiplySaturating(cuda::PitchFor(WidthInBytes), Height));
  CUresult result = ReserveThenCall(shim, device, estimate, call);
  if (result != CUDA_SUCCESS) return result;
  // The driver chose the pitch: charge what it really laid out.
  uint64_t actual = cuda::PageBytes(cuda::MultiplySaturating(*pPitch, Height));
  if (actual > estimate && !shim.Reserve(device, actual - estimate)) {
    shim.cuda().cuMemFree_v2(*dptr);
    shim.Release(device, estimate);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  if (actual < estimate) shim.Release(device, estimate - actual);
  shim.Track(ChargeKind::kPointer, *dptr, device, actual, CurrentContext(shim));
  return result;
}

TESSERA_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
  Shim& shim = Shim::Get();
  return FreeToPool(dptr, Forget(shim, shim.cuda().cuMemFree_v2(dptr), ChargeKind::kPointer, dptr));
}

// ---- Virtual memory management ------------------------------------------------------------
TESSERA_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                    const CUmemAllocationProp* prop, unsigned long long flags) {
  Shim& shim = Shim::Get();
  auto call = [&] { return shim.cuda().cuMemCreate(handle, size, prop, flags); };
  // Host-located physical memory (NCCL's host buffers) is not device memory: not charged. The
  // device comes from the request itself, never from an uninitialised variable.
  if (shim.passthrough() || handle == nullptr || prop == nullptr || size == 0 ||
      prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return call();
  }
  int device = shim.DeviceOf(prop->location.id);
  if (device < 0) return call();
  uint64_t bytes = cuda::PageBytes(size);
  CUresult result = ReserveThenCall(shim, device, bytes, call);
  if (result == CUDA_SUCCESS) shim.Track(ChargeKind::kVmmHandle, *handle, device, bytes, 0);
  return result;
}

// The memory of a handle lives until it is released and its last mapping is gone (allocators
// release a handle right after mapping it): its charge goes then.
TESSERA_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemRelease(handle);
  if (result == CUDA_SUCCESS && !shim.passthrough()) shim.OnVmmReleased(handle);
  return result;
}

TESSERA_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                                 CUmemGenericAllocationHandle handle, unsigned long long flags) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemMap(ptr, size, offset, handle, flags);
  if (result == CUDA_SUCCESS && !shim.passthrough()) shim.OnVmmMapped(ptr, handle);
  return result;
}

TESSERA_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuMemUnmap(ptr, size);
  if (result == CUDA_SUCCESS && !shim.passthrough()) shim.OnVmmUnmapped(ptr, size);
  return result;
}

// ---- Stream-ordered allocation ---------------------------------------------------------------
// Charged at what the pool reserves, on the pool's device (pool_accounting.h).
namespace {

template <typename DriverCall>
CUresult AllocateFromPool(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream stream,
                          decltype(&::cuMemFreeAsync) free_async, DriverCall call) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || dptr == nullptr || bytesize == 0) return call();
  return PoolAccounting::Get().Allocate(shim, dptr, bytesize, pool, stream, free_async, call);
}

}  // namespace

TESSERA_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) {
  return AllocateFromPool(dptr, bytesize, nullptr, hStream, Shim::Get().cuda().cuMemFreeAsync, [&] {
    return Shim::Get().cuda().cuMemAllocAsync(dptr, bytesize, hStream);
  });
}

TESSERA_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) {
  return AllocateFromPool(
      dptr, bytesize, nullptr, hStream, Shim::Get().cuda().cuMemFreeAsync_ptsz,
      [&] { return Shim::Get().cuda().cuMemAllocAsync_ptsz(dptr, bytesize, hStream); });
}

TESSERA_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytesize,
                                                CUmemoryPool pool, CUstream hStream) {
  return AllocateFromPool(dptr, bytesize, pool, hStream, Shim::Get().cuda().cuMemFreeAsync, [&] {
    return Shim::Get().cuda().cuMemAllocFromPoolAsync(dptr, bytesize, pool, hStream);
  });
}

TESSERA_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytesize,
                                                     CUmemoryPool pool, CUstream hStream) {
  return AllocateFromPool(
      dptr, bytesize, pool, hStream, Shim::Get().cuda().cuMemFreeAsync_ptsz, [&] {
        return Shim::Get().cuda().cuMemAllocFromPoolAsync_ptsz(dptr, bytesize, pool, hStream);
      });
}

TESSERA_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream) {
  return FreeToPool(dptr, Shim::Get().cuda().cuMemFreeAsync(dptr, hStream));
}

TESSERA_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream) {
  return FreeToPool(dptr, Shim::Get().cuda().cuMemFreeAsync_ptsz(dptr, hStream));
}

// ---- Arrays ----------------------------------------------------------------------------------
template <typename Handle, typename DriverCall>
CUresult CreateArray(Shim& shim, Handle* handle, uint64_t bytes, ChargeKind kind, DriverCall call) {
  int device = shim.CurrentDevice();
  CUresult result = ReserveThenCall(shim, device, bytes, call);
  if (result == CUDA_SUCCESS) {
    shim.Track(kind, reinterpret_cast<uint64_t>(*handle), device, bytes, CurrentContext(shim));
  }
  return result;
}

TESSERA_EXPORT CUresult cuArrayCreate_v2(CUarray* pHandle,
                                         const CUDA_ARRAY_DESCRIPTOR* pAllocateArray) {
  Shim& shim = Shim::Get();
  auto call = [&] { return shim.cuda().cuArrayCreate_v2(pHandle, pAllocateArray); };
  if (shim.passthrough() || pHandle == nullptr || pAllocateArray == nullptr) return call();
  return CreateArray(shim, pHandle, cuda::ArrayBytes(*pAllocateArray), ChargeKind::kArray, call);
}

TESSERA_EXPORT CUresult cuArray3DCreate_v2(CUarray* pHandle,
                                           const CUDA_ARRAY3D_DESCRIPTOR* pAllocateArray) {
  Shim& shim = Shim::Get();
  auto call = [&] { return shim.cuda().cuArray3DCreate_v2(pHandle, pAllocateArray); };
  if (shim.passthrough() || pHandle == nullptr || pAllocateArray == nullptr) return call();
  return CreateArray(shim, pHandle, cuda::ArrayBytes(*pAllocateArray), ChargeKind::kArray, call);
}

TESSERA_EXPORT CUresult cuArrayDestroy(CUarray hArray) {
  Shim& shim = Shim::Get();
  return Forget(shim, shim.cuda().cuArrayDestroy(hArray), ChargeKind::kArray,
                reinterpret_cast<uint64_t>(hArray));
}

TESSERA_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray* pHandle,
                                               const CUDA_ARRAY3D_DESCRIPTOR* pMipmappedArrayDesc,
                                               unsigned int numMipmapLevels) {
  Shim& shim = Shim::Get();
  auto call = [&] {
    return shim.cuda().cuMipmappedArrayCreate(pHandle, pMipmappedArrayDesc, numMipmapLevels);
  };
  if (shim.passthrough() || pHandle == nullptr || pMipmappedArrayDesc == nullptr) return call();
  return CreateArray(shim, pHandle,
                     cuda::MipmappedArrayBytes(*pMipmappedArrayDesc, numMipmapLevels),
                     ChargeKind::kMipmappedArray, call);
}

TESSERA_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray) {
  Shim& shim = Shim::Get();
  return Forget(shim, shim.cuda().cuMipmappedArrayDestroy(hMipmappedArray),
                ChargeKind::kMipmappedArray, reinterpret_cast<uint64_t>(hMipmappedArray));
}

// ---- Graph memory nodes ------------------------------------------------------------------------
// A graph's memory is charged when its allocation node is added and released with the graph,
// whether the node comes from cuGraphAddMemAllocNode or the generic cuGraphAddNode(_v2).
namespace {

template <typename DriverCall>
CUresult AddChargedAllocNode(CUgraphNode* node, CUgraph graph,
                             const CUDA_MEM_ALLOC_NODE_PARAMS* params, DriverCall call) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || node == nullptr || params == nullptr || params->bytesize == 0) {
    return call();
  }
  const CUmemLocation& location = params->poolProps.location;
  int device = location.type == CU_MEM_LOCATION_TYPE_DEVICE ? shim.DeviceOf(location.id)
                                                            : shim.CurrentDevice();
  if (device < 0) return call();
  uint64_t bytes = cuda::PageBytes(params->bytesize);
  CUresult result = ReserveThenCall(shim, device, bytes, call);
  if (result == CUDA_SUCCESS) {
    shim.Track(ChargeKind::kGraphMemory, reinterpret_cast<uint64_t>(*node), device, bytes,
               reinterpret_cast<uintptr_t>(graph));
  }
  return result;
}

// The allocation of a generic node's parameters, or nullptr for any other node type.
const CUDA_MEM_ALLOC_NODE_PARAMS* AllocationOf(const CUgraphNodeParams* params) {
  return params != nullptr && params->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC ? &params->alloc
                                                                           : nullptr;
}

}  // namespace

TESSERA_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode* phGraphNode, CUgraph hGraph,
                                               const CUgraphNode* dependencies,
                                               size_t numDependencies,
                                               CUDA_MEM_ALLOC_NODE_PARAMS* nodeParams) {
  return AddChargedAllocNode(phGraphNode, hGraph, nodeParams, [&] {
    return Shim::Get().cuda().cuGraphAddMemAllocNode(phGraphNode, hGraph, dependencies,
                                                     numDependencies, nodeParams);
  });
}

TESSERA_EXPORT CUresult cuGraphAddNode(CUgraphNode* phGraphNode, CUgraph hGraph,
                                       const CUgraphNode* dependencies, size_t numDependencies,
                                       CUgraphNodeParams* nodeParams) {
  auto call = [&] {
    return Shim::Get().cuda().cuGraphAddNode(phGraphNode, hGraph, dependencies, numDependencies,
                                             nodeParams);
  };
  const CUDA_MEM_ALLOC_NODE_PARAMS* allocation = AllocationOf(nodeParams);
  return allocation == nullptr ? call()
                               : AddChargedAllocNode(phGraphNode, hGraph, allocation, call);
}

TESSERA_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode* phGraphNode, CUgraph hGraph,
                                          const CUgraphNode* dependencies,
                                          const CUgraphEdgeData* dependencyData,
                                          size_t numDependencies, CUgraphNodeParams* nodeParams) {
  auto call = [&] {
    return Shim::Get().cuda().cuGraphAddNode_v2(phGraphNode, hGraph, dependencies, dependencyData,
                                                numDependencies, nodeParams);
  };
  const CUDA_MEM_ALLOC_NODE_PARAMS* allocation = AllocationOf(nodeParams);
  return allocation == nullptr ? call()
                               : AddChargedAllocNode(phGraphNode, hGraph, allocation, call);
}

TESSERA_EXPORT CUresult cuGraphDestroy(CUgraph hGraph) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuGraphDestroy(hGraph);
  if (result == CUDA_SUCCESS && !shim.passthrough()) {
    shim.UntrackOwner(reinterpret_cast<uintptr_t>(hGraph));
  }
  return result;
}

// ---- Contexts ----------------------------------------------------------------------------------
TESSERA_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
  Shim& shim = Shim::Get();
  auto call = [&] { return shim.cuda().cuDevicePrimaryCtxRetain(pctx, dev); };
  if (shim.passthrough() || pctx == nullptr) return call();
  const int device = shim.DeviceOf(dev);
  if (device < 0) return call();
  if (shim.IsTracked(ChargeKind::kPrimaryContext, static_cast<uint64_t>(device))) {
    CUresult result = call();
    if (result == CUDA_SUCCESS) shim.CountPrimaryRetains(device, 1, *pctx);
    return result;
  }
  CUresult result = CreateChargedContext(
      shim, device, call, [&] { shim.cuda().cuDevicePrimaryCtxRelease_v2(dev); },
      ChargeKind::kPrimaryContext, pctx);
  if (result == CUDA_SUCCESS) shim.CountPrimaryRetains(device, 1, *pctx);
  return result;
}

namespace {

// The primary context of container device `device` is gone: its memory and every allocation
// made in it are freed.
void ForgetPrimaryContext(Shim& shim, int device) {
  shim.UntrackOwner(reinterpret_cast<uintptr_t>(shim.PrimaryContext(device)));
  shim.Untrack(ChargeKind::kPrimaryContext, static_cast<uint64_t>(device));
}

}  // namespace

TESSERA_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuDevicePrimaryCtxRelease_v2(dev);
  if (result != CUDA_SUCCESS || shim.passthrough()) return result;
  const int device = shim.DeviceOf(dev);
  if (device < 0) return result;
  if (shim.CountPrimaryRetains(device, -1, nullptr) == 0) ForgetPrimaryContext(shim, device);
  return result;
}

TESSERA_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuDevicePrimaryCtxReset_v2(dev);
  if (result != CUDA_SUCCESS || shim.passthrough()) return result;
  const int device = shim.DeviceOf(dev);
  if (device < 0) return result;
  // Reset frees every allocation of the primary context; retains stay counted by the driver.
  shim.UntrackOwner(reinterpret_cast<uintptr_t>(shim.PrimaryContext(device)));
  return result;
}

namespace {

template <typename Create>
CUresult CreateContext(CUcontext* pctx, CUdevice dev, Create create) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || pctx == nullptr) return create();
  const int device = shim.DeviceOf(dev);
  if (device < 0) return create();
  return CreateChargedContext(
      shim, device, create, [&] { shim.cuda().cuCtxDestroy_v2(*pctx); }, ChargeKind::kContext,
      pctx);
}

}  // namespace

TESSERA_EXPORT CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  return CreateContext(pctx, dev,
                       [&] { return Shim::Get().cuda().cuCtxCreate_v2(pctx, flags, dev); });
}

TESSERA_EXPORT CUresult cuCtxCreate_v3(CUcontext* pctx, CUexecAffinityParam* paramsArray,
                                       int numParams, unsigned int flags, CUdevice dev) {
  return CreateContext(pctx, dev, [&] {
    return Shim::Get().cuda().cuCtxCreate_v3(pctx, paramsArray, numParams, flags, dev);
  });
}

TESSERA_EXPORT CUresult cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* ctxCreateParams,
                                       unsigned int flags, CUdevice dev) {
  return CreateContext(pctx, dev, [&] {
    return Shim::Get().cuda().cuCtxCreate_v4(pctx, ctxCreateParams, flags, dev);
  });
}

TESSERA_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuCtxDestroy_v2(ctx);
  // The context's own memory and everything allocated in it go with it.
  if (result == CUDA_SUCCESS && !shim.passthrough()) {
    shim.UntrackOwner(reinterpret_cast<uintptr_t>(ctx));
  }
  return result;
}

// ---- Module and library loads ------------------------------------------------------------------
// A module's code, constant banks and globals take device memory in the context it is loaded
// into. Its size is not in the call, so it is measured: one page reserved first, then trued up to
// what NVML's figure for the process grew by over the load (TrueUp); over the limit the load is
// undone. A library loaded
// with no current context is loaded into contexts later, on first use, and is not charged.
namespace {

constexpr uint64_t kLoadEstimate = 2ull << 20;

template <typename Handle, typename Load, typename Unload>
CUresult ChargedLoad(ChargeKind kind, Handle* handle, Load load, Unload unload) {
  Shim& shim = Shim::Get();
  if (shim.passthrough() || handle == nullptr) return load();
  const uintptr_t context = CurrentContext(shim);
  const int device = shim.CurrentDevice();
  if (context == 0 || device < 0) return load();
  // One measured load at a time, each measured by what the process's NVML figure grew by over
  // its own call (allocations on other threads meanwhile still count to it).
  static std::mutex measuring;
  std::lock_guard<std::mutex> lock(measuring);
  uint64_t before = 0;
  const bool before_known = shim.ProcessMemoryFromNvml(device, &before);
  CUresult result = ReserveThenCall(shim, device, kLoadEstimate, load);
  if (result != CUDA_SUCCESS) return result;
  uint64_t charged = 0;
  bool measured = false;
  if (!TrueUp(shim, device, kLoadEstimate, before_known ? &before : nullptr, &charged, &measured)) {
    unload(*handle);
    *handle = nullptr;
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  shim.Track(kind, reinterpret_cast<uint64_t>(*handle), device, charged, context);
  return CUDA_SUCCESS;
}

CUresult UnloadModule(CUmodule module) { return Shim::Get().cuda().cuModuleUnload(module); }
CUresult UnloadLibrary(CUlibrary library) { return Shim::Get().cuda().cuLibraryUnload(library); }

}  // namespace

TESSERA_EXPORT CUresult cuModuleLoad(CUmodule* module, const char* fname) {
  return ChargedLoad(
      ChargeKind::kModule, module, [&] { return Shim::Get().cuda().cuModuleLoad(module, fname); },
      UnloadModule);
}

TESSERA_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  return ChargedLoad(
      ChargeKind::kModule, module,
      [&] { return Shim::Get().cuda().cuModuleLoadData(module, image); }, UnloadModule);
}

TESSERA_EXPORT CUresult cuModuleLoadDataEx(CUmodule* module, const void* image,
                                           unsigned int numOptions, CUjit_option* options,
                                           void** optionValues) {
  return ChargedLoad(
      ChargeKind::kModule, module,
      [&] {
        return Shim::Get().cuda().cuModuleLoadDataEx(module, image, numOptions, options,
                                                     optionValues);
      },
      UnloadModule);
}

TESSERA_EXPORT CUresult cuModuleLoadFatBinary(CUmodule* module, const void* fatCubin) {
  return ChargedLoad(
      ChargeKind::kModule, module,
      [&] { return Shim::Get().cuda().cuModuleLoadFatBinary(module, fatCubin); }, UnloadModule);
}

TESSERA_EXPORT CUresult cuModuleUnload(CUmodule hmod) {
  Shim& shim = Shim::Get();
  return Forget(shim, shim.cuda().cuModuleUnload(hmod), ChargeKind::kModule,
                reinterpret_cast<uint64_t>(hmod));
}

TESSERA_EXPORT CUresult cuLibraryLoadData(CUlibrary* library, const void* code,
                                          CUjit_option* jitOptions, void** jitOptionsValues,
                                          unsigned int numJitOptions,
                                          CUlibraryOption* libraryOptions,
                                          void** libraryOptionValues,
                                          unsigned int numLibraryOptions) {
  return ChargedLoad(
      ChargeKind::kLibrary, library,
      [&] {
        return Shim::Get().cuda().cuLibraryLoadData(library, code, jitOptions, jitOptionsValues,
                                                    numJitOptions, libraryOptions,
                                                    libraryOptionValues, numLibraryOptions);
      },
      UnloadLibrary);
}

TESSERA_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary* library, const char* fileName,
                                              CUjit_option* jitOptions, void** jitOptionsValues,
                                              unsigned int numJitOptions,
                                              CUlibraryOption* libraryOptions,
                                              void** libraryOptionValues,
                                              unsigned int numLibraryOptions) {
  return ChargedLoad(
      ChargeKind::kLibrary, library,
      [&] {
        return Shim::Get().cuda().cuLibraryLoadFromFile(
            library, fileName, jitOptions, jitOptionsValues, numJitOptions, libraryOptions,
            libraryOptionValues, numLibraryOptions);
      },
      UnloadLibrary);
}

TESSERA_EXPORT CUresult cuLibraryUnload(CUlibrary library) {
  Shim& shim = Shim::Get();
  return Forget(shim, shim.cuda().cuLibraryUnload(library), ChargeKind::kLibrary,
                reinterpret_cast<uint64_t>(library));
}

// ---- Context limits that take device memory ---------------------------------------------------
// The malloc heap and the printf FIFO are allocated at the size they are set to; what they held
// when the context was made is in its measured size. So a limit is charged what it is set to
// beyond the value it had when the shim first saw it set. (The per-thread stack, which the driver
// reserves for every thread the device can hold, is not charged: docs/memory-limits.md.)
TESSERA_EXPORT CUresult cuCtxSetLimit(CUlimit limit, size_t value) {
  Shim& shim = Shim::Get();
  auto call = [&] { return shim.cuda().cuCtxSetLimit(limit, value); };
  if (shim.passthrough() ||
      (limit != CU_LIMIT_MALLOC_HEAP_SIZE && limit != CU_LIMIT_PRINTF_FIFO_SIZE)) {
    return call();
  }
  int device = shim.CurrentDevice();
  uintptr_t context = CurrentContext(shim);
  size_t before = 0;
  if (device < 0 || context == 0 || shim.cuda().cuCtxGetLimit(&before, limit) != CUDA_SUCCESS) {
    return call();
  }
  const uint64_t key = static_cast<uint64_t>(context) + static_cast<uint64_t>(limit);
  // One change at a time: two threads setting a limit together would both reserve.
  static std::mutex changing;
  std::lock_guard<std::mutex> lock(changing);
  const uint64_t held = shim.TrackedBytes(ChargeKind::kContextLimit, key);
  const uint64_t baseline = before >= held ? before - held : 0;
  const uint64_t wanted = value > baseline ? value - baseline : 0;
  if (wanted > held && !shim.Reserve(device, wanted - held)) return CUDA_ERROR_OUT_OF_MEMORY;
  CUresult result = call();
  if (result != CUDA_SUCCESS) {
    if (wanted > held) shim.Release(device, wanted - held);
    return result;
  }
  if (wanted < held) shim.Release(device, held - wanted);
  shim.SetTracked(ChargeKind::kContextLimit, key, device, wanted, context);
  return result;
}
// NOLINTEND(readability-identifier-naming)
