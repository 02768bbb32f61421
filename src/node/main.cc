// tessera-node: the node agent (kubelet device plugin + GPU monitor). See agent.h.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/cli.h"
#include "common/log.h"
#include "common/signals.h"
#include "node/agent.h"

namespace {

std::atomic<bool> g_stop{false};

// SIGTERM and SIGINT are blocked in every thread (the mask is set before any starts) and taken
// here: the first stops the agent cleanly, a second one exits at once.
void WaitForSignals(sigset_t signals) {
  int signal = 0;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "tessera-node: %s: stopping\n", strsignal(signal));
  g_stop = true;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "tessera-node: %s again: exiting now\n", strsignal(signal));
  std::_Exit(1);
}

int Main(int argc, char** argv) {
  using tessera::node::AgentOptions;
  AgentOptions options;
  if (const char* name = std::getenv("NODE_NAME")) options.node_name = name;
  bool no_publish = false;
  bool check_config = false;
  int recovery_ms = static_cast<int>(options.health_recovery.count());
  int xid_hold_ms = static_cast<int>(options.xid_hold.count());

  CLI::App app{
      "tessera-node: advertises this node's GPUs to kubelet, per GPU as whole GPUs or shares "
      "of shared GPUs (nvidia.com/gpu), time-sliced replicas (nvidia.com/gpu.shared) or MIG "
      "instances "
      "(nvidia.com/mig-<profile>); keeps their health from NVML; publishes the node's GPU "
      "inventory on its Node object; serves Prometheus metrics.",
      "tessera-node"};
  app.add_option("--node-name", options.node_name, "this node's name (default: $NODE_NAME)");
  app.add_option("--config", options.config_path,
                 "the node configuration (YAML: defaultMode, gpus[].index/mode/replicas/mig)")
      ->required();
  app.add_option("--kubeconfig", options.kubeconfig,
                 "kubeconfig to reach the API server (default: the pod's service account)");
  app.add_flag("--no-publish", no_publish, "do not patch the Node object (no API server needed)");
  app.add_option("--device-plugin-dir", options.device_plugin_dir,
                 "kubelet's device-plugin directory")
      ->capture_default_str();
  app.add_option("--pod-resources-socket", options.pod_resources_socket,
                 "kubelet's PodResources socket")
      ->capture_default_str();
  app.add_option("--metrics-address", options.metrics_address,
                 "HOST:PORT for /metrics, /healthz and /readyz")
      ->capture_default_str();
  app.add_option("--device-root", options.device_root,
                 "where the NVIDIA device nodes are on the host")
      ->capture_default_str();
  app.add_option("--nvml-library", options.nvml_library, "the NVML library to load")
      ->capture_default_str();
  app.add_option("--state-dir", options.state_dir,
                 "shared GPUs: host directory for the per-container allocation directories "
                 "(limits file, region) and ld.so.preload")
      ->capture_default_str();
  app.add_option("--shim-path", options.shim_path,
                 "shared GPUs: the shim (libtessera-cuda.so) on the host, mounted read-only "
                 "into each container at /usr/lib/tessera/libtessera-cuda.so")
      ->capture_default_str();
  app.add_option("--health-recovery-ms", recovery_ms,
                 "how long a GPU must pass its health probe after a fault before it is "
                 "advertised Healthy again")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app.add_option("--xid-hold-ms", xid_hold_ms,
                 "how long a critical Xid that NVML's health queries do not show keeps its GPU "
                 "Unhealthy")
      ->check(CLI::Range(0, 86400000))
      ->capture_default_str();
  app.add_flag("--check-config", check_config,
               "check the configuration against this node's GPUs and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  options.health_recovery = std::chrono::milliseconds(recovery_ms);
  options.xid_hold = std::chrono::milliseconds(xid_hold_ms);
  options.publish = !no_publish && !check_config;

  const sigset_t signals = tessera::BlockStopSignals();

  auto agent = tessera::node::Agent::Create(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "tessera-node: %s\n", agent.status().message().c_str());
    return 2;
  }
  if (check_config) {
    std::printf("tessera-node: %s is valid for this node (%zu resources)\n",
                options.config_path.c_str(), (*agent)->registry().resources().size());
    for (const auto& resource : (*agent)->registry().resources()) {
      std::printf("  %s: %zu devices\n", resource.name.c_str(), resource.devices.size());
    }
    return 0;
  }

  std::thread(WaitForSignals, signals).detach();
  auto status = (*agent)->Run(g_stop);
  if (!status.ok()) {
    std::fprintf(stderr, "tessera-node: %s\n", status.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tessera::RunMain("tessera-node", [&] { return Main(argc, argv); });
}
