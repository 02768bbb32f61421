// The fake CUDA driver of one process: devices, contexts, the memory this process holds and the
// handles it has made. The exported cu* functions (cuda_exports.cc) are thin: they check faults
// and forward here.
//
// Devices are what CUDA enumerates in this process (fakegpu/visible_devices.h): whole GPUs and MIG
// instances of the node, after NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES. A CUdevice is an
// index among them; the state file is always charged for the node's device behind it.
//
// Device memory is bookkeeping only: an allocation gets a unique device address (never reused
// within the process) and is charged, rounded up to 2 MiB pages (cuda/footprint.h), against the
// node-wide SharedState, so it runs out for real across processes; a pool's blocks are not
// charged, the pool's chunks are (fakegpu/memory_pool.h). No storage backs it: copies and
// memsets validate the range, and a device-to-host copy yields zeros.
//
// Time: a function named `busy_us_<N>` occupies its device for N µs of real time per launch.
// Launches are asynchronous: QueueBusyKernels() books the kernel on the node-wide device timeline
// (SharedState::QueueKernels) and records when it ends in the stream and the context; the
// synchronise calls sleep until then. Other kernels take no device time.
//
// The state file's lock can be lost for good (a process died holding it and what it left could not
// be repaired). Then every call that needs the state returns CUDA_ERROR_UNKNOWN, after saying why
// on stderr, and changes nothing in it (cuInit fails as for any state file it cannot use); a call
// that gives memory back still destroys its handles (the process can make no use of them), while
// the state file goes on counting the memory.
//
// Thread safety: one mutex guards all bookkeeping; the launch path takes none (it validates
// handles with LooksLive()), and only busy_us_ launches touch the state file's mutex. Lock order:
// Driver::mutex_, then the state file's mutex. No lock is held while sleeping.
#ifndef TESSERA_FAKEGPU_DRIVER_H_
#define TESSERA_FAKEGPU_DRIVER_H_

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cuda/driver_api.h"
#include "fakegpu/config.h"
#include "fakegpu/memory_pool.h"
#include "fakegpu/objects.h"
#include "fakegpu/shared_state.h"

namespace tessera::fakegpu {

enum class InitState : int { kUninitialized, kReady, kFailed, kTornDown };

// Read by the launch path without a lock. Hidden: the launch path reads it directly, not through
// the GOT.
extern std::atomic<InitState> g_init_state __attribute__((visibility("hidden")));

// The calling thread's current context (top of its context stack), or null. A plain TLS pointer
// (initial-exec, no wrapper function) because every launch reads it.
extern __thread CUctx_st* g_current_context
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

// A device as CUDA in this process enumerates it: a whole GPU, or a MIG instance (its own name,
// memory, SMs and MIG UUID).
struct CudaDevice {
  std::string name;
  uint64_t memory_bytes = 0;
  unsigned multiprocessors = 0;
  std::array<unsigned char, 16> uuid{};
  uint64_t context_memory_bytes = 0;
  DeviceRef ref;  // what it is on the node
};

class Driver {
 public:
  // The process's driver, created on first use and never destroyed (it outlives static
  // destructors so that teardown at exit can still release memory).
  static Driver& Get();

  // SUCCESS once cuInit succeeded; NOT_INITIALIZED before, DEINITIALIZED after teardown.
  static CUresult Ready();

  // cuInit: loads the configuration and maps the state file on the first call.
  CUresult Init();
  // Driver teardown (process exit): gives back all memory this process holds.
  void TearDown();
  // tesseraFakeShutdown: teardown, then forget everything so that cuInit starts afresh. 0, or -1
  // after saying why the memory could not be given back (everything is forgotten all the same).
  // REQUIRES: no other thread is inside the driver or uses its handles afterwards.
  int Shutdown();
  int ResetPeaks();

  // Devices. REQUIRES: Init() succeeded (devices do not change while ready).
  int DeviceCount() const { return static_cast<int>(devices_.size()); }
  // The configured driver version (config.h, `driver version=`).
  int DriverVersion() const { return driver_version_; }
  const CudaDevice* Device(CUdevice device) const;
  // CUDA_ERROR_INVALID_DEVICE when the device's GPU has fallen off the bus (an Xid 79 not yet
  // cleared); CUDA_SUCCESS when it is reachable. REQUIRES: Device(device) != nullptr.
  CUresult CheckNotLost(CUdevice device);

