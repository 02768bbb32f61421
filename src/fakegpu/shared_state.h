// The physical memory of the fake node: a file-backed MAP_SHARED mapping that every process using
// the fake GPU maps, so that all of them see one device memory that runs out for real.
//
// Layout (StateLayout in shared_state.cc): a header (magic, layout version, size), a robust
// process-shared mutex, per device {total, used, peak}, fixed process slots claimed by
// (pid, start time), and per device a kernel timeline: the time the device is busy until and a
// ring of the last kKernelRuns runs. Invariants, under the mutex:
//   - devices[d].used == sum over claimed slots of slot.used[d] <= devices[d].total;
//   - devices[d].peak >= devices[d].used;
//   - a device's runs, oldest to newest, do not overlap and are ordered by time; the newest ends
//     at the device's busy-until time.
// Kernels of a process that dies stay queued: the device finishes what was launched.
// A process that dies holding the mutex leaves the sums to be recomputed by the next locker
// (EOWNERDEAD); one that dies holding memory is reclaimed by the next process that touches the
// state: a liveness scan of the slots runs at most every 100 ms, and always before an allocation
// is refused.
#ifndef TESSERA_FAKEGPU_SHARED_STATE_H_
#define TESSERA_FAKEGPU_SHARED_STATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
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

// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine.
uint64_t MonotonicNs();

struct StateLayout;

// TESSERA_FAKEGPU_STATE when set and not empty, else /tmp/tessera-fakegpu-<uid>.state.
std::string DefaultStatePath();

// The start time of a process (field 22 of /proc/<pid>/stat), or 0 when it does not exist or is a
// zombie.
uint64_t ProcessStartTime(int pid);

// Thread-safe: every member takes the file's mutex.
class SharedState {
 public:
  // Maps the file at `path`; with `create`, creates and initialises it when absent or empty.
  static Result<std::unique_ptr<SharedState>> Open(const std::string& path, bool create);
  ~SharedState();
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  const std::string& path() const { return path_; }

  // Makes the file describe devices of these sizes, or checks that it already does. A file whose
  // processes all left adopts the new description.
  Status Configure(const std::vector<uint64_t>& device_memory_bytes);

  // Claims a slot for the process (pid, start_time); returns its index.
  Result<int> RegisterProcess(int pid, uint64_t start_time);
  // Gives back everything the slot holds and frees it.
  void ReleaseProcess(int slot);

  // Adds `bytes` to the slot's and the device's use; false (and nothing changed) when the device
  // does not have them free even after reclaiming dead processes.
  bool Charge(int slot, int device, uint64_t bytes);
  void Uncharge(int slot, int device, uint64_t bytes);

  // Queues kernels of these durations on `device` for process `pid`, one after another, behind
  // all work queued before on the device by any process (first come, first served: a device runs
  // one kernel at a time). Returns when the last of them will end (CLOCK_MONOTONIC ns).
  // REQUIRES: count > 0.
  uint64_t QueueKernels(int device, int pid, const uint64_t* durations_ns, size_t count);
  // The remembered runs of `device` that end after `since_ns`, oldest first.
  std::vector<KernelRun> KernelRuns(int device, uint64_t since_ns);

  DeviceUsage Device(int device);
  StateSnapshot Snapshot();
  void ResetPeaks();

 private:
  SharedState(std::string path, StateLayout* layout) : path_(std::move(path)), layout_(layout) {}
  void Lock();
  void Unlock();
  void RepairAfterOwnerDied();
  void MaybeReclaimDeadProcesses();
  void ReclaimDeadProcesses();
  void FreeSlot(int slot);

  std::string path_;
  StateLayout* layout_;
};

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_SHARED_STATE_H_
