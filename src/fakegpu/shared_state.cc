#include "fakegpu/shared_state.h"

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "fakegpu/config.h"
#include "fakegpu/node_pids.h"

namespace tessera::fakegpu {

constexpr uint64_t kStateMagic = 0x4b41464553534554ull;  // "TESSFAKE" little-endian
// 2: per-device kernel timelines. 3: MIG instances, fault records and the Xid ring.
constexpr uint32_t kStateLayoutVersion = 3;
constexpr uint64_t kScanIntervalNs = 100'000'000;

struct DeviceSlot {
  uint64_t total_bytes;
  uint64_t used_bytes;
  uint64_t peak_bytes;
};

struct ProcessSlot {
  int32_t pid;  // 0: free
  uint32_t reserved;
  uint64_t start_time;
  uint64_t used_bytes[kMaxDevices];
  uint64_t mig_used_bytes[kMaxDevices][kMaxMigInstances];
};

struct FaultSlot {
  uint64_t xid_count;  // since the last clear
  uint32_t last_xid;
  uint32_t flags;  // kFault*
};
constexpr uint32_t kFaultRetiredPagesPending = 1;
constexpr uint32_t kFaultLost = 2;

struct XidEventSlot {
  uint64_t sequence;
  int32_t gpu;
  uint32_t xid;
};

struct KernelRunSlot {
  uint64_t start_ns;
  uint64_t end_ns;
  int32_t pid;
  uint32_t reserved;
};

struct DeviceTimeline {
  uint64_t busy_until_ns;  // CLOCK_MONOTONIC: when the last queued kernel ends
  uint64_t run_count;      // runs ever recorded; the newest is runs[(run_count - 1) % kKernelRuns]
  KernelRunSlot runs[kKernelRuns];
};

struct StateLayout {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t reserved;
  uint64_t size;
  uint32_t device_count;
  uint32_t process_capacity;
  uint64_t last_scan_ns;  // CLOCK_MONOTONIC, the same clock in every process of the machine
  alignas(64) pthread_mutex_t mutex;
  // Written under the mutex, read without it (atomically) by NVML event sets polling for Xids.
  alignas(64) uint64_t xid_sequence;
  alignas(64) DeviceSlot devices[kMaxDevices];
  uint32_t mig_counts[kMaxDevices];
  DeviceSlot mig_instances[kMaxDevices][kMaxMigInstances];
  uint64_t mig_busy_until_ns[kMaxDevices][kMaxMigInstances];
  FaultSlot faults[kMaxDevices];
  XidEventSlot xid_events[kXidEvents];  // event n at xid_events[n % kXidEvents]
  ProcessSlot processes[kMaxProcesses];
  DeviceTimeline timelines[kMaxDevices];
};

constexpr MappedFileFormat kStateFormat = {
    "a fake GPU state file",
    "remove the file once no process uses it, or point TESSERA_FAKEGPU_STATE elsewhere",
    kStateMagic,
    sizeof(StateLayout::magic),
    kStateLayoutVersion,
    offsetof(StateLayout, layout_version),
    offsetof(StateLayout, size),
    sizeof(StateLayout),
    /*remake_unfinished=*/true,
};

bool IsMemoryXid(uint32_t xid) {
  return xid == 48 || xid == 63 || xid == 64 || xid == 94 || xid == 95;
}

namespace {

std::string Describe(const std::string& path) { return "TESSERA_FAKEGPU_STATE=" + path; }

// Clamped: a slot reclaimed by mistake (it cannot happen to a live process) must not wrap.
uint64_t Subtract(uint64_t from, uint64_t amount) { return amount > from ? 0 : from - amount; }

DeviceUsage UsageOf(const DeviceSlot& totals) {
  return {totals.total_bytes, totals.used_bytes, totals.peak_bytes};
}

GpuHealth HealthOf(const FaultSlot& fault) {
  GpuHealth health;
  health.xid_count = fault.xid_count;
  health.last_xid = fault.last_xid;
  health.retired_pages_pending = (fault.flags & kFaultRetiredPagesPending) != 0;
  health.lost = (fault.flags & kFaultLost) != 0;
  return health;
}

Status InitialiseLayout(StateLayout* layout) {
  Status mutex = InitializeRobustMutex(&layout->mutex);
  if (!mutex.ok()) return mutex;
  layout->process_capacity = kMaxProcesses;
  return Status::Ok();
}

}  // namespace

std::string DefaultStatePath() {
  const char* path = std::getenv("TESSERA_FAKEGPU_STATE");
  if (path != nullptr && *path != '\0') return path;
  return "/tmp/tessera-fakegpu-" + std::to_string(getuid()) + ".state";
}

int NodePid() { return ThisProcessOnNode().pid; }

Result<std::unique_ptr<SharedState>> SharedState::Open(const std::string& path, bool create) {
  Result<MappedFile> file = MappedFile::Open(
      path, Describe(path), kStateFormat, create,
      [](void* mapping) { return InitialiseLayout(static_cast<StateLayout*>(mapping)); });
  if (!file.ok()) return file.status();
  return std::unique_ptr<SharedState>(new SharedState(path, std::move(file).value()));
}

Result<std::unique_ptr<SharedState>> SharedState::OpenForNode(
    const std::string& path, const std::vector<DeviceSpec>& devices) {
  Result<std::unique_ptr<SharedState>> state = Open(path, /*create=*/true);
  if (!state.ok()) return state;
  Status configured = (*state)->Configure(devices);
  if (!configured.ok()) return configured;
  return state;
}

SharedState::SharedState(std::string path, MappedFile file)
    : path_(std::move(path)),
      file_(std::move(file)),
      layout_(static_cast<StateLayout*>(file_.data())) {}

SharedState::~SharedState() = default;

size_t SharedState::MutexOffset() { return offsetof(StateLayout, mutex); }

Result<RobustMutexLock> SharedState::LockState() {
  return RobustMutexLock::Acquire(&layout_->mutex, Describe(path_), [this] {
    RepairAfterOwnerDied();
    return Status::Ok();
  });
}

// The holder died between updating a slot and its device: the slots are the truth.
void SharedState::RepairAfterOwnerDied() {
  log::Write(log::Level::kInfo, "fakegpu",
             "%s: a process died holding the state's lock; recomputing the totals",
             Describe(path_).c_str());
  auto recompute = [](DeviceSlot& totals, uint64_t used) {
    totals.used_bytes = used;
    if (totals.peak_bytes < used) totals.peak_bytes = used;
  };
  for (int device = 0; device < kMaxDevices; ++device) {
    uint64_t used = 0;
    for (const ProcessSlot& slot : layout_->processes) {
      if (slot.pid != 0) used += slot.used_bytes[device];
    }
    recompute(layout_->devices[device], used);
    for (int mig = 0; mig < kMaxMigInstances; ++mig) {
      uint64_t instance_used = 0;
      for (const ProcessSlot& slot : layout_->processes) {
        if (slot.pid != 0) instance_used += slot.mig_used_bytes[device][mig];
      }
      recompute(layout_->mig_instances[device][mig], instance_used);
    }
  }
}

void SharedState::FreeSlot(int slot) {
  ProcessSlot& process = layout_->processes[slot];
  for (int device = 0; device < kMaxDevices; ++device) {
    DeviceSlot& totals = layout_->devices[device];
    totals.used_bytes = Subtract(totals.used_bytes, process.used_bytes[device]);
    for (int mig = 0; mig < kMaxMigInstances; ++mig) {
      DeviceSlot& instance = layout_->mig_instances[device][mig];
      instance.used_bytes = Subtract(instance.used_bytes, process.mig_used_bytes[device][mig]);
    }
  }
  std::memset(static_cast<void*>(&process), 0, sizeof process);
}

void SharedState::ReclaimDeadProcesses() {
  layout_->last_scan_ns = static_cast<uint64_t>(MonotonicNs());
  // Only a process that sees the node's processes can tell which live (a driver's kernel sees
  // them all).
  if (!ThisProcessOnNode().sees_node) return;
  for (int slot = 0; slot < kMaxProcesses; ++slot) {
    const ProcessSlot& process = layout_->processes[slot];
    if (process.pid == 0) continue;
    if (ProcessStartTime(process.pid) != process.start_time) FreeSlot(slot);
  }
}

void SharedState::MaybeReclaimDeadProcesses() {
  if (static_cast<uint64_t>(MonotonicNs()) - layout_->last_scan_ns >= kScanIntervalNs) {
    ReclaimDeadProcesses();
  }
}

Status SharedState::Configure(const std::vector<DeviceSpec>& devices) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  ReclaimDeadProcesses();
  bool idle = true;
  for (const ProcessSlot& process : layout_->processes) idle = idle && process.pid == 0;
  bool same = layout_->device_count == devices.size();
  for (size_t device = 0; same && device < devices.size(); ++device) {
    const std::vector<MigInstance>& instances = devices[device].mig;
    same = layout_->devices[device].total_bytes == devices[device].memory_bytes &&
           layout_->mig_counts[device] == instances.size();
    for (size_t mig = 0; same && mig < instances.size(); ++mig) {
      same = layout_->mig_instances[device][mig].total_bytes == instances[mig].memory_bytes;
    }
  }
  if (!same && !idle) {
    uint32_t count = layout_->device_count;
    return Status::Error(Describe(path_) + " is in use by processes that see " +
                         std::to_string(count) +
                         " device(s) of other sizes or MIG layouts than this process's " +
                         std::to_string(devices.size()) +
                         "; give processes with different TESSERA_FAKEGPU_CONFIG different "
                         "state files");
  }
  if (!same) {
    std::memset(static_cast<void*>(layout_->devices), 0, sizeof layout_->devices);
    std::memset(static_cast<void*>(layout_->mig_counts), 0, sizeof layout_->mig_counts);
    std::memset(static_cast<void*>(layout_->mig_instances), 0, sizeof layout_->mig_instances);
    std::memset(static_cast<void*>(layout_->mig_busy_until_ns), 0,
                sizeof layout_->mig_busy_until_ns);
    std::memset(static_cast<void*>(layout_->faults), 0, sizeof layout_->faults);
    std::memset(static_cast<void*>(layout_->timelines), 0, sizeof layout_->timelines);
    layout_->device_count = static_cast<uint32_t>(devices.size());
    for (size_t device = 0; device < devices.size(); ++device) {
      layout_->devices[device].total_bytes = devices[device].memory_bytes;
      const std::vector<MigInstance>& instances = devices[device].mig;
      layout_->mig_counts[device] = static_cast<uint32_t>(instances.size());
      for (size_t mig = 0; mig < instances.size(); ++mig) {
        layout_->mig_instances[device][mig].total_bytes = instances[mig].memory_bytes;
      }
    }
  }
  return Status::Ok();
}

