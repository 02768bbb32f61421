#include "fakegpu/visible_devices.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "common/strings.h"
#include "common/units.h"

namespace tessera::fakegpu {
namespace {

constexpr std::string_view kVariable = "NVIDIA_VISIBLE_DEVICES";
constexpr std::string_view kExpected =
    "expected all, none, void, or a comma-separated list of device indices, GPU UUIDs, MIG UUIDs "
    "and <gpu>:<mig> indices";

std::string Lowercase(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return lower;
}

bool AllDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// What one NVIDIA_VISIBLE_DEVICES entry names.
struct Selection {
  int gpu = 0;
  int mig = -1;  // -1: the whole GPU
};

class EntryParser {
 public:
  EntryParser(const std::vector<DeviceSpec>& node, std::string_view value)
      : node_(node), value_(value) {}

  Status Error(std::string_view entry, const std::string& why) const {
    return Status::Error(std::string(kVariable) + "=\"" + std::string(value_) + "\": \"" +
                         std::string(entry) + "\" " + why);
  }

  Result<int> GpuIndex(std::string_view entry, std::string_view text) const {
    Result<uint64_t> index = ParseUnsigned(text, "index", 0, 1u << 20);
    if (!index.ok() || *index >= node_.size()) {
      return Error(entry, "names GPU " + std::string(text) + ", but the node has " +
                              std::to_string(node_.size()) + " GPU(s)" + Range(node_.size()));
    }
    return static_cast<int>(*index);
  }

  Result<Selection> Parse(std::string_view entry) const {
    if (entry.empty()) {
      return Status::Error(std::string(kVariable) + "=\"" + std::string(value_) +
                           "\" has an empty entry (two commas, or a leading or trailing comma); " +
                           std::string(kExpected));
    }
    if (entry == "all" || entry == "none" || entry == "void") {
      return Error(entry, "cannot be combined with other entries; " + std::string(kExpected));
    }
    if (AllDigits(entry)) {
      Result<int> gpu = GpuIndex(entry, entry);
      if (!gpu.ok()) return gpu.status();
      return Selection{*gpu, -1};
    }
    size_t colon = entry.find(':');
    if (colon != std::string_view::npos && AllDigits(entry.substr(0, colon)) &&
        AllDigits(entry.substr(colon + 1))) {
      Result<int> gpu = GpuIndex(entry, entry.substr(0, colon));
      if (!gpu.ok()) return gpu.status();
      const DeviceSpec& device = node_[static_cast<size_t>(*gpu)];
      if (!device.mig_enabled()) {
        return Error(entry, "names a MIG device of GPU " + std::to_string(*gpu) +
                                ", which is not in MIG mode");
      }
      Result<uint64_t> mig = ParseUnsigned(entry.substr(colon + 1), "mig", 0, 1u << 20);
      if (!mig.ok() || *mig >= device.mig.size()) {
        return Error(entry, "names MIG device " + std::string(entry.substr(colon + 1)) +
                                " of GPU " + std::to_string(*gpu) + ", which has " +
                                std::to_string(device.mig.size()) + " MIG device(s)" +
                                Range(device.mig.size()));
      }
      return Selection{*gpu, static_cast<int>(*mig)};
    }
    std::string uuid = Lowercase(entry);
    if (entry.substr(0, 4) == "GPU-") {
      uuid.replace(0, 4, "GPU-");
      for (size_t gpu = 0; gpu < node_.size(); ++gpu) {
        if (FormatUuid(node_[gpu].uuid) == uuid) return Selection{static_cast<int>(gpu), -1};
      }
      return Error(entry, "is not the UUID of a GPU of this node");
    }
    if (entry.substr(0, 4) == "MIG-") {
      uuid.replace(0, 4, "MIG-");
      for (size_t gpu = 0; gpu < node_.size(); ++gpu) {
        const std::vector<MigInstance>& instances = node_[gpu].mig;
        for (size_t mig = 0; mig < instances.size(); ++mig) {
          if (FormatMigUuid(instances[mig].uuid) == uuid) {
            return Selection{static_cast<int>(gpu), static_cast<int>(mig)};
          }
        }
      }
      return Error(entry, "is not the UUID of a MIG device of this node");
    }
    return Error(entry, "is not a device index, GPU UUID, MIG UUID or <gpu>:<mig>; " +
                            std::string(kExpected));
  }

 private:
  static std::string Range(size_t count) {
    return count == 0 ? "" : " (0 to " + std::to_string(count - 1) + ")";
  }

