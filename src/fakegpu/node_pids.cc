#include "fakegpu/node_pids.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "common/process.h"

namespace tessera::fakegpu {
namespace {

// The pid /proc/self names: the pid in the namespace /proc was mounted in.
int ProcSelfPid() {
  char target[32] = {};
  const ssize_t n = readlink("/proc/self", target, sizeof target - 1);
  if (n <= 0) return 0;
  int pid = 0;
  for (ssize_t i = 0; i < n; ++i) {
    if (target[i] < '0' || target[i] > '9') return 0;
    pid = pid * 10 + (target[i] - '0');
  }
  return pid;
}

bool SocketAddress(const std::string& path, sockaddr_un* address) {
  *address = sockaddr_un{};
  address->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address->sun_path) return false;
  std::memcpy(address->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Asks the service at `path`; false (and says why) when it cannot.
bool AskService(const std::string& path, NodeProcess* answer) {
  sockaddr_un address{};
  if (!SocketAddress(path, &address)) {
    log::Write(log::Level::kError, "fakegpu", "%s=%s: not a usable socket path", kNodePidsVariable,
               path.c_str());
    return false;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  char line[64] = {};
  size_t length = 0;
  bool connected = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  int connect_errno = errno;
  while (connected && length < sizeof line - 1) {
    ssize_t got = read(fd, line + length, sizeof line - 1 - length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    length += static_cast<size_t>(got);
  }
  close(fd);
  if (!connected) {
    log::Write(log::Level::kError, "fakegpu",
               "%s=%s: %s; taking this process's /proc for the node's", kNodePidsVariable,
               path.c_str(), std::strerror(connect_errno));
    return false;
  }
  int pid = 0;
  uint64_t start_time = 0;
  if (std::sscanf(line, "%d %" SCNu64, &pid, &start_time) != 2 || pid <= 0) {
    log::Write(log::Level::kError, "fakegpu", "%s=%s: answered \"%s\", not \"<pid> <start time>\"",
               kNodePidsVariable, path.c_str(), line);
    return false;
  }
  answer->pid = pid;
  answer->start_time = start_time;
  return true;
}

NodeProcess Compute() {
  NodeProcess self;
  const char* service = std::getenv(kNodePidsVariable);
  const int proc_pid = ProcSelfPid();
  const bool asked = service != nullptr && *service != '\0';
  if (asked && AskService(service, &self)) {
    self.sees_node = proc_pid == self.pid;
    return self;
  }
  self.pid = proc_pid > 0 ? proc_pid : getpid();
  self.start_time = ProcessStartTime(self.pid);
  // A service was named but did not answer: this /proc may not be the node's, so this process
  // must not judge the others.
  self.sees_node = !asked;
  return self;
}

// Written once per process; a race computes the same answer twice.
std::atomic<pid_t> g_computed_for{0};
std::atomic<int> g_pid{0};
std::atomic<uint64_t> g_start_time{0};
std::atomic<bool> g_sees_node{true};

}  // namespace

NodeProcess ThisProcessOnNode() {
  if (g_computed_for.load(std::memory_order_acquire) != getpid()) {
    NodeProcess computed = Compute();
    g_pid.store(computed.pid, std::memory_order_relaxed);
    g_start_time.store(computed.start_time, std::memory_order_relaxed);
    g_sees_node.store(computed.sees_node, std::memory_order_relaxed);
    g_computed_for.store(getpid(), std::memory_order_release);
  }
  return {g_pid.load(std::memory_order_relaxed), g_start_time.load(std::memory_order_relaxed),
          g_sees_node.load(std::memory_order_relaxed)};
}

Result<std::unique_ptr<NodePidService>> NodePidService::Start(const std::string& path) {
  sockaddr_un address{};
  if (!SocketAddress(path, &address)) {
    return Status::Error("node-pids socket " + path + ": not a usable socket path");
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error("node-pids socket: " + std::string(std::strerror(errno)));
  unlink(path.c_str());
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      listen(fd, 64) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    return Status::Error("node-pids socket " + path + ": " + why);
  }
  return std::unique_ptr<NodePidService>(new NodePidService(path, fd));
}

NodePidService::NodePidService(std::string path, int listening)
    : path_(std::move(path)), listening_(listening), thread_([this] { Serve(); }) {}

NodePidService::~NodePidService() {
  shutdown(listening_, SHUT_RDWR);  // wakes accept()
  thread_.join();
  close(listening_);
  unlink(path_.c_str());
}

void NodePidService::Serve() const {
  for (;;) {
    int client = accept4(listening_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    ucred peer{};
    socklen_t size = sizeof peer;
    if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0 && peer.pid > 0) {
      char line[64];
      int length = std::snprintf(line, sizeof line, "%d %" PRIu64 "\n", static_cast<int>(peer.pid),
                                 ProcessStartTime(peer.pid));
      if (write(client, line, static_cast<size_t>(length)) != length) {
        log::Write(log::Level::kError, "fakegpu", "node-pids: could not answer pid %d",
                   static_cast<int>(peer.pid));
      }
    }
    close(client);
  }
}

}  // namespace tessera::fakegpu
