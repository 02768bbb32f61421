// tessera-node as a real process on the fake GPU, against a fake kubelet: a gRPC Registration
// server on a temporary device-plugin directory, written from the same v1beta1 protocol kubelet
// speaks. The cluster suite (tests/cluster) runs the agent under real kubelets; this one is fast,
// runs under the sanitizers, and reaches what kubelet never does on purpose (a bad config, an
// Xid in the middle of a stream).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

#include "node/proto/deviceplugin/v1beta1/api.grpc.pb.h"
#include "tests/e2e/fake_node.h"
#include "tests/support/child_process.h"

namespace tessera::node {
namespace {

using namespace std::chrono_literals;
namespace dp = ::v1beta1;

constexpr char kGpus[] =
    "device name=\"NVIDIA H100 80GB HBM3\" memory=80GiB sms=132 numa=0 "
    "mig=3g.40gb,2g.20gb,1g.10gb,1g.10gb\n"
    "device name=\"NVIDIA L4\" memory=24GiB sms=58 numa=0\n"
    "device name=\"NVIDIA L4\" memory=24GiB sms=58 numa=1\n"
    "device name=\"NVIDIA A100-SXM4-40GB\" memory=40GiB sms=108 numa=1\n";

constexpr char kConfig[] =
    "gpus:\n"
    "  - {index: 0, mode: mig, mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]}\n"
    "  - {index: 1, mode: time-sliced, replicas: 2}\n"
    "  - {index: 2, mode: time-sliced, replicas: 2}\n"
    "  - {index: 3, mode: whole}\n";

// kubelet's Registration service: records each RegisterRequest.
class FakeKubelet final : public dp::Registration::Service {
 public:
  explicit FakeKubelet(const std::string& socket) : socket_(socket) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix://" + socket, grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeKubelet() override {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    unlink(socket_.c_str());
  }

  grpc::Status Register(grpc::ServerContext*, const dp::RegisterRequest* request,
                        dp::Empty*) override {
    std::lock_guard lock(mutex_);
    requests_.push_back(*request);
    registered_.notify_all();
    return grpc::Status::OK;
  }

  // Waits until `count` registrations came; returns them.
  std::vector<dp::RegisterRequest> WaitFor(size_t count, std::chrono::seconds deadline = 30s) {
    std::unique_lock lock(mutex_);
    registered_.wait_for(lock, deadline, [&] { return requests_.size() >= count; });
    return requests_;
  }

 private:
  std::string socket_;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mutex_;
  std::condition_variable registered_;
  std::vector<dp::RegisterRequest> requests_;
};

struct CommandResult {
  int status;
  std::string output;
};

class Agent : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(node_.ok());
    plugins_ = node_.Path("device-plugins");
    mkdir(plugins_.c_str(), 0755);
    std::ofstream(node_.Path("node.yaml")) << kConfig;
  }

  std::unique_ptr<testing::Child> Start(const std::string& config,
                                        const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {TESSERA_NODE_BINARY,
                                     "--node-name",
                                     "test-node",
                                     "--config",
                                     config,
                                     "--no-publish",
                                     "--device-plugin-dir",
                                     plugins_,
                                     "--pod-resources-socket",
                                     node_.Path("no-pod-resources.sock"),
                                     "--metrics-address",
                                     "127.0.0.1:0",
                                     "--health-recovery-ms",
                                     "500"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<testing::Child>(argv, node_.Environment({"TESSERA_LOG_LEVEL=info"}));
  }

  int FakeGpu(std::vector<std::string> args) {
    args.insert(args.begin(), TESSERA_FAKEGPU_TOOL);
    testing::Child tool(args, node_.Environment({}));
    return tool.Finish();
  }

  std::unique_ptr<dp::DevicePlugin::Stub> Plugin(const std::string& endpoint) {
    return dp::DevicePlugin::NewStub(grpc::CreateChannel("unix://" + plugins_ + "/" + endpoint,
                                                         grpc::InsecureChannelCredentials()));
  }

  CommandResult Refused(const std::string& config_text) {
    std::ofstream(node_.Path("bad.yaml")) << config_text;
    testing::Child child({TESSERA_NODE_BINARY, "--node-name", "n", "--config",
                          node_.Path("bad.yaml"), "--no-publish"},
                         node_.Environment({}));
    CommandResult result;
    result.status = child.Finish();
    result.output = child.output();
    return result;
  }

  testing::FakeNode node_{kGpus};
  std::string plugins_;
};