  // Contexts.
  CUresult PrimaryRetain(CUcontext* context, CUdevice device);
  CUresult PrimaryRelease(CUdevice device);
  CUresult PrimaryReset(CUdevice device);
  CUresult CreateContext(CUcontext* context, CUdevice device);
  CUresult DestroyContext(CUcontext context);
  CUresult SetCurrent(CUcontext context);
  CUresult PushCurrent(CUcontext context);
  CUresult PopCurrent(CUcontext* context);
  CUresult GetCurrent(CUcontext* context);
  // The current context if it is live; NOT_INITIALIZED or INVALID_CONTEXT otherwise.
  static CUresult RequireContext(CUctx_st** context);

  // Memory.
  CUresult MemGetInfo(size_t* free, size_t* total);
  enum class AllocationKind { kLinear, kManaged, kStreamOrdered, kGraph };
  CUresult Allocate(CUdeviceptr* pointer, uint64_t size, AllocationKind kind, int device);
  CUresult Free(CUdeviceptr pointer);
  CUresult AddressRange(CUdeviceptr* base, size_t* size, CUdeviceptr pointer);
  CUresult AllocateHost(void** pointer, size_t size);
  CUresult FreeHost(void* pointer);
  CUresult CheckDeviceRange(CUdeviceptr pointer, size_t size);

  // Virtual memory management.
  CUresult MemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                     const CUmemAllocationProp* prop);
  CUresult MemRelease(CUmemGenericAllocationHandle handle);
  CUresult AddressReserve(CUdeviceptr* pointer, size_t size, size_t alignment);
  CUresult AddressFree(CUdeviceptr pointer, size_t size);
  CUresult MemMap(CUdeviceptr pointer, size_t size, size_t offset,
                  CUmemGenericAllocationHandle handle);
  CUresult MemUnmap(CUdeviceptr pointer, size_t size);
  CUresult MemSetAccess(CUdeviceptr pointer, size_t size, const CUmemAccessDesc* desc,
                        size_t count);

