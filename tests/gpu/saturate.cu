// A saturating kernel loop for the GPU suite's compute-limiter checks (tests/gpu/run.sh): a
// kernel that spins for about KERNEL_US microseconds (clock64), launched back to back with two in
// flight for SECONDS. Its own cost is calibrated first (the minimum event-timed duration of 20
// launches), so the share it got is kernels x cost / wall time, a figure that does not depend on
// the shim. Built with nvcc by run.sh only.
//
//   saturate SECONDS [KERNEL_US]   prints "kernel_ns=... kernels=... wall_ns=...
//   share_permille=..."
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

__global__ void Spin(long long cycles) {
  long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

bool Check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
  std::fprintf(stderr, "saturate: %s: %s\n", what, cudaGetErrorString(error));
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 5;
  int kernel_us = argc > 2 ? std::atoi(argv[2]) : 1000;
  int clock_khz = 0;
  if (!Check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0), "clock rate")) return 1;
  long long cycles = static_cast<long long>(clock_khz) * kernel_us / 1000;
  cudaStream_t stream;
  cudaEvent_t start, end, done[2];
  if (!Check(cudaStreamCreate(&stream), "stream") || !Check(cudaEventCreate(&start), "event") ||
      !Check(cudaEventCreate(&end), "event") || !Check(cudaEventCreate(&done[0]), "event") ||
      !Check(cudaEventCreate(&done[1]), "event")) {
    return 1;
  }
  float best_ms = 1e9f;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start, stream);
    Spin<<<1, 1, 0, stream>>>(cycles);
    cudaEventRecord(end, stream);
    if (!Check(cudaEventSynchronize(end), "calibration")) return 1;
    float ms = 0;
    cudaEventElapsedTime(&ms, start, end);
    best_ms = std::min(best_ms, ms);
  }
  auto begin = std::chrono::steady_clock::now();
  auto stop = begin + std::chrono::duration<double>(seconds);
  long long kernels = 0;
  for (long long i = 0; std::chrono::steady_clock::now() < stop; ++i) {
    Spin<<<1, 1, 0, stream>>>(cycles);
    cudaEventRecord(done[i % 2], stream);
    if (i >= 1) {
      if (!Check(cudaEventSynchronize(done[(i - 1) % 2]), "loop")) return 1;
      ++kernels;
    }
  }
  if (!Check(cudaStreamSynchronize(stream), "drain")) return 1;
  ++kernels;
  double wall_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - begin).count();
  double kernel_ns = best_ms * 1e6;
  std::printf("kernel_ns=%.0f kernels=%lld wall_ns=%.0f share_permille=%.0f\n", kernel_ns, kernels,
              wall_ns, 1000.0 * kernels * kernel_ns / wall_ns);
  return 0;
}
