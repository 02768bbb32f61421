// Speed of the placement engine: ledger operations alone, a policy's choice plus the ledger on a
// cluster the size of the Alibaba trace's, and one whole replay of the trace.
//
//   build-place/bin/tessera_placement_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <vector>

#include "placement/ledger.h"
#include "placement/policy.h"
#include "sim/alibaba/replay.h"
#include "sim/alibaba/trace.h"

namespace tessera::placement {
namespace {

// A cluster shaped like the trace's (1,213 nodes, 6,212 GPUs), without reading it.
Cluster TraceSizedCluster() {
  struct Group {
    int nodes, gpus;
    int64_t cpu;
    const char* model;
  };
  const Group groups[] = {
      {549, 8, 96000, "G2"},    {387, 2, 104000, "T4"},   {17, 4, 96000, "T4"},
      {134, 2, 16000, "P100"},  {39, 8, 128000, "G3"},    {21, 8, 96000, "V100M32"},
      {9, 4, 48000, "V100M32"}, {8, 8, 64000, "V100M16"}, {28, 4, 32000, "V100M16"},
      {19, 1, 8000, "V100M16"}, {2, 1, 128000, "A10"}};
  std::vector<NodeSpec> nodes;
  for (const Group& g : groups) {
    for (int n = 0; n < g.nodes; ++n) {
      NodeSpec node;
      node.name = std::string(g.model) + "-" + std::to_string(nodes.size());
      node.cpu_milli = g.cpu;
      node.memory_mib = 262144;
      node.gpus.resize(static_cast<size_t>(g.gpus),
                       GpuSpec{"", g.model, 0, SharingMode::kShared, {}, 1});
      nodes.push_back(std::move(node));
    }
  }
  return Cluster::Create(std::move(nodes)).value();
}

Request Fraction(int32_t milli) {
  Request r;
  r.gpu_count = 1;
  r.gpu_milli = milli;
  r.cpu_milli = 4000;
  r.memory_mib = 8192;
  return r;
}

// Place and release one fractional pod: the ledger's own cost.
void BM_LedgerPlaceRelease(benchmark::State& state) {
  Ledger ledger(TraceSizedCluster());
  Demand demand = CompileDemand(ledger.cluster(), Fraction(470));
  Assignment assignment;
  assignment.gpus.count = 1;
  size_t node = 0;
  for (auto _ : state) {
    assignment.node = node;
    auto id = ledger.Place(demand, assignment);
    benchmark::DoNotOptimize(ledger.Release(*id));
    node = (node + 1) % ledger.cluster().node_count();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LedgerPlaceRelease);

// A policy chooses among 1,213 nodes (half of them partly used), then place and release.
void BM_ChoosePlaceRelease(benchmark::State& state, const char* policy_name) {
  Ledger ledger(TraceSizedCluster());
  std::vector<ShapeCount> shapes = {{{4000, 470, 1, {}}, 40},
                                    {{4000, 810, 1, {}}, 30},
                                    {{8000, 1000, 1, {}}, 25},
                                    {{12000, 0, 0, {}}, 5}};
  PolicyOptions options;
  options.seed = 42;
  options.shape_counts = shapes;
  std::unique_ptr<Policy> policy =
      std::move(MakePolicy(policy_name, ledger.cluster(), options).value());
  // Fill half the nodes with a 0.47 share on GPU 0 so that nodes differ.
  Demand filler = CompileDemand(ledger.cluster(), Fraction(470));
  for (size_t n = 0; n < ledger.cluster().node_count(); n += 2) {
    Assignment a;
    a.node = n;
    a.gpus.count = 1;
    (void)ledger.Place(filler, a);
  }
  const Request requests[] = {Fraction(470), Fraction(810), Fraction(250)};
  std::vector<Demand> demands;
  for (const Request& r : requests) demands.push_back(CompileDemand(ledger.cluster(), r));
  size_t i = 0;
  for (auto _ : state) {
    const Demand& d = demands[i++ % demands.size()];
    std::optional<Assignment> a = policy->Choose(ledger.cluster(), d);
    auto id = ledger.Place(d, *a);
    benchmark::DoNotOptimize(ledger.Release(*id));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_ChoosePlaceRelease, bestfit, "bestfit");
BENCHMARK_CAPTURE(BM_ChoosePlaceRelease, fgd, "fgd");
BENCHMARK_CAPTURE(BM_ChoosePlaceRelease, tessera, "tessera");

// One replay of the trace's `default` variant (seed 42), reading and preparing excluded.
void BM_ReplayDefault(benchmark::State& state, const char* policy_name) {
  const std::string dir = TESSERA_ALIBABA_TRACE_DIR;
  if (!std::filesystem::exists(dir + "/openb_pod_list_default.csv")) {
    state.SkipWithError("trace not found next to the repository");
    return;
  }
  auto trace = sim::alibaba::LoadTrace(dir, "default");
  auto prepared = sim::alibaba::PrepareTrace(*trace);
  sim::alibaba::ReplayOptions options;
  for (auto _ : state) {
    auto result = sim::alibaba::Replay(*prepared, policy_name, options);
    benchmark::DoNotOptimize(result);
    state.counters["pods"] = result->pods;
  }
}
BENCHMARK_CAPTURE(BM_ReplayDefault, fgd, "fgd")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ReplayDefault, bestfit, "bestfit")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ReplayDefault, tessera, "tessera")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tessera::placement

BENCHMARK_MAIN();
