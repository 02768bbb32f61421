#include "node/config.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

namespace tessera::node {
namespace {

constexpr std::string_view kModes = "whole, time-sliced, mig, shared";

// A MIG profile name as NVIDIA writes it: "<slices>g.<memory>gb", optionally with a variant's
// suffix ("1g.10gb+me", "1g.10gb-me", "1g.10gb+me.all", "1g.10gb+gfx"). Whether the GPU offers it
// is for PlanResources.
bool LooksLikeMigProfile(std::string_view name) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
    return i > start && i - start <= 3;
  };
  if (!digits() || i >= name.size() || name[i] != 'g') return false;
  ++i;
  if (i >= name.size() || name[i] != '.') return false;
  ++i;
  if (!digits() || name.substr(i, 2) != "gb") return false;
  i += 2;
  if (i == name.size()) return true;
  if (name[i] != '+' && name[i] != '-') return false;
  ++i;
  if (i == name.size() || name.back() == '.') return false;
  for (; i < name.size(); ++i) {
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.')) return false;
  }
  return true;
}

class Parser {
 public:
  explicit Parser(const std::string& source) : source_(source) {}

  Result<NodeConfig> Parse(std::string_view text) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      // yaml-cpp's marks count from 0.
      return Fail("", "not valid YAML at line " + std::to_string(e.mark.line + 1) + ", column " +
                          std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
    NodeConfig config;
    config.source = source_;
    if (root.IsNull()) return config;  // an empty file: every GPU whole
    if (!root.IsMap()) {
      return Fail("", "the top level must be a mapping with 'gpus' and 'defaultMode'");
    }
    for (const auto& entry : root) {
      const std::string key = Scalar(entry.first);
      if (key == "defaultMode") {
        auto mode = Mode(entry.second, "defaultMode");
        if (!mode.ok()) return mode.status();
        if (*mode == GpuMode::kTimeSliced || *mode == GpuMode::kMig) {
          return Fail("defaultMode", "\"" + Scalar(entry.second) +
                                         "\" needs per-GPU settings; list the GPUs under 'gpus'");
        }
        config.default_mode = *mode;
      } else if (key == "gpus") {
        auto status = Gpus(entry.second, config);
        if (!status.ok()) return status;
      } else {
        return Fail(key, "unknown field (known: defaultMode, gpus)");
      }
    }
    return config;
  }

 private:
  Status Fail(const std::string& field, const std::string& what) const {
    return Status::Error(source_ + ": " + (field.empty() ? "" : field + ": ") + what);
  }

  static std::string Scalar(const YAML::Node& node) {
    return node.IsScalar() ? node.Scalar()
                           : std::string("<") +
                                 (node.IsMap()        ? "mapping"
                                  : node.IsSequence() ? "list"
                                                      : "null") +
                                 ">";
  }

  Result<GpuMode> Mode(const YAML::Node& node, const std::string& field) const {
    if (!node.IsScalar()) return Fail(field, "must be one of " + std::string(kModes));
    auto mode = ParseGpuMode(node.Scalar());
    if (!mode) {
      return Fail(field,
                  "unknown mode \"" + node.Scalar() + "\" (known: " + std::string(kModes) + ")");
    }
    return *mode;
  }

  Result<unsigned> Integer(const YAML::Node& node, const std::string& field, long long min,
                           long long max) const {
    const std::string text = Scalar(node);
    if (!node.IsScalar() || text.empty()) return Fail(field, "must be an integer, not " + text);
    size_t i = text[0] == '-' ? 1 : 0;
    if (i == text.size() || text.size() > 12) {
      return Fail(field, "\"" + text + "\" is not an integer");
    }
    for (size_t j = i; j < text.size(); ++j) {
      if (text[j] < '0' || text[j] > '9') return Fail(field, "\"" + text + "\" is not an integer");
    }
    const long long value = std::stoll(text);
    if (value < min || value > max) {
      return Fail(field, text + " is out of range (" + std::to_string(min) + "-" +
                             std::to_string(max) + ")");
    }
    return static_cast<unsigned>(value);
  }

