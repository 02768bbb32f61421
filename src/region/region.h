// The region: a small file that all processes of one container map to share GPU accounting.
//
// It holds, per device, the container's limits and the bytes charged against them, and one slot
// per process with that process's own charges. Guarantees:
//  * Versioned: a header with magic, layout version and size (layout.h; docs/region-format.md).
//    A file of another layout is refused with a message, never reinterpreted.
//  * Atomic admission: Reserve() checks and charges under one process-shared lock, so processes
//    racing for the last bytes can never pass the limit together.
//  * Crash-safe: the lock is a robust mutex (the kernel hands it on when a holder dies; the next
//    holder repairs the totals). Slots never move and are claimed by (pid, start time), so a
//    reused pid is never mistaken for the dead process. A dead process's charges are reclaimed by
//    the next process that touches the region (at most every kReapInterval) or by `Reap()`.
//  * Liveness is judged only by a process that can see the process: each slot records the pid
//    namespace its pid belongs to, and a reader in another one (the host or a node agent reading
//    a container's region) leaves the slot and its charges alone.
//  * Per-process counters are written by their owner (or, after it died, by the reaper).
//  * Never unlocked: every member that needs the lock returns an error, and changes nothing, when
//    the lock cannot be taken (its holder died and the region could not be repaired).
//
// Device indexes are the container's devices, not any process's CUDA ordinals: each record is
// bound to one GPU (or MIG instance) UUID, and every process charges the record of the UUID it
// sees, whatever CUDA_VISIBLE_DEVICES makes that device's ordinal in it (shim/device_map.h). NVML
// handles, which know UUIDs, map to the same record.
#ifndef TESSERA_REGION_REGION_H_
#define TESSERA_REGION_REGION_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mapped_file.h"
#include "common/process.h"
#include "common/status.h"
#include "region/layout.h"

namespace tessera::region {

inline constexpr int64_t kReapIntervalNs = 250'000'000;  // 250 ms
// The compute budget's burst: a full bucket holds share x 20 ms of device time.
inline constexpr int64_t kComputeBurstNs = 20'000'000;
// The window over which the achieved share is measured for `tessera status`.
inline constexpr int64_t kShareWindowNs = 1'000'000'000;

// Whether two UUIDs name the same device: "GPU-" or "MIG-" and case aside, the same hex digits
// (CUDA's cuDeviceGetUuid gives bytes; NVML and NVIDIA_VISIBLE_DEVICES give text, with the
// prefix). A MIG instance's UUID is its own, never its GPU's.
bool SameDeviceUuid(std::string_view a, std::string_view b);

struct DeviceLimits {
  uint64_t memory_bytes = 0;  // 0: no memory limit
  uint32_t sm_percent = 0;    // 0: no compute limit
};

// What a region is created with. Ignored when opening an existing region (its limits win).
struct RegionConfig {
  DeviceLimits devices[kMaxDevices];
};

// Whether a slot's process lives, as the process that took the snapshot can tell.
enum class Liveness {
  kAlive,
  kDead,     // gone, a zombie, or its pid reused: a reap by this process reclaims its charges
  kUnknown,  // its pid is of another pid namespace than this process's (or of one not told)
};

// A read-only copy of what the region says, for `tessera status` and tests.
struct ProcessUsage {
  int slot = 0;
  pid_t pid = 0;  // in the pid namespace pid_namespace
  uint64_t start_time = 0;
  uint64_t pid_namespace = 0;  // 0: its claimer could not tell
  uint32_t driver_pid = 0;     // the pid NVML lists it by; 0: not known
  std::string command;
  Liveness liveness = Liveness::kAlive;
  uint64_t used[kMaxDevices] = {};
};

struct DeviceUsage {
  int index = 0;
  std::string uuid;  // empty until a process has bound it
  DeviceLimits limits;
  uint64_t used = 0;
  int compute_share_permille = -1;  // device time charged over the last 1 s window; -1: idle
  int64_t compute_charged_ns = 0;   // device time charged since the region was made
};

struct Snapshot {
  uint32_t layout_version = 0;
  std::vector<DeviceUsage> devices;  // every device with a limit, a UUID or usage
  std::vector<ProcessUsage> processes;
};

class Region {
 public:
  // Opens the region at `path`, creating it with `create_with` if the file is missing or empty.
  // With create_with == nullptr a missing region is an error.
  static Result<std::unique_ptr<Region>> Open(const std::string& path,
                                              const RegionConfig* create_with);
  // A region private to this process and its forked children (anonymous shared memory).
  static Result<std::unique_ptr<Region>> CreatePrivate(const RegionConfig& config);

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const std::string& path() const { return path_; }
  DeviceLimits Limits(int device) const;
  // Sets the limits of an existing region (for the tool that owns it, e.g. `tessera run`).
  Status SetLimits(int device, DeviceLimits limits);

