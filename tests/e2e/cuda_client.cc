// A CUDA driver-API program for end-to-end tests and the demo: it does what its arguments say on
// whatever libcuda.so.1 it finds, and reports in "key=value" lines on stdout.
//
// How it reaches the driver (first argument):
//   linked       calls the functions it was linked against (only in tessera-cuda-client-linked)
//   dlopen       dlopen("libcuda.so.1") + dlsym for every function
//   procaddress  dlopen + dlsym("cuGetProcAddress_v2") only, then cuGetProcAddress for the rest
//   global       first calls the cuInit that dlsym(RTLD_DEFAULT) finds before the driver is
//                loaded (a preloaded shim's; it loads the driver), reports "first_init", then
//                goes on as dlopen
//   nvml         NVML alone, as nvidia-smi: no CUDA call at all. For every NVML device i it
//                reports nvml<i>_total, _used, _free (nvmlDeviceGetMemoryInfo), nvml<i>_processes
//                (how many nvmlDeviceGetComputeRunningProcesses_v3 lists), nvml<i>_pids (their
//                pids, comma-separated, or none), nvml<i>_processes_v1 and _v2 (the older
//                queries' counts), nvml<i>_util (nvmlDeviceGetUtilizationRates' gpu, -1 on an
//                error) and nvml<i>_samples (how many nvmlDeviceGetProcessUtilization gives for
//                the last second); no command follows
//
// Commands:
//   fill CHUNK                allocate CHUNK-byte blocks until refused; report and exit
//   hold BYTES [CHUNK]        allocate BYTES (in CHUNK blocks), print "ready", wait for stdin EOF
//   family NAME BYTES         allocate once with a family (alloc, pitch, managed, vmm, async,
//                             pool, array, array3d, mipmapped, graph, graph-node, graph-node-v2
//                             (cuGraphAddNode and _v2), context, heap and printf:
//                             cuCtxSetLimit of the malloc heap or printf FIFO); print "ready",
//                             wait for stdin EOF, free it, report
//   pools NAME N [BYTES]      stream-ordered pools (small, cached, device1, host; see Pools)
//   vmm-mapped N BYTES        N times create BYTES, reserve, map, release (mapped still);
//                             "ready"; at stdin EOF unmap them and create BYTES once more
//   churn SEED OPS MAX [together]
//                             OPS random allocations/frees of up to MAX bytes; report refusals
//                             (together: print "ready" with its context made; at a line on
//                             stdin allocate MAX bytes, a stake held to the end, print
//                             "staked"; start at stdin EOF)
//   loop MAX                  allocate and free random sizes forever (to be killed)
//   free-unknown              free a pointer the program never allocated; report the result
//   loads KIND COUNT BYTES [FILE]  load modules or libraries that take BYTES each (see Loads)
//   info                      report cuMemGetInfo, cuDeviceTotalMem and NVML memory info
//   info-device N             report cuDeviceTotalMem of CUDA device N as device_total
#include <dlfcn.h>
#include <sys/time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda/driver_api.h"
#include "cuda/nvml_api.h"

