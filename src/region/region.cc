#include "region/region.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>

#include "common/log.h"

namespace tessera::region {

namespace {

constexpr MappedFileFormat kFormat = {
    "a Tessera region",
    "it was made by another Tessera version. Stop its processes and remove it, or use a new path",
    kMagic,
    sizeof(RegionLayout::magic),
    kLayoutVersion,
    offsetof(RegionLayout, layout_version),
    offsetof(RegionLayout, size),
    sizeof(RegionLayout),
    // A region without a magic number is refused, not made again: zeroing the file must not
    // give a container's processes a fresh account (fail closed).
    /*remake_unfinished=*/false,
};

// A device's UUID, never read past its field (a forged region need not NUL-terminate it).
std::string_view UuidOf(const DeviceRecord& record) {
  return std::string_view(record.uuid, strnlen(record.uuid, kUuidBytes));
}

// Recomputes the per-device totals from the slots. Called by the holder that inherits the lock
// from a process that died while holding it, whose update may be half done.
void RepairTotals(RegionLayout* layout) {
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

// Fills a zeroed layout (the header is written after, by MappedFile).
Status InitializeLayout(RegionLayout* layout, const RegionConfig& config) {
  Status mutex = InitializeRobustMutex(&layout->lock);
  if (!mutex.ok()) return mutex;
  for (int device = 0; device < kMaxDevices; ++device) {
    layout->devices[device].memory_limit = config.devices[device].memory_bytes;
    layout->devices[device].sm_percent = config.devices[device].sm_percent;
  }
  layout->ready.store(1, std::memory_order_release);
  return Status::Ok();
}

// Drops every charge of a slot and frees it. REQUIRES: the lock is held.
void ClearSlotLocked(RegionLayout* layout, int slot) {
  Slot& record = layout->slots[slot];
  for (int device = 0; device < kMaxDevices; ++device) {
    uint64_t charged = record.used[device].exchange(0, std::memory_order_relaxed);
    std::atomic<uint64_t>& total = layout->devices[device].used;
    uint64_t current = total.load(std::memory_order_relaxed);
    total.store(current >= charged ? current - charged : 0, std::memory_order_relaxed);
  }
  record.command[0] = '\0';
  record.start_time.store(0, std::memory_order_relaxed);
  record.pid_namespace.store(0, std::memory_order_relaxed);
  record.driver_pid.store(0, std::memory_order_relaxed);
  record.pid.store(0, std::memory_order_release);
}

}  // namespace

bool SameDeviceUuid(std::string_view a, std::string_view b) {
  // The hex digits after the prefix, lower-cased; dashes are layout, not identity.
  auto digits = [](std::string_view uuid) {
    if (uuid.size() > 4 && uuid[3] == '-') uuid.remove_prefix(4);
    std::string kept;
    kept.reserve(uuid.size());
    for (char c : uuid) {
      if (c != '-') kept.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return kept;
  };
  std::string left = digits(a);
  return !left.empty() && left == digits(b);
}

Region::Region(std::string path, MappedFile file)
    : path_(std::move(path)),
      file_(std::move(file)),
      layout_(static_cast<RegionLayout*>(file_.data())) {}

Region::~Region() = default;

Result<RobustMutexLock> Region::LockLayout() const {
  RegionLayout* layout = layout_;
  return RobustMutexLock::Acquire(&layout_->lock, "region " + path_, [layout] {
    log::Write(log::Level::kInfo, "region", "a process died holding the region lock; repairing");
    RepairTotals(layout);
    return Status::Ok();
  });
}

Result<std::unique_ptr<Region>> Region::Open(const std::string& path,
                                             const RegionConfig* create_with) {
  if (path.empty()) return Status::Error("region path is empty");
  std::string label = "region " + path;
  Result<MappedFile> file =
      MappedFile::Open(path, label, kFormat, create_with != nullptr, [create_with](void* mapping) {
        return InitializeLayout(static_cast<RegionLayout*>(mapping), *create_with);
      });
  if (!file.ok()) return file.status();
  // A region made by a version that wrote its header first, whose creator then died.
  if (static_cast<RegionLayout*>(file->data())->ready.load(std::memory_order_acquire) != 1) {
    return Status::Error(label + ": the file was never fully initialised (its creator died); " +
                         "remove it");
  }
  return std::unique_ptr<Region>(new Region(path, std::move(file).value()));
}

Result<std::unique_ptr<Region>> Region::CreatePrivate(const RegionConfig& config) {
  Result<MappedFile> file = MappedFile::CreateAnonymous(kFormat, [&config](void* mapping) {
    return InitializeLayout(static_cast<RegionLayout*>(mapping), config);
  });
  if (!file.ok()) return file.status();
  return std::unique_ptr<Region>(new Region("(private)", std::move(file).value()));
}

DeviceLimits Region::Limits(int device) const {
  const DeviceRecord& record = layout_->devices[device];
  return {record.memory_limit, record.sm_percent};
}

Status Region::SetLimits(int device, DeviceLimits limits) {
  Result<RobustMutexLock> lock = LockLayout();
  if (!lock.ok()) return lock.status();
  layout_->devices[device].memory_limit = limits.memory_bytes;
  layout_->devices[device].sm_percent = limits.sm_percent;
  return Status::Ok();
}

Status Region::BindDevice(int device, std::string_view uuid) {
  if (device < 0 || device >= kMaxDevices) {
    return Status::Error("device " + std::to_string(device) + " is beyond the " +
                         std::to_string(kMaxDevices) + " devices a region holds");
  }
  if (uuid.empty() || uuid.size() >= kUuidBytes) {
    return Status::Error("device " + std::to_string(device) + " has an invalid UUID");
  }
  Result<RobustMutexLock> lock = LockLayout();
  if (!lock.ok()) return lock.status();
  char* bound = layout_->devices[device].uuid;
  if (bound[0] == '\0') {
    std::memcpy(bound, uuid.data(), uuid.size());
    bound[uuid.size()] = '\0';
    return Status::Ok();
  }
  if (SameDeviceUuid(UuidOf(layout_->devices[device]), uuid)) return Status::Ok();
  return Status::Error("region " + path_ + ": device " + std::to_string(device) + " is " +
                       std::string(UuidOf(layout_->devices[device])) + ", but this process sees " +
                       std::string(uuid) + " as device " + std::to_string(device) +
                       " (do the container's processes see different CUDA_VISIBLE_DEVICES?)");
}

Result<int> Region::FindOrBindDevice(std::string_view uuid, int preferred) {
  if (uuid.empty() || uuid.size() >= kUuidBytes) {
    return Status::Error("region " + path_ + ": the UUID \"" + std::string(uuid) +
                         "\" is not one a region can hold");
  }
  preferred = std::clamp(preferred, 0, kMaxDevices - 1);
  Result<RobustMutexLock> lock = LockLayout();
  if (!lock.ok()) return lock.status();
  for (int device = 0; device < kMaxDevices; ++device) {
    if (SameDeviceUuid(UuidOf(layout_->devices[device]), uuid)) return device;
  }
  for (int step = 0; step < kMaxDevices; ++step) {
    int device = (preferred + step) % kMaxDevices;
    char* bound = layout_->devices[device].uuid;
    if (bound[0] != '\0') continue;
    std::memcpy(bound, uuid.data(), uuid.size());
    bound[uuid.size()] = '\0';
    return device;
  }
  return Status::Error("region " + path_ + ": all " + std::to_string(kMaxDevices) +
                       " devices are bound to other GPUs than " + std::string(uuid));
}

Result<int> Region::FindDevice(std::string_view uuid) const {
  Result<RobustMutexLock> lock = LockLayout();
  if (!lock.ok()) return lock.status();
  for (int device = 0; device < kMaxDevices; ++device) {
    if (SameDeviceUuid(UuidOf(layout_->devices[device]), uuid)) return device;
  }
  return -1;
}

Result<int> Region::ClaimSlot(pid_t pid, uint64_t start_time, std::string_view command) {
  const uint64_t pid_namespace = PidNamespaceOfProc();
  if (pid_namespace == 0) {
    log::Write(log::Level::kWarn, "region",
               "region %s: this process's /proc does not number processes in its own pid "
               "namespace, so no process can tell whether process %d lives: if it dies without "
               "giving its slot back, its charges stay until the region is removed",
               path_.c_str(), static_cast<int>(pid));
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      Result<RobustMutexLock> lock = LockLayout();
      if (!lock.ok()) return lock.status();
      // Clamped: the file is writable by the container's processes, and a forged value must not
      // send us past the mapping.
      uint32_t high_water = std::min<uint32_t>(
          layout_->slot_high_water.load(std::memory_order_relaxed), kMaxProcesses);
      int chosen = -1;
      for (uint32_t i = 0; i < high_water; ++i) {
        Slot& slot = layout_->slots[i];
        int32_t owner = slot.pid.load(std::memory_order_relaxed);
        if (owner == pid && slot.start_time.load(std::memory_order_relaxed) == start_time &&
            slot.pid_namespace.load(std::memory_order_relaxed) == pid_namespace) {
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
        slot.pid_namespace.store(pid_namespace, std::memory_order_relaxed);
        slot.driver_pid.store(0, std::memory_order_relaxed);
        slot.pid.store(pid, std::memory_order_release);
        return chosen;
      }
    }
    Result<int> reaped = Reap(true);
    if (!reaped.ok()) return reaped.status();
    if (*reaped == 0) break;
  }
  return Status::Error("region " + path_ + ": all " + std::to_string(kMaxProcesses) +
                       " process slots are taken by processes that are alive, or that this "
                       "process cannot see (another pid namespace's)");
}

Status Region::ReleaseSlot(int slot) {
  Result<RobustMutexLock> lock = LockLayout();
  if (!lock.ok()) return lock.status();
  ClearSlotLocked(layout_, slot);
  return Status::Ok();
}

Status Region::SetDriverPid(int slot, uint32_t driver_pid) {
  if (slot < 0 || slot >= kMaxProcesses) {
    return Status::Error("region " + path_ + ": slot " + std::to_string(slot) + " does not exist");
  }
  layout_->slots[slot].driver_pid.store(driver_pid, std::memory_order_relaxed);
  return Status::Ok();
}

Result<bool> Region::Reserve(int slot, int device, uint64_t bytes) {
  return ReserveWithin(slot, device, bytes, nullptr);
}

Result<bool> Region::Reserve(int slot, int device, uint64_t bytes, uint64_t limit) {
  return ReserveWithin(slot, device, bytes, &limit);
}

Result<bool> Region::ReserveWithin(int slot, int device, uint64_t bytes,
                                   const uint64_t* given_limit) {
  if (bytes == 0) return true;
  Result<int> reaped = Reap(false);
  if (!reaped.ok()) return reaped.status();
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      Result<RobustMutexLock> lock = LockLayout();
      if (!lock.ok()) return lock.status();
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
    reaped = Reap(true);
    if (!reaped.ok()) return reaped.status();
    if (*reaped == 0) break;
  }
  return false;
}

Status Region::Release(int slot, int device, uint64_t bytes) {
  if (bytes == 0) return Status::Ok();
  Result<RobustMutexLock> lock = LockLayout();
  if (!lock.ok()) return lock.status();
  std::atomic<uint64_t>& mine = layout_->slots[slot].used[device];
  uint64_t charged = mine.load(std::memory_order_relaxed);
  uint64_t dropped = charged >= bytes ? bytes : charged;
  mine.store(charged - dropped, std::memory_order_relaxed);
  std::atomic<uint64_t>& total = layout_->devices[device].used;
  uint64_t current = total.load(std::memory_order_relaxed);
  total.store(current >= dropped ? current - dropped : 0, std::memory_order_relaxed);
  return Status::Ok();
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

Result<int> Region::Reap(bool force) {
  int64_t now = MonotonicNs();
  int64_t last = layout_->last_reap_ns.load(std::memory_order_relaxed);
  if (!force) {
    if (now - last < kReapIntervalNs) return 0;
    // One process reaps per interval; the others go on.
    if (!layout_->last_reap_ns.compare_exchange_strong(last, now)) return 0;
  } else {
    layout_->last_reap_ns.store(now, std::memory_order_relaxed);
  }
  // A pid means a process only in its own pid namespace, and /proc shows this process's: a slot
  // of another namespace cannot be judged here (the host's pid 1 is not a container's pid 1).
  // Without a namespace of its own to compare, this process judges none.
  const uint64_t pid_namespace = PidNamespaceOfProc();
  if (pid_namespace == 0) return 0;
  // Reading /proc is slow, so the dead are found without the lock and re-checked under it.
  struct Candidate {
    int slot;
    int32_t pid;
    uint64_t start_time;
  };
  Candidate dead[64];
  int found = 0;
  int reclaimed = 0;
  auto reclaim_found = [&]() -> Status {
    Result<RobustMutexLock> lock = LockLayout();
    if (!lock.ok()) return lock.status();
    for (int k = 0; k < found; ++k) {
      Slot& candidate = layout_->slots[dead[k].slot];
      if (candidate.pid.load(std::memory_order_relaxed) != dead[k].pid ||
          candidate.start_time.load(std::memory_order_relaxed) != dead[k].start_time ||
          candidate.pid_namespace.load(std::memory_order_relaxed) != pid_namespace) {
        continue;  // already reclaimed, or the slot was claimed anew
      }
      log::Write(log::Level::kInfo, "region", "reclaimed the usage of dead process %d",
                 static_cast<int>(dead[k].pid));
      ClearSlotLocked(layout_, dead[k].slot);
      ++reclaimed;
    }
    found = 0;
    return Status::Ok();
  };
  uint32_t high_water = layout_->slot_high_water.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < high_water && i < kMaxProcesses; ++i) {
    Slot& slot = layout_->slots[i];
    int32_t pid = slot.pid.load(std::memory_order_acquire);
    if (pid == 0) continue;
    if (slot.pid_namespace.load(std::memory_order_relaxed) != pid_namespace) continue;
    uint64_t start_time = slot.start_time.load(std::memory_order_relaxed);
    if (ProcessStartTime(pid) == start_time) continue;
    dead[found++] = {static_cast<int>(i), pid, start_time};
    if (found == 64) {
      Status status = reclaim_found();
      if (!status.ok()) return status;
    }
  }
  if (found > 0) {
    Status status = reclaim_found();
    if (!status.ok()) return status;
  }
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
  } while (
      !record.compute_tat_ns.compare_exchange_weak(old_tat, new_tat, std::memory_order_relaxed));
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

Result<Snapshot> Region::TakeSnapshot() const {
  Snapshot snapshot;
  snapshot.layout_version = layout_->layout_version;
  {
    Result<RobustMutexLock> lock = LockLayout();
    if (!lock.ok()) return lock.status();
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
      process.pid_namespace = slot.pid_namespace.load(std::memory_order_relaxed);
      process.driver_pid = slot.driver_pid.load(std::memory_order_relaxed);
      process.command = std::string(slot.command, strnlen(slot.command, kCommandBytes));
      for (int device = 0; device < kMaxDevices; ++device) {
        process.used[device] = slot.used[device].load(std::memory_order_relaxed);
      }
      snapshot.processes.push_back(std::move(process));
    }
  }
  const uint64_t pid_namespace = PidNamespaceOfProc();
  for (ProcessUsage& process : snapshot.processes) {
    if (pid_namespace == 0 || process.pid_namespace != pid_namespace) {
      process.liveness = Liveness::kUnknown;
    } else {
      process.liveness =
          ProcessStartTime(process.pid) == process.start_time ? Liveness::kAlive : Liveness::kDead;
    }
  }
  return snapshot;
}

}  // namespace tessera::region