Result<std::optional<int>> SharedState::RegisterProcess(int pid, uint64_t start_time) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  MaybeReclaimDeadProcesses();
  for (int pass = 0; pass < 2; ++pass) {
    int free_slot = -1;
    for (int slot = 0; slot < kMaxProcesses; ++slot) {
      ProcessSlot& process = layout_->processes[slot];
      if (process.pid == pid && process.start_time == start_time) {
        return std::optional<int>(slot);
      }
      if (process.pid == 0 && free_slot < 0) free_slot = slot;
    }
    if (free_slot >= 0) {
      ProcessSlot& process = layout_->processes[free_slot];
      process.start_time = start_time;
      process.pid = pid;
      return std::optional<int>(free_slot);
    }
    ReclaimDeadProcesses();
  }
  return std::optional<int>();
}

Status SharedState::ReleaseProcess(int slot) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  FreeSlot(slot);
  return Status::Ok();
}

Result<bool> SharedState::Charge(int slot, DeviceRef device, uint64_t bytes) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  MaybeReclaimDeadProcesses();
  DeviceSlot& totals = layout_->devices[device.gpu];
  DeviceSlot* instance = device.mig < 0 ? nullptr : &layout_->mig_instances[device.gpu][device.mig];
  auto fits = [&] {
    return bytes <= totals.total_bytes - totals.used_bytes &&
           (instance == nullptr || bytes <= instance->total_bytes - instance->used_bytes);
  };
  if (!fits()) {
    ReclaimDeadProcesses();
    if (!fits()) {
      return false;
    }
  }
  auto add = [bytes](DeviceSlot& slot_totals) {
    slot_totals.used_bytes += bytes;
    if (slot_totals.peak_bytes < slot_totals.used_bytes) {
      slot_totals.peak_bytes = slot_totals.used_bytes;
    }
  };
  ProcessSlot& process = layout_->processes[slot];
  process.used_bytes[device.gpu] += bytes;
  add(totals);
  if (instance != nullptr) {
    process.mig_used_bytes[device.gpu][device.mig] += bytes;
    add(*instance);
  }
  return true;
}

