// The fake node across processes: what one process holds, every other sees (cuMemGetInfo, NVML,
// the state reader), and it comes back when the process exits, is killed, or was only a fork.
#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <fstream>

#include "cuda/nvml_api.h"
#include "fake_gpu_test_support.h"
#include "tests/support/child_process.h"

namespace tessera::fakegpu {
namespace {

using ChildProcess = ::tessera::testing::Child;

constexpr uint64_t kContextBytes = 256 * kMiB;

class FakeGpuNode : public FakeGpuTest {
 protected:
  void TearDown() override {
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    FakeGpuTest::TearDown();
  }

  std::vector<std::string> Helper(std::vector<std::string> args) {
    args.insert(args.begin(), TESSERA_FAKEGPU_HELPER);
    return args;
  }

  // NVML's view of one process on device 0 (0 when NVML does not list it).
  static uint64_t NvmlProcessBytes(int pid) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &device), NVML_SUCCESS);
    nvmlProcessInfo_t infos[16];
    unsigned count = 16;
    EXPECT_EQ(nvmlDeviceGetComputeRunningProcesses_v3(device, &count, infos), NVML_SUCCESS);
    for (unsigned i = 0; i < count; ++i) {
      if (infos[i].pid == static_cast<unsigned>(pid)) return infos[i].usedGpuMemory;
    }
    return 0;
  }
};

TEST_F(FakeGpuNode, AnotherProcessesAllocationIsVisibleInMemGetInfoAndNvml) {
  InitWithContext();
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  ChildProcess child(Helper({"hold", std::to_string(kGiB)}));
  ASSERT_EQ(child.ReadLine(), "ready " + std::to_string(child.pid()));

  size_t free = 0, total = 0;
  ASSERT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_SUCCESS);
  EXPECT_EQ(total - free, 2 * kContextBytes + kGiB);
  nvmlDevice_t device = nullptr;
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &device), NVML_SUCCESS);
  nvmlMemory_t memory{};
  ASSERT_EQ(nvmlDeviceGetMemoryInfo(device, &memory), NVML_SUCCESS);
  EXPECT_EQ(memory.used, 2 * kContextBytes + kGiB);
  EXPECT_EQ(NvmlProcessBytes(child.pid()), kContextBytes + kGiB);
  EXPECT_EQ(NvmlProcessBytes(getpid()), kContextBytes);
}

TEST_F(FakeGpuNode, NormalExitGivesTheProcessesMemoryBack) {
  {
    ChildProcess child(Helper({"hold", std::to_string(kGiB), "1"}));
    ASSERT_EQ(child.ReadLine(), "ready " + std::to_string(child.pid()));
    EXPECT_EQ(UsedBytes(1), kContextBytes + kGiB);
    child.CloseStdin();
    int status = child.Wait();
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  // Given back by the child's own teardown: no liveness scan is needed to see it.
  StateSnapshot snapshot = Snapshot();
  EXPECT_EQ(snapshot.devices[1].used_bytes, 0u);
  EXPECT_TRUE(snapshot.processes.empty());
}

TEST_F(FakeGpuNode, SigkilledProcessesMemoryIsReclaimed) {
  ChildProcess child(Helper({"hold", std::to_string(10 * kGiB)}));
  ASSERT_EQ(child.ReadLine(), "ready " + std::to_string(child.pid()));
  EXPECT_EQ(UsedBytes(), kContextBytes + 10 * kGiB);
  ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
  child.Wait();
  EXPECT_TRUE(WaitFor([&] { return UsedBytes() == 0; }));
  EXPECT_TRUE(Snapshot().processes.empty());
}

// Killed at arbitrary points of a tight alloc/free loop, some children die holding the state's
// lock (about one round in fifty): the next locker must repair the totals (EOWNERDEAD) and
// reclaim the dead.
TEST_F(FakeGpuNode, ProcessesKilledMidAllocationLeaveTheNodeConsistent) {
  for (int round = 0; round < 200; ++round) {
    ChildProcess child(Helper({"churn", "1000000000"}));
    ASSERT_TRUE(WaitFor([&] { return ProcessBytes(child.pid()) > 0; }));
    ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
    child.Wait();
    StateSnapshot snapshot = Snapshot();
    EXPECT_EQ(snapshot.devices[0].used_bytes, 0u) << "round " << round;
    EXPECT_TRUE(snapshot.processes.empty()) << "round " << round;
  }
}

TEST_F(FakeGpuNode, AllocationThatOnlyFitsAfterReclaimingADeadProcessSucceeds) {
  UseConfig("device memory=4GiB context_memory=0\n");
  ChildProcess child(Helper({"hold", std::to_string(3 * kGiB)}));
  ASSERT_EQ(child.ReadLine(), "ready " + std::to_string(child.pid()));
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, 2 * kGiB), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
  child.Wait();
  // No wait: the scan before refusing an allocation finds the dead process at once.
  EXPECT_EQ(cuMemAlloc_v2(&pointer, 2 * kGiB), CUDA_SUCCESS);
}

