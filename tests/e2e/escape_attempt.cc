// tessera-escape-attempt: does what a process inside a container can do to lift its own memory
// limit, and checks that none of it works. Run under the shim (LD_PRELOAD) with a limits file.
//
//   tessera-escape-attempt LIMIT [--redirect-limits-file] [--container] ROOT...
//
// LIMIT is the container's memory limit on device 0 (e.g. 256M). ROOTs are the directories it
// attacks: every regular file under them that it can open for writing is overwritten, round
// after round. In a container: the region directory, /run/tessera, /etc/tessera, the working
// directory, /tmp. In tests: test directories only. A root that is "/" or a top-level directory
// ("/etc", "/tmp") is refused unless TESSERA_ESCAPE_ALLOW_TOP_LEVEL=1 (inside a container or a
// private mount namespace), so that a mistyped command cannot wreck the machine it runs on.
//
// --container: it runs in a container that tessera-node set up on a shared GPU, and first
// attacks the files mounted read-only there (docs/pod-identity.md): the limits file is written
// over with 1 TiB limits, truncated to nothing (an empty file means no limits), replaced by a
// rename and unlinked; /etc/ld.so.preload and the shim are only opened for writing, never
// written (where the mounts are missing they are the node's own files). Each attempt is reported
// as `attempt.<file>.<how>=ok` or the error's name (EROFS), and one that works is a failure.
//
// The rounds, each followed by a child (this program re-exec'd) that runs with
// CUDA_DEVICE_MEMORY_LIMIT=1t and CUDA_DISABLE_CONTROL=true in its environment (and, with
// --redirect-limits-file, TESSERA_LIMITS_FILE naming a file that says 1t):
//   forge     every region found gets a 1 TiB limit on every device and its charges zeroed
//             (through the region's own API: what any process that can write the file can do);
//             every other file is replaced by "CUDA_DEVICE_MEMORY_LIMIT=1t". This process then
//             tries too. One more child runs without CUDA_DEVICE_MEMORY_SHARED_CACHE.
//   truncate  every file cut to 0 bytes (a new region is made by the next process)
//   zeros     every file's bytes set to zero
//   garbage   every file's bytes set to random values
//   final     every file cut to 0 bytes again: after all of the above, a fresh region
// In each, an allocation of LIMIT + 1 MiB and the allocation that would take the process past
// LIMIT must be refused; in `forge`, `truncate` and `final` (the region is usable) an allocation
// within the limit must still work. After `zeros` and `garbage` the shim may refuse CUDA
// altogether (fail closed), which counts as refused. A process's own total is what is checked:
// processes of one container that forge the shared totals together can each reach LIMIT (see
// docs/memory-limits.md). Reports "key=value" lines; "FAIL: ..." for each failed check; exits 0
// only when there are none.
#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/units.h"
#include "cuda/driver_api.h"
#include "cuda/nvml_api.h"
#include "region/region.h"
#include "shim/config.h"

extern char** environ;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kChunk = 16 * kMiB;
constexpr int kMostChunks = 4096;

int failures = 0;

void Fail(const std::string& what) {
  std::printf("FAIL: %s\n", what.c_str());
  ++failures;
}

struct Driver {
  decltype(&cuInit) Init = nullptr;
  decltype(&cuDeviceGet) DeviceGet = nullptr;
  decltype(&cuDevicePrimaryCtxRetain) PrimaryCtxRetain = nullptr;
  decltype(&cuCtxSetCurrent) CtxSetCurrent = nullptr;
  decltype(&cuMemAlloc_v2) MemAlloc = nullptr;
  decltype(&cuMemFree_v2) MemFree = nullptr;
  decltype(&cuMemGetInfo_v2) MemGetInfo = nullptr;
  decltype(&cuDeviceTotalMem_v2) DeviceTotalMem = nullptr;
};

template <typename Function>
void Find(Function& out, void* library, const char* name) {
  out = reinterpret_cast<Function>(dlsym(library, name));
  if (out == nullptr) {
    std::fprintf(stderr, "escape-attempt: no %s in libcuda.so.1\n", name);
    std::exit(3);
  }
}

