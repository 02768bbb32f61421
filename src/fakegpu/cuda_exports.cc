// libcuda.so.1: the exported driver API. Each function checks its fault rules, then forwards to
// the process's Driver (driver.h); the launch functions validate lock-free and, for busy_us_
// kernels only, queue the kernel on the device's timeline.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common/log.h"
#include "common/units.h"
#include "cuda/driver_api.h"
#include "cuda/footprint.h"
#include "fakegpu/control.h"
#include "fakegpu/driver.h"
#include "fakegpu/export.h"
#include "fakegpu/faults.h"
#include "fakegpu/proc_address.h"

using tessera::fakegpu::Api;
using tessera::fakegpu::CheckFault;
using tessera::fakegpu::CudaDevice;
using tessera::fakegpu::Driver;
using tessera::fakegpu::Fault;
using tessera::fakegpu::LooksLive;

namespace {

__attribute__((constructor)) void ArmFaultsAtLoad() {
  tessera::fakegpu::ArmFaultsFromEnvironment();
  // A real driver's loading looks symbols up through dlsym (its helper libraries' entry points):
  // TESSERA_FAKEGPU_DLSYM_AT_LOAD=<name> makes this one look up <name>, through the program's
  // handle, while it loads.
  if (const char* name = std::getenv("TESSERA_FAKEGPU_DLSYM_AT_LOAD"); name != nullptr && *name) {
    if (void* program = dlopen(nullptr, RTLD_NOW)) {
      (void)dlsym(program, name);
      dlclose(program);
    }
  }
}

// What a faulted call returns: the rule's code, or success with the primary output zeroed.
template <typename T>
CUresult Faulted(Fault fault, T* output) {
  if (fault.kind != Fault::Kind::kNull) return static_cast<CUresult>(fault.code);
  if (output != nullptr) *output = T{};
  return CUDA_SUCCESS;
}

CUresult Faulted(Fault fault) {
  return fault.kind == Fault::Kind::kNull ? CUDA_SUCCESS : static_cast<CUresult>(fault.code);
}

Driver& TheDriver() { return Driver::Get(); }

const CudaDevice* ReadyDevice(CUdevice device, CUresult* error) {
  *error = Driver::Ready();
  if (*error != CUDA_SUCCESS) return nullptr;
  const CudaDevice* spec = TheDriver().Device(device);
  if (spec == nullptr) *error = CUDA_ERROR_INVALID_DEVICE;
  return spec;
}

// The launch path: no lock, no system call, no allocation.
inline bool StreamLooksUsable(CUstream stream) {
  uintptr_t value = reinterpret_cast<uintptr_t>(stream);
  return value <= 2 || LooksLive(stream);  // NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD
}

inline CUresult CheckLaunch(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                            unsigned block_x, unsigned block_y, unsigned block_z, CUstream stream) {
  if (tessera::fakegpu::g_init_state.load(std::memory_order_relaxed) !=
      tessera::fakegpu::InitState::kReady) {
    return Driver::Ready();
  }
  if (!LooksLive(tessera::fakegpu::g_current_context)) return CUDA_ERROR_INVALID_CONTEXT;
  if (!LooksLive(function) || !StreamLooksUsable(stream)) return CUDA_ERROR_INVALID_HANDLE;
  if (grid_x == 0 || grid_y == 0 || grid_z == 0 || block_x == 0 || block_y == 0 || block_z == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  uint64_t threads = uint64_t{block_x} * block_y * block_z;
  return threads > 1024 ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

inline CUresult CheckLaunchEx(const CUlaunchConfig* config, CUfunction function) {
  if (config == nullptr || (config->numAttrs > 0 && config->attrs == nullptr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return CheckLaunch(function, config->gridDimX, config->gridDimY, config->gridDimZ,
                     config->blockDimX, config->blockDimY, config->blockDimZ, config->hStream);
}

// Off the plain launch path: only busy_ kernels take the state file's lock.
__attribute__((noinline, cold)) CUresult QueueBusyKernel(CUfunction function, unsigned grid_x,
                                                         unsigned grid_y, unsigned grid_z,
                                                         CUstream stream) {
  uint64_t duration = tessera::fakegpu::KernelNs(*function, grid_x, grid_y, grid_z);
  return Driver::Get().QueueBusyKernels(stream, &duration, 1);
}

// Validates, then queues the kernel on the device when it takes device time.
inline CUresult Launch(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                       unsigned block_x, unsigned block_y, unsigned block_z, CUstream stream) {
  CUresult checked =
      CheckLaunch(function, grid_x, grid_y, grid_z, block_x, block_y, block_z, stream);
  if (__builtin_expect(checked != CUDA_SUCCESS || function->busy_ns == 0, 1)) return checked;
  return QueueBusyKernel(function, grid_x, grid_y, grid_z, stream);
}

inline CUresult LaunchEx(const CUlaunchConfig* config, CUfunction function) {
  CUresult checked = CheckLaunchEx(config, function);
  if (__builtin_expect(checked != CUDA_SUCCESS || function->busy_ns == 0, 1)) return checked;
  return QueueBusyKernel(function, config->gridDimX, config->gridDimY, config->gridDimZ,
                         config->hStream);
}

struct ErrorText {
  CUresult code;
  const char* name;
  const char* description;
};

constexpr ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const ErrorText* FindError(CUresult code) {
  for (const ErrorText& error : kErrors) {
    if (error.code == code) return &error;
  }
  return nullptr;
}

}  // namespace

// The driver's entry points, with cuda.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)

// ---- Initialisation, version, entry points ----------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuInit(unsigned int flags) {
  if (Fault fault = CheckFault(Api::cuInit)) return Faulted(fault);
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().Init();
}

TESSERA_FAKE_EXPORT CUresult cuDriverGetVersion(int* driverVersion) {
  if (Fault fault = CheckFault(Api::cuDriverGetVersion)) return Faulted(fault, driverVersion);
  if (driverVersion == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *driverVersion = tessera::fakegpu::CurrentDriverVersion();
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuGetErrorString(CUresult error, const char** pStr) {
  if (Fault fault = CheckFault(Api::cuGetErrorString)) return Faulted(fault, pStr);
  if (pStr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* text = FindError(error);
  *pStr = text != nullptr ? text->description : nullptr;
  return text != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

TESSERA_FAKE_EXPORT CUresult cuGetErrorName(CUresult error, const char** pStr) {
  if (Fault fault = CheckFault(Api::cuGetErrorName)) return Faulted(fault, pStr);
  if (pStr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* text = FindError(error);
  *pStr = text != nullptr ? text->name : nullptr;
  return text != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// ---- Devices ---------------------------------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuDeviceGetCount(int* count) {
  if (Fault fault = CheckFault(Api::cuDeviceGetCount)) return Faulted(fault, count);
  if (CUresult ready = Driver::Ready(); ready != CUDA_SUCCESS) return ready;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *count = TheDriver().DeviceCount();
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (Fault fault = CheckFault(Api::cuDeviceGet)) return Faulted(fault, device);
  CUresult error;
  if (ReadyDevice(ordinal, &error) == nullptr) return error;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  // Fell off the bus after cuInit (Xid 79): the ordinal names nothing the driver can reach.
  if (CUresult reachable = TheDriver().CheckNotLost(ordinal); reachable != CUDA_SUCCESS) {
    return reachable;
  }
  *device = ordinal;
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetName)) return Faulted(fault, name);
  CUresult error;
  const CudaDevice* spec = ReadyDevice(dev, &error);
  if (spec == nullptr) return error;
  if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  std::snprintf(name, static_cast<size_t>(len), "%s", spec->name.c_str());
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetUuid)) return Faulted(fault, uuid);
  CUresult error;
  const CudaDevice* spec = ReadyDevice(dev, &error);
  if (spec == nullptr) return error;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(uuid->bytes, spec->uuid.data(), sizeof uuid->bytes);
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetUuid_v2)) return Faulted(fault, uuid);
  CUresult error;
  const CudaDevice* spec = ReadyDevice(dev, &error);
  if (spec == nullptr) return error;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(uuid->bytes, spec->uuid.data(), sizeof uuid->bytes);
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetAttribute(int* pi, CUdevice_attribute attrib,
                                                  CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetAttribute)) return Faulted(fault, pi);
  CUresult error;
  const CudaDevice* spec = ReadyDevice(dev, &error);
  if (spec == nullptr) return error;
  if (pi == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
      *pi = 1024;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE:
      *pi = 32;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE:
      *pi = 1980000;  // kHz, an H100 SXM's boost clock
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT:
      *pi = 512;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
      *pi = static_cast<int>(spec->multiprocessors);
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
      *pi = 0x18 + spec->ref.gpu;  // the GPU's, for a MIG device too
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR:
      *pi = 2048;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
      *pi = 9;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
      *pi = 0;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY:
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH:
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED:
      *pi = 1;
      return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceTotalMem_v2)) return Faulted(fault, bytes);
  CUresult error;
  const CudaDevice* spec = ReadyDevice(dev, &error);
  if (spec == nullptr) return error;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *bytes = spec->memory_bytes;
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetPCIBusId(char* pciBusId, int len, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetPCIBusId)) return Faulted(fault, pciBusId);
  CUresult error;
  const CudaDevice* spec = ReadyDevice(dev, &error);
  if (spec == nullptr) return error;
  constexpr int kLength = 13;  // "0000:18:00.0" and its NUL
  if (pciBusId == nullptr || len < kLength) return CUDA_ERROR_INVALID_VALUE;
  std::snprintf(pciBusId, static_cast<size_t>(len), "0000:%02x:00.0",
                static_cast<unsigned>(0x18 + spec->ref.gpu) & 0xffu);
  return CUDA_SUCCESS;
}