TEST_F(FakeGpuNode, ForkedChildGetsItsOwnRecordAndNeverFreesTheParentsMemory) {
  InitWithContext();
  CUdeviceptr parents = 0;
  ASSERT_EQ(cuMemAlloc_v2(&parents, kGiB), CUDA_SUCCESS);
  int report[2], release[2];
  ASSERT_EQ(pipe(report), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: its own 2 MiB, and a free of the parent's pointer that must not touch the
    // parent's record. _exit: no gtest teardown in the child.
    CUdeviceptr own = 0;
    char result = cuMemAlloc_v2(&own, 1) == CUDA_SUCCESS ? 'y' : 'n';
    if (cuMemFree_v2(parents) != CUDA_SUCCESS) result = 'f';
    (void)!write(report[1], &result, 1);
    close(release[1]);  // so that the parent's close is the last and ends the read
    char ignored;
    (void)!read(release[0], &ignored, 1);
    _exit(0);
  }
  char result = 0;
  ASSERT_EQ(read(report[0], &result, 1), 1);
  EXPECT_EQ(result, 'y');
  EXPECT_EQ(ProcessBytes(pid), 2 * kMiB);
  EXPECT_EQ(ProcessBytes(getpid()), kContextBytes + kGiB);
  close(release[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WaitFor([&] { return ProcessBytes(pid) == 0; }));
  EXPECT_EQ(UsedBytes(), kContextBytes + kGiB);
  EXPECT_EQ(cuMemFree_v2(parents), CUDA_SUCCESS);
  close(report[0]);
  close(report[1]);
  close(release[0]);
}

TEST_F(FakeGpuNode, ManyProcessesChurningStayFastAndExact) {
  constexpr int kProcesses = 32;
  constexpr int kPairsEach = 1563;  // about 10^5 allocations and frees in all
  auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(
        std::make_unique<ChildProcess>(Helper({"churn", std::to_string(kPairsEach)})));
  }
  for (auto& child : children) {
    EXPECT_EQ(child->ReadLine(std::chrono::seconds(120)), "done");
    int status = child->Wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d processes x %d alloc/free pairs: %.2f s\n", kProcesses, kPairsEach, seconds);
  EXPECT_LT(seconds, 60.0);
  StateSnapshot snapshot = Snapshot();
  EXPECT_EQ(snapshot.devices[0].used_bytes, 0u);
  EXPECT_TRUE(snapshot.processes.empty());
}

TEST_F(FakeGpuNode, StateFileOfAnotherLayoutIsRefusedWithAClearMessage) {
  std::ofstream(state_path_) << "this is not a state file, but it is long enough to have a header";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  std::string message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find("TESSERA_FAKEGPU_STATE=" + state_path_), std::string::npos) << message;
  EXPECT_NE(message.find("not a fake GPU state file"), std::string::npos) << message;
}

TEST_F(FakeGpuNode, StateFileLeftHalfCreatedIsFinished) {
  {
    Result<StateReader> probe = StateReader::Open(state_path_);
    ASSERT_FALSE(probe.ok());  // no file yet
  }
  InitWithContext();
  uintmax_t size = std::filesystem::file_size(state_path_);
  tesseraFakeShutdown();
  // What a creator killed between sizing the file and writing its magic leaves behind.
  std::filesystem::remove(state_path_);
  std::ofstream(state_path_, std::ios::binary) << std::string(size, '\0');
  InitWithContext();
  EXPECT_EQ(UsedBytes(), kContextBytes);
}

TEST_F(FakeGpuNode, ProcessesSeeingDifferentDevicesCannotShareAStateFile) {
  ChildProcess child(Helper({"hold", "0"}));
  ASSERT_EQ(child.ReadLine(), "ready " + std::to_string(child.pid()));
  UseConfig("device memory=1GiB\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  std::string message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find("in use by processes that see 2 device(s)"), std::string::npos) << message;
}

TEST_F(FakeGpuNode, BadFaultSpecInTheEnvironmentStopsCuInit) {
  setenv("TESSERA_FAKEGPU_FAULTS", "cuMemAlloc_v2:first=2", 1);
  ChildProcess child(Helper({"init"}));
  unsetenv("TESSERA_FAKEGPU_FAULTS");
  EXPECT_EQ(child.ReadLine(), "cuInit 100");  // CUDA_ERROR_NO_DEVICE
}

TEST_F(FakeGpuNode, FaultSpecInTheEnvironmentIsArmedAtLoad) {
  setenv("TESSERA_FAKEGPU_FAULTS", "cuInit:1=999", 1);
  ChildProcess child(Helper({"init"}));
  unsetenv("TESSERA_FAKEGPU_FAULTS");
  EXPECT_EQ(child.ReadLine(), "cuInit 999");
}

}  // namespace
}  // namespace tessera::fakegpu
