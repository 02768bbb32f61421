#include "sim/alibaba/replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "common/random.h"
#include "placement/ledger.h"
#include "placement/policy.h"

namespace tessera::sim::alibaba {

namespace pl = tessera::placement;

namespace {

pl::TaskShape ShapeOf(const TracePod& pod) {
  return {pod.cpu_milli, pod.num_gpu > 0 ? pod.gpu_milli : 0, pod.num_gpu, pod.gpu_spec};
}

pl::Request RequestOf(const TracePod& pod) {
  pl::Request request;
  request.gpu_count = pod.num_gpu;
  request.gpu_milli = pod.num_gpu > 0 ? pod.gpu_milli : 0;
  request.cpu_milli = pod.cpu_milli;
  request.memory_mib = pod.memory_mib;
  request.gpu_types = pod.gpu_spec;
  return request;
}

// The arrival order: indices into trace.pods (which the protocol sorts by name first).
std::vector<size_t> ArrivalOrder(const Trace& trace, int64_t target_milli, std::mt19937_64& rng) {
  std::vector<size_t> order(trace.pods.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return trace.pods[a].name < trace.pods[b].name; });
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[UniformIndex(rng, i)]);
  int64_t total = 0;
  for (const TracePod& pod : trace.pods) total += pod.total_gpu_milli();
  if (trace.pods.empty()) return order;
  if (total < target_milli) {
    // Append clones until the first that would overshoot. Like the artifact, the check uses the
    // clone's per-GPU share, so a multi-GPU clone may overshoot a little.
    while (true) {
      size_t pick = UniformIndex(rng, trace.pods.size());
      const TracePod& pod = trace.pods[pick];
      if (total + pod.gpu_milli > target_milli) break;
      order.push_back(pick);
      total += pod.total_gpu_milli();
      if (order.size() > 50 * trace.pods.size() + 1000000) break;  // only CPU pods: no end
    }
  } else {
    while (total > target_milli && !order.empty()) {
      size_t victim = UniformIndex(rng, order.size());
      total -= trace.pods[order[victim]].total_gpu_milli();
      order.erase(order.begin() + static_cast<std::ptrdiff_t>(victim));
    }
  }
  return order;
}

// Running means per integer percent of arrived workload.
struct Bins {
  std::vector<double> sum = std::vector<double>(kCurveMaxPercent + 1, 0.0);
  std::vector<int> count = std::vector<int>(kCurveMaxPercent + 1, 0);
  void Add(int x, double value) {
    if (x < 0 || x > kCurveMaxPercent) return;
    sum[x] += value;
    ++count[x];
  }
  // Empty bins take the neighbour below, else the one above, else carry the last value.
  std::vector<double> Curve() const {
    std::vector<double> curve(kCurveMaxPercent + 1, 0.0);
    double last = 0;
    for (int x = 0; x <= kCurveMaxPercent; ++x) {
      if (count[x] > 0) {
        curve[x] = sum[x] / count[x];
      } else if (x > 0 && count[x - 1] > 0) {
        curve[x] = sum[x - 1] / count[x - 1];
      } else if (x < kCurveMaxPercent && count[x + 1] > 0) {
        curve[x] = sum[x + 1] / count[x + 1];
      } else {
        curve[x] = last;
      }
      last = curve[x];
    }
    return curve;
  }
};

StrandedShare MeasureStranded(const pl::Cluster& cluster) {
  StrandedShare s;
  for (size_t n = 0; n < cluster.node_count(); ++n) {
    const bool cpu = cluster.state(n).free_cpu_milli >= 4000;
    for (const pl::GpuState& g : cluster.gpus(n)) {
      const double gpus = g.free_milli / 1000.0;
      if (g.free_milli == pl::kMilliPerGpu) {
        (cpu ? s.whole_with_cpu : s.whole_without_cpu) += 1;
      } else if (g.free_milli < 200) {
        s.holes_below_200 += gpus;
      } else if (g.free_milli < 600) {
        s.holes_200_to_600 += gpus;
      } else {
        s.holes_above_600 += gpus;
      }
    }
  }
  return s;
}

}  // namespace

