// Every launch path. With no compute limit a hook is a check and a forward: no lock, no
// allocation, no system call, and no stack frame: Forward() tail-calls the driver once the Shim
// exists, and tail-calls an out-of-line ForwardFirst() before, so the hook never saves registers
// or spills its arguments for a call it almost never makes.
#include "shim/shim.h"

using tessera::shim::CudaTable;
using tessera::shim::Shim;

namespace {

// The first call into the shim through a launch hook: creates the Shim, then forwards.
template <auto kFunction, typename... Args>
[[gnu::cold, gnu::noinline]] CUresult ForwardFirst(Args... args) {
  return (Shim::Get().cuda().*kFunction)(args...);
}

// Calls the driver's `kFunction` (a member of CudaTable) with the hook's own arguments.
template <auto kFunction, typename... Args>
inline CUresult Forward(Args... args) {
  if (Shim* shim = Shim::Existing(); __builtin_expect(shim != nullptr, 1)) {
    return (shim->cuda().*kFunction)(args...);
  }
  return ForwardFirst<kFunction>(args...);
}

}  // namespace

TESSERA_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                       unsigned int gridDimZ, unsigned int blockDimX,
                                       unsigned int blockDimY, unsigned int blockDimZ,
                                       unsigned int sharedMemBytes, CUstream hStream,
                                       void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernel>(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                                             blockDimZ, sharedMemBytes, hStream, kernelParams,
                                             extra);
}

TESSERA_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX,
                                            unsigned int gridDimY, unsigned int gridDimZ,
                                            unsigned int blockDimX, unsigned int blockDimY,
                                            unsigned int blockDimZ, unsigned int sharedMemBytes,
                                            CUstream hStream, void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernel_ptsz>(f, gridDimX, gridDimY, gridDimZ, blockDimX,
                                                  blockDimY, blockDimZ, sharedMemBytes, hStream,
                                                  kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f,
                                         void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernelEx>(config, f, kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f,
                                              void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernelEx_ptsz>(config, f, kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX,
                                                  unsigned int gridDimY, unsigned int gridDimZ,
                                                  unsigned int blockDimX, unsigned int blockDimY,
                                                  unsigned int blockDimZ,
                                                  unsigned int sharedMemBytes, CUstream hStream,
                                                  void** kernelParams) {
  return Forward<&CudaTable::cuLaunchCooperativeKernel>(f, gridDimX, gridDimY, gridDimZ, blockDimX,
                                                        blockDimY, blockDimZ, sharedMemBytes,
                                                        hStream, kernelParams);
}

TESSERA_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(
    CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
    unsigned int sharedMemBytes, CUstream hStream, void** kernelParams) {
  return Forward<&CudaTable::cuLaunchCooperativeKernel_ptsz>(f, gridDimX, gridDimY, gridDimZ,
                                                             blockDimX, blockDimY, blockDimZ,
                                                             sharedMemBytes, hStream, kernelParams);
}

TESSERA_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream) {
  return Forward<&CudaTable::cuGraphLaunch>(hGraphExec, hStream);
}

TESSERA_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream) {
  return Forward<&CudaTable::cuGraphLaunch_ptsz>(hGraphExec, hStream);
}
