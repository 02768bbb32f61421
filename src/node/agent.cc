#include "node/agent.h"

#include <httplib.h>
#include <sys/stat.h>

#include <algorithm>
#include <thread>

#include "common/log.h"
#include "kube/client.h"
#include "kube/config.h"
#include "node/devices.h"
#include "node/metrics.h"
#include "node/node_annotations.h"
#include "node/node_publisher.h"
#include "node/pod_cache.h"
#include "node/pod_resources.h"
#include "node/shared_gpus.h"

namespace tessera::node {

// /metrics, /healthz and /readyz over HTTP (cpp-httplib), on its own thread.
class MetricsServer {
 public:
  MetricsServer(const std::string& node_name, Registry& registry, Nvml& nvml,
                const std::atomic<bool>& ready)
      : node_name_(node_name), registry_(registry), nvml_(nvml), ready_(ready) {
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      std::map<std::string, GpuSample> samples;
      for (const auto& gpu : registry_.inventory().gpus) {
        auto sample = nvml_.Sample(gpu.uuid);
        if (sample.ok()) samples[gpu.uuid] = *sample;
      }
      response.set_content(RenderMetrics(node_name_, registry_, samples),
                           "text/plain; version=0.0.4; charset=utf-8");
    });
    server_.Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
      response.set_content("ok\n", "text/plain");
    });
    server_.Get("/readyz", [this](const httplib::Request&, httplib::Response& response) {
      response.status = ready_ ? 200 : 503;
      response.set_content(ready_ ? "ok\n" : "not registered with kubelet yet\n", "text/plain");
    });
  }
  ~MetricsServer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  const std::string& bound_address() const { return bound_address_; }

  Status Start(const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon + 1 == address.size()) {
      return Status::Error("--metrics-address: \"" + address + "\" is not HOST:PORT");
    }
    const std::string host = address.substr(0, colon);
    int port = 0;
    for (size_t i = colon + 1; i < address.size(); ++i) {
      if (address[i] < '0' || address[i] > '9' || port > 65535) {
        return Status::Error("--metrics-address: \"" + address + "\" has no valid port");
      }
      port = port * 10 + (address[i] - '0');
    }
    if (port > 65535) {
      return Status::Error("--metrics-address: \"" + address + "\" has no valid port");
    }
    // Port 0: any free port (tests), said in the log.
    const int bound =
        port == 0 ? server_.bind_to_any_port(host) : (server_.bind_to_port(host, port) ? port : -1);
    if (bound <= 0) {
      return Status::Error("--metrics-address: cannot listen on " + address +
                           " (in use, or not an address of this host)");
    }
    bound_address_ = host + ":" + std::to_string(bound);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // cpp-httplib's stop() does nothing until the server runs: wait for that, so a stop right
    // after start cannot leave the thread listening for ever.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return Status::Ok();
  }

 private:
  const std::string node_name_;
  Registry& registry_;
  Nvml& nvml_;
  const std::atomic<bool>& ready_;
  httplib::Server server_;
  std::string bound_address_;
  std::thread thread_;
};