// ---- Contexts --------------------------------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDevicePrimaryCtxRetain)) return Faulted(fault, pctx);
  return TheDriver().PrimaryRetain(pctx, dev);
}

TESSERA_FAKE_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDevicePrimaryCtxRelease_v2)) return Faulted(fault);
  return TheDriver().PrimaryRelease(dev);
}

TESSERA_FAKE_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDevicePrimaryCtxReset_v2)) return Faulted(fault);
  return TheDriver().PrimaryReset(dev);
}

TESSERA_FAKE_EXPORT CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuCtxCreate_v2)) return Faulted(fault, pctx);
  (void)flags;  // scheduling flags change nothing the fake simulates
  return TheDriver().CreateContext(pctx, dev);
}

TESSERA_FAKE_EXPORT CUresult cuCtxCreate_v3(CUcontext* pctx, CUexecAffinityParam* paramsArray,
                                            int numParams, unsigned int flags, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuCtxCreate_v3)) return Faulted(fault, pctx);
  if (numParams < 0 || (numParams > 0 && paramsArray == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  (void)flags;
  return TheDriver().CreateContext(pctx, dev);
}

TESSERA_FAKE_EXPORT CUresult cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* ctxCreateParams,
                                            unsigned int flags, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuCtxCreate_v4)) return Faulted(fault, pctx);
  static const int kIntroduced = tessera::fakegpu::IntroducedIn("cuCtxCreate_v4");
  if (tessera::fakegpu::DriverLacks(kIntroduced)) return CUDA_ERROR_NOT_FOUND;
  (void)ctxCreateParams;  // affinity and CIG parameters: not simulated
  (void)flags;
  return TheDriver().CreateContext(pctx, dev);
}

TESSERA_FAKE_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
  if (Fault fault = CheckFault(Api::cuCtxDestroy_v2)) return Faulted(fault);
  return TheDriver().DestroyContext(ctx);
}

TESSERA_FAKE_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (Fault fault = CheckFault(Api::cuCtxSetCurrent)) return Faulted(fault);
  return TheDriver().SetCurrent(ctx);
}

TESSERA_FAKE_EXPORT CUresult cuCtxGetCurrent(CUcontext* pctx) {
  if (Fault fault = CheckFault(Api::cuCtxGetCurrent)) return Faulted(fault, pctx);
  return TheDriver().GetCurrent(pctx);
}

