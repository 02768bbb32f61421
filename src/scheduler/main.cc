// tessera-scheduler: the kube-scheduler extender and admission webhook. See server.h.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>

#include "common/cli.h"
#include "common/log.h"
#include "common/signals.h"
#include "placement/policy.h"
#include "scheduler/server.h"

namespace {

std::string DefaultIdentity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "_" + std::to_string(getpid()) + "_" +
         std::to_string(static_cast<long long>(time(nullptr)));
}

int Main(int argc, char** argv) {
  tessera::scheduler::ServerOptions options;
  options.lease.identity = DefaultIdentity();
  int lease_seconds = static_cast<int>(options.lease.duration.count());
  int retry_ms = static_cast<int>(options.lease.retry_period.count());
  int reservation_ms = static_cast<int>(options.state.reservation_timeout.count());
  bool no_leader_elect = false;

  CLI::App app{
      "tessera-scheduler: places fractional GPU pods (HAMi's pod API: nvidia.com/gpumem, "
      "gpucores, ...) for kube-scheduler, as its extender (/filter, /prioritize, /bind, "
      "/preempt), and defaults and validates them as an admission webhook (/webhook)."};
  app.add_option("--kubeconfig", options.kubeconfig,
                 "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)");
  app.add_option("--bind", options.bind, "HOST:PORT of the HTTPS extender and webhook")
      ->capture_default_str();
  app.add_option("--metrics-bind", options.metrics_bind,
                 "HOST:PORT of plain-HTTP /healthz, /readyz and /metrics")
      ->capture_default_str();
  app.add_option("--cert-file", options.cert_file, "PEM serving certificate")->required();
  app.add_option("--key-file", options.key_file, "PEM private key of the certificate")->required();
  std::string policies;
  for (const std::string& name : tessera::placement::PolicyNames()) {
    policies += (policies.empty() ? "" : ", ") + name;
  }
  app.add_option("--policy", options.state.policy,
                 "placement policy for pods that name none (" + policies + ")")
      ->capture_default_str()
      ->check(CLI::IsMember(tessera::placement::PolicyNames()));
  app.add_option("--seed", options.state.seed, "the policy's tie-break seed")
      ->capture_default_str();
  app.add_option("--reservation-timeout-ms", reservation_ms,
                 "release a /filter reservation not bound within this long")
      ->capture_default_str()
      ->check(CLI::Range(1000, 600000));
  app.add_option("--scheduler-name", options.admission.scheduler_name,
                 "the schedulerName the webhook gives GPU pods")
      ->capture_default_str();
  app.add_flag("--no-leader-elect", no_leader_elect,
               "serve at once, without the lease (one replica only)");
  app.add_option("--lease-namespace", options.lease.namespace_name, "namespace of the Lease")
      ->capture_default_str();
  app.add_option("--lease-name", options.lease.name, "name of the Lease")->capture_default_str();
  app.add_option("--lease-identity", options.lease.identity,
                 "this replica's identity in the Lease (default: host_pid_time)");
  app.add_option("--lease-duration-s", lease_seconds,
                 "a standby takes over after this long without renewal")
      ->capture_default_str()
      ->check(CLI::Range(2, 300));
  app.add_option("--lease-retry-ms", retry_ms, "how often the lease is renewed or tried")
      ->capture_default_str()
      ->check(CLI::Range(100, 60000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  options.leader_elect = !no_leader_elect;
  options.lease.duration = std::chrono::seconds(lease_seconds);
  options.lease.retry_period = std::chrono::milliseconds(retry_ms);
  options.state.reservation_timeout = std::chrono::milliseconds(reservation_ms);
  if (options.lease.retry_period >= options.lease.duration) {
    std::fprintf(stderr,
                 "tessera-scheduler: --lease-retry-ms %d must be below --lease-duration-s %d\n",
                 retry_ms, lease_seconds);
    return 2;
  }

  // SIGTERM/SIGINT are taken by one thread (blocked everywhere else) and stop the service.
  const sigset_t signals = tessera::BlockStopSignals();
  std::stop_source stop;
  std::thread([&stop, signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::fprintf(stderr, "tessera-scheduler: %s: stopping\n", strsignal(signal));
    stop.request_stop();
    sigwait(&signals, &signal);
    std::_Exit(1);
  }).detach();
  return tessera::scheduler::Run(options, stop.get_token());
}

}  // namespace

int main(int argc, char** argv) {
  return tessera::RunMain("tessera-scheduler", [&] { return Main(argc, argv); });
}
