// For the test clients that reach the driver through dlopen: a function looked up by name, or
// the program exits with 3 saying which was missing.
#ifndef TESSERA_TESTS_SUPPORT_FIND_SYMBOL_H_
#define TESSERA_TESTS_SUPPORT_FIND_SYMBOL_H_

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace tessera::testing {

template <typename Function>
Function FindSymbol(void* library, const char* name) {
  void* found = library != nullptr ? dlsym(library, name) : nullptr;
  if (found == nullptr) {
    std::fprintf(stderr, "client: %s not found\n", name);
    std::exit(3);
  }
  return reinterpret_cast<Function>(found);
}

}  // namespace tessera::testing

// FIND(library, cuInit): cuInit from `library`, typed as the driver API declares it.
#define FIND(library, name) ::tessera::testing::FindSymbol<decltype(&name)>(library, #name)

#endif  // TESSERA_TESTS_SUPPORT_FIND_SYMBOL_H_
