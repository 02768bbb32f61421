// A program that runs on the fake GPU, for tests that need another process:
//   fakegpu_helper hold <bytes> [device]  allocate, print "ready", wait for stdin to close, exit
//                                          normally (teardown must give the memory back)
//   fakegpu_helper churn <pairs>           allocate and free 1 MiB <pairs> times, print "done"
//   fakegpu_helper init                    print cuInit's result
//   fakegpu_helper busy <kernels> <us>     print "ready <pid>", wait for a line on stdin, launch
//                                          <kernels> busy_us_<us> kernels on the NULL stream,
//                                          print "launched", cuCtxSynchronize, print "done"
//   fakegpu_helper devices                 print "count=<n>", then per CUDA device
//                                          "device=<i> uuid=<GPU-/MIG-...> memory=<bytes>
//                                          sms=<n> name=<name>"
//   fakegpu_helper nvml-init               print nvmlInit_v2's result, and the device count
//   fakegpu_helper wait-xid <gpu> <ms>     register NVML GPU <gpu> (this process's index) for Xid
//                                          events, print "waiting", wait up to <ms> ms, print
//                                          "xid=<n> device=<index> gi=<id> ci=<id>" or "timeout"
// Errors print "error <step> <result>" and exit 1.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda/driver_api.h"
#include "cuda/nvml_api.h"

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

int Devices() {
  if (CUresult result = cuInit(0); result != CUDA_SUCCESS) return Fail("cuInit", result);
  int count = 0;
  if (CUresult result = cuDeviceGetCount(&count); result != CUDA_SUCCESS) {
    return Fail("cuDeviceGetCount", result);
  }
  std::printf("count=%d\n", count);
  for (int i = 0; i < count; ++i) {
    CUdevice device = 0;
    if (CUresult result = cuDeviceGet(&device, i); result != CUDA_SUCCESS) {
      return Fail("cuDeviceGet", result);
    }
    char name[128];
    CUuuid uuid{};
    size_t memory = 0;
    int sms = 0;
    if (cuDeviceGetName(name, sizeof name, device) != CUDA_SUCCESS ||
        cuDeviceGetUuid_v2(&uuid, device) != CUDA_SUCCESS ||
        cuDeviceTotalMem_v2(&memory, device) != CUDA_SUCCESS ||
        cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device) !=
            CUDA_SUCCESS) {
      return Fail("cuDeviceGet*", CUDA_ERROR_UNKNOWN);
    }
    // CUDA has no MIG flag on a device; the fake's MIG devices are named "... MIG <profile>".
    const char* kind = std::strstr(name, " MIG ") != nullptr ? "MIG" : "GPU";
    const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
    std::printf(
        "device=%d uuid=%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
        "%02x%02x%02x%02x%02x%02x memory=%zu sms=%d name=%s\n",
        i, kind, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
        b[13], b[14], b[15], memory, sms, name);
  }
  return 0;
}

int NvmlInit() {
  nvmlReturn_t result = nvmlInit_v2();
  unsigned count = 0;
  if (result == NVML_SUCCESS) nvmlDeviceGetCount_v2(&count);
  std::printf("nvmlInit %d count=%u\n", static_cast<int>(result), count);
  return 0;
}

int WaitXid(unsigned gpu, unsigned timeout_ms) {
  if (nvmlReturn_t result = nvmlInit_v2(); result != NVML_SUCCESS) {
    std::printf("error nvmlInit_v2 %d\n", static_cast<int>(result));
    return 1;
  }
  nvmlDevice_t device = nullptr;
  nvmlEventSet_t set = nullptr;
  if (nvmlDeviceGetHandleByIndex_v2(gpu, &device) != NVML_SUCCESS ||
      nvmlEventSetCreate(&set) != NVML_SUCCESS ||
      nvmlDeviceRegisterEvents(device, nvmlEventTypeXidCriticalError, set) != NVML_SUCCESS) {
    std::printf("error register\n");
    return 1;
  }
  std::printf("waiting\n");
  std::fflush(stdout);
  nvmlEventData_t data{};
  nvmlReturn_t result = nvmlEventSetWait_v2(set, &data, timeout_ms);
  if (result == NVML_ERROR_TIMEOUT) {
    std::printf("timeout\n");
    return 0;
  }
  if (result != NVML_SUCCESS) {
    std::printf("error nvmlEventSetWait_v2 %d\n", static_cast<int>(result));
    return 1;
  }
  unsigned index = 99;
  nvmlDeviceGetIndex(data.device, &index);
  std::printf("xid=%llu device=%u gi=%u ci=%u\n", data.eventData, index, data.gpuInstanceId,
              data.computeInstanceId);
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
  if (argc == 2 && std::strcmp(argv[1], "devices") == 0) return Devices();
  if (argc == 2 && std::strcmp(argv[1], "nvml-init") == 0) return NvmlInit();
  if (argc == 4 && std::strcmp(argv[1], "wait-xid") == 0) {
    return WaitXid(static_cast<unsigned>(std::atoi(argv[2])),
                   static_cast<unsigned>(std::atoi(argv[3])));
  }
  std::fprintf(stderr,
               "usage: %s hold <bytes> [device] | churn <pairs> | init | busy <kernels> <us> | "
               "devices | nvml-init | wait-xid <gpu> <ms>\n",
               argv[0]);
  return 2;
}
