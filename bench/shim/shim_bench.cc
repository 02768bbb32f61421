// Wall-clock cost of the shim's hot paths on the fake GPU. Run it twice, with and without
// LD_PRELOAD=libtessera-cuda.so (scripts/bench-shim.sh does both); the difference is the hook.
// The fake driver's launch takes no lock and makes no system call, so BM_LaunchKernel without the
// shim is the floor; BM_MemAllocFree includes the fake's own shared-state accounting.
#include <benchmark/benchmark.h>

#include "driver.h"

namespace {

const tessera::bench::Session& TheSession() {
  static const tessera::bench::Session session = tessera::bench::OpenSession();
  return session;
}

void BM_LaunchKernel(benchmark::State& state) {
  const tessera::bench::Session& session = TheSession();
  for (auto _ : state) {
    if (tessera::bench::LaunchOnce(session) != CUDA_SUCCESS) {
      state.SkipWithError("cuLaunchKernel failed");
      break;
    }
  }
}
BENCHMARK(BM_LaunchKernel);

void BM_MemAllocFree(benchmark::State& state) {
  const tessera::bench::Session& session = TheSession();
  const size_t bytes = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    if (tessera::bench::AllocateAndFree(session, bytes) != CUDA_SUCCESS) {
      state.SkipWithError("cuMemAlloc/cuMemFree failed");
      break;
    }
  }
}
BENCHMARK(BM_MemAllocFree)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
