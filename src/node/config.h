// tessera-node's configuration: how each GPU of the node is shared. A YAML file (a ConfigMap in
// production, one file per node or a default):
//
//   defaultMode: whole            # GPUs not listed below (default: whole)
//   gpus:
//     - index: 0                  # NVML index on this node
//       mode: time-sliced         # whole | time-sliced | mig | shared
//       replicas: 4               # time-sliced (required) or shared (default 32): how many
//                                 # containers may share it (1-64)
//     - index: 1
//       mode: mig
//       mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]   # mig only, optional: the layout expected
//
// Parsing checks the file on its own; CheckAgainstInventory (devices.h) checks it against the
// GPUs NVML reports. Every error names the file, the field and the value.
#ifndef TESSERA_NODE_CONFIG_H_
#define TESSERA_NODE_CONFIG_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::node {

enum class GpuMode { kWhole, kTimeSliced, kMig, kShared };

// "whole", "time-sliced", "mig", "shared".
std::string_view GpuModeName(GpuMode mode);
std::optional<GpuMode> ParseGpuMode(std::string_view text);

inline constexpr int kMaxReplicas = 64;
// A shared GPU's replicas when its entry names none (or it is shared by defaultMode): the most
// containers that may hold a share of it at once. It plays the part of HAMi's deviceSplitCount
// (HAMi's chart default is 10); 32 lets small shares (1/32 of a GPU) fill a GPU, while the
// scheduler's memory and compute accounting, not this count, is what normally limits sharers.
inline constexpr int kDefaultSharedReplicas = 32;

struct GpuConfig {
  unsigned index = 0;
  GpuMode mode = GpuMode::kWhole;
  int replicas = 0;                     // time-sliced and shared: 1..kMaxReplicas (shared:
                                        // kDefaultSharedReplicas when not given); otherwise 0
  std::vector<std::string> mig_layout;  // mig: expected profiles, in any order; may be empty
  std::string field;                    // where it came from, e.g. "gpus[1]", for messages
};

struct NodeConfig {
  std::string source;  // the file, for messages
  GpuMode default_mode = GpuMode::kWhole;
  std::vector<GpuConfig> gpus;  // at most one entry per index

  // The entry for GPU `index`, or nullptr when it takes the default mode.
  const GpuConfig* Find(unsigned index) const;
  // GPU `index`'s mode and replicas (0 unless time-sliced or shared), entry or default.
  GpuMode ModeOf(unsigned index) const;
  int ReplicasOf(unsigned index) const;
};

// Parses `text`; `source` names it in messages ("<source>: <field>: ...").
Result<NodeConfig> ParseNodeConfig(std::string_view text, const std::string& source);

// Reads and parses `path`.
Result<NodeConfig> LoadNodeConfig(const std::string& path);

}  // namespace tessera::node

#endif  // TESSERA_NODE_CONFIG_H_