Result<PreparedTrace> PrepareTrace(const Trace& trace) {
  std::vector<pl::NodeSpec> specs;
  specs.reserve(trace.nodes.size());
  for (const TraceNode& node : trace.nodes) {
    pl::NodeSpec spec;
    spec.name = node.name;
    spec.cpu_milli = node.cpu_milli;
    spec.memory_mib = node.memory_mib;
    for (int g = 0; g < node.gpus; ++g) {
      pl::GpuSpec gpu;
      gpu.model = node.model;
      gpu.uuid = node.name + "-gpu" + std::to_string(g);
      spec.gpus.push_back(std::move(gpu));  // shared, memory not modelled: the trace's milli-GPU
    }
    specs.push_back(std::move(spec));
  }
  auto cluster = pl::Cluster::Create(std::move(specs));
  if (!cluster.ok()) {
    return Status::Error("trace \"" + trace.variant + "\": " + cluster.status().message());
  }
  std::vector<pl::TaskShape> shapes;
  shapes.reserve(trace.pods.size());
  for (const TracePod& pod : trace.pods) shapes.push_back(ShapeOf(pod));
  PreparedTrace prepared;
  prepared.trace = &trace;
  prepared.cluster = std::move(*cluster);
  prepared.shape_counts = pl::CountShapes(shapes);
  prepared.measure = pl::Workload(prepared.cluster, pl::TypicalShapes(prepared.shape_counts, 0.95));
  return prepared;
}

Result<ReplayResult> Replay(const PreparedTrace& prepared, const std::string& policy_name,
                            const ReplayOptions& options) {
  const Trace& trace = *prepared.trace;
  pl::Ledger ledger(prepared.cluster);
  const pl::Cluster& cluster = ledger.cluster();

  pl::PolicyOptions policy_options;
  policy_options.seed = options.seed;
  policy_options.shape_counts = prepared.shape_counts;
  policy_options.fgd_quantised = options.fgd_quantised;
  policy_options.fgd_coverage = options.fgd_coverage;
  auto policy = pl::MakePolicy(policy_name, cluster, policy_options);
  if (!policy.ok()) return policy.status();

  std::mt19937_64 rng(options.seed);
  const auto capacity = static_cast<double>(cluster.total_gpu_milli());
  const auto target = static_cast<int64_t>(std::llround(options.inflation * capacity));
  std::vector<size_t> order = ArrivalOrder(trace, target, rng);

  std::vector<pl::Request> requests;
  requests.reserve(trace.pods.size());
  for (const TracePod& pod : trace.pods) requests.push_back(RequestOf(pod));
  for (const pl::Request& r : requests) {
    if (Status s = pl::ValidateRequest(r); !s.ok()) return s;
  }
  std::vector<pl::Demand> demands;
  demands.reserve(requests.size());
  for (const pl::Request& r : requests) demands.push_back(pl::CompileDemand(cluster, r));

  std::vector<double> node_frag(cluster.node_count());
  double frag = 0;
  for (size_t n = 0; n < cluster.node_count(); ++n) {
    node_frag[n] = prepared.measure.NodeFragmentation(cluster, n);
    frag += node_frag[n];
  }

  ReplayResult result;
  result.policy = policy_name;
  result.seed = options.seed;
  result.pods = static_cast<int>(order.size());
  Bins allocated;
  Bins amount;
  Bins rate;
  int64_t arrived = 0;
  bool stranded_measured = false;
  const auto start = std::chrono::steady_clock::now();
  for (size_t index : order) {
    const TracePod& pod = trace.pods[index];
    const pl::Demand& demand = demands[index];
    arrived += pod.total_gpu_milli();
    (*policy)->Observe(demand);
    std::optional<pl::Assignment> assignment = (*policy)->Choose(cluster, demand);
    bool placed = false;
    if (assignment) {
      auto id = ledger.Place(demand, *assignment);
      if (!id.ok()) {
        return Status::Error("policy " + policy_name +
                             " chose a node that does not fit: " + id.status().message());
      }
      placed = true;
      size_t n = assignment->node;
      double updated = prepared.measure.NodeFragmentation(cluster, n);
      frag += updated - node_frag[n];
      node_frag[n] = updated;
    }
    if (!placed) {
      auto count = [&pod](FailureCounts& f) {
        ++(pod.num_gpu == 0       ? f.cpu_only
           : pod.num_gpu > 1      ? f.multi_gpu
           : pod.gpu_milli < 1000 ? f.fractional
                                  : f.one_gpu);
      };
      count(result.failed);
      if (static_cast<double>(arrived) <= capacity) {
        count(result.failed_by_full);
        result.failed_milli_by_full += pod.total_gpu_milli();
      }
    }
    if (!stranded_measured && static_cast<double>(arrived) >= capacity) {
      stranded_measured = true;
      result.stranded_at_full = MeasureStranded(cluster);
    }
    const auto alloc = static_cast<double>(cluster.allocated_gpu_milli());
    const int x = static_cast<int>(std::lround(100.0 * static_cast<double>(arrived) / capacity));
    allocated.Add(x, 100.0 * alloc / capacity);
    amount.Add(x, 100.0 * frag / capacity);
    const double idle = capacity - alloc;
    rate.Add(x, idle > 0 ? 100.0 * frag / idle : 0.0);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.allocated_pct = allocated.Curve();
  result.frag_amount_pct = amount.Curve();
  result.frag_rate_pct = rate.Curve();
  return result;
}

}  // namespace tessera::sim::alibaba
