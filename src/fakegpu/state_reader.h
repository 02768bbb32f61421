// Reads the fake GPU's node-wide state file: what every process on the fake node holds of each
// device's memory (and of each MIG instance's), and each GPU's health. Tests and the tessera CLI
// use it to see what the fake driver sees.
//
// The file is the one the fake libraries share (TESSERA_FAKEGPU_STATE, default
// /tmp/tessera-fakegpu-<uid>.state). Reading takes the file's process-shared lock briefly and first
// reclaims the usage of processes that died without releasing it, as the fake driver does.
// A StateReader may be used from one thread at a time.
#ifndef TESSERA_FAKEGPU_STATE_READER_H_
#define TESSERA_FAKEGPU_STATE_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace tessera::fakegpu {

class SharedState;

struct DeviceUsage {
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;  // by all live processes, contexts included
  uint64_t peak_bytes = 0;  // high-water mark of used_bytes since the last ResetPeaks()
};

struct ProcessUsage {
  int pid = 0;
  uint64_t start_time = 0;           // field 22 of /proc/<pid>/stat: tells a reused pid apart
  std::vector<uint64_t> used_bytes;  // one entry per device, its MIG instances included
  // Per device, one entry per MIG instance (none for a device not in MIG mode).
  std::vector<std::vector<uint64_t>> mig_used_bytes;
};

// What the Xids raised on a GPU left until they are cleared (on a real GPU: until a reset).
struct GpuHealth {
  uint64_t xid_count = 0;  // raised since the last clear; 0: healthy
  uint32_t last_xid = 0;
  bool retired_pages_pending = false;  // a memory Xid (48, 63, 64, 94 or 95) was raised
  bool lost = false;                   // Xid 79: the GPU has fallen off the bus
  bool healthy() const { return xid_count == 0; }
};

struct StateSnapshot {
  std::vector<DeviceUsage> devices;  // a device in MIG mode: the use of all its instances
  // Per device, its MIG instances in config order (none for a device not in MIG mode).
  std::vector<std::vector<DeviceUsage>> mig_instances;
  std::vector<GpuHealth> health;        // per device
  std::vector<ProcessUsage> processes;  // live processes holding a record, in slot order
};

class StateReader {
 public:
  // TESSERA_FAKEGPU_STATE when set, else /tmp/tessera-fakegpu-<uid>.state.
  static std::string DefaultPath();

  // Opens an existing state file; fails (naming the path) when it is missing or not a state file
  // of this layout version.
  static Result<StateReader> Open(const std::string& path);

  // An error (naming the file) when its lock cannot be had: a process died holding it and the
  // state could not be repaired.
  Result<StateSnapshot> Read();
  // Restarts every device's peak at its current use.
  Status ResetPeaks();
  const std::string& path() const;

 private:
  explicit StateReader(std::shared_ptr<SharedState> state) : state_(std::move(state)) {}
  std::shared_ptr<SharedState> state_;
};

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_STATE_READER_H_
