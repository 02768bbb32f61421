// The TESSERA_FAKEGPU_FAULTS rule parser.
#include "fakegpu/faults.h"

#include <gtest/gtest.h>

namespace tessera::fakegpu {
namespace {

std::string ErrorOf(std::string_view spec) {
  Result<std::vector<FaultRule>> parsed = ParseFaultRules(spec);
  return parsed.ok() ? "(parsed)" : parsed.status().message();
}

TEST(FakeGpuFaultRules, ParsesCountsRepeatsAndEffects) {
  Result<std::vector<FaultRule>> parsed =
      ParseFaultRules("cuMemAlloc_v2:2=2,cuInit:1+=null,nvmlInit_v2:3+=9");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  ASSERT_EQ(parsed->size(), 3u);
  EXPECT_EQ((*parsed)[0].api, Api::cuMemAlloc_v2);
  EXPECT_EQ((*parsed)[0].nth, 2u);
  EXPECT_FALSE((*parsed)[0].and_later);
  EXPECT_EQ((*parsed)[0].effect.kind, Fault::Kind::kReturnCode);
  EXPECT_EQ((*parsed)[0].effect.code, 2);
  EXPECT_TRUE((*parsed)[1].and_later);
  EXPECT_EQ((*parsed)[1].effect.kind, Fault::Kind::kNull);
  EXPECT_EQ((*parsed)[2].api, Api::nvmlInit_v2);
  EXPECT_TRUE(ParseFaultRules("").ok());
}

TEST(FakeGpuFaultRules, ErrorsNameTheVariableAndTheBadRule) {
  std::string unknown = ErrorOf("cuMemAlloc_v2:1=2,cuMemAlloc:1=2");
  EXPECT_NE(unknown.find("TESSERA_FAKEGPU_FAULTS: rule \"cuMemAlloc:1=2\""), std::string::npos)
      << unknown;
  EXPECT_NE(unknown.find("not a function the fake GPU exports"), std::string::npos);
  EXPECT_NE(ErrorOf("cuInit:0=1").find("rule \"cuInit:0=1\" has a bad call number"),
            std::string::npos);
  EXPECT_NE(ErrorOf("cuInit:1=oops").find("has a bad effect"), std::string::npos);
  EXPECT_NE(ErrorOf("cuInit:1=1000").find("has a bad effect"), std::string::npos);
  EXPECT_NE(ErrorOf("cuInit=1").find("is not of the form"), std::string::npos);
  EXPECT_NE(ErrorOf("cuInit:1=1,,cuInit:2=1").find("empty rule"), std::string::npos);
}

TEST(FakeGpuFaultRules, ArmedRulesCountCallsPerFunction) {
  ASSERT_TRUE(ArmFaults("cuMemFree_v2:2=1,cuMemFree_v2:4+=null").ok());
  EXPECT_FALSE(CheckFault(Api::cuMemFree_v2));
  EXPECT_EQ(CheckFault(Api::cuMemFree_v2).code, 1);
  EXPECT_FALSE(CheckFault(Api::cuMemFree_v2));
  EXPECT_EQ(CheckFault(Api::cuMemFree_v2).kind, Fault::Kind::kNull);
  EXPECT_EQ(CheckFault(Api::cuMemFree_v2).kind, Fault::Kind::kNull);
  EXPECT_FALSE(CheckFault(Api::cuMemAlloc_v2));
  EXPECT_FALSE(ArmFaults("bogus").ok());
  EXPECT_EQ(CheckFault(Api::cuMemFree_v2).kind, Fault::Kind::kNull);  // old rules kept
  ASSERT_TRUE(ArmFaults("").ok());
  EXPECT_FALSE(CheckFault(Api::cuMemFree_v2));
}

}  // namespace
}  // namespace tessera::fakegpu
