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

#include "common/units.h"
#include "placement/policy.h"
#include "sim/alibaba/replay.h"
#include "sim/alibaba/report.h"
#include "sim/alibaba/trace.h"
#include "sim/sim_command.h"

namespace tessera::sim {
namespace {

namespace ali = tessera::sim::alibaba;

constexpr const char* kUsage =
    "usage: tessera sim alibaba --trace DIR [options]\n"
    "\n"
    "Replays the Alibaba GPU-sharing trace (cluster-trace-gpu-v2023) with the FGD artifact's\n"
    "protocol: pods shuffled by seed, inflated to 130 % of cluster GPUs by resampling, arriving\n"
    "one by one and never leaving; a pod that fits nowhere is dropped. Reports, per policy, the\n"
    "unallocated GPU share when the arrived demand equals the cluster (100 %), its curve against\n"
    "arrived demand, and the fragmentation rate.\n"
    "\n"
    "options:\n"
    "  --trace DIR          folder with openb_node_list_gpu_node.csv and\n"
    "                       openb_pod_list_<variant>.csv (required)\n"
    "  --variant NAME       pod list to replay (default: default); 'all' runs the 17 variants\n"
    "                       with published results; several may be given, comma-separated\n"
    "  --policy LIST        comma-separated policies (default: bestfit,fgd,tessera); known:\n"
    "                       random spread binpack bestfit dotprod gpupacking gpuclustering fgd\n"
    "                       tessera tessera-online; 'all' runs every one\n"
    "  --seeds RANGE        seeds as 42-51, 42,43,44 or 42 (default: 42-51)\n"
    "  --inflation X        total GPU demand replayed, as a multiple of capacity (default 1.3)\n"
    "  --fgd-exact          score FGD by its exact fragmentation growth instead of the\n"
    "                       artifact's quantised sigmoid\n"
    "  --fgd-coverage X     share of pods FGD's typical shapes cover (default 0.95)\n"
    "  --detail             also show where the free GPU share sits at 100 % arrived\n"
    "  --json               print one JSON object on stdout instead of the table\n"
    "  --plot FILE.svg      draw allocated and unallocated GPU share against arrived demand\n"
    "  --jobs N             replays run in parallel (default: number of CPUs)\n"
    "  --quiet              no progress on stderr\n"
    "  -h, --help           this text\n"
    "\n"
    "example:\n"
    "  tessera sim alibaba --trace data/alibaba-gpu-v2023 --policy bestfit,fgd,tessera \\\n"
    "      --seeds 42-51 --plot default.svg\n";

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) items.push_back(text.substr(start, comma - start));
    start = comma + 1;
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

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tessera sim alibaba: %s\nRun `tessera sim alibaba --help` for usage.\n",
               message.c_str());
  return 2;
}

}  // namespace

