// The region's binary layout: what the shim, the node agent and `tessera status` of every version
// that shares layout version kLayoutVersion read and write. docs/region-format.md describes it.
//
// The static_asserts pin every field's offset and size (x86-64 Linux with glibc, where
// pthread_mutex_t is 40 bytes; elsewhere the fields from `lock` on move with its size, which is
// why a region is only ever shared on one machine): a change here is a new layout version, never
// an edit in place. All fields are native-endian. Fields
// declared std::atomic are read and written atomically by every process (lock-free, so the same
// bytes as the plain integer); the others change only under `lock`.
#ifndef TESSERA_REGION_LAYOUT_H_
#define TESSERA_REGION_LAYOUT_H_

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tessera::region {

inline constexpr uint32_t kMagic = 0x41525354;  // "TSRA" in a little-endian dump
// 2: the compute limiter's per-device budget. 3: each slot names the pid namespace its pid is in.
inline constexpr uint32_t kLayoutVersion = 3;
inline constexpr int kMaxDevices = 16;
inline constexpr int kMaxProcesses = 1024;
inline constexpr size_t kUuidBytes = 64;
inline constexpr size_t kCommandBytes = 16;

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int32_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<int64_t>::is_always_lock_free);

// One per container device (its CUDA ordinal).
struct DeviceRecord {
  char uuid[kUuidBytes];  // NUL-terminated unless forged; empty until a process binds it
  uint64_t memory_limit;  // bytes; 0: none
  uint32_t sm_percent;    // 0: none
  uint32_t padding;
  std::atomic<uint64_t> used;              // the sum of the slots' used[] for this device
  std::atomic<uint64_t> context_estimate;  // bytes the last context created on it took
  // The compute budget (see Region::ChargeCompute): the bucket as its "theoretical arrival
  // time", the device time charged so far, and the share achieved over the last window.
  std::atomic<int64_t> compute_tat_ns;
  std::atomic<int64_t> compute_charged_ns;
  std::atomic<int64_t> share_window_start_ns;
  std::atomic<int64_t> share_window_charged_ns;  // compute_charged_ns at the window's start
  std::atomic<int64_t> share_measured_at_ns;     // when last_share_permille was computed
  std::atomic<uint32_t> last_share_permille;
  uint32_t padding2;
  uint64_t reserved[4];
};

// One per process, claimed by (pid, start time) in the pid namespace `pid_namespace`. Slots never
// move.
struct Slot {
  std::atomic<int32_t> pid;  // 0: free
  uint32_t padding;
  std::atomic<uint64_t> start_time;  // clock ticks since boot (/proc/<pid>/stat field 22)
  char command[kCommandBytes];       // NUL-terminated unless forged
  std::atomic<uint64_t> used[kMaxDevices];
  // The pid namespace `pid` is a pid of (PidNamespaceOfProc() of the claimer): only a reader in
  // that namespace can tell whether the process lives. 0: the claimer could not tell.
  std::atomic<uint64_t> pid_namespace;
  // The pid the driver (NVML) knows the process by, in the node's pid namespace; 0: not known
  // (yet). Written by its owner. A version 3 writer left it 0, and a reader that ignores it loses
  // nothing, so it needed no new version (docs/region-format.md, Versions).
  std::atomic<uint32_t> driver_pid;
  uint32_t padding2;
};

struct RegionLayout {
  uint32_t magic;               // kMagic; written last by the creator
  uint32_t layout_version;      // kLayoutVersion
  uint64_t size;                // sizeof(RegionLayout)
  std::atomic<uint32_t> ready;  // 1 once the creator has initialised the rest
  uint32_t padding;
  pthread_mutex_t lock;                   // process-shared, robust
  std::atomic<int64_t> last_reap_ns;      // CLOCK_MONOTONIC of the last reap
  std::atomic<uint32_t> slot_high_water;  // slots at or above this index have never been used
  uint32_t padding2;
  uint64_t reserved[16];
  DeviceRecord devices[kMaxDevices];
  Slot slots[kMaxProcesses];
};

