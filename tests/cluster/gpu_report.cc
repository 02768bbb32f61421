// tessera-gpu-report: prints the GPUs a process sees, as CUDA and as NVML see them, one line
// each, so that a pod's log says exactly which GPU or MIG instance it was given:
//
//   cuda 0: uuid=MIG-... name="NVIDIA H100 80GB HBM3 MIG 1g.10gb" memory_mib=10240 sms=16
//   nvml 0: uuid=GPU-... name="NVIDIA H100 80GB HBM3" memory_mib=81920 mig=on
//   nvml 0 mig 0: uuid=MIG-... memory_mib=10240
//
// Loads libcuda.so.1 and libnvidia-ml.so.1 with dlopen (any driver, or the fake GPU). Exits 0
// when both answered (with any number of devices), 1 otherwise. `--allocate MIB` also allocates
// that much on CUDA device 0 and says whether the driver gave it.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/driver_api.h"
#include "cuda/nvml_api.h"

namespace {

template <typename F>
F Symbol(void* library, const char* name) {
  return reinterpret_cast<F>(dlsym(library, name));
}

std::string FormatUuid(const CUuuid& uuid, const char* prefix) {
  const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
  char text[64];
  std::snprintf(text, sizeof text,
                "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", prefix,
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                b[13], b[14], b[15]);
  return text;
}

int ReportCuda(unsigned long long allocate_mib) {
  void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
  if (cuda == nullptr) {
    std::printf("cuda: cannot load libcuda.so.1: %s\n", dlerror());
    return 1;
  }
  auto init = Symbol<decltype(&cuInit)>(cuda, "cuInit");
  auto count = Symbol<decltype(&cuDeviceGetCount)>(cuda, "cuDeviceGetCount");
  auto get = Symbol<decltype(&cuDeviceGet)>(cuda, "cuDeviceGet");
  auto name = Symbol<decltype(&cuDeviceGetName)>(cuda, "cuDeviceGetName");
  auto uuid = Symbol<decltype(&cuDeviceGetUuid_v2)>(cuda, "cuDeviceGetUuid_v2");
  auto total = Symbol<decltype(&cuDeviceTotalMem_v2)>(cuda, "cuDeviceTotalMem_v2");
  auto attribute = Symbol<decltype(&cuDeviceGetAttribute)>(cuda, "cuDeviceGetAttribute");
  if (!init || !count || !get || !name || !uuid || !total || !attribute) {
    std::printf("cuda: libcuda.so.1 lacks a driver API function\n");
    return 1;
  }
  CUresult result = init(0);
  if (result == CUDA_ERROR_NO_DEVICE) {
    std::printf("cuda: no device\n");
    return 0;
  }
  if (result != CUDA_SUCCESS) {
    std::printf("cuda: cuInit failed (%d)\n", static_cast<int>(result));
    return 1;
  }
  int devices = 0;
  count(&devices);
  std::printf("cuda: %d device(s)\n", devices);
  for (int i = 0; i < devices; ++i) {
    CUdevice device = 0;
    get(&device, i);
    char device_name[256] = {};
    name(device_name, sizeof device_name, device);
    CUuuid id = {};
    uuid(&id, device);
    size_t bytes = 0;
    total(&bytes, device);
    int sms = 0;
    attribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
    const bool mig = std::strstr(device_name, " MIG ") != nullptr;
    std::printf("cuda %d: uuid=%s name=\"%s\" memory_mib=%llu sms=%d\n", i,
                FormatUuid(id, mig ? "MIG" : "GPU").c_str(), device_name,
                static_cast<unsigned long long>(bytes >> 20), sms);
  }
  if (allocate_mib > 0 && devices > 0) {
    auto retain = Symbol<decltype(&cuDevicePrimaryCtxRetain)>(cuda, "cuDevicePrimaryCtxRetain");
    auto set_current = Symbol<decltype(&cuCtxSetCurrent)>(cuda, "cuCtxSetCurrent");
    auto alloc = Symbol<decltype(&cuMemAlloc_v2)>(cuda, "cuMemAlloc_v2");
    CUcontext context = nullptr;
    CUdevice device = 0;
    get(&device, 0);
    if (!retain || !set_current || !alloc || retain(&context, device) != CUDA_SUCCESS ||
        set_current(context) != CUDA_SUCCESS) {
      std::printf("cuda: no context on device 0\n");
      return 1;
    }
    CUdeviceptr pointer = 0;
    result = alloc(&pointer, static_cast<size_t>(allocate_mib) << 20);
    std::printf("cuda: allocate %llu MiB on device 0: %s (%d)\n", allocate_mib,
                result == CUDA_SUCCESS ? "ok" : "refused", static_cast<int>(result));
  }
  return 0;
}

int ReportNvml() {
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (nvml == nullptr) {
    std::printf("nvml: cannot load libnvidia-ml.so.1: %s\n", dlerror());
    return 1;
  }
  auto init = Symbol<decltype(&nvmlInit_v2)>(nvml, "nvmlInit_v2");
  auto count = Symbol<decltype(&nvmlDeviceGetCount_v2)>(nvml, "nvmlDeviceGetCount_v2");
  auto handle =
      Symbol<decltype(&nvmlDeviceGetHandleByIndex_v2)>(nvml, "nvmlDeviceGetHandleByIndex_v2");
  auto uuid = Symbol<decltype(&nvmlDeviceGetUUID)>(nvml, "nvmlDeviceGetUUID");
  auto name = Symbol<decltype(&nvmlDeviceGetName)>(nvml, "nvmlDeviceGetName");
  auto memory = Symbol<decltype(&nvmlDeviceGetMemoryInfo)>(nvml, "nvmlDeviceGetMemoryInfo");
  auto mig_mode = Symbol<decltype(&nvmlDeviceGetMigMode)>(nvml, "nvmlDeviceGetMigMode");
  auto mig_count =
      Symbol<decltype(&nvmlDeviceGetMaxMigDeviceCount)>(nvml, "nvmlDeviceGetMaxMigDeviceCount");
  auto mig_handle = Symbol<decltype(&nvmlDeviceGetMigDeviceHandleByIndex)>(
      nvml, "nvmlDeviceGetMigDeviceHandleByIndex");
  if (!init || !count || !handle || !uuid || !name || !memory || !mig_mode || !mig_count ||
      !mig_handle) {
    std::printf("nvml: libnvidia-ml.so.1 lacks a function\n");
    return 1;
  }
  nvmlReturn_t result = init();
  if (result != NVML_SUCCESS) {
    std::printf("nvml: nvmlInit failed (%d)\n", static_cast<int>(result));
    return 1;
  }
  unsigned devices = 0;
  count(&devices);
  std::printf("nvml: %u device(s)\n", devices);
  for (unsigned i = 0; i < devices; ++i) {
    nvmlDevice_t device = nullptr;
    if (handle(i, &device) != NVML_SUCCESS) continue;
    char id[96] = {};
    char device_name[96] = {};
    uuid(device, id, sizeof id);
    name(device, device_name, sizeof device_name);
    nvmlMemory_t info = {};
    memory(device, &info);
    unsigned current = 0;
    unsigned pending = 0;
    const bool mig =
        mig_mode(device, &current, &pending) == NVML_SUCCESS && current == NVML_DEVICE_MIG_ENABLE;
    std::printf("nvml %u: uuid=%s name=\"%s\" memory_mib=%llu mig=%s\n", i, id, device_name,
                info.total >> 20, mig ? "on" : "off");
    if (!mig) continue;
    unsigned slots = 0;
    mig_count(device, &slots);
    for (unsigned m = 0; m < slots; ++m) {
      nvmlDevice_t instance = nullptr;
      if (mig_handle(device, m, &instance) != NVML_SUCCESS) continue;
      char instance_id[96] = {};
      uuid(instance, instance_id, sizeof instance_id);
      nvmlMemory_t instance_memory = {};
      memory(instance, &instance_memory);
      std::printf("nvml %u mig %u: uuid=%s memory_mib=%llu\n", i, m, instance_id,
                  instance_memory.total >> 20);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long long allocate_mib = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--allocate") == 0 && i + 1 < argc) {
      allocate_mib = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: tessera-gpu-report [--allocate MIB]\n");
      return 2;
    }
  }
  const char* visible = std::getenv("NVIDIA_VISIBLE_DEVICES");
  std::printf("NVIDIA_VISIBLE_DEVICES=%s\n", visible != nullptr ? visible : "(unset)");
  const int cuda = ReportCuda(allocate_mib);
  const int nvml = ReportNvml();
  return cuda == 0 && nvml == 0 ? 0 : 1;
}
