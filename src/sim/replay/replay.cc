#include "sim/replay/replay.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "kube/pod_allocation.h"
#include "scheduler/admission.h"
#include "scheduler/extender.h"
#include "scheduler/pod_request.h"

namespace tessera::sim::replay {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 64;

std::string Where(const std::string& source, const YAML::Node& at) {
  const int line = at.Mark().line;  // from 0; -1 when yaml-cpp has none
  return source + (line >= 0 ? ":" + std::to_string(line + 1) : "");
}

// A plain (unquoted) scalar as kubectl's YAML reader types it.
json PlainScalar(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
    return nullptr;
  }
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  const char* end = text.data() + text.size();
  int64_t integer = 0;
  if (auto [at, error] = std::from_chars(text.data(), end, integer);
      error == std::errc() && at == end) {
    return integer;
  }
  double real = 0;
  if (auto [at, error] = std::from_chars(text.data(), end, real);
      error == std::errc() && at == end && std::isfinite(real)) {
    return real;
  }
  return text;
}

Result<json> ToJson(const YAML::Node& node, const std::string& source, const std::string& field,
                    int depth) {
  if (depth > kMaxDepth) {
    return Status::Error(Where(source, node) + ": " + field + ": nested deeper than " +
                         std::to_string(kMaxDepth));
  }
  if (node.IsScalar()) return node.Tag() == "?" ? PlainScalar(node.Scalar()) : json(node.Scalar());
  if (node.IsSequence()) {
    json list = json::array();
    for (size_t i = 0; i < node.size(); ++i) {
      Result<json> item = ToJson(node[i], source, field + "[" + std::to_string(i) + "]", depth + 1);
      if (!item.ok()) return item.status();
      list.push_back(std::move(item).value());
    }
    return list;
  }
  if (node.IsMap()) {
    json object = json::object();
    for (const auto& entry : node) {
      if (!entry.first.IsScalar()) {
        return Status::Error(Where(source, entry.first) + ": " + field + ": a key is not a scalar");
      }
      const std::string& key = entry.first.Scalar();
      Result<json> value = ToJson(entry.second, source, field + "." + key, depth + 1);
      if (!value.ok()) return value.status();
      object[key] = std::move(value).value();
    }
    return object;
  }
  return json(nullptr);
}

// Checks one pod of the file; `field` is "[i]".
Status CheckPod(const json& pod, const YAML::Node& at, const std::string& source,
                const std::string& field, std::set<std::string>& seen) {
  const std::string where = Where(source, at) + ": " + field;
  if (!pod.is_object()) return Status::Error(where + ": not a Pod (a mapping)");
  if (auto kind = pod.find("kind"); kind != pod.end() && *kind != "Pod") {
    return Status::Error(where +
                         ".kind: " + kind->dump(-1, ' ', false, json::error_handler_t::replace) +
                         " is not Pod");
  }
  auto meta = pod.find("metadata");
  if (meta == pod.end() || !meta->is_object()) return Status::Error(where + ".metadata: missing");
  auto name = meta->find("name");
  if (name == meta->end()) return Status::Error(where + ".metadata.name: missing");
  if (!name->is_string() || name->get<std::string>().empty()) {
    return Status::Error(
        where + ".metadata.name: " + name->dump(-1, ' ', false, json::error_handler_t::replace) +
        " is not a name");
  }
  std::string namespace_name = "default";
  if (auto ns = meta->find("namespace"); ns != meta->end()) {
    if (!ns->is_string() || ns->get<std::string>().empty()) {
      return Status::Error(where + ".metadata.namespace: " +
                           ns->dump(-1, ' ', false, json::error_handler_t::replace) +
                           " is not a name");
    }
    namespace_name = ns->get<std::string>();
  }
  if (!seen.insert(namespace_name + "/" + name->get<std::string>()).second) {
    return Status::Error(where + ".metadata.name: pod " + namespace_name + "/" +
                         name->get<std::string>() + " appears twice");
  }
  return Status::Ok();
}

