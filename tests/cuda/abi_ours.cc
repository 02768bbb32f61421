// abi.def against the project's declarations.
#include "cuda/driver_api.h"
#include "tests/cuda/abi_facts.h"

namespace tessera::cuda_abi {

std::vector<Fact> OurFacts() {
  std::vector<Fact> facts;
#include "tests/cuda/abi.def"
  return facts;
}

}  // namespace tessera::cuda_abi
