#include "region/region.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace tessera::region {

namespace {

constexpr uint32_t kMagic = 0x41525354;  // "TSRA" in a little-endian dump
constexpr uint32_t kLayoutVersion = 2;  // 2: the compute limiter's per-device budget
constexpr size_t kUuidBytes = 64;
constexpr size_t kCommandBytes = 16;

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int32_t>::is_always_lock_free);
static_assert(std::atomic<int64_t>::is_always_lock_free);

struct DeviceRecord {
  char uuid[kUuidBytes];
  uint64_t memory_limit;
  uint32_t sm_percent;
  uint32_t padding;
  std::atomic<uint64_t> used;  // the sum of the slots' used[] for this device
  std::atomic<uint64_t> context_estimate;  // bytes the last context created on it took
  // The compute budget (see ChargeCompute): the bucket as its "theoretical arrival time", the
  // device time charged so far, and the share achieved over the last completed window.
  std::atomic<int64_t> compute_tat_ns;
  std::atomic<int64_t> compute_charged_ns;
  std::atomic<int64_t> share_window_start_ns;
  std::atomic<int64_t> share_window_charged_ns;  // compute_charged_ns at the window's start
  std::atomic<int64_t> share_measured_at_ns;     // when last_share_permille was computed
  std::atomic<uint32_t> last_share_permille;
  uint32_t padding2;
  uint64_t reserved[4];
};

struct Slot {
  std::atomic<int32_t> pid;  // 0: free
  uint32_t padding;
  std::atomic<uint64_t> start_time;
  char command[kCommandBytes];
  std::atomic<uint64_t> used[kMaxDevices];
  uint64_t reserved[2];
};

int64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// A device's UUID, never read past its field (a forged region need not NUL-terminate it).
std::string_view UuidOf(const DeviceRecord& record) {
  return std::string_view(record.uuid, strnlen(record.uuid, kUuidBytes));
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

struct Region::Layout {
  uint32_t magic;
  uint32_t layout_version;
  uint64_t size;
  std::atomic<uint32_t> ready;
  uint32_t padding;
  pthread_mutex_t lock;
  std::atomic<int64_t> last_reap_ns;
  std::atomic<uint32_t> slot_high_water;  // slots at or above this index have never been used
  uint32_t padding2;
  uint64_t reserved[16];
  DeviceRecord devices[kMaxDevices];
  Slot slots[kMaxProcesses];
};

namespace {

// Recomputes the per-device totals from the slots. Called by the holder that inherits the lock
// from a process that died while holding it, whose update may be half done.
void RepairTotals(Region::Layout* layout) {
  uint32_t high_water = layout->slot_high_water.load(std::memory_order_relaxed);
  for (int device = 0; device < kMaxDevices; ++device) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < high_water && i < kMaxProcesses; ++i) {
      if (layout->slots[i].pid.load(std::memory_order_relaxed) == 0) continue;
      total += layout->slots[i].used[device].load(std::memory_order_relaxed);
    }
    layout->devices[device].used.store(total, std::memory_order_relaxed);
  }
}

void InitializeLayout(Region::Layout* layout, const RegionConfig& config) {
  std::memset(static_cast<void*>(layout), 0, sizeof(Region::Layout));
  layout->magic = kMagic;
  layout->layout_version = kLayoutVersion;
  layout->size = sizeof(Region::Layout);
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&layout->lock, &attributes);
  pthread_mutexattr_destroy(&attributes);
  for (int device = 0; device < kMaxDevices; ++device) {
    layout->devices[device].memory_limit = config.devices[device].memory_bytes;
    layout->devices[device].sm_percent = config.devices[device].sm_percent;
  }
  layout->ready.store(1, std::memory_order_release);
}

// Drops every charge of a slot and frees it. REQUIRES: the lock is held.
void ClearSlotLocked(Region::Layout* layout, int slot) {
  Slot& record = layout->slots[slot];
  for (int device = 0; device < kMaxDevices; ++device) {
    uint64_t charged = record.used[device].exchange(0, std::memory_order_relaxed);
    std::atomic<uint64_t>& total = layout->devices[device].used;
    uint64_t current = total.load(std::memory_order_relaxed);
    total.store(current >= charged ? current - charged : 0, std::memory_order_relaxed);
  }
  record.command[0] = '\0';
  record.start_time.store(0, std::memory_order_relaxed);
  record.pid.store(0, std::memory_order_release);
}

}  // namespace

