#include "node/pod_resources.h"

#include <grpcpp/grpcpp.h>

#include "node/proto/podresources/v1/api.grpc.pb.h"

namespace tessera::node {

Result<std::vector<PodResourcesPod>> ListPodResourcesPods(const std::string& socket,
                                                          std::chrono::milliseconds timeout) {
  auto channel = grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials());
  auto stub = ::v1::PodResourcesLister::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  ::v1::ListPodResourcesRequest request;
  ::v1::ListPodResourcesResponse response;
  const grpc::Status status = stub->List(&context, request, &response);
  if (!status.ok()) {
    return Status::Error("PodResources List on " + socket + ": " + status.error_message());
  }
  std::vector<PodResourcesPod> out;
  for (const auto& pod : response.pod_resources()) {
    PodResourcesPod entry;
    entry.namespace_name = pod.namespace_();
    entry.name = pod.name();
    for (const auto& container : pod.containers()) {
      PodResourcesContainer c;
      c.name = container.name();
      for (const auto& devices : container.devices()) {
        auto& ids = c.devices[devices.resource_name()];
        ids.insert(ids.end(), devices.device_ids().begin(), devices.device_ids().end());
      }
      entry.containers.push_back(std::move(c));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

std::vector<ContainerDevices> NvidiaContainerDevices(const std::vector<PodResourcesPod>& pods) {
  std::vector<ContainerDevices> out;
  for (const auto& pod : pods) {
    for (const auto& container : pod.containers) {
      for (const auto& [resource, ids] : container.devices) {
        if (resource.rfind("nvidia.com/", 0) != 0 || ids.empty()) continue;
        out.push_back({pod.namespace_name, pod.name, container.name, resource, ids});
      }
    }
  }
  return out;
}

Result<std::vector<ContainerDevices>> ListPodResources(const std::string& socket,
                                                       std::chrono::milliseconds timeout) {
  auto pods = ListPodResourcesPods(socket, timeout);
  if (!pods.ok()) return pods.status();
  return NvidiaContainerDevices(*pods);
}

}  // namespace tessera::node
