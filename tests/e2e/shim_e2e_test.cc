// The shim end to end: real processes with LD_PRELOAD=libtessera-cuda.so on the fake GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include "fake_node.h"
#include "fakegpu/state_reader.h"
#include "region/region.h"
#include "tests/support/child_process.h"

namespace tessera {
namespace {

using testing::Child;
using testing::Fields;
using testing::Number;

constexpr long long kMiB = 1ll << 20;
constexpr long long kGiB = 1ll << 30;

class ShimEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(node_.ok()); }

  void WriteConfig(const std::string& text) { node_.WriteDevices(text); }
  std::string RegionPath() const { return node_.Path("region"); }
  std::string StatePath() const { return node_.StatePath(); }

  std::vector<std::string> Environment(const std::vector<std::string>& extra,
                                       bool preload = true) const {
    std::vector<std::string> environment = {"CUDA_DEVICE_MEMORY_SHARED_CACHE=" + RegionPath()};
    if (preload) environment.push_back(std::string("LD_PRELOAD=") + TESSERA_SHIM_PATH);
    environment.insert(environment.end(), extra.begin(), extra.end());
    return node_.Environment(environment);
  }

  static std::vector<std::string> Client(const std::string& via, std::vector<std::string> args) {
    std::vector<std::string> argv = {via == "linked" ? TESSERA_CLIENT_LINKED : TESSERA_CLIENT, via};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  fakegpu::StateSnapshot FakeGpu() {
    auto reader = fakegpu::StateReader::Open(StatePath());
    EXPECT_TRUE(reader.ok()) << reader.status().message();
    auto snapshot = reader->Read();
    EXPECT_TRUE(snapshot.ok()) << snapshot.status().message();
    return snapshot.ok() ? std::move(snapshot).value() : fakegpu::StateSnapshot{};
  }

  testing::FakeNode node_{
      "device name=\"Tessera Fake H100\" memory=16GiB sms=132 context_memory=32MiB\n"};
};

// ---- The three ways to reach the driver all see and obey the limit ---------------------------
class ShimReach : public ShimEndToEnd, public ::testing::WithParamInterface<std::string> {};

TEST_P(ShimReach, AllocationsStopAtTheLimitAndEveryViewReportsIt) {
  Child client(Client(GetParam(), {"fill", "64M"}), Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  // The context takes 32 MiB of the 1 GiB; 64 MiB blocks fit 15 times into the remaining 992.
  EXPECT_EQ(Number(fields, "refused"), 2) << "CUDA_ERROR_OUT_OF_MEMORY, never another code";
  EXPECT_EQ(Number(fields, "allocated"), 15 * 64 * kMiB);
  EXPECT_EQ(Number(fields, "total"), kGiB);
  EXPECT_EQ(Number(fields, "free"), 32 * kMiB);
  EXPECT_EQ(Number(fields, "device_total"), kGiB);
  EXPECT_EQ(Number(fields, "nvml_total"), kGiB);
  EXPECT_EQ(Number(fields, "nvml_free"), 32 * kMiB);
  EXPECT_EQ(Number(fields, "nvml_used"), kGiB - 32 * kMiB);
  EXPECT_EQ(Number(fields, "nvml2_total"), kGiB);
  EXPECT_EQ(Number(fields, "nvml2_free"), 32 * kMiB);
}

INSTANTIATE_TEST_SUITE_P(Paths, ShimReach, ::testing::Values("linked", "dlopen", "procaddress"));

// The shim's start-up loads the driver, and the driver's loading looks a symbol up through the
// shim's dlsym: that lookup must pass through, not start the shim again on the same thread (a
// recursive start-up aborted the process).
TEST_F(ShimEndToEnd, TheDriversLookupsWhileTheShimStartsPassThrough) {
  Child client(
      Client("global", {"fill", "64M"}),
      Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB", "TESSERA_FAKEGPU_DLSYM_AT_LOAD=cuInit"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "first_init"), 0) << client.output();
  EXPECT_EQ(Number(fields, "allocated"), 15 * 64 * kMiB) << "the limit holds after such a start";
}

TEST_F(ShimEndToEnd, PerDeviceLimitOverridesTheDefault) {
  Child client(Client("dlopen", {"fill", "64M"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=8GiB", "CUDA_DEVICE_MEMORY_LIMIT_0=512m"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "total"), 512 * kMiB);
}

TEST_F(ShimEndToEnd, DisableControlPassesEverythingThrough) {
  Child client(Client("dlopen", {"fill", "1G"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB", "CUDA_DISABLE_CONTROL=true"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "allocated"), 15 * kGiB);
  EXPECT_EQ(Number(fields, "total"), 16 * kGiB);
}

TEST_F(ShimEndToEnd, FreeFreeMemoryIsNeverMoreThanThePhysicalFree) {
  // Another container holds 15.5 GiB of the 16 GiB GPU: a 4 GiB limit cannot promise 4 GiB.
  Child other(Client("dlopen", {"hold", "15872M", "512M"}),
              Environment({"CUDA_DEVICE_MEMORY_SHARED_CACHE=" + node_.Path("other")}));
  ASSERT_TRUE(other.WaitFor("ready")) << other.output();
  Child client(Client("dlopen", {"info"}), Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "total"), 4 * kGiB);
  // 16 GiB - 15.5 GiB held - two 32 MiB contexts.
  EXPECT_EQ(Number(fields, "free"), 512 * kMiB - 64 * kMiB);
  EXPECT_EQ(Number(fields, "nvml_free"), 512 * kMiB - 64 * kMiB);
}

TEST_F(ShimEndToEnd, FreeOfAPointerTheShimDoesNotKnowGoesToTheDriver) {
  Child bare(Client("dlopen", {"free-unknown"}), Environment({}, /*preload=*/false));
  ASSERT_EQ(bare.Finish(), 0) << bare.output();
  Child shimmed(Client("dlopen", {"free-unknown"}), Environment({"CUDA_DEVICE_MEMORY_LIMIT=1G"}));
  ASSERT_EQ(shimmed.Finish(), 0) << shimmed.output();
  EXPECT_EQ(Number(Fields(shimmed.output()), "free_result"),
            Number(Fields(bare.output()), "free_result"));
  EXPECT_NE(Number(Fields(bare.output()), "free_result"), 0);
}

// ---- dlsym keeps the caller's scope ------------------------------------------------------------
// glibc answers RTLD_DEFAULT and RTLD_NEXT from the caller's own object: a library loaded
// RTLD_LOCAL (every CPython extension) finds its own symbols, and RTLD_NEXT is relative to it.
TEST_F(ShimEndToEnd, DlsymKeepsTheCallersScope) {
  for (bool preload : {false, true}) {
    SCOPED_TRACE(preload ? "with the shim" : "without the shim");
    Child scope({TESSERA_DLSYM_SCOPE, TESSERA_DLSYM_SCOPE_PROBE},
                Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}, preload));
    ASSERT_EQ(scope.Finish(), 0) << scope.output();
    auto fields = Fields(scope.output());
    EXPECT_EQ(Number(fields, "own"), 1) << scope.output();
    EXPECT_EQ(Number(fields, "next"), 1) << scope.output();
    if (preload) {
      EXPECT_EQ(Number(fields, "default_hook"), 1) << "RTLD_DEFAULT still finds the shim's hooks\n"
                                                   << scope.output();
    }
  }
}

// ---- Every allocation family is charged at the size the driver takes -------------------------
class ShimFamily : public ShimEndToEnd, public ::testing::WithParamInterface<std::string> {};

TEST_P(ShimFamily, IsChargedExactlyWhatTheDriverHoldsAndReleasedWhenFreed) {
  Child client(Client("dlopen", {"family", GetParam(), "96M"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "result"), 0) << client.output();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0])
      << "the region's charge must equal what the fake driver holds for the process";
  EXPECT_GT((*region)->Used(0), 32u * kMiB) << "more than the context alone";
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "release"), 0);
  EXPECT_EQ(Number(fields, "free"), 4 * kGiB - 32 * kMiB) << "only the context stays charged";
  // An exited process's charge is reclaimed by the next look at the region (as `tessera status`
  // does), not at its exit: the driver frees its memory only after its exit handlers.
  ASSERT_TRUE((*region)->Reap(/*force=*/true).ok());
  EXPECT_EQ((*region)->Used(0), 0u) << "nothing stays charged after the process exits";
}

TEST_P(ShimFamily, OverTheLimitIsRefusedWithOutOfMemory) {
  Child client(Client("dlopen", {"family", GetParam(), "2G"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "result"), 2) << client.output();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.devices.size(), 1u);
  EXPECT_LE(gpu.devices[0].used_bytes, static_cast<uint64_t>(kGiB))
      << "the driver was never asked for memory beyond the limit";
  client.Finish();
}

INSTANTIATE_TEST_SUITE_P(Families, ShimFamily,
                         ::testing::Values("alloc", "pitch", "managed", "vmm", "async", "pool",
                                           "array", "array3d", "mipmapped", "graph", "graph-node",
                                           "graph-node-v2", "heap", "printf"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name = param.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// ---- Module and library loads are charged what the driver takes -------------------------------
// Each image takes 96 MiB on the fake GPU (as cuBLAS's or a big fatbin's kernels take tens to
// hundreds of MiB): under a 1 GiB limit with a 32 MiB context, 10 fit and the 11th is refused;
// the region's charge is the driver's, and unloading gives it all back.
class ShimLoads : public ShimEndToEnd, public ::testing::WithParamInterface<std::string> {};

TEST_P(ShimLoads, AreChargedWhatTheDriverTakesAndRefusedAtTheLimit) {
  Child client(Client("dlopen", {"loads", GetParam(), "20", "96M", node_.Path("image")}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "loaded"), 10) << client.output();
  EXPECT_EQ(Number(fields, "load_result"), 2) << "CUDA_ERROR_OUT_OF_MEMORY\n" << client.output();
  EXPECT_EQ(Number(fields, "free"), 1 * kGiB - 32 * kMiB - 10 * 96 * kMiB) << client.output();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0])
      << "the region's charge must equal what the fake driver holds for the process";
  EXPECT_LE(gpu.devices[0].used_bytes, static_cast<uint64_t>(kGiB));
  client.CloseStdin();
  ASSERT_EQ(client.Finish(), 0) << client.output();
  fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "unload_result"), 0) << client.output();
  EXPECT_EQ(Number(fields, "free_after"), 1 * kGiB - 32 * kMiB) << "only the context stays";
}

INSTANTIATE_TEST_SUITE_P(Kinds, ShimLoads,
                         ::testing::Values("module", "data-ex", "fatbin", "file", "library",
                                           "library-file"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name = param.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// ---- Stream-ordered pools are charged what they reserve ----------------------------------------
// A pool packs small allocations into shared 2 MiB chunks: 10,000 × 4 KiB take 20 chunks (40 MiB),
// which a per-allocation charge made 20 GiB.
TEST_F(ShimEndToEnd, SmallStreamOrderedAllocationsAreChargedThePoolsChunks) {
  Child client(Client("dlopen", {"pools", "small", "10000", "4K"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=256MiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "refused"), 0) << client.output();
  EXPECT_EQ(Number(fields, "allocated"), 10000);
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_EQ((*region)->Used(0), 32u * kMiB + 40u * kMiB) << "the context and 20 chunks";
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0])
      << "the region's charge must equal what the fake driver holds for the process";
  ASSERT_EQ(client.Finish(), 0) << client.output();
}

// PyTorch sets its pools' release threshold to UINT64_MAX: what it frees stays the pool's, so it
// still counts, and a cuMemAlloc beside it is refused until the pool is trimmed.
TEST_F(ShimEndToEnd, MemoryAPoolKeepsAfterItsFreeStaysCharged) {
  Child client(Client("dlopen", {"pools", "cached", "768M", "512M"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "result"), 0) << client.output();
  EXPECT_EQ(Number(fields, "while_cached"), 2) << "the pool still holds 768 MiB of the 1 GiB";
  EXPECT_EQ(Number(fields, "trim"), 0);
  EXPECT_EQ(Number(fields, "after_trim"), 0) << "trimmed, the pool holds nothing";
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0]);
  EXPECT_EQ((*region)->Used(0), 32u * kMiB + 512u * kMiB);
  ASSERT_EQ(client.Finish(), 0) << client.output();
}

TEST_F(ShimEndToEnd, APoolOnAnotherDeviceIsChargedToThatDevice) {
  WriteConfig(
      "device memory=16GiB context_memory=32MiB\n"
      "device memory=16GiB context_memory=32MiB\n");
  Child client(Client("dlopen", {"pools", "device1", "96M"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "result"), 0) << client.output();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_EQ((*region)->Used(1), 96u * kMiB) << "device 1's pool, with device 0 current";
  EXPECT_EQ((*region)->Used(0), 32u * kMiB) << "device 0 holds only the context";
  EXPECT_EQ((*region)->Used(1), gpu.processes[0].used_bytes[1]);
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0]);
  ASSERT_EQ(client.Finish(), 0) << client.output();
}

