// The subcommands of the `tessera` command. Each takes argv with argv[0] = the subcommand's name
// and returns the process exit code: 0 ok, 1 failure, 2 bad usage.
#ifndef TESSERA_CLI_COMMANDS_H_
#define TESSERA_CLI_COMMANDS_H_

#include <string>

namespace tessera::cli {

int RunCommand(int argc, char** argv);
int StatusCommand(int argc, char** argv);

// Where `tessera run` puts regions and `tessera status` looks for them: $TESSERA_REGION_DIR, or
// /tmp/tessera-<uid>.
std::string DefaultRegionDirectory();

}  // namespace tessera::cli

#endif  // TESSERA_CLI_COMMANDS_H_
