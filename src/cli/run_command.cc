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
#include "common/units.h"
#include "region/region.h"

namespace tessera::cli {
namespace {

constexpr const char* kUsage =
    "usage: tessera run [options] -- COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND with the Tessera shim preloaded and GPU memory limits in force: its CUDA\n"
    "allocations beyond a limit fail with CUDA_ERROR_OUT_OF_MEMORY, and cuMemGetInfo, \n"
    "cuDeviceTotalMem and NVML report the limit; with --gpu-cores its kernels get that share of\n"
    "each GPU's time. All processes COMMAND starts share the limits.\n"
    "\n"
    "options:\n"
    "  --gpu-memory SIZE       memory limit of every GPU (e.g. 4GiB, 512MiB, 8g)\n"
    "  --gpu-memory I=SIZE     memory limit of GPU I (0-15; overrides the default)\n"
    "  --gpu-cores PERCENT     share of every GPU's time (1-100; the compute limiter)\n"
    "  --gpu-cores I=PERCENT   share of GPU I's time (overrides the default)\n"
    "  --region PATH           the region file to account in (default: a new one in\n"
    "                          $TESSERA_REGION_DIR or /tmp/tessera-<uid>, removed at exit)\n"
    "  --keep-region           leave the region file in place when COMMAND ends\n"
    "  -v, --verbose           say which region and shim are used\n"
    "  -h, --help              this help\n"
    "\n"
    "The shim is found next to this program (../lib/libtessera-cuda.so) or at $TESSERA_SHIM.\n"
    "`tessera status` shows the region while COMMAND runs.\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tessera run: %s\n\n%s", message.c_str(), kUsage);
  return 2;
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

int RunCommand(int argc, char** argv) {
  region::RegionConfig config;
  bool memory_for_all = false;
  uint64_t memory_all = 0;
  bool memory_for[region::kMaxDevices] = {};
  bool cores_for_all = false;
  uint32_t cores_all = 0;
  bool cores_for[region::kMaxDevices] = {};
  std::string region_path;
  bool keep_region = false;
  bool verbose = false;
  int command_start = -1;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument == "--") {
      command_start = i + 1;
      break;
    }
    if (argument == "-h" || argument == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (argument == "-v" || argument == "--verbose") {
      verbose = true;
    } else if (argument == "--keep-region") {
      keep_region = true;
    } else if (argument == "--gpu-memory" || argument.rfind("--gpu-memory=", 0) == 0) {
      std::string value;
      if (argument == "--gpu-memory") {
        if (i + 1 >= argc) return UsageError("--gpu-memory needs a value, e.g. 4GiB or 1=2GiB");
        value = argv[++i];
      } else {
        value = argument.substr(std::strlen("--gpu-memory="));
      }
      size_t equals = value.find('=');
      std::string size_text = equals == std::string::npos ? value : value.substr(equals + 1);
      Result<uint64_t> bytes = ParseBytes(size_text, "--gpu-memory");
      if (!bytes.ok()) return UsageError(bytes.status().message());
      if (*bytes == 0) return UsageError("--gpu-memory=\"" + value + "\": a limit must be above 0");
      if (equals == std::string::npos) {
        memory_for_all = true;
        memory_all = *bytes;
      } else {
        Result<uint64_t> device = ParseUnsigned(value.substr(0, equals), "--gpu-memory device",
                                                0, region::kMaxDevices - 1);
        if (!device.ok()) return UsageError(device.status().message());
        config.devices[*device].memory_bytes = *bytes;
        memory_for[*device] = true;
      }
    } else if (argument == "--gpu-cores" || argument.rfind("--gpu-cores=", 0) == 0) {
      std::string value;
      if (argument == "--gpu-cores") {
        if (i + 1 >= argc) return UsageError("--gpu-cores needs a value, e.g. 25 or 1=50");
        value = argv[++i];
      } else {
        value = argument.substr(std::strlen("--gpu-cores="));
      }
      size_t equals = value.find('=');
      std::string percent_text = equals == std::string::npos ? value : value.substr(equals + 1);
      Result<int> percent = ParsePercent(percent_text, "--gpu-cores");
      if (!percent.ok()) return UsageError(percent.status().message());
      if (*percent == 0) return UsageError("--gpu-cores=\"" + value + "\": a share must be above 0");
      if (equals == std::string::npos) {
        cores_for_all = true;
        cores_all = static_cast<uint32_t>(*percent);
      } else {
        Result<uint64_t> device = ParseUnsigned(value.substr(0, equals), "--gpu-cores device", 0,
                                                region::kMaxDevices - 1);
        if (!device.ok()) return UsageError(device.status().message());
        config.devices[*device].sm_percent = static_cast<uint32_t>(*percent);
        cores_for[*device] = true;
      }
    } else if (argument == "--region") {
      if (i + 1 >= argc) return UsageError("--region needs a path");
      region_path = argv[++i];
      keep_region = true;
    } else {
      return UsageError("unknown option \"" + argument + "\" (put the command after --)");
    }
  }
  if (command_start < 0 || command_start >= argc) return UsageError("no command to run after --");
  if (memory_for_all) {
    for (int device = 0; device < region::kMaxDevices; ++device) {
      if (!memory_for[device]) config.devices[device].memory_bytes = memory_all;
    }
  }
  if (cores_for_all) {
    for (int device = 0; device < region::kMaxDevices; ++device) {
      if (!cores_for[device]) config.devices[device].sm_percent = cores_all;
    }
  }