int RunAlibabaCommand(int argc, char** argv) {
  std::string trace_dir;
  std::string variant_arg = "default";
  std::string policy_arg = "bestfit,fgd,tessera";
  std::string seeds_arg = "42-51";
  std::string plot_path;
  double inflation = 1.3;
  bool json = false;
  bool quiet = false;
  bool fgd_exact = false;
  bool detail = false;
  double fgd_coverage = 0.95;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--trace") {
      if (!value(&trace_dir)) return UsageError("--trace needs a folder");
    } else if (arg == "--variant") {
      if (!value(&variant_arg)) return UsageError("--variant needs a name");
    } else if (arg == "--policy") {
      if (!value(&policy_arg)) return UsageError("--policy needs a list");
    } else if (arg == "--seeds") {
      if (!value(&seeds_arg)) return UsageError("--seeds needs a range");
    } else if (arg == "--plot") {
      if (!value(&plot_path)) return UsageError("--plot needs a file name");
    } else if (arg == "--inflation") {
      if (!value(&v)) return UsageError("--inflation needs a number");
      char* end = nullptr;
      inflation = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(inflation > 0 && inflation <= 10)) {
        return UsageError("--inflation: \"" + v + "\" is not a number in (0, 10]");
      }
    } else if (arg == "--jobs") {
      if (!value(&v)) return UsageError("--jobs needs a number");
      auto n = ParseUnsigned(v, "--jobs", 1, 256);
      if (!n.ok()) return UsageError(n.status().message());
      jobs = static_cast<unsigned>(*n);
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--quiet") {
      quiet = true;
    } else if (arg == "--fgd-exact") {
      fgd_exact = true;
    } else if (arg == "--detail") {
      detail = true;
    } else if (arg == "--fgd-coverage") {
      if (!value(&v)) return UsageError("--fgd-coverage needs a number");
      char* end = nullptr;
      fgd_coverage = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(fgd_coverage > 0 && fgd_coverage <= 1)) {
        return UsageError("--fgd-coverage: \"" + v + "\" is not a number in (0, 1]");
      }
    } else {
      return UsageError("unknown option \"" + arg + "\"");
    }
  }
  if (trace_dir.empty()) return UsageError("--trace is required");
  auto seeds = ParseSeeds(seeds_arg);
  if (!seeds.ok()) return UsageError(seeds.status().message());
  std::vector<std::string> variants =
      variant_arg == "all" ? ali::PublishedVariants() : SplitList(variant_arg);
  std::vector<std::string> policies =
      policy_arg == "all" ? placement::PolicyNames() : SplitList(policy_arg);
  if (variants.empty()) return UsageError("--variant: no variant given");
  if (policies.empty()) return UsageError("--policy: no policy given");
  for (const std::string& p : policies) {
    if (std::find(placement::PolicyNames().begin(), placement::PolicyNames().end(), p) ==
        placement::PolicyNames().end()) {
      std::string known;
      for (const std::string& n : placement::PolicyNames()) {
        known += " ";
        known += n;
      }
      std::string message = "--policy: unknown policy \"";
      message += p;
      message += "\" (known:";
      message += known;
      message += ")";
      return UsageError(message);
    }
  }

  std::vector<ali::Trace> traces(variants.size());
  std::vector<ali::PreparedTrace> prepared;
  for (size_t i = 0; i < variants.size(); ++i) {
    auto trace = ali::LoadTrace(trace_dir, variants[i]);
    if (!trace.ok()) {
      std::fprintf(stderr, "tessera sim alibaba: %s\n", trace.status().message().c_str());
      return 1;
    }
    traces[i] = std::move(*trace);
  }
  for (const ali::Trace& trace : traces) {
    auto p = ali::PrepareTrace(trace);
    if (!p.ok()) {
      std::fprintf(stderr, "tessera sim alibaba: %s\n", p.status().message().c_str());
      return 1;
    }
    prepared.push_back(std::move(*p));
  }

  // Every (variant, policy, seed) is one independent replay.
  struct Task {
    size_t variant, policy, seed;
  };
  std::vector<Task> tasks;
  for (size_t v = 0; v < variants.size(); ++v) {
    for (size_t p = 0; p < policies.size(); ++p) {
      for (size_t s = 0; s < seeds->size(); ++s) tasks.push_back({v, p, s});
    }
  }
  std::vector<ali::VariantReport> reports(variants.size());
  for (size_t v = 0; v < variants.size(); ++v) {
    reports[v].variant = variants[v];
    for (const std::string& p : policies) {
      ali::PolicySummary summary;
      summary.name = p;
      summary.runs.resize(seeds->size());
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
      ali::ReplayOptions options;
      options.seed = (*seeds)[task.seed];
      options.inflation = inflation;
      options.fgd_quantised = !fgd_exact;
      options.fgd_coverage = fgd_coverage;
      auto result = ali::Replay(prepared[task.variant], policies[task.policy], options);
      std::lock_guard<std::mutex> lock(mutex);
      if (!result.ok()) {
        if (first_error.empty()) first_error = result.status().message();
        continue;
      }
      size_t finished = ++done;
      if (!quiet) {
        std::fprintf(stderr, "[%zu/%zu] %s %s seed %llu: %.2f %% unallocated (%.2f s)\n", finished,
                     tasks.size(), variants[task.variant].c_str(), policies[task.policy].c_str(),
                     static_cast<unsigned long long>(options.seed), result->unallocated_pct(100),
                     result->seconds);
      }
      reports[task.variant].policies[task.policy].runs[task.seed] = std::move(*result);
    }
  };
  jobs = std::min<unsigned>(jobs, static_cast<unsigned>(tasks.size()));
  std::vector<std::thread> threads;
  for (unsigned j = 1; j < jobs; ++j) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  if (!first_error.empty()) {
    std::fprintf(stderr, "tessera sim alibaba: %s\n", first_error.c_str());
    return 1;
  }

  if (json) {
    std::fputs(ali::FormatJson(trace_dir, reports).c_str(), stdout);
  } else {
    std::fputs(ali::FormatText(reports, detail).c_str(), stdout);
  }
  if (!plot_path.empty()) {
    std::ofstream out(plot_path);
    out << ali::RenderSvg(reports);
    if (!out.good()) {
      std::fprintf(stderr, "tessera sim alibaba: %s: cannot write the plot\n", plot_path.c_str());
      return 1;
    }
    if (!quiet) std::fprintf(stderr, "wrote %s\n", plot_path.c_str());
  }
  return 0;
}

}  // namespace tessera::sim
