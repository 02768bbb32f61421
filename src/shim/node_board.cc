#include "shim/node_board.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace tessera::shim {

struct NodeBoard::Layout {
  struct Entry {
    std::atomic<uint64_t> uuid_hash;  // 0: free
    std::atomic<int64_t> last_high_launch_ns;
  };
  Entry entries[kEntries];
};

namespace {

// FNV-1a, never 0 (0 marks a free entry).
uint64_t HashUuid(std::string_view uuid) {
  uint64_t hash = 1469598103934665603ULL;
  for (char c : uuid) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash == 0 ? 1 : hash;
}

// The entry of `uuid`, claiming a free one when `claim`; nullptr when absent (or the board is
// full).
NodeBoard::Layout::Entry* FindEntry(NodeBoard::Layout* layout, std::string_view uuid, bool claim) {
  uint64_t hash = HashUuid(uuid);
  for (int probe = 0; probe < NodeBoard::kEntries; ++probe) {
    auto& entry = layout->entries[(hash + probe) % NodeBoard::kEntries];
    uint64_t held = entry.uuid_hash.load(std::memory_order_acquire);
    if (held == hash) return &entry;
    if (held != 0) continue;
    if (!claim) return nullptr;
    if (entry.uuid_hash.compare_exchange_strong(held, hash) || held == hash) return &entry;
  }
  return nullptr;
}

}  // namespace

Result<std::unique_ptr<NodeBoard>> NodeBoard::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    return Status::Error("node board " + path + ": cannot open: " + std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || (static_cast<size_t>(info.st_size) < sizeof(Layout) &&
                                  ::ftruncate(fd, sizeof(Layout)) != 0)) {
    std::string message = "node board " + path + ": cannot size: " + std::strerror(errno);
    ::close(fd);
    return Status::Error(message);
  }
  void* mapping = ::mmap(nullptr, sizeof(Layout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapping == MAP_FAILED) {
    return Status::Error("node board " + path + ": cannot map: " + std::strerror(errno));
  }
  return std::unique_ptr<NodeBoard>(new NodeBoard(static_cast<Layout*>(mapping)));
}

NodeBoard::~NodeBoard() { ::munmap(layout_, sizeof(Layout)); }

void NodeBoard::MarkHighPriorityLaunch(std::string_view uuid, int64_t now_ns) {
  Layout::Entry* entry = FindEntry(layout_, uuid, true);
  if (entry == nullptr) return;
  int64_t last = entry->last_high_launch_ns.load(std::memory_order_relaxed);
  while (last < now_ns && !entry->last_high_launch_ns.compare_exchange_weak(
                              last, now_ns, std::memory_order_relaxed)) {
  }
}

int64_t NodeBoard::LastHighPriorityLaunch(std::string_view uuid) const {
  Layout::Entry* entry = FindEntry(layout_, uuid, false);
  return entry == nullptr ? 0 : entry->last_high_launch_ns.load(std::memory_order_relaxed);
}

}  // namespace tessera::shim