Driver LoadDriver() {
  void* library = dlopen("libcuda.so.1", RTLD_NOW);
  if (library == nullptr) {
    std::fprintf(stderr, "escape-attempt: %s\n", dlerror());
    std::exit(3);
  }
  Driver d;
  Find(d.Init, library, "cuInit");
  Find(d.DeviceGet, library, "cuDeviceGet");
  Find(d.PrimaryCtxRetain, library, "cuDevicePrimaryCtxRetain");
  Find(d.CtxSetCurrent, library, "cuCtxSetCurrent");
  Find(d.MemAlloc, library, "cuMemAlloc_v2");
  Find(d.MemFree, library, "cuMemFree_v2");
  Find(d.MemGetInfo, library, "cuMemGetInfo_v2");
  Find(d.DeviceTotalMem, library, "cuDeviceTotalMem_v2");
  return d;
}

// NVML's total for device 0, or 0 when NVML cannot say.
uint64_t NvmlTotal() {
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (nvml == nullptr) return 0;
  auto init = reinterpret_cast<decltype(&nvmlInit_v2)>(dlsym(nvml, "nvmlInit_v2"));
  auto handle_of = reinterpret_cast<decltype(&nvmlDeviceGetHandleByIndex_v2)>(
      dlsym(nvml, "nvmlDeviceGetHandleByIndex_v2"));
  auto memory =
      reinterpret_cast<decltype(&nvmlDeviceGetMemoryInfo)>(dlsym(nvml, "nvmlDeviceGetMemoryInfo"));
  nvmlDevice_t device = nullptr;
  nvmlMemory_t info{};
  if (init == nullptr || handle_of == nullptr || memory == nullptr || init() != NVML_SUCCESS ||
      handle_of(0, &device) != NVML_SUCCESS || memory(device, &info) != NVML_SUCCESS) {
    return 0;
  }
  return info.total;
}

// Starts CUDA on device 0. False (and says why) when the shim refuses.
bool StartCuda(const Driver& d, const char* round) {
  CUresult init = d.Init(0);
  std::printf("%s.init=%d\n", round, static_cast<int>(init));
  if (init != CUDA_SUCCESS) return false;
  CUdevice device = 0;
  CUcontext context = nullptr;
  if (d.DeviceGet(&device, 0) != CUDA_SUCCESS ||
      d.PrimaryCtxRetain(&context, device) != CUDA_SUCCESS ||
      d.CtxSetCurrent(context) != CUDA_SUCCESS) {
    std::printf("%s.context=failed\n", round);
    return false;
  }
  return true;
}

// The checks, with `held` bytes already allocated by this process outside of them. `usable`:
// the region is intact, so an allocation within the limit must work.
void TryToPassTheLimit(const Driver& d, uint64_t limit, uint64_t held, bool usable,
                       const char* round) {
  std::string name = round;
  size_t free_bytes = 0;
  size_t total = 0;
  if (d.MemGetInfo(&free_bytes, &total) == CUDA_SUCCESS) {
    std::printf("%s.total=%zu\n%s.free=%zu\n", round, total, round, free_bytes);
    if (total > limit) Fail(name + ": cuMemGetInfo says total " + std::to_string(total));
    if (free_bytes + held > limit)
      Fail(name + ": cuMemGetInfo says free " + std::to_string(free_bytes));
  }
  size_t device_total = 0;
  if (d.DeviceTotalMem(&device_total, 0) == CUDA_SUCCESS) {
    std::printf("%s.device_total=%zu\n", round, device_total);
    if (device_total > limit)
      Fail(name + ": cuDeviceTotalMem says " + std::to_string(device_total));
  }
  if (uint64_t nvml_total = NvmlTotal(); nvml_total != 0) {
    std::printf("%s.nvml_total=%" PRIu64 "\n", round, nvml_total);
    if (nvml_total > limit) Fail(name + ": NVML says total " + std::to_string(nvml_total));
  }

  // One allocation larger than the whole limit.
  CUdeviceptr pointer = 0;
  CUresult over = d.MemAlloc(&pointer, limit + kMiB);
  std::printf("%s.over_limit=%d\n", round, static_cast<int>(over));
  if (over == CUDA_SUCCESS) {
    Fail(name + ": an allocation of the limit + 1 MiB succeeded");
    d.MemFree(pointer);
  }

  // Chunks until refused: never more than the limit in all.
  static CUdeviceptr chunks[kMostChunks];
  int count = 0;
  uint64_t most = limit / kChunk + 4;
  CUresult refused = CUDA_SUCCESS;
  while (static_cast<uint64_t>(count) < most && count < kMostChunks) {
    refused = d.MemAlloc(&chunks[count], kChunk);
    if (refused != CUDA_SUCCESS) break;
    ++count;
  }
  uint64_t allocated = static_cast<uint64_t>(count) * kChunk;
  std::printf("%s.filled=%" PRIu64 "\n%s.fill_refused=%d\n", round, allocated, round,
              static_cast<int>(refused));
  if (allocated + held > limit) {
    Fail(name + ": this process got " + std::to_string(allocated + held) + " bytes past a " +
         std::to_string(limit) + "-byte limit");
  }
  if (refused == CUDA_SUCCESS) Fail(name + ": filling was never refused");
  for (int i = 0; i < count; ++i) d.MemFree(chunks[i]);

  // And within the limit, after all that.
  CUresult within = d.MemAlloc(&pointer, kChunk);
  std::printf("%s.within_limit=%d\n", round, static_cast<int>(within));
  if (within == CUDA_SUCCESS) {
    d.MemFree(pointer);
  } else if (usable) {
    Fail(name + ": an allocation within the limit was refused (" + std::to_string(within) + ")");
  }
}