TEST_F(Agent, RefusesABadConfigurationWithOneMessageNamingFileFieldAndValue) {
  struct Case {
    const char* what;
    std::string config;
    std::string field;
    std::string value;
  } cases[] = {
      {"unknown mode", "gpus:\n  - {index: 1, mode: fractional}\n", "gpus[0].mode",
       "\"fractional\""},
      {"MIG profile the GPU lacks", "gpus:\n  - {index: 0, mode: mig, mig: [5g.50gb]}\n",
       "gpus[0].mig[0]", "\"5g.50gb\""},
      {"GPU index that does not exist",
       "gpus:\n  - {index: 0, mode: mig}\n  - {index: 7, mode: whole}\n", "gpus[1].index", "7"},
      {"0 replicas",
       "gpus:\n  - {index: 0, mode: mig}\n  - {index: 1, mode: time-sliced, replicas: 0}\n",
       "gpus[1].replicas", "0"},
      {"malformed file", "gpus:\n  - {index: 0, mode: mig\n", "not valid YAML at line", ""},
  };
  for (const auto& c : cases) {
    CommandResult result = Refused(c.config);
    EXPECT_EQ(result.status, 2) << c.what << ": " << result.output;
    const std::string prefix = "tessera-node: " + node_.Path("bad.yaml") + ": " + c.field;
    EXPECT_EQ(result.output.rfind(prefix, 0), 0u) << c.what << ": " << result.output;
    EXPECT_NE(result.output.find(c.value), std::string::npos) << c.what << ": " << result.output;
    EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1)
        << c.what << ": " << result.output;
  }
}

TEST_F(Agent, RegistersEachResourceAndAnswersKubeletsCalls) {
  FakeKubelet kubelet(plugins_ + "/kubelet.sock");
  auto agent = Start(node_.Path("node.yaml"));
  auto requests = kubelet.WaitFor(5);
  ASSERT_EQ(requests.size(), 5u) << agent->output();
  std::map<std::string, std::string> endpoints;
  for (const auto& request : requests) {
    EXPECT_EQ(request.version(), "v1beta1");
    EXPECT_TRUE(request.options().get_preferred_allocation_available());
    endpoints[request.resource_name()] = request.endpoint();
  }
  EXPECT_EQ(endpoints["nvidia.com/gpu"], "tessera-gpu.sock");
  EXPECT_EQ(endpoints["nvidia.com/gpu.shared"], "tessera-gpu.shared.sock");
  EXPECT_EQ(endpoints["nvidia.com/mig-1g.10gb"], "tessera-mig-1g.10gb.sock");
  EXPECT_TRUE(endpoints.count("nvidia.com/mig-2g.20gb") &&
              endpoints.count("nvidia.com/mig-3g.40gb"));

  // ListAndWatch: the four replicas, healthy, each with its GPU's NUMA node.
  auto sliced = Plugin(endpoints["nvidia.com/gpu.shared"]);
  grpc::ClientContext watch_context;
  dp::Empty empty;
  auto stream = sliced->ListAndWatch(&watch_context, empty);
  dp::ListAndWatchResponse list;
  ASSERT_TRUE(stream->Read(&list));
  ASSERT_EQ(list.devices_size(), 4);
  std::vector<std::string> ids;
  for (const auto& device : list.devices()) {
    EXPECT_EQ(device.health(), "Healthy");
    ASSERT_EQ(device.topology().nodes_size(), 1);
    ids.push_back(device.id());
  }

  // GetPreferredAllocation: two replicas on two GPUs, not both of one.
  {
    grpc::ClientContext context;
    dp::PreferredAllocationRequest request;
    auto* container = request.add_container_requests();
    for (const auto& id : ids) container->add_available_deviceids(id);
    container->set_allocation_size(2);
    dp::PreferredAllocationResponse response;
    ASSERT_TRUE(sliced->GetPreferredAllocation(&context, request, &response).ok());
    ASSERT_EQ(response.container_responses(0).deviceids_size(), 2);
    const std::string a = response.container_responses(0).deviceids(0);
    const std::string b = response.container_responses(0).deviceids(1);
    EXPECT_NE(a.substr(0, a.find("::")), b.substr(0, b.find("::")));
  }

  // Allocate: the GPU's UUID once, and the device nodes the host has.
  {
    grpc::ClientContext context;
    dp::AllocateRequest request;
    request.add_container_requests()->add_devicesids(ids[0]);
    dp::AllocateResponse response;
    ASSERT_TRUE(sliced->Allocate(&context, request, &response).ok());
    ASSERT_EQ(response.container_responses_size(), 1);
    EXPECT_EQ(response.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"),
              ids[0].substr(0, ids[0].find("::")));
  }
  {
    grpc::ClientContext context;
    dp::AllocateRequest request;
    request.add_container_requests()->add_devicesids("GPU-not-here::0");
    dp::AllocateResponse response;
    grpc::Status status = sliced->Allocate(&context, request, &response);
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.error_message().find("GPU-not-here::0"), std::string::npos);
  }

  // An Xid on GPU 1 makes its replicas Unhealthy in the stream; clearing it brings them back.
  const std::string gpu1 = ids[0].substr(0, ids[0].find("::"));
  auto fault = [&](std::vector<std::string> args) {
    args.insert(args.begin(), TESSERA_FAKEGPU_TOOL);
    testing::Child tool(args, node_.Environment({}));
    return tool.Finish();
  };
  auto health_of = [&](const dp::ListAndWatchResponse& response, const std::string& gpu) {
    std::string health;
    for (const auto& device : response.devices()) {
      if (device.id().rfind(gpu, 0) == 0) health += device.health() + " ";
    }
    return health;
  };
  // Index 1 is the first L4 (the replicas' GPU order follows the node's).
  ASSERT_EQ(fault({"fault", "raise", "--gpu", gpu1, "--xid", "48"}), 0);
  ASSERT_TRUE(stream->Read(&list));
  EXPECT_EQ(health_of(list, gpu1), "Unhealthy Unhealthy ");
  ASSERT_EQ(fault({"fault", "clear", "--gpu", gpu1}), 0);
  ASSERT_TRUE(stream->Read(&list));
  EXPECT_EQ(health_of(list, gpu1), "Healthy Healthy ");
  watch_context.TryCancel();
}