class Region::Lock {
 public:
  explicit Lock(Layout* layout) : layout_(layout) {
    int rc = pthread_mutex_lock(&layout_->lock);
    if (rc == EOWNERDEAD) {
      log::Write(log::Level::kInfo, "region", "a process died holding the region lock; repairing");
      RepairTotals(layout_);
      pthread_mutex_consistent(&layout_->lock);
    } else if (rc != 0) {
      log::Write(log::Level::kError, "region", "cannot lock the region: %s", std::strerror(rc));
    }
  }
  ~Lock() { pthread_mutex_unlock(&layout_->lock); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  Layout* layout_;
};

uint64_t ProcessStartTime(pid_t pid) {
  if (pid <= 0) return 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[1024];
  ssize_t length = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (length <= 0) return 0;
  text[length] = '\0';
  // The command (field 2) may contain spaces and parentheses; fields resume after the last ')'.
  char* cursor = std::strrchr(text, ')');
  if (cursor == nullptr || cursor[1] != ' ') return 0;
  cursor += 2;
  char state = *cursor;
  if (state == 'Z' || state == 'X' || state == 'x') return 0;
  for (int field = 3; field < 22; ++field) {
    cursor = std::strchr(cursor, ' ');
    if (cursor == nullptr) return 0;
    ++cursor;
  }
  return std::strtoull(cursor, nullptr, 10);
}

Region::Region(std::string path, Layout* layout, size_t mapped_bytes)
    : path_(std::move(path)), layout_(layout), mapped_bytes_(mapped_bytes) {}

Region::~Region() { ::munmap(layout_, mapped_bytes_); }

Result<std::unique_ptr<Region>> Region::Open(const std::string& path,
                                             const RegionConfig* create_with) {
  if (path.empty()) return Status::Error("region path is empty");
  int flags = O_RDWR | O_CLOEXEC | (create_with != nullptr ? O_CREAT : 0);
  int fd = ::open(path.c_str(), flags, 0666);
  if (fd < 0) {
    if (errno == ENOENT && create_with == nullptr) {
      return Status::Error("no region at " + path + " (is the path right, and is a process using it?)");
    }
    return Status::Error("region " + path + ": " + Errno("cannot open"));
  }
  // Creation is serialised by a lock on the file itself, which the kernel drops if we die.
  if (::flock(fd, LOCK_EX) != 0) {
    std::string message = "region " + path + ": " + Errno("cannot lock the file");
    ::close(fd);
    return Status::Error(message);
  }
  // The flock must be dropped explicitly: a mapping keeps the open file alive past close().
  auto fail = [&](std::string message) -> Result<std::unique_ptr<Region>> {
    ::flock(fd, LOCK_UN);
    ::close(fd);
    return Status::Error("region " + path + ": " + std::move(message));
  };
  struct stat info {};
  if (::fstat(fd, &info) != 0) return fail(Errno("cannot stat"));
  bool create = info.st_size == 0;
  if (create && create_with == nullptr) return fail("the file is empty (not a region)");
  if (!create) {
    uint32_t header[4] = {};
    if (::pread(fd, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
      return fail("the file is too short to be a region");
    }
    uint64_t size = 0;
    std::memcpy(&size, &header[2], sizeof size);
    if (header[0] != kMagic) return fail("not a Tessera region (bad magic number)");
    if (header[1] != kLayoutVersion || size != sizeof(Layout)) {
      return fail("layout version " + std::to_string(header[1]) + " (" + std::to_string(size) +
                  " bytes), but this Tessera uses version " + std::to_string(kLayoutVersion) +
                  " (" + std::to_string(sizeof(Layout)) +
                  " bytes); it was made by another Tessera version. Stop its processes and "
                  "remove it, or use a new path");
    }
    if (static_cast<uint64_t>(info.st_size) < sizeof(Layout)) return fail("the file is truncated");
  } else if (::ftruncate(fd, sizeof(Layout)) != 0) {
    return fail(Errno("cannot size the file"));
  }
  void* mapping = ::mmap(nullptr, sizeof(Layout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) return fail(Errno("cannot map"));
  auto* layout = static_cast<Layout*>(mapping);
  if (create) InitializeLayout(layout, *create_with);
  ::flock(fd, LOCK_UN);
  ::close(fd);
  if (layout->ready.load(std::memory_order_acquire) != 1) {
    ::munmap(mapping, sizeof(Layout));
    return Status::Error("region " + path + ": the file was never fully initialised (its creator "
                         "died); remove it");
  }
  return std::unique_ptr<Region>(new Region(path, layout, sizeof(Layout)));
}

Result<std::unique_ptr<Region>> Region::CreatePrivate(const RegionConfig& config) {
  void* mapping = ::mmap(nullptr, sizeof(Layout), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) return Status::Error(Errno("cannot map a private region"));
  auto* layout = static_cast<Layout*>(mapping);
  InitializeLayout(layout, config);
  return std::unique_ptr<Region>(new Region("(private)", layout, sizeof(Layout)));
}

DeviceLimits Region::Limits(int device) const {
  const DeviceRecord& record = layout_->devices[device];
  return {record.memory_limit, record.sm_percent};
}

void Region::SetLimits(int device, DeviceLimits limits) {
  Lock lock(layout_);
  layout_->devices[device].memory_limit = limits.memory_bytes;
  layout_->devices[device].sm_percent = limits.sm_percent;
}

Status Region::BindDevice(int device, std::string_view uuid) {
  if (device < 0 || device >= kMaxDevices) {
    return Status::Error("device " + std::to_string(device) + " is beyond the " +
                         std::to_string(kMaxDevices) + " devices a region holds");
  }
  if (uuid.empty() || uuid.size() >= kUuidBytes) {
    return Status::Error("device " + std::to_string(device) + " has an invalid UUID");
  }
  Lock lock(layout_);
  char* bound = layout_->devices[device].uuid;
  if (bound[0] == '\0') {
    std::memcpy(bound, uuid.data(), uuid.size());
    bound[uuid.size()] = '\0';
    return Status::Ok();
  }
  if (UuidOf(layout_->devices[device]) == uuid) return Status::Ok();
  return Status::Error("region " + path_ + ": device " + std::to_string(device) + " is " +
                       std::string(UuidOf(layout_->devices[device])) + ", but this process sees " +
                       std::string(uuid) + " as device " + std::to_string(device) +
                       " (do the container's processes see different CUDA_VISIBLE_DEVICES?)");
}

int Region::FindDevice(std::string_view uuid) const {
  Lock lock(layout_);
  for (int device = 0; device < kMaxDevices; ++device) {
    if (UuidOf(layout_->devices[device]) == uuid) return device;
  }
  return -1;
}

Result<int> Region::ClaimSlot(pid_t pid, uint64_t start_time, std::string_view command) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      Lock lock(layout_);
      // Clamped: the file is writable by the container's processes, and a forged value must not
      // send us past the mapping.
      uint32_t high_water = std::min<uint32_t>(
          layout_->slot_high_water.load(std::memory_order_relaxed), kMaxProcesses);
      int chosen = -1;
      for (uint32_t i = 0; i < high_water; ++i) {
        Slot& slot = layout_->slots[i];
        int32_t owner = slot.pid.load(std::memory_order_relaxed);
        if (owner == pid && slot.start_time.load(std::memory_order_relaxed) == start_time) {
          // The same process again (it exec'd): its earlier image's memory is gone.
          ClearSlotLocked(layout_, static_cast<int>(i));
          chosen = static_cast<int>(i);
          break;
        }
        if (owner == 0 && chosen < 0) chosen = static_cast<int>(i);
      }
      if (chosen < 0 && high_water < kMaxProcesses) {
        chosen = static_cast<int>(high_water);
        layout_->slot_high_water.store(high_water + 1, std::memory_order_relaxed);
      }
      if (chosen >= 0) {
        Slot& slot = layout_->slots[chosen];
        size_t length = std::min(command.size(), kCommandBytes - 1);
        std::memcpy(slot.command, command.data(), length);
        slot.command[length] = '\0';
        slot.start_time.store(start_time, std::memory_order_relaxed);
        slot.pid.store(pid, std::memory_order_release);
        return chosen;
      }
    }
    if (Reap(true) == 0) break;
  }
  return Status::Error("region " + path_ + ": all " + std::to_string(kMaxProcesses) +
                       " process slots are taken by live processes");
}

