// tessera run: a command under GPU limits, as a container would get them, without Kubernetes.
// It creates a region with the limits, preloads the shim, runs the command, and removes the
// region when the command ends (unless the user named the region).
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/cli.h"
#include "common/units.h"
#include "region/region.h"
#include "shim/environment.h"

namespace tessera::cli {
namespace {

constexpr const char* kCommand = "tessera run";

// Everything `tessera run` runs with, checked.
struct RunOptions {
  region::RegionConfig limits;
  std::string region_path;  // empty: a new region in DefaultRegionDirectory()
  bool keep_region = false;
  bool verbose = false;
  std::vector<std::string> command;  // after "--"
  std::string help;                  // set: --help was asked for; print it and run nothing
};

// Applies "--<flag> VALUE" or "--<flag> I=VALUE" values: the bare ones to every device, then
// those for one device over them. `parse` turns the text after any "I=" into the value, and
// `set(device, value)` applies it.
template <typename Parse, typename Set>
Status ApplyPerDevice(const std::vector<std::string>& values, const std::string& flag, Parse parse,
                      Set set) {
  for (bool per_device : {false, true}) {
    for (const std::string& value : values) {
      const size_t equals = value.find('=');
      if ((equals != std::string::npos) != per_device) continue;
      auto parsed = parse(per_device ? value.substr(equals + 1) : value);
      if (!parsed.ok()) return parsed.status();
      if (*parsed == 0) {
        return Status::Error(flag + "=\"" + value + "\": a limit must be above 0");
      }
      int first = 0;
      int last = region::kMaxDevices - 1;
      if (per_device) {
        auto device =
            ParseUnsigned(value.substr(0, equals), flag + " device", 0, region::kMaxDevices - 1);
        if (!device.ok()) return device.status();
        first = last = static_cast<int>(*device);
      }
      for (int device = first; device <= last; ++device) set(device, *parsed);
    }
  }
  return Status::Ok();
}

Result<RunOptions> ParseRunOptions(int argc, char** argv) {
  RunOptions options;
  std::vector<std::string> memory;
  std::vector<std::string> cores;
  CLI::App app{
      "Runs COMMAND with the Tessera shim preloaded and GPU limits in force: its CUDA "
      "allocations beyond a memory limit fail with CUDA_ERROR_OUT_OF_MEMORY, and cuMemGetInfo, "
      "cuDeviceTotalMem and NVML report the limit; with --gpu-cores its kernels get that share "
      "of each GPU's time. All processes COMMAND starts share the limits.",
      kCommand};
  app.footer(
      "The shim is found next to this program (../lib/libtessera-cuda.so) or at $TESSERA_SHIM.\n"
      "`tessera status` shows the region while COMMAND runs.\n\n"
      "example:\n"
      "  tessera run --gpu-memory 4GiB --gpu-cores 25 -- python3 train.py");
  app.add_option("--gpu-memory", memory,
                 "SIZE: memory limit of every GPU (e.g. 4GiB, 512MiB, 8g); I=SIZE: of GPU I "
                 "(0-15), over the default; may be repeated")
      ->allow_extra_args(false);
  app.add_option("--gpu-cores", cores,
                 "PERCENT: share of every GPU's time (1-100, the compute limiter); I=PERCENT: of "
                 "GPU I, over the default; may be repeated")
      ->allow_extra_args(false);
  app.add_option("--region", options.region_path,
                 "the region file to account in, kept at exit (default: a new one in "
                 "$TESSERA_REGION_DIR or /tmp/tessera-<uid>, removed at exit)");
  app.add_flag("--keep-region", options.keep_region,
               "leave the region file in place when COMMAND ends");
  app.add_flag("-v,--verbose", options.verbose, "say which region and shim are used");
  // The command is everything after the first "--", taken as it is (CLI11 would read a
  // command's own options as ours).
  int flags_end = 1;
  while (flags_end < argc && std::string_view(argv[flags_end]) != "--") ++flags_end;
  for (int i = flags_end + 1; i < argc; ++i) options.command.emplace_back(argv[i]);
  if (Status parsed = ParseCommandLine(app, flags_end, argv, &options.help); !parsed.ok()) {
    return parsed;
  }
  if (!options.help.empty()) return options;
  if (options.command.empty()) return Status::Error("no command to run after --");
  if (!options.region_path.empty()) options.keep_region = true;
  region::DeviceLimits* devices = options.limits.devices;
  Status applied = ApplyPerDevice(
      memory, "--gpu-memory",
      [](const std::string& text) { return ParseBytes(text, "--gpu-memory"); },
      [devices](int device, uint64_t bytes) { devices[device].memory_bytes = bytes; });
  if (!applied.ok()) return applied;
  applied = ApplyPerDevice(
      cores, "--gpu-cores",
      [](const std::string& text) { return ParsePercent(text, "--gpu-cores"); },
      [devices](int device, int percent) {
        devices[device].sm_percent = static_cast<uint32_t>(percent);
      });
  if (!applied.ok()) return applied;
  return options;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kCommand, message.c_str());
  return 1;
}

std::string ShimPath() {
  if (const char* configured = std::getenv("TESSERA_SHIM"); configured && *configured) {
    return configured;
  }
  char self[PATH_MAX] = {};
  ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return "";
  std::string directory(self, static_cast<size_t>(length));
  directory.erase(directory.rfind('/'));
  return directory + "/../lib/libtessera-cuda.so";
}

pid_t g_child = 0;

void ForwardSignal(int signal_number) {
  if (g_child > 0) kill(g_child, signal_number);
}

}  // namespace