namespace {

struct Driver {
  decltype(&cuInit) Init;
  decltype(&cuDeviceGet) DeviceGet;
  decltype(&cuDevicePrimaryCtxRetain) PrimaryCtxRetain;
  decltype(&cuCtxSetCurrent) CtxSetCurrent;
  decltype(&cuCtxCreate_v2) CtxCreate;
  decltype(&cuCtxDestroy_v2) CtxDestroy;
  decltype(&cuMemAlloc_v2) MemAlloc;
  decltype(&cuMemFree_v2) MemFree;
  decltype(&cuMemAllocPitch_v2) MemAllocPitch;
  decltype(&cuMemAllocManaged) MemAllocManaged;
  decltype(&cuMemGetInfo_v2) MemGetInfo;
  decltype(&cuDeviceTotalMem_v2) DeviceTotalMem;
  decltype(&cuMemCreate) MemCreate;
  decltype(&cuMemRelease) MemRelease;
  decltype(&cuCtxSetLimit) CtxSetLimit;
  decltype(&cuMemAddressReserve) MemAddressReserve;
  decltype(&cuMemAddressFree) MemAddressFree;
  decltype(&cuMemMap) MemMap;
  decltype(&cuMemUnmap) MemUnmap;
  decltype(&cuMemAllocAsync) MemAllocAsync;
  decltype(&cuMemFreeAsync) MemFreeAsync;
  decltype(&cuMemPoolCreate) MemPoolCreate;
  decltype(&cuMemAllocFromPoolAsync) MemAllocFromPoolAsync;
  decltype(&cuArrayCreate_v2) ArrayCreate;
  decltype(&cuArray3DCreate_v2) Array3DCreate;
  decltype(&cuArrayDestroy) ArrayDestroy;
  decltype(&cuMipmappedArrayCreate) MipmappedArrayCreate;
  decltype(&cuMipmappedArrayDestroy) MipmappedArrayDestroy;
  decltype(&cuGraphCreate) GraphCreate;
  decltype(&cuGraphAddMemAllocNode) GraphAddMemAllocNode;
  decltype(&cuGraphDestroy) GraphDestroy;
  decltype(&cuLaunchKernel) LaunchKernel;
  decltype(&cuStreamSynchronize) StreamSynchronize;
  decltype(&cuDeviceGetDefaultMemPool) DeviceGetDefaultMemPool;
  decltype(&cuMemPoolSetAttribute) MemPoolSetAttribute;
  decltype(&cuMemPoolTrimTo) MemPoolTrimTo;
};

#ifdef TESSERA_CLIENT_LINKED
Driver LinkedDriver() {
  return Driver{cuInit,
                cuDeviceGet,
                cuDevicePrimaryCtxRetain,
                cuCtxSetCurrent,
                cuCtxCreate_v2,
                cuCtxDestroy_v2,
                cuMemAlloc_v2,
                cuMemFree_v2,
                cuMemAllocPitch_v2,
                cuMemAllocManaged,
                cuMemGetInfo_v2,
                cuDeviceTotalMem_v2,
                cuMemCreate,
                cuMemRelease,
                cuCtxSetLimit,
                cuMemAddressReserve,
                cuMemAddressFree,
                cuMemMap,
                cuMemUnmap,
                cuMemAllocAsync,
                cuMemFreeAsync,
                cuMemPoolCreate,
                cuMemAllocFromPoolAsync,
                cuArrayCreate_v2,
                cuArray3DCreate_v2,
                cuArrayDestroy,
                cuMipmappedArrayCreate,
                cuMipmappedArrayDestroy,
                cuGraphCreate,
                cuGraphAddMemAllocNode,
                cuGraphDestroy,
                cuLaunchKernel,
                cuStreamSynchronize,
                cuDeviceGetDefaultMemPool,
                cuMemPoolSetAttribute,
                cuMemPoolTrimTo};
}
#endif

template <typename Function>
void Find(Function& out, void* library, decltype(&cuGetProcAddress_v2) proc, const char* exported,
          const char* base) {
  void* found = nullptr;
  if (proc != nullptr) {
    CUdriverProcAddressQueryResult status{};
    proc(base, &found, TESSERA_CUDA_API_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &status);
  } else {
    found = dlsym(library, exported);
  }
  if (found == nullptr) {
    std::fprintf(stderr, "client: cannot find %s\n", exported);
    std::exit(3);
  }
  out = reinterpret_cast<Function>(found);
}

Driver DynamicDriver(bool via_proc_address) {
  void* library = dlopen("libcuda.so.1", RTLD_NOW);
  if (library == nullptr) {
    std::fprintf(stderr, "client: %s\n", dlerror());
    std::exit(3);
  }
  decltype(&cuGetProcAddress_v2) proc = nullptr;
  if (via_proc_address) {
    proc = reinterpret_cast<decltype(proc)>(dlsym(library, "cuGetProcAddress_v2"));
    if (proc == nullptr) std::exit(3);
  }
  Driver d{};
  Find(d.Init, library, proc, "cuInit", "cuInit");
  Find(d.DeviceGet, library, proc, "cuDeviceGet", "cuDeviceGet");
  Find(d.PrimaryCtxRetain, library, proc, "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRetain");
  Find(d.CtxSetCurrent, library, proc, "cuCtxSetCurrent", "cuCtxSetCurrent");
  Find(d.CtxDestroy, library, proc, "cuCtxDestroy_v2", "cuCtxDestroy");
  Find(d.MemAlloc, library, proc, "cuMemAlloc_v2", "cuMemAlloc");
  Find(d.MemFree, library, proc, "cuMemFree_v2", "cuMemFree");
  Find(d.MemAllocPitch, library, proc, "cuMemAllocPitch_v2", "cuMemAllocPitch");
  Find(d.MemAllocManaged, library, proc, "cuMemAllocManaged", "cuMemAllocManaged");
  Find(d.MemGetInfo, library, proc, "cuMemGetInfo_v2", "cuMemGetInfo");
  Find(d.DeviceTotalMem, library, proc, "cuDeviceTotalMem_v2", "cuDeviceTotalMem");
  Find(d.MemCreate, library, proc, "cuMemCreate", "cuMemCreate");
  Find(d.MemRelease, library, proc, "cuMemRelease", "cuMemRelease");
  Find(d.CtxSetLimit, library, proc, "cuCtxSetLimit", "cuCtxSetLimit");
  Find(d.MemAddressReserve, library, proc, "cuMemAddressReserve", "cuMemAddressReserve");
  Find(d.MemAddressFree, library, proc, "cuMemAddressFree", "cuMemAddressFree");
  Find(d.MemMap, library, proc, "cuMemMap", "cuMemMap");
  Find(d.MemUnmap, library, proc, "cuMemUnmap", "cuMemUnmap");
  Find(d.MemAllocAsync, library, proc, "cuMemAllocAsync", "cuMemAllocAsync");
  Find(d.MemFreeAsync, library, proc, "cuMemFreeAsync", "cuMemFreeAsync");
  Find(d.MemPoolCreate, library, proc, "cuMemPoolCreate", "cuMemPoolCreate");
  Find(d.MemAllocFromPoolAsync, library, proc, "cuMemAllocFromPoolAsync",
       "cuMemAllocFromPoolAsync");
  Find(d.ArrayCreate, library, proc, "cuArrayCreate_v2", "cuArrayCreate");
  Find(d.Array3DCreate, library, proc, "cuArray3DCreate_v2", "cuArray3DCreate");
  Find(d.ArrayDestroy, library, proc, "cuArrayDestroy", "cuArrayDestroy");
  Find(d.MipmappedArrayCreate, library, proc, "cuMipmappedArrayCreate", "cuMipmappedArrayCreate");
  Find(d.MipmappedArrayDestroy, library, proc, "cuMipmappedArrayDestroy",
       "cuMipmappedArrayDestroy");
  Find(d.GraphCreate, library, proc, "cuGraphCreate", "cuGraphCreate");
  Find(d.GraphAddMemAllocNode, library, proc, "cuGraphAddMemAllocNode", "cuGraphAddMemAllocNode");
  Find(d.GraphDestroy, library, proc, "cuGraphDestroy", "cuGraphDestroy");
  Find(d.LaunchKernel, library, proc, "cuLaunchKernel", "cuLaunchKernel");
  Find(d.StreamSynchronize, library, proc, "cuStreamSynchronize", "cuStreamSynchronize");
  Find(d.DeviceGetDefaultMemPool, library, proc, "cuDeviceGetDefaultMemPool",
       "cuDeviceGetDefaultMemPool");
  Find(d.MemPoolSetAttribute, library, proc, "cuMemPoolSetAttribute", "cuMemPoolSetAttribute");
  Find(d.MemPoolTrimTo, library, proc, "cuMemPoolTrimTo", "cuMemPoolTrimTo");
  if (via_proc_address) {
    // cuCtxCreate means _v4 to a CUDA 13 caller; this program holds the 3-argument _v2.
    void* found = nullptr;
    CUdriverProcAddressQueryResult status{};
    proc("cuCtxCreate", &found, 11000, CU_GET_PROC_ADDRESS_DEFAULT, &status);
    d.CtxCreate = reinterpret_cast<decltype(d.CtxCreate)>(found);
  } else {
    Find(d.CtxCreate, library, proc, "cuCtxCreate_v2", "cuCtxCreate");
  }
  return d;
}

uint64_t ParseSize(const char* text) {
  char* end = nullptr;
  uint64_t value = std::strtoull(text, &end, 10);
  if (*end == 'M') value <<= 20;
  if (*end == 'G') value <<= 30;
  if (*end == 'K') value <<= 10;
  return value;
}

void Say(const char* marker) {
  std::printf("%s\n", marker);
  std::fflush(stdout);
}

void ReadLine() {
  char c = 0;
  while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n') {
  }
}

