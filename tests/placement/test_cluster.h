// Small clusters for the placement tests, built from a compact description.
#ifndef TESSERA_TESTS_PLACEMENT_TEST_CLUSTER_H_
#define TESSERA_TESTS_PLACEMENT_TEST_CLUSTER_H_

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "placement/cluster.h"
#include "placement/request.h"

namespace tessera::placement::testing {

// A node with `gpus` shared GPUs of `model`, memory not modelled.
inline NodeSpec Node(std::string name, int64_t cpu_milli, int gpus, std::string model = "T4",
                     int64_t memory_mib = 1 << 20) {
  NodeSpec node;
  node.name = std::move(name);
  node.cpu_milli = cpu_milli;
  node.memory_mib = memory_mib;
  for (int g = 0; g < gpus; ++g) {
    GpuSpec gpu;
    gpu.model = model;
    gpu.uuid = node.name + "-" + std::to_string(g);
    node.gpus.push_back(gpu);
  }
  return node;
}

inline Cluster MakeCluster(std::vector<NodeSpec> nodes) {
  auto cluster = Cluster::Create(std::move(nodes));
  EXPECT_TRUE(cluster.ok()) << cluster.status().message();
  return std::move(*cluster);
}

inline Request Gpu(int32_t count, int32_t milli, int64_t cpu_milli = 1000) {
  Request r;
  r.gpu_count = count;
  r.gpu_milli = milli;
  r.cpu_milli = cpu_milli;
  r.memory_mib = 1024;
  return r;
}

inline Request CpuOnly(int64_t cpu_milli) {
  Request r;
  r.cpu_milli = cpu_milli;
  r.memory_mib = 1024;
  return r;
}

}  // namespace tessera::placement::testing

#endif  // TESSERA_TESTS_PLACEMENT_TEST_CLUSTER_H_
