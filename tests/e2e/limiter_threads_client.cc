// Many threads of one process through the compute limiter at once, for the limiter's thread-safety
// test (run under ThreadSanitizer in `make test-tsan`): THREADS threads each launch LAUNCHES
// busy_us_100 kernels on their own stream and synchronise; every fourth thread also captures a
// launch into a graph (relaxed mode, on its own stream) and launches the graph. Exits 0 when every
// call succeeded; says which one failed otherwise.
//
//   tessera-limiter-threads-client THREADS LAUNCHES
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cuda/driver_api.h"
#include "tests/support/find_symbol.h"

namespace {

std::atomic<int> g_failures{0};

bool Check(CUresult result, const char* what) {
  if (result == CUDA_SUCCESS) return true;
  std::fprintf(stderr, "threads client: %s returned %d\n", what, static_cast<int>(result));
  g_failures.fetch_add(1);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s THREADS LAUNCHES\n", argv[0]);
    return 2;
  }
  const int threads = std::atoi(argv[1]);
  const int launches = std::atoi(argv[2]);
  if (threads < 1 || threads > 64 || launches < 1) {
    std::fprintf(stderr, "threads client: THREADS must be 1 to 64 and LAUNCHES at least 1\n");
    return 2;
  }
  void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
  auto init = FIND(cuda, cuInit);
  auto device_get = FIND(cuda, cuDeviceGet);
  auto retain = FIND(cuda, cuDevicePrimaryCtxRetain);
  auto set_current = FIND(cuda, cuCtxSetCurrent);
  auto load_module = FIND(cuda, cuModuleLoadData);
  auto get_function = FIND(cuda, cuModuleGetFunction);
  auto create_stream = FIND(cuda, cuStreamCreate);
  auto synchronize_stream = FIND(cuda, cuStreamSynchronize);
  auto launch_kernel = FIND(cuda, cuLaunchKernel);
  auto begin_capture = FIND(cuda, cuStreamBeginCapture_v2);
  auto end_capture = FIND(cuda, cuStreamEndCapture);
  auto instantiate = FIND(cuda, cuGraphInstantiateWithFlags);
  auto launch_graph = FIND(cuda, cuGraphLaunch);
  auto destroy_graph = FIND(cuda, cuGraphDestroy);
  auto destroy_exec = FIND(cuda, cuGraphExecDestroy);

  if (!Check(init(0), "cuInit")) return 1;
  CUdevice device = 0;
  CUcontext context = nullptr;
  if (!Check(device_get(&device, 0), "cuDeviceGet") ||
      !Check(retain(&context, device), "cuDevicePrimaryCtxRetain")) {
    return 1;
  }
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  if (!Check(set_current(context), "cuCtxSetCurrent") ||
      !Check(load_module(&module, "any image"), "cuModuleLoadData") ||
      !Check(get_function(&function, module, "busy_us_100"), "cuModuleGetFunction")) {
    return 1;
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      if (!Check(set_current(context), "cuCtxSetCurrent")) return;
      CUstream stream = nullptr;
      if (!Check(create_stream(&stream, 0), "cuStreamCreate")) return;
      for (int i = 0; i < launches; ++i) {
        Check(launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr),
              "cuLaunchKernel");
      }
      if (t % 4 == 0) {
        CUstream capture = nullptr;
        CUgraph graph = nullptr;
        CUgraphExec exec = nullptr;
        if (Check(create_stream(&capture, 0), "cuStreamCreate") &&
            Check(begin_capture(capture, CU_STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture") &&
            Check(launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, capture, nullptr, nullptr),
                  "cuLaunchKernel (captured)") &&
            Check(end_capture(capture, &graph), "cuStreamEndCapture") &&
            Check(instantiate(&exec, graph, 0), "cuGraphInstantiateWithFlags")) {
          Check(launch_graph(exec, stream), "cuGraphLaunch");
          Check(destroy_exec(exec), "cuGraphExecDestroy");
          Check(destroy_graph(graph), "cuGraphDestroy");
        }
      }
      Check(synchronize_stream(stream), "cuStreamSynchronize");
    });
  }
  for (std::thread& worker : workers) worker.join();
  std::printf("failures=%d\n", g_failures.load());
  return g_failures.load() == 0 ? 0 : 1;
}