TESSERA_FAKE_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
  if (Fault fault = CheckFault(Api::cuCtxPushCurrent_v2)) return Faulted(fault);
  return TheDriver().PushCurrent(ctx);
}

TESSERA_FAKE_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* pctx) {
  if (Fault fault = CheckFault(Api::cuCtxPopCurrent_v2)) return Faulted(fault, pctx);
  return TheDriver().PopCurrent(pctx);
}

TESSERA_FAKE_EXPORT CUresult cuCtxGetDevice(CUdevice* device) {
  if (Fault fault = CheckFault(Api::cuCtxGetDevice)) return Faulted(fault, device);
  CUctx_st* context = nullptr;
  if (CUresult current = Driver::RequireContext(&context); current != CUDA_SUCCESS) return current;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *device = context->device;
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuCtxSynchronize(void) {
  if (Fault fault = CheckFault(Api::cuCtxSynchronize)) return Faulted(fault);
  return TheDriver().ContextSynchronize();
}

TESSERA_FAKE_EXPORT CUresult cuCtxSetLimit(CUlimit limit, size_t value) {
  if (Fault fault = CheckFault(Api::cuCtxSetLimit)) return Faulted(fault);
  return TheDriver().SetLimit(limit, value);
}

TESSERA_FAKE_EXPORT CUresult cuCtxGetLimit(size_t* pvalue, CUlimit limit) {
  if (Fault fault = CheckFault(Api::cuCtxGetLimit)) return Faulted(fault, pvalue);
  return TheDriver().GetLimit(pvalue, limit);
}

// ---- Memory ----------------------------------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  if (Fault fault = CheckFault(Api::cuMemGetInfo_v2)) return Faulted(fault, free);
  return TheDriver().MemGetInfo(free, total);
}

TESSERA_FAKE_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
  if (Fault fault = CheckFault(Api::cuMemAlloc_v2)) return Faulted(fault, dptr);
  return TheDriver().Allocate(dptr, bytesize, Driver::AllocationKind::kLinear, -1);
}

TESSERA_FAKE_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pPitch,
                                                size_t WidthInBytes, size_t Height,
                                                unsigned int ElementSizeBytes) {
  if (Fault fault = CheckFault(Api::cuMemAllocPitch_v2)) return Faulted(fault, dptr);
  if (pPitch == nullptr || WidthInBytes == 0 || Height == 0 ||
      (ElementSizeBytes != 4 && ElementSizeBytes != 8 && ElementSizeBytes != 16)) {
    CUctx_st* context = nullptr;
    CUresult current = Driver::RequireContext(&context);
    return current != CUDA_SUCCESS ? current : CUDA_ERROR_INVALID_VALUE;
  }
  uint64_t pitch = tessera::cuda::PitchFor(WidthInBytes);
  CUresult result = TheDriver().Allocate(dptr, tessera::cuda::MultiplySaturating(pitch, Height),
                                         Driver::AllocationKind::kLinear, -1);
  if (result == CUDA_SUCCESS) *pPitch = pitch;
  return result;
}

TESSERA_FAKE_EXPORT CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytesize,
                                               unsigned int flags) {
  if (Fault fault = CheckFault(Api::cuMemAllocManaged)) return Faulted(fault, dptr);
  if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST) {
    CUctx_st* context = nullptr;
    CUresult current = Driver::RequireContext(&context);
    return current != CUDA_SUCCESS ? current : CUDA_ERROR_INVALID_VALUE;
  }
  // Managed memory counts as device memory of the current device (it is resident there).
  return TheDriver().Allocate(dptr, bytesize, Driver::AllocationKind::kManaged, -1);
}

TESSERA_FAKE_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
  if (Fault fault = CheckFault(Api::cuMemFree_v2)) return Faulted(fault);
  return TheDriver().Free(dptr);
}

TESSERA_FAKE_EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr* pbase, size_t* psize,
                                                     CUdeviceptr dptr) {
  if (Fault fault = CheckFault(Api::cuMemGetAddressRange_v2)) return Faulted(fault, pbase);
  return TheDriver().AddressRange(pbase, psize, dptr);
}

TESSERA_FAKE_EXPORT CUresult cuMemAllocHost_v2(void** pp, size_t bytesize) {
  if (Fault fault = CheckFault(Api::cuMemAllocHost_v2)) return Faulted(fault, pp);
  return TheDriver().AllocateHost(pp, bytesize);
}

TESSERA_FAKE_EXPORT CUresult cuMemHostAlloc(void** pp, size_t bytesize, unsigned int Flags) {
  if (Fault fault = CheckFault(Api::cuMemHostAlloc)) return Faulted(fault, pp);
  constexpr unsigned kKnownFlags = 0x7;  // PORTABLE, DEVICEMAP, WRITECOMBINED
  if ((Flags & ~kKnownFlags) != 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().AllocateHost(pp, bytesize);
}

TESSERA_FAKE_EXPORT CUresult cuMemFreeHost(void* p) {
  if (Fault fault = CheckFault(Api::cuMemFreeHost)) return Faulted(fault);
  return TheDriver().FreeHost(p);
}

TESSERA_FAKE_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void* srcHost,
                                             size_t ByteCount) {
  if (Fault fault = CheckFault(Api::cuMemcpyHtoD_v2)) return Faulted(fault);
  if (srcHost == nullptr && ByteCount > 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().CheckDeviceRange(dstDevice, ByteCount);
}

TESSERA_FAKE_EXPORT CUresult cuMemcpyDtoH_v2(void* dstHost, CUdeviceptr srcDevice,
                                             size_t ByteCount) {
  if (Fault fault = CheckFault(Api::cuMemcpyDtoH_v2)) return Faulted(fault);
  if (dstHost == nullptr && ByteCount > 0) return CUDA_ERROR_INVALID_VALUE;
  CUresult checked = TheDriver().CheckDeviceRange(srcDevice, ByteCount);
  // Device memory has no storage: what comes back is zeros, never uninitialised bytes.
  if (checked == CUDA_SUCCESS && ByteCount > 0) std::memset(dstHost, 0, ByteCount);
  return checked;
}

TESSERA_FAKE_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N) {
  if (Fault fault = CheckFault(Api::cuMemsetD8_v2)) return Faulted(fault);
  (void)uc;
  return TheDriver().CheckDeviceRange(dstDevice, N);
}

