// The Alibaba GPU-sharing trace (cluster-trace-gpu-v2023, the FGD paper's data): its CSV files,
// read strictly. Every error names the file and the line ("pods.csv:17: column num_gpu: ...").
//
// Node lists: `sn,cpu_milli,memory_mib,gpu,model`. Pod lists: `name,cpu_milli,memory_mib,
// num_gpu,gpu_milli` and optionally `gpu_spec` (allowed models joined by '|') and further
// columns, which are ignored. Columns are found by their header names. No quoting; blank lines
// are skipped; a trailing '\r' is dropped.
#ifndef TESSERA_SIM_ALIBABA_TRACE_H_
#define TESSERA_SIM_ALIBABA_TRACE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::sim::alibaba {

struct TraceNode {
  std::string name;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  int32_t gpus = 0;
  std::string model;
};

struct TracePod {
  std::string name;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  int32_t num_gpu = 0;
  int32_t gpu_milli = 0;              // per GPU, 1..1000 for GPU pods; 0 for CPU-only pods
  std::vector<std::string> gpu_spec;  // allowed models; empty = any

  int64_t total_gpu_milli() const { return int64_t{num_gpu} * gpu_milli; }
};

// `file` only names the input in error messages.
Result<std::vector<TraceNode>> ParseNodeCsv(std::string_view text, std::string_view file);
Result<std::vector<TracePod>> ParsePodCsv(std::string_view text, std::string_view file);

Result<std::vector<TraceNode>> ReadNodeCsv(const std::string& path);
Result<std::vector<TracePod>> ReadPodCsv(const std::string& path);

struct Trace {
  std::string variant;
  std::vector<TraceNode> nodes;
  std::vector<TracePod> pods;
};

// Reads <dir>/openb_node_list_gpu_node.csv and <dir>/openb_pod_list_<variant>.csv.
Result<Trace> LoadTrace(const std::string& dir, const std::string& variant);

// The 17 variants with published results (reference/fgd-trace.md §8.3), in the paper's order.
const std::vector<std::string>& PublishedVariants();

}  // namespace tessera::sim::alibaba

#endif  // TESSERA_SIM_ALIBABA_TRACE_H_
