// Stream capture on the fake GPU, as a real driver does it: captured kernels are graph nodes, not
// work; the capture modes decide which calls are forbidden, and a forbidden call fails and
// invalidates the capture.
#include <chrono>
#include <string>
#include <thread>

#include "fake_gpu_test_support.h"

namespace tessera::fakegpu {
namespace {

class FakeGpuCapture : public FakeGpuTest {
 protected:
  void SetUp() override {
    FakeGpuTest::SetUp();
    InitWithContext();
    ASSERT_EQ(cuModuleLoadData(&module_, "any bytes"), CUDA_SUCCESS);
    ASSERT_EQ(cuModuleGetFunction(&busy_, module_, "busy_us_100000"), CUDA_SUCCESS);
    ASSERT_EQ(cuStreamCreate(&stream_, 0), CUDA_SUCCESS);
    ASSERT_EQ(cuEventCreate(&event_, 0), CUDA_SUCCESS);
  }

  CUresult Launch(CUstream stream) {
    return cuLaunchKernel(busy_, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr);
  }

  CUstreamCaptureStatus Status(CUstream stream) {
    CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
    EXPECT_EQ(cuStreamIsCapturing(stream, &status), CUDA_SUCCESS);
    return status;
  }

  CUmodule module_ = nullptr;
  CUfunction busy_ = nullptr;
  CUstream stream_ = nullptr;
  CUevent event_ = nullptr;
};

TEST_F(FakeGpuCapture, CapturedKernelsAreAGraphAndRunOnlyWhenItIsLaunched) {
  EXPECT_EQ(Status(stream_), CU_STREAM_CAPTURE_STATUS_NONE);
  ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  EXPECT_EQ(Status(stream_), CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_ERROR_ILLEGAL_STATE);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Launch(stream_), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(event_, stream_), CUDA_SUCCESS);  // a node of the capture
  CUgraph graph = nullptr;
  ASSERT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_SUCCESS);
  ASSERT_NE(graph, nullptr);
  EXPECT_EQ(Status(stream_), CU_STREAM_CAPTURE_STATUS_NONE);
  // Nothing ran: the stream is idle at once.
  EXPECT_EQ(cuStreamQuery(stream_), CUDA_SUCCESS);
  CUgraphExec exec = nullptr;
  ASSERT_EQ(cuGraphInstantiateWithFlags(&exec, graph, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuGraphLaunch(exec, stream_), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamSynchronize(stream_), CUDA_SUCCESS);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300))
      << "the graph's three 100 ms kernels ran at its launch";
  EXPECT_EQ(cuGraphExecDestroy(exec), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphDestroy(graph), CUDA_SUCCESS);
}

TEST_F(FakeGpuCapture, AQueryDuringAGlobalCaptureFailsAndInvalidatesIt) {
  ASSERT_EQ(cuEventRecord(event_, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  ASSERT_EQ(Launch(stream_), CUDA_SUCCESS);
  EXPECT_EQ(cuEventQuery(event_), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(Status(stream_), CU_STREAM_CAPTURE_STATUS_INVALIDATED);
  CUgraph graph = reinterpret_cast<CUgraph>(1);
  EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
  EXPECT_EQ(graph, nullptr);
  EXPECT_EQ(cuEventQuery(event_), CUDA_SUCCESS) << "allowed again once the capture ended";
  // Each unsafe call is forbidden alike.
  for (int call = 0; call < 4; ++call) {
    SCOPED_TRACE(call);
    ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
    CUresult result = call == 0   ? cuEventSynchronize(event_)
                      : call == 1 ? cuStreamSynchronize(nullptr)
                      : call == 2 ? cuStreamQuery(nullptr)
                                  : cuCtxSynchronize();
    EXPECT_EQ(result, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
  }
}

TEST_F(FakeGpuCapture, RelaxedCaptureAllowsQueries) {
  ASSERT_EQ(cuEventRecord(event_, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_RELAXED), CUDA_SUCCESS);
  EXPECT_EQ(cuEventQuery(event_), CUDA_SUCCESS);
  CUgraph graph = nullptr;
  EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphDestroy(graph), CUDA_SUCCESS);
}

TEST_F(FakeGpuCapture, AThreadInRelaxedModeMayQueryDuringItsOwnCapture) {
  ASSERT_EQ(cuEventRecord(event_, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  ASSERT_EQ(cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS);
  EXPECT_EQ(mode, CU_STREAM_CAPTURE_MODE_GLOBAL) << "the thread's mode it had";
  EXPECT_EQ(cuEventQuery(event_), CUDA_SUCCESS);
  ASSERT_EQ(cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS);
  EXPECT_EQ(cuEventQuery(event_), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  CUgraph graph = nullptr;
  EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
}

TEST_F(FakeGpuCapture, AnotherThreadsGlobalCaptureForbidsQueriesOnlyToGlobalModeThreads) {
  ASSERT_EQ(cuEventRecord(event_, nullptr), CUDA_SUCCESS);
  CUcontext context = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&context), CUDA_SUCCESS);
  // Another thread's thread-local capture does not concern this thread.
  ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
  CUresult other = CUDA_ERROR_UNKNOWN;
  std::thread([&] {
    cuCtxSetCurrent(context);
    other = cuEventQuery(event_);
  }).join();
  EXPECT_EQ(other, CUDA_SUCCESS);
  CUgraph graph = nullptr;
  ASSERT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphDestroy(graph), CUDA_SUCCESS);

  // A global one does, unless the querying thread exchanged its mode for relaxed; it is
  // invalidated by the query.
  ASSERT_EQ(cuStreamBeginCapture_v2(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  CUresult relaxed = CUDA_ERROR_UNKNOWN, global = CUDA_ERROR_UNKNOWN;
  std::thread([&] {
    cuCtxSetCurrent(context);
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
    cuThreadExchangeStreamCaptureMode(&mode);
    relaxed = cuEventQuery(event_);
    cuThreadExchangeStreamCaptureMode(&mode);  // back to global
    global = cuEventQuery(event_);
  }).join();
  EXPECT_EQ(relaxed, CUDA_SUCCESS);
  EXPECT_EQ(global, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
}

TEST_F(FakeGpuCapture, EndingAnotherThreadsCaptureIsRefusedAndTheDefaultStreamCannotCapture) {
  EXPECT_EQ(cuStreamBeginCapture_v2(nullptr, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  const auto bad = static_cast<CUstreamCaptureMode>(3);  // a mode no driver knows
  EXPECT_EQ(cuStreamBeginCapture_v2(stream_, bad), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuStreamBeginCapture(stream_), CUDA_SUCCESS);  // the first version: global
  CUcontext context = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&context), CUDA_SUCCESS);
  CUresult other = CUDA_ERROR_UNKNOWN;
  std::thread([&] {
    cuCtxSetCurrent(context);
    CUgraph graph = nullptr;
    other = cuStreamEndCapture(stream_, &graph);
  }).join();
  EXPECT_EQ(other, CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  cuuint64_t id = 0;
  ASSERT_EQ(cuStreamGetCaptureInfo(stream_, &status, &id), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_GT(id, 0u);
  CUgraph graph = nullptr;
  EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_SUCCESS);
  EXPECT_EQ(cuGraphDestroy(graph), CUDA_SUCCESS);
  EXPECT_EQ(cuStreamEndCapture(stream_, &graph), CUDA_ERROR_ILLEGAL_STATE);
}

}  // namespace
}  // namespace tessera::fakegpu
