// tessera-scheduler's extender at cluster scale, over HTTPS as kube-scheduler calls it.
//
// A State holds --nodes synthetic Nodes of --gpus-per-node shared GPUs (read from their
// `tessera.io/node-gpus` annotations through State::UpsertNode, as the watch feeds them; no
// kubelets), served by tessera-scheduler's own extender set-up (SetUpExtender) on an
// httplib::SSLServer whose certificate is made with openssl at start. --clients threads, each on
// one kept-alive HTTPS connection, do what kube-scheduler does for every pod: POST /filter with
// the pod and every node's name (nodeCacheCapable), then POST /bind to the node chosen. The API
// server is a binder in this process that counts the bindings: its write is the API server's
// cost, not the scheduler's, so what is measured is the scheduler's share.
//
// Once the clients hold more than --live-pods pods bound, each deletes its oldest (through
// State::RemovePod, as the pod watch would), so a long run does not fill the cluster.
//
//   build-scale/bin/tessera_scheduler_scale_bench [--nodes 1000] [--gpus-per-node 8]
//       [--pods 20000] [--clients 4] [--seed 42]
//
// Prints filter+bind pairs per second (wall clock over the whole run), p50/p99/max of each HTTP
// call as the client saw it, and the extender's own histogram (what /metrics exports).
#include <httplib.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "placement/policy.h"
#include "scheduler/extender.h"
#include "scheduler/server.h"
#include "scheduler/state.h"

namespace tessera::scheduler {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  int nodes = 1000;
  int gpus_per_node = 8;
  int64_t gpu_memory_mib = 81920;
  int replicas = 32;
  int pods = 20000;
  int clients = 4;
  int live_pods = 50000;
  uint64_t seed = 42;
  std::string policy = "binpack";
};

// A Node as tessera-node annotates it: `gpus` shared GPUs of `memory_mib` each.
json SyntheticNode(const std::string& name, int gpus, int64_t memory_mib, int replicas) {
  json list = json::array();
  for (int i = 0; i < gpus; ++i) {
    list.push_back({{"index", i},
                    {"uuid", "GPU-" + name + "-" + std::to_string(i)},
                    {"model", "NVIDIA A100-SXM4-80GB"},
                    {"memoryMiB", memory_mib},
                    {"numa", i < gpus / 2 ? 0 : 1},
                    {"mode", "shared"},
                    {"replicas", replicas},
                    {"healthy", true}});
  }
  json annotation = {{"version", 1}, {"gpus", list}};
  return {
      {"metadata", {{"name", name}, {"annotations", {{kNodeGpusAnnotation, annotation.dump()}}}}}};
}

// One pod as kube-scheduler sends it, serialised once before the run.
struct PodCase {
  std::string name;
  std::string uid;
  std::string json;
};

PodCase SyntheticPod(int index, int64_t memory_mib, int cores) {
  const std::string name = "bench-" + std::to_string(index);
  json pod = {{"metadata",
               {{"name", name},
                {"namespace", "default"},
                {"uid", "uid-" + name},
                {"annotations", json::object()}}},
              {"spec",
               {{"schedulerName", "tessera-scheduler"},
                {"containers",
                 {{{"name", "main"},
                   {"image", "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"},
                   {"resources",
                    {{"limits",
                      {{"nvidia.com/gpu", 1},
                       {"nvidia.com/gpumem", memory_mib},
                       {"nvidia.com/gpucores", cores}}}}}}}}}},
              {"status", {{"phase", "Pending"}}}};
  return {name, "uid-" + name, pod.dump()};
}

// The API server's side of /bind: counts the bindings, holds no pods (every /filter ran here).
class CountingBinder : public Binder {
 public:
  Status Bind(const std::string&, const std::string&, const std::string&, const std::string&,
              const std::map<std::string, std::string>&) override {
    bindings.fetch_add(1, std::memory_order_relaxed);
    return Status::Ok();
  }
  Result<json> GetPod(const std::string&, const std::string& name) override {
    return Status::Error("pods \"" + name + "\": the bench binds only pods it filtered");
  }
  std::atomic<uint64_t> bindings{0};
};

// A self-signed RSA-2048 certificate for 127.0.0.1 (the dev cluster's keys are RSA-2048 too):
// cert.pem and key.pem in a fresh directory under /tmp.
Result<std::filesystem::path> MakeCertificate() {
  char pattern[] = "/tmp/tessera-scale-bench-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return Status::Error("mkdtemp /tmp: cannot create");
  const std::filesystem::path dir = pattern;
  const std::string command =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
      " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
      (dir / "key.pem").string() + " -out " + (dir / "cert.pem").string() + " 2>/dev/null";
  if (std::system(command.c_str()) != 0) {
    std::filesystem::remove_all(dir);
    return Status::Error("openssl req -x509 failed (is openssl installed?)");
  }
  return dir;
}

