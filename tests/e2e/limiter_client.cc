// A saturating GPU workload for the compute limiter's end-to-end tests and benchmark: it keeps
// the fake GPU's device busy with `busy_us_<US>` kernels (DEPTH in flight, default 2) through one
// launch path,
// and reports how much device time it got.
//
//   tessera-limiter-client PATH US WARMUP_MS WINDOW_MS [DEVICE [DEPTH]]
//
// PATH: launch (cuLaunchKernel), ptsz (cuLaunchKernel_ptsz), ex (cuLaunchKernelEx), cooperative
// (cuLaunchCooperativeKernel), graph (cuGraphLaunch of a one-kernel graph), capture (as a
// CUDA-graph server does: cuLaunchKernel for 10 launches, then cuGraphLaunch of a one-kernel graph
// made by global-mode stream capture on a second stream, captured again every 50 launches; a
// capture that ends invalidated is an error), mixed (cuLaunchKernel of one busy_grid_us_<US>
// function, US µs per block: every 10th launch one block, the others 10, as one kernel run at two
// sizes). The client sets up, prints "ready", waits for stdin to close, then runs WARMUP_MS +
// WINDOW_MS of wall time. Report ("key=value"):
//   share_permille   device time of its kernels that ended in the window / window length
//   buckets          the same per 250 ms from the start, comma-separated (settle time)
//   nvml_sm          its smUtil in the fake's NVML process utilisation at the end (last 1 s)
// The device time of a busy_us_<US> kernel is US µs by the fake GPU's timeline, so the figures
// come from the fake's clock, not from anything the shim says.
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/driver_api.h"
#include "cuda/nvml_api.h"
#include "tests/support/find_symbol.h"

namespace {

int64_t NowNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

void Check(CUresult result, const char* what) {
  if (result == CUDA_SUCCESS) return;
  std::printf("error=%s result=%d\n", what, result);
  std::fflush(stdout);
  std::exit(4);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s PATH US WARMUP_MS WINDOW_MS [DEVICE]\n", argv[0]);
    return 2;
  }
  std::string path = argv[1];
  int busy_us = std::atoi(argv[2]);
  int64_t warmup_ns = std::atoll(argv[3]) * 1'000'000;
  int64_t window_ns = std::atoll(argv[4]) * 1'000'000;
  int ordinal = argc > 5 ? std::atoi(argv[5]) : 0;
  int depth = argc > 6 ? std::atoi(argv[6]) : 2;
  if (depth < 1 || depth > 64) {
    std::fprintf(stderr, "limiter client: DEPTH must be 1 to 64\n");
    return 2;
  }

  void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  auto init = FIND(cuda, cuInit);
  auto device_get = FIND(cuda, cuDeviceGet);
  auto retain = FIND(cuda, cuDevicePrimaryCtxRetain);
  auto set_current = FIND(cuda, cuCtxSetCurrent);
  auto load_module = FIND(cuda, cuModuleLoadData);
  auto get_function = FIND(cuda, cuModuleGetFunction);
  auto create_stream = FIND(cuda, cuStreamCreate);
  auto synchronize_stream = FIND(cuda, cuStreamSynchronize);
  auto create_event = FIND(cuda, cuEventCreate);
  auto record_event = FIND(cuda, cuEventRecord);
  auto synchronize_event = FIND(cuda, cuEventSynchronize);
  auto launch_kernel = FIND(cuda, cuLaunchKernel);
  auto launch_kernel_ptsz = FIND(cuda, cuLaunchKernel_ptsz);
  auto launch_kernel_ex = FIND(cuda, cuLaunchKernelEx);
  auto launch_cooperative = FIND(cuda, cuLaunchCooperativeKernel);
  auto create_graph = FIND(cuda, cuGraphCreate);
  auto add_kernel_node = FIND(cuda, cuGraphAddKernelNode_v2);
  auto instantiate = FIND(cuda, cuGraphInstantiateWithFlags);
  auto launch_graph = FIND(cuda, cuGraphLaunch);
  auto begin_capture = FIND(cuda, cuStreamBeginCapture_v2);
  auto end_capture = FIND(cuda, cuStreamEndCapture);
  auto destroy_graph = FIND(cuda, cuGraphDestroy);
  auto destroy_exec = FIND(cuda, cuGraphExecDestroy);