void Region::ReleaseSlot(int slot) {
  Lock lock(layout_);
  ClearSlotLocked(layout_, slot);
}

bool Region::Reserve(int slot, int device, uint64_t bytes) {
  return ReserveWithin(slot, device, bytes, nullptr);
}

bool Region::Reserve(int slot, int device, uint64_t bytes, uint64_t limit) {
  return ReserveWithin(slot, device, bytes, &limit);
}

bool Region::ReserveWithin(int slot, int device, uint64_t bytes, const uint64_t* given_limit) {
  if (bytes == 0) return true;
  Reap(false);
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      Lock lock(layout_);
      DeviceRecord& record = layout_->devices[device];
      uint64_t used = record.used.load(std::memory_order_relaxed);
      uint64_t limit = given_limit != nullptr ? *given_limit : record.memory_limit;
      bool fits = used <= UINT64_MAX - bytes && (limit == 0 || used + bytes <= limit);
      if (fits) {
        std::atomic<uint64_t>& mine = layout_->slots[slot].used[device];
        mine.store(mine.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
        record.used.store(used + bytes, std::memory_order_relaxed);
        return true;
      }
    }
    if (Reap(true) == 0) break;
  }
  return false;
}

void Region::Release(int slot, int device, uint64_t bytes) {
  if (bytes == 0) return;
  Lock lock(layout_);
  std::atomic<uint64_t>& mine = layout_->slots[slot].used[device];
  uint64_t charged = mine.load(std::memory_order_relaxed);
  uint64_t dropped = charged >= bytes ? bytes : charged;
  mine.store(charged - dropped, std::memory_order_relaxed);
  std::atomic<uint64_t>& total = layout_->devices[device].used;
  uint64_t current = total.load(std::memory_order_relaxed);
  total.store(current >= dropped ? current - dropped : 0, std::memory_order_relaxed);
}

