// tessera-node's /metrics, in the Prometheus text format (version 0.0.4): per GPU its memory,
// utilisation, mode and health; per allocated container the GPUs it was given; Allocate latency.
// HAMi's metric names where HAMi has one (hami_host_gpu_*), tessera_* for the rest.
#ifndef TESSERA_NODE_METRICS_H_
#define TESSERA_NODE_METRICS_H_

#include <map>
#include <string>

#include "node/nvml.h"
#include "node/registry.h"

namespace tessera::node {

// `samples` by GPU UUID; a GPU without a sample (NVML failed) has no memory/utilisation series.
std::string RenderMetrics(const std::string& node_name, const Registry& registry,
                          const std::map<std::string, GpuSample>& samples);

}  // namespace tessera::node

#endif  // TESSERA_NODE_METRICS_H_