TEST_F(ShimEndToEnd, AHostPoolIsNotCharged) {
  Child client(Client("dlopen", {"pools", "host", "2G"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "result"), 0) << "host memory is not the limit's";
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  EXPECT_EQ((*region)->Used(0), 32u * kMiB) << "only the context";
  ASSERT_EQ(client.Finish(), 0) << client.output();
}

// VMM memory lives until its handle is released and its last mapping is gone (allocators release
// the handle at once and keep the mapping): charged until then.
TEST_F(ShimEndToEnd, VmmMemoryReleasedWhileMappedStaysChargedUntilUnmapped) {
  Child client(Client("dlopen", {"vmm-mapped", "8", "512M"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=1GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "created"), 1) << "512 MiB and a 32 MiB context fit in 1 GiB once";
  EXPECT_EQ(Number(fields, "refused"), 7) << client.output();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_LE(gpu.processes[0].used_bytes[0], static_cast<uint64_t>(kGiB))
      << "the driver holds no more than the limit";
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0])
      << "the region's charge must equal what the fake driver holds for the process";
  ASSERT_EQ(client.Finish(), 0) << client.output();
  fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "after_unmap"), 0) << "unmapped, the memory is free again";
  EXPECT_EQ(Number(fields, "other_errors"), 0) << client.output();
}

