// The shim on glibc 2.28 and newer (Ubuntu 20.04/22.04, RHEL 8/9 and UBI images), built here on
// Debian 12's glibc 2.36: under /etc/ld.so.preload, a shim the loader refuses ("version
// `GLIBC_2.34' not found") fails every command of the container.
//
// The link (src/shim/CMakeLists.txt) renames every reference to a symbol that glibc 2.36 gives
// a newer version than 2.28 had (-Wl,--wrap=NAME: NAME becomes __wrap_NAME, in our objects and in
// the static libstdc++ and libgcc_eh alike), and this file defines each __wrap_NAME:
//  - the functions glibc 2.34 moved from libdl and libpthread into libc call the old version,
//    which 2.36's libc still has for old programs and which 2.28 has in libdl.so.2 and
//    libpthread.so.0 (linked, so that they are loaded there);
//  - fstat and stat (real symbols only since 2.33) call __fxstat and __xstat, which every
//    version has;
//  - arc4random (2.36, in libstdc++'s std::random_device, which the shim never uses) reads
//    getrandom (2.25);
//  - _dl_find_object (2.35, libgcc's unwinder) is done with dl_iterate_phdr;
//  - __libc_single_threaded (2.32, libstdc++'s reference counts) is 0: take every process for
//    multi-threaded, so that reference counts stay atomic.
// tests/shim/check_glibc_floor.sh (ctest tessera_shim_glibc_floor) fails the build when the shim
// needs anything newer than 2.28. x86-64 only: the old versions named here are x86-64's.
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/stat.h>

#define TESSERA_OLD_VERSION(local, name, version) __asm__(".symver " #local "," #name "@" version)

extern "C" {

void* tessera_old_dlopen(const char* file, int mode);
char* tessera_old_dlerror();
void* tessera_old_dlvsym(void* handle, const char* name, const char* version);
int tessera_old_pthread_mutexattr_init(pthread_mutexattr_t* attr);
int tessera_old_pthread_mutexattr_destroy(pthread_mutexattr_t* attr);
int tessera_old_pthread_mutexattr_setpshared(pthread_mutexattr_t* attr, int shared);
int tessera_old_pthread_mutexattr_setrobust(pthread_mutexattr_t* attr, int robust);
int tessera_old_pthread_mutex_consistent(pthread_mutex_t* mutex);
int tessera_old_pthread_once(pthread_once_t* once, void (*routine)());
int tessera_old_pthread_key_create(pthread_key_t* key, void (*destructor)(void*));
int tessera_old_fxstat(int version, int fd, struct stat* buf);
int tessera_old_xstat(int version, const char* path, struct stat* buf);

TESSERA_OLD_VERSION(tessera_old_dlopen, dlopen, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_dlerror, dlerror, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_dlvsym, dlvsym, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_pthread_mutexattr_init, pthread_mutexattr_init, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_pthread_mutexattr_destroy, pthread_mutexattr_destroy,
                    "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_pthread_mutexattr_setpshared, pthread_mutexattr_setpshared,
                    "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_pthread_mutexattr_setrobust, pthread_mutexattr_setrobust,
                    "GLIBC_2.12");
TESSERA_OLD_VERSION(tessera_old_pthread_mutex_consistent, pthread_mutex_consistent, "GLIBC_2.12");
TESSERA_OLD_VERSION(tessera_old_pthread_once, pthread_once, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_pthread_key_create, __pthread_key_create, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_fxstat, __fxstat, "GLIBC_2.2.5");
TESSERA_OLD_VERSION(tessera_old_xstat, __xstat, "GLIBC_2.2.5");

void* __wrap_dlopen(const char* file, int mode) { return tessera_old_dlopen(file, mode); }
char* __wrap_dlerror() { return tessera_old_dlerror(); }
void* __wrap_dlvsym(void* handle, const char* name, const char* version) {
  return tessera_old_dlvsym(handle, name, version);
}
int __wrap_pthread_mutexattr_init(pthread_mutexattr_t* attr) {
  return tessera_old_pthread_mutexattr_init(attr);
}
int __wrap_pthread_mutexattr_destroy(pthread_mutexattr_t* attr) {
  return tessera_old_pthread_mutexattr_destroy(attr);
}
int __wrap_pthread_mutexattr_setpshared(pthread_mutexattr_t* attr, int shared) {
  return tessera_old_pthread_mutexattr_setpshared(attr, shared);
}
int __wrap_pthread_mutexattr_setrobust(pthread_mutexattr_t* attr, int robust) {
  return tessera_old_pthread_mutexattr_setrobust(attr, robust);
}
int __wrap_pthread_mutex_consistent(pthread_mutex_t* mutex) {
  return tessera_old_pthread_mutex_consistent(mutex);
}
int __wrap_pthread_once(pthread_once_t* once, void (*routine)()) {
  return tessera_old_pthread_once(once, routine);
}
int __wrap___pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
  return tessera_old_pthread_key_create(key, destructor);
}

constexpr int kStatVersion = 1;  // x86-64's _STAT_VER_LINUX: glibc's struct stat

int __wrap_fstat(int fd, struct stat* buf) { return tessera_old_fxstat(kStatVersion, fd, buf); }
int __wrap_stat(const char* path, struct stat* buf) {
  return tessera_old_xstat(kStatVersion, path, buf);
}

uint32_t __wrap_arc4random() {
  uint32_t value = 0;
  size_t got = 0;
  while (got < sizeof value) {
    ssize_t n = getrandom(reinterpret_cast<char*>(&value) + got, sizeof value - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    if (n < 0 && errno != EINTR) break;  // no getrandom (kernel < 3.17): what we have
  }
  return value;
}

char __wrap___libc_single_threaded = 0;

namespace {

struct FindObject {
  uintptr_t address;
  dl_find_object* result;
};

int FindObjectIn(dl_phdr_info* info, size_t, void* data) {
  auto* find = static_cast<FindObject*>(data);
  uintptr_t start = UINTPTR_MAX, end = 0;
  void* eh_frame = nullptr;
  bool contains = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    const uintptr_t begin = info->dlpi_addr + header.p_vaddr;
    if (header.p_type == PT_LOAD) {
      if (begin < start) start = begin;
      if (begin + header.p_memsz > end) end = begin + header.p_memsz;
      if (find->address >= begin && find->address < begin + header.p_memsz) contains = true;
    } else if (header.p_type == PT_GNU_EH_FRAME) {
      eh_frame =
          reinterpret_cast<void*>(begin);  // NOLINT(performance-no-int-to-ptr): an ELF address
    }
  }
  if (!contains) return 0;
  find->result->dlfo_flags = 0;
  // NOLINTBEGIN(performance-no-int-to-ptr): the loader gives ELF addresses as integers
  find->result->dlfo_map_start = reinterpret_cast<void*>(start);
  find->result->dlfo_map_end = reinterpret_cast<void*>(end);
  // NOLINTEND(performance-no-int-to-ptr)
  find->result->dlfo_link_map = nullptr;  // the unwinder reads only the frame data
  find->result->dlfo_eh_frame = eh_frame;
  return 1;
}

}  // namespace

// 0 and the object's mapping and .eh_frame_hdr when `address` is in a loaded object; else -1.
int __wrap__dl_find_object(void* address, dl_find_object* result) {
  FindObject find{reinterpret_cast<uintptr_t>(address), result};
  return dl_iterate_phdr(FindObjectIn, &find) == 1 ? 0 : -1;
}

}  // extern "C"
