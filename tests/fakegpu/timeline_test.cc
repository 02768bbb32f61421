// Time on the fake GPU: a `busy_us_<N>` kernel occupies its device for N µs of real time, a device
// runs kernels one at a time in launch order across processes, launches return at once, and the
// synchronise calls wait for the device. Every bound below is a lower bound (or a check made only
// while the clock says it must hold): the machine running the tests may be loaded.
#include <chrono>
#include <string>

#include "fake_gpu_test_support.h"
#include "tests/support/child_process.h"

namespace tessera::fakegpu {
namespace {

using ChildProcess = ::tessera::testing::Child;

using Clock = std::chrono::steady_clock;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

class FakeGpuTime : public FakeGpuTest {
 protected:
  CUfunction Function(const std::string& name) {
    if (module_ == nullptr) {
      EXPECT_EQ(cuModuleLoadData(&module_, "any bytes"), CUDA_SUCCESS);
    }
    CUfunction function = nullptr;
    EXPECT_EQ(cuModuleGetFunction(&function, module_, name.c_str()), CUDA_SUCCESS);
    return function;
  }

  static CUresult Launch(CUfunction function, CUstream stream = nullptr) {
    return cuLaunchKernel(function, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr);
  }

  std::vector<std::string> Helper(std::vector<std::string> args) {
    args.insert(args.begin(), TESSERA_FAKEGPU_HELPER);
    return args;
  }