TEST_F(ShimEndToEnd, ACreatedContextIsChargedWhatItTakes) {
  Child client(Client("dlopen", {"family", "context", "0"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok());
  EXPECT_EQ((*region)->Used(0), 64u * kMiB) << "primary context + created context";
  ASSERT_EQ(client.Finish(), 0);
  EXPECT_EQ(Number(Fields(client.output()), "free"), 4 * kGiB - 32 * kMiB);
}

TEST_F(ShimEndToEnd, ContextsStartWhereNvmlCannotTellAProcesssMemory) {
  // NVML reports usedGpuMemory as NVML_VALUE_NOT_AVAILABLE (2^64 - 1): taken for a size, no
  // context could start under any limit.
  WriteConfig("device memory=16GiB context_memory=32MiB process_memory=unavailable\n");
  Child client(Client("dlopen", {"family", "alloc", "96M"}),
               Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  ASSERT_TRUE(client.WaitFor("ready")) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "context"), 0) << client.output();
  EXPECT_EQ(Number(fields, "result"), 0) << client.output();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok());
  EXPECT_EQ((*region)->Used(0), 96u * kMiB) << "the allocation; the context is not measured";
  ASSERT_EQ(client.Finish(), 0) << client.output();
}

// ---- Bad configuration: one clear message naming the variable --------------------------------
struct BadValue {
  std::string variable;
  std::string value;
  std::string says;
};

