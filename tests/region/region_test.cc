#include "region/region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "region/layout.h"

namespace tessera::region {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// Charged: neither refused nor an error.
bool Granted(const Result<bool>& reserved) { return reserved.ok() && reserved.value(); }

// One end of a pair of pipes, carrying lines.
class LineChannel {
 public:
  LineChannel(int in, int out) : in_(in), out_(out) {}
  bool Send(const std::string& text) const {
    std::string line = text + "\n";
    return write(out_, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  }
  // The next line, or "" when the other end closed or none came within 30 s.
  std::string Receive() const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::string line;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd ready = {in_, POLLIN, 0};
      if (left.count() <= 0 || poll(&ready, 1, static_cast<int>(left.count())) != 1) return "";
      char c = 0;
      if (read(in_, &c, 1) != 1) return "";
      if (c == '\n') return line;
      line += c;
    }
  }

 private:
  int in_;
  int out_;
};

// A process as a container runs it: in a pid namespace of its own, where it is pid 1 while the
// test knows it by another pid, and (with `own_proc`) with a /proc of that namespace, in a mount
// namespace of its own so that the host's /proc is untouched. It runs `body`, which talks to the
// test over a LineChannel.
class ContainedProcess {
 public:
  ~ContainedProcess() {
    if (outer_ > 0) {
      kill(outer_, SIGKILL);
      waitpid(outer_, nullptr, 0);
    }
    if (to_test_ >= 0) close(to_test_);
    if (to_process_ >= 0) close(to_process_);
  }
  // "" once `body` runs in its namespace; otherwise why it could not (namespaces need root).
  std::string Start(const std::function<int(const LineChannel&)>& body, bool own_proc = true) {
    int down[2];
    int up[2];
    if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0) return "pipe failed";
    outer_ = fork();
    if (outer_ < 0) return "fork failed";
    if (outer_ == 0) {
      close(down[1]);
      close(up[0]);
      LineChannel channel(down[0], up[1]);
      if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) {
        channel.Send(std::string("unshare: ") + std::strerror(errno));
        _exit(0);
      }
      pid_t init = fork();  // pid 1 of the new namespace
      if (init == 0) {
        if (own_proc &&
            (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
             mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)) {
          channel.Send(std::string("mounting /proc: ") + std::strerror(errno));
          _exit(0);
        }
        channel.Send("started");
        _exit(body(channel));
      }
      close(down[0]);
      close(up[1]);
      int status = 0;
      if (init < 0 || waitpid(init, &status, 0) != init) _exit(100);
      _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 101);
    }
    close(down[0]);
    close(up[1]);
    to_process_ = down[1];
    to_test_ = up[0];
    std::string first = channel().Receive();
    return first == "started" ? "" : "no pid namespace with its own /proc here: " + first;
  }
  LineChannel channel() const { return LineChannel(to_test_, to_process_); }
  // The exit status of `body`; -1 when it did not exit normally.
  int Wait() {
    int status = 0;
    pid_t waited = waitpid(outer_, &status, 0);
    outer_ = 0;
    return waited > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t outer_ = 0;
  int to_test_ = -1;
  int to_process_ = -1;
};

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

  // The file mapped as raw memory, as another process (or a forger) sees it.
  RegionLayout* MapLayout() {
    int fd = open(path_.c_str(), O_RDWR | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    void* mapping = mmap(nullptr, sizeof(RegionLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    EXPECT_NE(mapping, MAP_FAILED);
    mapped_.push_back(mapping);
    return static_cast<RegionLayout*>(mapping);
  }
  // A child takes the region's lock, runs `while_holding` and dies holding it.
  template <typename F>
  void DieHoldingTheLock(RegionLayout* layout, F while_holding) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (pthread_mutex_lock(&layout->lock) != 0) _exit(1);
      while_holding();
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  ~RegionTest() override {
    for (void* mapping : mapped_) munmap(mapping, sizeof(RegionLayout));
  }

  std::string directory_;
  std::string path_;
  RegionConfig config_;
  std::vector<void*> mapped_;
};

TEST_F(RegionTest, TheFileIsExactlyTheLayoutWithItsHeaderFirst) {
  OpenRegion();
  std::ifstream file(path_, std::ios::binary | std::ios::ate);
  EXPECT_EQ(static_cast<uint64_t>(file.tellg()), sizeof(RegionLayout));
  file.seekg(0);
  uint32_t magic = 0;
  uint32_t version = 0;
  uint64_t size = 0;
  file.read(reinterpret_cast<char*>(&magic), sizeof magic);
  file.read(reinterpret_cast<char*>(&version), sizeof version);
  file.read(reinterpret_cast<char*>(&size), sizeof size);
  EXPECT_EQ(magic, 0x41525354u);
  EXPECT_EQ(version, 3u);
  EXPECT_EQ(size, 183248u);
}

TEST_F(RegionTest, TheNextHolderRepairsTotalsLeftHalfUpdatedByAHolderThatDied) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  ASSERT_TRUE(Granted(region->Reserve(slot, 0, 10 * kMiB)));
  RegionLayout* layout = MapLayout();
  // Dies after writing the device's total but before the slot's.
  DieHoldingTheLock(layout, [layout] { layout->devices[0].used.store(99 * kMiB); });
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, kMiB))) << "the total is the slots' sum again";
  EXPECT_EQ(region->Used(0), 11 * kMiB);
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, kMiB))) << "the lock is consistent again";
}