// ---- Virtual memory management ---------------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuMemGetAllocationGranularity(
    size_t* granularity, const CUmemAllocationProp* prop, CUmemAllocationGranularity_flags option) {
  if (Fault fault = CheckFault(Api::cuMemGetAllocationGranularity)) {
    return Faulted(fault, granularity);
  }
  if (CUresult ready = Driver::Ready(); ready != CUDA_SUCCESS) return ready;
  if (granularity == nullptr || prop == nullptr ||
      (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
       option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *granularity = tessera::cuda::kAllocationGranule;
  return CUDA_SUCCESS;
}

TESSERA_FAKE_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                         const CUmemAllocationProp* prop,
                                         unsigned long long flags) {
  if (Fault fault = CheckFault(Api::cuMemCreate)) return Faulted(fault, handle);
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().MemCreate(handle, size, prop);
}

TESSERA_FAKE_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  if (Fault fault = CheckFault(Api::cuMemRelease)) return Faulted(fault);
  return TheDriver().MemRelease(handle);
}

TESSERA_FAKE_EXPORT CUresult cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment,
                                                 CUdeviceptr addr, unsigned long long flags) {
  if (Fault fault = CheckFault(Api::cuMemAddressReserve)) return Faulted(fault, ptr);
  (void)addr;  // a hint; the fake always picks the address
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().AddressReserve(ptr, size, alignment);
}

TESSERA_FAKE_EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  if (Fault fault = CheckFault(Api::cuMemAddressFree)) return Faulted(fault);
  return TheDriver().AddressFree(ptr, size);
}

TESSERA_FAKE_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                                      CUmemGenericAllocationHandle handle,
                                      unsigned long long flags) {
  if (Fault fault = CheckFault(Api::cuMemMap)) return Faulted(fault);
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().MemMap(ptr, size, offset, handle);
}

TESSERA_FAKE_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
  if (Fault fault = CheckFault(Api::cuMemUnmap)) return Faulted(fault);
  return TheDriver().MemUnmap(ptr, size);
}

TESSERA_FAKE_EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size,
                                            const CUmemAccessDesc* desc, size_t count) {
  if (Fault fault = CheckFault(Api::cuMemSetAccess)) return Faulted(fault);
  return TheDriver().MemSetAccess(ptr, size, desc, count);
}

// ---- Stream-ordered allocation and pools -----------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuMemAllocAsync)) return Faulted(fault, dptr);
  return TheDriver().AllocateAsync(dptr, bytesize, nullptr, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize,
                                                  CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuMemAllocAsync_ptsz)) return Faulted(fault, dptr);
  return TheDriver().AllocateAsync(dptr, bytesize, nullptr, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuMemFreeAsync)) return Faulted(fault);
  return TheDriver().FreeAsync(dptr, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuMemFreeAsync_ptsz)) return Faulted(fault);
  return TheDriver().FreeAsync(dptr, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytesize,
                                                     CUmemoryPool pool, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuMemAllocFromPoolAsync)) return Faulted(fault, dptr);
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().AllocateAsync(dptr, bytesize, pool, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytesize,
                                                          CUmemoryPool pool, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuMemAllocFromPoolAsync_ptsz)) return Faulted(fault, dptr);
  if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().AllocateAsync(dptr, bytesize, pool, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* poolProps) {
  if (Fault fault = CheckFault(Api::cuMemPoolCreate)) return Faulted(fault, pool);
  return TheDriver().PoolCreate(pool, poolProps);
}

TESSERA_FAKE_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool) {
  if (Fault fault = CheckFault(Api::cuMemPoolDestroy)) return Faulted(fault);
  return TheDriver().PoolDestroy(pool);
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool_out, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetDefaultMemPool)) return Faulted(fault, pool_out);
  return TheDriver().DefaultPool(pool_out, dev);
}

TESSERA_FAKE_EXPORT CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool) {
  if (Fault fault = CheckFault(Api::cuDeviceSetMemPool)) return Faulted(fault);
  return TheDriver().SetCurrentPool(dev, pool);
}

TESSERA_FAKE_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool* pool, CUdevice dev) {
  if (Fault fault = CheckFault(Api::cuDeviceGetMemPool)) return Faulted(fault, pool);
  return TheDriver().CurrentPool(pool, dev);
}

TESSERA_FAKE_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) {
  if (Fault fault = CheckFault(Api::cuMemPoolTrimTo)) return Faulted(fault);
  return TheDriver().PoolTrimTo(pool, minBytesToKeep);
}

TESSERA_FAKE_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                                   void* value) {
  if (Fault fault = CheckFault(Api::cuMemPoolSetAttribute)) return Faulted(fault);
  return TheDriver().PoolSetAttribute(pool, attr, value);
}

TESSERA_FAKE_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                                   void* value) {
  if (Fault fault = CheckFault(Api::cuMemPoolGetAttribute)) return Faulted(fault);
  return TheDriver().PoolGetAttribute(pool, attr, value);
}

// ---- Arrays ----------------------------------------------------------------------------------

namespace {

bool ValidArrayShape(uint64_t width, CUarray_format format, unsigned channels) {
  return width > 0 && tessera::cuda::ArrayFormatBytes(format) != 0 &&
         (channels == 1 || channels == 2 || channels == 4);
}

// Context errors come before argument errors, as on the real driver.
CUresult InvalidArrayArguments() {
  CUctx_st* context = nullptr;
  CUresult current = Driver::RequireContext(&context);
  return current != CUDA_SUCCESS ? current : CUDA_ERROR_INVALID_VALUE;
}

}  // namespace