void PrintTo(const BadValue& bad, std::ostream* out) {
  *out << bad.variable << "=\"" << bad.value << "\"";
}

class ShimBadEnvironment : public ShimEndToEnd, public ::testing::WithParamInterface<BadValue> {};

TEST_P(ShimBadEnvironment, RefusesCudaWithOneMessageNamingTheVariable) {
  const BadValue& bad = GetParam();
  Child client(Client("dlopen", {"info"}), Environment({bad.variable + "=" + bad.value}));
  EXPECT_EQ(client.Finish(), 4) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "init"), 800) << "CUDA_ERROR_NOT_PERMITTED";
  const std::string& output = client.output();
  size_t first = output.find(bad.variable);
  ASSERT_NE(first, std::string::npos) << output;
  EXPECT_NE(output.find(bad.says), std::string::npos) << output;
  EXPECT_EQ(output.find("error: " + bad.variable, first + 1), std::string::npos)
      << "said once: " << output;
}

INSTANTIATE_TEST_SUITE_P(
    Values, ShimBadEnvironment,
    ::testing::Values(BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "", "is empty"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "-4g", "is negative"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "lots", "is not a number"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "99999999999999999999", "too large"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "17179869184t", "too large"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "4gb", "unknown unit"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT", "0", "zero"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT_X", "1g", "device index"},
                      BadValue{"CUDA_DEVICE_MEMORY_LIMIT_16", "1g", "device index"},
                      BadValue{"CUDA_DEVICE_SM_LIMIT", "150", "percentage"},
                      BadValue{"CUDA_DEVICE_SM_LIMIT_0", "half", "percentage"},
                      BadValue{"CUDA_DEVICE_MEMORY_SHARED_CACHE", "", "is empty"},
                      BadValue{"CUDA_DISABLE_CONTROL", "maybe", "true or false"}),
    [](const ::testing::TestParamInfo<BadValue>& param) {
      return "Case" + std::to_string(param.index);
    });

