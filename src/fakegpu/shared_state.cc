#include "fakegpu/shared_state.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/log.h"
#include "fakegpu/config.h"

namespace tessera::fakegpu {

constexpr uint64_t kStateMagic = 0x4b41464553534554ull;  // "TESSFAKE" little-endian
// 2: per-device kernel timelines.
constexpr uint32_t kStateLayoutVersion = 2;
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
  alignas(64) DeviceSlot devices[kMaxDevices];
  ProcessSlot processes[kMaxProcesses];
  DeviceTimeline timelines[kMaxDevices];
};

uint64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(now.tv_nsec);
}

namespace {

std::string Describe(const std::string& path) { return "TESSERA_FAKEGPU_STATE=" + path; }

Status Errno(const std::string& path, const char* what) {
  return Status::Error(Describe(path) + ": " + what + ": " + std::strerror(errno));
}

Status InitialiseLayout(StateLayout* layout) {
  std::memset(static_cast<void*>(layout), 0, sizeof(StateLayout));
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  int error = pthread_mutex_init(&layout->mutex, &attributes);
  pthread_mutexattr_destroy(&attributes);
  if (error != 0) return Status::Error(std::string("pthread_mutex_init: ") + std::strerror(error));
  layout->layout_version = kStateLayoutVersion;
  layout->size = sizeof(StateLayout);
  layout->process_capacity = kMaxProcesses;
  // The magic last: a file with it is fully initialised.
  __atomic_store_n(&layout->magic, kStateMagic, __ATOMIC_RELEASE);
  return Status::Ok();
}

// Checks a header read from the file before the whole file is trusted.
Status CheckHeader(const std::string& path, const StateLayout* layout, uint64_t file_size) {
  if (layout->magic != kStateMagic) {
    return Status::Error(Describe(path) +
                         " is not a fake GPU state file (wrong magic number); remove it or point "
                         "TESSERA_FAKEGPU_STATE elsewhere");
  }
  if (layout->layout_version != kStateLayoutVersion || layout->size != sizeof(StateLayout) ||
      file_size != sizeof(StateLayout)) {
    return Status::Error(Describe(path) + " has layout version " +
                         std::to_string(layout->layout_version) + " and size " +
                         std::to_string(file_size) + "; this fake GPU uses layout version " +
                         std::to_string(kStateLayoutVersion) + " and size " +
                         std::to_string(sizeof(StateLayout)) +
                         "; remove the file once no process uses it");
  }
  return Status::Ok();
}

}  // namespace

std::string DefaultStatePath() {
  const char* path = std::getenv("TESSERA_FAKEGPU_STATE");
  if (path != nullptr && *path != '\0') return path;
  return "/tmp/tessera-fakegpu-" + std::to_string(getuid()) + ".state";
}

uint64_t ProcessStartTime(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[1024];
  ssize_t length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return 0;
  text[length] = '\0';
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  char* cursor = std::strrchr(text, ')');
  if (cursor == nullptr) return 0;
  cursor += 2;  // ") "
  char state = *cursor;
  if (state == 'Z' || state == 'X' || state == 'x') return 0;
  // Field 3 is the state; the start time is field 22, 19 fields further on.
  for (int field = 3; field < 22 && cursor != nullptr; ++field) {
    cursor = std::strchr(cursor, ' ');
    if (cursor != nullptr) ++cursor;
  }
  if (cursor == nullptr) return 0;
  return std::strtoull(cursor, nullptr, 10);
}

Result<std::unique_ptr<SharedState>> SharedState::Open(const std::string& path, bool create) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0666);
  if (fd < 0) return Errno(path, "cannot open");
  // The file lock only orders creation; the mutex inside orders everything after.
  if (flock(fd, LOCK_EX) != 0) {
    Status error = Errno(path, "cannot lock");
    close(fd);
    return error;
  }
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    Status error = Errno(path, "cannot stat");
    close(fd);
    return error;
  }
  bool fresh = info.st_size == 0;
  if (fresh && !create) {
    close(fd);
    return Status::Error(Describe(path) + " is empty: no process has used the fake GPU yet");
  }
  if (fresh && ftruncate(fd, sizeof(StateLayout)) != 0) {
    Status error = Errno(path, "cannot size");
    close(fd);
    return error;
  }
  uint64_t file_size = fresh ? sizeof(StateLayout) : static_cast<uint64_t>(info.st_size);
  if (file_size < offsetof(StateLayout, mutex)) {
    close(fd);
    return Status::Error(Describe(path) + " is " + std::to_string(file_size) +
                         " bytes long, too short for a fake GPU state file; remove it");
  }
  size_t map_size = fresh || file_size >= sizeof(StateLayout) ? sizeof(StateLayout)
                                                              : static_cast<size_t>(file_size);
  void* mapping = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    Status error = Errno(path, "cannot map");
    close(fd);
    return error;
  }
  auto* layout = static_cast<StateLayout*>(mapping);
  // A creator that died before writing the magic left a zeroed file of the right size: finish it.
  if (!fresh && create && file_size == sizeof(StateLayout) && layout->magic == 0) fresh = true;
  Status status = fresh ? InitialiseLayout(layout) : CheckHeader(path, layout, file_size);
  // The mapping keeps the open file description, and with it the flock, alive: unlock explicitly.
  flock(fd, LOCK_UN);
  close(fd);
  if (!status.ok()) {
    munmap(mapping, map_size);
    return status;
  }
  return std::unique_ptr<SharedState>(new SharedState(path, layout));
}

