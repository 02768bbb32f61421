#include "region/region.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <vector>

namespace tessera::region {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

class RegionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tessera-region-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    directory_ = pattern;
    path_ = directory_ + "/region";
    config_.devices[0].memory_bytes = 100 * kMiB;
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(directory_.c_str());
  }
  std::unique_ptr<Region> OpenRegion() {
    auto region = Region::Open(path_, &config_);
    EXPECT_TRUE(region.ok()) << region.status().message();
    return std::move(region).value();
  }
  int Claim(Region& region) {
    auto slot = region.ClaimSlot(getpid(), ProcessStartTime(getpid()), "test");
    EXPECT_TRUE(slot.ok());
    return *slot;
  }

  std::string directory_;
  std::string path_;
  RegionConfig config_;
};

TEST_F(RegionTest, ReserveGrantsUpToTheLimitAndRefusesBeyondIt) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  EXPECT_TRUE(region->Reserve(slot, 0, 60 * kMiB));
  EXPECT_TRUE(region->Reserve(slot, 0, 40 * kMiB));
  EXPECT_FALSE(region->Reserve(slot, 0, 1));
  EXPECT_EQ(region->Used(0), 100 * kMiB);
  region->Release(slot, 0, 40 * kMiB);
  EXPECT_EQ(region->Used(0), 60 * kMiB);
  EXPECT_TRUE(region->Reserve(slot, 0, 40 * kMiB));
}

TEST_F(RegionTest, DeviceWithoutLimitGrantsEverything) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  EXPECT_TRUE(region->Reserve(slot, 1, 1ull << 50));
  EXPECT_FALSE(region->Reserve(slot, 1, UINT64_MAX)) << "a total that overflows is refused";
}

TEST_F(RegionTest, ReleaseNeverGoesBelowZero) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  ASSERT_TRUE(region->Reserve(slot, 0, 10 * kMiB));
  region->Release(slot, 0, 20 * kMiB);
  EXPECT_EQ(region->Used(0), 0u);
  EXPECT_EQ(region->SlotUsed(slot, 0), 0u);
}

TEST_F(RegionTest, LimitsOfAnExistingRegionWinOverTheOpenersConfig) {
  auto first = OpenRegion();
  RegionConfig other;
  other.devices[0].memory_bytes = 5 * kMiB;
  auto second = Region::Open(path_, &other);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->Limits(0).memory_bytes, 100 * kMiB);
}

TEST_F(RegionTest, OpeningAMissingRegionWithoutConfigNamesThePath) {
  auto region = Region::Open(path_, nullptr);
  ASSERT_FALSE(region.ok());
  EXPECT_NE(region.status().message().find(path_), std::string::npos);
}

TEST_F(RegionTest, RefusesARegionOfAnotherLayoutVersion) {
  OpenRegion();
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    uint32_t version = 99;
    file.seekp(4);
    file.write(reinterpret_cast<const char*>(&version), sizeof version);
  }
  auto region = Region::Open(path_, &config_);
  ASSERT_FALSE(region.ok());
  EXPECT_NE(region.status().message().find("layout version 99"), std::string::npos)
      << region.status().message();
}

TEST_F(RegionTest, RefusesAFileThatIsNotARegion) {
  {
    std::ofstream file(path_);
    file << "hello, this is not a region at all";
  }
  auto region = Region::Open(path_, &config_);
  ASSERT_FALSE(region.ok());
  EXPECT_NE(region.status().message().find("not a Tessera region"), std::string::npos);
}

TEST_F(RegionTest, DeviceIsBoundToTheFirstUuidSeen) {
  auto region = OpenRegion();
  EXPECT_TRUE(region->BindDevice(0, "GPU-aaaa").ok());
  EXPECT_TRUE(region->BindDevice(0, "GPU-aaaa").ok());
  Status mismatch = region->BindDevice(0, "GPU-bbbb");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.message().find("GPU-bbbb"), std::string::npos);
  EXPECT_EQ(region->FindDevice("GPU-aaaa"), 0);
  EXPECT_EQ(region->FindDevice("GPU-cccc"), -1);
}

