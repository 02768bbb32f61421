// The device configuration parser (TESSERA_FAKEGPU_CONFIG's file format).
#include "fakegpu/config.h"

#include <gtest/gtest.h>

namespace tessera::fakegpu {
namespace {

std::string ErrorOf(std::string_view text) {
  Result<std::vector<DeviceSpec>> parsed = ParseDeviceConfig(text, "devices.conf");
  return parsed.ok() ? "(parsed)" : parsed.status().message();
}

TEST(FakeGpuConfig, EveryKeyIsOptional) {
  Result<std::vector<DeviceSpec>> parsed = ParseDeviceConfig("device\ndevice\n", "x");
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].name, "Tessera Fake H100");
  EXPECT_EQ((*parsed)[0].memory_bytes, 80ull << 30);
  EXPECT_EQ((*parsed)[0].multiprocessors, 132u);
  EXPECT_EQ((*parsed)[0].context_memory_bytes, 256ull << 20);
  EXPECT_EQ((*parsed)[1].uuid, DefaultUuid(1));
  EXPECT_NE((*parsed)[0].uuid, (*parsed)[1].uuid);
}

TEST(FakeGpuConfig, ParsesQuotedNamesSizesAndComments) {
  Result<std::vector<DeviceSpec>> parsed = ParseDeviceConfig(
      "  # comment line\n"
      "device name=\"A # not a comment\" memory=512m sms=8 context_memory=0 # trailing\r\n"
      "\t\n",
      "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ((*parsed)[0].name, "A # not a comment");
  EXPECT_EQ((*parsed)[0].memory_bytes, 512ull << 20);
  EXPECT_EQ((*parsed)[0].multiprocessors, 8u);
  EXPECT_EQ((*parsed)[0].context_memory_bytes, 0u);
}

TEST(FakeGpuConfig, UuidsRoundTripThroughTheirText) {
  Result<std::vector<DeviceSpec>> parsed =
      ParseDeviceConfig("device uuid=GPU-0123abcd-4567-89ab-cdef-0123456789AB\n", "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(FormatUuid((*parsed)[0].uuid), "GPU-0123abcd-4567-89ab-cdef-0123456789ab");
  EXPECT_EQ(FormatUuid(DefaultUuid(0)).size(), 40u);
}

TEST(FakeGpuConfig, AnEmptyFileMeansNoDevices) {
  Result<std::vector<DeviceSpec>> parsed = ParseDeviceConfig("# nothing here\n", "x");
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
}

TEST(FakeGpuConfig, ErrorsNameTheFileTheLineAndTheProblem) {
  EXPECT_EQ(ErrorOf("device\ngpu memory=1g\n"),
            "devices.conf:2: expected a line starting with \"device\" or \"driver\", found "
            "\"gpu\"");
  EXPECT_NE(ErrorOf("device memory=12XB\n").find("devices.conf:1: memory=\"12XB\""),
            std::string::npos);
  EXPECT_NE(ErrorOf("device colour=red\n").find("unknown key \"colour\""), std::string::npos);
  EXPECT_NE(ErrorOf("device sms=0\n").find("sms=\"0\": is out of range"), std::string::npos);
  EXPECT_NE(ErrorOf("device name=\"open\n").find("no closing quote"), std::string::npos);
  EXPECT_NE(ErrorOf("device memory=1g memory=2g\n").find("memory is given twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf("device uuid=GPU-1234\n").find("not a GPU UUID"), std::string::npos);
  EXPECT_NE(ErrorOf("device memory=1MiB\n").find("out of range"), std::string::npos);
  EXPECT_NE(ErrorOf("device memory=1g context_memory=2g\n").find("larger than"), std::string::npos);
  EXPECT_NE(ErrorOf("device memory\n").find("expected key=value"), std::string::npos);
  EXPECT_NE(ErrorOf("device name=\"a\"b\n").find("right after its value"), std::string::npos);
  EXPECT_NE(ErrorOf("devicememory=1g\n").find("expected a line starting with"), std::string::npos);
  EXPECT_NE(ErrorOf(std::string("device name=\"a\x01\"\n")).find("not printable"),
            std::string::npos);
}

TEST(FakeGpuConfig, ProcessMemoryCanBeReportedAsNotAvailable) {
  Result<std::vector<DeviceSpec>> parsed =
      ParseDeviceConfig("device process_memory=unavailable\ndevice\n", "devices.conf");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_FALSE((*parsed)[0].process_memory_available);
  EXPECT_TRUE((*parsed)[1].process_memory_available);
  EXPECT_NE(ErrorOf("device process_memory=maybe\n").find("is not available or unavailable"),
            std::string::npos);
}

TEST(FakeGpuConfig, TheDriverLineSetsTheVersionOnce) {
  Result<NodeSpec> node = ParseNodeConfig("driver version=12020\ndevice\n", "devices.conf");
  ASSERT_TRUE(node.ok()) << node.status().message();
  EXPECT_EQ(node->driver_version, 12020);
  EXPECT_EQ(node->devices.size(), 1u);
  Result<NodeSpec> unset = ParseNodeConfig("device\n", "devices.conf");
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->driver_version, kNewestDriverVersion);
  auto error = [](const std::string& text) {
    Result<NodeSpec> parsed = ParseNodeConfig(text, "devices.conf");
    return parsed.ok() ? std::string("(parsed)") : parsed.status().message();
  };
  EXPECT_NE(error("driver version=12020\ndriver version=12080\n")
                .find("devices.conf:2: a second driver line"),
            std::string::npos);
  EXPECT_NE(error("driver version=10020\n").find("out of range"), std::string::npos);
  EXPECT_NE(error("driver version=13010\n").find("out of range"), std::string::npos);
  EXPECT_NE(error("driver version=12.2\n").find("devices.conf:1:"), std::string::npos);
  EXPECT_NE(error("driver 12020\n").find("expected driver version=<11040 to 13000>"),
            std::string::npos);
  EXPECT_NE(error("driver version=12020 extra\n").find("nothing after it"), std::string::npos);
}

TEST(FakeGpuConfig, RejectsDuplicateUuidsAndTooManyDevices) {
  EXPECT_NE(ErrorOf("device uuid=GPU-00000000-0000-0000-0000-000000000001\n"
                    "device uuid=GPU-00000000-0000-0000-0000-000000000001\n")
                .find("devices.conf:2: uuid GPU-00000000-0000-0000-0000-000000000001 is also "
                      "device 0's"),
            std::string::npos);
  std::string many;
  for (int i = 0; i < kMaxDevices + 1; ++i) many += "device\n";
  EXPECT_NE(ErrorOf(many).find("devices.conf:17: more than 16 devices"), std::string::npos);
}

}  // namespace
}  // namespace tessera::fakegpu
