#include "sim/replay/cluster_file.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>

#include "common/strings.h"
#include "common/units.h"
#include "fakegpu/config.h"
#include "node/devices.h"
#include "node/node_annotations.h"
#include "node/registry.h"

namespace tessera::sim::replay {
namespace {

// cluster.py's UUID_NAMESPACE, 5c6c8f0e-6f1a-4c39-9a43-746573736572.
constexpr unsigned char kUuidNamespace[16] = {0x5c, 0x6c, 0x8f, 0x0e, 0x6f, 0x1a, 0x4c, 0x39,
                                              0x9a, 0x43, 0x74, 0x65, 0x73, 0x73, 0x65, 0x72};

bool IsDnsLabel(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

class Parser {
 public:
  explicit Parser(const std::string& source) : source_(source) {}

  Result<std::vector<ClusterNode>> Parse(std::string_view text) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      return Status::Error(source_ + ":" + std::to_string(e.mark.line + 1) +
                           ": not valid YAML: " + e.msg);
    }
    if (!root.IsMap() || !root["nodes"] || !root["nodes"].IsSequence() ||
        root["nodes"].size() == 0) {
      return Fail(root, "nodes", "the file needs a non-empty `nodes:` list");
    }
    for (const auto& entry : root) {
      const std::string key = Scalar(entry.first);
      if (key != "nodes" && key != "ports" && key != "scheduler") {
        return Fail(entry.first, key, "unknown top-level key (known: nodes, ports, scheduler)");
      }
    }
    std::vector<ClusterNode> nodes;
    std::set<std::string> names;
    const YAML::Node list = root["nodes"];
    for (size_t n = 0; n < list.size(); ++n) {
      Result<ClusterNode> node = Node(list[n], "nodes[" + std::to_string(n) + "]");
      if (!node.ok()) return node.status();
      if (!names.insert(node->name).second) {
        return Fail(list[n], "nodes[" + std::to_string(n) + "].name",
                    "node " + node->name + " appears twice");
      }
      nodes.push_back(std::move(node).value());
    }
    return nodes;
  }

 private:
  // "<source>:<line>: <field>: <what>"; yaml-cpp counts lines from 0, and -1 when it has none.
  Status Fail(const YAML::Node& at, const std::string& field, const std::string& what) const {
    const int line = at.Mark().line;
    return Status::Error(source_ + (line >= 0 ? ":" + std::to_string(line + 1) : "") + ": " +
                         field + ": " + what);
  }

  static std::string Scalar(const YAML::Node& node) {
    return node.IsScalar()     ? node.Scalar()
           : node.IsMap()      ? "<mapping>"
           : node.IsSequence() ? "<list>"
                               : "<null>";
  }

  // Only `known` keys: a misspelt key would otherwise change the model without a word.
  Status KnownKeys(const YAML::Node& map, const std::string& field,
                   const std::set<std::string>& known) const {
    for (const auto& entry : map) {
      const std::string key = Scalar(entry.first);
      if (known.count(key) == 0) {
        return Fail(entry.first, field + "." + key,
                    "unknown key (known: " + Join({known.begin(), known.end()}, ", ") + ")");
      }
    }
    return Status::Ok();
  }

  Result<long long> Integer(const YAML::Node& node, const std::string& field, long long min,
                            long long max) const {
    const std::string text = Scalar(node);
    long long value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (!node.IsScalar() || error != std::errc() || end != text.data() + text.size()) {
      return Fail(node, field, "\"" + text + "\" is not an integer");
    }
    if (value < min || value > max) {
      return Fail(
          node, field,
          text + " is out of range (" + std::to_string(min) + "-" + std::to_string(max) + ")");
    }
    return value;
  }

  Result<ClusterNode> Node(const YAML::Node& spec, const std::string& field) const {
    if (!spec.IsMap()) return Fail(spec, field, "must be a mapping with name and gpus");
    Status known = KnownKeys(spec, field, {"name", "gpus", "labels"});
    if (!known.ok()) return known;
    ClusterNode node;
    node.name = spec["name"] && spec["name"].IsScalar() ? spec["name"].Scalar() : "";
    if (!IsDnsLabel(node.name)) {
      return Fail(spec["name"] ? spec["name"] : spec, field + ".name",
                  "\"" + node.name + "\" is not a DNS label (lower case, digits, '-')");
    }
    const YAML::Node groups = spec["gpus"];
    if (groups && !groups.IsNull() && !groups.IsSequence()) {
      return Fail(groups, field + ".gpus", "must be a list of GPU groups");
    }
    // tessera-node's configuration, as cluster.py's node_config_file writes it: one entry per
    // GPU with its mode, replicas for time-sliced GPUs, the layout for MIG GPUs.
    YAML::Emitter config;
    config << YAML::BeginMap << YAML::Key << "gpus" << YAML::Value << YAML::BeginSeq;
    for (size_t g = 0; groups && g < groups.size(); ++g) {
      const std::string at = field + ".gpus[" + std::to_string(g) + "]";
      Status added = Group(groups[g], at, node, config);
      if (!added.ok()) return added;
    }
    config << YAML::EndSeq << YAML::EndMap;
    if (node.inventory.gpus.size() > static_cast<size_t>(fakegpu::kMaxDevices)) {
      return Fail(spec, field + ".gpus",
                  std::to_string(node.inventory.gpus.size()) + " GPUs; the fake GPU has at most " +
                      std::to_string(fakegpu::kMaxDevices) + " per node");
    }
    Result<node::NodeConfig> parsed =
        node::ParseNodeConfig(config.c_str(), source_ + ": node " + node.name);
    if (!parsed.ok()) return parsed.status();
    node.config = std::move(parsed).value();
    return node;
  }

