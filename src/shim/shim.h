// The shim's one owner of global state: the real driver and NVML tables, the configuration, the
// region, and this process's record of what it has charged. Created once, on the first call of a
// hook (never from a constructor of the library), fork-aware. The exported hooks in *_hooks.cc
// are thin functions that forward to it.
//
// Memory accounting: a hook computes the bytes the driver will take, Reserve()s them in the
// region (atomic across the container's processes), calls the driver, and on failure Release()s
// them; on success it Track()s the handle so that the matching free releases exactly that charge.
#ifndef TESSERA_SHIM_SHIM_H_
#define TESSERA_SHIM_SHIM_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/driver_api.h"
#include "cuda/nvml_api.h"
#include "region/region.h"
#include "shim/config.h"
#include "shim/device_map.h"
#include "shim/nvml_devices.h"

#define TESSERA_EXPORT extern "C" __attribute__((visibility("default")))

namespace tessera::shim {

// Real driver functions, typed from the driver's declarations. Never null: a function the driver
// lacks is replaced by one that returns CUDA_ERROR_NOT_FOUND (NVML_ERROR_FUNCTION_NOT_FOUND).
struct CudaTable {
#define TESSERA_CUDA_HOOK(name) decltype(&::name) name;
#define TESSERA_CUDA_CALL(name) decltype(&::name) name;
#include "shim/hooks.def"
};

class Limiter;

struct NvmlTable {
#define TESSERA_NVML_HOOK(name) decltype(&::name) name;
#define TESSERA_NVML_CALL(name) decltype(&::name) name;
#include "shim/hooks.def"
};

// How many functions the shim intercepts: one per TESSERA_*_HOOK line of hooks.def.
inline constexpr int kHookCount = 0
#define TESSERA_CUDA_HOOK(name) +1
#define TESSERA_NVML_HOOK(name) +1
#include "shim/hooks.def"
    ;

// What a tracked charge belongs to. Keys of different kinds never collide.
enum class ChargeKind : uint8_t {
  kPointer,         // cuMemAlloc*, pitch, managed, async and pool allocations
  kVmmHandle,       // cuMemCreate
  kArray,           // cuArrayCreate, cuArray3DCreate
  kMipmappedArray,  // cuMipmappedArrayCreate
  kGraphMemory,     // cuGraphAddMemAllocNode, keyed by node, owned by the graph
  kContext,         // a created context's own memory, keyed by context
  kPrimaryContext,  // a primary context's own memory, keyed by device
  kContextLimit,    // cuCtxSetLimit's malloc heap or printf FIFO, keyed by context + limit
  kModule,          // a loaded module's code and data, keyed by module, owned by its context
  kLibrary,         // a library loaded into the current context, keyed by library, owned by it
};

class Shim {
 public:
  // Every hook's first step, so it is one load and a branch; the construction stays out of line
  // (an inlined function-local static made each hook save every register and spill its arguments
  // around the guard: 40 instructions added per cuLaunchKernel instead of 10).
  static Shim& Get() {
    Shim* shim = instance_.load(std::memory_order_acquire);
    return __builtin_expect(shim != nullptr, 1) ? *shim : CreateForHook();
  }
  // The Shim, created if need be; nullptr when the calling thread is creating it right now: the
  // shim's own start-up (dlopen of the driver, whose loading may call dlsym) re-entered it. Such
  // a call must pass through to the real symbol.
  static Shim* GetUnlessStarting() {
    Shim* shim = instance_.load(std::memory_order_acquire);
    return __builtin_expect(shim != nullptr, 1) ? shim : Create();
  }
  // The Shim when a hook has created it already, else nullptr. For hooks that must not even
  // prepare for the call to Create() (launch_hooks.cc): they test this and tail-call onward.
  static Shim* Existing() { return instance_.load(std::memory_order_acquire); }

  const CudaTable& cuda() const { return cuda_; }
  const NvmlTable& nvml() const { return nvml_; }
  // Hooks forward untouched: CUDA_DISABLE_CONTROL=true, or no region (then cuInit refuses).
  bool passthrough() const { return region_ == nullptr; }
  // The configuration could not be used; cuInit refuses with CUDA_ERROR_NOT_PERMITTED (and, with
  // a limits file, every charge is refused too).
  bool refusing() const { return refusing_; }
  // The limits come from a limits file (config.h), not from the region or the environment.
  bool authoritative() const { return authoritative_; }