// A child is refused CUDA altogether or passes the checks.
int RunChild(uint64_t limit, const char* round, bool usable) {
  Driver d = LoadDriver();
  if (!StartCuda(d, round)) {
    // Refused: then nothing past the limit can be had either. Only a fail-closed shim may do so.
    if (usable) Fail(std::string(round) + ": CUDA refused although the region was intact");
    CUdeviceptr pointer = 0;
    if (d.MemAlloc(&pointer, limit + kMiB) == CUDA_SUCCESS) {
      Fail(std::string(round) + ": an allocation succeeded without CUDA");
    }
  } else {
    TryToPassTheLimit(d, limit, 0, usable, round);
  }
  return failures == 0 ? 0 : 1;
}

// ---- The files --------------------------------------------------------------------------------
std::vector<std::string>* found_files = nullptr;

int Collect(const char* path, const struct stat* info, int type, struct FTW*) {
  if (type == FTW_F && S_ISREG(info->st_mode)) found_files->push_back(path);
  return 0;
}

std::vector<std::string> RegularFiles(const std::vector<std::string>& roots) {
  std::vector<std::string> files;
  found_files = &files;
  for (const std::string& root : roots) nftw(root.c_str(), Collect, 16, FTW_PHYS);
  found_files = nullptr;
  return files;
}

// Opens `path` for writing, or reports that it could not.
int OpenForWriting(const std::string& path, int extra_flags) {
  int fd =
      ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | extra_flags);
  if (fd < 0) std::printf("unwritable=%s (%s)\n", path.c_str(), std::strerror(errno));
  return fd;
}

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t wrote = ::write(fd, data, size);
    if (wrote <= 0) return;
    data += wrote;
    size -= static_cast<size_t>(wrote);
  }
}

constexpr char kHugeLimits[] =
    "CUDA_DEVICE_MEMORY_LIMIT=1t\nCUDA_DEVICE_MEMORY_LIMIT_0=1t\nCUDA_DEVICE_SM_LIMIT=0\n";

int Forge(const std::vector<std::string>& roots) {
  int forged = 0;
  for (const std::string& path : RegularFiles(roots)) {
    auto region = tessera::region::Region::Open(path, nullptr);
    if (region.ok()) {
      for (int device = 0; device < tessera::region::kMaxDevices; ++device) {
        (void)(*region)->SetLimits(device, {tessera::kTiB, 0});  // an attack: tries, never checks
      }
      for (int slot = 0; slot < tessera::region::kMaxProcesses; ++slot)
        (void)(*region)->ReleaseSlot(slot);
      std::printf("forged_region=%s\n", path.c_str());
      ++forged;
      continue;
    }
    int fd = OpenForWriting(path, O_TRUNC);
    if (fd < 0) continue;
    WriteAll(fd, kHugeLimits, sizeof kHugeLimits - 1);
    ::close(fd);
    ++forged;
  }
  return forged;
}

