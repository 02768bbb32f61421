#include "common/cli.h"

#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <string>

namespace tessera {
namespace {

TEST(RunMain, ReturnsWhatTheBodyReturns) {
  EXPECT_EQ(RunMain("tool", [] { return 0; }), 0);
  EXPECT_EQ(RunMain("tool", [] { return 3; }), 3);
}

TEST(RunMain, AnExceptionIsSaidWithTheProgramsNameAndExitsSoftwareError) {
  testing::internal::CaptureStderr();
  int code = RunMain("tessera-node", []() -> int { throw std::runtime_error("the disk is gone"); });
  std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 70);
  EXPECT_EQ(said, "tessera-node: the disk is gone\n");

  testing::internal::CaptureStderr();
  code = RunMain("tessera-node", []() -> int { throw std::bad_alloc(); });
  said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 70);
  EXPECT_EQ(said, "tessera-node: std::bad_alloc\n");
}

TEST(RunMain, AnythingElseThrownIsSaidToo) {
  testing::internal::CaptureStderr();
  int code = RunMain("tool", []() -> int { throw 42; });
  std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 70);
  EXPECT_EQ(said, "tool: an exception that is not a std::exception\n");
}

}  // namespace
}  // namespace tessera
