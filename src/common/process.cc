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

uint64_t PidNamespaceOfProc() {
  int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
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
  if (line == nullptr) return 0;
  line += std::strlen("\nNSpid:");
  const char* end = std::strchr(line, '\n');
  if (end == nullptr) return 0;
  int entries = 0;
  long first = 0;
  for (const char* cursor = line; cursor < end;) {
    if (*cursor == ' ' || *cursor == '\t') {
      ++cursor;
      continue;
    }
    char* after = nullptr;
    long pid = std::strtol(cursor, &after, 10);
    if (after == cursor || after > end) return 0;
    if (entries++ == 0) first = pid;
    cursor = after;
  }
  if (entries != 1 || first != static_cast<long>(getpid())) return 0;
  struct stat info {};
  if (::stat("/proc/self/ns/pid", &info) != 0) return 0;
  return static_cast<uint64_t>(info.st_ino);
}

int64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

}  // namespace tessera
