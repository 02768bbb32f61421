// Every launch path. With no compute limit and no priority a hook is a check and a forward: no
// lock, no allocation, no system call, and no stack frame: Forward() tail-calls the driver once
// the Shim exists and does not govern launches, and tail-calls out-of-line functions otherwise,
// so the hook never saves registers or spills its arguments for a call it almost never makes.
// Governed launches go through the Limiter (limiter.h) around the driver call.
#include "shim/limiter.h"
#include "shim/shim.h"

using tessera::shim::CudaTable;
using tessera::shim::Limiter;
using tessera::shim::Shim;

namespace {

// The per-thread default stream's handle (CU_STREAM_PER_THREAD).
const CUstream kPerThreadStream = reinterpret_cast<CUstream>(0x2);

// What a launch runs and where: the key its cost is learned under, and its stream.
struct Work {
  uintptr_t key;
  CUstream stream;
};

// A governed launch: admitted (and perhaps delayed) by the limiter, then measured.
template <auto kFunction, typename Describe, typename... Args>
[[gnu::noinline]] CUresult Governed(Shim& shim, Describe describe, Args... args) {
  Work work = describe();
  Limiter& limiter = shim.limiter();
  Limiter::Ticket ticket = limiter.Admit(work.key, work.stream);
  CUresult result = (shim.cuda().*kFunction)(args...);
  limiter.Complete(ticket, work.stream, result);
  return result;
}

// The first call into the shim through a launch hook: creates the Shim, then launches.
template <auto kFunction, typename Describe, typename... Args>
[[gnu::cold, gnu::noinline]] CUresult ForwardFirst(Describe describe, Args... args) {
  Shim& shim = Shim::Get();
  if (shim.governs_launches()) return Governed<kFunction>(shim, describe, args...);
  return (shim.cuda().*kFunction)(args...);
}

// Calls the driver's `kFunction` (a member of CudaTable) with the hook's own arguments.
// `describe` says what the launch runs; it is called only on the governed path.
template <auto kFunction, typename Describe, typename... Args>
inline CUresult Forward(Describe describe, Args... args) {
  if (Shim* shim = Shim::Existing(); __builtin_expect(shim != nullptr, 1)) {
    if (__builtin_expect(!shim->governs_launches(), 1)) return (shim->cuda().*kFunction)(args...);
    return Governed<kFunction>(*shim, describe, args...);
  }
  return ForwardFirst<kFunction>(describe, args...);
}

// What a kernel's cost is learned under: the function and the launch's shape. One function runs
// at many sizes (an elementwise kernel's grid grows with its tensor, prefill against decode), and
// its launches of one grid and block cost about the same; a key per function alone would charge
// every launch what its cheapest recent one cost.
uintptr_t ShapeKey(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                   unsigned block_x, unsigned block_y, unsigned block_z) {
  uint64_t key = reinterpret_cast<uintptr_t>(function);
  for (uint64_t dimension : {grid_x, grid_y, grid_z, block_x, block_y, block_z}) {
    key = (key ^ dimension) * 0x100000001b3ull;  // FNV-1a's step
  }
  return static_cast<uintptr_t>(key);
}

// Describers: by value, so that nothing is computed unless the launch is governed.
struct FunctionOn {
  CUfunction function;
  CUstream stream;
  bool per_thread;  // a _ptsz variant: stream 0 is the per-thread default stream
  unsigned grid_x, grid_y, grid_z, block_x, block_y, block_z;
  Work operator()() const {
    return {ShapeKey(function, grid_x, grid_y, grid_z, block_x, block_y, block_z),
            stream == nullptr && per_thread ? kPerThreadStream : stream};
  }
};

struct FunctionWithConfig {
  CUfunction function;
  const CUlaunchConfig* config;
  bool per_thread;
  Work operator()() const {
    if (config == nullptr) return {reinterpret_cast<uintptr_t>(function), nullptr};
    CUstream stream = config->hStream;
    return {ShapeKey(function, config->gridDimX, config->gridDimY, config->gridDimZ,
                     config->blockDimX, config->blockDimY, config->blockDimZ),
            stream == nullptr && per_thread ? kPerThreadStream : stream};
  }
};

struct GraphOn {
  CUgraphExec graph;
  CUstream stream;
  bool per_thread;
  Work operator()() const {
    return {reinterpret_cast<uintptr_t>(graph),
            stream == nullptr && per_thread ? kPerThreadStream : stream};
  }
};

}  // namespace

// The driver's entry points, with cuda.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)

