#include "fakegpu/faults.h"

#include <array>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "common/log.h"
#include "common/strings.h"
#include "common/units.h"

namespace tessera::fakegpu {
namespace {

constexpr const char* kApiNames[] = {
#define TESSERA_FAKE_CUDA(name) #name,
#define TESSERA_FAKE_NVML(name) #name,
#include "fakegpu/api.def"
};
static_assert(std::size(kApiNames) == kApiCount);

constexpr std::string_view kVariable = "TESSERA_FAKEGPU_FAULTS";
// The largest CUresult and nvmlReturn_t (their UNKNOWN), so every effect is a value of the enums.
constexpr uint64_t kMaxResultCode = 999;
constexpr std::string_view kExpected =
    "expected <function>:<n>=<effect> or <function>:<n>+=<effect>, e.g. cuMemAlloc_v2:1=2 or "
    "nvmlInit_v2:1+=null, where <effect> is a CUresult/nvmlReturn_t number (0 to 999) or null";

// An armed set of rules with its call counters. Immutable once published except for the counts.
struct FaultPlan {
  std::vector<FaultRule> rules;
  std::array<bool, kApiCount> has_rule{};
  std::array<std::atomic<uint64_t>, kApiCount> calls{};
};

std::atomic<FaultPlan*> g_plan{nullptr};
std::atomic<bool> g_broken{false};

// Plans replaced at run time stay allocated: a thread may still be reading the old one.
std::mutex g_retired_mutex;
std::vector<std::unique_ptr<FaultPlan>>& RetiredPlans() {
  static auto* plans = new std::vector<std::unique_ptr<FaultPlan>>();
  return *plans;
}

Status BadRule(std::string_view rule, const std::string& why) {
  return Status::Error(std::string(kVariable) + ": rule \"" + std::string(rule) + "\" " + why +
                       "; " + std::string(kExpected));
}

Result<FaultRule> ParseRule(std::string_view rule) {
  size_t colon = rule.find(':');
  size_t equals = rule.find('=');
  if (colon == std::string_view::npos || equals == std::string_view::npos || equals < colon) {
    return BadRule(rule, "is not of the form <function>:<n>=<effect>");
  }
  std::string_view name = rule.substr(0, colon);
  std::string_view count = rule.substr(colon + 1, equals - colon - 1);
  std::string_view effect = rule.substr(equals + 1);

  std::optional<Api> api = FindApi(name);
  if (!api) {
    return BadRule(
        rule, "names \"" + std::string(name) + "\", which is not a function the fake GPU exports");
  }
  FaultRule parsed{*api, 0, false, {}};
  if (!count.empty() && count.back() == '+') {
    parsed.and_later = true;
    count.remove_suffix(1);
  }
  Result<uint64_t> nth = ParseUnsigned(count, "<n>", 1, UINT64_MAX);
  if (!nth.ok()) return BadRule(rule, "has a bad call number: " + nth.status().message());
  parsed.nth = *nth;
  if (effect == "null") {
    parsed.effect.kind = Fault::Kind::kNull;
  } else {
    Result<uint64_t> code = ParseUnsigned(effect, "<effect>", 0, kMaxResultCode);
    if (!code.ok()) {
      return BadRule(rule, "has a bad effect (a result code or null): " + code.status().message());
    }
    parsed.effect.kind = Fault::Kind::kReturnCode;
    parsed.effect.code = static_cast<int>(*code);
  }
  return parsed;
}

}  // namespace

namespace internal {

std::atomic<bool> faults_armed{false};

Fault CheckFaultSlow(Api api) {
  FaultPlan* plan = g_plan.load(std::memory_order_acquire);
  size_t index = static_cast<size_t>(api);
  if (plan == nullptr || !plan->has_rule[index]) return {};
  uint64_t call = plan->calls[index].fetch_add(1, std::memory_order_relaxed) + 1;
  for (const FaultRule& rule : plan->rules) {
    if (rule.api != api) continue;
    if (call == rule.nth || (rule.and_later && call > rule.nth)) return rule.effect;
  }
  return {};
}

}  // namespace internal

const char* ApiName(Api api) { return kApiNames[static_cast<size_t>(api)]; }

std::optional<Api> FindApi(std::string_view name) {
  for (size_t i = 0; i < kApiCount; ++i) {
    if (name == kApiNames[i]) return static_cast<Api>(i);
  }
  return std::nullopt;
}

Result<std::vector<FaultRule>> ParseFaultRules(std::string_view spec) {
  std::vector<FaultRule> rules;
  if (spec.empty()) return rules;
  for (std::string_view rule : Split(spec, ',')) {
    if (rule.empty()) {
      return Status::Error(std::string(kVariable) + "=\"" + std::string(spec) +
                           "\" has an empty rule (two commas, or a leading or trailing comma)");
    }
    Result<FaultRule> parsed = ParseRule(rule);
    if (!parsed.ok()) return parsed.status();
    rules.push_back(*parsed);
  }
  return rules;
}

Status ArmFaults(std::string_view spec) {
  Result<std::vector<FaultRule>> rules = ParseFaultRules(spec);
  if (!rules.ok()) return rules.status();
  auto plan = std::make_unique<FaultPlan>();
  plan->rules = std::move(rules).value();
  for (const FaultRule& rule : plan->rules) plan->has_rule[static_cast<size_t>(rule.api)] = true;
  bool armed = !plan->rules.empty();

  std::lock_guard<std::mutex> lock(g_retired_mutex);
  FaultPlan* previous = g_plan.exchange(plan.get(), std::memory_order_acq_rel);
  RetiredPlans().push_back(std::move(plan));
  (void)previous;  // kept in RetiredPlans()
  internal::faults_armed.store(armed, std::memory_order_release);
  g_broken.store(false, std::memory_order_relaxed);
  return Status::Ok();
}

void ArmFaultsFromEnvironment() {
  const char* spec = std::getenv(std::string(kVariable).c_str());
  if (spec == nullptr) return;
  Status armed = ArmFaults(spec);
  if (!armed.ok()) {
    log::Write(log::Level::kError, "fakegpu", "%s", armed.message().c_str());
    g_broken.store(true, std::memory_order_relaxed);
  }
}

bool FaultConfigurationBroken() { return g_broken.load(std::memory_order_relaxed); }

}  // namespace tessera::fakegpu
