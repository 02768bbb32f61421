#include "common/process.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tessera {

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
  // Field 3 is the state; the start time is field 22, 19 fields further on.
  for (int field = 3; field < 22; ++field) {
    cursor = std::strchr(cursor, ' ');
    if (cursor == nullptr) return 0;
    ++cursor;
  }
  return std::strtoull(cursor, nullptr, 10);
}

namespace {

// Whether /proc numbers processes in the kernel's initial pid namespace: only there are kernel
// threads to be seen, kthreadd as pid 2 with no parent.
bool ProcIsOfTheInitialNamespace() {
  int fd = ::open("/proc/2/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[512];
  ssize_t got = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (got <= 0) return false;
  text[got] = '\0';
  return std::strncmp(text, "Name:\tkthreadd\n", std::strlen("Name:\tkthreadd\n")) == 0 &&
         std::strstr(text, "\nPPid:\t0\n") != nullptr;
}

}  // namespace

ProcIdentity ThisProcessInProc() {
  ProcIdentity self{getpid(), 0};
  int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return self;
  char text[4096];
  size_t length = 0;
  for (;;) {
    ssize_t got = ::read(fd, text + length, sizeof text - 1 - length);
    if (got <= 0) break;
    length += static_cast<size_t>(got);
    if (length == sizeof text - 1) break;
  }
  ::close(fd);
  text[length] = '\0';
  // "NSpid:" lists the process's pid in each namespace from the one /proc was mounted in down to
  // its own: one entry when they are the same.
  const char* line = std::strstr(text, "\nNSpid:");
  if (line == nullptr) return self;
  line += std::strlen("\nNSpid:");
  const char* end = std::strchr(line, '\n');
  if (end == nullptr) return self;
  int entries = 0;
  long first = 0;
  long last = 0;
  for (const char* cursor = line; cursor < end;) {
    if (*cursor == ' ' || *cursor == '\t') {
      ++cursor;
      continue;
    }
    char* after = nullptr;
    long pid = std::strtol(cursor, &after, 10);
    if (after == cursor || after > end || pid <= 0) return self;
    if (entries++ == 0) first = pid;
    last = pid;
    cursor = after;
  }
  if (entries == 0 || last != static_cast<long>(getpid())) return self;
  // One entry: /proc is of the process's own namespace. More: of an ancestor's, which it can
  // name only when it is the node's, the one with kernel threads. (The kernel lets no process
  // reach an ancestor of its own pid namespace: NS_GET_PARENT refuses, and /proc/1/ns/pid is
  // another process's.)
  if (entries == 1) {
    struct stat info {};
    if (::stat("/proc/self/ns/pid", &info) != 0) return self;
    self.pid_namespace = static_cast<uint64_t>(info.st_ino);
  } else if (ProcIsOfTheInitialNamespace()) {
    self.pid_namespace = kInitialPidNamespace;
  } else {
    return self;
  }
  self.pid = static_cast<pid_t>(first);
  return self;
}

uint64_t PidNamespaceOfProc() { return ThisProcessInProc().pid_namespace; }

int64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

}  // namespace tessera
