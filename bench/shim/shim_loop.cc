// A fixed-count loop over one driver call, for instruction counting under callgrind. Two runs
// with different counts cancel everything but the loop: (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost
// of one iteration, with or without LD_PRELOAD=libtessera-cuda.so. It also prints the wall-clock
// time per iteration (meaningful only outside valgrind).
//
//   tessera_shim_loop launch N         N cuLaunchKernel calls of an empty kernel
//   tessera_shim_loop alloc N [BYTES]  N cuMemAlloc(BYTES, default 1 MiB) + cuMemFree pairs
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "driver.h"

namespace {

int Usage() {
  std::fprintf(stderr, "usage: tessera_shim_loop launch N | alloc N [BYTES]\n");
  return 2;
}

bool ParseCount(const char* text, unsigned long long* value) {
  char* end = nullptr;
  *value = std::strtoull(text, &end, 10);
  return end != text && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string mode = argv[1];
  unsigned long long count = 0;
  unsigned long long bytes = 1ull << 20;
  if (!ParseCount(argv[2], &count)) return Usage();
  if (argc > 3 && !ParseCount(argv[3], &bytes)) return Usage();
  if (mode != "launch" && mode != "alloc") return Usage();

  const tessera::bench::Session session = tessera::bench::OpenSession();
  const auto start = std::chrono::steady_clock::now();
  for (unsigned long long i = 0; i < count; ++i) {
    CUresult result = mode == "launch" ? tessera::bench::LaunchOnce(session)
                                       : tessera::bench::AllocateAndFree(session, bytes);
    if (result != CUDA_SUCCESS) {
      std::fprintf(stderr, "tessera_shim_loop: %s %llu failed with CUresult %d\n", mode.c_str(), i,
                   static_cast<int>(result));
      return 1;
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
  std::printf("mode=%s count=%llu ns_per_iteration=%.1f\n", mode.c_str(), count,
              count > 0 ? ns / static_cast<double>(count) : 0.0);
  return 0;
}
