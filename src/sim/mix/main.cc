// tessera-sim-mix: `tessera sim mix` on its own, for use before (and beside) the tessera CLI.
#include "sim/sim_command.h"

int main(int argc, char** argv) {
  // RunMixCommand expects argv[0] to be "mix".
  char name[] = "mix";
  argv[0] = name;
  return tessera::sim::RunMixCommand(argc, argv);
}