TEST_F(RegionTest, AnUnrecoverableLockIsAnErrorAndNothingIsChargedUnlocked) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  ASSERT_TRUE(Granted(region->Reserve(slot, 0, 10 * kMiB)));
  // A slot of a process that is gone, for the reaper to find.
  auto stale = region->ClaimSlot(getpid(), ProcessStartTime(getpid()) + 12345, "stale");
  ASSERT_TRUE(stale.ok());
  RegionLayout* layout = MapLayout();
  DieHoldingTheLock(layout, [] {});
  // Inheriting the lock and giving it back without repairing what it guards leaves it
  // unrecoverable, for this process and every other.
  ASSERT_EQ(pthread_mutex_lock(&layout->lock), EOWNERDEAD);
  ASSERT_EQ(pthread_mutex_unlock(&layout->lock), 0);

  Result<bool> reserved = region->Reserve(slot, 0, kMiB);
  ASSERT_FALSE(reserved.ok()) << "charged without the lock";
  EXPECT_NE(reserved.status().message().find(path_), std::string::npos)
      << reserved.status().message();
  EXPECT_NE(reserved.status().message().find("unrecoverable"), std::string::npos)
      << reserved.status().message();
  EXPECT_FALSE(region->Reserve(slot, 0, kMiB, 100 * kMiB).ok());
  EXPECT_FALSE(region->Release(slot, 0, 10 * kMiB).ok());
  EXPECT_EQ(region->Used(0), 10 * kMiB);
  EXPECT_EQ(region->SlotUsed(slot, 0), 10 * kMiB);
  EXPECT_FALSE(region->ClaimSlot(getpid() + 1, 1, "other").ok());
  EXPECT_FALSE(region->SetLimits(0, {kMiB, 0}).ok());
  EXPECT_EQ(region->Limits(0).memory_bytes, 100 * kMiB);
  EXPECT_FALSE(region->BindDevice(0, "GPU-0").ok());
  EXPECT_FALSE(region->FindDevice("GPU-0").ok());
  EXPECT_FALSE(region->ReleaseSlot(slot).ok());
  EXPECT_FALSE(region->Reap(true).ok());
  EXPECT_NE(layout->slots[*stale].pid.load(), 0) << "reaped without the lock";
  EXPECT_FALSE(region->TakeSnapshot().ok());
}

TEST_F(RegionTest, ReserveGrantsUpToTheLimitAndRefusesBeyondIt) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 60 * kMiB)));
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 40 * kMiB)));
  EXPECT_FALSE(Granted(region->Reserve(slot, 0, 1)));
  EXPECT_EQ(region->Used(0), 100 * kMiB);
  ASSERT_TRUE(region->Release(slot, 0, 40 * kMiB).ok());
  EXPECT_EQ(region->Used(0), 60 * kMiB);
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 40 * kMiB)));
}