  Status Gpus(const YAML::Node& node, NodeConfig& config) const {
    if (node.IsNull()) return Status::Ok();
    if (!node.IsSequence()) return Fail("gpus", "must be a list of GPUs");
    std::set<unsigned> seen;
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string field = "gpus[" + std::to_string(i) + "]";
      const YAML::Node& gpu = node[i];
      if (!gpu.IsMap()) return Fail(field, "must be a mapping with index and mode");
      GpuConfig entry;
      entry.field = field;
      bool has_index = false;
      bool has_mode = false;
      std::optional<YAML::Node> replicas;
      std::optional<YAML::Node> mig;
      for (const auto& kv : gpu) {
        const std::string key = Scalar(kv.first);
        if (key == "index") {
          auto index = Integer(kv.second, field + ".index", 0, 1023);
          if (!index.ok()) return index.status();
          entry.index = *index;
          has_index = true;
        } else if (key == "mode") {
          auto mode = Mode(kv.second, field + ".mode");
          if (!mode.ok()) return mode.status();
          entry.mode = *mode;
          has_mode = true;
        } else if (key == "replicas") {
          replicas = kv.second;
        } else if (key == "mig") {
          mig = kv.second;
        } else {
          return Fail(field + "." + key, "unknown field (known: index, mode, replicas, mig)");
        }
      }
      if (!has_index) return Fail(field, "has no index");
      if (!has_mode) return Fail(field, "has no mode (" + std::string(kModes) + ")");
      if (!seen.insert(entry.index).second) {
        return Fail(field + ".index", std::to_string(entry.index) + " is listed twice");
      }
      if (entry.mode == GpuMode::kTimeSliced) {
        if (!replicas) {
          return Fail(field + ".replicas",
                      "time-sliced needs a replica count (1-" + std::to_string(kMaxReplicas) + ")");
        }
        auto count = Integer(*replicas, field + ".replicas", 1, kMaxReplicas);
        if (!count.ok()) return count.status();
        entry.replicas = static_cast<int>(*count);
      } else if (entry.mode == GpuMode::kShared) {
        entry.replicas = kDefaultSharedReplicas;
        if (replicas) {
          auto count = Integer(*replicas, field + ".replicas", 1, kMaxReplicas);
          if (!count.ok()) return count.status();
          entry.replicas = static_cast<int>(*count);
        }
      } else if (replicas) {
        return Fail(field + ".replicas", "only a time-sliced or shared GPU has replicas");
      }
      if (mig) {
        if (entry.mode != GpuMode::kMig) {
          return Fail(field + ".mig", "only a GPU in mig mode has a MIG layout");
        }
        if (!mig->IsSequence()) {
          return Fail(field + ".mig", "must be a list of MIG profiles, e.g. [3g.40gb, 1g.10gb]");
        }
        for (size_t j = 0; j < mig->size(); ++j) {
          const std::string profile = Scalar((*mig)[j]);
          if (!(*mig)[j].IsScalar() || !LooksLikeMigProfile(profile)) {
            return Fail(field + ".mig[" + std::to_string(j) + "]",
                        "\"" + profile + "\" is not a MIG profile name (like 1g.10gb)");
          }
          entry.mig_layout.push_back(profile);
        }
      }
      config.gpus.push_back(std::move(entry));
    }
    return Status::Ok();
  }

  const std::string& source_;
};

}  // namespace

std::string_view GpuModeName(GpuMode mode) {
  switch (mode) {
    case GpuMode::kWhole:
      return "whole";
    case GpuMode::kTimeSliced:
      return "time-sliced";
    case GpuMode::kMig:
      return "mig";
    case GpuMode::kShared:
      return "shared";
  }
  return "whole";
}

std::optional<GpuMode> ParseGpuMode(std::string_view text) {
  if (text == "whole") return GpuMode::kWhole;
  if (text == "time-sliced") return GpuMode::kTimeSliced;
  if (text == "mig") return GpuMode::kMig;
  if (text == "shared") return GpuMode::kShared;
  return std::nullopt;
}

const GpuConfig* NodeConfig::Find(unsigned index) const {
  for (const auto& gpu : gpus) {
    if (gpu.index == index) return &gpu;
  }
  return nullptr;
}

GpuMode NodeConfig::ModeOf(unsigned index) const {
  const GpuConfig* entry = Find(index);
  return entry != nullptr ? entry->mode : default_mode;
}

int NodeConfig::ReplicasOf(unsigned index) const {
  const GpuConfig* entry = Find(index);
  if (entry != nullptr) return entry->replicas;
  return default_mode == GpuMode::kShared ? kDefaultSharedReplicas : 0;
}

Result<NodeConfig> ParseNodeConfig(std::string_view text, const std::string& source) {
  return Parser(source).Parse(text);
}

Result<NodeConfig> LoadNodeConfig(const std::string& path) {
  struct stat st = {};
  if (stat(path.c_str(), &st) != 0) {
    return Status::Error(path + ": cannot read the node configuration: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::Error(path + ": the node configuration must be a file" +
                         (S_ISDIR(st.st_mode) ? " (this is a directory)" : ""));
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) return Status::Error(path + ": cannot read the node configuration");
  return ParseNodeConfig(text, path);
}

}  // namespace tessera::node