std::string DefaultRegionDirectory() {
  if (const char* directory = std::getenv("TESSERA_REGION_DIR"); directory && *directory) {
    return directory;
  }
  return "/tmp/tessera-" + std::to_string(getuid());
}

namespace {

int Run(RunOptions options) {
  region::RegionConfig& config = options.limits;
  std::string& region_path = options.region_path;
  std::string shim = ShimPath();
  if (access(shim.c_str(), R_OK) != 0) {
    return Fail("cannot read the shim at " + shim + " (set TESSERA_SHIM?)");
  }
  if (region_path.empty()) {
    std::string directory = DefaultRegionDirectory();
    if (mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
      return Fail("cannot create " + directory + ": " + std::strerror(errno));
    }
    region_path = directory + "/run-" + std::to_string(getpid()) + ".region";
  }
  auto region = region::Region::Open(region_path, &config);
  if (!region.ok()) return Fail(region.status().message());
  // Whoever runs the container sets its limits, also on a region that existed before.
  for (int device = 0; device < region::kMaxDevices; ++device) {
    Status set = (*region)->SetLimits(device, config.devices[device]);
    if (!set.ok()) return Fail(set.message());
  }
  if (options.verbose) {
    std::fprintf(stderr, "tessera run: region %s, shim %s\n", region_path.c_str(), shim.c_str());
  }

  std::string preload = shim;
  if (const char* existing = std::getenv("LD_PRELOAD"); existing && *existing) {
    preload += std::string(":") + existing;
  }
  setenv("LD_PRELOAD", preload.c_str(), 1);
  setenv(std::string(shim::kRegionVariable).c_str(), region_path.c_str(), 1);
  // The region holds the limits; the variables say the same to anything that reads them.
  for (const std::string& name : shim::LimitVariableNames()) unsetenv(name.c_str());
  for (const std::string& assignment : shim::LimitAssignments(config)) {
    const size_t equals = assignment.find('=');
    setenv(assignment.substr(0, equals).c_str(), assignment.c_str() + equals + 1, 1);
  }

  pid_t child = fork();
  if (child < 0) return Fail(std::string("fork: ") + std::strerror(errno));
  if (child == 0) {
    std::vector<char*> command;
    for (std::string& word : options.command) command.push_back(word.data());
    command.push_back(nullptr);
    execvp(command[0], command.data());
    std::fprintf(stderr, "%s: cannot run %s: %s\n", kCommand, command[0], std::strerror(errno));
    _exit(127);
  }
  g_child = child;
  struct sigaction forward {};
  forward.sa_handler = ForwardSignal;
  sigemptyset(&forward.sa_mask);
  for (int signal_number : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    sigaction(signal_number, &forward, nullptr);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!options.keep_region) unlink(region_path.c_str());
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace

int RunCommand(int argc, char** argv) {
  return RunCommandLine(kCommand, argc, argv, ParseRunOptions, Run);
}

}  // namespace tessera::cli
