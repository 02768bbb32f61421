#include "scheduler/leader.h"

#include <ctime>

#include "common/log.h"
#include "kube/backoff.h"

namespace tessera::scheduler {
using nlohmann::json;

std::string MicroTimeNow() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char text[40];
  size_t n = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(text + n, sizeof text - n, ".%06ldZ", now.tv_nsec / 1000);
  return text;
}

LeaderElector::LeaderElector(kube::Client& client, LeaseOptions options)
    : client_(client), options_(std::move(options)) {}

bool LeaderElector::TryAcquireOrRenew() {
  const std::string path = kube::ObjectPath(kube::kLeases, options_.namespace_name, options_.name);
  const auto now = std::chrono::steady_clock::now();
  const std::string stamp = MicroTimeNow();
  kube::ApiResult current = client_.Get(path);
  if (current.IsNotFound()) {
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.name}, {"namespace", options_.namespace_name}}},
                  {"spec",
                   {{"holderIdentity", options_.identity},
                    {"leaseDurationSeconds", options_.duration.count()},
                    {"acquireTime", stamp},
                    {"renewTime", stamp},
                    {"leaseTransitions", 0}}}};
    kube::ApiResult created =
        client_.Create(kube::CollectionPath(kube::kLeases, options_.namespace_name), lease);
    if (created.ok()) renewed_at_ = now;
    return created.ok();
  }
  if (!current.ok()) {
    log::Write(log::Level::kWarn, "leader", "reading lease %s: %s", path.c_str(),
               current.status().message().c_str());
    return false;
  }
  json lease = std::move(current).value();
  json& spec = lease["spec"];
  if (!spec.is_object()) spec = json::object();
  const std::string holder = spec.value("holderIdentity", "");
  const std::string renew = spec.value("renewTime", "");
  if (holder != observed_holder_ || renew != observed_renew_) {
    observed_holder_ = holder;
    observed_renew_ = renew;
    observed_at_ = now;
  }
  const bool mine = holder == options_.identity;
  if (!mine && !holder.empty() && now < observed_at_ + options_.duration) return false;
  if (!mine) {
    spec["acquireTime"] = stamp;
    spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  spec["holderIdentity"] = options_.identity;
  spec["leaseDurationSeconds"] = options_.duration.count();
  spec["renewTime"] = stamp;
  kube::ApiResult updated = client_.Update(path, lease);
  if (!updated.ok()) {
    if (!updated.IsConflict()) {
      log::Write(log::Level::kWarn, "leader", "writing lease %s: %s", path.c_str(),
                 updated.status().message().c_str());
    }
    return false;
  }
  if (!mine) {
    log::Write(log::Level::kInfo, "leader", "took lease %s/%s from \"%s\"",
               options_.namespace_name.c_str(), options_.name.c_str(), holder.c_str());
  }
  renewed_at_ = now;
  return true;
}

bool LeaderElector::Acquire(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    if (TryAcquireOrRenew()) return true;
    kube::Clock::Real().SleepFor(options_.retry_period, stop);
  }
  return false;
}

bool LeaderElector::Hold(const std::stop_token& stop) {
  while (true) {
    if (!kube::Clock::Real().SleepFor(options_.retry_period, stop)) {
      Release();
      return true;
    }
    if (!TryAcquireOrRenew() &&
        std::chrono::steady_clock::now() - renewed_at_ >= options_.duration) {
      log::Write(log::Level::kError, "leader", "lost lease %s/%s: not renewed for %llds",
                 options_.namespace_name.c_str(), options_.name.c_str(),
                 static_cast<long long>(options_.duration.count()));
      return false;
    }
  }
}

void LeaderElector::Release() {
  const std::string path = kube::ObjectPath(kube::kLeases, options_.namespace_name, options_.name);
  kube::ApiResult current = client_.Get(path);
  if (!current.ok()) return;
  json lease = std::move(current).value();
  if (lease["spec"].value("holderIdentity", "") != options_.identity) return;
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["renewTime"] = MicroTimeNow();
  kube::ApiResult updated = client_.Update(path, lease);
  if (updated.ok()) log::Write(log::Level::kInfo, "leader", "released the lease");
}

}  // namespace tessera::scheduler
