// src/cuda/driver_api.h has the ABI of the CUDA driver: every size, alignment, field offset,
// enumerator value and function type of abi.def is the toolkit's cuda.h's.
#include <gtest/gtest.h>

#include <map>

#include "tests/cuda/abi_facts.h"

namespace tessera::cuda_abi {
namespace {

TEST(CudaAbi, EveryDeclarationIsTheToolkits) {
  std::vector<Fact> ours = OurFacts();
  std::vector<Fact> toolkit = ToolkitFacts();
  ASSERT_EQ(ours.size(), toolkit.size());
  ASSERT_GT(ours.size(), 200u);
  for (size_t i = 0; i < ours.size(); ++i) {
    ASSERT_EQ(ours[i].name, toolkit[i].name);
    EXPECT_EQ(ours[i].value, toolkit[i].value) << ours[i].name;
  }
}

}  // namespace
}  // namespace tessera::cuda_abi
