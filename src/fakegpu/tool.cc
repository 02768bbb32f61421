// tessera-fakegpu: looks at and disturbs the fake GPU node from outside its processes, as an
// operator (or a test) would a real node's GPUs.
//
//   tessera-fakegpu [--config FILE] [--state FILE] devices
//   tessera-fakegpu [--config FILE] [--state FILE] fault raise --gpu <index|uuid> --xid <n>
//   tessera-fakegpu [--config FILE] [--state FILE] fault clear --gpu <index|uuid>
//   tessera-fakegpu [--config FILE] [--state FILE] fault list
//   tessera-fakegpu node-pids --socket PATH      (fakegpu/node_pids.h)
//
// It reads the node as the fake libraries do (TESSERA_FAKEGPU_CONFIG, TESSERA_FAKEGPU_STATE; the
// flags win) and sees the whole node: NVIDIA_VISIBLE_DEVICES is a container's view, not the
// node's. Errors go to stderr with exit status 1; usage errors exit as CLI11 says (non-zero).
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/units.h"
#include "fakegpu/config.h"
#include "fakegpu/fault_control.h"
#include "fakegpu/node_pids.h"
#include "fakegpu/shared_state.h"

namespace tessera::fakegpu {
namespace {

constexpr const char* kProgram = "tessera-fakegpu";

int Fail(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
  return 1;
}

struct Node {
  std::vector<DeviceSpec> devices;
  std::unique_ptr<SharedState> state;
};

Result<Node> OpenNode(const std::string& config_path, const std::string& state_path) {
  // LoadDeviceConfig reads the variable, as the libraries do: the flag stands in for it.
  if (!config_path.empty()) setenv("TESSERA_FAKEGPU_CONFIG", config_path.c_str(), 1);
  Result<std::vector<DeviceSpec>> devices = LoadDeviceConfig();
  if (!devices.ok()) return devices.status();
  std::string path = state_path.empty() ? DefaultStatePath() : state_path;
  Result<std::unique_ptr<SharedState>> state = SharedState::OpenForNode(path, *devices);
  if (!state.ok()) return state.status();
  return Node{std::move(devices).value(), std::move(state).value()};
}

std::string HealthText(const GpuHealth& health) {
  if (health.healthy()) return "health=ok";
  return "health=faulted last_xid=" + std::to_string(health.last_xid) +
         " xids=" + std::to_string(health.xid_count) + " lost=" + (health.lost ? "yes" : "no") +
         " retired_pages_pending=" + (health.retired_pages_pending ? "yes" : "no");
}

// Every GPU's health, read before anything is printed: a list is whole or not printed at all.
Result<std::vector<GpuHealth>> ReadHealth(Node& node) {
  std::vector<GpuHealth> health;
  for (size_t gpu = 0; gpu < node.devices.size(); ++gpu) {
    Result<GpuHealth> read = node.state->Health(static_cast<int>(gpu));
    if (!read.ok()) return read.status();
    health.push_back(*read);
  }
  return health;
}

int ListDevices(Node& node) {
  Result<std::vector<GpuHealth>> health = ReadHealth(node);
  if (!health.ok()) return Fail(health.status().message());
  for (size_t gpu = 0; gpu < node.devices.size(); ++gpu) {
    const DeviceSpec& device = node.devices[gpu];
    std::printf("gpu=%zu uuid=%s name=\"%s\" memory=\"%s\" sms=%u numa=%u mig=%s %s\n", gpu,
                FormatUuid(device.uuid).c_str(), device.name.c_str(),
                FormatBytes(device.memory_bytes).c_str(), device.multiprocessors, device.numa_node,
                device.mig_enabled() ? "on" : "off", HealthText((*health)[gpu]).c_str());
    for (size_t mig = 0; mig < device.mig.size(); ++mig) {
      const MigInstance& instance = device.mig[mig];
      std::printf(
          "  mig=%zu:%zu uuid=%s name=\"%s\" memory=\"%s\" sms=%u gpu_instance=%u "
          "compute_instance=%u placement=%u:%u\n",
          gpu, mig, FormatMigUuid(instance.uuid).c_str(),
          MigDeviceName(device.name, *instance.profile).c_str(),
          FormatBytes(instance.memory_bytes).c_str(), instance.multiprocessors,
          instance.gpu_instance_id, instance.compute_instance_id, instance.placement_start,
          instance.profile->memory_slices);
    }
  }
  return 0;
}

int ListFaults(Node& node) {
  Result<std::vector<GpuHealth>> health = ReadHealth(node);
  if (!health.ok()) return Fail(health.status().message());
  for (size_t gpu = 0; gpu < node.devices.size(); ++gpu) {
    std::printf("gpu=%zu uuid=%s %s\n", gpu, FormatUuid(node.devices[gpu].uuid).c_str(),
                HealthText((*health)[gpu]).c_str());
  }
  return 0;
}

int Raise(Node& node, const std::string& gpu_text, uint64_t xid) {
  Result<int> gpu = FindNodeGpu(node.devices, gpu_text);
  if (!gpu.ok()) return Fail("--gpu " + gpu_text + ": " + gpu.status().message());
  Result<uint64_t> raised = RaiseXidOnGpu(*node.state, node.devices, *gpu, xid);
  if (!raised.ok()) return Fail(raised.status().message());
  uint32_t number = static_cast<uint32_t>(xid);
  std::string what = "Xid " + std::to_string(number);
  if (!XidMeaning(number).empty()) what += " (" + std::string(XidMeaning(number)) + ")";
  std::printf("raised %s on GPU %d (%s): %s; clear it with `%s fault clear --gpu %d`\n",
              what.c_str(), *gpu, FormatUuid(node.devices[static_cast<size_t>(*gpu)].uuid).c_str(),
              std::string(XidEffect(number)).c_str(), kProgram, *gpu);
  return 0;
}

int Clear(Node& node, const std::string& gpu_text) {
  Result<int> gpu = FindNodeGpu(node.devices, gpu_text);
  if (!gpu.ok()) return Fail("--gpu " + gpu_text + ": " + gpu.status().message());
  Status cleared = ClearGpuFault(*node.state, node.devices, *gpu);
  if (!cleared.ok()) return Fail(cleared.message());
  std::printf("cleared GPU %d (%s): healthy\n", *gpu,
              FormatUuid(node.devices[static_cast<size_t>(*gpu)].uuid).c_str());
  return 0;
}

// Serves the node pids (fakegpu/node_pids.h) until SIGINT or SIGTERM.
int ServeNodePids(const std::string& path) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before the service's thread starts
  Result<std::unique_ptr<NodePidService>> service = NodePidService::Start(path);
  if (!service.ok()) return Fail(service.status().message());
  std::printf("serving node pids on %s; processes in their own pid namespaces find it with %s=%s\n",
              path.c_str(), kNodePidsVariable, path.c_str());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  return 0;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "Looks at and disturbs the fake GPU node (Tessera's fake libcuda.so.1 and "
      "libnvidia-ml.so.1) from outside its processes.",
      kProgram};
  app.footer(
      "The node is TESSERA_FAKEGPU_CONFIG's devices (two 80 GiB H100s when unset) and "
      "TESSERA_FAKEGPU_STATE's state file (/tmp/tessera-fakegpu-<uid>.state when unset); "
      "--config and --state take their place. GPUs are named by their index on the node or "
      "their GPU UUID, whatever a container's NVIDIA_VISIBLE_DEVICES shows.\n\n"
      "Examples:\n"
      "  tessera-fakegpu devices\n"
      "  tessera-fakegpu fault raise --gpu 1 --xid 79    # GPU 1 falls off the bus\n"
      "  tessera-fakegpu fault raise --gpu GPU-8f3a7c2e-1b4d-4e6f-9a0b-c1d2e3f40516 --xid 48\n"
      "  tessera-fakegpu fault clear --gpu 1\n"
      "  tessera-fakegpu fault list\n"
      "  tessera-fakegpu node-pids --socket /run/tessera-fakegpu/node-pids.sock\n");
  std::string config_path;
  std::string state_path;
  app.add_option("--config", config_path, "the device file (instead of TESSERA_FAKEGPU_CONFIG)");
  app.add_option("--state", state_path, "the node's state file (instead of TESSERA_FAKEGPU_STATE)");
  app.require_subcommand(1);
  app.fallthrough();  // --config and --state also after the subcommand

