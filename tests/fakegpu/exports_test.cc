// Each fake library exports exactly its rows of src/fakegpu/api.def: nothing missing, nothing
// else (no C++ runtime, no internals), as `nm -D` sees it.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

namespace {

std::set<std::string> DefinedDynamicSymbols(const std::string& library) {
  std::set<std::string> symbols;
  std::string command = "nm -D --defined-only '" + library + "'";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return symbols;
  char line[512];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    char type = 0;
    char name[400];
    if (std::sscanf(line, "%*s %c %399s", &type, name) == 2) symbols.insert(name);
  }
  pclose(pipe);
  return symbols;
}

TEST(FakeGpuExports, LibcudaExportsExactlyTheDriverApiAndItsControlFunctions) {
  std::set<std::string> expected = {
#define TESSERA_FAKE_CUDA(name) #name,
#define TESSERA_FAKE_CUDA_CONTROL(name) #name,
#include "fakegpu/api.def"
  };
  EXPECT_EQ(DefinedDynamicSymbols(TESSERA_FAKEGPU_LIBCUDA), expected);
}

TEST(FakeGpuExports, LibnvidiaMlExportsExactlyNvmlAndItsControlFunctions) {
  std::set<std::string> expected = {
#define TESSERA_FAKE_NVML(name) #name,
#define TESSERA_FAKE_NVML_CONTROL(name) #name,
#include "fakegpu/api.def"
  };
  EXPECT_EQ(DefinedDynamicSymbols(TESSERA_FAKEGPU_LIBNVML), expected);
}

}  // namespace