  // Records that container device `device` is the GPU `uuid`. The first binding wins; binding a
  // different UUID later is an error (the region was made for other GPUs).
  Status BindDevice(int device, std::string_view uuid);
  // The device bound to `uuid` (SameDeviceUuid); else binds `preferred` to it if unbound, else
  // the first unbound device after `preferred`, else the first before it; one lock throughout,
  // so processes binding together agree. An error when every device is bound to another GPU.
  Result<int> FindOrBindDevice(std::string_view uuid, int preferred);
  // The device bound to `uuid` (SameDeviceUuid), or -1.
  Result<int> FindDevice(std::string_view uuid) const;

  // Claims a slot for the process (pid, start_time), recording PidNamespaceOfProc() as the pid
  // namespace of `pid`. Reclaims dead slots first if none is free.
  // REQUIRES: pid and start_time are as this process's /proc names them (a process claims for
  // itself: ThisProcessInProc().pid and its ProcessStartTime).
  Result<int> ClaimSlot(pid_t pid, uint64_t start_time, std::string_view command);
  // Gives the slot back, dropping its charges (the process is exiting).
  Status ReleaseSlot(int slot);
  // Records the pid the driver knows the process in `slot` by (NVML's, the node's namespace).
  // REQUIRES: the caller owns `slot`.
  Status SetDriverPid(int slot, uint32_t driver_pid);

  // Charges `bytes` on `device` to `slot` if the device's total stays within its limit (always,
  // when it has none): true if charged, false if refused. When refused, dead processes are reaped
  // and the check is made once more. An error (nothing charged) when the lock cannot be taken.
  // REQUIRES: slot was claimed by this process; 0 <= device < kMaxDevices.
  Result<bool> Reserve(int slot, int device, uint64_t bytes);
  // The same against `limit` (0: none) instead of the limit the region holds: for a caller whose
  // limit comes from somewhere the region's writers cannot reach (the shim's limits file). The
  // region's total can still be forged by a process that writes the file; the caller must bound
  // what it charges itself (see the shim's Reserve).
  Result<bool> Reserve(int slot, int device, uint64_t bytes, uint64_t limit);
  // Drops `bytes` of `slot`'s charge on `device` (never below zero).
  Status Release(int slot, int device, uint64_t bytes);

  uint64_t Used(int device) const;
  uint64_t SlotUsed(int slot, int device) const;

  // What the last context created on `device` by any process of the container took (0 before the
  // first). Processes reserve this much before creating a context, then true up.
  uint64_t ContextEstimate(int device) const;
  void SetContextEstimate(int device, uint64_t bytes);

  // The compute budget of a device with an sm limit of s percent: a token bucket of device time,
  // shared by all of the container's processes, refilled at s% of wall time and capped at
  // s% x kComputeBurstNs. ChargeCompute() takes `cost_ns` of device time at `now_ns` (monotonic)
  // and returns the time from which the bucket is out of debt again (<= now_ns: no debt); the
  // caller waits until then. Lock-free. Without an sm limit it charges nothing and returns now_ns.
  int64_t ChargeCompute(int device, int64_t cost_ns, int64_t now_ns);
  // The same with the share `percent` given by the caller rather than the region's sm limit (the
  // shim with a limits file: see Reserve(slot, device, bytes, limit)).
  int64_t ChargeCompute(int device, int64_t cost_ns, int64_t now_ns, uint32_t percent);
  // Corrects an earlier charge once the cost is measured (`delta_ns` may be negative).
  void AdjustCompute(int device, int64_t delta_ns);
  void AdjustCompute(int device, int64_t delta_ns, uint32_t percent);
  // Clears the debt (work-conserving mode: time nobody else wanted is not owed).
  void ForgiveComputeDebt(int device, int64_t now_ns);
  // The time from which the bucket is out of debt.
  int64_t ComputeReadyAt(int device) const;

  // Reclaims the slots of dead processes. Only slots whose pid namespace is this process's
  // (PidNamespaceOfProc(), when it can be told) are judged; the others are left as they are,
  // whatever /proc says about their pid. Unless `force`, does nothing if a reap ran less than
  // kReapIntervalNs ago. Returns the number of slots reclaimed.
  Result<int> Reap(bool force);

  Result<Snapshot> TakeSnapshot() const;

 private:
  Region(std::string path, MappedFile file);
  Result<RobustMutexLock> LockLayout() const;
  void UpdateShareWindow(int device, int64_t now_ns);
  // Reserve against `*limit`, or the region's own limit when `limit` is null.
  Result<bool> ReserveWithin(int slot, int device, uint64_t bytes, const uint64_t* limit);

  std::string path_;
  MappedFile file_;
  RegionLayout* layout_;
};

}  // namespace tessera::region

#endif  // TESSERA_REGION_REGION_H_