  Check(init(0), "cuInit");
  CUdevice device = 0;
  CUcontext context = nullptr;
  Check(device_get(&device, ordinal), "cuDeviceGet");
  Check(retain(&context, device), "cuDevicePrimaryCtxRetain");
  Check(set_current(context), "cuCtxSetCurrent");
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  Check(load_module(&module, "any image"), "cuModuleLoadData");
  std::string name = (path == "mixed" ? "busy_grid_us_" : "busy_us_") + std::to_string(busy_us);
  Check(get_function(&function, module, name.c_str()), "cuModuleGetFunction");
  CUstream stream = nullptr;
  Check(create_stream(&stream, 0), "cuStreamCreate");
  std::vector<CUevent> done(static_cast<size_t>(depth));
  for (CUevent& event : done) Check(create_event(&event, 0), "cuEventCreate");
  CUgraphExec graph_exec = nullptr;
  if (path == "graph") {
    CUgraph graph = nullptr;
    Check(create_graph(&graph, 0), "cuGraphCreate");
    CUDA_KERNEL_NODE_PARAMS node{};
    node.func = function;
    node.gridDimX = node.gridDimY = node.gridDimZ = 1;
    node.blockDimX = node.blockDimY = node.blockDimZ = 1;
    CUgraphNode added = nullptr;
    Check(add_kernel_node(&added, graph, nullptr, 0, &node), "cuGraphAddKernelNode_v2");
    Check(instantiate(&graph_exec, graph, 0), "cuGraphInstantiateWithFlags");
  }
  CUstream capture_stream = nullptr;
  Check(create_stream(&capture_stream, 0), "cuStreamCreate");
  int captures = 0;
  auto capture = [&] {
    Check(begin_capture(capture_stream, CU_STREAM_CAPTURE_MODE_GLOBAL), "cuStreamBeginCapture_v2");
    Check(launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, capture_stream, nullptr, nullptr),
          "cuLaunchKernel (captured)");
    CUgraph graph = nullptr;
    Check(end_capture(capture_stream, &graph), "cuStreamEndCapture");
    if (graph_exec != nullptr) Check(destroy_exec(graph_exec), "cuGraphExecDestroy");
    Check(instantiate(&graph_exec, graph, 0), "cuGraphInstantiateWithFlags");
    Check(destroy_graph(graph), "cuGraphDestroy");
    ++captures;
  };
  unsigned grid = 1;  // of the next launch (mixed)
  CUlaunchConfig config{};
  config.gridDimX = config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = config.blockDimY = config.blockDimZ = 1;
  config.hStream = stream;
  auto launch = [&]() -> CUresult {
    if (path == "launch")
      return launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr);
    if (path == "ptsz") {
      return launch_kernel_ptsz(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr);
    }
    if (path == "ex") return launch_kernel_ex(&config, function, nullptr, nullptr);
    if (path == "cooperative") {
      return launch_cooperative(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr);
    }
    if (path == "graph") return launch_graph(graph_exec, stream);
    if (path == "mixed") {
      return launch_kernel(function, grid, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr);
    }
    if (path == "capture") {
      if (graph_exec == nullptr) {
        return launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr);
      }
      return launch_graph(graph_exec, stream);
    }
    return CUDA_ERROR_INVALID_VALUE;
  };

  std::printf("ready\n");
  std::fflush(stdout);
  char buffer[64];
  while (read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }

  const int64_t kBucketNs = 250'000'000;
  const int64_t busy_ns = static_cast<int64_t>(busy_us) * 1000;
  std::vector<int64_t> buckets(static_cast<size_t>((warmup_ns + window_ns) / kBucketNs + 1), 0);
  int64_t in_window_ns = 0;
  long long kernels = 0;
  int64_t start = NowNs();
  std::vector<int64_t> device_ns(static_cast<size_t>(depth), busy_ns);  // of each launch in flight
  auto completed = [&](int64_t at, int64_t ns) {
    int64_t since = at - start;
    size_t bucket = static_cast<size_t>(since / kBucketNs);
    if (bucket < buckets.size()) buckets[bucket] += ns;
    if (since >= warmup_ns && since < warmup_ns + window_ns) in_window_ns += ns;
    ++kernels;
  };
  long long launched = 0;
  for (long long i = 0;; ++i) {
    if (NowNs() - start >= warmup_ns + window_ns) break;
    if (path == "capture" && i % 50 == 10) capture();  // measurements are pending by then
    grid = path == "mixed" && i % 10 != 0 ? 10 : 1;
    Check(launch(), "launch");
    device_ns[static_cast<size_t>(i % depth)] = busy_ns * grid;
    Check(record_event(done[static_cast<size_t>(i % depth)], stream), "cuEventRecord");
    launched = i + 1;
    // Keeps `depth` launches in flight: waits for the oldest before the next launch.
    if (i + 1 >= depth) {
      const size_t oldest = static_cast<size_t>((i + 1) % depth);
      Check(synchronize_event(done[oldest]), "cuEventSynchronize");
      completed(NowNs(), device_ns[oldest]);
    }
  }
  Check(synchronize_stream(stream), "cuStreamSynchronize");
  for (long long left = launched - depth + 1; left < launched; ++left) {
    if (left >= 0) completed(NowNs(), device_ns[static_cast<size_t>(left % depth)]);
  }

  if (path == "capture") std::printf("captures=%d\n", captures);
  std::printf("kernels=%lld share_permille=%lld\n", kernels,
              static_cast<long long>(in_window_ns * 1000 / window_ns));
  std::string series;
  for (size_t i = 0; i + 1 < buckets.size(); ++i) {
    series += (i ? "," : "") + std::to_string(buckets[i] * 1000 / kBucketNs);
  }
  std::printf("buckets=%s\n", series.c_str());

  if (nvml != nullptr) {
    auto nvml_init = FIND(nvml, nvmlInit_v2);
    auto handle_by_index = FIND(nvml, nvmlDeviceGetHandleByIndex_v2);
    auto process_utilisation = FIND(nvml, nvmlDeviceGetProcessUtilization);
    nvmlDevice_t handle = nullptr;
    nvmlProcessUtilizationSample_t samples[64];
    unsigned count = 64;
    if (nvml_init() == NVML_SUCCESS &&
        handle_by_index(static_cast<unsigned>(ordinal), &handle) == NVML_SUCCESS &&
        process_utilisation(handle, samples, &count, 0) == NVML_SUCCESS) {
      for (unsigned i = 0; i < count && i < 64; ++i) {
        if (samples[i].pid == static_cast<unsigned>(getpid())) {
          std::printf("nvml_sm=%u\n", samples[i].smUtil);
        }
      }
    }
  }
  std::fflush(stdout);
  return 0;
}