  std::string shim = ShimPath();
  if (access(shim.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "tessera run: cannot read the shim at %s (set TESSERA_SHIM?)\n",
                 shim.c_str());
    return 1;
  }
  if (region_path.empty()) {
    std::string directory = DefaultRegionDirectory();
    if (mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "tessera run: cannot create %s: %s\n", directory.c_str(),
                   std::strerror(errno));
      return 1;
    }
    region_path = directory + "/run-" + std::to_string(getpid()) + ".region";
  }
  auto region = region::Region::Open(region_path, &config);
  if (!region.ok()) {
    std::fprintf(stderr, "tessera run: %s\n", region.status().message().c_str());
    return 1;
  }
  // Whoever runs the container sets its limits, also on a region that existed before.
  for (int device = 0; device < region::kMaxDevices; ++device) {
    Status set = (*region)->SetLimits(device, config.devices[device]);
    if (!set.ok()) {
      std::fprintf(stderr, "tessera run: %s\n", set.message().c_str());
      return 1;
    }
  }
  if (verbose) {
    std::fprintf(stderr, "tessera run: region %s, shim %s\n", region_path.c_str(), shim.c_str());
  }

  std::string preload = shim;
  if (const char* existing = std::getenv("LD_PRELOAD"); existing && *existing) {
    preload += std::string(":") + existing;
  }
  setenv("LD_PRELOAD", preload.c_str(), 1);
  setenv("CUDA_DEVICE_MEMORY_SHARED_CACHE", region_path.c_str(), 1);
  // The region holds the limits; the variables say the same to anything that reads them.
  for (int device = 0; device < region::kMaxDevices; ++device) {
    std::string name = "CUDA_DEVICE_MEMORY_LIMIT_" + std::to_string(device);
    if (config.devices[device].memory_bytes != 0) {
      setenv(name.c_str(), std::to_string(config.devices[device].memory_bytes).c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  unsetenv("CUDA_DEVICE_MEMORY_LIMIT");
  for (int device = 0; device < region::kMaxDevices; ++device) {
    std::string name = "CUDA_DEVICE_SM_LIMIT_" + std::to_string(device);
    if (config.devices[device].sm_percent != 0) {
      setenv(name.c_str(), std::to_string(config.devices[device].sm_percent).c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  unsetenv("CUDA_DEVICE_SM_LIMIT");

  pid_t child = fork();
  if (child < 0) {
    std::fprintf(stderr, "tessera run: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    execvp(argv[command_start], argv + command_start);
    std::fprintf(stderr, "tessera run: cannot run %s: %s\n", argv[command_start],
                 std::strerror(errno));
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
  if (!keep_region) unlink(region_path.c_str());
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace tessera::cli
