#include "sim/sim_command.h"

#include <cstdio>
#include <cstring>

namespace tessera::sim {
namespace {

constexpr const char* kUsage =
    "usage: tessera sim <simulation> [options]\n"
    "\n"
    "simulations:\n"
    "  alibaba   replay the Alibaba GPU-sharing trace under placement policies\n"
    "            (tessera sim alibaba --trace DIR --policy fgd,tessera --seeds 42-51)\n"
    "  mix       replay a workload mix (CI, simulation, inference, training) under\n"
    "            whole GPUs, MIG, time-slicing, shares and hybrids\n"
    "            (tessera sim mix --scenario nio)\n"
    "  replay    place pods in arrival order with tessera-scheduler's own code on the nodes\n"
    "            of a cluster file, as the cluster would\n"
    "            (tessera sim replay --cluster deploy/dev-cluster/cluster.yaml --pods FILE)\n"
    "\n"
    "Run `tessera sim <simulation> --help` for the options of each.\n";

}  // namespace

int RunSimCommand(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "alibaba") == 0) return RunAlibabaCommand(argc - 1, argv + 1);
  if (std::strcmp(argv[1], "mix") == 0) return RunMixCommand(argc - 1, argv + 1);
  if (std::strcmp(argv[1], "replay") == 0) return RunReplayCommand(argc - 1, argv + 1);
  std::fprintf(stderr, "tessera sim: unknown simulation \"%s\"\n\n%s", argv[1], kUsage);
  return 2;
}

}  // namespace tessera::sim
