// `tessera sim <what> ...`: the simulators behind one command.
#ifndef TESSERA_SIM_SIM_COMMAND_H_
#define TESSERA_SIM_SIM_COMMAND_H_

namespace tessera::sim {

// argv[0] is "sim". Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunSimCommand(int argc, char** argv);

// Implemented in alibaba/, mix/ and replay/; argv[0] is "alibaba", "mix" or "replay".
int RunAlibabaCommand(int argc, char** argv);
int RunMixCommand(int argc, char** argv);
int RunReplayCommand(int argc, char** argv);

}  // namespace tessera::sim

#endif  // TESSERA_SIM_SIM_COMMAND_H_
