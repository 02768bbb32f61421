// Entry points: cuInit (where a bad configuration refuses CUDA) and cuGetProcAddress (where the
// runtime finds every other function, so it must hand out hooks too).
#include "shim/shim.h"

using tessera::shim::Shim;

// The driver's entry points, with cuda.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)

TESSERA_EXPORT CUresult cuInit(unsigned int flags) {
  Shim& shim = Shim::Get();
  if (shim.refusing()) return CUDA_ERROR_NOT_PERMITTED;
  CUresult result = shim.cuda().cuInit(flags);
  if (result == CUDA_SUCCESS && !shim.passthrough()) shim.OnDriverInitialized();
  return result;
}

TESSERA_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int cudaVersion,
                                         cuuint64_t flags) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuGetProcAddress(symbol, pfn, cudaVersion, flags);
  if (result == CUDA_SUCCESS && symbol != nullptr && pfn != nullptr && *pfn != nullptr) {
    *pfn = shim.HookForProcAddress(symbol, *pfn, cudaVersion, flags);
  }
  return result;
}

TESSERA_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion,
                                            cuuint64_t flags,
                                            CUdriverProcAddressQueryResult* symbolStatus) {
  Shim& shim = Shim::Get();
  CUresult result = shim.cuda().cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, symbolStatus);
  if (result == CUDA_SUCCESS && symbol != nullptr && pfn != nullptr && *pfn != nullptr) {
    *pfn = shim.HookForProcAddress(symbol, *pfn, cudaVersion, flags);
  }
  return result;
}
// NOLINTEND(readability-identifier-naming)
