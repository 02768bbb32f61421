// cuGetProcAddress: answers from cuda/proc_address.def as a driver of the configured version does
// (a row newer than the driver is not there). The pointers handed out
// are this library's own functions: the library is linked with -Bsymbolic, so `&cuMemAlloc_v2`
// here binds inside it even when an LD_PRELOADed shim exports a cuMemAlloc_v2 of its own.
#include "fakegpu/proc_address.h"

#include <cstring>

#include "cuda/driver_api.h"
#include "fakegpu/config.h"
#include "fakegpu/driver.h"
#include "fakegpu/export.h"
#include "fakegpu/faults.h"

namespace {

struct ProcRow {
  const char* base;
  const char* symbol;
  int version;
  bool per_thread_default_stream;
  void* address;
};

// Taking each symbol's address also makes a row naming an undeclared function fail to compile.
const ProcRow kRows[] = {
#define TESSERA_PROC(base, symbol, version, ptds) \
  {#base, #symbol, version, (ptds) != 0, reinterpret_cast<void*>(&symbol)},
#include "cuda/proc_address.def"
#undef TESSERA_PROC
};

CUresult Lookup(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                CUdriverProcAddressQueryResult* status) {
  auto report = [status](CUdriverProcAddressQueryResult result) {
    if (status != nullptr) *status = result;
  };
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  constexpr cuuint64_t kKnownFlags =
      CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
  if ((flags & ~kKnownFlags) != 0) return CUDA_ERROR_INVALID_VALUE;
  bool want_ptds = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;

  // The newest row old enough for the caller and the driver, the per-thread-stream row winning
  // when asked for.
  const int driver_version = tessera::fakegpu::CurrentDriverVersion();
  const ProcRow* best = nullptr;
  const ProcRow* best_ptds = nullptr;
  bool known = false;
  for (const ProcRow& row : kRows) {
    if (std::strcmp(row.base, symbol) != 0) continue;
    known = true;
    if (row.version > cuda_version || row.version > driver_version) continue;
    const ProcRow*& slot = row.per_thread_default_stream ? best_ptds : best;
    if (slot == nullptr || row.version > slot->version) slot = &row;
  }
  const ProcRow* chosen = want_ptds && best_ptds != nullptr ? best_ptds : best;
  if (chosen == nullptr) {
    *pfn = nullptr;
    report(known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                 : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
    return CUDA_ERROR_NOT_FOUND;
  }
  *pfn = chosen->address;
  report(CU_GET_PROC_ADDRESS_SUCCESS);
  return CUDA_SUCCESS;
}

CUresult Faulted(tessera::fakegpu::Fault fault, void** pfn) {
  if (fault.kind != tessera::fakegpu::Fault::Kind::kNull) return static_cast<CUresult>(fault.code);
  if (pfn != nullptr) *pfn = nullptr;
  return CUDA_SUCCESS;
}

}  // namespace

namespace tessera::fakegpu {

int IntroducedIn(const char* symbol) {
  int introduced = 0;
  for (const ProcRow& row : kRows) {
    if (std::strcmp(row.symbol, symbol) != 0) continue;
    if (introduced == 0 || row.version < introduced) introduced = row.version;
  }
  return introduced;
}

int CurrentDriverVersion() {
  return Driver::Ready() == CUDA_SUCCESS ? Driver::Get().DriverVersion()
                                         : ConfiguredDriverVersion();
}

bool DriverLacks(int introduced) { return introduced > CurrentDriverVersion(); }

}  // namespace tessera::fakegpu

// The driver's entry points, with cuda.h's names for their parameters.
// NOLINTBEGIN(readability-identifier-naming)

TESSERA_FAKE_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int cudaVersion,
                                              cuuint64_t flags) {
  using tessera::fakegpu::Api;
  if (auto fault = tessera::fakegpu::CheckFault(Api::cuGetProcAddress)) return Faulted(fault, pfn);
  return Lookup(symbol, pfn, cudaVersion, flags, nullptr);
}

TESSERA_FAKE_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion,
                                                 cuuint64_t flags,
                                                 CUdriverProcAddressQueryResult* symbolStatus) {
  using tessera::fakegpu::Api;
  if (auto fault = tessera::fakegpu::CheckFault(Api::cuGetProcAddress_v2)) {
    return Faulted(fault, pfn);
  }
  return Lookup(symbol, pfn, cudaVersion, flags, symbolStatus);
}
// NOLINTEND(readability-identifier-naming)