// ---- Devices by UUID, not ordinal -------------------------------------------------------------
// Processes of one container may number its GPUs differently (each Ray actor or vLLM worker gets
// its own CUDA_VISIBLE_DEVICES): every charge and limit goes to the GPU by its UUID.
constexpr char kGpuA[] = "GPU-0a000000-0000-4000-8000-00000000000a";
constexpr char kGpuB[] = "GPU-0b000000-0000-4000-8000-00000000000b";

class ShimDevicesByUuid : public ShimEndToEnd {
 protected:
  void SetUp() override {
    ShimEndToEnd::SetUp();
    WriteConfig(std::string("device memory=16GiB context_memory=32MiB uuid=") + kGpuA +
                "\ndevice memory=16GiB context_memory=32MiB uuid=" + kGpuB + "\n");
  }
  uint64_t RegionUsed(const std::string& uuid) {
    auto region = region::Region::Open(RegionPath(), nullptr);
    if (!region.ok()) return UINT64_MAX;
    auto device = (*region)->FindDevice(uuid);
    return device.ok() && *device >= 0 ? (*region)->Used(*device) : UINT64_MAX;
  }
};

TEST_F(ShimDevicesByUuid, ProcessesThatNumberTheGpusDifferentlyChargeEachItsOwnLimit) {
  const std::vector<std::string> container = {
      std::string("NVIDIA_VISIBLE_DEVICES=") + kGpuA + "," + kGpuB,
      "CUDA_DEVICE_MEMORY_LIMIT_0=1GiB", "CUDA_DEVICE_MEMORY_LIMIT_1=4GiB"};
  auto with = [&](const std::string& visible) {
    std::vector<std::string> environment = container;
    environment.push_back("CUDA_VISIBLE_DEVICES=" + visible);
    return Environment(environment);
  };
  // Its CUDA device 0 is the container's device 1 (GPU B): 3 GiB fits B's 4 GiB (and would not
  // fit A's 1 GiB).
  Child on_b(Client("dlopen", {"hold", "3G", "64M"}), with("1"));
  ASSERT_TRUE(on_b.WaitFor("ready")) << on_b.output();
  EXPECT_EQ(Number(Fields(on_b.output()), "result"), 0) << on_b.output();
  EXPECT_EQ(RegionUsed(kGpuB), 3 * kGiB + 32 * kMiB) << "3 GiB and the context, on GPU B";
  // Its CUDA device 0 is GPU A: A's 1 GiB, none of it taken by B's 3 GiB.
  Child on_a(Client("dlopen", {"fill", "64M"}), with("0"));
  ASSERT_EQ(on_a.Finish(), 0) << on_a.output();
  EXPECT_EQ(Number(Fields(on_a.output()), "total"), kGiB);
  EXPECT_EQ(Number(Fields(on_a.output()), "allocated"), 15 * 64 * kMiB) << on_a.output();
  // Seeing both, in the node's order: its device 1 is B, with B's limit and B's use.
  Child both(Client("dlopen", {"info-device", "1"}), with("0,1"));
  ASSERT_EQ(both.Finish(), 0) << both.output();
  EXPECT_EQ(Number(Fields(both.output()), "device_total"), 4 * kGiB) << both.output();
  on_b.CloseStdin();
  ASSERT_EQ(on_b.Finish(), 0) << on_b.output();
}