void ReadToEof() {
  char buffer[64];
  while (read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }
}

void WaitForEof() {
  Say("ready");
  ReadToEof();
}

void ReportInfo(const Driver& d) {
  size_t free = 0, total = 0, device_total = 0;
  CUresult info = d.MemGetInfo(&free, &total);
  d.DeviceTotalMem(&device_total, 0);
  std::printf("info_result=%d free=%zu total=%zu device_total=%zu\n", info, free, total,
              device_total);
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (nvml == nullptr) return;
  auto init = reinterpret_cast<decltype(&nvmlInit_v2)>(dlsym(nvml, "nvmlInit_v2"));
  auto handle_of = reinterpret_cast<decltype(&nvmlDeviceGetHandleByIndex_v2)>(
      dlsym(nvml, "nvmlDeviceGetHandleByIndex_v2"));
  auto memory_v1 =
      reinterpret_cast<decltype(&nvmlDeviceGetMemoryInfo)>(dlsym(nvml, "nvmlDeviceGetMemoryInfo"));
  auto memory_v2 = reinterpret_cast<decltype(&nvmlDeviceGetMemoryInfo_v2)>(
      dlsym(nvml, "nvmlDeviceGetMemoryInfo_v2"));
  nvmlDevice_t device = nullptr;
  if (init() != NVML_SUCCESS || handle_of(0, &device) != NVML_SUCCESS) return;
  nvmlMemory_t v1{};
  nvmlMemory_v2_t v2{};
  v2.version = nvmlMemory_v2;
  memory_v1(device, &v1);
  memory_v2(device, &v2);
  std::printf("nvml_total=%llu nvml_free=%llu nvml_used=%llu nvml2_total=%llu nvml2_free=%llu\n",
              v1.total, v1.free, v1.used, v2.total, v2.free);
}

int Fill(const Driver& d, uint64_t chunk) {
  uint64_t allocated = 0;
  CUresult refused = CUDA_SUCCESS;
  std::vector<CUdeviceptr> blocks;
  for (int i = 0; i < 1'000'000; ++i) {
    CUdeviceptr pointer = 0;
    refused = d.MemAlloc(&pointer, chunk);
    if (refused != CUDA_SUCCESS) break;
    blocks.push_back(pointer);
    allocated += chunk;
  }
  std::printf("allocated=%" PRIu64 " refused=%d\n", allocated, refused);
  ReportInfo(d);
  for (CUdeviceptr pointer : blocks) d.MemFree(pointer);
  return 0;
}

