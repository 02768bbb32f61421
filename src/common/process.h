// What the shared files (the region, the fake GPU's state) need to know about processes and time:
// a process's identity beyond its pid, and one clock that every process of the machine shares.
#ifndef TESSERA_COMMON_PROCESS_H_
#define TESSERA_COMMON_PROCESS_H_

#include <sys/types.h>

#include <cstdint>

namespace tessera {

// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or 0 when
// there is no such process, it is a zombie, or pid <= 0. (pid, start time) names one process for
// the life of the machine: a reused pid has another start time.
uint64_t ProcessStartTime(pid_t pid);

// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
int64_t MonotonicNs();

}  // namespace tessera

#endif  // TESSERA_COMMON_PROCESS_H_
