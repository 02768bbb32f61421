// The physical memory of the fake node: a file-backed MAP_SHARED mapping that every process using
// the fake GPU maps, so that all of them see one device memory that runs out for real.
//
// Layout (StateLayout in shared_state.cc): a header (magic, layout version, size), a robust
// process-shared mutex, per device {total, used, peak} and the same per MIG instance, fixed
// process slots claimed by (pid, start time), per device a kernel timeline (the time the device is
// busy until and a ring of the last kKernelRuns runs; a MIG instance has only its busy-until
// time), and per device a fault record with a node-wide ring of the last kXidEvents Xids raised.
// Devices are the node's (its config's lines), whatever each process is let see. Invariants,
// under the mutex:
//   - devices[d].used == sum over claimed slots of slot.used[d] <= devices[d].total, and the same
//     for each MIG instance; a device's use includes its instances';
//   - devices[d].peak >= devices[d].used;
//   - a device's runs, oldest to newest, do not overlap and are ordered by time; the newest ends
//     at the device's busy-until time;
//   - the Xid sequence number only grows (it survives reconfiguration), and the ring holds the
//     events numbered up to it.
// Kernels of a process that dies stay queued: the device finishes what was launched.
// A process that dies holding the mutex leaves the sums to be recomputed by the next locker
// (EOWNERDEAD); one that dies holding memory is reclaimed by the next process that touches the
// state: a liveness scan of the slots runs at most every 100 ms, and always before an allocation
// is refused.
// The file's header, lock and repair are src/common/mapped_file's, as the region's are; the
// process table is the fake driver's own, as a real driver's is: it knows processes by their node
// pid (NodePid) and judges them from the node, where the region's slots hold each process's pid in
// its own pid namespace and only a reader in that namespace judges them (docs/region-format.md).
#ifndef TESSERA_FAKEGPU_SHARED_STATE_H_
#define TESSERA_FAKEGPU_SHARED_STATE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/process.h"
#include "common/status.h"
#include "fakegpu/config.h"
#include "fakegpu/state_reader.h"

namespace tessera::fakegpu {

inline constexpr int kMaxProcesses = 512;
// Runs remembered per device. Back-to-back kernels of one process share a run, so a saturating
// loop takes one entry however many kernels it launches.
inline constexpr int kKernelRuns = 4096;

// A stretch of CLOCK_MONOTONIC time [start_ns, end_ns) in which a device ran kernels of one
// process, one after another. end_ns may lie in the future: it is queued work.
struct KernelRun {
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  int pid = 0;
};

// Xids raised across the node that a waiting NVML event set can still see.
inline constexpr int kXidEvents = 256;

// Xid 79: the GPU has fallen off the bus; it answers nothing until reset.
inline constexpr uint32_t kXidFallenOffTheBus = 79;
// Xids after which a real GPU has pages pending retirement (nvmlDeviceGetRetiredPagesPendingStatus)
// until it is reset: double-bit ECC error, ECC page retirement and row remapping failures.
bool IsMemoryXid(uint32_t xid);

// One Xid raised on a GPU, numbered in the order of raising across the node (from 1).
struct XidEvent {
  uint64_t sequence = 0;
  int gpu = 0;
  uint32_t xid = 0;
};

struct StateLayout;

// TESSERA_FAKEGPU_STATE when set and not empty, else /tmp/tessera-fakegpu-<uid>.state.
std::string DefaultStatePath();

// This process's pid as the node sees it: a real driver knows a containerised process by its host
// pid, and the node's processes (in other pid namespaces) share one state file, so the fake keys
// them the same way (fakegpu/node_pids.h says how it is learnt).
int NodePid();

// Thread-safe: every member takes the file's mutex. When it cannot be had (a holder died and the
// state could not be repaired, or the lock is unrecoverable), every member but XidSequence()
// returns the error, naming the file, and changes nothing: none answers with an empty value that
// a caller could take for the state's.
class SharedState {
 public:
  // Where the file's mutex lies in it (the layout is private to shared_state.cc): for tests that
  // play a process that died holding it.
  static size_t MutexOffset();

  // Maps the file at `path`; with `create`, creates and initialises it when absent or empty.
  static Result<std::unique_ptr<SharedState>> Open(const std::string& path, bool create);
  // Open(path, /*create=*/true), then Configure(devices): what the libraries and the tool use.
  static Result<std::unique_ptr<SharedState>> OpenForNode(const std::string& path,
                                                          const std::vector<DeviceSpec>& devices);
  ~SharedState();
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  const std::string& path() const { return path_; }

  // Makes the file describe these devices (their memory and their MIG instances' memory), or
  // checks that it already does. A file whose processes all left adopts the new description,
  // with every device healthy.
  Status Configure(const std::vector<DeviceSpec>& devices);

  // Claims a slot for the process (pid, start_time); returns its index, or nullopt when every
  // slot is held by a live process (the node is full, as a device out of memory is).
  Result<std::optional<int>> RegisterProcess(int pid, uint64_t start_time);
  // Gives back everything the slot holds and frees it.
  Status ReleaseProcess(int slot);

  // Adds `bytes` to the slot's and the device's use (and to the MIG instance's, for one); false
  // (and nothing changed) when the device or instance does not have them free even after
  // reclaiming dead processes.
  Result<bool> Charge(int slot, DeviceRef device, uint64_t bytes);
  Status Uncharge(int slot, DeviceRef device, uint64_t bytes);

  // Queues kernels of these durations on `device` for process `pid`, one after another, behind
  // all work queued before on the device by any process (first come, first served: a device runs
  // one kernel at a time; each MIG instance is a device of its own). Returns when the last of
  // them will end (CLOCK_MONOTONIC ns). Runs are remembered for whole GPUs only (NVML reports no
  // utilisation in MIG mode). REQUIRES: count > 0.
  Result<uint64_t> QueueKernels(DeviceRef device, int pid, const uint64_t* durations_ns,
                                size_t count);
  // The remembered runs of GPU `gpu` that end after `since_ns`, oldest first.
  Result<std::vector<KernelRun>> KernelRuns(int gpu, uint64_t since_ns);

  Result<DeviceUsage> Device(int gpu);
  Result<DeviceUsage> Usage(DeviceRef device);

  // Faults. RaiseXid records the Xid in the GPU's fault record and in the ring, and returns its
  // sequence number; ClearFault makes the GPU healthy (the ring keeps what was raised).
  Result<uint64_t> RaiseXid(int gpu, uint32_t xid);
  Status ClearFault(int gpu);
  Result<GpuHealth> Health(int gpu);
  // The newest Xid's sequence number (0: none yet). Takes no lock: waiters poll it.
  uint64_t XidSequence() const;
  // The Xids numbered after `sequence` still in the ring, oldest first.
  Result<std::vector<XidEvent>> XidEventsAfter(uint64_t sequence);

  Result<StateSnapshot> Snapshot();
  Status ResetPeaks();

 private:
  SharedState(std::string path, MappedFile file);
  Result<RobustMutexLock> LockState();
  void RepairAfterOwnerDied();
  void MaybeReclaimDeadProcesses();
  void ReclaimDeadProcesses();
  void FreeSlot(int slot);

  std::string path_;
  MappedFile file_;
  StateLayout* layout_;
};

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_SHARED_STATE_H_
