// tessera-scheduler as a service: watches Nodes and pods into the State, takes the lease when
// leader election is on, and then serves the extender and the admission webhook over HTTPS.
// Health, readiness and metrics are served over plain HTTP on their own address from the start,
// by the standby too.
//
//   HTTPS (--bind): POST /filter /prioritize /bind /preempt /webhook; GET /healthz /readyz
//   HTTP (--metrics-bind): GET /healthz /readyz /metrics
//
// Only the leader listens on --bind: a standby opens it once it holds the lease and has listed
// the cluster, so kube-scheduler and the API server always reach a leader with a full ledger.
// A leader that loses the lease stops serving and Run returns 1, so its supervisor restarts it
// as a standby with nothing stale in memory.
#ifndef TESSERA_SCHEDULER_SERVER_H_
#define TESSERA_SCHEDULER_SERVER_H_

#include <stop_token>
#include <string>

#include "scheduler/admission.h"
#include "scheduler/extender.h"
#include "scheduler/leader.h"
#include "scheduler/state.h"

namespace httplib {
class Server;
}

namespace tessera::scheduler {

struct ServerOptions {
  std::string kubeconfig;  // "" → in-cluster or $KUBECONFIG
  std::string bind = "0.0.0.0:9443";
  std::string metrics_bind = "127.0.0.1:9395";
  std::string cert_file;
  std::string key_file;
  bool leader_elect = true;
  LeaseOptions lease;
  StateOptions state;
  AdmissionOptions admission;
};

// Runs until `stop` (0) or a fatal error / lost leadership (1, after logging why).
int Run(const ServerOptions& options, const std::stop_token& stop);

// Calls one kept-alive connection may carry before the server closes it. httplib's default of 5
// costs kube-scheduler a TLS handshake every 5 calls, more than the calls themselves.
inline constexpr size_t kKeepAliveCalls = 1000;

// Threads serving connections. cpp-httplib gives each kept-alive connection a thread for as long
// as it is open, idle or not; its default (8 on a small machine) made the API server's webhook
// calls and kube-scheduler's binds queue behind idle connections (tens of ms, up to 0.5 s, in a
// burst of pod creations). kube-scheduler and the API server keep a few dozen connections open.
inline constexpr size_t kServerThreads = 64;

// Makes `server` tessera-scheduler's extender, as Run serves it (bench/scheduler serves the
// same): POST /filter /prioritize /bind /preempt answered by `extender`, on connections set for
// back-to-back calls: TCP_NODELAY (without it an answer's body waits behind its headers for the
// client's delayed ACK, about 40 ms a call), kKeepAliveCalls a connection, kServerThreads
// threads. The connection settings hold for every route of `server`. `extender` must outlive the
// server's listening.
void SetUpExtender(httplib::Server& server, Extender& extender);

// "host:port" → (host, port). Errors name the flag.
Result<std::pair<std::string, int>> ParseHostPort(const std::string& text, const std::string& flag);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_SERVER_H_