uint64_t Region::Used(int device) const {
  return layout_->devices[device].used.load(std::memory_order_relaxed);
}

uint64_t Region::ContextEstimate(int device) const {
  return layout_->devices[device].context_estimate.load(std::memory_order_relaxed);
}

void Region::SetContextEstimate(int device, uint64_t bytes) {
  layout_->devices[device].context_estimate.store(bytes, std::memory_order_relaxed);
}

uint64_t Region::SlotUsed(int slot, int device) const {
  return layout_->slots[slot].used[device].load(std::memory_order_relaxed);
}

int Region::Reap(bool force) {
  int64_t now = MonotonicNs();
  int64_t last = layout_->last_reap_ns.load(std::memory_order_relaxed);
  if (!force) {
    if (now - last < kReapIntervalNs) return 0;
    // One process reaps per interval; the others go on.
    if (!layout_->last_reap_ns.compare_exchange_strong(last, now)) return 0;
  } else {
    layout_->last_reap_ns.store(now, std::memory_order_relaxed);
  }
  // Reading /proc is slow, so the dead are found without the lock and re-checked under it.
  struct Candidate {
    int slot;
    int32_t pid;
    uint64_t start_time;
  };
  Candidate dead[64];
  int found = 0;
  int reclaimed = 0;
  auto reclaim_found = [&] {
    Lock lock(layout_);
    for (int k = 0; k < found; ++k) {
      Slot& candidate = layout_->slots[dead[k].slot];
      if (candidate.pid.load(std::memory_order_relaxed) != dead[k].pid ||
          candidate.start_time.load(std::memory_order_relaxed) != dead[k].start_time) {
        continue;  // already reclaimed, or the slot was claimed anew
      }
      log::Write(log::Level::kInfo, "region", "reclaimed the usage of dead process %d",
                 static_cast<int>(dead[k].pid));
      ClearSlotLocked(layout_, dead[k].slot);
      ++reclaimed;
    }
    found = 0;
  };
  uint32_t high_water = layout_->slot_high_water.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < high_water && i < kMaxProcesses; ++i) {
    Slot& slot = layout_->slots[i];
    int32_t pid = slot.pid.load(std::memory_order_acquire);
    if (pid == 0) continue;
    uint64_t start_time = slot.start_time.load(std::memory_order_relaxed);
    if (ProcessStartTime(pid) == start_time) continue;
    dead[found++] = {static_cast<int>(i), pid, start_time};
    if (found == 64) reclaim_found();
  }
  if (found > 0) reclaim_found();
  return reclaimed;
}

int64_t Region::ChargeCompute(int device, int64_t cost_ns, int64_t now_ns) {
  return ChargeCompute(device, cost_ns, now_ns, layout_->devices[device].sm_percent);
}

int64_t Region::ChargeCompute(int device, int64_t cost_ns, int64_t now_ns, uint32_t percent) {
  DeviceRecord& record = layout_->devices[device];
  if (percent == 0 || percent > 100) return now_ns;
  // The bucket as a single time (a GCRA): holding `tokens` of device time at share s is
  // tat = now - tokens / s; a charge of c moves tat on by c / s; the bucket is full (capped at
  // s * kComputeBurstNs) when tat = now - kComputeBurstNs, and in debt while tat > now.
  int64_t interval = cost_ns * 100 / static_cast<int64_t>(percent);
  int64_t old_tat = record.compute_tat_ns.load(std::memory_order_relaxed);
  int64_t new_tat = 0;
  do {
    new_tat = std::max(old_tat, now_ns - kComputeBurstNs) + interval;
  } while (!record.compute_tat_ns.compare_exchange_weak(old_tat, new_tat,
                                                         std::memory_order_relaxed));
  record.compute_charged_ns.fetch_add(cost_ns, std::memory_order_relaxed);
  UpdateShareWindow(device, now_ns);
  return new_tat;
}