Status SharedState::Uncharge(int slot, DeviceRef device, uint64_t bytes) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  ProcessSlot& process = layout_->processes[slot];
  uint64_t& held = process.used_bytes[device.gpu];
  uint64_t taken = bytes > held ? held : bytes;
  held -= taken;
  DeviceSlot& totals = layout_->devices[device.gpu];
  totals.used_bytes = Subtract(totals.used_bytes, taken);
  if (device.mig >= 0) {
    uint64_t& instance_held = process.mig_used_bytes[device.gpu][device.mig];
    uint64_t instance_taken = bytes > instance_held ? instance_held : bytes;
    instance_held -= instance_taken;
    DeviceSlot& instance = layout_->mig_instances[device.gpu][device.mig];
    instance.used_bytes = Subtract(instance.used_bytes, instance_taken);
  }
  return Status::Ok();
}

Result<uint64_t> SharedState::QueueKernels(DeviceRef device, int pid, const uint64_t* durations_ns,
                                           size_t count) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  auto now = static_cast<uint64_t>(MonotonicNs());
  if (device.mig >= 0) {
    uint64_t& busy_until = layout_->mig_busy_until_ns[device.gpu][device.mig];
    for (size_t i = 0; i < count; ++i) {
      busy_until = (now > busy_until ? now : busy_until) + durations_ns[i];
    }
    uint64_t end = busy_until;
    return end;
  }
  DeviceTimeline& timeline = layout_->timelines[device.gpu];
  for (size_t i = 0; i < count; ++i) {
    uint64_t start = now > timeline.busy_until_ns ? now : timeline.busy_until_ns;
    uint64_t end = start + durations_ns[i];
    KernelRunSlot* newest =
        timeline.run_count == 0 ? nullptr : &timeline.runs[(timeline.run_count - 1) % kKernelRuns];
    if (newest != nullptr && newest->pid == pid && newest->end_ns == start) {
      newest->end_ns = end;
    } else {
      timeline.runs[timeline.run_count % kKernelRuns] = {start, end, pid, 0};
      ++timeline.run_count;
    }
    timeline.busy_until_ns = end;
  }
  uint64_t end = timeline.busy_until_ns;
  return end;
}

