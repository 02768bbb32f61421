#include "node/shared_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "common/units.h"

namespace tessera::node {
namespace {

std::string Errno(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

Status MakeDirectory(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Status::Error(Errno("cannot create", path));
  }
  // mkdir's mode passes through the umask; the region directory must be 0777 whatever it is.
  if (chmod(path.c_str(), mode) != 0) return Status::Error(Errno("cannot chmod", path));
  return Status::Ok();
}

Status MakeDirectories(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::Error(Errno("cannot create", prefix));
    }
    if (slash == std::string::npos) return Status::Ok();
  }
}

// Writes `text` to `path` through a temporary file renamed over it, so that a reader sees the
// old file or the new one, never half of one. No fsync: these files describe live containers,
// which a crash of the machine ends too, and the page cache outlives a crash of the agent; an
// fsync per file cost kubelet's serial pod admission milliseconds per pod in a burst.
Status WriteAtomically(const std::string& path, const std::string& text, mode_t mode) {
  const std::string temporary = path + ".tmp";
  unlink(temporary.c_str());
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::Error(Errno("cannot create", temporary));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status error = Status::Error(Errno("cannot write", temporary));
      close(fd);
      unlink(temporary.c_str());
      return error;
    }
    written += static_cast<size_t>(n);
  }
  if (fchmod(fd, mode) != 0) {
    Status error = Status::Error(Errno("cannot complete", temporary));
    close(fd);
    unlink(temporary.c_str());
    return error;
  }
  close(fd);
  if (rename(temporary.c_str(), path.c_str()) != 0) {
    Status error = Status::Error(Errno("cannot rename over", path));
    unlink(temporary.c_str());
    return error;
  }
  return Status::Ok();
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Status RemoveTree(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) {
    if (errno == ENOENT) return Status::Ok();
    if (errno == ENOTDIR) {
      return unlink(path.c_str()) == 0 ? Status::Ok() : Status::Error(Errno("cannot remove", path));
    }
    return Status::Error(Errno("cannot open", path));
  }
  Status status;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    const std::string child = path + "/" + name;
    struct stat st = {};
    if (lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      if (Status s = RemoveTree(child); !s.ok()) status = s;
    } else if (unlink(child.c_str()) != 0) {
      status = Status::Error(Errno("cannot remove", child));
    }
  }
  closedir(dir);
  if (rmdir(path.c_str()) != 0 && errno != ENOENT) {
    status = Status::Error(Errno("cannot remove", path));
  }
  return status;
}

}  // namespace

Status MemoryLedger::Set(const std::string& key, const std::map<std::string, uint64_t>& bytes) {
  for (const auto& [uuid, wanted] : bytes) {
    auto capacity = capacity_.find(uuid);
    if (capacity == capacity_.end()) {
      return Status::Error("GPU " + uuid + " is not a shared GPU of this node");
    }
    uint64_t sum = wanted;
    for (const auto& [other, limits] : allocations_) {
      if (other == key) continue;
      auto it = limits.find(uuid);
      if (it != limits.end()) sum += it->second;
    }
    if (sum > capacity->second) {
      return Status::Error("GPU " + uuid + ": the memory limits of its shares would sum to " +
                           std::to_string(sum / kMiB) + " MiB, more than its " +
                           std::to_string(capacity->second / kMiB) + " MiB");
    }
  }
  allocations_[key] = bytes;
  return Status::Ok();
}

void MemoryLedger::Release(const std::string& key) { allocations_.erase(key); }

std::map<std::string, uint64_t> MemoryLedger::Sums() const {
  std::map<std::string, uint64_t> sums;
  for (const auto& [uuid, capacity] : capacity_) sums[uuid] = 0;
  for (const auto& [key, limits] : allocations_) {
    for (const auto& [uuid, bytes] : limits) sums[uuid] += bytes;
  }
  return sums;
}

std::string OwnerFileText(const IdentifiedContainer& owner) {
  std::string text = "pod=" + PodKey(owner.namespace_name, owner.pod) + "\n";
  text += "container=" + owner.container + "\n";
  for (const auto& gpu : owner.gpus) {
    text += "gpu=" + gpu.uuid + " " + std::to_string(gpu.memory_mib) + " " +
            std::to_string(gpu.cores) + "\n";
  }
  return text;
}

