// One side of the ABI comparison in abi_test.cc: every row of abi.def as a name and a value
// (sizes, alignments, offsets, enumerator values, and each function's type as the compiler
// mangles it), computed once against src/cuda/driver_api.h (abi_ours.cc) and once against the
// CUDA toolkit's cuda.h (abi_toolkit.cc). The two cannot share a file: they declare the same names.
#ifndef TESSERA_TESTS_CUDA_ABI_FACTS_H_
#define TESSERA_TESTS_CUDA_ABI_FACTS_H_

#include <cstddef>
#include <string>
#include <typeinfo>
#include <vector>

namespace tessera::cuda_abi {

struct Fact {
  std::string name;
  std::string value;
};

std::vector<Fact> OurFacts();
std::vector<Fact> ToolkitFacts();

}  // namespace tessera::cuda_abi

// Expands abi.def into `facts` (a std::vector<Fact>) in the including file's declarations.
#define TESSERA_ABI_TYPE(type)                                      \
  facts.push_back({"sizeof " #type, std::to_string(sizeof(type))}); \
  facts.push_back({"alignof " #type, std::to_string(alignof(type))});
#define TESSERA_ABI_FIELD(type, field)                                                    \
  facts.push_back({"offsetof " #type "." #field, std::to_string(offsetof(type, field))}); \
  facts.push_back(                                                                        \
      {"sizeof " #type "." #field, std::to_string(sizeof(static_cast<type*>(nullptr)->field))});
#define TESSERA_ABI_ENUMERATOR(name) \
  facts.push_back({#name, std::to_string(static_cast<long long>(name))});
#define TESSERA_ABI_FUNCTION(function) facts.push_back({#function, typeid(&::function).name()});

#endif  // TESSERA_TESTS_CUDA_ABI_FACTS_H_