  CLI::App* devices = app.add_subcommand(
      "devices", "list the node's GPUs and MIG devices: UUIDs, sizes, MIG layout and health");
  CLI::App* fault =
      app.add_subcommand("fault", "raise, clear or list Xid faults on the node's GPUs");
  fault->require_subcommand(1);
  std::string gpu;
  uint64_t xid = 0;
  CLI::App* raise = fault->add_subcommand(
      "raise",
      "raise an Xid on a GPU: every NVML event set registered for it receives it, and the GPU "
      "reports it until cleared (79: fallen off the bus, queries fail with "
      "NVML_ERROR_GPU_IS_LOST; 48, 63, 64, 94, 95: retired pages pending)");
  raise->add_option("--gpu", gpu, "the GPU: its index on the node or its GPU UUID")->required();
  raise->add_option("--xid", xid, "the Xid, 1 to 999")
      ->required()
      ->check(CLI::Range(uint64_t{1}, kMaxXid));
  CLI::App* clear = fault->add_subcommand("clear", "clear a GPU's fault: healthy again");
  clear->add_option("--gpu", gpu, "the GPU: its index on the node or its GPU UUID")->required();
  CLI::App* list = fault->add_subcommand("list", "each GPU's health, one line per GPU");
  std::string socket_path;
  CLI::App* node_pids = app.add_subcommand(
      "node-pids",
      "serve the node pids of processes in their own pid namespaces (containers with their own "
      "/proc) from the node's, until SIGINT or SIGTERM: the fake GPU knows such a process by its "
      "node pid, as a driver does, when TESSERA_FAKEGPU_NODE_PIDS names this socket");
  node_pids->add_option("--socket", socket_path, "the unix socket to serve on")->required();

  CLI11_PARSE(app, argc, argv);
  if (node_pids->parsed()) return ServeNodePids(socket_path);

  Result<Node> node = OpenNode(config_path, state_path);
  if (!node.ok()) return Fail(node.status().message());
  if (devices->parsed()) return ListDevices(*node);
  if (raise->parsed()) return Raise(*node, gpu, xid);
  if (clear->parsed()) return Clear(*node, gpu);
  if (list->parsed()) return ListFaults(*node);
  return Fail("no command; see --help");
}

}  // namespace
}  // namespace tessera::fakegpu

int main(int argc, char** argv) {
  return tessera::RunMain("tessera-fakegpu", [&] { return tessera::fakegpu::Main(argc, argv); });
}
