// glibc's own dlsym, found once, for dlsym_entry.S and the shim. This file is built without any
// sanitizer instrumentation (src/shim/CMakeLists.txt): a sanitizer runtime resolves its
// interceptors with dlsym(RTLD_NEXT, ...) before it is initialised, and that lookup comes through
// here, where even a ThreadSanitizer function-entry hook would touch its unready state.
#include <dlfcn.h>

namespace tessera::shim {

using DlsymFunction = void* (*)(void*, const char*);

extern "C" {
__attribute__((visibility("hidden"))) DlsymFunction tessera_next_dlsym = nullptr;

__attribute__((visibility("hidden"))) DlsymFunction tessera_resolve_next_dlsym() {
  DlsymFunction next = __atomic_load_n(&tessera_next_dlsym, __ATOMIC_ACQUIRE);
  if (next != nullptr) return next;
  // glibc >= 2.34 versions dlsym GLIBC_2.34; older ones GLIBC_2.2.5 (x86-64) / 2.17 (AArch64).
  next = reinterpret_cast<DlsymFunction>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34"));
  if (next == nullptr) {
    next = reinterpret_cast<DlsymFunction>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5"));
  }
  if (next == nullptr) {
    next = reinterpret_cast<DlsymFunction>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.17"));
  }
  __atomic_store_n(&tessera_next_dlsym, next, __ATOMIC_RELEASE);
  return next;
}
}

}  // namespace tessera::shim