  const std::vector<DeviceSpec>& node_;
  std::string_view value_;
};

std::vector<VisibleGpu> EveryGpu(const std::vector<DeviceSpec>& node) {
  std::vector<VisibleGpu> visible;
  for (size_t gpu = 0; gpu < node.size(); ++gpu) {
    VisibleGpu entry{static_cast<int>(gpu), {}};
    for (size_t mig = 0; mig < node[gpu].mig.size(); ++mig) {
      entry.mig.push_back(static_cast<int>(mig));
    }
    visible.push_back(std::move(entry));
  }
  return visible;
}

// CUDA's reading of one CUDA_VISIBLE_DEVICES entry: a device of `base`, or nothing.
std::optional<size_t> FindCudaEntry(const std::vector<DeviceSpec>& node,
                                    const std::vector<DeviceRef>& base, std::string_view entry) {
  while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
  while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
  if (AllDigits(entry)) {
    Result<uint64_t> index = ParseUnsigned(entry, "index", 0, 1u << 20);
    if (!index.ok() || *index >= base.size()) return std::nullopt;
    return static_cast<size_t>(*index);
  }
  if (entry.size() <= 4 || (entry.substr(0, 4) != "GPU-" && entry.substr(0, 4) != "MIG-")) {
    return std::nullopt;
  }
  std::string prefix = std::string(entry.substr(0, 4)) + Lowercase(entry.substr(4));
  std::optional<size_t> found;
  for (size_t i = 0; i < base.size(); ++i) {
    if (DeviceUuidText(node, base[i]).compare(0, prefix.size(), prefix) != 0) continue;
    if (found.has_value()) return std::nullopt;  // ambiguous
    found = i;
  }
  return found;
}

}  // namespace

Result<std::vector<VisibleGpu>> SelectVisibleGpus(const std::vector<DeviceSpec>& node,
                                                  const char* value) {
  if (value == nullptr) return EveryGpu(node);
  std::string_view text = value;
  if (text == "all") return EveryGpu(node);
  if (text.empty() || text == "none" || text == "void") return std::vector<VisibleGpu>{};
  EntryParser parser(node, text);
  std::vector<bool> whole(node.size(), false);
  std::vector<std::vector<bool>> migs(node.size());
  for (size_t gpu = 0; gpu < node.size(); ++gpu) migs[gpu].assign(node[gpu].mig.size(), false);
  for (std::string_view entry : Split(text, ',')) {
    Result<Selection> selection = parser.Parse(entry);
    if (!selection.ok()) return selection.status();
    size_t gpu = static_cast<size_t>(selection->gpu);
    if (selection->mig < 0) {
      whole[gpu] = true;
    } else {
      migs[gpu][static_cast<size_t>(selection->mig)] = true;
    }
  }
  std::vector<VisibleGpu> visible;
  for (size_t gpu = 0; gpu < node.size(); ++gpu) {
    VisibleGpu entry{static_cast<int>(gpu), {}};
    for (size_t mig = 0; mig < migs[gpu].size(); ++mig) {
      if (whole[gpu] || migs[gpu][mig]) entry.mig.push_back(static_cast<int>(mig));
    }
    if (whole[gpu] || !entry.mig.empty()) visible.push_back(std::move(entry));
  }
  return visible;
}

Result<std::vector<VisibleGpu>> VisibleGpusFromEnvironment(const std::vector<DeviceSpec>& node) {
  return SelectVisibleGpus(node, std::getenv(std::string(kVariable).c_str()));
}

std::vector<DeviceRef> SelectCudaDevices(const std::vector<DeviceSpec>& node,
                                         const std::vector<VisibleGpu>& visible,
                                         const char* cuda_visible_devices) {
  std::vector<DeviceRef> base;
  for (const VisibleGpu& gpu : visible) {
    if (!node[static_cast<size_t>(gpu.gpu)].mig_enabled()) {
      base.push_back({gpu.gpu, -1});
      continue;
    }
    for (int mig : gpu.mig) base.push_back({gpu.gpu, mig});
  }
  if (cuda_visible_devices == nullptr) return base;
  std::vector<DeviceRef> chosen;
  std::vector<bool> taken(base.size(), false);
  for (std::string_view entry : Split(cuda_visible_devices, ',')) {
    std::optional<size_t> found = FindCudaEntry(node, base, entry);
    if (!found.has_value() || taken[*found]) break;
    taken[*found] = true;
    chosen.push_back(base[*found]);
  }
  return chosen;
}

std::vector<DeviceRef> CudaDevicesFromEnvironment(const std::vector<DeviceSpec>& node,
                                                  const std::vector<VisibleGpu>& visible) {
  return SelectCudaDevices(node, visible, std::getenv("CUDA_VISIBLE_DEVICES"));
}

std::string DeviceUuidText(const std::vector<DeviceSpec>& node, DeviceRef device) {
  const DeviceSpec& gpu = node[static_cast<size_t>(device.gpu)];
  if (device.mig < 0) return FormatUuid(gpu.uuid);
  return FormatMigUuid(gpu.mig[static_cast<size_t>(device.mig)].uuid);
}

}  // namespace tessera::fakegpu