TESSERA_FAKE_EXPORT CUresult cuArrayCreate_v2(CUarray* pHandle,
                                              const CUDA_ARRAY_DESCRIPTOR* pAllocateArray) {
  if (Fault fault = CheckFault(Api::cuArrayCreate_v2)) return Faulted(fault, pHandle);
  if (pHandle == nullptr || pAllocateArray == nullptr ||
      !ValidArrayShape(pAllocateArray->Width, pAllocateArray->Format,
                       pAllocateArray->NumChannels)) {
    return InvalidArrayArguments();
  }
  return TheDriver().ArrayCreate(pHandle, tessera::cuda::ArrayBytes(*pAllocateArray));
}

TESSERA_FAKE_EXPORT CUresult cuArray3DCreate_v2(CUarray* pHandle,
                                                const CUDA_ARRAY3D_DESCRIPTOR* pAllocateArray) {
  if (Fault fault = CheckFault(Api::cuArray3DCreate_v2)) return Faulted(fault, pHandle);
  if (pHandle == nullptr || pAllocateArray == nullptr ||
      !ValidArrayShape(pAllocateArray->Width, pAllocateArray->Format,
                       pAllocateArray->NumChannels)) {
    return InvalidArrayArguments();
  }
  return TheDriver().ArrayCreate(pHandle, tessera::cuda::ArrayBytes(*pAllocateArray));
}

TESSERA_FAKE_EXPORT CUresult cuArrayDestroy(CUarray hArray) {
  if (Fault fault = CheckFault(Api::cuArrayDestroy)) return Faulted(fault);
  return TheDriver().ArrayDestroy(hArray);
}

TESSERA_FAKE_EXPORT CUresult cuMipmappedArrayCreate(
    CUmipmappedArray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR* pMipmappedArrayDesc,
    unsigned int numMipmapLevels) {
  if (Fault fault = CheckFault(Api::cuMipmappedArrayCreate)) return Faulted(fault, pHandle);
  if (pHandle == nullptr || pMipmappedArrayDesc == nullptr || numMipmapLevels == 0 ||
      !ValidArrayShape(pMipmappedArrayDesc->Width, pMipmappedArrayDesc->Format,
                       pMipmappedArrayDesc->NumChannels)) {
    return InvalidArrayArguments();
  }
  return TheDriver().MipmappedArrayCreate(
      pHandle, tessera::cuda::MipmappedArrayBytes(*pMipmappedArrayDesc, numMipmapLevels));
}

TESSERA_FAKE_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray) {
  if (Fault fault = CheckFault(Api::cuMipmappedArrayDestroy)) return Faulted(fault);
  return TheDriver().MipmappedArrayDestroy(hMipmappedArray);
}

// ---- Modules and functions -------------------------------------------------------------------

namespace {

// A module's device footprint, from its image: one that says "tessera-fake-module bytes=SIZE"
// (SIZE as the config's sizes) takes SIZE; any other one 2 MiB page (code and constant banks).
// Images are read as text up to their first NUL or 64 KiB.
CUresult ModuleFootprint(std::string_view image, uint64_t* footprint) {
  constexpr std::string_view kMarker = "tessera-fake-module bytes=";
  *footprint = 2 * tessera::kMiB;
  size_t at = image.find(kMarker);
  if (at == std::string_view::npos) return CUDA_SUCCESS;
  std::string_view size = image.substr(at + kMarker.size());
  size = size.substr(0, size.find_first_of(" \t\r\n"));
  tessera::Result<uint64_t> bytes = tessera::ParseBytes(size, "tessera-fake-module bytes");
  if (!bytes.ok()) {
    tessera::log::Write(tessera::log::Level::kError, "fakegpu", "module image: %s",
                        bytes.status().message().c_str());
    return CUDA_ERROR_INVALID_IMAGE;
  }
  *footprint = *bytes;
  return CUDA_SUCCESS;
}

constexpr size_t kImageTextBytes = size_t{64} * 1024;

CUresult ImageFootprint(const void* image, uint64_t* footprint) {
  if (image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const auto* text = static_cast<const char*>(image);
  return ModuleFootprint(std::string_view(text, strnlen(text, kImageTextBytes)), footprint);
}

CUresult FileFootprint(const char* path, uint64_t* footprint) {
  if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::FILE* file = std::fopen(path, "rbe");
  if (file == nullptr) return CUDA_ERROR_FILE_NOT_FOUND;
  std::string text(kImageTextBytes, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), file));
  std::fclose(file);
  text.resize(strnlen(text.c_str(), text.size()));
  return ModuleFootprint(text, footprint);
}

}  // namespace

TESSERA_FAKE_EXPORT CUresult cuModuleLoad(CUmodule* module, const char* fname) {
  if (Fault fault = CheckFault(Api::cuModuleLoad)) return Faulted(fault, module);
  uint64_t footprint = 0;
  if (CUresult read = FileFootprint(fname, &footprint); read != CUDA_SUCCESS) return read;
  return TheDriver().ModuleLoad(module, footprint);
}

TESSERA_FAKE_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  if (Fault fault = CheckFault(Api::cuModuleLoadData)) return Faulted(fault, module);
  uint64_t footprint = 0;
  if (CUresult read = ImageFootprint(image, &footprint); read != CUDA_SUCCESS) return read;
  return TheDriver().ModuleLoad(module, footprint);
}

TESSERA_FAKE_EXPORT CUresult cuModuleLoadDataEx(CUmodule* module, const void* image,
                                                unsigned int /*numOptions*/,
                                                CUjit_option* /*options*/,
                                                void** /*optionValues*/) {
  if (Fault fault = CheckFault(Api::cuModuleLoadDataEx)) return Faulted(fault, module);
  uint64_t footprint = 0;
  if (CUresult read = ImageFootprint(image, &footprint); read != CUDA_SUCCESS) return read;
  return TheDriver().ModuleLoad(module, footprint);
}

TESSERA_FAKE_EXPORT CUresult cuModuleLoadFatBinary(CUmodule* module, const void* fatCubin) {
  if (Fault fault = CheckFault(Api::cuModuleLoadFatBinary)) return Faulted(fault, module);
  uint64_t footprint = 0;
  if (CUresult read = ImageFootprint(fatCubin, &footprint); read != CUDA_SUCCESS) return read;
  return TheDriver().ModuleLoad(module, footprint);
}

