// tessera: run a command under GPU limits, see what the regions say, simulate placement.
#include <cstdio>
#include <cstring>

#include "cli/commands.h"
#include "sim/sim_command.h"

namespace {

constexpr const char* kUsage =
    "usage: tessera <command> [options]\n"
    "\n"
    "Tessera shares NVIDIA GPUs at a fraction of a GPU, with a memory limit that holds.\n"
    "\n"
    "commands:\n"
    "  run      run a command under GPU memory limits, no Kubernetes needed\n"
    "           tessera run --gpu-memory 4GiB [--gpu-memory 1=2GiB] -- CMD ARGS...\n"
    "  status   show each device's limit and use, and each process's share, for the\n"
    "           regions of running containers (tessera status [REGION...] [--json])\n"
    "  sim      replay the Alibaba GPU trace or a workload mix under placement policies, or\n"
    "           pods through the scheduler's own code (tessera sim alibaba|mix|replay ...)\n"
    "\n"
    "Run `tessera <command> --help` for a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const char* command = argv[1];
  if (std::strcmp(command, "--help") == 0 || std::strcmp(command, "-h") == 0 ||
      std::strcmp(command, "help") == 0) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (std::strcmp(command, "--version") == 0) {
    std::printf("tessera %s\n", TESSERA_VERSION);
    return 0;
  }
  if (std::strcmp(command, "run") == 0) return tessera::cli::RunCommand(argc - 1, argv + 1);
  if (std::strcmp(command, "status") == 0) return tessera::cli::StatusCommand(argc - 1, argv + 1);
  if (std::strcmp(command, "sim") == 0) return tessera::sim::RunSimCommand(argc - 1, argv + 1);
  std::fprintf(stderr, "tessera: unknown command \"%s\"\n\n%s", command, kUsage);
  return 2;
}
