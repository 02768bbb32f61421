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

// The pid namespace in whose numbering this process's /proc names processes, as the inode number
// of the namespace's file (what `stat -L /proc/self/ns/pid` says; every namespace file is on the
// one nsfs, so the inode alone names it). That is this process's own pid namespace when its /proc
// was mounted there, as a container's is; then getpid() is the pid /proc knows it by, and
// ProcessStartTime(pid) of pids recorded by processes with the same value is their start time.
// 0 when that cannot be told: /proc was mounted in an ancestor namespace (getpid() and /proc
// number processes differently), or /proc/self/status has no NSpid line or cannot be read.
uint64_t PidNamespaceOfProc();

// The inode of the kernel's initial pid namespace (PROC_PID_INIT_INO): the node's own. A process
// whose PidNamespaceOfProc() is this has the pid the driver and NVML know it by.
inline constexpr uint64_t kInitialPidNamespace = 0xEFFFFFFCu;

// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
int64_t MonotonicNs();

}  // namespace tessera

#endif  // TESSERA_COMMON_PROCESS_H_
