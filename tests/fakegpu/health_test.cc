// Xids raised on the fake node (by tessera-fakegpu in another process, or by the control
// functions): delivered once to each NVML event set registered for the GPU, and reported by the
// GPU until cleared, as a real GPU that needs a reset reports them.
#include <chrono>

#include "cuda/nvml_api.h"
#include "fake_gpu_test_support.h"
#include "fakegpu/config.h"
#include "tests/support/child_process.h"

namespace tessera::fakegpu {
namespace {

using ChildProcess = ::tessera::testing::Child;
using std::chrono::steady_clock;

constexpr unsigned kNoInstance = 0xFFFFFFFFu;

class FakeGpuHealth : public FakeGpuTest {
 protected:
  void TearDown() override {
    while (nvmlShutdown() == NVML_SUCCESS) {
    }
    FakeGpuTest::TearDown();
  }

  static std::vector<std::string> Helper(std::vector<std::string> args) {
    args.insert(args.begin(), TESSERA_FAKEGPU_HELPER);
    return args;
  }

  // Runs tessera-fakegpu on this test's node to its end; returns its exit status.
  int Tool(std::vector<std::string> args, std::string* output = nullptr,
           const std::vector<std::string>& environment = {}) {
    args.insert(args.begin(), TESSERA_FAKEGPU_TOOL);
    ChildProcess tool(args, environment.empty() ? ChildEnvironment() : environment);
    int status = tool.Finish();
    if (output != nullptr) *output = tool.output();
    return status;
  }

  static nvmlDevice_t Gpu(unsigned index) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(nvmlDeviceGetHandleByIndex_v2(index, &device), NVML_SUCCESS);
    return device;
  }