int Hold(const Driver& d, uint64_t bytes, uint64_t chunk) {
  uint64_t allocated = 0;
  CUresult result = CUDA_SUCCESS;
  while (allocated < bytes) {
    uint64_t size = std::min(chunk, bytes - allocated);
    CUdeviceptr pointer = 0;
    result = d.MemAlloc(&pointer, size);
    if (result != CUDA_SUCCESS) break;
    allocated += size;
  }
  std::printf("allocated=%" PRIu64 " result=%d\n", allocated, result);
  WaitForEof();
  return result == CUDA_SUCCESS ? 0 : 1;
}

// Module or library loads of images that take BYTES each on the fake GPU, COUNT times or until
// refused; reports loaded, load_result (the last load's), free (cuMemGetInfo), "ready", waits for
// stdin EOF, unloads every one and reports unload_result and free_after. KIND is module, data-ex,
// fatbin, file, library or library-file (the *file kinds load the image from FILE).
int Loads(const Driver& d, const std::string& kind, int count, const std::string& bytes,
          const std::string& file) {
  void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
  if (cuda == nullptr) return 3;
  auto load_module = reinterpret_cast<decltype(&cuModuleLoad)>(dlsym(cuda, "cuModuleLoad"));
  auto load_data = reinterpret_cast<decltype(&cuModuleLoadData)>(dlsym(cuda, "cuModuleLoadData"));
  auto load_data_ex =
      reinterpret_cast<decltype(&cuModuleLoadDataEx)>(dlsym(cuda, "cuModuleLoadDataEx"));
  auto load_fatbin =
      reinterpret_cast<decltype(&cuModuleLoadFatBinary)>(dlsym(cuda, "cuModuleLoadFatBinary"));
  auto unload_module = reinterpret_cast<decltype(&cuModuleUnload)>(dlsym(cuda, "cuModuleUnload"));
  auto load_library =
      reinterpret_cast<decltype(&cuLibraryLoadData)>(dlsym(cuda, "cuLibraryLoadData"));
  auto load_library_file =
      reinterpret_cast<decltype(&cuLibraryLoadFromFile)>(dlsym(cuda, "cuLibraryLoadFromFile"));
  auto unload_library =
      reinterpret_cast<decltype(&cuLibraryUnload)>(dlsym(cuda, "cuLibraryUnload"));
  const std::string image = "tessera-fake-module bytes=" + bytes;
  if (!file.empty()) std::ofstream(file) << image << "\n";
  std::vector<CUmodule> modules;
  std::vector<CUlibrary> libraries;
  CUresult result = CUDA_SUCCESS;
  for (int i = 0; i < count && result == CUDA_SUCCESS; ++i) {
    CUmodule module = nullptr;
    CUlibrary library = nullptr;
    if (kind == "module") {
      result = load_data(&module, image.c_str());
    } else if (kind == "data-ex") {
      result = load_data_ex(&module, image.c_str(), 0, nullptr, nullptr);
    } else if (kind == "fatbin") {
      result = load_fatbin(&module, image.c_str());
    } else if (kind == "file") {
      result = load_module(&module, file.c_str());
    } else if (kind == "library") {
      result = load_library(&library, image.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0);
    } else if (kind == "library-file") {
      result = load_library_file(&library, file.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0);
    } else {
      std::fprintf(stderr, "client: unknown load kind %s\n", kind.c_str());
      return 2;
    }
    if (result != CUDA_SUCCESS) break;
    if (module != nullptr) modules.push_back(module);
    if (library != nullptr) libraries.push_back(library);
  }
  size_t free = 0;
  size_t total = 0;
  d.MemGetInfo(&free, &total);
  std::printf("loaded=%zu load_result=%d free=%zu\n", modules.size() + libraries.size(), result,
              free);
  WaitForEof();
  CUresult unloaded = CUDA_SUCCESS;
  for (CUmodule module : modules) {
    if (CUresult one = unload_module(module); one != CUDA_SUCCESS) unloaded = one;
  }
  for (CUlibrary library : libraries) {
    if (CUresult one = unload_library(library); one != CUDA_SUCCESS) unloaded = one;
  }
  d.MemGetInfo(&free, &total);
  std::printf("unload_result=%d free_after=%zu\n", unloaded, free);
  return 0;
}

