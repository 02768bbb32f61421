#include "fakegpu/fault_control.h"

#include <string>

#include "common/units.h"

namespace tessera::fakegpu {
namespace {

std::string Range(const std::vector<DeviceSpec>& node) {
  if (node.empty()) return "it has no GPU";
  return "it has " + std::to_string(node.size()) + " GPU(s), 0 to " +
         std::to_string(node.size() - 1);
}

Status CheckGpu(const std::vector<DeviceSpec>& node, int gpu) {
  if (gpu < 0 || static_cast<size_t>(gpu) >= node.size()) {
    return Status::Error("no GPU " + std::to_string(gpu) + " on this node (" + Range(node) + ")");
  }
  return Status::Ok();
}

}  // namespace

Result<int> FindNodeGpu(const std::vector<DeviceSpec>& node, std::string_view text) {
  std::string quoted = "\"" + std::string(text) + "\"";
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos) {
    Result<uint64_t> index = ParseUnsigned(text, "GPU index", 0, kMaxDevices);
    if (!index.ok() || *index >= node.size()) {
      return Status::Error("no GPU " + std::string(text) + " on this node (" + Range(node) + ")");
    }
    return static_cast<int>(*index);
  }
  std::string lower(text);
  for (size_t i = 4; i < lower.size(); ++i) {
    if (lower[i] >= 'A' && lower[i] <= 'F') lower[i] = static_cast<char>(lower[i] - 'A' + 'a');
  }
  for (size_t gpu = 0; gpu < node.size(); ++gpu) {
    if (FormatUuid(node[gpu].uuid) == lower) return static_cast<int>(gpu);
    for (const MigInstance& instance : node[gpu].mig) {
      if (FormatMigUuid(instance.uuid) == lower) {
        return Status::Error(std::string(text) + " is a MIG device of GPU " + std::to_string(gpu) +
                             "; faults are raised on whole GPUs: name GPU " + std::to_string(gpu));
      }
    }
  }
  return Status::Error(quoted + " is neither a GPU index nor the UUID of a GPU of this node (" +
                       Range(node) + ")");
}

Result<uint64_t> RaiseXidOnGpu(SharedState& state, const std::vector<DeviceSpec>& node, int gpu,
                               uint64_t xid) {
  if (Status exists = CheckGpu(node, gpu); !exists.ok()) return exists;
  if (xid < 1 || xid > kMaxXid) {
    return Status::Error("Xid " + std::to_string(xid) + " is out of range; expected 1 to " +
                         std::to_string(kMaxXid));
  }
  return state.RaiseXid(gpu, static_cast<uint32_t>(xid));
}

Status ClearGpuFault(SharedState& state, const std::vector<DeviceSpec>& node, int gpu) {
  if (Status exists = CheckGpu(node, gpu); !exists.ok()) return exists;
  return state.ClearFault(gpu);
}

std::string_view XidMeaning(uint32_t xid) {
  switch (xid) {
    case 13:
      return "graphics engine exception";
    case 31:
      return "GPU memory page fault";
    case 43:
      return "GPU stopped processing";
    case 45:
      return "preemptive cleanup, due to previous errors";
    case 48:
      return "double-bit ECC error";
    case 63:
      return "ECC page retirement or row remapping recording event";
    case 64:
      return "ECC page retirement or row remapper recording failure";
    case 74:
      return "NVLink error";
    case 79:
      return "GPU has fallen off the bus";
    case 92:
      return "high single-bit ECC error rate";
    case 94:
      return "contained ECC error";
    case 95:
      return "uncontained ECC error";
    default:
      return "";
  }
}

std::string_view XidEffect(uint32_t xid) {
  if (xid == kXidFallenOffTheBus) {
    return "the GPU's NVML queries return NVML_ERROR_GPU_IS_LOST and CUDA cannot reach it";
  }
  if (IsMemoryXid(xid)) {
    return "nvmlDeviceGetRetiredPagesPendingStatus returns NVML_FEATURE_ENABLED";
  }
  return "delivered to NVML event sets; the GPU keeps working";
}

}  // namespace tessera::fakegpu