TEST_F(RegionTest, ASlotOfAReusedPidWithAnotherStartTimeIsReaped) {
  auto region = OpenRegion();
  pid_t me = getpid();
  auto stale = region->ClaimSlot(me, ProcessStartTime(me) + 12345, "stale");
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(region->TakeSnapshot().processes.size(), 1u);
  EXPECT_EQ(region->Reap(true), 1);
  EXPECT_TRUE(region->TakeSnapshot().processes.empty());
}

TEST_F(RegionTest, AKilledProcessUsageIsReclaimedByTheNextReservation) {
  auto region = OpenRegion();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto mine = Region::Open(path_, &config_);
    if (!mine.ok()) _exit(1);
    auto slot = (*mine)->ClaimSlot(getpid(), ProcessStartTime(getpid()), "child");
    if (!slot.ok() || !(*mine)->Reserve(*slot, 0, 100 * kMiB)) _exit(2);
    pause();
    _exit(0);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (region->Used(0) != 100 * kMiB && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(region->Used(0), 100 * kMiB);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  int slot = Claim(*region);
  // Full: only reclaiming the dead child's charge lets this through.
  EXPECT_TRUE(region->Reserve(slot, 0, 50 * kMiB));
  EXPECT_EQ(region->Used(0), 50 * kMiB);
}

TEST_F(RegionTest, ProcessesRacingForTheLastBytesNeverPassTheLimitTogether) {
  OpenRegion();
  constexpr int kProcesses = 8;
  constexpr int kRounds = 2000;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto mine = Region::Open(path_, &config_);
      if (!mine.ok()) _exit(1);
      auto slot = (*mine)->ClaimSlot(getpid(), ProcessStartTime(getpid()), "racer");
      if (!slot.ok()) _exit(1);
      for (int round = 0; round < kRounds; ++round) {
        // 8 processes x 30 MiB against 100 MiB: at most 3 can hold it at once.
        if ((*mine)->Reserve(*slot, 0, 30 * kMiB)) {
          if ((*mine)->Used(0) > 100 * kMiB) _exit(3);
          (*mine)->Release(*slot, 0, 30 * kMiB);
        }
      }
      (*mine)->ReleaseSlot(*slot);
      _exit(0);
    }
    children.push_back(child);
  }
  for (pid_t child : children) {
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  auto region = Region::Open(path_, nullptr);
  ASSERT_TRUE(region.ok());
  EXPECT_EQ((*region)->Used(0), 0u);
}

TEST_F(RegionTest, ThreadsReservingConcurrentlyKeepExactTotals) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  std::atomic<uint64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        if (region->Reserve(slot, 0, kMiB)) granted.fetch_add(kMiB);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(granted.load(), 100 * kMiB);
  EXPECT_EQ(region->Used(0), 100 * kMiB);
  EXPECT_EQ(region->SlotUsed(slot, 0), 100 * kMiB);
}

TEST_F(RegionTest, SnapshotShowsLimitsUsageAndProcesses) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  ASSERT_TRUE(region->BindDevice(0, "GPU-1234").ok());
  ASSERT_TRUE(region->Reserve(slot, 0, 8 * kMiB));
  Snapshot snapshot = region->TakeSnapshot();
  ASSERT_EQ(snapshot.devices.size(), 1u);
  EXPECT_EQ(snapshot.devices[0].uuid, "GPU-1234");
  EXPECT_EQ(snapshot.devices[0].used, 8 * kMiB);
  EXPECT_EQ(snapshot.devices[0].limits.memory_bytes, 100 * kMiB);
  ASSERT_EQ(snapshot.processes.size(), 1u);
  EXPECT_EQ(snapshot.processes[0].pid, getpid());
  EXPECT_TRUE(snapshot.processes[0].alive);
  EXPECT_EQ(snapshot.processes[0].used[0], 8 * kMiB);
}

TEST(ProcessStartTime, IsZeroForAProcessThatDoesNotExist) {
  EXPECT_EQ(ProcessStartTime(0), 0u);
  EXPECT_EQ(ProcessStartTime(-5), 0u);
  EXPECT_NE(ProcessStartTime(getpid()), 0u);
}

}  // namespace
}  // namespace tessera::region
