#include "scheduler/server.h"

#include <httplib.h>

#include <condition_variable>
#include <thread>
#include <utility>

#include "common/log.h"
#include "kube/backoff.h"
#include "kube/config.h"
#include "kube/watch.h"
#include "scheduler/extender.h"

namespace tessera::scheduler {
using nlohmann::json;

Result<std::pair<std::string, int>> ParseHostPort(const std::string& text,
                                                  const std::string& flag) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return Status::Error(flag + " \"" + text + "\" is not HOST:PORT");
  }
  int port = 0;
  for (size_t i = colon + 1; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9' || port > 65535) {
      return Status::Error(flag + " \"" + text + "\": the port is not a number in 1..65535");
    }
    port = port * 10 + (text[i] - '0');
  }
  if (port < 1 || port > 65535) {
    return Status::Error(flag + " \"" + text + "\": the port is not a number in 1..65535");
  }
  return std::pair{text.substr(0, colon), port};
}

namespace {

class KubeBinder : public Binder {
 public:
  explicit KubeBinder(kube::Client& client) : client_(client) {}

  Status Bind(const std::string& namespace_name, const std::string& name, const std::string& uid,
              const std::string& node,
              const std::map<std::string, std::string>& annotations) override {
    json binding = {{"apiVersion", "v1"},
                    {"kind", "Binding"},
                    {"metadata", {{"name", name}, {"namespace", namespace_name}, {"uid", uid}}},
                    {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", node}}}};
    if (!annotations.empty()) binding["metadata"]["annotations"] = annotations;
    kube::ApiResult result =
        client_.Create(kube::ObjectPath(kube::kPods, namespace_name, name, "binding"), binding);
    return result.ok() ? Status::Ok() : result.status();
  }

  Result<json> GetPod(const std::string& namespace_name, const std::string& name) override {
    kube::ApiResult result = client_.Get(kube::ObjectPath(kube::kPods, namespace_name, name));
    if (!result.ok()) return result.status();
    return std::move(result).value();
  }

 private:
  kube::Client& client_;
};

// Keeps the State in step with one collection; `synced` once the first list is in.
class Mirror {
 public:
  Mirror(kube::Client& client, State& state, bool nodes)
      : client_(client), state_(state), nodes_(nodes) {}

  void Run(const std::stop_token& stop) {
    kube::MirrorHandlers handlers;
    handlers.replace = [&](const std::vector<json>& items) {
      if (nodes_) {
        state_.ReplaceAllNodes(items);
      } else {
        state_.ReplaceAllPods(items);
      }
      log::Write(log::Level::kInfo, "watch", "listed %zu %s", items.size(),
                 nodes_ ? "nodes" : "pods");
      std::lock_guard lock(mutex_);
      synced_ = true;
      changed_.notify_all();
    };
    handlers.upsert = [&](const json& object) {
      if (nodes_) {
        state_.UpsertNode(object);
      } else {
        state_.UpsertPod(object);
      }
    };
    handlers.remove = [&](const json& object) {
      if (nodes_) {
        state_.RemoveNode(object["metadata"].value("name", ""));
      } else {
        state_.RemovePod(object);
      }
    };
    kube::MirrorCollection(client_, kube::CollectionPath(nodes_ ? kube::kNodes : kube::kPods), {},
                           handlers, stop);
  }

  bool synced() const {
    std::lock_guard lock(mutex_);
    return synced_;
  }
  bool WaitSynced(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    return changed_.wait(lock, std::move(stop), [&] { return synced_; });
  }

 private:
  kube::Client& client_;
  State& state_;
  const bool nodes_;
  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  bool synced_ = false;
};

std::string MetricsText(const State& state, const Extender& extender, bool leader) {
  metrics::TextWriter w;
  w.Family("tessera_scheduler_leader", "gauge", "1 when this replica holds the lease and serves.");
  w.Sample("tessera_scheduler_leader", {}, leader ? 1 : 0);
  w.Family("tessera_scheduler_pods", "gauge",
           "Pods holding Tessera GPUs (bound), and reservations.");
  w.Sample("tessera_scheduler_pods", {{"state", "bound"}},
           static_cast<double>(state.pods_holding()));
  w.Sample("tessera_scheduler_pods", {{"state", "reserved"}},
           static_cast<double>(state.reservations()));
  const std::vector<GpuView> gpus = state.Gpus();
  auto labels = [](const GpuView& gpu) {
    return metrics::Labels{{"node", gpu.node},
                           {"gpu", gpu.uuid},
                           {"model", gpu.model},
                           {"mode", gpu.shared ? "shared" : "whole"}};
  };
  w.Family("tessera_scheduler_gpu_memory_bytes", "gauge",
           "A GPU's memory, and the sum of the limits granted on it.");
  for (const GpuView& gpu : gpus) {
    metrics::Labels total = labels(gpu);
    total.emplace_back("kind", "total");
    w.Sample("tessera_scheduler_gpu_memory_bytes", total,
             static_cast<double>(gpu.memory_mib * 1048576));
    metrics::Labels allocated = labels(gpu);
    allocated.emplace_back("kind", "allocated");
    w.Sample("tessera_scheduler_gpu_memory_bytes", allocated,
             static_cast<double>(gpu.allocated_memory_mib * 1048576));
  }
  w.Family("tessera_scheduler_gpu_tenants", "gauge", "Containers holding a share of a GPU.");
  for (const GpuView& gpu : gpus) {
    w.Sample("tessera_scheduler_gpu_tenants", labels(gpu), gpu.tenants);
  }
  w.Family("tessera_scheduler_gpu_allocated_ratio", "gauge",
           "The share of a GPU's compute granted, 0..1 (gpucores; memory is "
           "tessera_scheduler_gpu_memory_bytes).");
  for (const GpuView& gpu : gpus) {
    w.Sample("tessera_scheduler_gpu_allocated_ratio", labels(gpu), gpu.allocated_milli / 1000.0);
  }
  w.Family("tessera_scheduler_extender_call_seconds", "histogram",
           "Time to answer one extender call.");
  for (const auto& [verb, stats] : extender.stats()) {
    w.Histogram("tessera_scheduler_extender_call_seconds", {{"verb", verb}}, stats.latency.Take());
  }
  w.Family("tessera_scheduler_extender_errors_total", "counter",
           "Extender calls answered with an error.");
  for (const auto& [verb, stats] : extender.stats()) {
    w.Sample("tessera_scheduler_extender_errors_total", {{"verb", verb}},
             static_cast<double>(stats.errors.load()));
  }
  return w.str();
}

void Answer(httplib::Response& response, const HttpAnswer& answer) {
  response.status = answer.status;
  response.set_content(answer.body, "application/json");
}

}  // namespace

void SetUpExtender(httplib::Server& server, Extender& extender) {
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(kKeepAliveCalls);
  server.new_task_queue = [] { return new httplib::ThreadPool(kServerThreads); };
  server.Post("/filter", [&extender](const httplib::Request& q, httplib::Response& r) {
    Answer(r, extender.Filter(q.body));
  });
  server.Post("/prioritize", [&extender](const httplib::Request& q, httplib::Response& r) {
    Answer(r, extender.Prioritize(q.body));
  });
  server.Post("/bind", [&extender](const httplib::Request& q, httplib::Response& r) {
    Answer(r, extender.Bind(q.body));
  });
  server.Post("/preempt", [&extender](const httplib::Request& q, httplib::Response& r) {
    Answer(r, extender.Preempt(q.body));
  });
}

int Run(const ServerOptions& options, const std::stop_token& stop) {
  auto bind = ParseHostPort(options.bind, "--bind");
  auto metrics_bind = ParseHostPort(options.metrics_bind, "--metrics-bind");
  if (!bind.ok() || !metrics_bind.ok()) {
    log::Write(log::Level::kError, "main", "%s",
               (!bind.ok() ? bind.status() : metrics_bind.status()).message().c_str());
    return 2;
  }
  Result<kube::Config> config = options.kubeconfig.empty()
                                    ? kube::LoadDefaultConfig()
                                    : kube::LoadKubeconfig(options.kubeconfig);
  if (!config.ok()) {
    log::Write(log::Level::kError, "main", "%s", config.status().message().c_str());
    return 2;
  }
  auto client = kube::Client::FromConfig(*config);
  if (!client.ok()) {
    log::Write(log::Level::kError, "main", "%s", client.status().message().c_str());
    return 2;
  }
  State state(options.state);
  KubeBinder binder(**client);
  Extender extender(state, binder);
  std::atomic<bool> leader{false};

  Mirror nodes(**client, state, /*nodes=*/true);
  Mirror pods(**client, state, /*nodes=*/false);
  std::stop_source watches;
  std::stop_callback forward(stop, [&] { watches.request_stop(); });
  std::jthread node_watch([&] { nodes.Run(watches.get_token()); });
  std::jthread pod_watch([&] { pods.Run(watches.get_token()); });
  std::jthread expiry([&] {
    while (kube::Clock::Real().SleepFor(std::chrono::seconds(1), watches.get_token())) {
      state.ExpireReservations();
    }
  });

  auto ready = [&] { return nodes.synced() && pods.synced() && leader.load(); };
  httplib::Server plain;
  plain.Get("/healthz", [](const httplib::Request&, httplib::Response& r) {
    r.set_content("ok\n", "text/plain");
  });
  plain.Get("/readyz", [&](const httplib::Request&, httplib::Response& r) {
    bool is_ready = ready();
    r.status = is_ready ? 200 : 503;
    r.set_content(is_ready ? "ok\n" : (leader ? "listing the cluster\n" : "standby\n"),
                  "text/plain");
  });
  plain.Get("/metrics", [&](const httplib::Request&, httplib::Response& r) {
    r.set_content(MetricsText(state, extender, leader), "text/plain; version=0.0.4");
  });
  if (!plain.bind_to_port(metrics_bind->first.c_str(), metrics_bind->second)) {
    log::Write(log::Level::kError, "main", "--metrics-bind %s: cannot listen (in use?)",
               options.metrics_bind.c_str());
    watches.request_stop();
    return 2;
  }
  std::jthread plain_thread([&] { plain.listen_after_bind(); });
  auto stop_plain = [&] {
    plain.stop();
    watches.request_stop();
  };

  std::optional<LeaderElector> elector;
  if (options.leader_elect) {
    elector.emplace(**client, options.lease);
    log::Write(log::Level::kInfo, "leader", "standby as \"%s\", waiting for lease %s/%s",
               options.lease.identity.c_str(), options.lease.namespace_name.c_str(),
               options.lease.name.c_str());
    if (!elector->Acquire(stop)) {
      stop_plain();
      return 0;
    }
  }
  leader = true;
  if (!nodes.WaitSynced(stop) || !pods.WaitSynced(stop)) {
    stop_plain();
    return 0;
  }

  httplib::SSLServer secure(options.cert_file.c_str(), options.key_file.c_str());
  if (!secure.is_valid()) {
    log::Write(log::Level::kError, "main", "--cert-file %s / --key-file %s: cannot load them",
               options.cert_file.c_str(), options.key_file.c_str());
    stop_plain();
    return 2;
  }
  // Bodies up to kMaxBodyBytes are read and judged by the handlers (400 with a reason); the
  // library refuses anything much larger before it is read.
  secure.set_payload_max_length(kMaxBodyBytes * 2);
  SetUpExtender(secure, extender);
  secure.Post("/webhook", [&](const httplib::Request& q, httplib::Response& r) {
    AdmissionOptions admission = options.admission;
    admission.max_gpus_per_node = state.MaxGpusPerNode();
    AdmissionResult result = HandleAdmission(q.body, admission);
    r.status = result.http_status;
    r.set_content(result.body,
                  result.content_type.empty() ? "application/json" : result.content_type.c_str());
  });
  secure.Get("/healthz", [](const httplib::Request&, httplib::Response& r) {
    r.set_content("ok\n", "text/plain");
  });
  secure.Get("/readyz", [&](const httplib::Request&, httplib::Response& r) {
    r.status = ready() ? 200 : 503;
    r.set_content(ready() ? "ok\n" : "not ready\n", "text/plain");
  });
  if (!secure.bind_to_port(bind->first.c_str(), bind->second)) {
    log::Write(log::Level::kError, "main", "--bind %s: cannot listen (in use?)",
               options.bind.c_str());
    stop_plain();
    return 1;
  }
  std::jthread secure_thread([&] { secure.listen_after_bind(); });
  log::Write(log::Level::kInfo, "main", "serving the extender and webhook on https://%s",
             options.bind.c_str());

  int code = 0;
  if (elector.has_value()) {
    code = elector->Hold(stop) ? 0 : 1;
  } else {
    while (kube::Clock::Real().SleepFor(std::chrono::hours(1), stop)) {
    }
  }
  leader = false;
  secure.stop();
  stop_plain();
  return code;
}

}  // namespace tessera::scheduler
