// NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES, as fakegpu/visible_devices.h reads them.
#include "fakegpu/visible_devices.h"

#include <gtest/gtest.h>

#include <cctype>

namespace tessera::fakegpu {
namespace {

// GPU 0 whole, GPU 1 in MIG mode with four MIG devices, GPU 2 whole.
class FakeGpuVisibleDevices : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::vector<DeviceSpec>> parsed =
        ParseDeviceConfig("device\ndevice mig=3g.40gb,2g.20gb,1g.10gb,1g.10gb\ndevice\n", "x");
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    node_ = *parsed;
  }

  // "gpu" or "gpu:mig" per visible GPU, e.g. "0 1:0,2 2".
  std::string Visible(const char* value) {
    Result<std::vector<VisibleGpu>> visible = SelectVisibleGpus(node_, value);
    if (!visible.ok()) return "error: " + visible.status().message();
    std::string text;
    for (const VisibleGpu& gpu : *visible) {
      if (!text.empty()) text += ' ';
      text += std::to_string(gpu.gpu);
      if (!node_[static_cast<size_t>(gpu.gpu)].mig_enabled()) continue;
      text += ':';
      for (size_t i = 0; i < gpu.mig.size(); ++i) {
        text += (i == 0 ? "" : ",") + std::to_string(gpu.mig[i]);
      }
    }
    return text;
  }

  // What CUDA enumerates: "gpu" or "gpu:mig" per device, in order.
  std::string Cuda(const char* nvidia_visible_devices, const char* cuda_visible_devices) {
    Result<std::vector<VisibleGpu>> visible = SelectVisibleGpus(node_, nvidia_visible_devices);
    if (!visible.ok()) return "error: " + visible.status().message();
    std::string text;
    for (DeviceRef device : SelectCudaDevices(node_, *visible, cuda_visible_devices)) {
      if (!text.empty()) text += ' ';
      text += std::to_string(device.gpu);
      if (device.mig >= 0) text += ":" + std::to_string(device.mig);
    }
    return text;
  }

  std::string Gpu(int gpu) const { return FormatUuid(node_[static_cast<size_t>(gpu)].uuid); }
  std::string Mig(int gpu, int mig) const {
    return FormatMigUuid(node_[static_cast<size_t>(gpu)].mig[static_cast<size_t>(mig)].uuid);
  }

  std::vector<DeviceSpec> node_;
};

TEST_F(FakeGpuVisibleDevices, UnsetOrAllIsEveryDevice) {
  EXPECT_EQ(Visible(nullptr), "0 1:0,1,2,3 2");
  EXPECT_EQ(Visible("all"), "0 1:0,1,2,3 2");
}

TEST_F(FakeGpuVisibleDevices, NoneVoidAndEmptyAreNoDevice) {
  EXPECT_EQ(Visible("none"), "");
  EXPECT_EQ(Visible("void"), "");
  EXPECT_EQ(Visible(""), "");
  EXPECT_EQ(Cuda("none", nullptr), "");
}

TEST_F(FakeGpuVisibleDevices, IndicesAndUuidsChooseGpusInTheNodesOrder) {
  EXPECT_EQ(Visible("2"), "2");
  EXPECT_EQ(Visible("2,0"), "0 2");
  EXPECT_EQ(Visible("0,0"), "0");
  EXPECT_EQ(Visible(Gpu(2).c_str()), "2");
  std::string upper = Gpu(0);
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_EQ(Visible(upper.c_str()), "0") << "UUID hex digits in either case";
  EXPECT_EQ(Visible(("1," + Gpu(0)).c_str()), "0 1:0,1,2,3")
      << "a whole GPU brings its MIG devices";
}

TEST_F(FakeGpuVisibleDevices, AMigDeviceShowsItsGpuWithJustThatMigDevice) {
  EXPECT_EQ(Visible(Mig(1, 2).c_str()), "1:2");
  EXPECT_EQ(Visible("1:3,1:0"), "1:0,3");
  EXPECT_EQ(Visible(("0," + Mig(1, 1)).c_str()), "0 1:1");
}