Result<std::vector<KernelRun>> SharedState::KernelRuns(int gpu, uint64_t since_ns) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  std::vector<KernelRun> runs;
  const DeviceTimeline& timeline = layout_->timelines[gpu];
  uint64_t remembered = timeline.run_count < kKernelRuns ? timeline.run_count : kKernelRuns;
  for (uint64_t back = 1; back <= remembered; ++back) {
    const KernelRunSlot& run = timeline.runs[(timeline.run_count - back) % kKernelRuns];
    if (run.end_ns <= since_ns) break;  // runs are ordered: all older ones ended earlier
    runs.push_back({run.start_ns, run.end_ns, run.pid});
  }
  std::reverse(runs.begin(), runs.end());
  return runs;
}

Result<DeviceUsage> SharedState::Device(int gpu) { return Usage({gpu, -1}); }

Result<DeviceUsage> SharedState::Usage(DeviceRef device) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  MaybeReclaimDeadProcesses();
  DeviceUsage usage = UsageOf(device.mig < 0 ? layout_->devices[device.gpu]
                                             : layout_->mig_instances[device.gpu][device.mig]);
  return usage;
}

Result<StateSnapshot> SharedState::Snapshot() {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  StateSnapshot snapshot;
  ReclaimDeadProcesses();
  uint32_t count = layout_->device_count;
  for (uint32_t device = 0; device < count; ++device) {
    snapshot.devices.push_back(UsageOf(layout_->devices[device]));
    std::vector<DeviceUsage> instances;
    for (uint32_t mig = 0; mig < layout_->mig_counts[device]; ++mig) {
      instances.push_back(UsageOf(layout_->mig_instances[device][mig]));
    }
    snapshot.mig_instances.push_back(std::move(instances));
    snapshot.health.push_back(HealthOf(layout_->faults[device]));
  }
  for (const ProcessSlot& process : layout_->processes) {
    if (process.pid == 0) continue;
    ProcessUsage usage;
    usage.pid = process.pid;
    usage.start_time = process.start_time;
    usage.used_bytes.assign(process.used_bytes, process.used_bytes + count);
    for (uint32_t device = 0; device < count; ++device) {
      const uint64_t* instances = process.mig_used_bytes[device];
      usage.mig_used_bytes.emplace_back(instances, instances + layout_->mig_counts[device]);
    }
    snapshot.processes.push_back(std::move(usage));
  }
  return snapshot;
}