// Stream-ordered pools as allocators use them; "ready" and wait for stdin EOF before freeing.
//   small N BYTES     N cuMemAllocAsync of BYTES from the default pool
//   cached BYTES ALLOC  the default pool keeps everything (threshold UINT64_MAX, as PyTorch sets):
//                     allocate BYTES, free, synchronise, then cuMemAlloc ALLOC, trim the pool to 0
//                     and cuMemAlloc ALLOC again
//   device1 BYTES     BYTES from a pool created on device 1 while device 0 is current
//   host BYTES        BYTES from a host pool
int Pools(const Driver& d, const std::string& name, uint64_t count, uint64_t bytes) {
  CUmemoryPool pool = nullptr;
  std::vector<CUdeviceptr> held;
  int refused = 0;
  CUresult result = CUDA_SUCCESS;
  if (name == "small") {
    for (uint64_t i = 0; i < count; ++i) {
      CUdeviceptr p = 0;
      CUresult one = d.MemAllocAsync(&p, bytes, nullptr);
      if (one == CUDA_SUCCESS) {
        held.push_back(p);
      } else {
        ++refused;
        result = one;
      }
    }
    std::printf("allocated=%zu refused=%d\n", held.size(), refused);
  } else if (name == "cached") {
    result = d.DeviceGetDefaultMemPool(&pool, 0);
    cuuint64_t keep_everything = UINT64_MAX;
    if (result == CUDA_SUCCESS) {
      result = d.MemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_everything);
    }
    CUdeviceptr p = 0;
    if (result == CUDA_SUCCESS) result = d.MemAllocAsync(&p, count, nullptr);
    if (result == CUDA_SUCCESS) result = d.MemFreeAsync(p, nullptr);
    if (result == CUDA_SUCCESS) result = d.StreamSynchronize(nullptr);
    CUdeviceptr plain = 0;
    CUresult cached = d.MemAlloc(&plain, bytes);
    if (cached == CUDA_SUCCESS) d.MemFree(plain);
    CUresult trim = d.MemPoolTrimTo(pool, 0);
    CUresult trimmed = d.MemAlloc(&plain, bytes);
    if (trimmed == CUDA_SUCCESS) held.push_back(plain);
    std::printf("while_cached=%d trim=%d after_trim=%d\n", cached, trim, trimmed);
  } else if (name == "device1" || name == "host") {
    CUmemPoolProps props{};
    props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.location.type = name == "host" ? CU_MEM_LOCATION_TYPE_HOST : CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = name == "host" ? 0 : 1;
    result = d.MemPoolCreate(&pool, &props);
    CUdeviceptr p = 0;
    if (result == CUDA_SUCCESS) result = d.MemAllocFromPoolAsync(&p, count, pool, nullptr);
    if (result == CUDA_SUCCESS) held.push_back(p);
  }
  std::printf("result=%d\n", result);
  Say("ready");
  WaitForEof();
  for (CUdeviceptr p : held) {
    if (name == "cached") {
      d.MemFree(p);
    } else {
      d.MemFreeAsync(p, nullptr);
    }
  }
  d.StreamSynchronize(nullptr);
  std::printf("freed=%zu\n", held.size());
  return 0;
}