  // Launches go through the Limiter: an sm limit or a task priority is set. Fixed at creation.
  bool governs_launches() const { return governs_launches_; }
  Limiter& limiter() { return *limiter_; }

  // Devices: everything the Shim charges, limits and reports is per container device (the
  // region's index, device_map.h), never per CUDA ordinal. Hooks translate the ordinals the
  // driver API hands them with DeviceOf().
  //
  // The container device of the calling thread's current context, or -1 when there is none or
  // it is not accounted (then the driver decides).
  int CurrentDevice();
  // The current context's CUDA ordinal, or -1.
  int CurrentOrdinal() const;
  // The container device that CUDA ordinal `ordinal` is in this process, or -1.
  int DeviceOf(int ordinal) { return devices_.Of(ordinal); }
  // This process's CUDA ordinal of container device `device`, or -1 if it does not see it.
  int OrdinalOf(int device) { return devices_.OrdinalOf(device); }

  // Charges `bytes` on `device` to this process; false when that would pass the limit.
  bool Reserve(int device, uint64_t bytes);
  void Release(int device, uint64_t bytes);
  // Records a successful allocation's charge under (kind, key); `owner` is the context or graph
  // whose destruction also frees it (0 for none).
  void Track(ChargeKind kind, uint64_t key, int device, uint64_t bytes, uintptr_t owner);
  // Releases and forgets the charge under (kind, key). False if there is none.
  bool Untrack(ChargeKind kind, uint64_t key);
  // Releases and forgets every charge owned by `owner`.
  void UntrackOwner(uintptr_t owner);
  // Whether anything is tracked under (kind, key).
  bool IsTracked(ChargeKind kind, uint64_t key);
  // The bytes tracked under (kind, key), 0 if none.
  uint64_t TrackedBytes(ChargeKind kind, uint64_t key);
  // Records that the region holds `bytes` for (kind, key) now (0: forgets it), its previous
  // charge having been grown with Reserve() or shrunk with Release() by the caller.
  void SetTracked(ChargeKind kind, uint64_t key, int device, uint64_t bytes, uintptr_t owner);
  // VMM: physical memory lives until its handle is released and its last mapping is gone, so a
  // kVmmHandle charge is dropped only then. After a successful cuMemMap of `handle` at `pointer`:
  void OnVmmMapped(CUdeviceptr pointer, CUmemGenericAllocationHandle handle);
  // After a successful cuMemRelease: drops the charge now, or at its last unmap.
  void OnVmmReleased(CUmemGenericAllocationHandle handle);
  // After a successful cuMemUnmap of [pointer, pointer + size): the mappings in it are gone.
  void OnVmmUnmapped(CUdeviceptr pointer, size_t size);
  // Primary contexts: counts this process's retains of `device`'s primary context and remembers
  // its handle. Returns the count after adding `delta`.
  int CountPrimaryRetains(int device, int delta, CUcontext context);
  CUcontext PrimaryContext(int device);

  // Limit (0: none) and container-wide use of a device. With a limits file the limit is the
  // file's; without one, the region's.
  uint64_t Limit(int device) const;
  uint64_t Used(int device);