TEST_F(RegionTest, DeviceWithoutLimitGrantsEverything) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  EXPECT_TRUE(Granted(region->Reserve(slot, 1, 1ull << 50)));
  EXPECT_FALSE(Granted(region->Reserve(slot, 1, UINT64_MAX)))
      << "a total that overflows is refused";
}

TEST_F(RegionTest, ReserveAgainstAGivenLimitIgnoresTheLimitTheRegionHolds) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  // A limit forged into the region (any process of the container can write it) does not count.
  ASSERT_TRUE(region->SetLimits(0, {1ull << 40, 0}).ok());
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 60 * kMiB, 100 * kMiB)));
  EXPECT_FALSE(Granted(region->Reserve(slot, 0, 41 * kMiB, 100 * kMiB)));
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 40 * kMiB, 100 * kMiB)));
  EXPECT_EQ(region->Used(0), 100 * kMiB);
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 1ull << 30, 0))) << "0: no limit";
}

TEST_F(RegionTest, AnUnterminatedUuidIsNeverReadPastItsField) {
  {
    auto region = OpenRegion();
    ASSERT_TRUE(region->BindDevice(0, "GPU-0").ok());
    // The field after the UUID: no zero byte in it to stop a strlen.
    ASSERT_TRUE(region->SetLimits(0, {0x4141414141414141ull, 0x41414141u}).ok());
  }
  // What a process of the container can do to the file: fill the UUID to its last byte.
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                            std::istreambuf_iterator<char>());
    std::string_view text(bytes.data(), bytes.size());
    size_t uuid = text.find("GPU-0");
    ASSERT_NE(uuid, std::string_view::npos);
    file.seekp(static_cast<std::streamoff>(uuid));
    std::string filler(64, 'X');
    file.write(filler.data(), static_cast<std::streamsize>(filler.size()));
  }
  auto region = OpenRegion();
  EXPECT_EQ(region->FindDevice("GPU-0").value(), -1);
  EXPECT_EQ(region->TakeSnapshot()->devices[0].uuid, std::string(64, 'X'));
}

TEST_F(RegionTest, ReleaseNeverGoesBelowZero) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  ASSERT_TRUE(Granted(region->Reserve(slot, 0, 10 * kMiB)));
  ASSERT_TRUE(region->Release(slot, 0, 20 * kMiB).ok());
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

TEST_F(RegionTest, AZeroedRegionIsRefusedNotMadeAfresh) {
  OpenRegion();
  {
    std::vector<char> zeros(sizeof(RegionLayout), 0);
    std::ofstream file(path_, std::ios::binary | std::ios::trunc);
    file.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  auto region = Region::Open(path_, &config_);
  ASSERT_FALSE(region.ok()) << "a forger could zero the totals and start a fresh account";
  EXPECT_NE(region.status().message().find("not a Tessera region"), std::string::npos)
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
  EXPECT_EQ(region->FindDevice("GPU-aaaa").value(), 0);
  EXPECT_EQ(region->FindDevice("GPU-cccc").value(), -1);
}

TEST_F(RegionTest, AUuidKeepsItsDeviceWhateverOrdinalAProcessSeesItAs) {
  auto region = OpenRegion();
  // The first process sees B as its ordinal 0, the next sees A as ordinal 0 and B as 1.
  EXPECT_EQ(region->FindOrBindDevice("GPU-bbbb", 0).value(), 0);
  EXPECT_EQ(region->FindOrBindDevice("GPU-aaaa", 0).value(), 1) << "0 is B's";
  EXPECT_EQ(region->FindOrBindDevice("GPU-bbbb", 1).value(), 0);
  EXPECT_EQ(region->FindOrBindDevice("GPU-cccc", 15).value(), 15);
  EXPECT_EQ(region->FindOrBindDevice("GPU-dddd", 15).value(), 2) << "wraps to the first free";
  // CUDA's bytes are spelt "GPU-" even for a MIG instance; NVML says "MIG-", in any case.
  EXPECT_EQ(region->FindOrBindDevice("MIG-BBBB", 3).value(), 0);
  EXPECT_EQ(region->FindDevice("MIG-bb-bb").value(), 0);
  EXPECT_FALSE(region->FindOrBindDevice("", 0).ok());
  for (int i = 0; i < kMaxDevices; ++i) {
    (void)region->FindOrBindDevice("GPU-f" + std::to_string(i), i);
  }
  Result<int> full = region->FindOrBindDevice("GPU-eeee", 0);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.status().message().find("GPU-eeee"), std::string::npos);
}