  // Stream-ordered allocation (fakegpu/memory_pool.h): a pool reserves chunks of its device's
  // memory and sub-allocates them; a freed block goes back to its pool, which gives empty chunks
  // back beyond its release threshold at the next synchronisation (stream, event or context), or
  // on a trim. `pool` null: the current pool of the context's device.
  CUresult AllocateAsync(CUdeviceptr* pointer, size_t size, CUmemoryPool pool, CUstream stream);
  CUresult FreeAsync(CUdeviceptr pointer, CUstream stream);
  CUresult PoolCreate(CUmemoryPool* pool, const CUmemPoolProps* props);
  CUresult PoolDestroy(CUmemoryPool pool);
  CUresult DefaultPool(CUmemoryPool* pool, CUdevice device);
  CUresult SetCurrentPool(CUdevice device, CUmemoryPool pool);
  CUresult CurrentPool(CUmemoryPool* pool, CUdevice device);
  CUresult PoolTrimTo(CUmemoryPool pool, size_t keep);
  CUresult PoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attribute, void* value);
  CUresult PoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attribute, void* value);

  // Arrays.
  CUresult ArrayCreate(CUarray* array, uint64_t bytes);
  CUresult ArrayDestroy(CUarray array);
  CUresult MipmappedArrayCreate(CUmipmappedArray* array, uint64_t bytes);
  CUresult MipmappedArrayDestroy(CUmipmappedArray array);

  // Launches of busy_us_ functions and of graphs with such kernel nodes: queues kernels of these
  // durations on the current context's device, behind everything queued there before, and
  // returns at once. REQUIRES: the launch was validated (current context and stream live).
  CUresult QueueBusyKernels(CUstream stream, const uint64_t* durations_ns, size_t count);
  CUresult ContextSynchronize();

  // Modules, streams, events.
  // Loads a module into the current context; it takes `footprint` bytes of its device.
  CUresult ModuleLoad(CUmodule* module, uint64_t footprint);
  CUresult ModuleUnload(CUmodule module);
  // A library, loaded into the current context if there is one (see CUlib_st).
  CUresult LibraryLoad(CUlibrary* library, uint64_t footprint);
  CUresult LibraryUnload(CUlibrary library);
  CUresult ModuleGetFunction(CUfunction* function, CUmodule module, const char* name);
  CUresult StreamCreate(CUstream* stream, unsigned flags);
  CUresult StreamDestroy(CUstream stream);
  CUresult StreamSynchronize(CUstream stream);
  CUresult StreamQuery(CUstream stream);
  CUresult EventCreate(CUevent* event, unsigned flags);
  CUresult EventDestroy(CUevent event);
  CUresult EventRecord(CUevent event, CUstream stream);
  CUresult EventSynchronize(CUevent event);
  CUresult EventQuery(CUevent event);
  CUresult EventElapsedTime(float* milliseconds, CUevent start, CUevent end);

  // Graphs.
  CUresult GraphCreate(CUgraph* graph);
  CUresult GraphDestroy(CUgraph graph);
  CUresult GraphAddKernelNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                              size_t count, const CUDA_KERNEL_NODE_PARAMS* params);
  CUresult GraphAddMemAllocNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                size_t count, CUDA_MEM_ALLOC_NODE_PARAMS* params);
  CUresult GraphAddMemFreeNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                               size_t count, CUdeviceptr pointer);
  CUresult GraphInstantiate(CUgraphExec* exec, CUgraph graph);
  CUresult GraphExecDestroy(CUgraphExec exec);

  // Context limits: stack (per thread, for every thread the device can hold), printf FIFO and
  // malloc heap take device memory beyond their defaults, charged to the context.
  CUresult SetLimit(CUlimit limit, size_t value);
  CUresult GetLimit(size_t* value, CUlimit limit);

  // Stream capture (driver_capture.cc): work launched on a capturing stream becomes nodes of its
  // graph instead of running. While a capture forbids them, potentially unsafe calls (event and
  // stream queries and synchronisation) fail and invalidate it, as a real driver's do.
  CUresult BeginCapture(CUstream stream, CUstreamCaptureMode mode);
  CUresult EndCapture(CUstream stream, CUgraph* graph);
  CUresult CaptureInfo(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id);
  static CUresult ExchangeCaptureMode(CUstreamCaptureMode* mode);
  // Before a potentially unsafe call: CUDA_SUCCESS, or CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
  // when a capture forbids it (the calling thread's own non-relaxed capture, or another thread's
  // global one while this thread's mode is global), which are then invalidated.
  CUresult CheckUnsafeCall();
  // Whether `stream` is capturing: its kernels then go into the capture. Lock-free while no
  // capture exists.
  bool CaptureKernels(CUstream stream, const uint64_t* durations_ns, size_t count);

 private:
  // REQUIRES: mutex_ held.
  template <typename Object>
  CUresult CreateFootprintLocked(ObjectPool<Object>& pool, CUctx_st* context, uint64_t bytes,
                                 Object** created);
  template <typename Object>
  CUresult DestroyFootprint(ObjectPool<Object>& pool, Object* handle);
  struct DeviceAllocation {
    uint64_t size = 0;
    AllocationKind kind = AllocationKind::kLinear;
    CUctx_st* context = nullptr;  // null for graph allocations (owned by their graph)
    Charge charge;                // empty for a pool's blocks: the pool's chunks are charged
    uint64_t pool = 0;            // the MemoryPool of a stream-ordered block
  };
  struct PhysicalAllocation {
    uint64_t size = 0;
    Charge charge;  // empty for host-located allocations
    int mappings = 0;
    bool released = false;
  };
  struct Mapping {
    uint64_t size = 0;
    CUmemGenericAllocationHandle handle = 0;
  };

  Driver();
  static void PrepareFork();
  static void AfterForkInParent();
  static void AfterForkInChild();

  // What a call returns when the state file's lock cannot be had: says why, CUDA_ERROR_UNKNOWN.
  static CUresult StateError(const Status& status);
  CUresult ChargeLocked(int device, uint64_t bytes, Charge* charge);
  // Gives the charge back and empties it; on an error the charge is kept, as the state keeps it.
  CUresult UnchargeLocked(Charge* charge);
  // Destroys the module and its functions and gives back its memory.
  CUresult UnloadModuleLocked(CUmod_st* module);
  CUdeviceptr ReserveAddressLocked(uint64_t size, uint64_t alignment);
  CUresult AllocateLocked(CUdeviceptr* pointer, uint64_t size, AllocationKind kind, int device,
                          CUctx_st* context);
  CUresult FreeLocked(std::map<CUdeviceptr, DeviceAllocation>::iterator allocation);
  CUresult FreeAllocationLocked(CUdeviceptr pointer, bool stream_ordered);
  // Releases everything, even when the state cannot be told; returns the first error.
  CUresult ReleaseContextLocked(CUctx_st* context);
  bool StreamUsableLocked(CUstream stream) const;
  // When the stream's last kernel ends. REQUIRES: StreamUsableLocked(stream).
  uint64_t StreamWorkEndLocked(CUstream stream) const;
  CUresult CheckDependenciesLocked(CUgraph_st* graph, const CUgraphNode* dependencies,
                                   size_t count) const;
  CUgraphNode_st* AddNodeLocked(CUgraph_st* graph);
  CUresult ReleasePhysicalIfUnusedLocked(
      std::unordered_map<CUmemGenericAllocationHandle, PhysicalAllocation>::iterator physical);
  void ReleaseEverythingLocked();
  CUresult AllocateFromPoolLocked(CUdeviceptr* pointer, uint64_t size, uint64_t pool_id,
                                  CUctx_st* context);
  // Gives a block back to its pool; a destroyed pool gives back its chunks as they empty.
  CUresult ReturnToPoolLocked(uint64_t pool_id, CUdeviceptr pointer);
  // Gives back the pool's empty chunks while it reserves more than `keep`.
  CUresult ShrinkPoolLocked(MemoryPool& pool, uint64_t keep);
  // At a synchronisation: every pool gives back what it holds beyond its release threshold.
  CUresult ReleasePoolsToThresholds();
  uint64_t CreatePoolLocked(CUmemPoolHandle_st* handle, int device);

  mutable std::mutex mutex_;
  std::vector<CudaDevice> devices_;
  int driver_version_ = kNewestDriverVersion;
  struct Capture {
    CUgraph_st* graph = nullptr;
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
    std::thread::id thread;
    uint64_t id = 0;
    bool invalidated = false;
  };
  std::unordered_map<CUstream_st*, Capture> captures_;  // guarded by mutex_
  std::atomic<int> capture_count_{0};                   // captures_.size()
  uint64_t next_capture_id_ = 1;
  std::unique_ptr<SharedState> state_;
  int pid_ = 0;    // this process (updated in a fork child)
  int slot_ = -1;  // this process's slot in state_, claimed on first charge

  std::vector<CUctx_st*> primary_contexts_;
  std::vector<CUmemPoolHandle_st*> default_pools_;
  std::vector<CUmemPoolHandle_st*> current_pools_;  // cuDeviceSetMemPool's, by device
  std::map<uint64_t, MemoryPool> memory_pools_;     // by CUmemPoolHandle_st::id
  uint64_t next_pool_id_ = 1;
  ObjectPool<CUctx_st> contexts_;
  ObjectPool<CUmod_st> modules_;
  ObjectPool<CUlib_st> libraries_;
  ObjectPool<CUfunc_st> functions_;
  ObjectPool<CUstream_st> streams_;
  ObjectPool<CUevent_st> events_;
  ObjectPool<CUarray_st> arrays_;
  ObjectPool<CUmipmappedArray_st> mipmapped_arrays_;
  ObjectPool<CUmemPoolHandle_st> pools_;
  ObjectPool<CUgraph_st> graphs_;
  ObjectPool<CUgraphNode_st> graph_nodes_;
  ObjectPool<CUgraphExec_st> graph_execs_;

  CUdeviceptr next_address_;
  std::map<CUdeviceptr, DeviceAllocation> allocations_;
  std::map<void*, size_t> host_allocations_;
  CUmemGenericAllocationHandle next_physical_handle_ = 1;
  std::unordered_map<CUmemGenericAllocationHandle, PhysicalAllocation> physical_;
  std::map<CUdeviceptr, uint64_t> reservations_;
  std::map<CUdeviceptr, Mapping> mappings_;
};

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_DRIVER_H_