TESSERA_FAKE_EXPORT CUresult cuModuleUnload(CUmodule hmod) {
  if (Fault fault = CheckFault(Api::cuModuleUnload)) return Faulted(fault);
  return TheDriver().ModuleUnload(hmod);
}

TESSERA_FAKE_EXPORT CUresult cuLibraryLoadData(
    CUlibrary* library, const void* code, CUjit_option* /*jitOptions*/, void** /*jitOptionsValues*/,
    unsigned int /*numJitOptions*/, CUlibraryOption* /*libraryOptions*/,
    void** /*libraryOptionValues*/, unsigned int /*numLibraryOptions*/) {
  if (Fault fault = CheckFault(Api::cuLibraryLoadData)) return Faulted(fault, library);
  uint64_t footprint = 0;
  if (CUresult read = ImageFootprint(code, &footprint); read != CUDA_SUCCESS) return read;
  return TheDriver().LibraryLoad(library, footprint);
}

TESSERA_FAKE_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary* library, const char* fileName,
                                                   CUjit_option* /*jitOptions*/,
                                                   void** /*jitOptionsValues*/,
                                                   unsigned int /*numJitOptions*/,
                                                   CUlibraryOption* /*libraryOptions*/,
                                                   void** /*libraryOptionValues*/,
                                                   unsigned int /*numLibraryOptions*/) {
  if (Fault fault = CheckFault(Api::cuLibraryLoadFromFile)) return Faulted(fault, library);
  uint64_t footprint = 0;
  if (CUresult read = FileFootprint(fileName, &footprint); read != CUDA_SUCCESS) return read;
  return TheDriver().LibraryLoad(library, footprint);
}

TESSERA_FAKE_EXPORT CUresult cuLibraryUnload(CUlibrary library) {
  if (Fault fault = CheckFault(Api::cuLibraryUnload)) return Faulted(fault);
  return TheDriver().LibraryUnload(library);
}

TESSERA_FAKE_EXPORT CUresult cuModuleGetFunction(CUfunction* hfunc, CUmodule hmod,
                                                 const char* name) {
  if (Fault fault = CheckFault(Api::cuModuleGetFunction)) return Faulted(fault, hfunc);
  return TheDriver().ModuleGetFunction(hfunc, hmod, name);
}

// ---- Streams and events ----------------------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuStreamCreate(CUstream* phStream, unsigned int Flags) {
  if (Fault fault = CheckFault(Api::cuStreamCreate)) return Faulted(fault, phStream);
  return TheDriver().StreamCreate(phStream, Flags);
}

TESSERA_FAKE_EXPORT CUresult cuStreamDestroy_v2(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamDestroy_v2)) return Faulted(fault);
  return TheDriver().StreamDestroy(hStream);
}

TESSERA_FAKE_EXPORT CUresult cuStreamSynchronize(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamSynchronize)) return Faulted(fault);
  return TheDriver().StreamSynchronize(hStream);
}

TESSERA_FAKE_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamSynchronize_ptsz)) return Faulted(fault);
  return TheDriver().StreamSynchronize(hStream);
}

TESSERA_FAKE_EXPORT CUresult cuStreamQuery(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamQuery)) return Faulted(fault);
  return TheDriver().StreamQuery(hStream);
}

TESSERA_FAKE_EXPORT CUresult cuStreamQuery_ptsz(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamQuery_ptsz)) return Faulted(fault);
  return TheDriver().StreamQuery(hStream);
}

TESSERA_FAKE_EXPORT CUresult cuEventCreate(CUevent* phEvent, unsigned int Flags) {
  if (Fault fault = CheckFault(Api::cuEventCreate)) return Faulted(fault, phEvent);
  return TheDriver().EventCreate(phEvent, Flags);
}

TESSERA_FAKE_EXPORT CUresult cuEventDestroy_v2(CUevent hEvent) {
  if (Fault fault = CheckFault(Api::cuEventDestroy_v2)) return Faulted(fault);
  return TheDriver().EventDestroy(hEvent);
}

TESSERA_FAKE_EXPORT CUresult cuEventRecord(CUevent hEvent, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuEventRecord)) return Faulted(fault);
  return TheDriver().EventRecord(hEvent, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuEventSynchronize(CUevent hEvent) {
  if (Fault fault = CheckFault(Api::cuEventSynchronize)) return Faulted(fault);
  return TheDriver().EventSynchronize(hEvent);
}

TESSERA_FAKE_EXPORT CUresult cuEventQuery(CUevent hEvent) {
  if (Fault fault = CheckFault(Api::cuEventQuery)) return Faulted(fault);
  return TheDriver().EventQuery(hEvent);
}

TESSERA_FAKE_EXPORT CUresult cuEventElapsedTime(float* pMilliseconds, CUevent hStart,
                                                CUevent hEnd) {
  if (Fault fault = CheckFault(Api::cuEventElapsedTime)) return Faulted(fault, pMilliseconds);
  return TheDriver().EventElapsedTime(pMilliseconds, hStart, hEnd);
}

TESSERA_FAKE_EXPORT CUresult cuEventElapsedTime_v2(float* pMilliseconds, CUevent hStart,
                                                   CUevent hEnd) {
  if (Fault fault = CheckFault(Api::cuEventElapsedTime_v2)) return Faulted(fault, pMilliseconds);
  static const int kIntroduced = tessera::fakegpu::IntroducedIn("cuEventElapsedTime_v2");
  if (tessera::fakegpu::DriverLacks(kIntroduced)) return CUDA_ERROR_NOT_FOUND;
  return TheDriver().EventElapsedTime(pMilliseconds, hStart, hEnd);
}

// ---- Stream capture (driver_capture.cc) --------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuStreamBeginCapture(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamBeginCapture)) return Faulted(fault);
  return TheDriver().BeginCapture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL);
}

TESSERA_FAKE_EXPORT CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode) {
  if (Fault fault = CheckFault(Api::cuStreamBeginCapture_v2)) return Faulted(fault);
  return TheDriver().BeginCapture(hStream, mode);
}