TEST_F(RegionTest, ASlotsDriverPidIsItsOwnersUntilTheSlotIsFreed) {
  auto region = OpenRegion();
  int slot = Claim(*region);
  auto driver_pid = [&]() -> int64_t {
    auto snapshot = region->TakeSnapshot();
    if (!snapshot.ok()) return -1;
    for (const ProcessUsage& process : snapshot->processes) {
      if (process.slot == slot) return process.driver_pid;
    }
    return -2;
  };
  EXPECT_EQ(driver_pid(), 0) << "not known at the claim";
  ASSERT_TRUE(region->SetDriverPid(slot, 4242).ok());
  EXPECT_EQ(driver_pid(), 4242);
  ASSERT_TRUE(region->ReleaseSlot(slot).ok());
  EXPECT_EQ(Claim(*region), slot);
  EXPECT_EQ(driver_pid(), 0) << "the slot's next owner starts without the last one's";
  EXPECT_FALSE(region->SetDriverPid(kMaxProcesses, 1).ok());
}

TEST(SameDeviceUuid, ComparesTheDigitsNotThePrefixCaseOrDashes) {
  EXPECT_TRUE(SameDeviceUuid("GPU-0a1b-2c", "MIG-0A1B2C"));
  EXPECT_TRUE(SameDeviceUuid("0a1b2c", "GPU-0a1b2c"));
  EXPECT_FALSE(SameDeviceUuid("GPU-0a1b2c", "GPU-0a1b2d"));
  EXPECT_FALSE(SameDeviceUuid("", ""));
  EXPECT_FALSE(SameDeviceUuid("GPU-", "MIG-"));
}

TEST_F(RegionTest, ASlotOfAReusedPidWithAnotherStartTimeIsReaped) {
  auto region = OpenRegion();
  pid_t me = getpid();
  auto stale = region->ClaimSlot(me, ProcessStartTime(me) + 12345, "stale");
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(region->TakeSnapshot()->processes.size(), 1u);
  EXPECT_EQ(region->Reap(true).value(), 1);
  EXPECT_TRUE(region->TakeSnapshot()->processes.empty());
}

TEST_F(RegionTest, AKilledProcessUsageIsReclaimedByTheNextReservation) {
  auto region = OpenRegion();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto mine = Region::Open(path_, &config_);
    if (!mine.ok()) _exit(1);
    auto slot = (*mine)->ClaimSlot(getpid(), ProcessStartTime(getpid()), "child");
    if (!slot.ok() || !Granted((*mine)->Reserve(*slot, 0, 100 * kMiB))) _exit(2);
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
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 50 * kMiB)));
  EXPECT_EQ(region->Used(0), 50 * kMiB);
}