int Family(const Driver& d, const std::string& name, uint64_t bytes) {
  CUresult result = CUDA_ERROR_INVALID_VALUE;
  std::function<CUresult()> release;
  if (name == "alloc") {
    CUdeviceptr p = 0;
    result = d.MemAlloc(&p, bytes);
    release = [&d, p] { return d.MemFree(p); };
  } else if (name == "pitch") {
    CUdeviceptr p = 0;
    size_t pitch = 0;
    result = d.MemAllocPitch(&p, &pitch, 1000, bytes / 1000, 4);
    release = [&d, p] { return d.MemFree(p); };
  } else if (name == "managed") {
    CUdeviceptr p = 0;
    result = d.MemAllocManaged(&p, bytes, CU_MEM_ATTACH_GLOBAL);
    release = [&d, p] { return d.MemFree(p); };
  } else if (name == "vmm") {
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    CUmemGenericAllocationHandle handle = 0;
    result = d.MemCreate(&handle, bytes, &prop, 0);
    release = [&d, handle] { return d.MemRelease(handle); };
  } else if (name == "async") {
    CUdeviceptr p = 0;
    result = d.MemAllocAsync(&p, bytes, nullptr);
    // The pool keeps freed memory until a synchronisation (release threshold 0).
    release = [&d, p] {
      CUresult freed = d.MemFreeAsync(p, nullptr);
      return freed == CUDA_SUCCESS ? d.StreamSynchronize(nullptr) : freed;
    };
  } else if (name == "pool") {
    CUmemPoolProps props{};
    props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = 0;
    CUmemoryPool pool = nullptr;
    result = d.MemPoolCreate(&pool, &props);
    CUdeviceptr p = 0;
    if (result == CUDA_SUCCESS) result = d.MemAllocFromPoolAsync(&p, bytes, pool, nullptr);
    release = [&d, p] {
      CUresult freed = d.MemFreeAsync(p, nullptr);
      return freed == CUDA_SUCCESS ? d.StreamSynchronize(nullptr) : freed;
    };
  } else if (name == "array") {
    CUDA_ARRAY_DESCRIPTOR desc{};
    desc.Width = 1024;
    desc.Height = bytes / 4096;
    desc.Format = CU_AD_FORMAT_FLOAT;
    desc.NumChannels = 1;
    CUarray array = nullptr;
    result = d.ArrayCreate(&array, &desc);
    release = [&d, array] { return d.ArrayDestroy(array); };
  } else if (name == "array3d") {
    CUDA_ARRAY3D_DESCRIPTOR desc{};
    desc.Width = 256;
    desc.Height = 256;
    desc.Depth = bytes / (256 * 256 * 4);
    desc.Format = CU_AD_FORMAT_UNSIGNED_INT8;
    desc.NumChannels = 4;
    CUarray array = nullptr;
    result = d.Array3DCreate(&array, &desc);
    release = [&d, array] { return d.ArrayDestroy(array); };
  } else if (name == "mipmapped") {
    CUDA_ARRAY3D_DESCRIPTOR desc{};
    desc.Width = 2048;
    desc.Height = bytes / (2048 * 4 * 2);
    desc.Format = CU_AD_FORMAT_FLOAT;
    desc.NumChannels = 1;
    CUmipmappedArray array = nullptr;
    result = d.MipmappedArrayCreate(&array, &desc, 4);
    release = [&d, array] { return d.MipmappedArrayDestroy(array); };
  } else if (name == "graph") {
    CUgraph graph = nullptr;
    result = d.GraphCreate(&graph, 0);
    CUDA_MEM_ALLOC_NODE_PARAMS params{};
    params.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    params.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    params.poolProps.location.id = 0;
    params.bytesize = bytes;
    CUgraphNode node = nullptr;
    if (result == CUDA_SUCCESS) result = d.GraphAddMemAllocNode(&node, graph, nullptr, 0, &params);
    release = [&d, graph] { return d.GraphDestroy(graph); };
  } else if (name == "graph-node" || name == "graph-node-v2") {
    // The same allocation node through the generic cuGraphAddNode (CUDA 12.2) or its _v2.
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
    auto add = reinterpret_cast<decltype(&cuGraphAddNode)>(dlsym(cuda, "cuGraphAddNode"));
    auto add_v2 = reinterpret_cast<decltype(&cuGraphAddNode_v2)>(dlsym(cuda, "cuGraphAddNode_v2"));
    CUgraph graph = nullptr;
    result = add == nullptr || add_v2 == nullptr ? CUDA_ERROR_NOT_FOUND : d.GraphCreate(&graph, 0);
    CUgraphNodeParams params{};
    params.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
    params.alloc.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    params.alloc.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    params.alloc.poolProps.location.id = 0;
    params.alloc.bytesize = bytes;
    CUgraphNode node = nullptr;
    if (result == CUDA_SUCCESS) {
      result = name == "graph-node" ? add(&node, graph, nullptr, 0, &params)
                                    : add_v2(&node, graph, nullptr, nullptr, 0, &params);
    }
    release = [&d, graph] { return d.GraphDestroy(graph); };
  } else if (name == "heap" || name == "printf") {
    // A context limit that takes device memory; back to its default at release.
    const CUlimit limit = name == "heap" ? CU_LIMIT_MALLOC_HEAP_SIZE : CU_LIMIT_PRINTF_FIFO_SIZE;
    const size_t default_bytes = name == "heap" ? 8u << 20 : 1u << 20;
    result = d.CtxSetLimit(limit, bytes);
    release = [&d, limit, default_bytes] { return d.CtxSetLimit(limit, default_bytes); };
  } else if (name == "context") {
    CUcontext context = nullptr;
    result = d.CtxCreate(&context, 0, 0);
    release = [&d, context] { return d.CtxDestroy(context); };
  } else {
    std::fprintf(stderr, "client: unknown family %s\n", name.c_str());
    return 2;
  }
  std::printf("family=%s result=%d\n", name.c_str(), result);
  WaitForEof();
  if (result == CUDA_SUCCESS) std::printf("release=%d\n", release());
  ReportInfo(d);
  return 0;
}

// N times: create BYTES of device memory, reserve an address range, map it and release the
// handle (as allocators do: the mapping keeps the memory). Then "ready"; at stdin EOF, unmap and
// free every range and try one more BYTES.
int VmmMapped(const Driver& d, int times, uint64_t bytes) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  std::vector<CUdeviceptr> ranges;
  int created = 0, refused = 0, other_errors = 0;
  for (int i = 0; i < times; ++i) {
    CUmemGenericAllocationHandle handle = 0;
    CUresult result = d.MemCreate(&handle, bytes, &prop, 0);
    if (result == CUDA_ERROR_OUT_OF_MEMORY) {
      ++refused;
      continue;
    }
    if (result != CUDA_SUCCESS) {
      ++other_errors;
      continue;
    }
    ++created;
    CUdeviceptr range = 0;
    if (d.MemAddressReserve(&range, bytes, 0, 0, 0) != CUDA_SUCCESS ||
        d.MemMap(range, bytes, 0, handle, 0) != CUDA_SUCCESS) {
      ++other_errors;
    } else {
      ranges.push_back(range);
    }
    if (d.MemRelease(handle) != CUDA_SUCCESS) ++other_errors;
  }
  std::printf("created=%d refused=%d\n", created, refused);
  WaitForEof();
  for (CUdeviceptr range : ranges) {
    if (d.MemUnmap(range, bytes) != CUDA_SUCCESS) ++other_errors;
    if (d.MemAddressFree(range, bytes) != CUDA_SUCCESS) ++other_errors;
  }
  CUmemGenericAllocationHandle handle = 0;
  CUresult again = d.MemCreate(&handle, bytes, &prop, 0);
  std::printf("after_unmap=%d\n", again);
  if (again == CUDA_SUCCESS && d.MemRelease(handle) != CUDA_SUCCESS) ++other_errors;
  std::printf("other_errors=%d\n", other_errors);
  return other_errors == 0 ? 0 : 1;
}

