// The objects behind the driver's opaque handles (CUcontext is a CUctx_st*, and so on), and the
// pool that owns them.
//
// Handles stay readable for the life of the process: a destroyed object is marked dead and kept for
// reuse, never freed. That lets the launch path validate a handle without a lock (magic number +
// `live` flag), and lets every other path validate it under the driver's lock against the set of
// objects the pool ever made, so a stale or foreign pointer is an error instead of a crash.
#ifndef TESSERA_FAKEGPU_OBJECTS_H_
#define TESSERA_FAKEGPU_OBJECTS_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cuda/driver_api.h"

namespace tessera::fakegpu {

// Device memory one object holds on behalf of this process. `pid` is the process that charged it:
// after fork the child inherits the object but not the charge, so only the charger gives it back.
struct Charge {
  int device = -1;
  uint64_t bytes = 0;
  int pid = 0;
};

enum class Magic : uint32_t {
  kContext = 0x43545831,
  kModule = 0x4d4f4431,
  kFunction = 0x46554e31,
  kStream = 0x53545231,
  kEvent = 0x45564e31,
  kArray = 0x41525231,
  kMipmappedArray = 0x4d495031,
  kMemoryPool = 0x504f4f31,
  kGraph = 0x47525031,
  kGraphNode = 0x4e4f4431,
  kGraphExec = 0x45584531,
  kLibrary = 0x4c494231,
};

}  // namespace tessera::fakegpu

// The handle types are declared by the driver API in the global namespace.
struct CUctx_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kContext;
  tessera::fakegpu::Magic magic = kMagic;
  // A primary context is live while retained; a created one until destroyed.
  std::atomic<bool> live{false};
  CUdevice device = 0;
  bool primary = false;
  int retain_count = 0;  // primary contexts only
  tessera::fakegpu::Charge charge;
  // cuCtxSetLimit's values, by CUlimit (0: the default), and the memory the first three take
  // beyond their defaults (which context_memory includes).
  size_t limits[10] = {};
  tessera::fakegpu::Charge limit_charge;
  // When the last kernel launched in the context ends (CLOCK_MONOTONIC ns); its default streams
  // and cuCtxSynchronize wait for it.
  std::atomic<uint64_t> work_end_ns{0};
};

struct CUmod_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kModule;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUctx_st* context = nullptr;
  // Its code, constant banks and globals, on the context's device.
  tessera::fakegpu::Charge charge;
  std::unordered_map<std::string, CUfunc_st*> functions;
};

// A library (cuLibraryLoad*) is loaded into the context current at its load, as with
// CUDA_MODULE_LOADING=EAGER; without a current context it takes no memory (a driver loads it
// into each context on first use, which the fake does not model).
struct CUlib_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kLibrary;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUmod_st* module = nullptr;  // gone with its context
};

struct CUfunc_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kFunction;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUmod_st* module = nullptr;
  uint64_t busy_ns = 0;    // device time of one launch: N µs for `busy_us_<N>`, else 0
  bool per_block = false;  // `busy_grid_us_<N>`: busy_ns for each block of the launch's grid
};

struct CUstream_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kStream;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUctx_st* context = nullptr;
  std::atomic<uint64_t> work_end_ns{0};  // when the stream's last kernel ends
};

struct CUevent_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kEvent;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUctx_st* context = nullptr;
  unsigned flags = 0;
  bool recorded = false;
  uint64_t recorded_ns = 0;  // when the device reaches the event: it completes then
};

struct CUarray_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kArray;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUctx_st* context = nullptr;
  tessera::fakegpu::Charge charge;
};

struct CUmipmappedArray_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kMipmappedArray;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUctx_st* context = nullptr;
  tessera::fakegpu::Charge charge;
};

struct CUmemPoolHandle_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kMemoryPool;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  int device = 0;  // -1: a host pool
  bool is_default = false;
  uint64_t id = 0;  // its MemoryPool in the driver (which may outlive a destroyed handle)
};

struct CUgraph_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kGraph;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  std::vector<CUgraphNode_st*> nodes;
  std::vector<CUdeviceptr> allocations;  // made by its memory-allocation nodes
};

struct CUgraphNode_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kGraphNode;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  CUgraph_st* graph = nullptr;
  uint64_t busy_ns = 0;  // a kernel node's function's device time
};

struct CUgraphExec_st {
  static constexpr tessera::fakegpu::Magic kMagic = tessera::fakegpu::Magic::kGraphExec;
  tessera::fakegpu::Magic magic = kMagic;
  std::atomic<bool> live{false};
  // The device time of the graph's busy_us_ kernel nodes, in node order, fixed at instantiation.
  std::vector<uint64_t> busy_kernels_ns;
};

namespace tessera::fakegpu {

// The device time of one launch of `function` with this grid.
inline uint64_t KernelNs(const CUfunc_st& function, unsigned grid_x, unsigned grid_y,
                         unsigned grid_z) {
  if (!function.per_block) return function.busy_ns;
  uint64_t ns = function.busy_ns;
  for (uint64_t blocks : {uint64_t{grid_x}, uint64_t{grid_y}, uint64_t{grid_z}}) {
    if (__builtin_mul_overflow(ns, blocks, &ns)) return UINT64_MAX;
  }
  return ns;
}

// Checks a handle without a lock: right type and live. REQUIRES: `handle` is null or was handed
// out by this library (pools never free their objects).
template <typename T>
inline bool LooksLive(const T* handle) {
  return handle != nullptr && handle->magic == T::kMagic &&
         handle->live.load(std::memory_order_acquire);
}

// Owns every object of one type. REQUIRES: external synchronisation (the driver's mutex).
template <typename T>
class ObjectPool {
 public:
  // A fresh live object, reusing a dead one's memory when there is one.
  T* Create() {
    T* object;
    if (!dead_.empty()) {
      object = dead_.back();
      dead_.pop_back();
      object->~T();
      new (object) T();
    } else {
      owned_.push_back(std::make_unique<T>());
      object = owned_.back().get();
      known_.insert(object);
    }
    object->live.store(true, std::memory_order_release);
    return object;
  }

  void Destroy(T* object) {
    object->live.store(false, std::memory_order_release);
    dead_.push_back(object);
  }

  // The handle if it is one of this pool's live objects, else null.
  T* Find(const T* handle) const {
    if (handle == nullptr || known_.count(handle) == 0) return nullptr;
    T* object = const_cast<T*>(handle);
    return object->live.load(std::memory_order_relaxed) ? object : nullptr;
  }

  // Whether the handle is one of this pool's objects, live or not.
  bool Knows(const T* handle) const { return handle != nullptr && known_.count(handle) != 0; }

  template <typename Visit>
  void ForEachLive(Visit visit) {
    for (const std::unique_ptr<T>& object : owned_) {
      if (object->live.load(std::memory_order_relaxed)) visit(object.get());
    }
  }

 private:
  std::vector<std::unique_ptr<T>> owned_;
  std::vector<T*> dead_;
  std::unordered_set<const T*> known_;
};

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_OBJECTS_H_
