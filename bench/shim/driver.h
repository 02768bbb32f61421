// The driver, reached as an application reaches it: dlopen("libcuda.so.1") + dlsym, so that an
// LD_PRELOADed shim interposes exactly as it does on a real program. Shared by the callgrind
// harness (shim_loop.cc) and the Google Benchmark (shim_bench.cc).
#ifndef TESSERA_BENCH_SHIM_DRIVER_H_
#define TESSERA_BENCH_SHIM_DRIVER_H_

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "cuda/driver_api.h"

namespace tessera::bench {

struct Driver {
  decltype(&cuInit) Init;
  decltype(&cuDeviceGet) DeviceGet;
  decltype(&cuDevicePrimaryCtxRetain) PrimaryCtxRetain;
  decltype(&cuCtxSetCurrent) CtxSetCurrent;
  decltype(&cuModuleLoadData) ModuleLoadData;
  decltype(&cuModuleGetFunction) ModuleGetFunction;
  decltype(&cuLaunchKernel) LaunchKernel;
  decltype(&cuMemAlloc_v2) MemAlloc;
  decltype(&cuMemFree_v2) MemFree;
};

// A function for one launch, on the primary context of device 0 made current.
struct Session {
  Driver driver;
  CUfunction function;
};

namespace internal {

template <typename Function>
void Find(Function& out, void* library, const char* name) {
  out = reinterpret_cast<Function>(dlsym(library, name));
  if (out == nullptr) {
    std::fprintf(stderr, "bench: libcuda.so.1 has no %s\n", name);
    std::exit(3);
  }
}

inline void Check(CUresult result, const char* what) {
  if (result != CUDA_SUCCESS) {
    std::fprintf(stderr, "bench: %s failed with CUresult %d\n", what, static_cast<int>(result));
    std::exit(3);
  }
}

}  // namespace internal

// Exits the process with a message when the driver cannot be loaded or set up: a benchmark
// without a device has nothing to measure.
inline Session OpenSession() {
  using internal::Check;
  using internal::Find;
  void* library = dlopen("libcuda.so.1", RTLD_NOW);
  if (library == nullptr) {
    std::fprintf(stderr, "bench: %s\n", dlerror());
    std::exit(3);
  }
  Session session{};
  Driver& d = session.driver;
  Find(d.Init, library, "cuInit");
  Find(d.DeviceGet, library, "cuDeviceGet");
  Find(d.PrimaryCtxRetain, library, "cuDevicePrimaryCtxRetain");
  Find(d.CtxSetCurrent, library, "cuCtxSetCurrent");
  Find(d.ModuleLoadData, library, "cuModuleLoadData");
  Find(d.ModuleGetFunction, library, "cuModuleGetFunction");
  Find(d.LaunchKernel, library, "cuLaunchKernel");
  Find(d.MemAlloc, library, "cuMemAlloc_v2");
  Find(d.MemFree, library, "cuMemFree_v2");

  Check(d.Init(0), "cuInit");
  CUdevice device = 0;
  Check(d.DeviceGet(&device, 0), "cuDeviceGet");
  CUcontext context = nullptr;
  Check(d.PrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
  Check(d.CtxSetCurrent(context), "cuCtxSetCurrent");
  // The fake driver accepts any image; a real one would need PTX or a cubin (not used here).
  static const char kImage[] = "// tessera bench: empty module\n";
  CUmodule module = nullptr;
  Check(d.ModuleLoadData(&module, kImage), "cuModuleLoadData");
  Check(d.ModuleGetFunction(&session.function, module, "empty"), "cuModuleGetFunction");
  return session;
}

// One launch of the empty kernel: a 1x1x1 grid of 32 threads on the default stream.
inline CUresult LaunchOnce(const Session& session) {
  return session.driver.LaunchKernel(session.function, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr,
                                     nullptr);
}

// One cuMemAlloc of `bytes` and its cuMemFree.
inline CUresult AllocateAndFree(const Session& session, size_t bytes) {
  CUdeviceptr pointer = 0;
  CUresult result = session.driver.MemAlloc(&pointer, bytes);
  if (result != CUDA_SUCCESS) return result;
  return session.driver.MemFree(pointer);
}

}  // namespace tessera::bench

#endif  // TESSERA_BENCH_SHIM_DRIVER_H_
