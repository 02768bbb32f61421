// What tessera-node keeps for the containers on shared GPUs:
//
//  - AllocationStore: one directory per container allocation on the host, under
//    <state-dir>/containers/<id>/, made by Allocate and completed by PreStartContainer:
//        devices     the device IDs kubelet gave, one per line
//        limits      the limits file (mode 0444), empty until PreStartContainer writes it
//                    atomically; mounted read-only at /etc/tessera/limits
//        region/     mode 0777 (processes may run as any user); mounted at /run/tessera,
//                    where the shim keeps its region file (/run/tessera/region)
//        owner       after PreStartContainer: pod=<ns>/<name>, container=<name>, and a line
//                    gpu=<uuid> <memoryMiB> <cores> per container device, in device order
//    plus <state-dir>/ld.so.preload (the shim's container path), mounted at /etc/ld.so.preload.
//    IDs sort by creation: the newest directory for a set of devices is the one Allocate made
//    last. The store is the agent's memory across restarts: a new agent rebuilds from it.
//
//  - MemoryLedger: per GPU, the sum of the memory limits of the live allocations, which must
//    never pass the GPU's memory (defence in depth behind the scheduler's own accounting).
//
// Not thread-safe: the owner (SharedGpus) serialises calls.
#ifndef TESSERA_NODE_SHARED_STATE_H_
#define TESSERA_NODE_SHARED_STATE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/pod_identity.h"

namespace tessera::node {

// The limits file of a container between Allocate and PreStartContainer: fail closed.
inline constexpr char kPendingLimits[] =
    "# tessera-node: PreStartContainer has not written this container's limits yet\n"
    "CUDA_DEVICE_MEMORY_LIMIT=1m\n";

// Where things are inside a container on a shared GPU (the contract with the shim; the limits
// file is at shim::kLimitsFilePath, where the shim looks for it).
inline constexpr char kContainerShimPath[] = "/usr/lib/tessera/libtessera-cuda.so";
inline constexpr char kContainerRegionDir[] = "/run/tessera";
inline constexpr char kContainerRegionPath[] = "/run/tessera/region";
inline constexpr char kContainerPreloadPath[] = "/etc/ld.so.preload";

class MemoryLedger {
 public:
  // The memory of every GPU that may be shared, in bytes, by UUID.
  explicit MemoryLedger(std::map<std::string, uint64_t> capacity)
      : capacity_(std::move(capacity)) {}

  // Sets allocation `key`'s limits (bytes per GPU UUID), replacing what it had. Refused, with
  // nothing changed, when a GPU's sum would pass its memory (or the GPU is not known): the error
  // names the GPU, the sum and the memory.
  Status Set(const std::string& key, const std::map<std::string, uint64_t>& bytes);
  void Release(const std::string& key);
  bool Holds(const std::string& key) const { return allocations_.count(key) != 0; }

  // Per GPU of the capacity map, the sum of the live limits (0 when none).
  std::map<std::string, uint64_t> Sums() const;

 private:
  std::map<std::string, uint64_t> capacity_;
  std::map<std::string, std::map<std::string, uint64_t>> allocations_;
};

struct StoredAllocation {
  std::string id;    // the directory's name
  std::string path;  // the directory
  std::vector<std::string> device_ids;
  std::optional<IdentifiedContainer> owner;  // set by PreStartContainer
};

class AllocationStore {
 public:
  // Makes <state_dir>/containers and writes <state_dir>/ld.so.preload.
  static Result<AllocationStore> Open(const std::string& state_dir);

  const std::string& state_dir() const { return state_dir_; }
  std::string preload_path() const { return state_dir_ + "/ld.so.preload"; }

  // A fresh directory for a container given `device_ids`.
  Result<StoredAllocation> Create(const std::vector<std::string>& device_ids);
  // Every directory, oldest first; one that cannot be read is skipped with a warning.
  std::vector<StoredAllocation> List() const;
  // Writes the limits file (a temporary file renamed over it, mode 0444) and the owner file.
  Status Claim(const StoredAllocation& allocation, const IdentifiedContainer& owner,
               const std::string& limits_text);
  // Removes the directory and everything in it.
  Status Remove(const StoredAllocation& allocation);

 private:
  explicit AllocationStore(std::string state_dir) : state_dir_(std::move(state_dir)) {}
  std::string containers_dir() const { return state_dir_ + "/containers"; }

  std::string state_dir_;
  uint64_t counter_ = 0;
};

// The owner file's text, and back.
std::string OwnerFileText(const IdentifiedContainer& owner);
Result<IdentifiedContainer> ParseOwnerFile(const std::string& text);

}  // namespace tessera::node

#endif  // TESSERA_NODE_SHARED_STATE_H_
