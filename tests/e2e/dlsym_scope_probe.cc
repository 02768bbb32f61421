// A library as CPython loads an extension (dlopen RTLD_LOCAL): it looks up its own symbol with
// dlsym(RTLD_DEFAULT, ...), which glibc answers from the caller's scope, its own object included
// (tests/e2e/dlsym_scope.cc loads it).
#include <dlfcn.h>

extern "C" {
__attribute__((visibility("default"))) int tessera_probe_marker = 42;

// Both compare after the call, so that dlsym is not a tail call: glibc must see this library as
// the caller.
__attribute__((visibility("default"))) int tessera_probe_finds_own() {
  return dlsym(RTLD_DEFAULT, "tessera_probe_marker") == &tessera_probe_marker ? 1 : 0;
}

// RTLD_NEXT from this library: the next getpid after it (libc's).
__attribute__((visibility("default"))) int tessera_probe_next_is(void* expected) {
  return dlsym(RTLD_NEXT, "getpid") == expected ? 1 : 0;
}
}