struct ClientResult {
  std::vector<double> filter_us, bind_us;
  int unplaced = 0;
  std::string error;  // the first failed call, if any
};

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// One kube-scheduler connection: filter and bind the pods `next` hands out until none are left.
void RunClient(int port, const std::filesystem::path& ca, const std::vector<PodCase>& pods,
               const std::string& node_names, std::atomic<int>& next, int live_pods, State& state,
               ClientResult& out) {
  httplib::SSLClient client("127.0.0.1", port);
  client.set_ca_cert_path(ca.c_str());
  client.enable_server_certificate_verification(true);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);      // as Go's net/http, which kube-scheduler uses
  std::deque<const PodCase*> bound;  // this client's pods still holding GPUs, oldest first
  const std::string suffix = R"(,"Nodes":null,"NodeNames":)" + node_names + "}";
  for (int i = next.fetch_add(1); i < static_cast<int>(pods.size()) && out.error.empty();
       i = next.fetch_add(1)) {
    const PodCase& pod = pods[i];
    const std::string body = R"({"Pod":)" + pod.json + suffix;
    Clock::time_point start = Clock::now();
    httplib::Result filtered = client.Post("/filter", body, "application/json");
    out.filter_us.push_back(Micros(Clock::now() - start));
    if (!filtered || filtered->status != 200) {
      out.error =
          "POST /filter: " + (filtered ? std::to_string(filtered->status) + " " + filtered->body
                                       : httplib::to_string(filtered.error()));
      break;
    }
    json result = json::parse(filtered->body, nullptr, /*allow_exceptions=*/false);
    if (result.is_discarded() || !result.value("Error", "").empty() ||
        !result["NodeNames"].is_array()) {
      out.error = "POST /filter answered " + filtered->body.substr(0, 200);
      break;
    }
    if (result["NodeNames"].empty()) {
      ++out.unplaced;
      continue;
    }
    const std::string bind = json{
        {"PodName", pod.name},
        {"PodNamespace", "default"},
        {"PodUID", pod.uid},
        {"Node",
         result["NodeNames"][0]}}.dump();
    start = Clock::now();
    httplib::Result bound_answer = client.Post("/bind", bind, "application/json");
    out.bind_us.push_back(Micros(Clock::now() - start));
    if (!bound_answer || bound_answer->status != 200 ||
        json::parse(bound_answer->body, nullptr, false).value("Error", "?") != "") {
      out.error = "POST /bind: " +
                  (bound_answer ? bound_answer->body : httplib::to_string(bound_answer.error()));
      break;
    }
    bound.push_back(&pod);
    if (static_cast<int>(bound.size()) > live_pods) {
      // The pod watch's delete.
      state.RemovePod(json{{"metadata",
                            {{"name", bound.front()->name},
                             {"namespace", "default"},
                             {"uid", bound.front()->uid}}}});
      bound.pop_front();
    }
  }
}

struct Summary {
  double p50_us = 0, p99_us = 0, max_us = 0;
};

Summary Summarise(std::vector<double> samples) {
  if (samples.empty()) return {};
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[static_cast<size_t>(q * static_cast<double>(samples.size() - 1))];
  };
  return {at(0.50), at(0.99), samples.back()};
}

// The smallest bucket bound under which `q` of the extender's calls finished.
double ServerQuantileBound(const metrics::LatencyHistogram::Snapshot& histogram, double q) {
  const double wanted = q * static_cast<double>(histogram.count);
  for (size_t b = 0; b < histogram.bounds.size(); ++b) {
    if (static_cast<double>(histogram.cumulative[b]) >= wanted) return histogram.bounds[b];
  }
  return std::numeric_limits<double>::infinity();
}

std::string Millis(double us) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", us / 1000.0);
  return text;
}

