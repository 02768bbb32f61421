// A state file whose lock is unrecoverable (a process died holding it and what it left was not
// repaired): every SharedState member that takes the lock returns the error, never an empty value
// a caller could take for the node's state, and the CUDA and NVML calls that need the state
// return an error code, as a real driver's calls do when the device's state is unusable.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"
#include "cuda/nvml_api.h"
#include "fake_gpu_test_support.h"
#include "fakegpu/config.h"
#include "fakegpu/shared_state.h"

namespace tessera::fakegpu {
namespace {

Status StatusOf(const Status& status) { return status; }
template <typename T>
Status StatusOf(const Result<T>& result) {
  return result.status();
}

class FakeGpuStateLock : public FakeGpuTest {
 protected:
  void TearDown() override {
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    if (mapping_ != nullptr) munmap(mapping_, mapped_bytes_);
    FakeGpuTest::TearDown();
  }

  // A child takes the state file's lock and dies holding it; this process inherits it
  // (EOWNERDEAD) and gives it back without repairing anything, which leaves it unrecoverable for
  // every process, as a repair that failed would.
  void MakeTheLockUnrecoverable() {
    int fd = open(state_path_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << state_path_;
    mapped_bytes_ = SharedState::MutexOffset() + sizeof(pthread_mutex_t);
    mapping_ = mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ASSERT_NE(mapping_, MAP_FAILED);
    auto* mutex = reinterpret_cast<pthread_mutex_t*>(static_cast<char*>(mapping_) +
                                                     SharedState::MutexOffset());
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(pthread_mutex_lock(mutex) == 0 ? 0 : 1);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    ASSERT_EQ(pthread_mutex_lock(mutex), EOWNERDEAD);
    ASSERT_EQ(pthread_mutex_unlock(mutex), 0);
    ASSERT_EQ(pthread_mutex_lock(mutex), ENOTRECOVERABLE);
  }

  // The error a member returned names the file and says what is wrong with it.
  void ExpectUnrecoverable(const Status& status, const std::string& member) {
    ASSERT_FALSE(status.ok()) << member << " answered without the lock";
    EXPECT_NE(status.message().find(state_path_), std::string::npos)
        << member << ": " << status.message();
    EXPECT_NE(status.message().find("unrecoverable"), std::string::npos)
        << member << ": " << status.message();
  }

  void* mapping_ = nullptr;
  size_t mapped_bytes_ = 0;
};

TEST_F(FakeGpuStateLock, EveryMemberThatTakesTheLockReturnsTheError) {
  Result<std::vector<DeviceSpec>> devices = LoadDeviceConfig();  // two H100s when unset
  ASSERT_TRUE(devices.ok()) << devices.status().message();
  Result<std::unique_ptr<SharedState>> opened = SharedState::OpenForNode(state_path_, *devices);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  SharedState& state = **opened;
  // Something in every part of the state, so that an empty answer is not the state's own.
  Result<std::optional<int>> registered =
      state.RegisterProcess(getpid(), ProcessStartTime(getpid()));
  ASSERT_TRUE(registered.ok() && registered->has_value());
  const int slot = **registered;
  const DeviceRef gpu0{0, -1};
  Result<bool> charged = state.Charge(slot, gpu0, kGiB);
  ASSERT_TRUE(charged.ok() && *charged);
  const uint64_t duration_ns = 1'000'000;
  ASSERT_TRUE(state.QueueKernels(gpu0, getpid(), &duration_ns, 1).ok());
  ASSERT_TRUE(state.RaiseXid(0, 48).ok());
  MakeTheLockUnrecoverable();

  ExpectUnrecoverable(StatusOf(state.ReleaseProcess(slot)), "ReleaseProcess");
  ExpectUnrecoverable(StatusOf(state.Uncharge(slot, gpu0, kGiB)), "Uncharge");
  ExpectUnrecoverable(StatusOf(state.QueueKernels(gpu0, getpid(), &duration_ns, 1)),
                      "QueueKernels");
  ExpectUnrecoverable(StatusOf(state.KernelRuns(0, 0)), "KernelRuns");
  ExpectUnrecoverable(StatusOf(state.Device(0)), "Device");
  ExpectUnrecoverable(StatusOf(state.Usage(gpu0)), "Usage");
  ExpectUnrecoverable(StatusOf(state.Snapshot()), "Snapshot");
  ExpectUnrecoverable(StatusOf(state.Health(0)), "Health");
  ExpectUnrecoverable(StatusOf(state.XidEventsAfter(0)), "XidEventsAfter");
  // The members that returned errors before.
  ExpectUnrecoverable(StatusOf(state.Configure(*devices)), "Configure");
  ExpectUnrecoverable(StatusOf(state.RegisterProcess(getpid() + 1, 1)), "RegisterProcess");
  ExpectUnrecoverable(StatusOf(state.Charge(slot, gpu0, kMiB)), "Charge");
  ExpectUnrecoverable(StatusOf(state.RaiseXid(0, 79)), "RaiseXid");
  ExpectUnrecoverable(StatusOf(state.ClearFault(0)), "ClearFault");
  ExpectUnrecoverable(StatusOf(state.ResetPeaks()), "ResetPeaks");
  EXPECT_EQ(state.XidSequence(), 1u) << "the sequence number is read without the lock";

  Result<StateReader> reader = StateReader::Open(state_path_);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  ExpectUnrecoverable(StatusOf(reader->Read()), "StateReader::Read");
}

TEST_F(FakeGpuStateLock, CudaCallsThatNeedTheStateReturnUnknownError) {
  InitWithContext();
  CUdeviceptr pointer = 0;
  ASSERT_EQ(cuMemAlloc_v2(&pointer, kMiB), CUDA_SUCCESS);
  CUmodule module = nullptr;
  ASSERT_EQ(cuModuleLoadData(&module, "any bytes"), CUDA_SUCCESS);
  CUfunction busy = nullptr;
  ASSERT_EQ(cuModuleGetFunction(&busy, module, "busy_us_1000"), CUDA_SUCCESS);
  CUfunction plain = nullptr;
  ASSERT_EQ(cuModuleGetFunction(&plain, module, "plain"), CUDA_SUCCESS);
  MakeTheLockUnrecoverable();

  ::testing::internal::CaptureStderr();
  size_t free = 0;
  size_t total = 0;
  EXPECT_EQ(cuMemGetInfo_v2(&free, &total), CUDA_ERROR_UNKNOWN);  // SharedState::Usage
  EXPECT_EQ(cuLaunchKernel(busy, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr),
            CUDA_ERROR_UNKNOWN);  // SharedState::QueueKernels
  EXPECT_EQ(cuLaunchKernel(plain, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr), CUDA_SUCCESS)
      << "a kernel that takes no device time never touches the state";
  CUdevice device = -1;
  EXPECT_EQ(cuDeviceGet(&device, 0), CUDA_ERROR_UNKNOWN);  // SharedState::Health
  EXPECT_EQ(cuMemFree_v2(pointer), CUDA_ERROR_UNKNOWN);    // SharedState::Uncharge
  EXPECT_EQ(cuMemFree_v2(pointer), CUDA_ERROR_INVALID_VALUE) << "the handle is gone all the same";
  EXPECT_EQ(cuMemAlloc_v2(&pointer, kMiB), CUDA_ERROR_UNKNOWN);  // SharedState::Charge
  // A fork child has no slot yet: its first allocation claims one (SharedState::RegisterProcess).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(cuMemAlloc_v2(&pointer, kMiB) == CUDA_ERROR_UNKNOWN ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "a child's first allocation did not return CUDA_ERROR_UNKNOWN; status " << status;
  EXPECT_EQ(tesseraFakeShutdown(), -1);  // SharedState::ReleaseProcess
  std::string message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find(state_path_), std::string::npos) << message;
  EXPECT_NE(message.find("CUDA_ERROR_UNKNOWN"), std::string::npos) << message;
}

TEST_F(FakeGpuStateLock, NvmlCallsThatNeedTheStateReturnUnknownError) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlDevice_t device = nullptr;
  ASSERT_EQ(nvmlDeviceGetHandleByIndex_v2(0, &device), NVML_SUCCESS);
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(nvmlEventSetCreate(&set), NVML_SUCCESS);
  ASSERT_EQ(nvmlDeviceRegisterEvents(device, nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
  ASSERT_EQ(tesseraFakeNvmlRaiseXid(0, 48), 0);  // an Xid for the set to read
  MakeTheLockUnrecoverable();

  ::testing::internal::CaptureStderr();
  nvmlMemory_t memory{};
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(device, &memory), NVML_ERROR_UNKNOWN);
  nvmlUtilization_t utilization{};
  EXPECT_EQ(nvmlDeviceGetUtilizationRates(device, &utilization), NVML_ERROR_UNKNOWN);
  nvmlEnableState_t pending = NVML_FEATURE_DISABLED;
  EXPECT_EQ(nvmlDeviceGetRetiredPagesPendingStatus(device, &pending), NVML_ERROR_UNKNOWN);
  nvmlEventData_t data{};
  EXPECT_EQ(nvmlEventSetWait_v2(set, &data, 0), NVML_ERROR_UNKNOWN)
      << "SharedState::XidEventsAfter's error, not a timeout";
  std::string message = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find(state_path_), std::string::npos) << message;
  EXPECT_NE(message.find("NVML_ERROR_UNKNOWN"), std::string::npos) << message;
}

}  // namespace
}  // namespace tessera::fakegpu