namespace {

// Which file `path` is: its inode and change time, {0, 0} when it does not exist. The inode alone
// is not enough: a socket made right after the old one was removed often gets the same inode.
FileIdentity IdentityOf(const std::string& path) {
  struct stat st = {};
  if (stat(path.c_str(), &st) != 0) return {};
  return {static_cast<unsigned long long>(st.st_ino),
          static_cast<long long>(st.st_ctim.tv_sec) * 1000000000LL + st.st_ctim.tv_nsec};
}

bool Exists(const std::string& path) {
  struct stat st = {};
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options) {
  if (options.node_name.empty() && options.publish) {
    return Status::Error("--node-name: empty (set it, or NODE_NAME)");
  }
  auto config = LoadNodeConfig(options.config_path);
  if (!config.ok()) return config.status();
  auto nvml = Nvml::Load(options.nvml_library);
  if (!nvml.ok()) return nvml.status();
  auto inventory = (*nvml)->Discover();
  if (!inventory.ok()) return inventory.status();
  auto resources = PlanResources(*config, *inventory);
  if (!resources.ok()) return resources.status();
  for (const auto& gpu : inventory->gpus) {
    log::Write(log::Level::kInfo, "node", "GPU %u %s (%s, %llu MiB): %s", gpu.index,
               gpu.uuid.c_str(), gpu.name.c_str(),
               static_cast<unsigned long long>(gpu.memory_bytes >> 20),
               std::string(GpuModeName(GpuModes(*config, *inventory)[gpu.index])).c_str());
  }
  auto modes = GpuModes(*config, *inventory);
  auto registry =
      std::make_unique<Registry>(std::move(*inventory), std::move(modes), std::move(*resources));
  std::unique_ptr<PodCache> pod_cache;
  std::unique_ptr<SharedGpus> shared;
  const Resource* gpu_resource = registry->FindResource(kWholeResource);
  const bool has_shared =
      gpu_resource != nullptr &&
      std::any_of(gpu_resource->devices.begin(), gpu_resource->devices.end(),
                  [](const PluginDevice& device) { return device.mode == GpuMode::kShared; });
  if (has_shared) {
    auto store = AllocationStore::Open(options.state_dir);
    if (!store.ok()) return store.status();
    SharedGpuOptions shared_options;
    shared_options.node_name = options.node_name;
    shared_options.shim_path = options.shim_path;
    if (options.publish) {
      auto kube_config = options.kubeconfig.empty() ? kube::LoadInClusterConfig()
                                                    : kube::LoadKubeconfig(options.kubeconfig);
      if (!kube_config.ok()) return kube_config.status();
      auto client = kube::Client::FromConfig(*kube_config);
      if (!client.ok()) return client.status();
      pod_cache = std::make_unique<PodCache>();
      pod_cache->Start(std::move(*client), options.node_name);
    } else {
      shared_options.unavailable =
          "tessera-node runs without an API server (--no-publish), so it cannot learn which pod "
          "a device is for nor the limits the scheduler decided";
      log::Write(log::Level::kError, "node",
                 "shared GPUs are advertised but cannot be served: %s; Allocate and "
                 "PreStartContainer refuse their replicas",
                 shared_options.unavailable.c_str());
    }
    struct stat st = {};
    if (stat(options.shim_path.c_str(), &st) != 0) {
      log::Write(log::Level::kError, "node",
                 "--shim-path %s does not exist: containers on shared GPUs are refused until it "
                 "does",
                 options.shim_path.c_str());
    }
    const std::string socket = options.pod_resources_socket;
    shared = std::make_unique<SharedGpus>(
        *registry, *gpu_resource, std::move(*store), pod_cache.get(),
        [socket] { return ListPodResourcesPods(socket, std::chrono::seconds(2)); },
        std::move(shared_options));
    shared->Recover();
  }
  std::unique_ptr<Agent> agent(new Agent(options, std::move(*nvml), std::move(registry),
                                         std::move(pod_cache), std::move(shared)));
  agent->config_ = std::move(*config);
  if (options.publish) {
    auto publisher = NodePublisher::Create(options.kubeconfig, options.node_name);
    if (!publisher.ok()) return publisher.status();
    agent->publisher_ = std::move(*publisher);
  }
  return agent;
}

Agent::Agent(AgentOptions options, std::unique_ptr<Nvml> nvml, std::unique_ptr<Registry> registry,
             std::unique_ptr<PodCache> pod_cache, std::unique_ptr<SharedGpus> shared)
    : options_(std::move(options)),
      nvml_(std::move(nvml)),
      registry_(std::move(registry)),
      pod_cache_(std::move(pod_cache)),
      shared_(std::move(shared)) {
  kubelet_socket_ = options_.device_plugin_dir + "/kubelet.sock";
  for (const auto& resource : registry_->resources()) {
    SharedGpus* shared_gpus = resource.name == kWholeResource ? shared_.get() : nullptr;
    servers_.push_back(
        std::make_unique<PluginServer>(*registry_, resource, options_.device_plugin_dir,
                                       DeviceNodes{options_.device_root}, shared_gpus));
  }
  started_.assign(servers_.size(), false);
  registered_.assign(servers_.size(), false);
}

Agent::~Agent() {
  for (auto& server : servers_) server->Stop();
}

// Serves and registers every server not registered yet; those registered are left alone, so a
// resource kubelet refuses never cuts the others' streams.
void Agent::RegisterPending() {
  kubelet_socket_identity_ = IdentityOf(kubelet_socket_);
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (registered_[i]) continue;
    auto& server = *servers_[i];
    if (!started_[i]) {
      if (auto status = server.Start(); !status.ok()) {
        log::Write(log::Level::kError, "node", "%s", status.message().c_str());
        continue;
      }
      started_[i] = true;
    }
    if (auto status = server.Register(kubelet_socket_, std::chrono::seconds(3)); !status.ok()) {
      log::Write(log::Level::kWarn, "node", "%s; retrying", status.message().c_str());
      continue;
    }
    registered_[i] = true;
  }
}