  static nvmlEventSet_t RegisteredSet(unsigned gpu) {
    nvmlEventSet_t set = nullptr;
    EXPECT_EQ(nvmlEventSetCreate(&set), NVML_SUCCESS);
    EXPECT_EQ(nvmlDeviceRegisterEvents(Gpu(gpu), nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
    return set;
  }

  static nvmlEnableState_t PagesPending(unsigned gpu) {
    nvmlEnableState_t pending = NVML_FEATURE_ENABLED;
    EXPECT_EQ(nvmlDeviceGetRetiredPagesPendingStatus(Gpu(gpu), &pending), NVML_SUCCESS);
    return pending;
  }
};

TEST_F(FakeGpuHealth, AnXidRaisedByTheToolReachesAnEventSetWaitingInAnotherProcess) {
  ChildProcess waiter(Helper({"wait-xid", "1", "60000"}), ChildEnvironment());
  ASSERT_EQ(waiter.ReadLine(), "waiting");
  std::string output;
  ASSERT_EQ(Tool({"fault", "raise", "--gpu", "1", "--xid", "48"}, &output), 0) << output;
  steady_clock::time_point raised = steady_clock::now();
  EXPECT_EQ(waiter.ReadLine(), "xid=48 device=1 gi=4294967295 ci=4294967295");
  EXPECT_LT(steady_clock::now() - raised, std::chrono::seconds(1));
  EXPECT_EQ(waiter.Finish(), 0);
  EXPECT_NE(output.find("raised Xid 48 (double-bit ECC error) on GPU 1"), std::string::npos)
      << output;
}

TEST_F(FakeGpuHealth, WaitingWhileNothingIsRaisedTimesOut) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlEventSet_t set = RegisteredSet(0);
  nvmlEventData_t data{};
  steady_clock::time_point start = steady_clock::now();
  EXPECT_EQ(nvmlEventSetWait_v2(set, &data, 50), NVML_ERROR_TIMEOUT);
  EXPECT_GE(steady_clock::now() - start, std::chrono::milliseconds(50));
  EXPECT_EQ(nvmlEventSetWait_v2(set, &data, 0), NVML_ERROR_TIMEOUT);
  EXPECT_EQ(nvmlEventSetFree(set), NVML_SUCCESS);
  EXPECT_EQ(nvmlEventSetWait_v2(set, &data, 0), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(nvmlEventSetFree(set), NVML_ERROR_INVALID_ARGUMENT);
}

TEST_F(FakeGpuHealth, EachXidReachesEverySetRegisteredForItsGpuWhenItWasRaisedOnce) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlEventSet_t first = RegisteredSet(0);
  nvmlEventSet_t second = RegisteredSet(0);
  nvmlEventSet_t other_gpu = RegisteredSet(1);
  ASSERT_EQ(tesseraFakeNvmlRaiseXid(0, 31), 0);
  nvmlEventSet_t late = RegisteredSet(0);

  for (nvmlEventSet_t set : {first, second}) {
    nvmlEventData_t data{};
    ASSERT_EQ(nvmlEventSetWait_v2(set, &data, 10000), NVML_SUCCESS);
    EXPECT_EQ(data.device, Gpu(0));
    EXPECT_EQ(data.eventType, static_cast<unsigned long long>(nvmlEventTypeXidCriticalError));
    EXPECT_EQ(data.eventData, 31u);
    EXPECT_EQ(data.gpuInstanceId, kNoInstance);
    EXPECT_EQ(data.computeInstanceId, kNoInstance);
    EXPECT_EQ(nvmlEventSetWait_v2(set, &data, 0), NVML_ERROR_TIMEOUT) << "delivered once";
  }
  nvmlEventData_t data{};
  EXPECT_EQ(nvmlEventSetWait_v2(other_gpu, &data, 0), NVML_ERROR_TIMEOUT);
  EXPECT_EQ(nvmlEventSetWait_v2(late, &data, 0), NVML_ERROR_TIMEOUT)
      << "registered after the raise";

  ASSERT_EQ(tesseraFakeNvmlRaiseXid(0, 13), 0);
  ASSERT_EQ(tesseraFakeNvmlRaiseXid(1, 43), 0);
  ASSERT_EQ(tesseraFakeNvmlRaiseXid(0, 45), 0);
  ASSERT_EQ(nvmlEventSetWait_v2(first, &data, 10000), NVML_SUCCESS);
  EXPECT_EQ(data.eventData, 13u);
  ASSERT_EQ(nvmlEventSetWait_v2(first, &data, 10000), NVML_SUCCESS);
  EXPECT_EQ(data.eventData, 45u) << "in the order raised, only its GPU's";
  ASSERT_EQ(nvmlEventSetWait_v2(other_gpu, &data, 10000), NVML_SUCCESS);
  EXPECT_EQ(data.eventData, 43u);
  EXPECT_EQ(data.device, Gpu(1));
}

TEST_F(FakeGpuHealth, GpusSupportXidAndEccEventsAndRefuseOthers) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  unsigned long long types = 0;
  ASSERT_EQ(nvmlDeviceGetSupportedEventTypes(Gpu(0), &types), NVML_SUCCESS);
  EXPECT_NE(types & nvmlEventTypeXidCriticalError, 0u);
  EXPECT_NE(types & nvmlEventTypeDoubleBitEccError, 0u);
  EXPECT_NE(types & nvmlEventTypeSingleBitEccError, 0u);
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(nvmlEventSetCreate(&set), NVML_SUCCESS);
  EXPECT_EQ(nvmlDeviceRegisterEvents(Gpu(0), nvmlEventTypePowerSourceChange, set),
            NVML_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(nvmlDeviceRegisterEvents(Gpu(0), types, set), NVML_SUCCESS);
}

TEST_F(FakeGpuHealth, AMemoryXidLeavesPagesPendingRetirementUntilCleared) {
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  EXPECT_EQ(PagesPending(0), NVML_FEATURE_DISABLED);
  ASSERT_EQ(tesseraFakeNvmlRaiseXid(0, 13), 0);
  EXPECT_EQ(PagesPending(0), NVML_FEATURE_DISABLED) << "Xid 13 is not a memory error";
  std::string output;
  ASSERT_EQ(Tool({"fault", "raise", "--gpu", "0", "--xid", "94"}, &output), 0) << output;
  EXPECT_EQ(PagesPending(0), NVML_FEATURE_ENABLED);
  EXPECT_EQ(PagesPending(0), NVML_FEATURE_ENABLED) << "persistent, as on a GPU awaiting reset";
  EXPECT_EQ(PagesPending(1), NVML_FEATURE_DISABLED);
  nvmlMemory_t memory{};
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(Gpu(0), &memory), NVML_SUCCESS) << "still answers";
  ASSERT_EQ(Tool({"fault", "list"}, &output), 0);
  EXPECT_NE(output.find("gpu=0 uuid=" + FormatUuid(DefaultUuid(0)) +
                        " health=faulted last_xid=94 xids=2 lost=no retired_pages_pending=yes"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("gpu=1 uuid=" + FormatUuid(DefaultUuid(1)) + " health=ok"),
            std::string::npos)
      << output;

  ASSERT_EQ(Tool({"fault", "clear", "--gpu", FormatUuid(DefaultUuid(0))}, &output), 0) << output;
  EXPECT_EQ(PagesPending(0), NVML_FEATURE_DISABLED);
  EXPECT_EQ(Snapshot().health.at(0).xid_count, 0u);
}

TEST_F(FakeGpuHealth, AGpuThatFellOffTheBusAnswersNothingUntilCleared) {
  InitWithContext();
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  std::string output;
  ASSERT_EQ(Tool({"fault", "raise", "--gpu", "1", "--xid", "79"}, &output), 0) << output;

  nvmlMemory_t memory{};
  char text[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  nvmlUtilization_t utilization{};
  nvmlEnableState_t pending{};
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(Gpu(1), &memory), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(nvmlDeviceGetUUID(Gpu(1), text, sizeof text), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(nvmlDeviceGetName(Gpu(1), text, sizeof text), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(nvmlDeviceGetUtilizationRates(Gpu(1), &utilization), NVML_ERROR_GPU_IS_LOST);
  EXPECT_EQ(nvmlDeviceGetRetiredPagesPendingStatus(Gpu(1), &pending), NVML_ERROR_GPU_IS_LOST);
  unsigned index = 9;
  EXPECT_EQ(nvmlDeviceGetIndex(Gpu(1), &index), NVML_SUCCESS) << "the handle itself stays";
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(Gpu(0), &memory), NVML_SUCCESS);
  CUdevice device = -1;
  EXPECT_EQ(cuDeviceGet(&device, 1), CUDA_ERROR_INVALID_DEVICE);
  EXPECT_EQ(cuDeviceGet(&device, 0), CUDA_SUCCESS);
  ChildProcess fresh(Helper({"devices"}), ChildEnvironment());
  EXPECT_EQ(fresh.Finish(), 1);
  EXPECT_NE(fresh.output().find("error cuInit 100"), std::string::npos) << fresh.output();
  ChildProcess elsewhere(Helper({"devices"}), ChildEnvironment({"NVIDIA_VISIBLE_DEVICES=0"}));
  EXPECT_EQ(elsewhere.Finish(), 0);
  EXPECT_NE(elsewhere.output().find("count=1"), std::string::npos) << elsewhere.output();

  ASSERT_EQ(Tool({"fault", "clear", "--gpu", "1"}, &output), 0) << output;
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(Gpu(1), &memory), NVML_SUCCESS);
  EXPECT_EQ(nvmlDeviceGetUUID(Gpu(1), text, sizeof text), NVML_SUCCESS);
  EXPECT_EQ(cuDeviceGet(&device, 1), CUDA_SUCCESS);
  ChildProcess after(Helper({"devices"}), ChildEnvironment());
  EXPECT_EQ(after.Finish(), 0);
  EXPECT_NE(after.output().find("count=2"), std::string::npos) << after.output();
}

TEST_F(FakeGpuHealth, ControlFunctionsWorkBeforeNvmlStartsAndRefuseBadArguments) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(tesseraFakeNvmlRaiseXid(2, 79), -1);
  EXPECT_EQ(tesseraFakeNvmlRaiseXid(0, 0), -1);
  EXPECT_EQ(tesseraFakeNvmlClearFault(7), -1);
  std::string errors = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(errors.find("no GPU 2 on this node (it has 2 GPU(s), 0 to 1)"), std::string::npos)
      << errors;
  EXPECT_NE(errors.find("Xid 0 is out of range; expected 1 to 999"), std::string::npos) << errors;
  ASSERT_EQ(tesseraFakeNvmlRaiseXid(0, 79), 0);
  ASSERT_EQ(nvmlInit_v2(), NVML_SUCCESS);
  nvmlMemory_t memory{};
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(Gpu(0), &memory), NVML_ERROR_GPU_IS_LOST);
  ASSERT_EQ(tesseraFakeNvmlClearFault(0), 0);
  EXPECT_EQ(nvmlDeviceGetMemoryInfo(Gpu(0), &memory), NVML_SUCCESS);
}

TEST_F(FakeGpuHealth, TheToolExplainsItselfAndRefusesBadArgumentsClearly) {
  std::string output;
  ASSERT_EQ(Tool({"--help"}, &output), 0);
  for (const char* expected : {"devices", "fault", "--config", "--state", "TESSERA_FAKEGPU_STATE",
                               "fault raise --gpu 1 --xid 79"}) {
    EXPECT_NE(output.find(expected), std::string::npos) << expected << " in " << output;
  }
  EXPECT_EQ(Tool({"fault", "raise", "--gpu", "5", "--xid", "79"}, &output), 1);
  EXPECT_NE(output.find("tessera-fakegpu: --gpu 5: no GPU 5 on this node (it has 2 GPU(s), 0 "
                        "to 1)"),
            std::string::npos)
      << output;
  EXPECT_NE(Tool({"fault", "raise", "--gpu", "1"}, &output), 0);
  EXPECT_NE(output.find("--xid is required"), std::string::npos) << output;
  EXPECT_NE(Tool({"fault", "raise", "--gpu", "1", "--xid", "1000"}, &output), 0);
  EXPECT_NE(output.find("--xid"), std::string::npos) << output;
  EXPECT_NE(Tool({"fault"}, &output), 0);
  EXPECT_NE(Tool({"fault", "raise", "--gpu", "GPU-nope", "--xid", "79"}, &output), 0);
  EXPECT_NE(output.find("\"GPU-nope\" is neither a GPU index nor the UUID of a GPU of this node"),
            std::string::npos)
      << output;
  EXPECT_TRUE(Snapshot().health.at(1).healthy()) << "nothing raised by the refused commands";
}

TEST_F(FakeGpuHealth, TheToolsFlagsStandInForTheVariablesAndItListsMigDevices) {
  std::string config = UseConfig("device\ndevice mig=4g.40gb,3g.40gb\n");
  unsetenv("TESSERA_FAKEGPU_CONFIG");
  std::string output;
  ASSERT_EQ(Tool({"devices", "--config", config, "--state", state_path_}, &output,
                 {"TESSERA_FAKEGPU_STATE=" + directory_ + "/elsewhere"}),
            0)
      << output;
  Result<std::vector<DeviceSpec>> node =
      ParseDeviceConfig("device\ndevice mig=4g.40gb,3g.40gb\n", "x");
  ASSERT_TRUE(node.ok());
  EXPECT_NE(output.find("gpu=1 uuid=" + FormatUuid((*node)[1].uuid) +
                        " name=\"Tessera Fake H100\" memory=\"80 GiB\" sms=132 numa=0 mig=on "
                        "health=ok\n  mig=1:0 uuid=" +
                        FormatMigUuid((*node)[1].mig[0].uuid) +
                        " name=\"Tessera Fake H100 MIG 4g.40gb\" memory=\"40 GiB\" sms=64 "
                        "gpu_instance=1 compute_instance=0 placement=0:4"),
            std::string::npos)
      << output;
  std::string mig = FormatMigUuid((*node)[1].mig[1].uuid);
  EXPECT_EQ(Tool({"--config", config, "--state", state_path_, "fault", "raise", "--gpu", mig,
                  "--xid", "79"},
                 &output, {"TESSERA_FAKEGPU_STATE=" + directory_ + "/elsewhere"}),
            1);
  EXPECT_NE(output.find(mig + " is a MIG device of GPU 1; faults are raised on whole GPUs"),
            std::string::npos)
      << output;
  std::string bad = directory_ + "/bad.conf";
  std::ofstream(bad) << "device\ndevice mig=9g.90gb\n";
  EXPECT_EQ(Tool({"fault", "list", "--config", bad}, &output), 1);
  EXPECT_NE(output.find(bad + ":2: mig=9g.90gb: unknown profile \"9g.90gb\""), std::string::npos)
      << output;
}

}  // namespace
}  // namespace tessera::fakegpu