TEST_F(RegionTest, TheChargeOfALiveProcessInAnotherPidNamespaceIsNotReaped) {
  auto region = OpenRegion();
  ContainedProcess contained;
  std::string path = path_;
  std::string why = contained.Start([&path](const LineChannel& test) {
    auto mine = Region::Open(path, nullptr);
    if (!mine.ok()) return 1;
    auto slot = (*mine)->ClaimSlot(getpid(), ProcessStartTime(getpid()), "contained");
    if (!slot.ok() || !Granted((*mine)->Reserve(*slot, 0, 40 * kMiB))) return 2;
    test.Send("charged " + std::to_string(getpid()));
    test.Send(std::to_string(PidNamespaceOfProc()));
    return test.Receive() == "exit" ? 0 : 3;
  });
  if (!why.empty()) GTEST_SKIP() << why;
  ASSERT_EQ(contained.channel().Receive(), "charged 1");
  std::string contained_namespace = contained.channel().Receive();
  ASSERT_NE(contained_namespace, "0") << "the contained process cannot tell its pid namespace";
  ASSERT_NE(contained_namespace, std::to_string(PidNamespaceOfProc()));

  // The host sees another process at pid 1: it cannot tell whether the contained one lives.
  Result<int> reaped = region->Reap(/*force=*/true);
  ASSERT_TRUE(reaped.ok()) << reaped.status().message();
  EXPECT_EQ(*reaped, 0);
  EXPECT_EQ(region->Used(0), 40 * kMiB);
  int slot = Claim(*region);
  EXPECT_FALSE(Granted(region->Reserve(slot, 0, 61 * kMiB)))
      << "the contained process's charge was dropped, so the limit was passed";
  EXPECT_TRUE(Granted(region->Reserve(slot, 0, 60 * kMiB)));
  Snapshot snapshot = region->TakeSnapshot().value();
  ASSERT_EQ(snapshot.processes.size(), 2u);
  const ProcessUsage& theirs =
      snapshot.processes[0].pid == getpid() ? snapshot.processes[1] : snapshot.processes[0];
  EXPECT_EQ(theirs.pid, 1);
  EXPECT_EQ(std::to_string(theirs.pid_namespace), contained_namespace);
  EXPECT_EQ(theirs.liveness, Liveness::kUnknown) << "judged by the host's pid 1";
  EXPECT_EQ(theirs.used[0], 40 * kMiB);

  ASSERT_TRUE(contained.channel().Send("exit"));
  EXPECT_EQ(contained.Wait(), 0);
}

TEST_F(RegionTest, OnlyAReaderInTheDeadProcessPidNamespaceReclaimsItsCharge) {
  auto region = OpenRegion();
  ContainedProcess contained;
  std::string path = path_;
  std::string why = contained.Start([&path](const LineChannel& test) {
    auto mine = Region::Open(path, nullptr);
    if (!mine.ok()) return 1;
    pid_t child = fork();  // pid 2 of the namespace: charges and dies without giving it back
    if (child == 0) {
      auto slot = (*mine)->ClaimSlot(getpid(), ProcessStartTime(getpid()), "dies");
      _exit(slot.ok() && Granted((*mine)->Reserve(*slot, 0, 30 * kMiB)) ? 0 : 1);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      return 2;
    }
    test.Send("dead");
    if (test.Receive() != "reap") return 3;
    Result<int> reaped = (*mine)->Reap(/*force=*/true);
    test.Send(reaped.ok() ? "reaped " + std::to_string(*reaped) : reaped.status().message());
    return test.Receive() == "exit" ? 0 : 4;
  });
  if (!why.empty()) GTEST_SKIP() << why;
  ASSERT_EQ(contained.channel().Receive(), "dead");
  ASSERT_EQ(region->Used(0), 30 * kMiB);

  Result<int> reaped = region->Reap(/*force=*/true);
  ASSERT_TRUE(reaped.ok()) << reaped.status().message();
  EXPECT_EQ(*reaped, 0) << "judged a process of another pid namespace by the host's pid 2";
  EXPECT_EQ(region->Used(0), 30 * kMiB);

  ASSERT_TRUE(contained.channel().Send("reap"));
  EXPECT_EQ(contained.channel().Receive(), "reaped 1");
  EXPECT_EQ(region->Used(0), 0u);
  EXPECT_TRUE(region->TakeSnapshot()->processes.empty());
  ASSERT_TRUE(contained.channel().Send("exit"));
  EXPECT_EQ(contained.Wait(), 0);
}