Status SharedState::ResetPeaks() {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  for (DeviceSlot& totals : layout_->devices) totals.peak_bytes = totals.used_bytes;
  for (auto& instances : layout_->mig_instances) {
    for (DeviceSlot& totals : instances) totals.peak_bytes = totals.used_bytes;
  }
  return Status::Ok();
}

Result<uint64_t> SharedState::RaiseXid(int gpu, uint32_t xid) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  FaultSlot& fault = layout_->faults[gpu];
  ++fault.xid_count;
  fault.last_xid = xid;
  if (IsMemoryXid(xid)) fault.flags |= kFaultRetiredPagesPending;
  if (xid == kXidFallenOffTheBus) fault.flags |= kFaultLost;
  uint64_t sequence = layout_->xid_sequence + 1;
  layout_->xid_events[sequence % kXidEvents] = {sequence, gpu, xid};
  // Published last: a waiter that sees the number finds the event in the ring.
  __atomic_store_n(&layout_->xid_sequence, sequence, __ATOMIC_RELEASE);
  return sequence;
}

Status SharedState::ClearFault(int gpu) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  layout_->faults[gpu] = {};
  return Status::Ok();
}

Result<GpuHealth> SharedState::Health(int gpu) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  GpuHealth health = HealthOf(layout_->faults[gpu]);
  return health;
}

uint64_t SharedState::XidSequence() const {
  return __atomic_load_n(&layout_->xid_sequence, __ATOMIC_ACQUIRE);
}

Result<std::vector<XidEvent>> SharedState::XidEventsAfter(uint64_t sequence) {
  Result<RobustMutexLock> lock = LockState();
  if (!lock.ok()) return lock.status();
  std::vector<XidEvent> events;
  uint64_t newest = layout_->xid_sequence;
  uint64_t oldest = newest > static_cast<uint64_t>(kXidEvents) ? newest - kXidEvents + 1 : 1;
  for (uint64_t number = sequence + 1 > oldest ? sequence + 1 : oldest; number <= newest;
       ++number) {
    const XidEventSlot& slot = layout_->xid_events[number % kXidEvents];
    if (slot.sequence == number) events.push_back({slot.sequence, slot.gpu, slot.xid});
  }
  return events;
}

}  // namespace tessera::fakegpu