int RunBench(const Options& options) {
  Result<std::filesystem::path> certificate = MakeCertificate();
  if (!certificate.ok()) {
    std::fprintf(stderr, "scheduler_scale_bench: %s\n", certificate.status().message().c_str());
    return 1;
  }
  const std::filesystem::path dir = *certificate;

  StateOptions state_options;
  state_options.policy = options.policy;
  state_options.seed = options.seed;
  State state(state_options);
  json names = json::array();
  for (int n = 0; n < options.nodes; ++n) {
    char name[32];
    std::snprintf(name, sizeof name, "gpu-node-%04d", n);
    state.UpsertNode(
        SyntheticNode(name, options.gpus_per_node, options.gpu_memory_mib, options.replicas));
    names.push_back(name);
  }
  const std::string node_names = names.dump();

  std::mt19937_64 random(options.seed);
  std::uniform_int_distribution<int64_t> memory_mib(1024, 12288);  // 1-12 GiB
  std::uniform_int_distribution<int> cores(0, 15);
  std::vector<PodCase> pods;
  pods.reserve(static_cast<size_t>(options.pods));
  for (int i = 0; i < options.pods; ++i) {
    const int64_t memory = memory_mib(random);
    pods.push_back(SyntheticPod(i, memory, cores(random)));
  }

  CountingBinder binder;
  Extender extender(state, binder);
  httplib::SSLServer server((dir / "cert.pem").c_str(), (dir / "key.pem").c_str());
  if (!server.is_valid()) {
    std::fprintf(stderr, "scheduler_scale_bench: the server cannot load %s\n", dir.c_str());
    std::filesystem::remove_all(dir);
    return 1;
  }
  SetUpExtender(server, extender);
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread listener([&] { server.listen_after_bind(); });
  // The socket listens already; this wait is for stop(), which is lost before the accept loop.
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  std::vector<ClientResult> results(static_cast<size_t>(options.clients));
  std::atomic<int> next{0};
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  const Clock::time_point start = Clock::now();
  {
    std::vector<std::jthread> clients;
    clients.reserve(results.size());
    for (ClientResult& result : results) {
      clients.emplace_back([&] {
        RunClient(port, dir / "cert.pem", pods, node_names, next,
                  options.live_pods / options.clients, state, result);
      });
    }
  }
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  server.stop();
  listener.join();
  std::filesystem::remove_all(dir);

  std::vector<double> filter_us, bind_us;
  int unplaced = 0;
  for (const ClientResult& result : results) {
    if (!result.error.empty()) {
      std::fprintf(stderr, "scheduler_scale_bench: %s\n", result.error.c_str());
      return 1;
    }
    filter_us.insert(filter_us.end(), result.filter_us.begin(), result.filter_us.end());
    bind_us.insert(bind_us.end(), result.bind_us.begin(), result.bind_us.end());
    unplaced += result.unplaced;
  }
  auto cpu_s = [](const rusage& r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  const double pairs = static_cast<double>(bind_us.size());

  std::printf(
      "tessera-scheduler extender over HTTPS: %d nodes x %d GPUs (%lld MiB, shared, %d "
      "replicas), policy %s\n",
      options.nodes, options.gpus_per_node, static_cast<long long>(options.gpu_memory_mib),
      options.replicas, options.policy.c_str());
  std::printf("%d pods (gpumem 1-12 GiB, gpucores 0-15, seed %llu), %d clients, %u cores\n\n",
              options.pods, static_cast<unsigned long long>(options.seed), options.clients,
              std::thread::hardware_concurrency());
  std::printf("filter+bind pairs/s  %.0f  (%zu bound, %d unplaced, %.2f s wall)\n", pairs / wall_s,
              bind_us.size(), unplaced, wall_s);
  std::printf("CPU per pair         %.0f us  (server and clients together, %.2f cores busy)\n\n",
              (cpu_s(after) - cpu_s(before)) / pairs * 1e6,
              (cpu_s(after) - cpu_s(before)) / wall_s);
  std::printf("%-8s %7s %10s %10s %10s %12s %14s\n", "call", "n", "p50 ms", "p99 ms", "max ms",
              "server mean", "server p99 <=");
  for (auto [verb, samples] : {std::pair{"filter", &filter_us}, std::pair{"bind", &bind_us}}) {
    const Summary summary = Summarise(*samples);
    const metrics::LatencyHistogram::Snapshot server_side = extender.stats(verb).latency.Take();
    const double mean_us =
        server_side.count > 0 ? server_side.sum / static_cast<double>(server_side.count) * 1e6 : 0;
    std::printf("%-8s %7zu %10s %10s %10s %9s ms %11s ms\n", verb, samples->size(),
                Millis(summary.p50_us).c_str(), Millis(summary.p99_us).c_str(),
                Millis(summary.max_us).c_str(), Millis(mean_us).c_str(),
                Millis(ServerQuantileBound(server_side, 0.99) * 1e6).c_str());
  }
  return binder.bindings.load() == bind_us.size() ? 0 : 1;
}

}  // namespace
}  // namespace tessera::scheduler

int main(int argc, char** argv) {
  tessera::scheduler::Options options;
  CLI::App app{
      "tessera_scheduler_scale_bench: kube-scheduler's filter+bind calls against "
      "tessera-scheduler's extender over HTTPS, on a synthetic cluster (no kubelets)."};
  app.add_option("--nodes", options.nodes, "synthetic Nodes")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--gpus-per-node", options.gpus_per_node, "shared GPUs per node")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  app.add_option("--gpu-memory-mib", options.gpu_memory_mib, "memory of each GPU")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 30));
  app.add_option("--replicas", options.replicas, "tenants per shared GPU at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--pods", options.pods, "pods to filter and bind")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  app.add_option("--clients", options.clients, "concurrent kept-alive HTTPS connections")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--live-pods", options.live_pods,
                 "pods kept bound at most; beyond, the oldest are deleted")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  app.add_option("--seed", options.seed, "seeds the pods' requests and the policy's tie-breaks")
      ->capture_default_str();
  app.add_option("--policy", options.policy, "placement policy")
      ->capture_default_str()
      ->check(CLI::IsMember(tessera::placement::PolicyNames()));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return tessera::scheduler::RunBench(options);
}