// What the API server holds for /bind: the binding's annotations, recorded.
class RecordingBinder : public scheduler::Binder {
 public:
  Status Bind(const std::string&, const std::string&, const std::string&, const std::string&,
              const std::map<std::string, std::string>& annotations) override {
    annotations_ = annotations;
    return Status::Ok();
  }
  // Only asked for a bind whose filter another process answered: never in a replay.
  Result<json> GetPod(const std::string& namespace_name, const std::string& name) override {
    return Status::Error("pod " + namespace_name + "/" + name + " was not filtered by the replay");
  }
  const std::map<std::string, std::string>& annotations() const { return annotations_; }

 private:
  std::map<std::string, std::string> annotations_;
};

// The webhook's answer for the pod's CREATE: the pod as admitted, or why it was refused.
Result<json> Admit(const json& pod, int32_t max_gpus_per_node) {
  scheduler::AdmissionOptions options;  // tessera-scheduler's defaults, as the cluster runs it
  options.max_gpus_per_node = max_gpus_per_node;
  const json review = {{"apiVersion", "admission.k8s.io/v1"},
                       {"kind", "AdmissionReview"},
                       {"request",
                        {{"uid", pod["metadata"].value("uid", "")},
                         {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
                         {"operation", "CREATE"},
                         {"namespace", pod["metadata"].value("namespace", "")},
                         {"object", pod}}}};
  const scheduler::AdmissionResult result = scheduler::HandleAdmission(
      review.dump(-1, ' ', false, json::error_handler_t::replace), options);
  const json answer = json::parse(result.body, nullptr, /*allow_exceptions=*/false);
  if (result.http_status != 200 || !answer.is_object()) {
    return Status::Error("the webhook answered " + std::to_string(result.http_status) + ": " +
                         result.body);
  }
  const json& response = answer["response"];
  if (!response.value("allowed", false)) {
    return Status::Error("refused by the webhook: " +
                         response.value("status", json::object()).value("message", ""));
  }
  if (!response.contains("patch")) return pod;
  std::optional<std::string> patch = scheduler::DecodeBase64(response.value("patch", ""));
  const json operations = patch ? json::parse(*patch, nullptr, /*allow_exceptions=*/false) : json();
  if (!operations.is_array()) return Status::Error("the webhook's patch is not a JSON Patch");
  try {
    return pod.patch(operations);
  } catch (const json::exception& error) {
    return Status::Error(std::string("the webhook's patch does not apply: ") + error.what());
  }
}

// The extender's reasons, node by node, for a filter that kept no node.
std::string PendingReason(const json& result) {
  std::string reason;
  for (const char* field : {"FailedAndUnresolvableNodes", "FailedNodes"}) {
    const json reasons = result.value(field, json::object());
    for (const auto& [node, why] : reasons.items()) {
      reason += (reason.empty() ? "" : "; ") + node + ": " +
                (why.is_string() ? why.get<std::string>()
                                 : why.dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
  return "pending: " + (reason.empty() ? std::string("no node") : reason);
}

// What the API server fills in on create: the namespace, and a UID (the State keys holdings by
// it).
json WithCreateDefaults(json pod, size_t arrival) {
  json& meta = pod["metadata"];
  if (!meta.contains("namespace")) meta["namespace"] = "default";
  if (!meta.contains("uid")) meta["uid"] = "replay-" + std::to_string(arrival);
  return pod;
}

class Replayer {
 public:
  Replayer(const std::vector<ClusterNode>& nodes, const scheduler::StateOptions& options)
      : state_(options), extender_(state_, binder_) {
    for (const ClusterNode& node : nodes) {
      state_.UpsertNode(NodeObject(node));
      names_.push_back(node.name);
      for (const node::Gpu& gpu : node.inventory.gpus) index_of_[gpu.uuid] = gpu.index;
    }
  }

  PodPlacement Place(json pod, size_t arrival) {
    pod = WithCreateDefaults(std::move(pod), arrival);
    const json meta = pod["metadata"];
    const std::string uid = meta["uid"].is_string() ? meta["uid"].get<std::string>() : "";
    PodPlacement placement;
    placement.namespace_name = meta["namespace"].get<std::string>();
    placement.name = meta["name"].get<std::string>();

    // 1. The admission webhook.
    Result<json> admitted = Admit(pod, state_.MaxGpusPerNode());
    if (!admitted.ok()) {
      placement.reason = admitted.status().message();
      return placement;
    }
    pod = std::move(admitted).value();
    Result<scheduler::PodGpuRequest> request = scheduler::ParsePodGpuRequest(pod);
    if (request.ok() && !request->wants_gpu()) {
      placement.reason = "asks for no GPU: kube-scheduler places it without tessera-scheduler";
      return placement;
    }

    // 2. /filter, every node a candidate.
    const json args = {{"Pod", pod}, {"NodeNames", names_}};
    const scheduler::HttpAnswer filtered =
        extender_.Filter(args.dump(-1, ' ', false, json::error_handler_t::replace));
    const json result = json::parse(filtered.body, nullptr, /*allow_exceptions=*/false);
    if (filtered.status != 200 || !result.is_object()) {
      placement.reason =
          "filter answered " + std::to_string(filtered.status) + ": " + filtered.body;
      return placement;
    }
    const json kept = result.value("NodeNames", json::array());
    if (kept.size() != 1 || !kept[0].is_string()) {
      placement.reason = PendingReason(result);
      return placement;
    }

    // 3. /bind to the node the filter kept.
    const std::string node = kept[0].get<std::string>();
    const json binding = {{"PodName", placement.name},
                          {"PodNamespace", placement.namespace_name},
                          {"PodUID", uid},
                          {"Node", node}};
    const scheduler::HttpAnswer bound =
        extender_.Bind(binding.dump(-1, ' ', false, json::error_handler_t::replace));
    const json bind_result = json::parse(bound.body, nullptr, /*allow_exceptions=*/false);
    if (bound.status != 200 || !bind_result.is_object() ||
        !bind_result.value("Error", "").empty()) {
      placement.reason = "bind to " + node + " failed: " + bound.body;
      return placement;
    }
    // The pod as the scheduler's pod watch then sees it: on its node, with the binding's
    // annotations.
    pod["spec"]["nodeName"] = node;
    for (const auto& [key, value] : binder_.annotations()) {
      pod["metadata"]["annotations"][key] = value;
    }
    state_.UpsertPod(pod);

    Result<kube::PodAllocation> allocation =
        kube::DecodePodAllocation(binder_.annotations().at(kube::kAllocationAnnotation));
    if (!allocation.ok()) {
      placement.reason = "the binding's allocation does not read: " + allocation.status().message();
      return placement;
    }
    placement.node = allocation->node;
    for (const kube::ContainerGrant& container : allocation->containers) {
      for (const kube::GpuGrant& grant : container.gpus) {
        placement.gpus.push_back(
            {container.name, index_of_.at(grant.uuid), grant.uuid, grant.memory_mib, grant.cores});
      }
    }
    return placement;
  }

 private:
  scheduler::State state_;
  RecordingBinder binder_;
  scheduler::Extender extender_;
  std::vector<std::string> names_;
  std::map<std::string, unsigned> index_of_;  // GPU UUID → index on its node
};

// The file's YAML documents (split at lines that start with "---"), each preceded by as many
// empty lines as come before it in the file, so that YAML's marks are the file's lines.
// yaml-cpp's own LoadAll (0.7) loops for ever on some malformed input (found by
// fuzz/replay_input_fuzz.cc); Load of one document does not.
std::vector<std::string> SplitDocuments(std::string_view text) {
  std::vector<std::string> documents(1);
  size_t line = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view current =
        text.substr(0, end == std::string_view::npos ? text.size() : end + 1);
    text.remove_prefix(current.size());
    const bool separator = current.substr(0, 3) == "---" &&
                           (current.size() == 3 || current[3] == ' ' || current[3] == '\t' ||
                            current[3] == '\n' || current[3] == '\r');
    if (separator) {
      documents.emplace_back(line, '\n');
      documents.back() += current.substr(3);  // "--- {a: 1}" keeps its content
    } else {
      documents.back() += current;
    }
    ++line;
  }
  return documents;
}

}  // namespace

Result<std::vector<json>> ParsePods(std::string_view text, const std::string& source) {
  std::vector<YAML::Node> documents;
  try {
    for (const std::string& document : SplitDocuments(text)) {
      YAML::Node loaded = YAML::Load(document);
      if (!loaded.IsNull()) documents.push_back(std::move(loaded));  // as LoadAll: no empty ones
    }
  } catch (const YAML::Exception& e) {
    return Status::Error(source + ":" + std::to_string(e.mark.line + 1) +
                         ": not valid YAML: " + e.msg);
  }
  // The pods' YAML nodes, wherever they sit in the file.
  std::vector<YAML::Node> items;
  for (const YAML::Node& document : documents) {
    if (document.IsNull()) continue;
    if (documents.size() == 1 && document.IsSequence()) {
      for (const YAML::Node& item : document) items.push_back(item);
    } else if (document.IsMap() && document["kind"] && document["kind"].IsScalar() &&
               document["kind"].Scalar() == "List") {
      if (!document["items"] || !document["items"].IsSequence()) {
        return Status::Error(Where(source, document) + ": items: a List needs a list of pods");
      }
      for (const YAML::Node& item : document["items"]) items.push_back(item);
    } else {
      items.push_back(document);
    }
  }
  if (items.empty()) return Status::Error(source + ": no pods (want a list of Pod manifests)");
  std::vector<json> pods;
  std::set<std::string> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string field = "[" + std::to_string(i) + "]";
    Result<json> pod = ToJson(items[i], source, field, 0);
    if (!pod.ok()) return pod.status();
    if (Status checked = CheckPod(*pod, items[i], source, field, seen); !checked.ok()) {
      return checked;
    }
    pods.push_back(std::move(pod).value());
  }
  return pods;
}

Result<std::vector<json>> LoadPods(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path + ": cannot read the pods file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParsePods(text, path);
}

std::vector<PodPlacement> Replay(const std::vector<ClusterNode>& nodes,
                                 const std::vector<json>& pods,
                                 const scheduler::StateOptions& options) {
  Replayer replayer(nodes, options);
  std::vector<PodPlacement> placements;
  for (size_t i = 0; i < pods.size(); ++i) placements.push_back(replayer.Place(pods[i], i));
  return placements;
}

std::string FormatTable(const std::vector<PodPlacement>& placements) {
  std::vector<std::vector<std::string>> rows = {
      {"POD", "CONTAINER", "NODE", "GPU", "UUID", "MEMORY_MIB", "CORES"}};
  for (const PodPlacement& pod : placements) {
    const std::string name = pod.namespace_name + "/" + pod.name;
    if (pod.gpus.empty()) rows.push_back({name, "-", "-", pod.reason});
    for (const GpuPlacement& gpu : pod.gpus) {
      rows.push_back({name, gpu.container, pod.node, std::to_string(gpu.index), gpu.uuid,
                      std::to_string(gpu.memory_mib), std::to_string(gpu.cores)});
    }
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    // A short row ends with a reason, which sets no column's width.
    const size_t sized = row.size() < widths.size() ? row.size() - 1 : row.size();
    for (size_t c = 0; c < sized; ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatJson(const std::vector<PodPlacement>& placements) {
  json pods = json::array();
  for (const PodPlacement& pod : placements) {
    json gpus = json::array();
    for (const GpuPlacement& gpu : pod.gpus) {
      gpus.push_back({{"container", gpu.container},
                      {"index", gpu.index},
                      {"uuid", gpu.uuid},
                      {"memoryMiB", gpu.memory_mib},
                      {"cores", gpu.cores}});
    }
    json entry = {{"namespace", pod.namespace_name},
                  {"name", pod.name},
                  {"node", pod.node.empty() ? json(nullptr) : json(pod.node)},
                  {"gpus", gpus}};
    if (!pod.reason.empty()) entry["reason"] = pod.reason;
    pods.push_back(std::move(entry));
  }
  return json{{"pods", pods}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace tessera::sim::replay
