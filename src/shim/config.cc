#include "shim/config.h"

#include <unistd.h>

#include <map>

#include "common/units.h"

extern char** environ;

namespace tessera::shim {
namespace {

constexpr std::string_view kMemoryLimit = "CUDA_DEVICE_MEMORY_LIMIT";
constexpr std::string_view kSmLimit = "CUDA_DEVICE_SM_LIMIT";
constexpr std::string_view kRegion = "CUDA_DEVICE_MEMORY_SHARED_CACHE";
constexpr std::string_view kDisable = "CUDA_DISABLE_CONTROL";
constexpr std::string_view kWorkConserving = "TESSERA_SM_WORK_CONSERVING";
constexpr std::string_view kPriority = "CUDA_TASK_PRIORITY";
constexpr std::string_view kNodeBoard = "TESSERA_NODE_BOARD";

// "true"/"1" or "false"/"0"; anything else is an error naming the variable.
void ParseFlag(std::string_view name, std::string_view value, bool* flag,
               std::vector<std::string>& errors) {
  if (value == "true" || value == "1") {
    *flag = true;
  } else if (value == "false" || value == "0") {
    *flag = false;
  } else {
    errors.push_back(std::string(name) + "=\"" + std::string(value) + "\": expected true or false");
  }
}

// For "PREFIX" or "PREFIX_<i>": the device index (-1 for all devices), or nullopt with an error
// when the suffix is not a device index.
std::optional<int> DeviceSuffix(std::string_view name, std::string_view prefix,
                                std::vector<std::string>& errors) {
  if (name == prefix) return -1;
  std::string_view suffix = name.substr(prefix.size() + 1);
  Result<uint64_t> index =
      ParseUnsigned(suffix, name, 0, static_cast<uint64_t>(region::kMaxDevices - 1));
  if (!index.ok()) {
    errors.push_back(std::string(name) + ": the suffix after " + std::string(prefix) +
                     "_ must be a device index from 0 to " +
                     std::to_string(region::kMaxDevices - 1));
    return std::nullopt;
  }
  return static_cast<int>(*index);
}

bool HasPrefix(std::string_view name, std::string_view prefix) {
  return name == prefix ||
         (name.size() > prefix.size() + 1 && name.substr(0, prefix.size()) == prefix &&
          name[prefix.size()] == '_');
}

}  // namespace

Config ParseConfig(const std::vector<std::string_view>& environment) {
  Config config;
  // Per-device values override the all-devices value whatever their order in the environment.
  std::map<int, uint64_t> memory;
  std::map<int, uint32_t> sm;
  for (std::string_view entry : environment) {
    size_t equals = entry.find('=');
    if (equals == std::string_view::npos) continue;
    std::string_view name = entry.substr(0, equals);
    std::string_view value = entry.substr(equals + 1);
    if (HasPrefix(name, kMemoryLimit)) {
      std::optional<int> device = DeviceSuffix(name, kMemoryLimit, config.errors);
      if (!device) continue;
      Result<uint64_t> bytes = ParseBytes(value, name);
      if (!bytes.ok()) {
        config.errors.push_back(bytes.status().message());
      } else if (*bytes == 0) {
        config.errors.push_back(std::string(name) +
                                "=\"0\": a limit of zero bytes admits nothing; unset the "
                                "variable for no limit");
      } else {
        memory[*device] = *bytes;
      }
    } else if (HasPrefix(name, kSmLimit)) {
      std::optional<int> device = DeviceSuffix(name, kSmLimit, config.errors);
      if (!device) continue;
      Result<int> percent = ParsePercent(value, name);
      if (!percent.ok()) {
        config.errors.push_back(percent.status().message());
      } else {
        sm[*device] = static_cast<uint32_t>(*percent);
      }
    } else if (name == kRegion) {
      if (value.empty()) {
        config.errors.push_back(std::string(kRegion) +
                                "=\"\": is empty; expected the path of the region file");
      } else {
        config.region_path = std::string(value);
      }
    } else if (name == kDisable) {
      ParseFlag(name, value, &config.disabled, config.errors);
    } else if (name == kWorkConserving) {
      ParseFlag(name, value, &config.work_conserving, config.errors);
    } else if (name == kPriority) {
      if (value == "0" || value == "1") {
        config.task_priority = value[0] - '0';
      } else {
        config.errors.push_back(std::string(kPriority) + "=\"" + std::string(value) +
                                "\": expected 0 (high) or 1 (low)");
      }
    } else if (name == kNodeBoard) {
      if (value.empty()) {
        config.errors.push_back(std::string(kNodeBoard) +
                                "=\"\": is empty; expected the path of the node board file");
      } else {
        config.node_board_path = std::string(value);
      }
    }
  }
  for (int device = 0; device < region::kMaxDevices; ++device) {
    auto specific = memory.find(device);
    auto all = memory.find(-1);
    if (specific != memory.end()) {
      config.limits.devices[device].memory_bytes = specific->second;
    } else if (all != memory.end()) {
      config.limits.devices[device].memory_bytes = all->second;
    }
    auto sm_specific = sm.find(device);
    auto sm_all = sm.find(-1);
    if (sm_specific != sm.end()) {
      config.limits.devices[device].sm_percent = sm_specific->second;
    } else if (sm_all != sm.end()) {
      config.limits.devices[device].sm_percent = sm_all->second;
    }
    if (config.limits.devices[device].memory_bytes != 0 ||
        config.limits.devices[device].sm_percent != 0) {
      config.any_limit = true;
    }
  }
  return config;
}

Config ReadConfigFromEnvironment() {
  std::vector<std::string_view> entries;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    entries.emplace_back(*entry);
  }
  return ParseConfig(entries);
}

}  // namespace tessera::shim