TEST_F(RegionTest, AProcessWhoseProcIsOfAnAncestorNamespaceIsJudgedByThatNamespace) {
  auto region = OpenRegion();
  ContainedProcess contained;
  std::string path = path_;
  // In a pid namespace of its own but with the host's /proc (as the local cluster's containers):
  // getpid() is 1 and /proc/1 is the host's init, so it claims with its pid in the host's
  // numbering, and the host, which shares that /proc, judges it.
  std::string why = contained.Start(
      [&path](const LineChannel& test) {
        const ProcIdentity self = ThisProcessInProc();
        if (getpid() != 1 || self.pid == getpid()) return 1;
        auto mine = Region::Open(path, nullptr);
        if (!mine.ok()) return 2;
        auto slot = (*mine)->ClaimSlot(self.pid, ProcessStartTime(self.pid), "hosts-proc");
        if (!slot.ok() || !Granted((*mine)->Reserve(*slot, 0, 10 * kMiB))) return 3;
        test.Send(std::to_string(self.pid) + " " + std::to_string(self.pid_namespace));
        return test.Receive() == "exit" ? 0 : 4;
      },
      /*own_proc=*/false);
  if (!why.empty()) GTEST_SKIP() << why;
  // Its pid and namespace as the host numbers them.
  std::istringstream seen(contained.channel().Receive());
  pid_t host_pid = 0;
  uint64_t host_namespace = 0;
  seen >> host_pid >> host_namespace;
  EXPECT_GT(host_pid, 1);
  EXPECT_NE(ProcessStartTime(host_pid), 0u) << "a live process of this /proc";
  EXPECT_EQ(host_namespace, PidNamespaceOfProc());
  EXPECT_EQ(region->Reap(/*force=*/true).value(), 0) << "it lives";
  EXPECT_EQ(region->Used(0), 10 * kMiB);
  ASSERT_TRUE(contained.channel().Send("exit"));
  EXPECT_EQ(contained.Wait(), 0) << "1: it could not tell its pid; else its step that failed";

  // Dead (and never gave its slot back), it is reaped by the host.
  Snapshot snapshot = region->TakeSnapshot().value();
  ASSERT_EQ(snapshot.processes.size(), 1u);
  EXPECT_EQ(snapshot.processes[0].pid_namespace, PidNamespaceOfProc());
  EXPECT_EQ(snapshot.processes[0].liveness, Liveness::kDead);
  EXPECT_EQ(region->Reap(/*force=*/true).value(), 1);
  EXPECT_EQ(region->Used(0), 0u);
}

