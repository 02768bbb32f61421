#include "node/pod_cache.h"

#include <algorithm>
#include <utility>

#include "common/log.h"
#include "kube/client.h"
#include "kube/paths.h"
#include "kube/watch.h"

namespace tessera::node {

PodCache::PodCache() = default;

PodCache::~PodCache() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void PodCache::Start(std::unique_ptr<kube::Client> client, const std::string& node) {
  client_ = std::move(client);
  thread_ = std::jthread([this, node](const std::stop_token& stop) {
    kube::WatchOptions options;
    options.field_selector = "spec.nodeName=" + node;
    kube::MirrorHandlers handlers;
    handlers.replace = [this](const std::vector<nlohmann::json>& items) {
      std::vector<CachedPod> pods;
      pods.reserve(items.size());
      for (const auto& item : items) pods.push_back(CachedPodFromJson(item));
      Replace(pods);
    };
    handlers.upsert = [this](const nlohmann::json& object) {
      CachedPod pod = CachedPodFromJson(object);
      if (!pod.allocation_error.empty()) {
        log::Write(log::Level::kWarn, "node", "pod %s: %s",
                   PodKey(pod.namespace_name, pod.name).c_str(), pod.allocation_error.c_str());
      }
      Upsert(pod);
    };
    handlers.remove = [this](const nlohmann::json& object) {
      CachedPod pod = CachedPodFromJson(object);
      Erase(PodKey(pod.namespace_name, pod.name));
    };
    // An error retrying cannot fix (403: the agent's RBAC lacks pods) is logged, and shared GPUs
    // cannot be served until the watch works again.
    kube::MirrorCollection(*client_, kube::CollectionPath(kube::kPods), options, handlers, stop);
  });
}

void PodCache::Replace(const std::vector<CachedPod>& pods) {
  std::lock_guard lock(mutex_);
  pods_.clear();
  for (const auto& pod : pods) pods_[PodKey(pod.namespace_name, pod.name)] = pod;
  synced_ = true;
  changed_.notify_all();
}

void PodCache::Upsert(const CachedPod& pod) {
  std::lock_guard lock(mutex_);
  pods_[PodKey(pod.namespace_name, pod.name)] = pod;
  changed_.notify_all();
}

void PodCache::Erase(const std::string& key) {
  std::lock_guard lock(mutex_);
  pods_.erase(key);
  changed_.notify_all();
}

PodSnapshot PodCache::Snapshot() const {
  std::lock_guard lock(mutex_);
  return pods_;
}

bool PodCache::synced() const {
  std::lock_guard lock(mutex_);
  return synced_;
}

PodSnapshot PodCache::WaitFor(const std::vector<std::string>& keys,
                              std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] {
    return std::all_of(keys.begin(), keys.end(),
                       [&](const std::string& key) { return pods_.count(key) != 0; });
  });
  return pods_;
}

}  // namespace tessera::node
