// Stream capture as a real driver does it (driver.h): cuStreamBeginCapture makes the stream's
// work go into a graph until cuStreamEndCapture hands the graph over; the three modes decide which
// threads may still make potentially unsafe calls, and one that is made anyway fails with
// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture that forbade it, whose
// cuStreamEndCapture then fails with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.
//
// Not modelled: capture of the per-thread default stream (refused as for the legacy one), work on
// the legacy stream invalidating captures it would synchronise with, cross-stream capture joined
// by events, and cuStreamBeginCaptureToGraph.
#include "fakegpu/driver.h"

namespace tessera::fakegpu {
namespace {

thread_local CUstreamCaptureMode t_capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

bool ValidMode(CUstreamCaptureMode mode) {
  return mode == CU_STREAM_CAPTURE_MODE_GLOBAL || mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL ||
         mode == CU_STREAM_CAPTURE_MODE_RELAXED;
}

}  // namespace

CUresult Driver::BeginCapture(CUstream stream, CUstreamCaptureMode mode) {
  CUctx_st* context = nullptr;
  if (CUresult current = RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (!ValidMode(mode)) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  if (reinterpret_cast<uintptr_t>(stream) <= 2) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  CUstream_st* found = streams_.Find(stream);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (captures_.count(found) != 0) return CUDA_ERROR_ILLEGAL_STATE;
  Capture capture;
  capture.graph = graphs_.Create();
  capture.mode = mode;
  capture.thread = std::this_thread::get_id();
  capture.id = next_capture_id_++;
  captures_.emplace(found, capture);
  capture_count_.store(static_cast<int>(captures_.size()), std::memory_order_release);
  return CUDA_SUCCESS;
}

CUresult Driver::EndCapture(CUstream stream, CUgraph* graph) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  auto capture = captures_.find(stream);
  if (capture == captures_.end()) return CUDA_ERROR_ILLEGAL_STATE;
  if (capture->second.mode != CU_STREAM_CAPTURE_MODE_RELAXED &&
      capture->second.thread != std::this_thread::get_id()) {
    return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
  }
  const bool invalidated = capture->second.invalidated;
  CUgraph_st* captured = capture->second.graph;
  captures_.erase(capture);
  capture_count_.store(static_cast<int>(captures_.size()), std::memory_order_release);
  if (invalidated) {
    for (CUgraphNode_st* node : captured->nodes) graph_nodes_.Destroy(node);
    graphs_.Destroy(captured);
    *graph = nullptr;
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  *graph = captured;
  return CUDA_SUCCESS;
}

CUresult Driver::CaptureInfo(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id) {
  if (CUresult ready = Ready(); ready != CUDA_SUCCESS) return ready;
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard<std::mutex> lock(mutex_);
  if (reinterpret_cast<uintptr_t>(stream) > 2 && streams_.Find(stream) == nullptr) {
    return CUDA_ERROR_INVALID_HANDLE;
  }
  auto capture = captures_.find(stream);
  if (capture == captures_.end()) {
    *status = CU_STREAM_CAPTURE_STATUS_NONE;
    return CUDA_SUCCESS;
  }
  *status = capture->second.invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                        : CU_STREAM_CAPTURE_STATUS_ACTIVE;
  if (id != nullptr) *id = capture->second.id;
  return CUDA_SUCCESS;
}

CUresult Driver::ExchangeCaptureMode(CUstreamCaptureMode* mode) {
  if (mode == nullptr || !ValidMode(*mode)) return CUDA_ERROR_INVALID_VALUE;
  std::swap(*mode, t_capture_mode);
  return CUDA_SUCCESS;
}

CUresult Driver::CheckUnsafeCall() {
  if (capture_count_.load(std::memory_order_acquire) == 0) return CUDA_SUCCESS;
  std::lock_guard<std::mutex> lock(mutex_);
  const std::thread::id self = std::this_thread::get_id();
  bool forbidden = false;
  for (auto& [stream, capture] : captures_) {
    const bool mine = capture.thread == self;
    if ((mine && capture.mode != CU_STREAM_CAPTURE_MODE_RELAXED &&
         t_capture_mode != CU_STREAM_CAPTURE_MODE_RELAXED) ||
        (!mine && capture.mode == CU_STREAM_CAPTURE_MODE_GLOBAL &&
         t_capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL)) {
      capture.invalidated = true;
      forbidden = true;
    }
  }
  return forbidden ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

bool Driver::CaptureKernels(CUstream stream, const uint64_t* durations_ns, size_t count) {
  if (capture_count_.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto capture = captures_.find(stream);
  if (capture == captures_.end()) return false;
  for (size_t i = 0; i < count; ++i) {
    AddNodeLocked(capture->second.graph)->busy_ns = durations_ns[i];
  }
  return true;
}

}  // namespace tessera::fakegpu