int Truncate(const std::vector<std::string>& roots) {
  int done = 0;
  for (const std::string& path : RegularFiles(roots)) {
    int fd = OpenForWriting(path, O_TRUNC);
    if (fd < 0) continue;
    ::close(fd);
    ++done;
  }
  return done;
}

// Overwrites each file's bytes: zeros, or random bytes from `random` when given.
int Overwrite(const std::vector<std::string>& roots, std::mt19937_64* random) {
  int done = 0;
  std::vector<char> buffer(1 << 16);
  for (const std::string& path : RegularFiles(roots)) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) continue;
    int fd = OpenForWriting(path, 0);
    if (fd < 0) continue;
    // A file cut to nothing by the last round gets a region's worth of bytes.
    uint64_t size = info.st_size > 0 ? static_cast<uint64_t>(info.st_size) : 1 << 20;
    for (uint64_t written = 0; written < size; written += buffer.size()) {
      for (char& c : buffer) c = random != nullptr ? static_cast<char>((*random)()) : '\0';
      WriteAll(fd, buffer.data(), std::min<uint64_t>(buffer.size(), size - written));
    }
    ::close(fd);
    ++done;
  }
  return done;
}

// ---- The read-only files of a container ------------------------------------------------------
// Where tessera-node mounts them (node/shared_state.h; the limits file: shim/config.h).
constexpr char kPreloadPath[] = "/etc/ld.so.preload";
constexpr char kShimPath[] = "/usr/lib/tessera/libtessera-cuda.so";

// Reports one attempt: `worked`, or errno's name when it did not.
void Report(const std::string& what, bool worked) {
  std::printf("attempt.%s=%s\n", what.c_str(), worked ? "ok" : strerrorname_np(errno));
  if (worked) Fail(what + ": a file that tessera-node mounts read-only could be changed");
}

// Writes kHugeLimits into `path` opened with `flags`; false (errno says why) if it cannot.
bool WriteHugeLimits(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0644);
  if (fd < 0) return false;
  WriteAll(fd, kHugeLimits, sizeof kHugeLimits - 1);
  ::close(fd);
  return true;
}

void AttackReadOnlyFiles() {
  const std::string limits = tessera::shim::kLimitsFilePath;
  Report("limits.write", WriteHugeLimits(limits, O_TRUNC));
  Report("limits.truncate", ::truncate(limits.c_str(), 0) == 0);
  const std::string lifted = limits + ".lifted";
  Report("limits.rename", WriteHugeLimits(lifted, O_CREAT | O_TRUNC) &&
                              ::rename(lifted.c_str(), limits.c_str()) == 0);
  ::unlink(lifted.c_str());
  Report("limits.unlink", ::unlink(limits.c_str()) == 0);
  for (const auto& [name, path] : {std::pair{"preload", kPreloadPath}, {"shim", kShimPath}}) {
    int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
    Report(std::string(name) + ".open", fd >= 0);
  }
}

// ---- Children -----------------------------------------------------------------------------
// Runs this program again as `--child LIMIT ROUND USABLE` with `set` added to its environment
// and `unset` taken out. Returns its exit status.
int ReExec(const std::string& limit, const char* round, bool usable,
           const std::vector<std::string>& set, const std::vector<std::string>& unset) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text = *entry;
    std::string name = text.substr(0, text.find('='));
    bool drop = false;
    for (const std::string& s : set) drop = drop || s.substr(0, s.find('=')) == name;
    for (const std::string& u : unset) drop = drop || u == name;
    if (!drop) environment.push_back(text);
  }
  environment.insert(environment.end(), set.begin(), set.end());
  std::vector<char*> envp;
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  std::string child_flag = "--child";
  std::string round_text = round;
  std::string usable_text = usable ? "usable" : "may-refuse";
  std::string limit_text = limit;
  char* argv[] = {self.data(),       child_flag.data(),  limit_text.data(),
                  round_text.data(), usable_text.data(), nullptr};
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::printf("%s.child=%d\n", round, code);
  if (code != 0) Fail(std::string(round) + ": the child failed (" + std::to_string(code) + ")");
  return code;
}