TEST_F(ShimDevicesByUuid, TheLimitsFileNamesEachDeviceByItsUuid) {
  // The container's device 0 is GPU B and device 1 GPU A, whatever order CUDA numbers them in.
  const std::string file = node_.Path("limits");
  std::ofstream(file) << "TESSERA_DEVICE_UUID_0=" << kGpuB << "\nTESSERA_DEVICE_UUID_1=" << kGpuA
                      << "\nCUDA_DEVICE_MEMORY_LIMIT_0=1g\nCUDA_DEVICE_MEMORY_LIMIT_1=2g\n";
  Child client(Client("dlopen", {"fill", "64M"}),
               Environment({"TESSERA_LIMITS_FILE=" + file,
                            std::string("NVIDIA_VISIBLE_DEVICES=") + kGpuA + "," + kGpuB}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  // CUDA device 0 is GPU A: the container's device 1, 2 GiB.
  EXPECT_EQ(Number(Fields(client.output()), "total"), 2 * kGiB) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "nvml_total"), 2 * kGiB) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "allocated"), 31 * 64 * kMiB) << client.output();
}

TEST_F(ShimDevicesByUuid, NvmlShowsTheContainersLimitsBeforeAnyCudaProcessHasStarted) {
  // nvidia-smi in a fresh container: no CUDA process has bound a device in the region yet.
  const std::string file = node_.Path("limits");
  std::ofstream(file) << "TESSERA_DEVICE_UUID_0=" << kGpuB << "\nTESSERA_DEVICE_UUID_1=" << kGpuA
                      << "\nCUDA_DEVICE_MEMORY_LIMIT_0=1g\nCUDA_DEVICE_MEMORY_LIMIT_1=2g\n";
  Child smi({TESSERA_CLIENT, "nvml"},
            Environment({"TESSERA_LIMITS_FILE=" + file,
                         std::string("NVIDIA_VISIBLE_DEVICES=") + kGpuA + "," + kGpuB}));
  ASSERT_EQ(smi.Finish(), 0) << smi.output();
  auto fields = Fields(smi.output());
  EXPECT_EQ(Number(fields, "nvml_count"), 2);
  EXPECT_EQ(Number(fields, "nvml0_total"), 2 * kGiB) << "NVML's device 0 is GPU A\n"
                                                     << smi.output();
  EXPECT_EQ(Number(fields, "nvml0_used"), 0);
  EXPECT_EQ(Number(fields, "nvml1_total"), kGiB) << smi.output();
}