SharedState::~SharedState() { munmap(layout_, sizeof(StateLayout)); }

void SharedState::Lock() {
  int error = pthread_mutex_lock(&layout_->mutex);
  if (error == EOWNERDEAD) {
    RepairAfterOwnerDied();
    pthread_mutex_consistent(&layout_->mutex);
  }
}

void SharedState::Unlock() { pthread_mutex_unlock(&layout_->mutex); }

// The holder died between updating a slot and its device: the slots are the truth.
void SharedState::RepairAfterOwnerDied() {
  log::Write(log::Level::kInfo, "fakegpu",
             "%s: a process died holding the state's lock; recomputing the totals",
             Describe(path_).c_str());
  for (int device = 0; device < kMaxDevices; ++device) {
    uint64_t used = 0;
    for (const ProcessSlot& slot : layout_->processes) {
      if (slot.pid != 0) used += slot.used_bytes[device];
    }
    DeviceSlot& totals = layout_->devices[device];
    totals.used_bytes = used;
    if (totals.peak_bytes < used) totals.peak_bytes = used;
  }
}

void SharedState::FreeSlot(int slot) {
  ProcessSlot& process = layout_->processes[slot];
  for (int device = 0; device < kMaxDevices; ++device) {
    DeviceSlot& totals = layout_->devices[device];
    uint64_t held = process.used_bytes[device];
    totals.used_bytes = held > totals.used_bytes ? 0 : totals.used_bytes - held;
  }
  std::memset(static_cast<void*>(&process), 0, sizeof process);
}

void SharedState::ReclaimDeadProcesses() {
  layout_->last_scan_ns = MonotonicNs();
  for (int slot = 0; slot < kMaxProcesses; ++slot) {
    const ProcessSlot& process = layout_->processes[slot];
    if (process.pid == 0) continue;
    if (ProcessStartTime(process.pid) != process.start_time) FreeSlot(slot);
  }
}

void SharedState::MaybeReclaimDeadProcesses() {
  if (MonotonicNs() - layout_->last_scan_ns >= kScanIntervalNs) ReclaimDeadProcesses();
}

Status SharedState::Configure(const std::vector<uint64_t>& device_memory_bytes) {
  Lock();
  ReclaimDeadProcesses();
  bool idle = true;
  for (const ProcessSlot& process : layout_->processes) idle = idle && process.pid == 0;
  bool same = layout_->device_count == device_memory_bytes.size();
  for (size_t device = 0; same && device < device_memory_bytes.size(); ++device) {
    same = layout_->devices[device].total_bytes == device_memory_bytes[device];
  }
  if (!same && !idle) {
    uint32_t count = layout_->device_count;
    Unlock();
    return Status::Error(Describe(path_) + " is in use by processes that see " +
                         std::to_string(count) + " device(s) of other sizes than this process's " +
                         std::to_string(device_memory_bytes.size()) +
                         "; give processes with different TESSERA_FAKEGPU_CONFIG different "
                         "state files");
  }
  if (!same) {
    std::memset(static_cast<void*>(layout_->devices), 0, sizeof layout_->devices);
    std::memset(static_cast<void*>(layout_->timelines), 0, sizeof layout_->timelines);
    layout_->device_count = static_cast<uint32_t>(device_memory_bytes.size());
    for (size_t device = 0; device < device_memory_bytes.size(); ++device) {
      layout_->devices[device].total_bytes = device_memory_bytes[device];
    }
  }
  Unlock();
  return Status::Ok();
}

Result<int> SharedState::RegisterProcess(int pid, uint64_t start_time) {
  Lock();
  MaybeReclaimDeadProcesses();
  for (int pass = 0; pass < 2; ++pass) {
    int free_slot = -1;
    for (int slot = 0; slot < kMaxProcesses; ++slot) {
      ProcessSlot& process = layout_->processes[slot];
      if (process.pid == pid && process.start_time == start_time) {
        Unlock();
        return slot;
      }
      if (process.pid == 0 && free_slot < 0) free_slot = slot;
    }
    if (free_slot >= 0) {
      ProcessSlot& process = layout_->processes[free_slot];
      process.start_time = start_time;
      process.pid = pid;
      Unlock();
      return free_slot;
    }
    ReclaimDeadProcesses();
  }
  Unlock();
  return Status::Error(Describe(path_) + ": all " + std::to_string(kMaxProcesses) +
                       " process slots are held by live processes");
}