TEST_F(RegionTest, ASlotOfAnotherPidNamespaceIsLeftAloneWhateverItsPidShowsHere) {
  auto region = OpenRegion();
  pid_t me = getpid();
  // Slots no process of this namespace could have claimed: this pid with a start time that is
  // not its own, which here would mean it died.
  auto other = region->ClaimSlot(me, ProcessStartTime(me) + 12345, "other-ns");
  auto untold = region->ClaimSlot(me, ProcessStartTime(me) + 54321, "untold-ns");
  ASSERT_TRUE(other.ok() && untold.ok());
  RegionLayout* layout = MapLayout();
  layout->slots[*other].pid_namespace.store(PidNamespaceOfProc() + 1);
  layout->slots[*untold].pid_namespace.store(0);
  // Each reservation may reap first.
  ASSERT_TRUE(Granted(region->Reserve(*other, 0, 20 * kMiB)));
  ASSERT_TRUE(Granted(region->Reserve(*untold, 0, 30 * kMiB)));

  EXPECT_EQ(region->Reap(/*force=*/true).value(), 0);
  EXPECT_EQ(region->Used(0), 50 * kMiB);
  Snapshot snapshot = region->TakeSnapshot().value();
  ASSERT_EQ(snapshot.processes.size(), 2u);
  EXPECT_EQ(snapshot.processes[0].liveness, Liveness::kUnknown);
  EXPECT_EQ(snapshot.processes[1].liveness, Liveness::kUnknown);

  // Back in this namespace, the same slot is judged, and reaped.
  layout->slots[*other].pid_namespace.store(PidNamespaceOfProc());
  EXPECT_EQ(region->TakeSnapshot()->processes[0].liveness, Liveness::kDead);
  EXPECT_EQ(region->Reap(/*force=*/true).value(), 1);
  EXPECT_EQ(region->Used(0), 30 * kMiB);
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
        if (Granted((*mine)->Reserve(*slot, 0, 30 * kMiB))) {
          if ((*mine)->Used(0) > 100 * kMiB) _exit(3);
          if (!(*mine)->Release(*slot, 0, 30 * kMiB).ok()) _exit(4);
        }
      }
      if (!(*mine)->ReleaseSlot(*slot).ok()) _exit(4);
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
        if (Granted(region->Reserve(slot, 0, kMiB))) granted.fetch_add(kMiB);
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
  ASSERT_TRUE(Granted(region->Reserve(slot, 0, 8 * kMiB)));
  Snapshot snapshot = region->TakeSnapshot().value();
  ASSERT_EQ(snapshot.devices.size(), 1u);
  EXPECT_EQ(snapshot.devices[0].uuid, "GPU-1234");
  EXPECT_EQ(snapshot.devices[0].used, 8 * kMiB);
  EXPECT_EQ(snapshot.devices[0].limits.memory_bytes, 100 * kMiB);
  ASSERT_EQ(snapshot.processes.size(), 1u);
  EXPECT_EQ(snapshot.processes[0].pid, getpid());
  EXPECT_EQ(snapshot.processes[0].liveness, Liveness::kAlive);
  EXPECT_EQ(snapshot.processes[0].pid_namespace, PidNamespaceOfProc());
  EXPECT_EQ(snapshot.processes[0].used[0], 8 * kMiB);
}

TEST(PidNamespaceOfProc, IsTheInodeOfThisProcessPidNamespaceFile) {
  struct stat info {};
  ASSERT_EQ(stat("/proc/self/ns/pid", &info), 0);
  EXPECT_NE(PidNamespaceOfProc(), 0u);
  EXPECT_EQ(PidNamespaceOfProc(), static_cast<uint64_t>(info.st_ino));
}

TEST(ProcessStartTime, IsZeroForAProcessThatDoesNotExist) {
  EXPECT_EQ(ProcessStartTime(0), 0u);
  EXPECT_EQ(ProcessStartTime(-5), 0u);
  EXPECT_NE(ProcessStartTime(getpid()), 0u);
}

// ---- The compute budget (a token bucket of device time, driven by explicit times) -------------
class ComputeBudget : public RegionTest {
 protected:
  void SetUp() override {
    RegionTest::SetUp();
    config_.devices[0].sm_percent = 50;
    config_.devices[1].sm_percent = 10;
  }
  static constexpr int64_t kMs = 1'000'000;
  static constexpr int64_t kStart = 1'000'000 * kMs;  // any monotonic time
};

TEST_F(ComputeBudget, AFullBucketAdmitsABurstWithoutWaiting) {
  auto region = OpenRegion();
  // 50 % x 20 ms: 10 ms of device time may go at once.
  EXPECT_LE(region->ChargeCompute(0, 4 * kMs, kStart), kStart);
  EXPECT_LE(region->ChargeCompute(0, 6 * kMs, kStart), kStart);
  EXPECT_GT(region->ChargeCompute(0, 1 * kMs, kStart), kStart) << "the burst is spent";
}

TEST_F(ComputeBudget, DebtIsPaidAtTheShareOfWallTime) {
  auto region = OpenRegion();
  region->ChargeCompute(0, 10 * kMs, kStart);  // empties the bucket
  // 1 ms of device time at 50 % is 2 ms of wall time.
  EXPECT_EQ(region->ChargeCompute(0, 1 * kMs, kStart), kStart + 2 * kMs);
  EXPECT_EQ(region->ChargeCompute(0, 1 * kMs, kStart), kStart + 4 * kMs);
  EXPECT_EQ(region->ComputeReadyAt(0), kStart + 4 * kMs);
}