TEST_F(Agent, AnXidNvmlDoesNotShowHoldsTheGpuOutAndAnApplicationsXidIsIgnored) {
  FakeKubelet kubelet(plugins_ + "/kubelet.sock");
  auto agent = Start(node_.Path("node.yaml"), {"--xid-hold-ms", "1500"});
  auto requests = kubelet.WaitFor(5);
  ASSERT_EQ(requests.size(), 5u);
  auto whole = Plugin("tessera-gpu.sock");
  grpc::ClientContext context;
  dp::Empty empty;
  auto stream = whole->ListAndWatch(&context, empty);
  dp::ListAndWatchResponse list;
  ASSERT_TRUE(stream->Read(&list));
  ASSERT_EQ(list.devices_size(), 1);
  ASSERT_EQ(list.devices(0).health(), "Healthy");
  // Xid 13 (an application's illegal address) says nothing about the GPU.
  ASSERT_EQ(FakeGpu({"fault", "raise", "--gpu", "3", "--xid", "13"}), 0);
  ASSERT_TRUE(agent->WaitFor("Xid 13 (an application's error; ignored)"));
  // Xid 74 (NVLink): Unhealthy at once, and, with nothing in NVML's health queries to say when it
  // is over, Healthy again only after the hold, although the fault was never cleared.
  ASSERT_EQ(FakeGpu({"fault", "raise", "--gpu", "3", "--xid", "74"}), 0);
  const auto raised = std::chrono::steady_clock::now();
  ASSERT_TRUE(stream->Read(&list));
  EXPECT_EQ(list.devices(0).health(), "Unhealthy");
  ASSERT_TRUE(stream->Read(&list));
  EXPECT_EQ(list.devices(0).health(), "Healthy");
  EXPECT_GE(std::chrono::steady_clock::now() - raised, 1500ms);
  context.TryCancel();
}

TEST_F(Agent, RegistersAgainWhenKubeletRestarts) {
  auto kubelet = std::make_unique<FakeKubelet>(plugins_ + "/kubelet.sock");
  auto agent = Start(node_.Path("node.yaml"));
  ASSERT_EQ(kubelet->WaitFor(5).size(), 5u) << agent->output();
  // A restarting kubelet removes every socket in the directory and makes its own again.
  kubelet.reset();
  for (const char* name :
       {"tessera-gpu.sock", "tessera-gpu.shared.sock", "tessera-mig-1g.10gb.sock",
        "tessera-mig-2g.20gb.sock", "tessera-mig-3g.40gb.sock"}) {
    unlink((plugins_ + "/" + name).c_str());
  }
  const auto restarted = std::chrono::steady_clock::now();
  kubelet = std::make_unique<FakeKubelet>(plugins_ + "/kubelet.sock");
  ASSERT_EQ(kubelet->WaitFor(5).size(), 5u) << agent->output();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count();
  EXPECT_LT(seconds, 5.0);
  struct stat st = {};
  EXPECT_EQ(stat((plugins_ + "/tessera-gpu.sock").c_str(), &st), 0);
}