void SharedState::ReleaseProcess(int slot) {
  Lock();
  FreeSlot(slot);
  Unlock();
}

bool SharedState::Charge(int slot, int device, uint64_t bytes) {
  Lock();
  MaybeReclaimDeadProcesses();
  DeviceSlot& totals = layout_->devices[device];
  if (bytes > totals.total_bytes - totals.used_bytes) {
    ReclaimDeadProcesses();
    if (bytes > totals.total_bytes - totals.used_bytes) {
      Unlock();
      return false;
    }
  }
  layout_->processes[slot].used_bytes[device] += bytes;
  totals.used_bytes += bytes;
  if (totals.peak_bytes < totals.used_bytes) totals.peak_bytes = totals.used_bytes;
  Unlock();
  return true;
}

void SharedState::Uncharge(int slot, int device, uint64_t bytes) {
  Lock();
  uint64_t& held = layout_->processes[slot].used_bytes[device];
  DeviceSlot& totals = layout_->devices[device];
  // Clamped: a slot reclaimed by mistake (it cannot happen to a live process) must not wrap.
  uint64_t taken = bytes > held ? held : bytes;
  held -= taken;
  totals.used_bytes = taken > totals.used_bytes ? 0 : totals.used_bytes - taken;
  Unlock();
}

uint64_t SharedState::QueueKernels(int device, int pid, const uint64_t* durations_ns,
                                   size_t count) {
  Lock();
  DeviceTimeline& timeline = layout_->timelines[device];
  uint64_t now = MonotonicNs();
  for (size_t i = 0; i < count; ++i) {
    uint64_t start = now > timeline.busy_until_ns ? now : timeline.busy_until_ns;
    uint64_t end = start + durations_ns[i];
    KernelRunSlot* newest =
        timeline.run_count == 0 ? nullptr
                                : &timeline.runs[(timeline.run_count - 1) % kKernelRuns];
    if (newest != nullptr && newest->pid == pid && newest->end_ns == start) {
      newest->end_ns = end;
    } else {
      timeline.runs[timeline.run_count % kKernelRuns] = {start, end, pid, 0};
      ++timeline.run_count;
    }
    timeline.busy_until_ns = end;
  }
  uint64_t end = timeline.busy_until_ns;
  Unlock();
  return end;
}

std::vector<KernelRun> SharedState::KernelRuns(int device, uint64_t since_ns) {
  std::vector<KernelRun> runs;
  Lock();
  const DeviceTimeline& timeline = layout_->timelines[device];
  uint64_t remembered = timeline.run_count < kKernelRuns ? timeline.run_count : kKernelRuns;
  for (uint64_t back = 1; back <= remembered; ++back) {
    const KernelRunSlot& run = timeline.runs[(timeline.run_count - back) % kKernelRuns];
    if (run.end_ns <= since_ns) break;  // runs are ordered: all older ones ended earlier
    runs.push_back({run.start_ns, run.end_ns, run.pid});
  }
  Unlock();
  std::reverse(runs.begin(), runs.end());
  return runs;
}

DeviceUsage SharedState::Device(int device) {
  Lock();
  MaybeReclaimDeadProcesses();
  const DeviceSlot& totals = layout_->devices[device];
  DeviceUsage usage{totals.total_bytes, totals.used_bytes, totals.peak_bytes};
  Unlock();
  return usage;
}

StateSnapshot SharedState::Snapshot() {
  StateSnapshot snapshot;
  Lock();
  ReclaimDeadProcesses();
  uint32_t count = layout_->device_count;
  for (uint32_t device = 0; device < count; ++device) {
    const DeviceSlot& totals = layout_->devices[device];
    snapshot.devices.push_back({totals.total_bytes, totals.used_bytes, totals.peak_bytes});
  }
  for (const ProcessSlot& process : layout_->processes) {
    if (process.pid == 0) continue;
    ProcessUsage usage;
    usage.pid = process.pid;
    usage.start_time = process.start_time;
    usage.used_bytes.assign(process.used_bytes, process.used_bytes + count);
    snapshot.processes.push_back(std::move(usage));
  }
  Unlock();
  return snapshot;
}

void SharedState::ResetPeaks() {
  Lock();
  for (DeviceSlot& totals : layout_->devices) totals.peak_bytes = totals.used_bytes;
  Unlock();
}

}  // namespace tessera::fakegpu
