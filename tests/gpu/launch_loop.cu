// A launch-bound loop for the GPU suite (tests/gpu/run.sh): N launches of an empty kernel, timed
// on the host (submission) and to completion (after a synchronize), plus CUDA events around the
// loop. Run with and without LD_PRELOAD=libtessera-cuda.so; the ratio is the shim's overhead on
// a real driver. Built with nvcc by run.sh only: the normal CMake build never needs nvcc.
//
//   launch_loop [N]   default 100000; prints "submit_ns=... total_ns=... event_ns=..." per launch
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

__global__ void Empty() {}

bool Check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
  std::fprintf(stderr, "launch_loop: %s: %s\n", what, cudaGetErrorString(error));
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const long count = argc > 1 ? std::atol(argv[1]) : 100000;
  if (count <= 0) {
    std::fprintf(stderr, "usage: launch_loop [N > 0]\n");
    return 2;
  }
  // Warm up: context, module load, first launches.
  for (int i = 0; i < 1000; ++i) Empty<<<1, 32>>>();
  if (!Check(cudaDeviceSynchronize(), "warm-up")) return 1;

  cudaEvent_t start_event, stop_event;
  if (!Check(cudaEventCreate(&start_event), "cudaEventCreate") ||
      !Check(cudaEventCreate(&stop_event), "cudaEventCreate")) {
    return 1;
  }
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  cudaEventRecord(start_event);
  for (long i = 0; i < count; ++i) Empty<<<1, 32>>>();
  const auto submitted = Clock::now();
  cudaEventRecord(stop_event);
  if (!Check(cudaGetLastError(), "launch") || !Check(cudaDeviceSynchronize(), "synchronize")) {
    return 1;
  }
  const auto finished = Clock::now();
  float event_ms = 0;
  cudaEventElapsedTime(&event_ms, start_event, stop_event);

  auto per_launch = [count](Clock::duration elapsed) {
    return static_cast<double>(
               std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
           static_cast<double>(count);
  };
  std::printf("launches=%ld submit_ns=%.1f total_ns=%.1f event_ns=%.1f\n", count,
              per_launch(submitted - start), per_launch(finished - start),
              static_cast<double>(event_ms) * 1e6 / static_cast<double>(count));
  return 0;
}
