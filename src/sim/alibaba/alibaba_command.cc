// `tessera sim alibaba`: replay the Alibaba GPU-sharing trace under placement policies.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/cli.h"
#include "common/strings.h"
#include "common/units.h"
#include "placement/policy.h"
#include "sim/alibaba/replay.h"
#include "sim/alibaba/report.h"
#include "sim/alibaba/trace.h"
#include "sim/sim_command.h"

namespace tessera::sim {
namespace {

namespace ali = tessera::sim::alibaba;

constexpr const char* kCommand = "tessera sim alibaba";

// Everything `tessera sim alibaba` runs with, checked.
struct AlibabaOptions {
  std::string trace_dir = TESSERA_ALIBABA_TRACE_DIR;
  std::vector<std::string> variants;
  std::vector<std::string> policies;
  std::vector<uint64_t> seeds;
  double inflation = 1.3;
  bool fgd_exact = false;
  double fgd_coverage = 0.95;
  bool detail = false;
  bool json = false;
  std::string plot_path;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
  bool quiet = false;
  std::string help;  // set: --help was asked for; print it and run nothing
};

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> items;
  for (std::string_view item : Split(text, ',')) {
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

Result<std::vector<uint64_t>> ParseSeeds(const std::string& text) {
  std::vector<uint64_t> seeds;
  for (const std::string& item : SplitList(text)) {
    size_t dash = item.find('-');
    if (dash == std::string::npos) {
      auto seed = ParseUnsigned(item, "--seeds", 0, UINT32_MAX);
      if (!seed.ok()) return seed.status();
      seeds.push_back(*seed);
      continue;
    }
    auto first = ParseUnsigned(item.substr(0, dash), "--seeds", 0, UINT32_MAX);
    if (!first.ok()) return first.status();
    auto last = ParseUnsigned(item.substr(dash + 1), "--seeds", 0, UINT32_MAX);
    if (!last.ok()) return last.status();
    if (*last < *first || *last - *first > 10000) {
      return Status::Error("--seeds: range \"" + item + "\" is empty or longer than 10000");
    }
    for (uint64_t s = *first; s <= *last; ++s) seeds.push_back(s);
  }
  if (seeds.empty()) return Status::Error("--seeds: no seed in \"" + text + "\"");
  return seeds;
}

Result<AlibabaOptions> ParseAlibabaOptions(int argc, char** argv) {
  AlibabaOptions options;
  std::string variant_arg = "default";
  std::string policy_arg = "bestfit,fgd,tessera";
  std::string seeds_arg = "42-51";
  CLI::App app{
      "Replays the Alibaba GPU-sharing trace (cluster-trace-gpu-v2023, shipped in data/) with the "
      "FGD artifact's protocol: pods shuffled by seed, inflated to 130 % of cluster GPUs by "
      "resampling, arriving one by one and never leaving; a pod that fits nowhere is dropped. "
      "Reports, per policy, the unallocated GPU share when the arrived demand equals the cluster "
      "(100 %), its curve against arrived demand, and the fragmentation rate.",
      kCommand};
  app.footer(
      "example:\n"
      "  tessera sim alibaba --policy bestfit,fgd,tessera --seeds 42-51 --plot default.svg");
  app.add_option("--trace", options.trace_dir,
                 "folder with openb_node_list_gpu_node.csv and openb_pod_list_<variant>.csv")
      ->capture_default_str();
  app.add_option("--variant", variant_arg,
                 "pod list to replay; 'all' runs the 17 variants with published results; several "
                 "may be given, comma-separated")
      ->capture_default_str();
  app.add_option("--policy", policy_arg,
                 "comma-separated policies; known: " + Join(placement::PolicyNames(), " ") +
                     "; 'all' runs every one")
      ->capture_default_str();
  app.add_option("--seeds", seeds_arg, "seeds as 42-51, 42,43,44 or 42")->capture_default_str();
  app.add_option("--inflation", options.inflation,
                 "total GPU demand replayed, as a multiple of capacity")
      ->check(CLI::Range(0.001, 10.0))
      ->capture_default_str();
  app.add_flag("--fgd-exact", options.fgd_exact,
               "score FGD by its exact fragmentation growth instead of the artifact's quantised "
               "sigmoid");
  app.add_option("--fgd-coverage", options.fgd_coverage, "share of pods FGD's typical shapes cover")
      ->check(CLI::Range(0.001, 1.0))
      ->capture_default_str();
  app.add_flag("--detail", options.detail,
               "also show where the free GPU share sits at 100 % arrived");
  app.add_flag("--json", options.json, "print one JSON object on stdout instead of the table");
  app.add_option("--plot", options.plot_path,
                 "FILE.svg: draw allocated and unallocated GPU share against arrived demand");
  app.add_option("--jobs", options.jobs, "replays run in parallel (default: number of CPUs)")
      ->check(CLI::Range(1, 256));
  app.add_flag("--quiet", options.quiet, "no progress on stderr");
  if (Status parsed = ParseCommandLine(app, argc, argv, &options.help); !parsed.ok()) {
    return parsed;
  }
  if (!options.help.empty()) return options;

  auto seeds = ParseSeeds(seeds_arg);
  if (!seeds.ok()) return seeds.status();
  options.seeds = std::move(*seeds);
  options.variants = variant_arg == "all" ? ali::PublishedVariants() : SplitList(variant_arg);
  options.policies = policy_arg == "all" ? placement::PolicyNames() : SplitList(policy_arg);
  if (options.variants.empty()) return Status::Error("--variant: no variant given");
  if (options.policies.empty()) return Status::Error("--policy: no policy given");
  const std::vector<std::string>& known = placement::PolicyNames();
  for (const std::string& p : options.policies) {
    if (std::find(known.begin(), known.end(), p) == known.end()) {
      return Status::Error("--policy: unknown policy \"" + p + "\" (known: " + Join(known, " ") +
                           ")");
    }
  }
  return options;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kCommand, message.c_str());
  return 1;
}

int RunAlibaba(const AlibabaOptions& options) {
  const std::vector<std::string>& variants = options.variants;
  const std::vector<std::string>& policies = options.policies;
  const std::vector<uint64_t>& seeds = options.seeds;
  std::vector<ali::Trace> traces(variants.size());
  std::vector<ali::PreparedTrace> prepared;
  for (size_t i = 0; i < variants.size(); ++i) {
    auto trace = ali::LoadTrace(options.trace_dir, variants[i]);
    if (!trace.ok()) return Fail(trace.status().message());
    traces[i] = std::move(*trace);
  }
  for (const ali::Trace& trace : traces) {
    auto p = ali::PrepareTrace(trace);
    if (!p.ok()) return Fail(p.status().message());
    prepared.push_back(std::move(*p));
  }

  // Every (variant, policy, seed) is one independent replay.
  struct Task {
    size_t variant, policy, seed;
  };
  std::vector<Task> tasks;
  for (size_t v = 0; v < variants.size(); ++v) {
    for (size_t p = 0; p < policies.size(); ++p) {
      for (size_t s = 0; s < seeds.size(); ++s) tasks.push_back({v, p, s});
    }
  }
  std::vector<ali::VariantReport> reports(variants.size());
  for (size_t v = 0; v < variants.size(); ++v) {
    reports[v].variant = variants[v];
    for (const std::string& p : policies) {
      ali::PolicySummary summary;
      summary.name = p;
      summary.runs.resize(seeds.size());
      reports[v].policies.push_back(std::move(summary));
    }
  }
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex mutex;
  std::string first_error;
  auto worker = [&] {
    while (true) {
      size_t t = next.fetch_add(1);
      if (t >= tasks.size()) return;
      const Task& task = tasks[t];
      ali::ReplayOptions replay;
      replay.seed = seeds[task.seed];
      replay.inflation = options.inflation;
      replay.fgd_quantised = !options.fgd_exact;
      replay.fgd_coverage = options.fgd_coverage;
      auto result = ali::Replay(prepared[task.variant], policies[task.policy], replay);
      std::lock_guard<std::mutex> lock(mutex);
      if (!result.ok()) {
        if (first_error.empty()) first_error = result.status().message();
        continue;
      }
      size_t finished = ++done;
      if (!options.quiet) {
        std::fprintf(stderr, "[%zu/%zu] %s %s seed %llu: %.2f %% unallocated (%.2f s)\n", finished,
                     tasks.size(), variants[task.variant].c_str(), policies[task.policy].c_str(),
                     static_cast<unsigned long long>(replay.seed), result->unallocated_pct(100),
                     result->seconds);
      }
      reports[task.variant].policies[task.policy].runs[task.seed] = std::move(*result);
    }
  };
  const unsigned jobs = std::min<unsigned>(options.jobs, static_cast<unsigned>(tasks.size()));
  std::vector<std::thread> threads;
  for (unsigned j = 1; j < jobs; ++j) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  if (!first_error.empty()) return Fail(first_error);

  if (options.json) {
    std::fputs(ali::FormatJson(options.trace_dir, reports).c_str(), stdout);
  } else {
    std::fputs(ali::FormatText(reports, options.detail).c_str(), stdout);
  }
  if (!options.plot_path.empty()) {
    std::ofstream out(options.plot_path);
    out << ali::RenderSvg(reports);
    if (!out.good()) return Fail(options.plot_path + ": cannot write the plot");
    if (!options.quiet) std::fprintf(stderr, "wrote %s\n", options.plot_path.c_str());
  }
  return 0;
}

}  // namespace

int RunAlibabaCommand(int argc, char** argv) {
  return RunCommandLine(kCommand, argc, argv, ParseAlibabaOptions, RunAlibaba);
}

}  // namespace tessera::sim