bool Agent::AllRegistered() const {
  return std::all_of(registered_.begin(), registered_.end(), [](bool r) { return r; });
}

// Every server again from scratch: kubelet restarted and forgot them (and removed their sockets).
void Agent::ServeAgain() {
  for (size_t i = 0; i < servers_.size(); ++i) {
    servers_[i]->Stop();
    started_[i] = false;
    registered_[i] = false;
  }
}

// kubelet wipes the device-plugin directory when it starts and makes a new kubelet.sock: a new
// inode, or our sockets gone, means it restarted and has forgotten us.
bool Agent::KubeletRestarted() {
  const FileIdentity socket = IdentityOf(kubelet_socket_);
  if (socket.inode == 0) return false;  // kubelet is not (yet) there; wait for it
  if (!(socket == kubelet_socket_identity_)) return true;
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (started_[i] && !Exists(servers_[i]->socket_path())) return true;
  }
  return false;
}

void Agent::RefreshPodResources() {
  auto pods = ListPodResourcesPods(options_.pod_resources_socket, std::chrono::seconds(2));
  if (!pods.ok()) {
    log::Write(log::Level::kDebug, "node", "%s", pods.status().message().c_str());
    return;
  }
  registry_->SetContainers(NvidiaContainerDevices(*pods));
  // Shares of pods that are gone or ended (SharedGpus lists kubelet's pods again, under its lock).
  if (shared_ != nullptr) shared_->Reconcile();
}

Status Agent::Run(const std::atomic<bool>& stop) {
  if (!Exists(options_.device_plugin_dir)) {
    return Status::Error("--device-plugin-dir: " + options_.device_plugin_dir +
                         " does not exist (is kubelet running on this node?)");
  }
  metrics_ = std::make_unique<MetricsServer>(options_.node_name, *registry_, *nvml_, ready_);
  if (auto status = metrics_->Start(options_.metrics_address); !status.ok()) return status;
  health_ = std::make_unique<HealthMonitor>(*nvml_, *registry_, options_.health_recovery,
                                            options_.xid_hold);
  health_->Start();
  RefreshPodResources();
  log::Write(log::Level::kWarn, "node", "tessera-node on %s: %zu resources, metrics on %s",
             options_.node_name.c_str(), servers_.size(), metrics_->bound_address().c_str());

  auto next_register = std::chrono::steady_clock::now();
  auto next_pod_resources = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto retry_delay = std::chrono::milliseconds(250);
  uint64_t published_version = 0;
  while (!stop) {
    const auto now = std::chrono::steady_clock::now();
    if (kubelet_socket_identity_.inode != 0 && KubeletRestarted()) {
      log::Write(log::Level::kWarn, "node", "kubelet restarted (new %s); registering again",
                 kubelet_socket_.c_str());
      ServeAgain();
      next_register = now;
      retry_delay = std::chrono::milliseconds(250);
    }
    if (!AllRegistered() && now >= next_register && IdentityOf(kubelet_socket_).inode != 0) {
      RegisterPending();
      if (!AllRegistered()) {
        next_register = now + retry_delay;
        retry_delay = std::min(retry_delay * 2, std::chrono::milliseconds(4000));
      }
    }
    ready_ = AllRegistered() && std::all_of(servers_.begin(), servers_.end(),
                                            [](const auto& server) { return server->watched(); });
    if (now >= next_pod_resources) {
      RefreshPodResources();
      next_pod_resources = now + std::chrono::seconds(5);
    }
    // The annotations change only with the registry (health); the publisher re-patches on its own.
    const uint64_t version = registry_->Version();
    if (publisher_ != nullptr && version != published_version) {
      publisher_->Publish(NodeAnnotations(*registry_, config_));
      published_version = version;
    }
    registry_->WaitForChange(version, std::chrono::milliseconds(250));
  }
  log::Write(log::Level::kWarn, "node", "stopping: removing the device-plugin sockets");
  health_->Stop();
  for (auto& server : servers_) server->Stop();
  metrics_.reset();
  return Status::Ok();
}

}  // namespace tessera::node
