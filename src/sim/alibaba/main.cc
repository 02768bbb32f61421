// A stand-alone driver for `tessera sim alibaba`, for timings and for use before the `tessera`
// command links it: `tessera-sim-alibaba ARGS` is `tessera sim alibaba ARGS`.
#include "sim/sim_command.h"

int main(int argc, char** argv) {
  char name[] = "alibaba";
  argv[0] = name;
  return tessera::sim::RunAlibabaCommand(argc, argv);
}
