// The node board: one small file, shared by every container on the node (TESSERA_NODE_BOARD), with
// one entry per GPU (by UUID) in which high-priority processes (CUDA_TASK_PRIORITY=0) publish when
// they last launched on it, and which low-priority ones (CUDA_TASK_PRIORITY=1) read to yield.
// A zero-filled file is a valid empty board, so processes may create it concurrently; entries
// are claimed with a compare-and-swap and never move. Lock-free.
#ifndef TESSERA_SHIM_NODE_BOARD_H_
#define TESSERA_SHIM_NODE_BOARD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tessera::shim {

class NodeBoard {
 public:
  static constexpr int kEntries = 64;

  // Maps the board at `path`, creating the file if it is missing.
  static Result<std::unique_ptr<NodeBoard>> Open(const std::string& path);
  ~NodeBoard();
  NodeBoard(const NodeBoard&) = delete;
  NodeBoard& operator=(const NodeBoard&) = delete;

  // Records a high-priority launch on the GPU `uuid` at `now_ns` (CLOCK_MONOTONIC).
  void MarkHighPriorityLaunch(std::string_view uuid, int64_t now_ns);
  // When a high-priority process last launched on `uuid` (0: never, or the board is full).
  int64_t LastHighPriorityLaunch(std::string_view uuid) const;

  struct Layout;

 private:
  explicit NodeBoard(Layout* layout) : layout_(layout) {}
  Layout* layout_;
};

}  // namespace tessera::shim

#endif  // TESSERA_SHIM_NODE_BOARD_H_
