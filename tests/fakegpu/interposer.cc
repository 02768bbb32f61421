// Stands in for an LD_PRELOADed shim: exports cuMemAlloc_v2 ahead of the fake libcuda.so.1, so
// proc_address_test can check that the fake never hands out or calls this one.
#include "cuda/driver_api.h"

extern "C" __attribute__((visibility("default"))) CUresult cuMemAlloc_v2(CUdeviceptr* dptr,
                                                                         size_t bytesize) {
  (void)dptr, (void)bytesize;
  return CUDA_ERROR_NOT_PERMITTED;
}