int Churn(const Driver& d, unsigned seed, int operations, uint64_t max_bytes, bool forever,
          bool start_together) {
  std::mt19937_64 random(seed);
  std::vector<CUdeviceptr> held;
  int refused = 0, other_errors = 0;
  // Processes that start together contend for the limit instead of taking turns: each holds its
  // stake before it says "ready", so all the stakes are held at once whatever the scheduling.
  CUdeviceptr stake = 0;
  if (start_together) {
    // The context is made (main), before "ready": no stake can crowd it out.
    Say("ready");
    ReadLine();
    CUresult result = d.MemAlloc(&stake, max_bytes);
    if (result == CUDA_ERROR_OUT_OF_MEMORY) {
      ++refused;
    } else if (result != CUDA_SUCCESS) {
      ++other_errors;
    }
    Say("staked");
    ReadToEof();
  }
  for (int i = 0; forever || i < operations; ++i) {
    bool allocate = held.empty() || (held.size() < 16 && random() % 2 == 0);
    if (allocate) {
      CUdeviceptr p = 0;
      CUresult result = d.MemAlloc(&p, 1 + random() % max_bytes);
      if (result == CUDA_SUCCESS) {
        held.push_back(p);
      } else if (result == CUDA_ERROR_OUT_OF_MEMORY) {
        ++refused;
      } else {
        ++other_errors;
      }
    } else {
      size_t index = random() % held.size();
      if (d.MemFree(held[index]) != CUDA_SUCCESS) ++other_errors;
      held[index] = held.back();
      held.pop_back();
    }
  }
  for (CUdeviceptr p : held) d.MemFree(p);
  if (stake != 0 && d.MemFree(stake) != CUDA_SUCCESS) ++other_errors;
  std::printf("refused=%d other_errors=%d\n", refused, other_errors);
  return other_errors == 0 ? 0 : 1;
}

}  // namespace

