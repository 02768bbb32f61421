// Active–standby for tessera-scheduler: a coordination.k8s.io/v1 Lease, as client-go's leader
// election keeps one. The holder renews it every retry period; a candidate takes it over when it
// has seen no renewal for the lease duration (measured on its own clock, from when it saw the
// lease change, so the two replicas' clocks need not agree). The leader that cannot renew for a
// lease duration steps down, so two leaders never act at once for longer than a retry period.
#ifndef TESSERA_SCHEDULER_LEADER_H_
#define TESSERA_SCHEDULER_LEADER_H_

#include <chrono>
#include <stop_token>
#include <string>

#include "kube/client.h"

namespace tessera::scheduler {

struct LeaseOptions {
  std::string namespace_name = "kube-system";
  std::string name = "tessera-scheduler";
  std::string identity;  // unique per process: host name, pid and start time
  std::chrono::seconds duration{10};
  std::chrono::milliseconds retry_period{2000};
};

class LeaderElector {
 public:
  LeaderElector(kube::Client& client, LeaseOptions options);

  // Blocks until this process holds the lease (true) or `stop` is requested (false).
  bool Acquire(const std::stop_token& stop);
  // Renews until the lease is lost (false) or `stop` is requested (true; the lease is then
  // released, so a standby takes over at once).
  bool Hold(const std::stop_token& stop);

  const LeaseOptions& options() const { return options_; }

 private:
  // One attempt: true when this process holds the lease afterwards.
  bool TryAcquireOrRenew();
  void Release();

  kube::Client& client_;
  const LeaseOptions options_;
  std::string observed_holder_;
  std::string observed_renew_;
  std::chrono::steady_clock::time_point observed_at_{};
  std::chrono::steady_clock::time_point renewed_at_{};
};

// "2026-12-01T19:02:03.123456Z" (the MicroTime a Lease carries).
std::string MicroTimeNow();

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_LEADER_H_