bool SafeRoot(const std::string& root) {
  char resolved[PATH_MAX];
  if (realpath(root.c_str(), resolved) == nullptr) {
    std::fprintf(stderr, "escape-attempt: root %s: %s\n", root.c_str(), std::strerror(errno));
    return false;
  }
  int components = 0;
  for (const char* c = resolved; *c != '\0'; ++c) components += *c == '/' && c[1] != '\0';
  const char* allow = std::getenv("TESSERA_ESCAPE_ALLOW_TOP_LEVEL");
  if (components < 2 && (allow == nullptr || std::strcmp(allow, "1") != 0)) {
    std::fprintf(stderr,
                 "escape-attempt: refusing root %s (%s): a top-level directory; set "
                 "TESSERA_ESCAPE_ALLOW_TOP_LEVEL=1 only inside a container\n",
                 root.c_str(), resolved);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: tessera-escape-attempt LIMIT [--redirect-limits-file] [--container] "
                 "ROOT...\n");
    return 2;
  };
  if (argc >= 5 && std::strcmp(argv[1], "--child") == 0) {
    auto limit = tessera::ParseBytes(argv[2], "LIMIT");
    if (!limit.ok()) return usage();
    return RunChild(*limit, argv[3], std::strcmp(argv[4], "usable") == 0);
  }
  if (argc < 3) return usage();
  std::string limit_text = argv[1];
  auto parsed = tessera::ParseBytes(limit_text, "LIMIT");
  if (!parsed.ok()) return usage();
  uint64_t limit = *parsed;
  bool redirect = false;
  bool container = false;
  std::vector<std::string> roots;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--redirect-limits-file") == 0) {
      redirect = true;
    } else if (std::strcmp(argv[i], "--container") == 0) {
      container = true;
    } else if (!SafeRoot(argv[i])) {
      return 2;
    } else {
      roots.push_back(argv[i]);
    }
  }
  if (roots.empty()) return usage();

  // A limits file of our own that lifts the limit, for TESSERA_LIMITS_FILE to name.
  std::string forged_limits = roots.back() + "/forged-limits";
  {
    int fd = ::open(forged_limits.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      WriteAll(fd, kHugeLimits, sizeof kHugeLimits - 1);
      ::close(fd);
    }
  }
  std::vector<std::string> lift = {"CUDA_DEVICE_MEMORY_LIMIT=1t", "CUDA_DEVICE_MEMORY_LIMIT_0=1t",
                                   "CUDA_DISABLE_CONTROL=true"};
  if (redirect) lift.push_back("TESSERA_LIMITS_FILE=" + forged_limits);

  Driver d = LoadDriver();
  if (!StartCuda(d, "start")) {
    Fail("start: CUDA refused before any attack");
    return 1;
  }
  uint64_t held = limit / 2;
  CUdeviceptr hold = 0;
  if (d.MemAlloc(&hold, held) != CUDA_SUCCESS) {
    Fail("start: half the limit could not be allocated");
    return 1;
  }

  if (container) AttackReadOnlyFiles();
  std::printf("forge.files=%d\n", Forge(roots));
  TryToPassTheLimit(d, limit, held, /*usable=*/true, "forge");
  ReExec(limit_text, "forge-child", true, lift, {});
  ReExec(limit_text, "private-child", true, lift, {"CUDA_DEVICE_MEMORY_SHARED_CACHE"});
  // From here this process leaves CUDA alone: its own mapping of the region is about to be cut
  // short or filled with garbage.
  std::printf("truncate.files=%d\n", Truncate(roots));
  ReExec(limit_text, "truncate-child", true, lift, {});
  std::printf("zeros.files=%d\n", Overwrite(roots, nullptr));
  ReExec(limit_text, "zeros-child", false, lift, {});
  std::mt19937_64 random(20240601);
  std::printf("garbage.files=%d\n", Overwrite(roots, &random));
  ReExec(limit_text, "garbage-child", false, lift, {});
  std::printf("final.files=%d\n", Truncate(roots));
  ReExec(limit_text, "final-child", true, lift, {});

  std::printf("failures=%d\n", failures);
  std::fflush(stdout);
  // Straight out: no exit handler of ours touches CUDA or the broken region.
  _exit(failures == 0 ? 0 : 1);
}