TESSERA_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                       unsigned int gridDimZ, unsigned int blockDimX,
                                       unsigned int blockDimY, unsigned int blockDimZ,
                                       unsigned int sharedMemBytes, CUstream hStream,
                                       void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernel>(
      FunctionOn{f, hStream, false, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ},
      f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
      kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX,
                                            unsigned int gridDimY, unsigned int gridDimZ,
                                            unsigned int blockDimX, unsigned int blockDimY,
                                            unsigned int blockDimZ, unsigned int sharedMemBytes,
                                            CUstream hStream, void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernel_ptsz>(
      FunctionOn{f, hStream, true, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ},
      f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
      kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f,
                                         void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernelEx>(FunctionWithConfig{f, config, false}, config, f,
                                               kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f,
                                              void** kernelParams, void** extra) {
  return Forward<&CudaTable::cuLaunchKernelEx_ptsz>(FunctionWithConfig{f, config, true}, config, f,
                                                    kernelParams, extra);
}

TESSERA_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX,
                                                  unsigned int gridDimY, unsigned int gridDimZ,
                                                  unsigned int blockDimX, unsigned int blockDimY,
                                                  unsigned int blockDimZ,
                                                  unsigned int sharedMemBytes, CUstream hStream,
                                                  void** kernelParams) {
  return Forward<&CudaTable::cuLaunchCooperativeKernel>(
      FunctionOn{f, hStream, false, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ},
      f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
      kernelParams);
}

TESSERA_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(
    CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
    unsigned int sharedMemBytes, CUstream hStream, void** kernelParams) {
  return Forward<&CudaTable::cuLaunchCooperativeKernel_ptsz>(
      FunctionOn{f, hStream, true, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ},
      f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
      kernelParams);
}

TESSERA_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream) {
  return Forward<&CudaTable::cuGraphLaunch>(GraphOn{hGraphExec, hStream, false}, hGraphExec,
                                            hStream);
}

TESSERA_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream) {
  return Forward<&CudaTable::cuGraphLaunch_ptsz>(GraphOn{hGraphExec, hStream, true}, hGraphExec,
                                                 hStream);
}

// ---- Stream capture: what the limiter must know so as not to break it ---------------------------
namespace {

// After the driver began a capture on `stream` (stream 0 of a _ptsz variant: the per-thread one).
CUresult CaptureBegun(Shim& shim, CUresult result, CUstream stream, bool per_thread,
                      CUstreamCaptureMode mode) {
  if (result == CUDA_SUCCESS && shim.governs_launches()) {
    shim.limiter().OnCaptureBegun(stream == nullptr && per_thread ? kPerThreadStream : stream,
                                  mode);
  }
  return result;
}

// After cuStreamEndCapture answered `result`: invalidated or not, a capture that the driver says
// is over is forgotten; on an error that leaves it going, it is kept.
CUresult CaptureEnded(Shim& shim, CUresult result, CUstream stream, bool per_thread) {
  if (!shim.governs_launches()) return result;
  CUstream key = stream == nullptr && per_thread ? kPerThreadStream : stream;
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  if (result == CUDA_SUCCESS || result == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ||
      (shim.cuda().cuStreamIsCapturing(key, &status) == CUDA_SUCCESS &&
       status == CU_STREAM_CAPTURE_STATUS_NONE)) {
    shim.limiter().OnCaptureEnded(key);
  }
  return result;
}

}  // namespace

TESSERA_EXPORT CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode) {
  Shim& shim = Shim::Get();
  return CaptureBegun(shim, shim.cuda().cuStreamBeginCapture_v2(hStream, mode), hStream, false,
                      mode);
}

TESSERA_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode) {
  Shim& shim = Shim::Get();
  return CaptureBegun(shim, shim.cuda().cuStreamBeginCapture_v2_ptsz(hStream, mode), hStream, true,
                      mode);
}

TESSERA_EXPORT CUresult cuStreamBeginCapture(CUstream hStream) {
  Shim& shim = Shim::Get();
  return CaptureBegun(shim, shim.cuda().cuStreamBeginCapture(hStream), hStream, false,
                      CU_STREAM_CAPTURE_MODE_GLOBAL);
}

TESSERA_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream hStream) {
  Shim& shim = Shim::Get();
  return CaptureBegun(shim, shim.cuda().cuStreamBeginCapture_ptsz(hStream), hStream, true,
                      CU_STREAM_CAPTURE_MODE_GLOBAL);
}

TESSERA_EXPORT CUresult cuStreamEndCapture(CUstream hStream, CUgraph* phGraph) {
  Shim& shim = Shim::Get();
  return CaptureEnded(shim, shim.cuda().cuStreamEndCapture(hStream, phGraph), hStream, false);
}

TESSERA_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph* phGraph) {
  Shim& shim = Shim::Get();
  return CaptureEnded(shim, shim.cuda().cuStreamEndCapture_ptsz(hStream, phGraph), hStream, true);
}
// NOLINTEND(readability-identifier-naming)
