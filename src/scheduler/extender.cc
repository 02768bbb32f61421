#include "scheduler/extender.h"

#include <chrono>

#include "common/log.h"
#include "kube/pod_allocation.h"

namespace tessera::scheduler {
using nlohmann::json;

void VerbStats::Record(int64_t micros, bool error) {
  calls.fetch_add(1, std::memory_order_relaxed);
  if (error) errors.fetch_add(1, std::memory_order_relaxed);
  total_us.fetch_add(static_cast<uint64_t>(micros), std::memory_order_relaxed);
  int bucket = 0;
  while (bucket < kBuckets && micros > kBoundsUs[bucket]) ++bucket;
  buckets[bucket].fetch_add(1, std::memory_order_relaxed);
}

Result<json> ParseBody(std::string_view body, std::string_view what) {
  if (body.size() > kMaxBodyBytes) {
    return Status::Error(std::string(what) + ": body of " + std::to_string(body.size()) +
                         " bytes is over the limit of " + std::to_string(kMaxBodyBytes));
  }
  json document = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) return Status::Error(std::string(what) + ": body is not JSON");
  if (!document.is_object()) {
    return Status::Error(std::string(what) + ": body is not a JSON object");
  }
  return document;
}

namespace {

HttpAnswer BadRequest(const std::string& message) {
  return {400, json{{"Error", message}}.dump()};
}

// Go's encoding/json matches field names case-insensitively; kube-scheduler sends PascalCase.
const json* Field(const json& object, std::string_view name) {
  auto it = object.find(name);
  if (it != object.end()) return &*it;
  for (auto item = object.begin(); item != object.end(); ++item) {
    const std::string& key = item.key();
    if (key.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < key.size() && same; ++i) {
      same = std::tolower(static_cast<unsigned char>(key[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (same) return &item.value();
  }
  return nullptr;
}

std::string StringField(const json& object, std::string_view name) {
  const json* value = Field(object, name);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

// The candidate names of ExtenderArgs: NodeNames (nodeCacheCapable) or Nodes.items[].
Result<std::vector<std::string>> CandidateNames(const json& args) {
  std::vector<std::string> names;
  const json* node_names = Field(args, "NodeNames");
  if (node_names != nullptr && !node_names->is_null()) {
    if (!node_names->is_array()) return Status::Error("NodeNames is not an array");
    for (const json& name : *node_names) {
      if (!name.is_string()) return Status::Error("NodeNames holds a non-string");
      names.push_back(name.get<std::string>());
    }
    return names;
  }
  const json* nodes = Field(args, "Nodes");
  if (nodes != nullptr && !nodes->is_null()) {
    const json* items = nodes->is_object() ? Field(*nodes, "items") : nullptr;
    if (items == nullptr || !items->is_array()) return Status::Error("Nodes.items is not an array");
    for (const json& node : *items) {
      if (!node.is_object()) return Status::Error("Nodes.items holds a non-object");
      names.push_back(node.value("metadata", json::object()).value("name", ""));
    }
    return names;
  }
  return Status::Error("ExtenderArgs has neither NodeNames nor Nodes");
}

Result<json> PodOf(const json& args) {
  const json* pod = Field(args, "Pod");
  if (pod == nullptr || !pod->is_object()) return Status::Error("ExtenderArgs.Pod is not an object");
  if (!pod->contains("metadata") || !(*pod)["metadata"].is_object()) {
    return Status::Error("ExtenderArgs.Pod has no metadata");
  }
  return *pod;
}

class Timer {
 public:
  explicit Timer(VerbStats& stats) : stats_(stats), start_(std::chrono::steady_clock::now()) {}
  ~Timer() {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start_)
                  .count();
    stats_.Record(us, error_);
  }
  void Failed() { error_ = true; }

 private:
  VerbStats& stats_;
  std::chrono::steady_clock::time_point start_;
  bool error_ = false;
};

}  // namespace

HttpAnswer Extender::Filter(std::string_view body) {
  Timer timer(stats("filter"));
  Result<json> args = ParseBody(body, "filter");
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  Result<json> pod = PodOf(*args);
  Result<std::vector<std::string>> names = CandidateNames(*args);
  if (!pod.ok() || !names.ok()) {
    timer.Failed();
    return BadRequest("filter: " + (!pod.ok() ? pod.status() : names.status()).message());
  }
  json result = {{"FailedNodes", json::object()},
                 {"FailedAndUnresolvableNodes", json::object()},
                 {"Error", ""}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(*pod);
  if (request.ok() && !request->wants_gpu()) {
    // Not a Tessera pod: every candidate stays.
    if (const json* nodes = Field(*args, "Nodes"); nodes != nullptr && !nodes->is_null()) {
      result["Nodes"] = *nodes;
    } else {
      result["NodeNames"] = *names;
    }
    return {200, result.dump()};
  }
  FilterOutcome outcome = state_.Filter(*pod, *names);
  for (const auto& [node, reason] : outcome.failed) result["FailedNodes"][node] = reason;
  for (const auto& [node, reason] : outcome.unresolvable) {
    result["FailedAndUnresolvableNodes"][node] = reason;
  }
  const std::string pod_name = (*pod)["metadata"].value("namespace", "") + "/" +
                               (*pod)["metadata"].value("name", "");
  if (!outcome.error.empty()) {
    // The pod itself is wrong (the webhook denies such pods; this catches those it missed):
    // every node is unresolvable, with the reason, so the pod's events say it.
    for (const std::string& node : *names) {
      result["FailedAndUnresolvableNodes"][node] = outcome.error;
    }
    result["FailedNodes"] = json::object();
    result["NodeNames"] = json::array();
    log::Write(log::Level::kInfo, "filter", "pod %s: %s", pod_name.c_str(),
               outcome.error.c_str());
    return {200, result.dump()};
  }
  std::vector<std::string> chosen;
  if (outcome.node.has_value()) chosen.push_back(*outcome.node);
  if (const json* nodes = Field(*args, "Nodes"); nodes != nullptr && !nodes->is_null()) {
    json items = json::array();
    for (const json& node : (*nodes)["items"]) {
      if (outcome.node.has_value() &&
          node.value("metadata", json::object()).value("name", "") == *outcome.node) {
        items.push_back(node);
      }
    }
    result["Nodes"] = {{"items", items}};
  } else {
    result["NodeNames"] = chosen;
  }
  log::Write(log::Level::kDebug, "filter", "pod %s: %s", pod_name.c_str(),
             outcome.node.has_value() ? outcome.node->c_str() : "no node fits");
  return {200, result.dump()};
}

HttpAnswer Extender::Prioritize(std::string_view body) {
  Timer timer(stats("prioritize"));
  Result<json> args = ParseBody(body, "prioritize");
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  Result<json> pod = PodOf(*args);
  Result<std::vector<std::string>> names = CandidateNames(*args);
  if (!pod.ok() || !names.ok()) {
    timer.Failed();
    return BadRequest("prioritize: " + (!pod.ok() ? pod.status() : names.status()).message());
  }
  std::optional<std::string> reserved =
      state_.ReservedNode((*pod)["metadata"].value("uid", ""));
  json list = json::array();
  for (const std::string& node : *names) {
    list.push_back({{"Host", node}, {"Score", reserved.has_value() && *reserved == node ? 10 : 0}});
  }
  return {200, list.dump()};
}

HttpAnswer Extender::Bind(std::string_view body) {
  Timer timer(stats("bind"));
  Result<json> args = ParseBody(body, "bind");
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  const std::string name = StringField(*args, "PodName");
  const std::string namespace_name = StringField(*args, "PodNamespace");
  const std::string uid = StringField(*args, "PodUID");
  const std::string node = StringField(*args, "Node");
  if (name.empty() || namespace_name.empty() || uid.empty() || node.empty()) {
    timer.Failed();
    return BadRequest("bind: PodName, PodNamespace, PodUID and Node must be non-empty strings");
  }
  auto fail = [&](const std::string& message) {
    timer.Failed();
    log::Write(log::Level::kWarn, "bind", "pod %s/%s to %s: %s", namespace_name.c_str(),
               name.c_str(), node.c_str(), message.c_str());
    return HttpAnswer{200, json{{"Error", message}}.dump()};
  };
  json hint;
  if (!state_.ReservedNode(uid).has_value()) {
    // /filter ran in another process (before a restart or a failover): decide again, on `node`.
    Result<json> pod = binder_.GetPod(namespace_name, name);
    if (!pod.ok()) return fail(pod.status().message());
    if ((*pod)["metadata"].value("uid", "") != uid) {
      return fail("pod " + namespace_name + "/" + name + " is not the pod " + uid + " any more");
    }
    Result<PodGpuRequest> request = ParsePodGpuRequest(*pod);
    if (request.ok() && !request->wants_gpu()) {
      Status bound = binder_.Bind(namespace_name, name, uid, node, {});
      return bound.ok() ? HttpAnswer{200, json{{"Error", ""}}.dump()} : fail(bound.message());
    }
    hint = std::move(pod).value();
  }
  Result<kube::PodAllocation> allocation = state_.ReservationFor(uid, hint, node);
  if (!allocation.ok()) return fail(allocation.status().message());
  std::map<std::string, std::string> annotations = {
      {kube::kAllocationAnnotation, kube::EncodePodAllocation(*allocation)},
      {kube::kHamiNodeAnnotation, allocation->node},
      {kube::kHamiAllocatedAnnotation, kube::EncodeHamiDevices(*allocation)}};
  Status bound = binder_.Bind(namespace_name, name, uid, node, annotations);
  if (!bound.ok()) {
    state_.BindFailed(uid);
    return fail(bound.message());
  }
  state_.Bound(uid);
  log::Write(log::Level::kInfo, "bind", "pod %s/%s to %s: %s", namespace_name.c_str(),
             name.c_str(), node.c_str(), kube::EncodeHamiDevices(*allocation).c_str());
  return {200, json{{"Error", ""}}.dump()};
}

HttpAnswer Extender::Preempt(std::string_view body) {
  Timer timer(stats("preempt"));
  Result<json> args = ParseBody(body, "preempt");
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  Result<json> pod = PodOf(*args);
  if (!pod.ok()) {
    timer.Failed();
    return BadRequest("preempt: " + pod.status().message());
  }
  json result = {{"NodeNameToMetaVictims", json::object()}};
  auto consider = [&](const std::string& node, const json& victims, bool meta) {
    if (!victims.is_object()) return;
    const json* pods = Field(victims, "Pods");
    std::vector<std::string> uids;
    json meta_pods = json::array();
    if (pods != nullptr && pods->is_array()) {
      for (const json& victim : *pods) {
        if (!victim.is_object()) continue;
        std::string uid = meta ? StringField(victim, "UID")
                               : victim.value("metadata", json::object()).value("uid", "");
        if (uid.empty()) continue;
        uids.push_back(uid);
        meta_pods.push_back({{"UID", uid}});
      }
    }
    if (!state_.FitsAfterEviction(*pod, node, uids)) return;
    const json* violations = Field(victims, "NumPDBViolations");
    result["NodeNameToMetaVictims"][node] = {
        {"Pods", meta_pods},
        {"NumPDBViolations",
         violations != nullptr && violations->is_number_integer() ? violations->get<int64_t>() : 0}};
  };
  for (auto [field, meta] : {std::pair{"NodeNameToMetaVictims", true},
                             std::pair{"NodeNameToVictims", false}}) {
    const json* map = Field(*args, field);
    if (map == nullptr || !map->is_object()) continue;
    for (const auto& [node, victims] : map->items()) consider(node, victims, meta);
  }
  return {200, result.dump()};
}

}  // namespace tessera::scheduler
