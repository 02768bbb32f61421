// What a kernel driver knows of every process that uses it: its pid and start time on the node,
// whatever pid namespace it runs in (NVML lists processes by those pids). A real driver has them
// from the kernel. The fake lives inside each process, so a process in a pid namespace with its
// own /proc (a container) cannot see them; it asks the node-pids service instead: a unix socket
// served from the node's pid namespace, where the kernel gives the server each caller's pid as
// the node numbers it (SO_PEERCRED) and the server reads the start time from the node's /proc.
// TESSERA_FAKEGPU_NODE_PIDS names the socket; unset, a process's /proc is taken to be the node's
// (as in the local cluster's containers, which keep the host's /proc).
//
// Wire format: the server writes one line "<pid> <start time>\n" to each connection and closes it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace tessera::fakegpu {

inline constexpr const char* kNodePidsVariable = "TESSERA_FAKEGPU_NODE_PIDS";

struct NodeProcess {
  int pid = 0;
  uint64_t start_time = 0;  // ProcessStartTime on the node
  // Whether this process's /proc shows the node's processes, so that it may judge whether a
  // process of the state file lives (false when the service is named but does not answer).
  bool sees_node = true;
};

// This process as the node sees it; computed once per process (again in a fork child).
NodeProcess ThisProcessOnNode();

// The service, on a thread of the calling process (which must be in the node's pid namespace
// and see the node's /proc) until destroyed.
class NodePidService {
 public:
  static Result<std::unique_ptr<NodePidService>> Start(const std::string& path);
  ~NodePidService();
  NodePidService(const NodePidService&) = delete;
  NodePidService& operator=(const NodePidService&) = delete;

  const std::string& path() const { return path_; }

 private:
  NodePidService(std::string path, int listening);
  void Serve() const;

  std::string path_;
  int listening_;
  std::thread thread_;
};

}  // namespace tessera::fakegpu
