#include "node/plugin_server.h"

#include <unistd.h>

#include <chrono>

#include "common/log.h"
#include "common/strings.h"
#include "node/proto/deviceplugin/v1beta1/api.grpc.pb.h"
#include "node/shared_gpus.h"

namespace tessera::node {

namespace dp = ::v1beta1;

std::string EndpointFor(const std::string& resource_name) {
  std::string suffix = resource_name;
  const size_t slash = suffix.rfind('/');
  if (slash != std::string::npos) suffix = suffix.substr(slash + 1);
  return "tessera-" + suffix + ".sock";
}

class PluginService final : public dp::DevicePlugin::Service {
 public:
  PluginService(Registry& registry, const Resource& resource, DeviceNodes nodes, SharedGpus* shared)
      : registry_(registry), resource_(resource), nodes_(std::move(nodes)), shared_(shared) {}

  void Shutdown() {
    stopping_ = true;
    registry_.WakeAll();
  }

  // Whether kubelet has the device list: it connected and the first ListAndWatch answer went out.
  bool watched() const { return watched_; }

  grpc::Status GetDevicePluginOptions(grpc::ServerContext*, const dp::Empty*,
                                      dp::DevicePluginOptions* options) override {
    options->set_pre_start_required(shared_ != nullptr);
    options->set_get_preferred_allocation_available(true);
    return grpc::Status::OK;
  }

  grpc::Status ListAndWatch(grpc::ServerContext* context, const dp::Empty*,
                            grpc::ServerWriter<dp::ListAndWatchResponse>* writer) override {
    uint64_t sent = 0;
    log::Write(log::Level::kInfo, "node", "%s: kubelet is watching", resource_.name.c_str());
    while (!stopping_ && !context->IsCancelled()) {
      const uint64_t version = registry_.Version();
      if (version != sent) {
        dp::ListAndWatchResponse response = Devices();
        if (!writer->Write(response)) break;
        sent = version;
        watched_ = true;
      }
      registry_.WaitForChange(sent, std::chrono::milliseconds(500));
    }
    return grpc::Status::OK;
  }

  grpc::Status GetPreferredAllocation(grpc::ServerContext*,
                                      const dp::PreferredAllocationRequest* request,
                                      dp::PreferredAllocationResponse* response) override {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& container : request->container_requests()) {
      std::vector<std::string> available(container.available_deviceids().begin(),
                                         container.available_deviceids().end());
      std::vector<std::string> must(container.must_include_deviceids().begin(),
                                    container.must_include_deviceids().end());
      auto* out = response->add_container_responses();
      auto chosen = shared_ != nullptr
                        ? shared_->Prefer(available, must, container.allocation_size())
                        : PreferredDevices(resource_, available, must, container.allocation_size(),
                                           registry_.inventory().topology);
      for (auto& id : chosen) out->add_deviceids(std::move(id));
    }
    registry_.RecordRpc(Registry::Rpc::kGetPreferredAllocation,
                        std::chrono::steady_clock::now() - start);
    return grpc::Status::OK;
  }