TESSERA_FAKE_EXPORT CUresult cuStreamEndCapture(CUstream hStream, CUgraph* phGraph) {
  if (Fault fault = CheckFault(Api::cuStreamEndCapture)) return Faulted(fault, phGraph);
  return TheDriver().EndCapture(hStream, phGraph);
}

// The _ptsz variants: their stream 0 is the per-thread default stream, which this fake refuses to
// capture as it does every default stream; other streams are the same as without the suffix.
TESSERA_FAKE_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuStreamBeginCapture_ptsz)) return Faulted(fault);
  return TheDriver().BeginCapture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL);
}

TESSERA_FAKE_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream,
                                                          CUstreamCaptureMode mode) {
  if (Fault fault = CheckFault(Api::cuStreamBeginCapture_v2_ptsz)) return Faulted(fault);
  return TheDriver().BeginCapture(hStream, mode);
}

TESSERA_FAKE_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph* phGraph) {
  if (Fault fault = CheckFault(Api::cuStreamEndCapture_ptsz)) return Faulted(fault, phGraph);
  return TheDriver().EndCapture(hStream, phGraph);
}

TESSERA_FAKE_EXPORT CUresult cuStreamIsCapturing(CUstream hStream,
                                                 CUstreamCaptureStatus* captureStatus) {
  if (Fault fault = CheckFault(Api::cuStreamIsCapturing)) return Faulted(fault);
  return TheDriver().CaptureInfo(hStream, captureStatus, nullptr);
}

TESSERA_FAKE_EXPORT CUresult cuStreamGetCaptureInfo(CUstream hStream,
                                                    CUstreamCaptureStatus* captureStatus_out,
                                                    cuuint64_t* id_out) {
  if (Fault fault = CheckFault(Api::cuStreamGetCaptureInfo)) return Faulted(fault);
  return TheDriver().CaptureInfo(hStream, captureStatus_out, id_out);
}

TESSERA_FAKE_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode* mode) {
  if (Fault fault = CheckFault(Api::cuThreadExchangeStreamCaptureMode)) return Faulted(fault);
  return Driver::ExchangeCaptureMode(mode);
}

// ---- Launches: validate and return -----------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX,
                                            unsigned int gridDimY, unsigned int gridDimZ,
                                            unsigned int blockDimX, unsigned int blockDimY,
                                            unsigned int blockDimZ, unsigned int sharedMemBytes,
                                            CUstream hStream, void** kernelParams, void** extra) {
  if (Fault fault = CheckFault(Api::cuLaunchKernel)) return Faulted(fault);
  (void)sharedMemBytes, (void)kernelParams, (void)extra;
  return Launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX,
                                                 unsigned int gridDimY, unsigned int gridDimZ,
                                                 unsigned int blockDimX, unsigned int blockDimY,
                                                 unsigned int blockDimZ,
                                                 unsigned int sharedMemBytes, CUstream hStream,
                                                 void** kernelParams, void** extra) {
  if (Fault fault = CheckFault(Api::cuLaunchKernel_ptsz)) return Faulted(fault);
  (void)sharedMemBytes, (void)kernelParams, (void)extra;
  return Launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f,
                                              void** kernelParams, void** extra) {
  if (Fault fault = CheckFault(Api::cuLaunchKernelEx)) return Faulted(fault);
  (void)kernelParams, (void)extra;
  return LaunchEx(config, f);
}

TESSERA_FAKE_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f,
                                                   void** kernelParams, void** extra) {
  if (Fault fault = CheckFault(Api::cuLaunchKernelEx_ptsz)) return Faulted(fault);
  (void)kernelParams, (void)extra;
  return LaunchEx(config, f);
}

TESSERA_FAKE_EXPORT CUresult cuLaunchCooperativeKernel(
    CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
    unsigned int sharedMemBytes, CUstream hStream, void** kernelParams) {
  if (Fault fault = CheckFault(Api::cuLaunchCooperativeKernel)) return Faulted(fault);
  (void)sharedMemBytes, (void)kernelParams;
  return Launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(
    CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
    unsigned int sharedMemBytes, CUstream hStream, void** kernelParams) {
  if (Fault fault = CheckFault(Api::cuLaunchCooperativeKernel_ptsz)) return Faulted(fault);
  (void)sharedMemBytes, (void)kernelParams;
  return Launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

// ---- Graphs ----------------------------------------------------------------------------------

TESSERA_FAKE_EXPORT CUresult cuGraphCreate(CUgraph* phGraph, unsigned int flags) {
  if (Fault fault = CheckFault(Api::cuGraphCreate)) return Faulted(fault, phGraph);
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return TheDriver().GraphCreate(phGraph);
}

TESSERA_FAKE_EXPORT CUresult cuGraphDestroy(CUgraph hGraph) {
  if (Fault fault = CheckFault(Api::cuGraphDestroy)) return Faulted(fault);
  return TheDriver().GraphDestroy(hGraph);
}

TESSERA_FAKE_EXPORT CUresult cuGraphAddKernelNode_v2(CUgraphNode* phGraphNode, CUgraph hGraph,
                                                     const CUgraphNode* dependencies,
                                                     size_t numDependencies,
                                                     const CUDA_KERNEL_NODE_PARAMS* nodeParams) {
  if (Fault fault = CheckFault(Api::cuGraphAddKernelNode_v2)) return Faulted(fault, phGraphNode);
  return TheDriver().GraphAddKernelNode(phGraphNode, hGraph, dependencies, numDependencies,
                                        nodeParams);
}

TESSERA_FAKE_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode* phGraphNode, CUgraph hGraph,
                                                    const CUgraphNode* dependencies,
                                                    size_t numDependencies,
                                                    CUDA_MEM_ALLOC_NODE_PARAMS* nodeParams) {
  if (Fault fault = CheckFault(Api::cuGraphAddMemAllocNode)) return Faulted(fault, phGraphNode);
  return TheDriver().GraphAddMemAllocNode(phGraphNode, hGraph, dependencies, numDependencies,
                                          nodeParams);
}

TESSERA_FAKE_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode* phGraphNode, CUgraph hGraph,
                                                   const CUgraphNode* dependencies,
                                                   size_t numDependencies, CUdeviceptr dptr) {
  if (Fault fault = CheckFault(Api::cuGraphAddMemFreeNode)) return Faulted(fault, phGraphNode);
  return TheDriver().GraphAddMemFreeNode(phGraphNode, hGraph, dependencies, numDependencies, dptr);
}