TEST_F(FakeGpuVisibleDevices, CudaEnumeratesMigDevicesInPlaceOfTheirGpu) {
  EXPECT_EQ(Cuda(nullptr, nullptr), "0 1:0 1:1 1:2 1:3 2");
  EXPECT_EQ(Cuda(Mig(1, 2).c_str(), nullptr), "1:2");
  EXPECT_EQ(Cuda("2,1:1", nullptr), "1:1 2");
}

TEST_F(FakeGpuVisibleDevices, CudaVisibleDevicesChoosesAmongWhatIsLeftInItsOwnOrder) {
  EXPECT_EQ(Cuda("0,2", "1"), "2");
  EXPECT_EQ(Cuda("0,2", "1,0"), "2 0");
  EXPECT_EQ(Cuda(nullptr, Mig(1, 3).c_str()), "1:3");
  EXPECT_EQ(Cuda(nullptr, (Gpu(2) + "," + Mig(1, 0)).c_str()), "2 1:0");
  EXPECT_EQ(Cuda(nullptr, Gpu(2).substr(0, 10).c_str()), "2") << "a unique UUID prefix";
  EXPECT_EQ(Cuda(nullptr, ""), "");
}

TEST_F(FakeGpuVisibleDevices, CudaStopsAtTheFirstEntryThatNamesNoDevice) {
  EXPECT_EQ(Cuda("0,2", "1,5,0"), "2");
  EXPECT_EQ(Cuda(nullptr, "0,-1,2"), "0");
  EXPECT_EQ(Cuda(nullptr, "x,0"), "");
  EXPECT_EQ(Cuda(nullptr, "0,0,5"), "0") << "a repeated device ends the list too";
  EXPECT_EQ(Cuda(nullptr, Gpu(1).c_str()), "") << "a GPU in MIG mode is not a CUDA device";
  EXPECT_EQ(Cuda("0", "1"), "") << "indices count what NVIDIA_VISIBLE_DEVICES left";
}

TEST_F(FakeGpuVisibleDevices, MalformedValuesAreErrorsNamingTheVariableAndTheEntry) {
  EXPECT_EQ(Visible("0,gpu0"),
            "error: NVIDIA_VISIBLE_DEVICES=\"0,gpu0\": \"gpu0\" is not a device index, GPU UUID, "
            "MIG UUID or <gpu>:<mig>; expected all, none, void, or a comma-separated list of "
            "device indices, GPU UUIDs, MIG UUIDs and <gpu>:<mig> indices");
  EXPECT_EQ(Visible("3"),
            "error: NVIDIA_VISIBLE_DEVICES=\"3\": \"3\" names GPU 3, but the node has 3 GPU(s) "
            "(0 to 2)");
  EXPECT_NE(Visible("0,,1").find("NVIDIA_VISIBLE_DEVICES=\"0,,1\" has an empty entry"),
            std::string::npos);
  EXPECT_NE(Visible("0,").find("has an empty entry"), std::string::npos);
  EXPECT_NE(Visible("all,0").find("\"all\" cannot be combined"), std::string::npos);
  EXPECT_NE(Visible("0:0").find("\"0:0\" names a MIG device of GPU 0, which is not in MIG mode"),
            std::string::npos);
  EXPECT_NE(Visible("1:4").find("which has 4 MIG device(s) (0 to 3)"), std::string::npos);
  EXPECT_NE(Visible("GPU-00000000-0000-0000-0000-000000000000")
                .find("is not the UUID of a GPU of this node"),
            std::string::npos);
  EXPECT_NE(Visible("MIG-00000000-0000-0000-0000-000000000000")
                .find("is not the UUID of a MIG device of this node"),
            std::string::npos);
  EXPECT_NE(Visible(" 0").find("\" 0\" is not a device index"), std::string::npos);
}

}  // namespace
}  // namespace tessera::fakegpu
