// Fault injection: TESSERA_FAKEGPU_FAULTS makes chosen calls of exported functions fail.
//
// Syntax: comma-separated rules `<function>:<n>=<effect>`. The n-th call (1-based) of the exported
// function with exactly that name fails; `<n>+` fails the n-th and every later call. The effect
// is a CUresult / nvmlReturn_t number, returned without doing the work, or `null`: return success
// without doing the work, the primary output left zero (NULL handle, 0 pointer, empty string).
// When several rules name one function, the first that matches a call wins.
//
// Each library (libcuda.so.1, libnvidia-ml.so.1) holds its own plan and counts its own calls.
// Checking costs one relaxed atomic load while no rule is armed, and one atomic increment on a
// function that has a rule.
#ifndef TESSERA_FAKEGPU_FAULTS_H_
#define TESSERA_FAKEGPU_FAULTS_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::fakegpu {

// Every exported driver and NVML function, in api.def order.
enum class Api : uint16_t {
#define TESSERA_FAKE_CUDA(name) name,
#define TESSERA_FAKE_NVML(name) name,
#include "fakegpu/api.def"
  kCount
};
inline constexpr size_t kApiCount = static_cast<size_t>(Api::kCount);

const char* ApiName(Api api);
std::optional<Api> FindApi(std::string_view name);

struct Fault {
  enum class Kind : uint8_t { kNone, kReturnCode, kNull };
  Kind kind = Kind::kNone;
  int code = 0;
  explicit operator bool() const { return kind != Kind::kNone; }
};

struct FaultRule {
  Api api;
  uint64_t nth;    // 1-based
  bool and_later;  // `<n>+`
  Fault effect;
};

Result<std::vector<FaultRule>> ParseFaultRules(std::string_view spec);

// Replaces the armed rules with `spec`'s (empty disarms) and restarts every count at zero.
// On a parse error the previous rules stay armed.
Status ArmFaults(std::string_view spec);

// Arms TESSERA_FAKEGPU_FAULTS. A bad value is reported once on stderr and remembered:
// FaultConfigurationBroken() then says so and cuInit/nvmlInit refuse to start.
void ArmFaultsFromEnvironment();
bool FaultConfigurationBroken();

namespace internal {
extern std::atomic<bool> faults_armed __attribute__((visibility("hidden")));
Fault CheckFaultSlow(Api api);
}  // namespace internal

// Counts this call of `api` and says whether a rule makes it fail.
inline Fault CheckFault(Api api) {
  if (!internal::faults_armed.load(std::memory_order_relaxed)) return {};
  return internal::CheckFaultSlow(api);
}

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_FAULTS_H_