  // One group of identical GPUs: appended to the node's inventory and configuration.
  Status Group(const YAML::Node& group, const std::string& field, ClusterNode& node,
               YAML::Emitter& config) const {
    if (!group.IsMap()) return Fail(group, field, "must be a mapping with model, memory, sms");
    Status known = KnownKeys(
        group, field, {"model", "memory", "sms", "count", "mode", "replicas", "mig", "numa"});
    if (!known.ok()) return known;
    const YAML::Node model = group["model"];
    if (!model || !model.IsScalar() || model.Scalar().empty()) {
      return Fail(model ? model : group, field + ".model", "needs the GPU's name");
    }
    if (!group["memory"] || !group["memory"].IsScalar()) {
      return Fail(group, field + ".memory", "needs a size like 80GiB");
    }
    Result<uint64_t> memory = ParseBytes(group["memory"].Scalar(), field + ".memory");
    if (!memory.ok()) return Fail(group["memory"], field + ".memory", memory.status().message());
    if (!group["sms"]) return Fail(group, field + ".sms", "needs the number of multiprocessors");
    if (Result<long long> sms = Integer(group["sms"], field + ".sms", 1, 4096); !sms.ok()) {
      return sms.status();
    }
    long long count = 1;
    if (group["count"]) {
      Result<long long> given = Integer(group["count"], field + ".count", 1, fakegpu::kMaxDevices);
      if (!given.ok()) return given.status();
      count = *given;
    }
    node::GpuMode mode = node::GpuMode::kWhole;
    if (group["mode"]) {
      std::optional<node::GpuMode> given = node::ParseGpuMode(Scalar(group["mode"]));
      if (!given.has_value()) {
        return Fail(group["mode"], field + ".mode",
                    "\"" + Scalar(group["mode"]) + "\" is not whole, time-sliced, mig or shared");
      }
      mode = *given;
    }
    long long replicas = 0;
    if (mode == node::GpuMode::kTimeSliced) {
      if (!group["replicas"]) {
        return Fail(group, field + ".replicas", "time-sliced needs replicas (1-64)");
      }
      Result<long long> given = Integer(group["replicas"], field + ".replicas", 1, 64);
      if (!given.ok()) return given.status();
      replicas = *given;
    } else if (group["replicas"]) {
      return Fail(group["replicas"], field + ".replicas", "is for mode time-sliced only");
    }
    const YAML::Node mig = group["mig"];
    if (mode == node::GpuMode::kMig && (!mig || !mig.IsSequence() || mig.size() == 0)) {
      return Fail(mig ? mig : group, field + ".mig",
                  "mig needs a layout, e.g. mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]");
    }
    if (mode != node::GpuMode::kMig && mig) {
      return Fail(mig, field + ".mig", "is for mode mig only");
    }
    int numa = 0;  // the fake GPU's default
    if (group["numa"]) {
      Result<long long> given = Integer(group["numa"], field + ".numa", 0, 63);
      if (!given.ok()) return given.status();
      numa = static_cast<int>(*given);
    }
    for (long long i = 0; i < count; ++i) {
      node::Gpu gpu;
      gpu.index = static_cast<unsigned>(node.inventory.gpus.size());
      gpu.uuid = FakeGpuUuid(node.name, gpu.index);
      gpu.name = model.Scalar();
      gpu.memory_bytes = *memory;
      gpu.minor = gpu.index;
      gpu.numa_node = numa;
      gpu.mig_enabled = mode == node::GpuMode::kMig;
      config << YAML::Flow << YAML::BeginMap << YAML::Key << "index" << YAML::Value << gpu.index
             << YAML::Key << "mode" << YAML::Value << std::string(node::GpuModeName(mode));
      if (mode == node::GpuMode::kTimeSliced) {
        config << YAML::Key << "replicas" << YAML::Value << replicas;
      }
      if (mode == node::GpuMode::kMig) {
        config << YAML::Key << "mig" << YAML::Value << YAML::Flow << YAML::BeginSeq;
        for (const auto& profile : mig) config << Scalar(profile);
        config << YAML::EndSeq;
      }
      config << YAML::EndMap;
      node.inventory.gpus.push_back(std::move(gpu));
    }
    return Status::Ok();
  }

  const std::string& source_;
};

}  // namespace

Result<std::vector<ClusterNode>> ParseClusterFile(std::string_view text,
                                                  const std::string& source) {
  return Parser(source).Parse(text);
}

Result<std::vector<ClusterNode>> LoadClusterFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path + ": cannot read the cluster file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseClusterFile(text, path);
}

std::string FakeGpuUuid(std::string_view node, unsigned index) {
  std::string input(reinterpret_cast<const char*>(kUuidNamespace), sizeof kUuidNamespace);
  input += std::string(node) + "/" + std::to_string(index);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha1(), nullptr);
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x50);  // version 5
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string uuid = "GPU-";
  for (int i = 0; i < 16; ++i) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", digest[i]);
    uuid += hex;
    if (i == 3 || i == 5 || i == 7 || i == 9) uuid += '-';
  }
  return uuid;
}

nlohmann::json NodeObject(const ClusterNode& node) {
  const node::Registry registry(node.inventory, node::GpuModes(node.config, node.inventory), {});
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata",
           {{"name", node.name}, {"annotations", node::NodeAnnotations(registry, node.config)}}}};
}

}  // namespace tessera::sim::replay
