#include "scheduler/extender.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "common/strings.h"
#include "kube/pod_allocation.h"

namespace tessera::scheduler {
using nlohmann::json;

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

HttpAnswer BadRequest(const std::string& message) { return {400, json{{"Error", message}}.dump()}; }

// Go's encoding/json matches field names case-insensitively; kube-scheduler sends PascalCase.
const json* Field(const json& object, std::string_view name) {
  auto it = object.find(name);
  if (it != object.end()) return &*it;
  for (auto item = object.begin(); item != object.end(); ++item) {
    if (EqualsIgnoringCase(item.key(), name)) return &item.value();
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

// ExtenderArgs (and ExtenderPreemptionArgs): the body, its Pod, and for filter and prioritize the
// candidate node names.
struct Args {  // NOLINT(bugprone-exception-escape): json's constructors may throw, as any
               // allocation
  json body;
  json pod;
  std::vector<std::string> names;
};

Result<Args> ReadArgs(std::string_view body, std::string_view verb, bool with_candidates) {
  Result<json> parsed = ParseBody(body, verb);
  if (!parsed.ok()) return parsed.status();
  Args args;
  args.body = std::move(parsed).value();
  const json* pod = Field(args.body, "Pod");
  if (pod == nullptr || !pod->is_object()) {
    return Status::Error(std::string(verb) + ": ExtenderArgs.Pod is not an object");
  }
  if (!pod->contains("metadata") || !(*pod)["metadata"].is_object()) {
    return Status::Error(std::string(verb) + ": ExtenderArgs.Pod has no metadata");
  }
  args.pod = *pod;
  if (with_candidates) {
    Result<std::vector<std::string>> names = CandidateNames(args.body);
    if (!names.ok()) return Status::Error(std::string(verb) + ": " + names.status().message());
    args.names = std::move(names).value();
  }
  return args;
}

// The reason `outcome` gives for `node`.
std::string ReasonFor(const FilterOutcome& outcome, const std::string& node) {
  if (!outcome.error.empty()) return outcome.error;
  if (auto it = outcome.unresolvable.find(node); it != outcome.unresolvable.end()) {
    return it->second;
  }
  if (auto it = outcome.failed.find(node); it != outcome.failed.end()) return it->second;
  return "does not fit";
}

class Timer {
 public:
  explicit Timer(VerbStats& stats) : stats_(stats), start_(std::chrono::steady_clock::now()) {}
  ~Timer() {
    stats_.latency.Record(std::chrono::steady_clock::now() - start_);
    if (error_) stats_.errors.fetch_add(1, std::memory_order_relaxed);
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
  Result<Args> args = ReadArgs(body, "filter", /*with_candidates=*/true);
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  const json& pod = args->pod;
  const json* nodes = Field(args->body, "Nodes");
  const bool node_objects = nodes != nullptr && !nodes->is_null();
  // The answer in the form asked: node names (nodeCacheCapable) or the Node objects kept.
  json result = {{"FailedNodes", json::object()},
                 {"FailedAndUnresolvableNodes", json::object()},
                 {"Error", ""}};
  auto keep = [&](const std::vector<std::string>& kept) {
    if (!node_objects) {
      result["NodeNames"] = kept;
      return;
    }
    json items = json::array();
    for (const json& node : (*nodes)["items"]) {
      const std::string name = node.value("metadata", json::object()).value("name", "");
      if (std::find(kept.begin(), kept.end(), name) != kept.end()) items.push_back(node);
    }
    result["Nodes"] = {{"items", items}};
  };
  const std::string pod_name =
      pod["metadata"].value("namespace", "") + "/" + pod["metadata"].value("name", "");

  Result<PodGpuRequest> request = ParsePodGpuRequest(pod);
  FilterOutcome outcome;
  if (!request.ok()) {
    outcome.error = request.status().message();
  } else if (!request->wants_gpu()) {
    keep(args->names);  // not a Tessera pod: every candidate stays
    return {200, result.dump()};
  } else {
    outcome = state_.Filter(pod, *request, args->names);
  }
  if (!outcome.error.empty()) {
    // The pod itself is wrong (the webhook denies such pods; this catches those it missed):
    // every node is unresolvable, with the reason, so the pod's events say it.
    for (const std::string& node : args->names) {
      result["FailedAndUnresolvableNodes"][node] = outcome.error;
    }
    keep({});
    log::Write(log::Level::kInfo, "filter", "pod %s: %s", pod_name.c_str(), outcome.error.c_str());
    return {200, result.dump()};
  }
  for (const auto& [node, reason] : outcome.failed) result["FailedNodes"][node] = reason;
  for (const auto& [node, reason] : outcome.unresolvable) {
    result["FailedAndUnresolvableNodes"][node] = reason;
  }
  keep(outcome.node.has_value() ? std::vector<std::string>{*outcome.node}
                                : std::vector<std::string>{});
  log::Write(log::Level::kDebug, "filter", "pod %s: %s", pod_name.c_str(),
             outcome.node.has_value() ? outcome.node->c_str() : "no node fits");
  return {200, result.dump()};
}

HttpAnswer Extender::Prioritize(std::string_view body) {
  Timer timer(stats("prioritize"));
  Result<Args> args = ReadArgs(body, "prioritize", /*with_candidates=*/true);
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  std::optional<kube::PodAllocation> reserved =
      state_.Reservation(args->pod["metadata"].value("uid", ""));
  json list = json::array();
  for (const std::string& node : args->names) {
    const bool chosen = reserved.has_value() && reserved->node == node;
    list.push_back({{"Host", node}, {"Score", chosen ? 10 : 0}});
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
  std::optional<kube::PodAllocation> allocation = state_.Reservation(uid);
  if (!allocation.has_value() || allocation->node != node) {
    // /filter ran in another process (before a restart or a failover): decide again, on `node`.
    Result<json> pod = binder_.GetPod(namespace_name, name);
    if (!pod.ok()) return fail(pod.status().message());
    if ((*pod)["metadata"].value("uid", "") != uid) {
      return fail("pod " + namespace_name + "/" + name + " is not the pod " + uid + " any more");
    }
    Result<PodGpuRequest> request = ParsePodGpuRequest(*pod);
    if (!request.ok()) return fail(request.status().message());
    if (!request->wants_gpu()) {
      Status bound = binder_.Bind(namespace_name, name, uid, node, {});
      return bound.ok() ? HttpAnswer{200, json{{"Error", ""}}.dump()} : fail(bound.message());
    }
    FilterOutcome outcome = state_.Filter(*pod, *request, {node});
    if (!outcome.node.has_value()) {
      return fail("pod " + namespace_name + "/" + name + " on node " + node + ": " +
                  ReasonFor(outcome, node));
    }
    allocation = state_.Reservation(uid);
    if (!allocation.has_value()) return fail("the reservation on " + node + " expired at once");
  }
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
  log::Write(log::Level::kInfo, "bind", "pod %s/%s to %s: %s", namespace_name.c_str(), name.c_str(),
             node.c_str(), annotations[kube::kHamiAllocatedAnnotation].c_str());
  return {200, json{{"Error", ""}}.dump()};
}

HttpAnswer Extender::Preempt(std::string_view body) {
  Timer timer(stats("preempt"));
  Result<Args> args = ReadArgs(body, "preempt", /*with_candidates=*/false);
  if (!args.ok()) {
    timer.Failed();
    return BadRequest(args.status().message());
  }
  json result = {{"NodeNameToMetaVictims", json::object()}};
  Result<PodGpuRequest> request = ParsePodGpuRequest(args->pod);
  if (!request.ok() || !request->wants_gpu()) return {200, result.dump()};
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
    if (!state_.FitsAfterEviction(*request, node, uids)) return;
    const json* violations = Field(victims, "NumPDBViolations");
    result["NodeNameToMetaVictims"][node] = {
        {"Pods", meta_pods},
        {"NumPDBViolations", violations != nullptr && violations->is_number_integer()
                                 ? violations->get<int64_t>()
                                 : 0}};
  };
  for (auto [field, meta] :
       {std::pair{"NodeNameToMetaVictims", true}, std::pair{"NodeNameToVictims", false}}) {
    const json* map = Field(args->body, field);
    if (map == nullptr || !map->is_object()) continue;
    for (const auto& [node, victims] : map->items()) consider(node, victims, meta);
  }
  return {200, result.dump()};
}

}  // namespace tessera::scheduler
