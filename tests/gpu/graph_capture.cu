// A CUDA graph captured and launched through the driver API, for the GPU suite's compute-limiter
// checks (tests/gpu/run.sh): KERNELS launches of a spinning kernel are captured on a stream in
// global mode (cuStreamBeginCapture, cuLaunchKernel, cuStreamEndCapture), the graph is
// instantiated (cuGraphInstantiate) and launched back to back for SECONDS (cuGraphLaunch), two in
// flight. Each kernel adds the time it spun (%globaltimer) to a device counter, so the share the
// graphs got is that sum over the wall time, a figure that does not depend on the shim. Built
// with nvcc by run.sh only (linked against libcuda, so the shim's exported hooks are the ones
// called).
//
//   graph_capture SECONDS [KERNEL_US] [KERNELS]   defaults 6, 500, 4; prints "begin=... launch=...
//   end=... instantiate=... nodes=..." (CUresult codes, 0 = success; nodes: the captured graph's)
//   and then "graphs=... busy_ns=... wall_ns=... share_permille=... errors=..."
#include <cuda.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

__device__ unsigned long long GlobalTimerNs() {
  unsigned long long now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

__global__ void Spin(unsigned long long spin_ns, unsigned long long* busy_ns) {
  const unsigned long long start = GlobalTimerNs();
  unsigned long long now = start;
  while (now - start < spin_ns) now = GlobalTimerNs();
  atomicAdd(busy_ns, now - start);
}

bool Check(CUresult result, const char* what) {
  if (result == CUDA_SUCCESS) return true;
  const char* name = nullptr;
  cuGetErrorName(result, &name);
  std::fprintf(stderr, "graph_capture: %s: %s (%d)\n", what, name ? name : "?",
               static_cast<int>(result));
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 6;
  const int kernel_us = argc > 2 ? std::atoi(argv[2]) : 500;
  const int kernels = argc > 3 ? std::atoi(argv[3]) : 4;
  if (seconds <= 0 || kernel_us <= 0 || kernels <= 0) {
    std::fprintf(stderr, "usage: graph_capture [SECONDS > 0] [KERNEL_US > 0] [KERNELS > 0]\n");
    return 2;
  }
  // The runtime makes the primary context current and hands out the kernel as a CUfunction;
  // everything after is the driver API.
  cudaFunction_t function = nullptr;
  if (cudaFree(nullptr) != cudaSuccess ||
      cudaGetFuncBySymbol(&function, reinterpret_cast<const void*>(Spin)) != cudaSuccess) {
    std::fprintf(stderr, "graph_capture: no CUDA device or kernel\n");
    return 1;
  }
  CUstream stream = nullptr;
  CUdeviceptr busy = 0;
  CUevent done[2] = {};
  if (!Check(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate") ||
      !Check(cuMemAlloc(&busy, sizeof(unsigned long long)), "cuMemAlloc") ||
      !Check(cuEventCreate(&done[0], CU_EVENT_DISABLE_TIMING), "cuEventCreate") ||
      !Check(cuEventCreate(&done[1], CU_EVENT_DISABLE_TIMING), "cuEventCreate")) {
    return 1;
  }

  // One launch before the capture, so the module is loaded (lazy loading) outside it.
  unsigned long long spin_ns = 0;
  void* arguments[] = {&spin_ns, &busy};
  if (!Check(cuLaunchKernel(reinterpret_cast<CUfunction>(function), 1, 1, 1, 1, 1, 1, 0, stream,
                            arguments, nullptr),
             "cuLaunchKernel") ||
      !Check(cuStreamSynchronize(stream), "first launch")) {
    return 1;
  }
  spin_ns = 1000ull * static_cast<unsigned long long>(kernel_us);
  const CUresult begin = cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL);
  CUresult launch = CUDA_SUCCESS;
  for (int i = 0; begin == CUDA_SUCCESS && launch == CUDA_SUCCESS && i < kernels; ++i) {
    launch = cuLaunchKernel(reinterpret_cast<CUfunction>(function), 1, 1, 1, 1, 1, 1, 0, stream,
                            arguments, nullptr);
  }
  CUgraph graph = nullptr;
  const CUresult end = begin == CUDA_SUCCESS ? cuStreamEndCapture(stream, &graph) : begin;
  CUgraphExec exec = nullptr;
  const CUresult instantiate = end == CUDA_SUCCESS ? cuGraphInstantiate(&exec, graph, 0) : end;
  size_t nodes = 0;
  if (graph != nullptr) cuGraphGetNodes(graph, nullptr, &nodes);
  std::printf("begin=%d launch=%d end=%d instantiate=%d nodes=%zu\n", begin, launch, end,
              instantiate, nodes);
  std::fflush(stdout);
  if (instantiate != CUDA_SUCCESS) return 1;

  // Warm-up: the limiter measures the graph's cost before the timed loop.
  for (int i = 0; i < 5; ++i) {
    if (!Check(cuGraphLaunch(exec, stream), "cuGraphLaunch")) return 1;
  }
  if (!Check(cuStreamSynchronize(stream), "warm-up") ||
      !Check(cuMemsetD8(busy, 0, sizeof(unsigned long long)), "cuMemsetD8")) {
    return 1;
  }

  int errors = 0;
  long long graphs = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto stop = start + std::chrono::duration<double>(seconds);
  for (long long i = 0; std::chrono::steady_clock::now() < stop; ++i) {
    if (!Check(cuGraphLaunch(exec, stream), "cuGraphLaunch") ||
        !Check(cuEventRecord(done[i % 2], stream), "cuEventRecord")) {
      ++errors;
      break;
    }
    ++graphs;
    if (i >= 1 && !Check(cuEventSynchronize(done[(i - 1) % 2]), "cuEventSynchronize")) {
      ++errors;
      break;
    }
  }
  if (!Check(cuStreamSynchronize(stream), "drain")) ++errors;
  const double wall_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  unsigned long long busy_ns = 0;
  if (!Check(cuMemcpyDtoH(&busy_ns, busy, sizeof busy_ns), "cuMemcpyDtoH")) ++errors;
  std::printf("graphs=%lld busy_ns=%llu wall_ns=%.0f share_permille=%.0f errors=%d\n", graphs,
              busy_ns, wall_ns, 1000.0 * static_cast<double>(busy_ns) / wall_ns, errors);
  cuGraphExecDestroy(exec);
  cuGraphDestroy(graph);
  return errors == 0 ? 0 : 1;
}
