// A program that runs on the fake GPU, for tests that need another process:
//   fakegpu_helper hold <bytes> [device]  allocate, print "ready", wait for stdin to close, exit
//                                          normally (teardown must give the memory back)
//   fakegpu_helper churn <pairs>           allocate and free 1 MiB <pairs> times, print "done"
//   fakegpu_helper init                    print cuInit's result
//   fakegpu_helper busy <kernels> <us>     print "ready <pid>", wait for a line on stdin, launch
//                                          <kernels> busy_us_<us> kernels on the NULL stream,
//                                          print "launched", cuCtxSynchronize, print "done"
// Errors print "error <step> <CUresult>" and exit 1.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda/driver_api.h"

namespace {

int Fail(const char* step, CUresult result) {
  std::printf("error %s %d\n", step, static_cast<int>(result));
  return 1;
}

int Ready(CUdevice device) {
  if (CUresult result = cuInit(0); result != CUDA_SUCCESS) return Fail("cuInit", result);
  CUcontext context = nullptr;
  if (CUresult result = cuDevicePrimaryCtxRetain(&context, device); result != CUDA_SUCCESS) {
    return Fail("cuDevicePrimaryCtxRetain", result);
  }
  if (CUresult result = cuCtxSetCurrent(context); result != CUDA_SUCCESS) {
    return Fail("cuCtxSetCurrent", result);
  }
  return 0;
}

int Hold(unsigned long long bytes, CUdevice device) {
  if (int failed = Ready(device); failed != 0) return failed;
  if (bytes > 0) {
    CUdeviceptr pointer = 0;
    if (CUresult result = cuMemAlloc_v2(&pointer, bytes); result != CUDA_SUCCESS) {
      return Fail("cuMemAlloc_v2", result);
    }
  }
  std::printf("ready %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  char buffer[64];
  while (read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }
  return 0;
}

int Churn(long pairs) {
  if (int failed = Ready(0); failed != 0) return failed;
  for (long i = 0; i < pairs; ++i) {
    CUdeviceptr pointer = 0;
    if (CUresult result = cuMemAlloc_v2(&pointer, 1 << 20); result != CUDA_SUCCESS) {
      return Fail("cuMemAlloc_v2", result);
    }
    if (CUresult result = cuMemFree_v2(pointer); result != CUDA_SUCCESS) {
      return Fail("cuMemFree_v2", result);
    }
  }
  std::printf("done\n");
  return 0;
}

int Busy(long kernels, const char* microseconds) {
  if (int failed = Ready(0); failed != 0) return failed;
  static const char kImage[] = "fake";
  CUmodule module = nullptr;
  if (CUresult result = cuModuleLoadData(&module, kImage); result != CUDA_SUCCESS) {
    return Fail("cuModuleLoadData", result);
  }
  char name[64];
  std::snprintf(name, sizeof name, "busy_us_%s", microseconds);
  CUfunction function = nullptr;
  if (CUresult result = cuModuleGetFunction(&function, module, name); result != CUDA_SUCCESS) {
    return Fail("cuModuleGetFunction", result);
  }
  std::printf("ready %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  char byte = 0;
  while (read(STDIN_FILENO, &byte, 1) == 1 && byte != '\n') {
  }
  for (long i = 0; i < kernels; ++i) {
    if (CUresult result = cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr);
        result != CUDA_SUCCESS) {
      return Fail("cuLaunchKernel", result);
    }
  }
  std::printf("launched\n");
  std::fflush(stdout);
  if (CUresult result = cuCtxSynchronize(); result != CUDA_SUCCESS) {
    return Fail("cuCtxSynchronize", result);
  }
  std::printf("done\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "hold") == 0) {
    return Hold(std::strtoull(argv[2], nullptr, 10), argc >= 4 ? std::atoi(argv[3]) : 0);
  }
  if (argc == 3 && std::strcmp(argv[1], "churn") == 0) return Churn(std::atol(argv[2]));
  if (argc == 2 && std::strcmp(argv[1], "init") == 0) {
    std::printf("cuInit %d\n", static_cast<int>(cuInit(0)));
    return 0;
  }
  if (argc == 4 && std::strcmp(argv[1], "busy") == 0) return Busy(std::atol(argv[2]), argv[3]);
  std::fprintf(stderr, "usage: %s hold <bytes> [device] | churn <pairs> | init | busy <kernels> <us>\n",
               argv[0]);
  return 2;
}