namespace {

// The node types the fake models, through the same paths as their own add functions; others
// are CUDA_ERROR_NOT_SUPPORTED. Edge data other than full completion (all zero) needs kernel
// ports the fake does not model.
CUresult GraphAddNode(CUgraphNode* phGraphNode, CUgraph hGraph, const CUgraphNode* dependencies,
                      const CUgraphEdgeData* dependencyData, size_t numDependencies,
                      CUgraphNodeParams* nodeParams) {
  if (nodeParams == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; dependencyData != nullptr && i < numDependencies; ++i) {
    const CUgraphEdgeData& edge = dependencyData[i];
    if (edge.from_port != 0 || edge.to_port != 0 || edge.type != 0) return CUDA_ERROR_NOT_SUPPORTED;
  }
  switch (nodeParams->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
      return TheDriver().GraphAddKernelNode(phGraphNode, hGraph, dependencies, numDependencies,
                                            &nodeParams->kernel);
    case CU_GRAPH_NODE_TYPE_MEM_ALLOC:
      return TheDriver().GraphAddMemAllocNode(phGraphNode, hGraph, dependencies, numDependencies,
                                              &nodeParams->alloc);
    case CU_GRAPH_NODE_TYPE_MEM_FREE:
      return TheDriver().GraphAddMemFreeNode(phGraphNode, hGraph, dependencies, numDependencies,
                                             nodeParams->free.dptr);
  }
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace

TESSERA_FAKE_EXPORT CUresult cuGraphAddNode(CUgraphNode* phGraphNode, CUgraph hGraph,
                                            const CUgraphNode* dependencies, size_t numDependencies,
                                            CUgraphNodeParams* nodeParams) {
  if (Fault fault = CheckFault(Api::cuGraphAddNode)) return Faulted(fault, phGraphNode);
  return GraphAddNode(phGraphNode, hGraph, dependencies, nullptr, numDependencies, nodeParams);
}

TESSERA_FAKE_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode* phGraphNode, CUgraph hGraph,
                                               const CUgraphNode* dependencies,
                                               const CUgraphEdgeData* dependencyData,
                                               size_t numDependencies,
                                               CUgraphNodeParams* nodeParams) {
  if (Fault fault = CheckFault(Api::cuGraphAddNode_v2)) return Faulted(fault, phGraphNode);
  return GraphAddNode(phGraphNode, hGraph, dependencies, dependencyData, numDependencies,
                      nodeParams);
}

TESSERA_FAKE_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* phGraphExec, CUgraph hGraph,
                                                         unsigned long long flags) {
  if (Fault fault = CheckFault(Api::cuGraphInstantiateWithFlags)) {
    return Faulted(fault, phGraphExec);
  }
  (void)flags;
  return TheDriver().GraphInstantiate(phGraphExec, hGraph);
}

TESSERA_FAKE_EXPORT CUresult cuGraphInstantiateWithParams(
    CUgraphExec* phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS* instantiateParams) {
  if (Fault fault = CheckFault(Api::cuGraphInstantiateWithParams)) {
    return Faulted(fault, phGraphExec);
  }
  if (instantiateParams == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUresult result = TheDriver().GraphInstantiate(phGraphExec, hGraph);
  instantiateParams->hErrNode_out = nullptr;
  instantiateParams->result_out =
      result == CUDA_SUCCESS ? CUDA_GRAPH_INSTANTIATE_SUCCESS : CUDA_GRAPH_INSTANTIATE_ERROR;
  return result;
}

TESSERA_FAKE_EXPORT CUresult cuGraphExecDestroy(CUgraphExec hGraphExec) {
  if (Fault fault = CheckFault(Api::cuGraphExecDestroy)) return Faulted(fault);
  return TheDriver().GraphExecDestroy(hGraphExec);
}

namespace {

inline CUresult CheckGraphLaunch(CUgraphExec exec, CUstream stream) {
  if (tessera::fakegpu::g_init_state.load(std::memory_order_relaxed) !=
      tessera::fakegpu::InitState::kReady) {
    return Driver::Ready();
  }
  if (!LooksLive(tessera::fakegpu::g_current_context)) return CUDA_ERROR_INVALID_CONTEXT;
  if (!LooksLive(exec)) return CUDA_ERROR_INVALID_VALUE;
  return StreamLooksUsable(stream) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

}  // namespace

inline CUresult LaunchGraph(CUgraphExec exec, CUstream stream) {
  CUresult checked = CheckGraphLaunch(exec, stream);
  if (checked != CUDA_SUCCESS || exec->busy_kernels_ns.empty()) return checked;
  return TheDriver().QueueBusyKernels(stream, exec->busy_kernels_ns.data(),
                                      exec->busy_kernels_ns.size());
}

TESSERA_FAKE_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuGraphLaunch)) return Faulted(fault);
  return LaunchGraph(hGraphExec, hStream);
}

TESSERA_FAKE_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream) {
  if (Fault fault = CheckFault(Api::cuGraphLaunch_ptsz)) return Faulted(fault);
  return LaunchGraph(hGraphExec, hStream);
}

// ---- Control functions for tests -------------------------------------------------------------

TESSERA_FAKE_EXPORT int tesseraFakeResetPeaks(void) { return TheDriver().ResetPeaks(); }

TESSERA_FAKE_EXPORT int tesseraFakeSetFaults(const char* spec) {
  tessera::Status armed = tessera::fakegpu::ArmFaults(spec == nullptr ? "" : spec);
  if (armed.ok()) return 0;
  tessera::log::Write(tessera::log::Level::kError, "fakegpu", "%s", armed.message().c_str());
  return -1;
}

TESSERA_FAKE_EXPORT int tesseraFakeShutdown(void) { return TheDriver().Shutdown(); }
// NOLINTEND(readability-identifier-naming)
