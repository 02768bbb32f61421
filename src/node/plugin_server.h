// One kubelet device plugin (API v1beta1) for one resource: a gRPC server on a Unix socket in
// the device-plugin directory, registered with kubelet's Registration service.
//
// Lifecycle: Start() serves the socket, Register() tells kubelet; Stop() ends the ListAndWatch
// streams and removes the socket. A kubelet restart wipes the directory: the owner (Agent) then
// calls Stop(), Start() and Register() again.
#ifndef TESSERA_NODE_PLUGIN_SERVER_H_
#define TESSERA_NODE_PLUGIN_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/status.h"
#include "node/allocation.h"
#include "node/registry.h"

namespace tessera::node {

class PluginService;
class SharedGpus;

class PluginServer {
 public:
  // `directory` is kubelet's device-plugin directory (/var/lib/kubelet/device-plugins).
  // `shared`: non-null for nvidia.com/gpu when some of its devices are shares of shared GPUs;
  // kubelet then calls PreStartContainer, and those devices are served by it.
  PluginServer(Registry& registry, const Resource& resource, std::string directory,
               DeviceNodes device_nodes, SharedGpus* shared = nullptr);
  ~PluginServer();
  PluginServer(const PluginServer&) = delete;
  PluginServer& operator=(const PluginServer&) = delete;

  Status Start();
  // Registers with kubelet at `kubelet_socket` (a path), waiting at most `timeout`.
  Status Register(const std::string& kubelet_socket, std::chrono::milliseconds timeout);
  void Stop();

  const std::string& resource_name() const;
  // kubelet has connected since the last Start() and holds the device list.
  bool watched() const;
  // The socket's file name in the directory, e.g. "tessera-gpu.shared.sock".
  const std::string& endpoint() const { return endpoint_; }
  std::string socket_path() const { return directory_ + "/" + endpoint_; }

 private:
  Registry& registry_;
  const Resource& resource_;
  const std::string directory_;
  const std::string endpoint_;
  const DeviceNodes device_nodes_;
  SharedGpus* const shared_;
  std::unique_ptr<PluginService> service_;
  std::unique_ptr<grpc::Server> server_;
};

// "nvidia.com/mig-1g.10gb" → "tessera-mig-1g.10gb.sock".
std::string EndpointFor(const std::string& resource_name);

}  // namespace tessera::node

#endif  // TESSERA_NODE_PLUGIN_SERVER_H_
