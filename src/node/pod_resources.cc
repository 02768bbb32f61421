#include "node/pod_resources.h"

#include <grpcpp/grpcpp.h>

#include "node/proto/podresources/v1/api.grpc.pb.h"

namespace tessera::node {

Result<std::vector<ContainerDevices>> ListPodResources(const std::string& socket,
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
  std::vector<ContainerDevices> out;
  for (const auto& pod : response.pod_resources()) {
    for (const auto& container : pod.containers()) {
      for (const auto& devices : container.devices()) {
        if (devices.resource_name().rfind("nvidia.com/", 0) != 0) continue;
        ContainerDevices entry;
        entry.namespace_name = pod.namespace_();
        entry.pod = pod.name();
        entry.container = container.name();
        entry.resource = devices.resource_name();
        entry.device_ids.assign(devices.device_ids().begin(), devices.device_ids().end());
        out.push_back(std::move(entry));
      }
    }
  }
  return out;
}

}  // namespace tessera::node