TEST_F(Agent, StopsOnSigtermAndRemovesItsSockets) {
  FakeKubelet kubelet(plugins_ + "/kubelet.sock");
  auto agent = Start(node_.Path("node.yaml"));
  ASSERT_EQ(kubelet.WaitFor(5).size(), 5u) << agent->output();
  ASSERT_TRUE(agent->WaitFor("registered with kubelet as tessera-mig-3g.40gb.sock"));
  kill(agent->pid(), SIGTERM);
  EXPECT_EQ(agent->Finish(), 0) << agent->output();
  struct stat st = {};
  EXPECT_NE(stat((plugins_ + "/tessera-gpu.sock").c_str(), &st), 0);
  EXPECT_NE(stat((plugins_ + "/tessera-gpu.shared.sock").c_str(), &st), 0);
}

constexpr char kSharedConfig[] =
    "gpus:\n"
    "  - {index: 0, mode: mig}\n"
    "  - {index: 1, mode: shared, replicas: 3}\n"
    "  - {index: 2, mode: shared}\n"
    "  - {index: 3, mode: whole}\n";

TEST_F(Agent, AdvertisesSharedGpusAsReplicasOfNvidiaComGpuAndAsksForPreStart) {
  std::ofstream(node_.Path("shared.yaml")) << kSharedConfig;
  FakeKubelet kubelet(plugins_ + "/kubelet.sock");
  auto agent = Start(node_.Path("shared.yaml"), {"--state-dir", node_.Path("tessera-state")});
  auto requests = kubelet.WaitFor(4, 10s);  // nvidia.com/gpu and the three MIG profiles
  ASSERT_EQ(requests.size(), 4u) << agent->output();
  bool found = false;
  for (const auto& request : requests) {
    if (request.resource_name() != "nvidia.com/gpu") {
      EXPECT_FALSE(request.options().pre_start_required()) << request.resource_name();
      continue;
    }
    found = true;
    EXPECT_TRUE(request.options().pre_start_required());
    EXPECT_TRUE(request.options().get_preferred_allocation_available());
  }
  ASSERT_TRUE(found);
  // Without an API server the agent says at once that it cannot serve them.
  EXPECT_TRUE(agent->WaitFor("shared GPUs are advertised but cannot be served")) << agent->output();

  auto gpu = Plugin("tessera-gpu.sock");
  {
    grpc::ClientContext context;
    dp::DevicePluginOptions options;
    ASSERT_TRUE(gpu->GetDevicePluginOptions(&context, dp::Empty(), &options).ok());
    EXPECT_TRUE(options.pre_start_required());
  }
  grpc::ClientContext watch_context;
  auto stream = gpu->ListAndWatch(&watch_context, dp::Empty());
  dp::ListAndWatchResponse list;
  ASSERT_TRUE(stream->Read(&list));
  // GPU 1: 3 replicas, GPU 2: the default 32, GPU 3: whole, under its UUID.
  ASSERT_EQ(list.devices_size(), 3 + 32 + 1);
  std::map<std::string, int> per_gpu;
  for (const auto& device : list.devices()) {
    const std::string& id = device.id();
    const size_t separator = id.find("::");
    ++per_gpu[separator == std::string::npos ? id + " (whole)" : id.substr(0, separator)];
  }
  ASSERT_EQ(per_gpu.size(), 3u);
  std::vector<int> counts;
  for (const auto& [gpu_uuid, count] : per_gpu) counts.push_back(count);
  std::sort(counts.begin(), counts.end());
  EXPECT_EQ(counts, (std::vector<int>{1, 3, 32}));
  std::string replica;
  std::string whole;
  for (const auto& device : list.devices()) {
    if (device.id().find("::") == std::string::npos)
      whole = device.id();
    else if (replica.empty())
      replica = device.id();
  }

  // A share is refused, saying why; a whole GPU is served as before.
  {
    grpc::ClientContext context;
    dp::AllocateRequest request;
    request.add_container_requests()->add_devicesids(replica);
    dp::AllocateResponse response;
    grpc::Status status = gpu->Allocate(&context, request, &response);
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.error_message().find("--no-publish"), std::string::npos)
        << status.error_message();
  }
  {
    grpc::ClientContext context;
    dp::AllocateRequest request;
    request.add_container_requests()->add_devicesids(whole);
    dp::AllocateResponse response;
    ASSERT_TRUE(gpu->Allocate(&context, request, &response).ok());
    EXPECT_EQ(response.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), whole);
    EXPECT_EQ(response.container_responses(0).mounts_size(), 0);
  }
  {
    grpc::ClientContext context;
    dp::PreStartContainerRequest request;
    request.add_devicesids(replica);
    dp::PreStartContainerResponse response;
    EXPECT_FALSE(gpu->PreStartContainer(&context, request, &response).ok());
  }
  struct stat st = {};
  EXPECT_EQ(stat(node_.Path("tessera-state/ld.so.preload").c_str(), &st), 0);
  watch_context.TryCancel();
}

}  // namespace
}  // namespace tessera::node
