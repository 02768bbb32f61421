// The kube-scheduler extender's four verbs (k8s.io/kube-scheduler/extender/v1), as functions from
// a request body to a response: JSON with the Go structs' field names (PascalCase, no tags).
//
//   /filter      ExtenderArgs → ExtenderFilterResult: exactly one node, the policy's choice among
//                kube-scheduler's candidates, whose GPUs are then reserved for the pod; the other
//                candidates in FailedNodes (preemption may free them) or
//                FailedAndUnresolvableNodes (it cannot), each with its reason.
//   /prioritize  ExtenderArgs → HostPriorityList: 10 for the reserved node, 0 for the others.
//   /bind        ExtenderBindingArgs → ExtenderBindingResult: one Binding that also carries the
//                pod's `tessera.io/allocation`, so the pod is never on a node without its
//                decision, and no lock is taken (pod identity on the node: docs/pod-identity.md).
//   /preempt     ExtenderPreemptionArgs → ExtenderPreemptionResult: the nodes where evicting the
//                proposed victims lets the pod fit.
//
// Bodies over kMaxBodyBytes, bodies that are not such JSON, and missing fields get 400 with a
// message; nothing in a body can crash the scheduler (fuzzed: fuzz/extender_args_fuzz.cc).
#ifndef TESSERA_SCHEDULER_EXTENDER_H_
#define TESSERA_SCHEDULER_EXTENDER_H_

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/metrics_text.h"
#include "common/status.h"
#include "scheduler/state.h"

namespace tessera::scheduler {

inline constexpr size_t kMaxBodyBytes = 16u << 20;

// Where the extender meets the API server.
class Binder {
 public:
  virtual ~Binder() = default;
  // POST pods/<name>/binding to `node`, with `annotations` set on the pod in the same write.
  virtual Status Bind(const std::string& namespace_name, const std::string& name,
                      const std::string& uid, const std::string& node,
                      const std::map<std::string, std::string>& annotations) = 0;
  // The pod as the API server has it (for a bind whose filter this process did not see).
  virtual Result<nlohmann::json> GetPod(const std::string& namespace_name,
                                        const std::string& name) = 0;
};

struct HttpAnswer {
  int status = 200;
  std::string body;
};

// Calls and latency per verb, for /metrics.
struct VerbStats {
  metrics::LatencyHistogram latency{
      {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5}};
  std::atomic<uint64_t> errors{0};
};

class Extender {
 public:
  Extender(State& state, Binder& binder) : state_(state), binder_(binder) {}

  HttpAnswer Filter(std::string_view body);
  HttpAnswer Prioritize(std::string_view body);
  HttpAnswer Bind(std::string_view body);
  HttpAnswer Preempt(std::string_view body);

  // "filter", "prioritize", "bind", "preempt".
  const std::map<std::string, VerbStats>& stats() const { return stats_; }
  VerbStats& stats(const std::string& verb) { return stats_.at(verb); }

 private:
  State& state_;
  Binder& binder_;
  // Made once, never resized: the entries are updated in place from any thread.
  std::map<std::string, VerbStats> stats_ = [] {
    std::map<std::string, VerbStats> stats;
    for (const char* verb : {"filter", "prioritize", "bind", "preempt"}) stats[verb];
    return stats;
  }();
};

// A body parsed as a JSON object, or the 400 answer that says why not.
Result<nlohmann::json> ParseBody(std::string_view body, std::string_view what);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_EXTENDER_H_
