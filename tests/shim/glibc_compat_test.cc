// The shim's stand-ins for what glibc 2.28 lacks (src/shim/glibc_compat.cc) answer as glibc
// 2.36's own functions do, here where both exist.
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

extern "C" {
int __wrap__dl_find_object(void* address, dl_find_object* result);
int __wrap_fstat(int fd, struct stat* buf);
int __wrap_stat(const char* path, struct stat* buf);
uint32_t __wrap_arc4random();
void* __wrap_dlopen(const char* file, int mode);
void* __wrap_dlvsym(void* handle, const char* name, const char* version);
char* __wrap_dlerror();
int __wrap_pthread_once(pthread_once_t* once, void (*routine)());
}

namespace {

int LocalFunction() { return 7; }

void ExpectSameObject(void* address) {
  dl_find_object real{}, ours{};
  ASSERT_EQ(_dl_find_object(address, &real), 0);
  ASSERT_EQ(__wrap__dl_find_object(address, &ours), 0);
  EXPECT_EQ(ours.dlfo_eh_frame, real.dlfo_eh_frame);
  EXPECT_NE(ours.dlfo_eh_frame, nullptr);
  // glibc rounds the mapping to pages; ours is the segments' exact span, inside it.
  EXPECT_GE(ours.dlfo_map_start, real.dlfo_map_start);
  EXPECT_LE(ours.dlfo_map_end, real.dlfo_map_end);
  EXPECT_LE(ours.dlfo_map_start, address);
  EXPECT_GT(ours.dlfo_map_end, address);
}

TEST(GlibcCompat, FindObjectGivesTheUnwinderTheFrameDataGlibcDoes) {
  ExpectSameObject(reinterpret_cast<void*>(&LocalFunction));
  ExpectSameObject(dlsym(RTLD_DEFAULT, "getpid"));  // in libc
  void* heap = std::malloc(64);
  dl_find_object real{}, ours{};
  EXPECT_EQ(_dl_find_object(heap, &real), -1);
  EXPECT_EQ(__wrap__dl_find_object(heap, &ours), -1);
  std::free(heap);
}

TEST(GlibcCompat, FstatIsTheKernelsStat) {
  int fd = open("/proc/self/exe", O_RDONLY);
  ASSERT_GE(fd, 0);
  struct stat real {
  }, ours{};
  ASSERT_EQ(fstat(fd, &real), 0);
  ASSERT_EQ(__wrap_fstat(fd, &ours), 0);
  EXPECT_EQ(ours.st_ino, real.st_ino);
  EXPECT_EQ(ours.st_size, real.st_size);
  EXPECT_EQ(ours.st_mode, real.st_mode);
  close(fd);
  EXPECT_EQ(__wrap_fstat(-1, &ours), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(GlibcCompat, StatIsTheKernelsStat) {
  struct stat real {
  }, ours{};
  ASSERT_EQ(stat("/proc/self/ns/pid", &real), 0);
  ASSERT_EQ(__wrap_stat("/proc/self/ns/pid", &ours), 0);
  EXPECT_EQ(ours.st_ino, real.st_ino);
  EXPECT_EQ(ours.st_dev, real.st_dev);
  EXPECT_EQ(ours.st_mode, real.st_mode);
  EXPECT_EQ(__wrap_stat("/no/such/file", &ours), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST(GlibcCompat, Arc4randomIsRandom) {
  std::set<uint32_t> values;
  for (int i = 0; i < 64; ++i) values.insert(__wrap_arc4random());
  EXPECT_GT(values.size(), 60u);
}

int once_calls = 0;
void CountOnce() { ++once_calls; }

TEST(GlibcCompat, TheOldDlAndPthreadVersionsWork) {
  void* libc = __wrap_dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(libc, nullptr);
  EXPECT_EQ(__wrap_dlvsym(libc, "getpid", "GLIBC_2.2.5"), dlsym(libc, "getpid"));
  EXPECT_EQ(__wrap_dlopen("/nonexistent/libnothing.so", RTLD_NOW), nullptr);
  const char* error = __wrap_dlerror();
  ASSERT_NE(error, nullptr);
  EXPECT_NE(std::string(error).find("libnothing.so"), std::string::npos) << error;
  pthread_once_t once = PTHREAD_ONCE_INIT;
  __wrap_pthread_once(&once, CountOnce);
  __wrap_pthread_once(&once, CountOnce);
  EXPECT_EQ(once_calls, 1);
}

}  // namespace