  grpc::Status Allocate(grpc::ServerContext*, const dp::AllocateRequest* request,
                        dp::AllocateResponse* response) override {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& container : request->container_requests()) {
      std::vector<std::string> ids(container.devicesids().begin(), container.devicesids().end());
      for (const auto& id : ids) {
        const PluginDevice* device = resource_.Find(id);
        if (device == nullptr) continue;  // AllocateContainer names it
        // kubelet only offers healthy devices; one that turned unhealthy since is refused
        // rather than handed to a workload.
        if (const GpuHealth health = registry_.Health(device->gpu_uuid); !health.healthy) {
          return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              resource_.name + " device " + id + " is unhealthy: " + health.reason);
        }
      }
      auto allocation = AllocateContainer(resource_, ids, nodes_);
      if (!allocation.ok()) {
        log::Write(log::Level::kError, "node", "%s", allocation.status().message().c_str());
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, allocation.status().message());
      }
      if (shared_ != nullptr && shared_->AnyShared(ids)) {
        if (Status status = shared_->Allocate(ids, *allocation); !status.ok()) {
          log::Write(log::Level::kError, "node", "Allocate: %s", status.message().c_str());
          return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, status.message());
        }
      }
      auto* out = response->add_container_responses();
      for (const auto& [key, value] : allocation->envs) (*out->mutable_envs())[key] = value;
      for (const auto& node : allocation->devices) {
        auto* spec = out->add_devices();
        spec->set_container_path(node.container_path);
        spec->set_host_path(node.host_path);
        spec->set_permissions("rw");
      }
      for (const auto& mount : allocation->mounts) {
        auto* spec = out->add_mounts();
        spec->set_container_path(mount.container_path);
        spec->set_host_path(mount.host_path);
        spec->set_read_only(mount.read_only);
      }
      log::Write(log::Level::kInfo, "node", "Allocate %s: %s -> NVIDIA_VISIBLE_DEVICES=%s",
                 resource_.name.c_str(), Join(ids, ",").c_str(),
                 allocation->envs["NVIDIA_VISIBLE_DEVICES"].c_str());
    }
    registry_.RecordAllocate(std::chrono::steady_clock::now() - start);
    return grpc::Status::OK;
  }

  grpc::Status PreStartContainer(grpc::ServerContext*, const dp::PreStartContainerRequest* request,
                                 dp::PreStartContainerResponse*) override {
    if (shared_ == nullptr) return grpc::Status::OK;
    std::vector<std::string> ids(request->devicesids().begin(), request->devicesids().end());
    const auto start = std::chrono::steady_clock::now();
    const Status status = shared_->PreStart(ids);
    registry_.RecordRpc(Registry::Rpc::kPreStartContainer,
                        std::chrono::steady_clock::now() - start);
    if (!status.ok()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, status.message());
    }
    return grpc::Status::OK;
  }

 private:
  dp::ListAndWatchResponse Devices() const {
    dp::ListAndWatchResponse response;
    const auto health = registry_.AllHealth();
    for (const auto& device : resource_.devices) {
      auto* out = response.add_devices();
      out->set_id(device.id);
      const auto it = health.find(device.gpu_uuid);
      out->set_health(it == health.end() || it->second.healthy ? "Healthy" : "Unhealthy");
      if (device.numa_node >= 0) out->mutable_topology()->add_nodes()->set_id(device.numa_node);
    }
    return response;
  }

  Registry& registry_;
  const Resource& resource_;
  const DeviceNodes nodes_;
  SharedGpus* const shared_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> watched_{false};
};

PluginServer::PluginServer(Registry& registry, const Resource& resource, std::string directory,
                           DeviceNodes device_nodes, SharedGpus* shared)
    : registry_(registry),
      resource_(resource),
      directory_(std::move(directory)),
      endpoint_(EndpointFor(resource.name)),
      device_nodes_(std::move(device_nodes)),
      shared_(shared) {}

PluginServer::~PluginServer() { Stop(); }

const std::string& PluginServer::resource_name() const { return resource_.name; }

bool PluginServer::watched() const { return service_ != nullptr && service_->watched(); }

Status PluginServer::Start() {
  const std::string path = socket_path();
  unlink(path.c_str());  // a socket left by an earlier run
  service_ = std::make_unique<PluginService>(registry_, resource_, device_nodes_, shared_);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    return Status::Error(resource_.name + ": cannot serve the device plugin on " + path);
  }
  return Status::Ok();
}

Status PluginServer::Register(const std::string& kubelet_socket,
                              std::chrono::milliseconds timeout) {
  auto channel =
      grpc::CreateChannel("unix://" + kubelet_socket, grpc::InsecureChannelCredentials());
  auto stub = dp::Registration::NewStub(channel);
  dp::RegisterRequest request;
  request.set_version("v1beta1");
  request.set_endpoint(endpoint_);
  request.set_resource_name(resource_.name);
  // kubelet keeps the options it is registered with (it does not ask GetDevicePluginOptions).
  request.mutable_options()->set_get_preferred_allocation_available(true);
  request.mutable_options()->set_pre_start_required(shared_ != nullptr);
  dp::Empty reply;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  context.set_wait_for_ready(true);
  const grpc::Status status = stub->Register(&context, request, &reply);
  if (!status.ok()) {
    return Status::Error(resource_.name + ": kubelet (" + kubelet_socket +
                         ") refused the registration: " + status.error_message());
  }
  log::Write(log::Level::kInfo, "node", "%s: registered with kubelet as %s (%zu devices)",
             resource_.name.c_str(), endpoint_.c_str(), resource_.devices.size());
  return Status::Ok();
}

void PluginServer::Stop() {
  if (server_ == nullptr) return;
  service_->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  server_.reset();
  unlink(socket_path().c_str());
  service_.reset();  // its streams have ended for good; Start() makes a fresh one
}

}  // namespace tessera::node