// A process in a pid namespace of its own (a container's, with its own /proc) is known to the
// driver by its node pid. The shim learns that pid from its first context, so the context is
// measured and charged, and the container's NVML views find the process.
TEST_F(ShimEndToEnd, AProcessInItsOwnPidNamespaceLearnsItsNodePid) {
  ASSERT_TRUE(node_.StartNodePids());
  std::vector<std::string> command = {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc"};
  for (const std::string& arg : Client("dlopen", {"hold", "256M"})) command.push_back(arg);
  Child contained(command, Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  if (!contained.WaitFor("ready")) {
    if (contained.output().rfind("unshare:", 0) == 0) {
      GTEST_SKIP() << "no pid namespace with its own /proc here: " << contained.output();
    }
    FAIL() << contained.output();
  }
  // The driver lists it by its node pid, not the 1 it has in its namespace.
  Child driver({TESSERA_CLIENT, "nvml"}, Environment({}, /*preload=*/false));
  ASSERT_EQ(driver.Finish(), 0) << driver.output();
  auto listed = Fields(driver.output());
  ASSERT_EQ(Number(listed, "nvml0_processes"), 1) << driver.output();
  const long long node_pid = Number(listed, "nvml0_pids");
  EXPECT_GT(node_pid, 1) << driver.output();

  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok()) << region.status().message();
  auto snapshot = (*region)->TakeSnapshot();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status().message();
  ASSERT_EQ(snapshot->processes.size(), 1u);
  EXPECT_EQ(snapshot->processes[0].pid, 1) << "its pid in its own namespace";
  EXPECT_EQ(snapshot->processes[0].driver_pid, static_cast<uint32_t>(node_pid))
      << contained.output();
  auto gpu = FakeGpu();
  ASSERT_EQ(gpu.processes.size(), 1u);
  EXPECT_EQ((*region)->Used(0), gpu.processes[0].used_bytes[0])
      << "the context (32 MiB) is charged as the driver holds it";
  EXPECT_EQ((*region)->Used(0), 256 * kMiB + 32 * kMiB);
  contained.CloseStdin();
  EXPECT_EQ(contained.Finish(), 0) << contained.output();
}

// nvidia-smi in a container lists the container's own processes, by their pids there; the
// driver lists every process on the GPU.
TEST_F(ShimEndToEnd, NvmlListsOnlyTheContainersOwnProcesses) {
  Child mine(Client("dlopen", {"hold", "256M"}), Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  ASSERT_TRUE(mine.WaitFor("ready")) << mine.output();
  Child other(Client("dlopen", {"hold", "128M"}),
              Environment({"CUDA_DEVICE_MEMORY_SHARED_CACHE=" + node_.Path("other")}));
  ASSERT_TRUE(other.WaitFor("ready")) << other.output();

  Child driver({TESSERA_CLIENT, "nvml"}, Environment({}, /*preload=*/false));
  ASSERT_EQ(driver.Finish(), 0) << driver.output();
  EXPECT_EQ(Number(Fields(driver.output()), "nvml0_processes"), 2) << driver.output();

  Child smi({TESSERA_CLIENT, "nvml"}, Environment({"CUDA_DEVICE_MEMORY_LIMIT=4GiB"}));
  ASSERT_EQ(smi.Finish(), 0) << smi.output();
  auto fields = Fields(smi.output());
  EXPECT_EQ(Number(fields, "nvml0_processes"), 1) << smi.output();
  EXPECT_EQ(Number(fields, "nvml0_pids"), mine.pid()) << smi.output();
  EXPECT_EQ(Number(fields, "nvml0_processes_v2"), 1) << smi.output();
  EXPECT_EQ(Number(fields, "nvml0_processes_v1"), 1) << smi.output();
  EXPECT_EQ(Number(fields, "nvml0_total"), 4 * kGiB);
  mine.CloseStdin();
  other.CloseStdin();
  EXPECT_EQ(mine.Finish(), 0) << mine.output();
  EXPECT_EQ(other.Finish(), 0) << other.output();
}

TEST_F(ShimEndToEnd, MigInstancesAreKeyedByTheirMigUuids) {
  WriteConfig("device memory=80GiB context_memory=32MiB mig=3g.40gb,3g.40gb\n");
  const std::vector<std::string> limit = {"CUDA_DEVICE_MEMORY_LIMIT=1GiB"};
  auto with = [&](const std::string& visible) {
    std::vector<std::string> environment = limit;
    environment.push_back("CUDA_VISIBLE_DEVICES=" + visible);
    return Environment(environment);
  };
  // Each process's CUDA device 0 is another MIG instance: each has its own 1 GiB.
  Child second(Client("dlopen", {"hold", "768M", "64M"}), with("1"));
  ASSERT_TRUE(second.WaitFor("ready")) << second.output();
  EXPECT_EQ(Number(Fields(second.output()), "result"), 0) << second.output();
  Child first(Client("dlopen", {"fill", "64M"}), with("0"));
  ASSERT_EQ(first.Finish(), 0) << first.output();
  EXPECT_EQ(Number(Fields(first.output()), "allocated"), 15 * 64 * kMiB)
      << "the other instance's 768 MiB is not this one's\n"
      << first.output();
  second.CloseStdin();
  ASSERT_EQ(second.Finish(), 0) << second.output();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok());
  auto snapshot = (*region)->TakeSnapshot();
  ASSERT_TRUE(snapshot.ok());
  std::vector<std::string> bound;
  for (const auto& device : snapshot->devices) {
    if (!device.uuid.empty()) bound.push_back(device.uuid);
  }
  ASSERT_EQ(bound.size(), 2u) << "one record per MIG instance";
  EXPECT_NE(bound[0], bound[1]);
}

// ---- Many processes, one limit -----------------------------------------------------------------
TEST_F(ShimEndToEnd, ThirtyTwoProcessesNeverPassTheLimitTogether) {
  WriteConfig("device memory=16GiB context_memory=2MiB\n");
  constexpr int kProcesses = 32;
  constexpr int kOperationsEach = 100'000 / kProcesses + 1;  // 10^5 in total
  const uint64_t limit = 512 * kMiB;
  {
    // Start the fake's ledger (and its peak) before the clients do.
    Child warmup(Client("dlopen", {"info"}), Environment({}, /*preload=*/false));
    ASSERT_EQ(warmup.Finish(), 0) << warmup.output();
  }
  auto reader = fakegpu::StateReader::Open(StatePath());
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(reader->ResetPeaks().ok());
  std::vector<std::unique_ptr<Child>> clients;
  for (int i = 0; i < kProcesses; ++i) {
    clients.push_back(std::make_unique<Child>(
        Client("dlopen", {"churn", std::to_string(i + 1), std::to_string(kOperationsEach), "24M",
                          "together"}),
        Environment({"CUDA_DEVICE_MEMORY_LIMIT=512MiB"})));
  }
  // Every context made, then every stake held, then the churn.
  for (auto& client : clients) ASSERT_TRUE(client->WaitFor("ready")) << client->output();
  for (auto& client : clients) ASSERT_TRUE(client->WriteLine("stake"));
  for (auto& client : clients) ASSERT_TRUE(client->WaitFor("staked")) << client->output();
  for (auto& client : clients) client->CloseStdin();
  int refused = 0;
  for (auto& client : clients) {
    ASSERT_EQ(client->Finish(), 0) << client->output();
    refused += static_cast<int>(Number(Fields(client->output()), "refused"));
  }
  auto read = reader->Read();
  ASSERT_TRUE(read.ok()) << read.status().message();
  const fakegpu::StateSnapshot& gpu = *read;
  EXPECT_LE(gpu.devices[0].peak_bytes, limit) << "the driver's own ledger passed the limit";
  EXPECT_GT(gpu.devices[0].peak_bytes, limit - 64 * kMiB) << "the limit was contended for";
  // 32 stakes of 24 MiB, all held before any process goes on, are 768 MiB: at least 11 refused.
  EXPECT_GE(refused, 11) << "demand exceeded the limit, so some allocations must be refused";
  EXPECT_EQ(gpu.devices[0].used_bytes, 0u);
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok());
  ASSERT_TRUE((*region)->Reap(/*force=*/true).ok());
  EXPECT_EQ((*region)->Used(0), 0u) << "0 bytes remain charged after they all exit";
}