  CUmodule module_ = nullptr;
};

TEST_F(FakeGpuTime, StreamSynchronizeWaitsForABusyKernel) {
  InitWithContext();
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  CUfunction busy = Function("busy_us_1000");
  Clock::time_point start = Clock::now();
  ASSERT_EQ(Launch(busy, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamSynchronize(stream), CUDA_SUCCESS);
  EXPECT_GE(MillisecondsSince(start), 1.0);
  EXPECT_EQ(cuStreamQuery(stream), CUDA_SUCCESS);
}

TEST_F(FakeGpuTime, LaunchReturnsBeforeTheKernelEndsAndQueryReportsNotReady) {
  InitWithContext();
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  CUevent event = nullptr;
  ASSERT_EQ(cuEventCreate(&event, 0), CUDA_SUCCESS);
  CUfunction busy = Function("busy_us_300000");
  Clock::time_point start = Clock::now();
  ASSERT_EQ(Launch(busy, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(event, stream), CUDA_SUCCESS);
  CUresult stream_state = cuStreamQuery(stream);
  CUresult event_state = cuEventQuery(event);
  if (MillisecondsSince(start) < 300.0) {  // the kernel cannot have ended yet
    EXPECT_EQ(stream_state, CUDA_ERROR_NOT_READY);
    EXPECT_EQ(event_state, CUDA_ERROR_NOT_READY);
  }
  ASSERT_EQ(cuEventSynchronize(event), CUDA_SUCCESS);
  EXPECT_GE(MillisecondsSince(start), 300.0);
  EXPECT_EQ(cuEventQuery(event), CUDA_SUCCESS);
  EXPECT_EQ(cuStreamQuery(stream), CUDA_SUCCESS);
}

TEST_F(FakeGpuTime, OtherKernelsTakeNoDeviceTime) {
  InitWithContext();
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  for (const char* name :
       {"matmul", "busy_us_", "busy_us_x1", "busy_us_0", "busy_us_99999999999"}) {
    ASSERT_EQ(Launch(Function(name), stream), CUDA_SUCCESS) << name;
    EXPECT_EQ(cuStreamQuery(stream), CUDA_SUCCESS) << name;
  }
  EXPECT_EQ(cuStreamQuery(nullptr), CUDA_SUCCESS);
}

TEST_F(FakeGpuTime, KernelsOfTwoStreamsRunOneAtATimeOnTheirDevice) {
  InitWithContext();
  CUstream first = nullptr, second = nullptr;
  ASSERT_EQ(cuStreamCreate(&first, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamCreate(&second, 0), CUDA_SUCCESS);
  CUfunction busy = Function("busy_us_50000");
  Clock::time_point start = Clock::now();
  ASSERT_EQ(Launch(busy, first), CUDA_SUCCESS);
  ASSERT_EQ(Launch(busy, second), CUDA_SUCCESS);
  // The second stream's kernel waits for the first's: 100 ms before it is done.
  ASSERT_EQ(cuStreamSynchronize(second), CUDA_SUCCESS);
  EXPECT_GE(MillisecondsSince(start), 100.0);
}

TEST_F(FakeGpuTime, EventsMeasureDeviceTime) {
  InitWithContext();
  CUstream busy_stream = nullptr, timed_stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&busy_stream, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamCreate(&timed_stream, 0), CUDA_SUCCESS);
  CUevent begin = nullptr, end = nullptr;
  ASSERT_EQ(cuEventCreate(&begin, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventCreate(&end, 0), CUDA_SUCCESS);
  CUfunction busy = Function("busy_us_20000");
  // 100 ms of another stream's work queued first: the timed kernel waits for it on the device.
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Launch(busy, busy_stream), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(begin, timed_stream), CUDA_SUCCESS);
  ASSERT_EQ(Launch(busy, timed_stream), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(end, timed_stream), CUDA_SUCCESS);
  ASSERT_EQ(cuEventSynchronize(end), CUDA_SUCCESS);
  float elapsed = 0;
  ASSERT_EQ(cuEventElapsedTime_v2(&elapsed, begin, end), CUDA_SUCCESS);
  EXPECT_GE(elapsed, 119.9f);  // the wait behind the other stream, then its own 20 ms
}

TEST_F(FakeGpuTime, ElapsedTimeIsNotReadyUntilTheEndEventIsReached) {
  InitWithContext();
  CUevent begin = nullptr, end = nullptr;
  ASSERT_EQ(cuEventCreate(&begin, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventCreate(&end, 0), CUDA_SUCCESS);
  Clock::time_point start = Clock::now();
  ASSERT_EQ(cuEventRecord(begin, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(Launch(Function("busy_us_300000")), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(end, nullptr), CUDA_SUCCESS);
  float elapsed = 0;
  CUresult early = cuEventElapsedTime_v2(&elapsed, begin, end);
  if (MillisecondsSince(start) < 300.0) {
    EXPECT_EQ(early, CUDA_ERROR_NOT_READY);
  }
  ASSERT_EQ(cuEventSynchronize(end), CUDA_SUCCESS);
  ASSERT_EQ(cuEventElapsedTime_v2(&elapsed, begin, end), CUDA_SUCCESS);
  EXPECT_GE(elapsed, 299.9f);
}

TEST_F(FakeGpuTime, EveryLaunchPathQueuesBusyKernelsAndCtxSynchronizeWaitsForThemAll) {
  InitWithContext();
  CUfunction busy = Function("busy_us_10000");
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  CUlaunchConfig config{};
  config.gridDimX = config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = config.blockDimY = config.blockDimZ = 1;
  config.hStream = stream;
  Clock::time_point start = Clock::now();
  ASSERT_EQ(Launch(busy, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuLaunchKernel_ptsz(busy, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuLaunchKernelEx(&config, busy, nullptr, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuLaunchKernelEx_ptsz(&config, busy, nullptr, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuLaunchCooperativeKernel(busy, 1, 1, 1, 1, 1, 1, 0, stream, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuLaunchCooperativeKernel_ptsz(busy, 1, 1, 1, 1, 1, 1, 0, stream, nullptr),
            CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_GE(MillisecondsSince(start), 60.0);
  EXPECT_EQ(cuStreamQuery(stream), CUDA_SUCCESS);
}

TEST_F(FakeGpuTime, GraphLaunchQueuesItsBusyKernelNodesInOrder) {
  InitWithContext();
  CUgraph graph = nullptr;
  ASSERT_EQ(cuGraphCreate(&graph, 0), CUDA_SUCCESS);
  CUDA_KERNEL_NODE_PARAMS params{};
  params.gridDimX = params.gridDimY = params.gridDimZ = 1;
  params.blockDimX = params.blockDimY = params.blockDimZ = 1;
  CUgraphNode previous = nullptr;
  for (const char* name : {"busy_us_20000", "plain", "busy_us_20000", "busy_us_20000"}) {
    params.func = Function(name);
    CUgraphNode node = nullptr;
    ASSERT_EQ(cuGraphAddKernelNode_v2(&node, graph, previous == nullptr ? nullptr : &previous,
                                      previous == nullptr ? 0 : 1, &params),
              CUDA_SUCCESS);
    previous = node;
  }
  CUgraphExec exec = nullptr;
  ASSERT_EQ(cuGraphInstantiateWithFlags(&exec, graph, 0), CUDA_SUCCESS);
  CUstream stream = nullptr;
  ASSERT_EQ(cuStreamCreate(&stream, 0), CUDA_SUCCESS);
  Clock::time_point start = Clock::now();
  ASSERT_EQ(cuGraphLaunch(exec, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuGraphLaunch_ptsz(exec, stream), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamSynchronize(stream), CUDA_SUCCESS);
  EXPECT_GE(MillisecondsSince(start), 120.0);
}

TEST_F(FakeGpuTime, KernelsOfTwoProcessesSerialiseOnOneDevice) {
  InitWithContext();
  CUfunction busy = Function("busy_us_2000");
  ChildProcess child(Helper({"busy", "50", "2000"}));  // 100 ms of kernels
  std::string ready = child.ReadLine();
  ASSERT_EQ(ready.rfind("ready ", 0), 0u) << ready;
  Clock::time_point start = Clock::now();
  ASSERT_TRUE(child.WriteLine("go"));
  ASSERT_EQ(child.ReadLine(), "launched");
  // The child's 100 ms are queued; this process's 100 ms can only run after them.
  for (int i = 0; i < 50; ++i) ASSERT_EQ(Launch(busy), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  ASSERT_EQ(child.ReadLine(), "done");
  EXPECT_GE(MillisecondsSince(start), 200.0);
}

TEST_F(FakeGpuTime, DevicesKeepSeparateTimelines) {
  InitWithContext(1);
  CUfunction plain = Function("plain");
  CUcontext second = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&second, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxPushCurrent_v2(second), CUDA_SUCCESS);
  CUmodule module = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module, "x"), CUDA_SUCCESS);
  CUfunction busy = nullptr;
  ASSERT_EQ(cuModuleGetFunction(&busy, module, "busy_us_2000000"), CUDA_SUCCESS);
  Clock::time_point start = Clock::now();
  ASSERT_EQ(Launch(busy), CUDA_SUCCESS);  // device 0 is busy for 2 s
  CUcontext popped = nullptr;
  ASSERT_EQ(cuCtxPopCurrent_v2(&popped), CUDA_SUCCESS);
  // Device 1's context has no work: its streams and the context are done at once.
  ASSERT_EQ(Launch(plain), CUDA_SUCCESS);
  EXPECT_EQ(cuStreamQuery(nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  if (MillisecondsSince(start) < 2000.0) {
    ASSERT_EQ(cuCtxPushCurrent_v2(second), CUDA_SUCCESS);
    EXPECT_EQ(cuStreamQuery(nullptr), CUDA_ERROR_NOT_READY);
    ASSERT_EQ(cuCtxPopCurrent_v2(&popped), CUDA_SUCCESS);
  }
}

}  // namespace
}  // namespace tessera::fakegpu
