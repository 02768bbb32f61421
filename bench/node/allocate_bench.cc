// tessera_node_allocate_bench SOCKET DEVICE_ID [N]: calls Allocate for DEVICE_ID N times (default
// 2000) on a running tessera-node's device-plugin socket, as kubelet does, and prints p50/p99 of
// the round trip beside those of GetDevicePluginOptions (an empty call on the same connection), so
// the figure that matters is a ratio within one run: what Allocate adds to gRPC's own cost.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "node/proto/deviceplugin/v1beta1/api.grpc.pb.h"

namespace {

struct Percentiles {
  double p50_us;
  double p99_us;
};

Percentiles Summarise(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[static_cast<size_t>(q * static_cast<double>(samples.size() - 1))];
  };
  return {at(0.50), at(0.99)};
}

template <typename Call>
std::vector<double> Time(int n, Call call) {
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (!call()) {
      std::fprintf(stderr, "allocate_bench: call %d failed\n", i);
      std::exit(1);
    }
    samples.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SOCKET DEVICE_ID [N]\n", argv[0]);
    return 2;
  }
  const std::string socket = argv[1];
  const std::string device = argv[2];
  const int n = argc > 3 ? std::atoi(argv[3]) : 2000;
  auto stub = v1beta1::DevicePlugin::NewStub(
      grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials()));
  auto options = [&] {
    grpc::ClientContext context;
    v1beta1::Empty empty;
    v1beta1::DevicePluginOptions reply;
    return stub->GetDevicePluginOptions(&context, empty, &reply).ok();
  };
  auto allocate = [&] {
    grpc::ClientContext context;
    v1beta1::AllocateRequest request;
    request.add_container_requests()->add_devicesids(device);
    v1beta1::AllocateResponse reply;
    return stub->Allocate(&context, request, &reply).ok() && reply.container_responses_size() == 1;
  };
  Time(100, options);  // connect and warm up
  Time(100, allocate);
  const Percentiles empty = Summarise(Time(n, options));
  const Percentiles alloc = Summarise(Time(n, allocate));
  std::printf("calls: %d each\n", n);
  std::printf("GetDevicePluginOptions: p50 %.1f us  p99 %.1f us\n", empty.p50_us, empty.p99_us);
  std::printf("Allocate:               p50 %.1f us  p99 %.1f us\n", alloc.p50_us, alloc.p99_us);
  std::printf("Allocate / empty call:  p50 %.2fx  p99 %.2fx\n", alloc.p50_us / empty.p50_us,
              alloc.p99_us / empty.p99_us);
  return 0;
}
