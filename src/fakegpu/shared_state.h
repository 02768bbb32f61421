// The physical memory of the fake node: a file-backed MAP_SHARED mapping that every process using
// the fake GPU maps, so that all of them see one device memory that runs out for real.
//
// Layout (StateLayout in shared_state.cc): a header (magic, layout version, size), a robust
// process-shared mutex, per device {total, used, peak}, and fixed process slots claimed by
// (pid, start time). Invariants, under the mutex:
//   - devices[d].used == sum over claimed slots of slot.used[d] <= devices[d].total;
//   - devices[d].peak >= devices[d].used.
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
