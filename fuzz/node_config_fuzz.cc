// Fuzzes tessera-node's configuration parser (YAML) and its planning against a fixed inventory:
// any bytes either fail with a message naming the file or give a configuration whose every
// entry obeys the parser's rules.
#include <cstddef>
#include <cstdint>
#include <string>

#include "node/config.h"
#include "node/devices.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = tessera::node::ParseNodeConfig(text, "fuzz.yaml");
  if (!config.ok()) {
    if (config.status().message().rfind("fuzz.yaml: ", 0) != 0) __builtin_trap();
    return 0;
  }
  for (const auto& gpu : config->gpus) {
    const bool sliced = gpu.mode == tessera::node::GpuMode::kTimeSliced;
    if (sliced != (gpu.replicas > 0)) __builtin_trap();
    if (gpu.replicas > tessera::node::kMaxReplicas) __builtin_trap();
    if (!gpu.mig_layout.empty() && gpu.mode != tessera::node::GpuMode::kMig) __builtin_trap();
  }
  tessera::node::Inventory inventory;
  for (unsigned i = 0; i < 2; ++i) {
    tessera::node::Gpu gpu;
    gpu.index = i;
    gpu.uuid = "GPU-" + std::to_string(i);
    gpu.mig_enabled = i == 1;
    gpu.mig_profiles = {"1g.10gb", "3g.40gb"};
    gpu.mig_instances = {{"MIG-1", "1g.10gb", 1, 1, 0}};
    inventory.gpus.push_back(gpu);
  }
  auto plan = tessera::node::PlanResources(*config, inventory);
  if (!plan.ok() && plan.status().message().rfind("fuzz.yaml: ", 0) != 0) __builtin_trap();
  return 0;
}