Result<IdentifiedContainer> ParseOwnerFile(const std::string& text) {
  IdentifiedContainer owner;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("pod=", 0) == 0) {
      const std::string key = line.substr(4);
      const size_t slash = key.find('/');
      if (slash == std::string::npos) return Status::Error("owner: bad line \"" + line + "\"");
      owner.namespace_name = key.substr(0, slash);
      owner.pod = key.substr(slash + 1);
    } else if (line.rfind("container=", 0) == 0) {
      owner.container = line.substr(10);
    } else if (line.rfind("gpu=", 0) == 0) {
      std::istringstream fields(line.substr(4));
      kube::GpuGrant gpu;
      if (!(fields >> gpu.uuid >> gpu.memory_mib >> gpu.cores) || gpu.memory_mib <= 0) {
        return Status::Error("owner: bad line \"" + line + "\"");
      }
      owner.gpus.push_back(gpu);
    } else if (!line.empty()) {
      return Status::Error("owner: unknown line \"" + line + "\"");
    }
  }
  if (owner.pod.empty() || owner.container.empty()) {
    return Status::Error("owner: no pod or container");
  }
  return owner;
}

Result<AllocationStore> AllocationStore::Open(const std::string& state_dir) {
  if (state_dir.empty() || state_dir.front() != '/') {
    return Status::Error("--state-dir: \"" + state_dir + "\" is not an absolute path");
  }
  AllocationStore store(state_dir);
  if (Status s = MakeDirectories(store.containers_dir()); !s.ok()) {
    return Status::Error("--state-dir: " + s.message());
  }
  if (Status s =
          WriteAtomically(store.preload_path(), std::string(kContainerShimPath) + "\n", 0444);
      !s.ok()) {
    return Status::Error("--state-dir: " + s.message());
  }
  return store;
}

Result<StoredAllocation> AllocationStore::Create(const std::vector<std::string>& device_ids) {
  // Wall-clock nanoseconds, zero-padded, then a counter: names sort by creation, also across an
  // agent restart.
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  char name[64];
  std::snprintf(name, sizeof name, "%020lld-%06llu", static_cast<long long>(now),
                static_cast<unsigned long long>(++counter_ % 1000000));
  StoredAllocation allocation;
  allocation.id = name;
  allocation.path = containers_dir() + "/" + name;
  allocation.device_ids = device_ids;
  std::string devices;
  for (const auto& id : device_ids) devices += id + "\n";
  Status status = MakeDirectory(allocation.path, 0755);
  if (status.ok()) status = MakeDirectory(allocation.path + "/region", 0777);
  if (status.ok()) status = WriteAtomically(allocation.path + "/devices", devices, 0444);
  // Until PreStartContainer writes the container's limits, they are next to nothing: a
  // container that started without that step (an empty file would mean "no limits") gets 1 MiB.
  if (status.ok()) status = WriteAtomically(allocation.path + "/limits", kPendingLimits, 0444);
  if (!status.ok()) {
    (void)RemoveTree(allocation.path);  // best effort: the first error is the one to report
    return status;
  }
  return allocation;
}

std::vector<StoredAllocation> AllocationStore::List() const {
  std::vector<StoredAllocation> out;
  DIR* dir = opendir(containers_dir().c_str());
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.empty() || name[0] == '.') continue;
    StoredAllocation allocation;
    allocation.id = name;
    allocation.path = containers_dir() + "/" + name;
    auto devices = ReadFile(allocation.path + "/devices");
    if (!devices) {
      log::Write(log::Level::kWarn, "node", "%s has no devices file; ignored",
                 allocation.path.c_str());
      continue;
    }
    std::istringstream lines(*devices);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty()) allocation.device_ids.push_back(line);
    }
    if (auto owner = ReadFile(allocation.path + "/owner")) {
      auto parsed = ParseOwnerFile(*owner);
      if (parsed.ok()) {
        allocation.owner = std::move(*parsed);
      } else {
        log::Write(log::Level::kWarn, "node", "%s: %s", allocation.path.c_str(),
                   parsed.status().message().c_str());
      }
    }
    out.push_back(std::move(allocation));
  }
  closedir(dir);
  std::sort(out.begin(), out.end(),
            [](const StoredAllocation& a, const StoredAllocation& b) { return a.id < b.id; });
  return out;
}

Status AllocationStore::Claim(const StoredAllocation& allocation, const IdentifiedContainer& owner,
                              const std::string& limits_text) {
  if (Status s = WriteAtomically(allocation.path + "/limits", limits_text, 0444); !s.ok()) return s;
  return WriteAtomically(allocation.path + "/owner", OwnerFileText(owner), 0444);
}

Status AllocationStore::Remove(const StoredAllocation& allocation) {
  return RemoveTree(allocation.path);
}

}  // namespace tessera::node