// offsetof on types with std::atomic members is conditionally supported; GCC and Clang support
// it for these standard-layout types.
static_assert(alignof(RegionLayout) == 8);

static_assert(offsetof(DeviceRecord, uuid) == 0 && sizeof(DeviceRecord::uuid) == 64);
static_assert(offsetof(DeviceRecord, memory_limit) == 64);
static_assert(offsetof(DeviceRecord, sm_percent) == 72);
static_assert(offsetof(DeviceRecord, padding) == 76);
static_assert(offsetof(DeviceRecord, used) == 80 && sizeof(DeviceRecord::used) == 8);
static_assert(offsetof(DeviceRecord, context_estimate) == 88);
static_assert(offsetof(DeviceRecord, compute_tat_ns) == 96);
static_assert(offsetof(DeviceRecord, compute_charged_ns) == 104);
static_assert(offsetof(DeviceRecord, share_window_start_ns) == 112);
static_assert(offsetof(DeviceRecord, share_window_charged_ns) == 120);
static_assert(offsetof(DeviceRecord, share_measured_at_ns) == 128);
static_assert(offsetof(DeviceRecord, last_share_permille) == 136 &&
              sizeof(DeviceRecord::last_share_permille) == 4);
static_assert(offsetof(DeviceRecord, padding2) == 140);
static_assert(offsetof(DeviceRecord, reserved) == 144 && sizeof(DeviceRecord::reserved) == 32);
static_assert(sizeof(DeviceRecord) == 176);

static_assert(offsetof(Slot, pid) == 0 && sizeof(Slot::pid) == 4);
static_assert(offsetof(Slot, padding) == 4);
static_assert(offsetof(Slot, start_time) == 8 && sizeof(Slot::start_time) == 8);
static_assert(offsetof(Slot, command) == 16 && sizeof(Slot::command) == 16);
static_assert(offsetof(Slot, used) == 32 && sizeof(Slot::used) == 128);
static_assert(offsetof(Slot, pid_namespace) == 160 && sizeof(Slot::pid_namespace) == 8);
static_assert(offsetof(Slot, driver_pid) == 168 && sizeof(Slot::driver_pid) == 4);
static_assert(offsetof(Slot, padding2) == 172);
static_assert(sizeof(Slot) == 176);

static_assert(offsetof(RegionLayout, magic) == 0 && sizeof(RegionLayout::magic) == 4);
static_assert(offsetof(RegionLayout, layout_version) == 4 &&
              sizeof(RegionLayout::layout_version) == 4);
static_assert(offsetof(RegionLayout, size) == 8 && sizeof(RegionLayout::size) == 8);
static_assert(offsetof(RegionLayout, ready) == 16 && sizeof(RegionLayout::ready) == 4);
static_assert(offsetof(RegionLayout, padding) == 20);
static_assert(offsetof(RegionLayout, lock) == 24);
#if defined(__x86_64__)
static_assert(sizeof(RegionLayout::lock) == 40);
static_assert(offsetof(RegionLayout, last_reap_ns) == 64 &&
              sizeof(RegionLayout::last_reap_ns) == 8);
static_assert(offsetof(RegionLayout, slot_high_water) == 72 &&
              sizeof(RegionLayout::slot_high_water) == 4);
static_assert(offsetof(RegionLayout, padding2) == 76);
static_assert(offsetof(RegionLayout, reserved) == 80 && sizeof(RegionLayout::reserved) == 128);
static_assert(offsetof(RegionLayout, devices) == 208 && sizeof(RegionLayout::devices) == 2816);
static_assert(offsetof(RegionLayout, slots) == 3024 && sizeof(RegionLayout::slots) == 180224);
static_assert(sizeof(RegionLayout) == 183248);
#endif

}  // namespace tessera::region

#endif  // TESSERA_REGION_LAYOUT_H_