TEST_F(ShimEndToEnd, KillingAProcessMidAllocationThousandsOfTimesLeavesNothingBehind) {
  WriteConfig("device memory=16GiB context_memory=2MiB\n");
  std::mt19937 random(7);
  for (int round = 0; round < 1000; ++round) {
    Child victim(Client("dlopen", {"loop", "8M"}),
                 Environment({"CUDA_DEVICE_MEMORY_LIMIT=256MiB"}));
    ASSERT_TRUE(victim.WaitFor("context=0")) << victim.output();
    // Jitter so the kill lands anywhere in the allocate/free loop, the lock held or not.
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
    victim.Kill();
  }
  auto killed_at = std::chrono::steady_clock::now();
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok());
  uint64_t used = UINT64_MAX;
  while (std::chrono::steady_clock::now() - killed_at < std::chrono::seconds(1)) {
    ASSERT_TRUE((*region)->Reap(false).ok());  // what any process touching the region does
    used = (*region)->Used(0);
    if (used == 0) break;
  }
  EXPECT_EQ(used, 0u) << "usage still charged one second after the last kill";
  // No lock stayed held: a new process gets the whole limit (less its context).
  Child survivor(Client("dlopen", {"fill", "2M"}),
                 Environment({"CUDA_DEVICE_MEMORY_LIMIT=256MiB"}));
  ASSERT_EQ(survivor.Finish(), 0) << survivor.output();
  EXPECT_EQ(Number(Fields(survivor.output()), "allocated"), 254 * kMiB);
}

}  // namespace
}  // namespace tessera
