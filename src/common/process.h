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

// This process as its /proc numbers processes: the pid /proc knows it by, and the pid namespace
// of that numbering as the inode number of the namespace's file (what `stat -L /proc/self/ns/pid`
// says; every namespace file is on the one nsfs, so the inode alone names it). Processes that
// record (pid, ProcessStartTime(pid)) with the same namespace can judge each other's liveness.
//  * /proc mounted in the process's own pid namespace (a container's, or the node's): getpid()
//    and that namespace.
//  * /proc of an ancestor namespace (a container that keeps the host's /proc): the pid there
//    (the first of /proc/self/status's NSpid) and that namespace, when it is the node's (the
//    initial namespace: only its /proc shows kernel threads). No process can name another
//    ancestor of its own namespace.
// pid_namespace is 0 when it cannot be told (no NSpid line, another ancestor's /proc); pid is
// then getpid().
struct ProcIdentity {
  pid_t pid = 0;
  uint64_t pid_namespace = 0;
};
ProcIdentity ThisProcessInProc();

// ThisProcessInProc().pid_namespace.
uint64_t PidNamespaceOfProc();

// The inode of the kernel's initial pid namespace (PROC_PID_INIT_INO): the node's own. A process
// whose PidNamespaceOfProc() is this is known to the driver and NVML by ThisProcessInProc().pid.
inline constexpr uint64_t kInitialPidNamespace = 0xEFFFFFFCu;

// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
int64_t MonotonicNs();

}  // namespace tessera

#endif  // TESSERA_COMMON_PROCESS_H_
