#include "common/process.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace tessera {
namespace {

TEST(ProcessStartTime, IsZeroForAProcessThatDoesNotExist) {
  EXPECT_EQ(ProcessStartTime(0), 0u);
  EXPECT_EQ(ProcessStartTime(-5), 0u);
  EXPECT_EQ(ProcessStartTime(0x7ffffff0), 0u);
}

TEST(ProcessStartTime, IsTheSameForOneProcessEveryTime) {
  uint64_t mine = ProcessStartTime(getpid());
  EXPECT_NE(mine, 0u);
  EXPECT_EQ(ProcessStartTime(getpid()), mine);
}

TEST(ProcessStartTime, IsZeroForAZombie) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Waits until the child has exited without reaping it: a zombie, whose pid must not count as a
  // live process.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(ProcessStartTime(child), 0u);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
}

TEST(MonotonicNs, IsClockMonotonicInNanoseconds) {
  timespec before{};
  timespec after{};
  clock_gettime(CLOCK_MONOTONIC, &before);
  int64_t now = MonotonicNs();
  clock_gettime(CLOCK_MONOTONIC, &after);
  EXPECT_GE(now, static_cast<int64_t>(before.tv_sec) * 1'000'000'000 + before.tv_nsec);
  EXPECT_LE(now, static_cast<int64_t>(after.tv_sec) * 1'000'000'000 + after.tv_nsec);
  EXPECT_LE(now, MonotonicNs());
}

}  // namespace
}  // namespace tessera