void Region::AdjustCompute(int device, int64_t delta_ns) {
  AdjustCompute(device, delta_ns, layout_->devices[device].sm_percent);
}

void Region::AdjustCompute(int device, int64_t delta_ns, uint32_t percent) {
  DeviceRecord& record = layout_->devices[device];
  if (percent == 0 || percent > 100 || delta_ns == 0) return;
  record.compute_tat_ns.fetch_add(delta_ns * 100 / static_cast<int64_t>(percent),
                                  std::memory_order_relaxed);
  record.compute_charged_ns.fetch_add(delta_ns, std::memory_order_relaxed);
}

void Region::ForgiveComputeDebt(int device, int64_t now_ns) {
  std::atomic<int64_t>& tat = layout_->devices[device].compute_tat_ns;
  int64_t old_tat = tat.load(std::memory_order_relaxed);
  while (old_tat > now_ns &&
         !tat.compare_exchange_weak(old_tat, now_ns, std::memory_order_relaxed)) {
  }
}

int64_t Region::ComputeReadyAt(int device) const {
  return layout_->devices[device].compute_tat_ns.load(std::memory_order_relaxed);
}

void Region::UpdateShareWindow(int device, int64_t now_ns) {
  DeviceRecord& record = layout_->devices[device];
  int64_t start = record.share_window_start_ns.load(std::memory_order_relaxed);
  if (start != 0 && now_ns - start < kShareWindowNs) return;
  // One caller closes each window; the others go on.
  if (!record.share_window_start_ns.compare_exchange_strong(start, now_ns)) return;
  int64_t charged = record.compute_charged_ns.load(std::memory_order_relaxed);
  int64_t before = record.share_window_charged_ns.exchange(charged, std::memory_order_relaxed);
  // A window is only meaningful when the previous one ended recently (the device was in use).
  if (start != 0 && now_ns - start < 2 * kShareWindowNs) {
    int64_t share = (charged - before) * 1000 / (now_ns - start);
    record.last_share_permille.store(static_cast<uint32_t>(std::clamp<int64_t>(share, 0, 1000)),
                                     std::memory_order_relaxed);
  } else {
    record.last_share_permille.store(0, std::memory_order_relaxed);
  }
  record.share_measured_at_ns.store(now_ns, std::memory_order_relaxed);
}

Snapshot Region::TakeSnapshot() const {
  Snapshot snapshot;
  snapshot.layout_version = layout_->layout_version;
  {
    Lock lock(layout_);
    for (int device = 0; device < kMaxDevices; ++device) {
      const DeviceRecord& record = layout_->devices[device];
      DeviceUsage usage;
      usage.index = device;
      usage.uuid = std::string(UuidOf(record));
      usage.limits = {record.memory_limit, record.sm_percent};
      usage.used = record.used.load(std::memory_order_relaxed);
      // The last window's share holds while the window after it is still open.
      int64_t measured_at = record.share_measured_at_ns.load(std::memory_order_relaxed);
      if (measured_at != 0 && MonotonicNs() - measured_at < 2 * kShareWindowNs) {
        usage.compute_share_permille =
            static_cast<int>(record.last_share_permille.load(std::memory_order_relaxed));
      }
      usage.compute_charged_ns = record.compute_charged_ns.load(std::memory_order_relaxed);
      if (usage.uuid.empty() && usage.used == 0 && usage.limits.memory_bytes == 0 &&
          usage.limits.sm_percent == 0) {
        continue;
      }
      snapshot.devices.push_back(std::move(usage));
    }
    uint32_t high_water = layout_->slot_high_water.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < high_water && i < kMaxProcesses; ++i) {
      const Slot& slot = layout_->slots[i];
      int32_t pid = slot.pid.load(std::memory_order_relaxed);
      if (pid == 0) continue;
      ProcessUsage process;
      process.slot = static_cast<int>(i);
      process.pid = pid;
      process.start_time = slot.start_time.load(std::memory_order_relaxed);
      process.command = std::string(slot.command, strnlen(slot.command, kCommandBytes));
      for (int device = 0; device < kMaxDevices; ++device) {
        process.used[device] = slot.used[device].load(std::memory_order_relaxed);
      }
      snapshot.processes.push_back(std::move(process));
    }
  }
  for (ProcessUsage& process : snapshot.processes) {
    process.alive = ProcessStartTime(process.pid) == process.start_time;
  }
  return snapshot;
}

}  // namespace tessera::region
