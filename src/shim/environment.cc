#include "shim/environment.h"

#include "common/units.h"

namespace tessera::shim {

std::string DeviceVariable(std::string_view variable, int device) {
  return std::string(variable) + "_" + std::to_string(device);
}

std::vector<std::string> LimitVariableNames() {
  std::vector<std::string> names;
  for (std::string_view variable : {kMemoryLimitVariable, kSmLimitVariable}) {
    names.emplace_back(variable);
    for (int device = 0; device < region::kMaxDevices; ++device) {
      names.push_back(DeviceVariable(variable, device));
    }
  }
  return names;
}

std::vector<std::string> LimitAssignments(const region::RegionConfig& limits) {
  std::vector<std::string> assignments;
  for (int device = 0; device < region::kMaxDevices; ++device) {
    const region::DeviceLimits& limit = limits.devices[device];
    if (limit.memory_bytes != 0) {
      const std::string value = limit.memory_bytes % kMiB == 0
                                    ? std::to_string(limit.memory_bytes / kMiB) + "m"
                                    : std::to_string(limit.memory_bytes);
      assignments.push_back(DeviceVariable(kMemoryLimitVariable, device) + "=" + value);
    }
    if (limit.sm_percent != 0) {
      assignments.push_back(DeviceVariable(kSmLimitVariable, device) + "=" +
                            std::to_string(limit.sm_percent));
    }
  }
  return assignments;
}

std::vector<std::string> DeviceUuidAssignments(const std::vector<std::string>& device_uuids) {
  std::vector<std::string> assignments;
  assignments.reserve(device_uuids.size());
  for (size_t i = 0; i < device_uuids.size(); ++i) {
    assignments.push_back(DeviceVariable(kDeviceUuidVariable, static_cast<int>(i)) + "=" +
                          device_uuids[i]);
  }
  return assignments;
}

std::string FormatLimitsFile(const region::RegionConfig& limits,
                             const std::vector<std::string>& device_uuids,
                             std::string_view comment) {
  std::string text;
  if (!comment.empty()) text += "# " + std::string(comment) + "\n";
  for (const std::string& assignment : DeviceUuidAssignments(device_uuids)) {
    text += assignment + "\n";
  }
  for (const std::string& assignment : LimitAssignments(limits)) text += assignment + "\n";
  return text;
}

}  // namespace tessera::shim
