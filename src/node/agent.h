// tessera-node, the node agent: reads the node's configuration and its GPUs (NVML), serves one
// kubelet device plugin per resource, keeps health, re-registers when kubelet restarts, learns
// allocations from kubelet's PodResources API, serves /metrics and publishes the node's GPU
// inventory on its Node object.
//
// It is never in the data path of a running container: killing it disturbs no workload, and a
// restarted agent rebuilds everything it knows from NVML, its configuration and kubelet.
#ifndef TESSERA_NODE_AGENT_H_
#define TESSERA_NODE_AGENT_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/config.h"
#include "node/health.h"
#include "node/nvml.h"
#include "node/plugin_server.h"
#include "node/registry.h"

namespace tessera::node {

struct AgentOptions {
  std::string node_name;
  std::string config_path;
  std::string kubeconfig;  // empty: in-cluster service account, or no API server (see publish)
  bool publish = true;     // patch the Node's annotations
  std::string device_plugin_dir = "/var/lib/kubelet/device-plugins";
  std::string pod_resources_socket = "/var/lib/kubelet/pod-resources/kubelet.sock";
  std::string metrics_address = "0.0.0.0:9394";
  std::string device_root = "/dev";
  std::string nvml_library = "libnvidia-ml.so.1";
  // Shared GPUs: where the per-container allocation directories live on the host, and the shim
  // (host path) that is mounted into each container (docs/pod-identity.md).
  std::string state_dir = "/var/lib/tessera";
  std::string shim_path = "/usr/lib/tessera/libtessera-cuda.so";
  std::chrono::milliseconds health_recovery{2000};
  std::chrono::milliseconds xid_hold{300000};
};

class NodePublisher;
class PodCache;
class SharedGpus;

struct FileIdentity {
  unsigned long long inode = 0;
  long long change_time_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};
class MetricsServer;

class Agent {
 public:
  // Everything that can be checked before serving: the configuration, NVML, the inventory, the
  // plan. An error here means the agent must not start; its message names what was wrong.
  static Result<std::unique_ptr<Agent>> Create(const AgentOptions& options);
  ~Agent();

  // Serves until `stop` becomes true. Returns an error only for what it cannot go on without
  // (the metrics address taken, the device-plugin directory missing).
  Status Run(const std::atomic<bool>& stop);

  const Registry& registry() const { return *registry_; }

 private:
  Agent(AgentOptions options, std::unique_ptr<Nvml> nvml, std::unique_ptr<Registry> registry,
        std::unique_ptr<PodCache> pod_cache, std::unique_ptr<SharedGpus> shared);
  void RegisterPending();
  bool AllRegistered() const;
  void ServeAgain();
  bool KubeletRestarted();
  void RefreshPodResources();

  const AgentOptions options_;
  NodeConfig config_;
  std::unique_ptr<Nvml> nvml_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<PodCache> pod_cache_;  // null without an API server or shared GPUs
  std::unique_ptr<SharedGpus> shared_;   // null when the node has no shared GPU
  std::vector<std::unique_ptr<PluginServer>> servers_;
  std::unique_ptr<HealthMonitor> health_;
  std::atomic<bool> ready_{false};  // every server registered and watched (/readyz); before
                                    // metrics_, which reads it, so that it outlives it
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<NodePublisher> publisher_;
  std::string kubelet_socket_;
  FileIdentity kubelet_socket_identity_;
  std::vector<bool> started_;     // per server: serving its socket
  std::vector<bool> registered_;  // per server: kubelet accepted the registration
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_AGENT_H_