TEST_F(ComputeBudget, ASaturatingWorkloadGetsItsShareInTheLongRun) {
  auto region = OpenRegion();
  // A process that launches 700 µs kernels back to back, waiting whenever it is in debt.
  int64_t now = kStart;
  int64_t device_time = 0;
  while (now < kStart + 10'000 * kMs) {
    int64_t ready = region->ChargeCompute(1, 700'000, now);
    now = std::max(now, ready) + 700'000;  // waits, then the kernel runs
    device_time += 700'000;
  }
  double share = static_cast<double>(device_time) / static_cast<double>(now - kStart);
  EXPECT_NEAR(share, 0.10, 0.002);
}

TEST_F(ComputeBudget, IdleTimeRefillsNoMoreThanTheBurst) {
  auto region = OpenRegion();
  region->ChargeCompute(0, 10 * kMs, kStart);
  // An hour idle still leaves only 10 ms (50 % x 20 ms) to spend at once.
  int64_t later = kStart + 3600'000 * kMs;
  EXPECT_LE(region->ChargeCompute(0, 10 * kMs, later), later);
  EXPECT_EQ(region->ChargeCompute(0, 1 * kMs, later), later + 2 * kMs);
}

TEST_F(ComputeBudget, MeasuredCostsTrueUpEarlierCharges) {
  auto region = OpenRegion();
  region->ChargeCompute(0, 10 * kMs, kStart);
  region->AdjustCompute(0, 3 * kMs);  // the launch cost 3 ms more than charged
  EXPECT_EQ(region->ComputeReadyAt(0), kStart + 6 * kMs);
  region->AdjustCompute(0, -1 * kMs);
  EXPECT_EQ(region->ComputeReadyAt(0), kStart + 4 * kMs);
}

TEST_F(ComputeBudget, ForgivenDebtEndsNow) {
  auto region = OpenRegion();
  region->ChargeCompute(0, 100 * kMs, kStart);
  region->ForgiveComputeDebt(0, kStart + kMs);
  EXPECT_EQ(region->ComputeReadyAt(0), kStart + kMs);
}

TEST_F(ComputeBudget, WithoutAnSmLimitNothingIsCharged) {
  auto region = OpenRegion();
  EXPECT_EQ(region->ChargeCompute(2, 1000 * kMs, kStart), kStart);
  EXPECT_EQ(region->ComputeReadyAt(2), 0);
}

TEST_F(ComputeBudget, ProcessesOfTheContainerShareOneBucket) {
  auto first = OpenRegion();
  auto second = OpenRegion();  // as another process maps it
  first->ChargeCompute(0, 10 * kMs, kStart);
  EXPECT_EQ(second->ChargeCompute(0, 1 * kMs, kStart), kStart + 2 * kMs);
  pid_t child = fork();
  if (child == 0) {
    auto theirs = Region::Open(path_, nullptr);
    _exit(theirs.ok() && (*theirs)->ChargeCompute(0, 1 * kMs, kStart) == kStart + 4 * kMs ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(first->ComputeReadyAt(0), kStart + 4 * kMs);
}

TEST_F(ComputeBudget, StatusSeesTheShareOfTheLastWindow) {
  auto region = OpenRegion();
  timespec clock{};
  clock_gettime(CLOCK_MONOTONIC, &clock);
  int64_t now = static_cast<int64_t>(clock.tv_sec) * 1'000'000'000 + clock.tv_nsec;
  // 300 ms of device time in the first second, then the window closes.
  int64_t start = now - 2 * kShareWindowNs;
  region->ChargeCompute(0, 1, start);
  region->ChargeCompute(0, 300 * kMs, start + kMs);
  region->ChargeCompute(0, 1, start + kShareWindowNs + kMs);
  Snapshot snapshot = region->TakeSnapshot().value();
  ASSERT_FALSE(snapshot.devices.empty());
  EXPECT_NEAR(snapshot.devices[0].compute_share_permille, 300, 2);
  EXPECT_EQ(snapshot.devices[0].limits.sm_percent, 50u);
}

}  // namespace
}  // namespace tessera::region
