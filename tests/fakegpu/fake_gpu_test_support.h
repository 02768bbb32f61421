// What the fake GPU's tests share: a private state file and config per test, and short ways to
// reach a ready driver and read the node's memory.
#ifndef TESSERA_TESTS_FAKEGPU_FAKE_GPU_TEST_SUPPORT_H_
#define TESSERA_TESTS_FAKEGPU_FAKE_GPU_TEST_SUPPORT_H_

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda/driver_api.h"
#include "fakegpu/control.h"
#include "fakegpu/state_reader.h"

namespace tessera::fakegpu {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

// Each test gets its own directory, state file and (optionally) config; the driver is shut down
// after each test so the next starts from a fresh cuInit.
class FakeGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tessera-fakegpu-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    directory_ = pattern;
    state_path_ = directory_ + "/state";
    setenv("TESSERA_FAKEGPU_STATE", state_path_.c_str(), 1);
    unsetenv("TESSERA_FAKEGPU_CONFIG");
    unsetenv("TESSERA_FAKEGPU_FAULTS");
    unsetenv("NVIDIA_VISIBLE_DEVICES");
    unsetenv("CUDA_VISIBLE_DEVICES");
  }

  void TearDown() override {
    tesseraFakeShutdown();
    tesseraFakeSetFaults("");
    unsetenv("NVIDIA_VISIBLE_DEVICES");
    unsetenv("CUDA_VISIBLE_DEVICES");
    std::filesystem::remove_all(directory_);
  }

  // Writes `text` as the config file and points TESSERA_FAKEGPU_CONFIG at it.
  std::string UseConfig(const std::string& text) {
    std::string path = directory_ + "/devices.conf";
    std::ofstream(path) << text;
    setenv("TESSERA_FAKEGPU_CONFIG", path.c_str(), 1);
    return path;
  }

  // cuInit and device 0's primary context made current.
  CUcontext InitWithContext(CUdevice device = 0) {
    EXPECT_EQ(cuInit(0), CUDA_SUCCESS);
    CUcontext context = nullptr;
    EXPECT_EQ(cuDevicePrimaryCtxRetain(&context, device), CUDA_SUCCESS);
    EXPECT_EQ(cuCtxSetCurrent(context), CUDA_SUCCESS);
    return context;
  }

  // The node's state; nullopt while no process has created the state file yet (or, failing the
  // test, when it cannot be read).
  std::optional<StateSnapshot> TrySnapshot() const {
    Result<StateReader> reader = StateReader::Open(state_path_);
    if (!reader.ok()) return std::nullopt;
    Result<StateSnapshot> snapshot = reader->Read();
    EXPECT_TRUE(snapshot.ok()) << snapshot.status().message();
    if (!snapshot.ok()) return std::nullopt;
    return std::move(snapshot).value();
  }

  StateSnapshot Snapshot() const {
    std::optional<StateSnapshot> snapshot = TrySnapshot();
    EXPECT_TRUE(snapshot.has_value()) << "no state file at " << state_path_;
    return snapshot.value_or(StateSnapshot{});
  }

  uint64_t UsedBytes(int device = 0) const { return Snapshot().devices.at(device).used_bytes; }

  // A process's bytes on `device`, per the state file (0 when it holds no slot or there is no
  // state file yet).
  uint64_t ProcessBytes(int pid, int device = 0) const {
    std::optional<StateSnapshot> snapshot = TrySnapshot();
    if (!snapshot) return 0;
    for (const ProcessUsage& process : snapshot->processes) {
      if (process.pid == pid) return process.used_bytes.at(device);
    }
    return 0;
  }

  // The environment of a child process on this test's node, plus `extra` ("NAME=value").
  std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> environment = {"TESSERA_FAKEGPU_STATE=" + state_path_};
    if (const char* config = std::getenv("TESSERA_FAKEGPU_CONFIG")) {
      environment.push_back(std::string("TESSERA_FAKEGPU_CONFIG=") + config);
    }
    environment.insert(environment.end(), extra.begin(), extra.end());
    return environment;
  }

  std::string directory_;
  std::string state_path_;
};

// Polls `condition` until it holds or a generous deadline passes.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

}  // namespace tessera::fakegpu

#endif  // TESSERA_TESTS_FAKEGPU_FAKE_GPU_TEST_SUPPORT_H_
