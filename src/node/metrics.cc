#include "node/metrics.h"

#include <tuple>

#include "common/metrics_text.h"

namespace tessera::node {

using metrics::Labels;

std::string RenderMetrics(const std::string& node_name, const Registry& registry,
                          const std::map<std::string, GpuSample>& samples) {
  metrics::TextWriter w;
  const auto& inventory = registry.inventory();
  const auto health = registry.AllHealth();
  auto gpu_labels = [&](const Gpu& gpu) {
    return Labels{{"node", node_name},
                  {"device_uuid", gpu.uuid},
                  {"device_index", std::to_string(gpu.index)},
                  {"device_type", gpu.name}};
  };

  // One family of one series per GPU that has an NVML sample.
  auto sampled = [&](const char* name, const char* help, double (*value)(const GpuSample&)) {
    w.Family(name, "gauge", help);
    for (const auto& gpu : inventory.gpus) {
      auto it = samples.find(gpu.uuid);
      if (it != samples.end()) w.Sample(name, gpu_labels(gpu), value(it->second));
    }
  };
  auto memory_used = [](const GpuSample& s) { return static_cast<double>(s.memory_used_bytes); };
  auto utilization = [](const GpuSample& s) { return s.utilization_percent / 100.0; };
  constexpr char kMemoryUsed[] = "Device memory in use on the GPU (NVML).";
  constexpr char kUtilization[] =
      "Share of the last sample period the GPU ran a kernel (NVML), 0-1.";
  // HAMi's names, for its dashboards; Tessera's own beside them.
  sampled("hami_host_gpu_memory_used_bytes", kMemoryUsed, memory_used);
  sampled("hami_host_gpu_utilization_ratio", kUtilization, utilization);
  sampled("tessera_gpu_memory_used_bytes", kMemoryUsed, memory_used);
  sampled("tessera_gpu_utilization_ratio", kUtilization, utilization);
  w.Family("tessera_gpu_memory_total_bytes", "gauge", "Device memory of the GPU.");
  for (const auto& gpu : inventory.gpus) {
    w.Sample("tessera_gpu_memory_total_bytes", gpu_labels(gpu),
             static_cast<double>(gpu.memory_bytes));
  }
  w.Family("tessera_gpu_mode", "gauge",
           "1 for the sharing mode the GPU is in (whole, time-sliced, mig, shared).");
  for (const auto& gpu : inventory.gpus) {
    Labels labels = gpu_labels(gpu);
    auto mode = registry.modes().find(gpu.index);
    labels.emplace_back(
        "mode",
        std::string(GpuModeName(mode == registry.modes().end() ? GpuMode::kWhole : mode->second)));
    w.Sample("tessera_gpu_mode", labels, 1);
  }
  auto shared_sums = [&](const char* name, const char* help,
                         const std::map<std::string, uint64_t>& sums) {
    w.Family(name, "gauge", help);
    for (const auto& gpu : inventory.gpus) {
      auto mode = registry.modes().find(gpu.index);
      if (mode == registry.modes().end() || mode->second != GpuMode::kShared) continue;
      auto it = sums.find(gpu.uuid);
      w.Sample(name, gpu_labels(gpu), it == sums.end() ? 0 : static_cast<double>(it->second));
    }
  };
  shared_sums(
      "tessera_gpu_memory_limit_sum_bytes",
      "Sum of the memory limits of the live shares of a shared GPU (never above its memory).",
      registry.MemoryLimitSums());
  shared_sums(
      "tessera_gpu_memory_limit_sum_peak_bytes",
      "The highest sum of the memory limits of a shared GPU's shares since the agent started.",
      registry.PeakMemoryLimitSums());
  w.Family("tessera_gpu_healthy", "gauge",
           "1 when the GPU is healthy, 0 when its devices are advertised Unhealthy.");
  for (const auto& gpu : inventory.gpus) {
    auto it = health.find(gpu.uuid);
    w.Sample("tessera_gpu_healthy", gpu_labels(gpu),
             it == health.end() || it->second.healthy ? 1 : 0);
  }
  w.Family("tessera_mig_instance_memory_total_bytes", "gauge", "Device memory of a MIG instance.");
  for (const auto& gpu : inventory.gpus) {
    for (const auto& instance : gpu.mig_instances) {
      Labels labels = gpu_labels(gpu);
      labels.emplace_back("mig_uuid", instance.uuid);
      labels.emplace_back("profile", instance.profile);
      labels.emplace_back("gpu_instance_id", std::to_string(instance.gpu_instance_id));
      w.Sample("tessera_mig_instance_memory_total_bytes", labels,
               static_cast<double>(instance.memory_bytes));
    }
  }
  w.Family("tessera_node_devices", "gauge",
           "Devices advertised to kubelet, by resource and health.");
  for (const auto& resource : registry.resources()) {
    double healthy = 0;
    double unhealthy = 0;
    for (const auto& device : resource.devices) {
      auto it = health.find(device.gpu_uuid);
      (it == health.end() || it->second.healthy ? healthy : unhealthy) += 1;
    }
    w.Sample("tessera_node_devices",
             {{"node", node_name}, {"resource", resource.name}, {"health", "Healthy"}}, healthy);
    w.Sample("tessera_node_devices",
             {{"node", node_name}, {"resource", resource.name}, {"health", "Unhealthy"}},
             unhealthy);
  }
  w.Family("tessera_container_gpu_allocated", "gauge",
           "1 for each device kubelet gave a container (PodResources).");
  for (const auto& container : registry.Containers()) {
    const Resource* resource = registry.FindResource(container.resource);
    for (const auto& id : container.device_ids) {
      const PluginDevice* device = resource != nullptr ? resource->Find(id) : nullptr;
      w.Sample("tessera_container_gpu_allocated",
               {{"node", node_name},
                {"namespace", container.namespace_name},
                {"pod", container.pod},
                {"container", container.container},
                {"resource", container.resource},
                {"device_id", id},
                {"device_uuid", device != nullptr ? device->visible_id : ""}},
               1);
    }
  }
  for (const auto& [name, rpc, call] :
       {std::tuple{"tessera_node_allocate_duration_seconds", Registry::Rpc::kAllocate, "Allocate"},
        std::tuple{"tessera_node_preferred_allocation_duration_seconds",
                   Registry::Rpc::kGetPreferredAllocation, "GetPreferredAllocation"},
        std::tuple{"tessera_node_prestart_duration_seconds", Registry::Rpc::kPreStartContainer,
                   "PreStartContainer"}}) {
    w.Family(name, "histogram",
             std::string("Time tessera-node took to answer kubelet's ") + call + ".");
    w.Histogram(name, {{"node", node_name}}, registry.RpcLatency(rpc));
  }
  return w.str();
}

}  // namespace tessera::node
