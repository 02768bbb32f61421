// abi.def against the CUDA toolkit's cuda.h. __CUDA_API_VERSION_INTERNAL makes cuda.h declare
// every exported symbol under its own name (cuMemAlloc and cuMemAlloc_v2 both) instead of
// defining the unversioned names as macros for the newest version, as the project's header does.
#define __CUDA_API_VERSION_INTERNAL
#include <cuda.h>

#include "tests/cuda/abi_facts.h"

namespace tessera::cuda_abi {

std::vector<Fact> ToolkitFacts() {
  std::vector<Fact> facts;
#include "tests/cuda/abi.def"
  return facts;
}

}  // namespace tessera::cuda_abi