  // After a successful cuInit: binds this process's devices to the container's (by UUID).
  void OnDriverInitialized();
  // The container device an NVML handle refers to, or -1.
  int DeviceOfNvmlHandle(nvmlDevice_t handle);
  // How much of `device`'s memory the driver says this process holds (NVML), if it can tell.
  bool ProcessMemoryFromNvml(int device, uint64_t* bytes);
  // The pid the driver knows this process by, 0 while unknown: getpid() in the node's pid
  // namespace; in a container's, learnt at the first context (LearnDriverPid).
  uint32_t DriverPid() const { return driver_pid_.load(std::memory_order_acquire); }
  // What NVML lists as running on `device` (by the node's pids; at most 64); false when NVML
  // cannot say.
  bool NvmlProcesses(int device, std::vector<nvmlProcessInfo_t>* processes);
  // Their pids.
  bool NvmlPids(int device, std::vector<unsigned>* pids);
  // After this process made its first context (on `device`): the one pid NVML lists now that it
  // did not before (`before`) and no other process of the container has is this process's. When
  // that is not exactly one pid (another process on the GPU started at the same moment), it
  // stays unknown: a later context would have this process's own pid in `before`, and the one
  // new pid could be a neighbour's, so it is tried once (ShouldLearnDriverPid).
  void LearnDriverPid(int device, const std::vector<unsigned>& before);
  bool ShouldLearnDriverPid() const {
    return DriverPid() == 0 && !driver_pid_tried_.load(std::memory_order_acquire);
  }
  // The container's live processes as NVML lists them: each one's driver pid (the node's) to its
  // pid in the container. Only processes that have told the region their driver pid are known.
  std::unordered_map<unsigned, unsigned> ContainerProcesses();
  region::Region& region() { return *region_; }
  // Bytes this process has charged on `device`.
  uint64_t ProcessCharged(int device);

  // dlsym: the hook to return for `name`, given what the real dlsym found for the caller's
  // handle; `found` itself when the shim does not intercept it.
  void* HookForDlsym(const char* name, void* found);
  // cuGetProcAddress: the hook for what the driver returned for (symbol, version, flags).
  void* HookForProcAddress(const char* symbol, void* found, int cuda_version, cuuint64_t flags);

 private:
  // Creates the one Shim, exactly once even when threads race to it, and publishes it to Get().
  // Returns nullptr, at once, to a call from the thread that is creating it (see
  // GetUnlessStarting); other threads wait for the creation to end.
  [[gnu::cold, gnu::noinline]] static Shim* Create();
  // Create() for a hook, which has no symbol to pass through to while the shim starts.
  [[gnu::cold, gnu::noinline]] static Shim& CreateForHook();
  static inline std::atomic<Shim*> instance_{nullptr};
  static inline std::mutex create_mutex_;  // constant-initialised: usable before constructors

  Shim();
  void LoadDriver();
  void LoadNvml();
  bool MapDevices(DeviceMap& map);  // DeviceMap's build
  bool EnsureSlot();                // REQUIRES: mutex_ held
  void FailClosed();                // REQUIRES: refusing_
  void OnForkPrepare();
  void OnForkParent();
  void OnForkChild();

  struct Key {
    ChargeKind kind;
    uint64_t value;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const {
      return std::hash<uint64_t>()(key.value) ^ (static_cast<size_t>(key.kind) << 56);
    }
  };
  struct Charge {
    int device;
    uint64_t bytes;
    uintptr_t owner;
  };

  Config config_;
  bool authoritative_ = false;  // config_.limits_file is set
  bool refusing_ = false;
  CudaTable cuda_{};
  NvmlTable nvml_{};
  NvmlDevices nvml_devices_{nvml_};
  DeviceMap devices_{[this](DeviceMap& map) { return MapDevices(map); }};
  void* real_hooks_[kHookCount] = {};  // the driver's own address of each hook, in hooks.def order
  std::unique_ptr<region::Region> region_;
  bool governs_launches_ = false;
  std::unique_ptr<Limiter> limiter_;

  std::mutex mutex_;  // guards everything below
  int slot_ = -1;
  // The pid the driver and NVML know this process by; 0 until known (LearnDriverPid).
  // Sets driver_pid_ and the slot's driver pid (once the slot is claimed).
  void RecordDriverPid(uint32_t pid);
  std::atomic<uint32_t> driver_pid_{0};
  std::atomic<bool> driver_pid_tried_{false};
  std::unordered_map<Key, Charge, KeyHash> charges_;
  uint64_t process_charged_[region::kMaxDevices] = {};
  struct VmmHandle {
    int mappings = 0;
    bool released = false;
  };
  std::map<CUdeviceptr, CUmemGenericAllocationHandle> vmm_mappings_;         // by mapped address
  std::unordered_map<CUmemGenericAllocationHandle, VmmHandle> vmm_handles_;  // mapped ones
  int primary_retains_[region::kMaxDevices] = {};
  CUcontext primary_context_[region::kMaxDevices] = {};
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_SHIM_H_