int NvmlOnly() {
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (nvml == nullptr) return 3;
  auto init = reinterpret_cast<decltype(&nvmlInit_v2)>(dlsym(nvml, "nvmlInit_v2"));
  auto count_of =
      reinterpret_cast<decltype(&nvmlDeviceGetCount_v2)>(dlsym(nvml, "nvmlDeviceGetCount_v2"));
  auto handle_of = reinterpret_cast<decltype(&nvmlDeviceGetHandleByIndex_v2)>(
      dlsym(nvml, "nvmlDeviceGetHandleByIndex_v2"));
  auto memory_of =
      reinterpret_cast<decltype(&nvmlDeviceGetMemoryInfo)>(dlsym(nvml, "nvmlDeviceGetMemoryInfo"));
  auto processes_of = reinterpret_cast<decltype(&nvmlDeviceGetComputeRunningProcesses_v3)>(
      dlsym(nvml, "nvmlDeviceGetComputeRunningProcesses_v3"));
  auto processes_v2 = reinterpret_cast<decltype(&nvmlDeviceGetComputeRunningProcesses_v2)>(
      dlsym(nvml, "nvmlDeviceGetComputeRunningProcesses_v2"));
  auto processes_v1 = reinterpret_cast<decltype(&nvmlDeviceGetComputeRunningProcesses)>(
      dlsym(nvml, "nvmlDeviceGetComputeRunningProcesses"));
  auto utilization_of = reinterpret_cast<decltype(&nvmlDeviceGetUtilizationRates)>(
      dlsym(nvml, "nvmlDeviceGetUtilizationRates"));
  auto samples_of = reinterpret_cast<decltype(&nvmlDeviceGetProcessUtilization)>(
      dlsym(nvml, "nvmlDeviceGetProcessUtilization"));
  unsigned count = 0;
  if (init() != NVML_SUCCESS || count_of(&count) != NVML_SUCCESS) return 4;
  std::printf("nvml_count=%u\n", count);
  for (unsigned i = 0; i < count; ++i) {
    nvmlDevice_t device = nullptr;
    nvmlMemory_t memory{};
    if (handle_of(i, &device) != NVML_SUCCESS || memory_of(device, &memory) != NVML_SUCCESS) {
      return 5;
    }
    nvmlProcessInfo_t processes[64];
    unsigned listed = 64;
    if (processes_of(device, &listed, processes) != NVML_SUCCESS) listed = 0;
    std::string pids;
    for (unsigned p = 0; p < listed && p < 64; ++p) {
      pids += (p == 0 ? "" : ",") + std::to_string(processes[p].pid);
    }
    nvmlProcessInfo_v2_t processes2[64];
    unsigned listed2 = 64;
    if (processes_v2 == nullptr || processes_v2(device, &listed2, processes2) != NVML_SUCCESS) {
      listed2 = 0;
    }
    nvmlProcessInfo_v1_t processes1[64];
    unsigned listed1 = 64;
    if (processes_v1 == nullptr || processes_v1(device, &listed1, processes1) != NVML_SUCCESS) {
      listed1 = 0;
    }
    nvmlUtilization_t utilization{};
    int gpu_util = -1;
    if (utilization_of != nullptr && utilization_of(device, &utilization) == NVML_SUCCESS) {
      gpu_util = static_cast<int>(utilization.gpu);
    }
    timeval now{};
    gettimeofday(&now, nullptr);
    unsigned long long second_ago = static_cast<unsigned long long>(now.tv_sec - 1) * 1'000'000 +
                                    static_cast<unsigned long long>(now.tv_usec);
    nvmlProcessUtilizationSample_t samples[64];
    unsigned sampled = 64;
    if (samples_of == nullptr ||
        samples_of(device, samples, &sampled, second_ago) != NVML_SUCCESS) {
      sampled = 0;
    }
    std::printf(
        "nvml%u_total=%llu nvml%u_used=%llu nvml%u_free=%llu nvml%u_processes=%u "
        "nvml%u_pids=%s nvml%u_processes_v2=%u nvml%u_processes_v1=%u nvml%u_util=%d "
        "nvml%u_samples=%u\n",
        i, memory.total, i, memory.used, i, memory.free, i, listed, i,
        pids.empty() ? "none" : pids.c_str(), i, listed2, i, listed1, i, gpu_util, i, sampled);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "nvml") return NvmlOnly();
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s linked|dlopen|procaddress|global COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  std::string via = argv[1];
  Driver d{};
#ifdef TESSERA_CLIENT_LINKED
  if (via == "linked") d = LinkedDriver();
#endif
  if (via == "global") {
    auto first = reinterpret_cast<decltype(&cuInit)>(dlsym(RTLD_DEFAULT, "cuInit"));
    if (first == nullptr) {
      std::fprintf(stderr, "client: no cuInit in the global scope\n");
      return 3;
    }
    std::printf("first_init=%d\n", first(0));
    std::fflush(stdout);
  }
  if (via == "dlopen" || via == "procaddress" || via == "global") {
    d = DynamicDriver(via == "procaddress");
  }
  if (d.Init == nullptr) {
    std::fprintf(stderr, "client: cannot reach the driver \"%s\" from this build\n", via.c_str());
    return 2;
  }
  CUresult init = d.Init(0);
  std::printf("init=%d\n", init);
  if (init != CUDA_SUCCESS) return 4;
  CUdevice device = 0;
  CUcontext context = nullptr;
  CUresult retain = d.DeviceGet(&device, 0);
  if (retain == CUDA_SUCCESS) retain = d.PrimaryCtxRetain(&context, device);
  if (retain == CUDA_SUCCESS) retain = d.CtxSetCurrent(context);
  std::printf("context=%d\n", retain);
  std::fflush(stdout);
  if (retain != CUDA_SUCCESS) return 5;

  std::string command = argv[2];
  auto arg = [&](int i, const char* fallback) { return argc > i ? argv[i] : fallback; };
  int status = 2;
  if (command == "fill") {
    status = Fill(d, ParseSize(arg(3, "64M")));
  } else if (command == "hold") {
    status = Hold(d, ParseSize(arg(3, "1G")), ParseSize(arg(4, "256M")));
  } else if (command == "loads") {
    status = Loads(d, arg(3, "module"), std::atoi(arg(4, "1")), arg(5, "2M"), arg(6, ""));
  } else if (command == "family") {
    status = Family(d, arg(3, "alloc"), ParseSize(arg(4, "64M")));
  } else if (command == "pools") {
    status = Pools(d, arg(3, "small"), ParseSize(arg(4, "1")), ParseSize(arg(5, "4K")));
  } else if (command == "vmm-mapped") {
    status = VmmMapped(d, std::atoi(arg(3, "8")), ParseSize(arg(4, "512M")));
  } else if (command == "churn") {
    status = Churn(d, static_cast<unsigned>(std::atoi(arg(3, "1"))), std::atoi(arg(4, "1000")),
                   ParseSize(arg(5, "16M")), false, std::string(arg(6, "")) == "together");
  } else if (command == "loop") {
    status = Churn(d, static_cast<unsigned>(getpid()), 0, ParseSize(arg(3, "16M")), true, false);
  } else if (command == "free-unknown") {
    std::printf("free_result=%d\n", d.MemFree(0xdead0000ull));
    status = 0;
  } else if (command == "info") {
    ReportInfo(d);
    status = 0;
  } else if (command == "info-device") {
    size_t total = 0;
    CUresult result = d.DeviceTotalMem(&total, std::atoi(arg(3, "0")));
    std::printf("device_result=%d device_total=%zu\n", result, total);
    status = result == CUDA_SUCCESS ? 0 : 1;
  } else {
    std::fprintf(stderr, "client: unknown command %s\n", command.c_str());
  }
  std::fflush(stdout);
  return status;
}
