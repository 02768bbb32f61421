// What dlsym answers a program and the libraries it loads, with or without the shim preloaded
// (ShimEndToEnd.DlsymKeepsTheCallersScope):
//   tessera-dlsym-scope PROBE_LIBRARY
// prints
//   own=<1|0>       the RTLD_LOCAL probe found its own symbol through dlsym(RTLD_DEFAULT, ...)
//   next=<1|0>      the probe's dlsym(RTLD_NEXT, "getpid") is libc's getpid
//   default_hook=<1|0|none>  dlsym(RTLD_DEFAULT, "cuMemAlloc_v2") after loading libcuda is the
//                   shim's hook (none: no shim preloaded)
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PROBE_LIBRARY\n", argv[0]);
    return 2;
  }
  void* probe = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (probe == nullptr) {
    fprintf(stderr, "dlsym_scope: %s\n", dlerror());
    return 2;
  }
  auto finds_own = reinterpret_cast<int (*)()>(dlsym(probe, "tessera_probe_finds_own"));
  auto next_is = reinterpret_cast<int (*)(void*)>(dlsym(probe, "tessera_probe_next_is"));
  if (finds_own == nullptr || next_is == nullptr) {
    fprintf(stderr, "dlsym_scope: the probe lacks its functions\n");
    return 2;
  }
  printf("own=%d\n", finds_own());
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  printf("next=%d\n", libc != nullptr && next_is(dlsym(libc, "getpid")) ? 1 : 0);

  void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  const char* shim_path = getenv("LD_PRELOAD");
  void* shim = shim_path != nullptr && *shim_path != '\0'
                   ? dlopen(shim_path, RTLD_NOW | RTLD_NOLOAD)
                   : nullptr;
  if (cuda == nullptr || shim == nullptr) {
    printf("default_hook=none\n");
    return 0;
  }
  printf("default_hook=%d\n",
         dlsym(RTLD_DEFAULT, "cuMemAlloc_v2") == dlsym(shim, "cuMemAlloc_v2") ? 1 : 0);
  return 0;
}
