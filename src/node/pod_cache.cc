#include "node/pod_cache.h"

#include <algorithm>

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
  thread_ = std::jthread([this, node](std::stop_token stop) {
    kube::WatchOptions options;
    options.field_selector = "spec.nodeName=" + node;
    kube::WatchHandlers handlers;
    handlers.on_synced = [this](const nlohmann::json& list) {
      std::vector<CachedPod> pods;
      if (list.contains("items") && list["items"].is_array()) {
        for (const auto& item : list["items"]) pods.push_back(CachedPodFromJson(item));
      }
      Replace(pods);
    };
    handlers.on_event = [this](const kube::WatchEvent& event) {
      if (event.type == kube::EventType::kBookmark) return;
      CachedPod pod = CachedPodFromJson(event.object);
      if (event.type == kube::EventType::kDeleted) {
        Erase(PodKey(pod.namespace_name, pod.name));
      } else {
        if (!pod.allocation_error.empty()) {
          log::Write(log::Level::kWarn, "node", "pod %s: %s",
                     PodKey(pod.namespace_name, pod.name).c_str(), pod.allocation_error.c_str());
        }
        Upsert(pod);
      }
    };
    while (!stop.stop_requested()) {
      Status status =
          kube::ListWatch(*client_, kube::CollectionPath(kube::kPods), options, handlers, stop);
      if (stop.stop_requested()) break;
      // Only an error retrying cannot fix ends ListWatch (403: the agent's RBAC lacks pods).
      log::Write(log::Level::kError, "node",
                 "cannot watch the pods of node %s: %s; shared GPUs cannot be served until it "
                 "can; retrying in 10 s",
                 node.c_str(), status.message().c_str());
      std::mutex wait_mutex;
      std::unique_lock lock(wait_mutex);
      std::condition_variable_any().wait_for(lock, stop, std::chrono::seconds(10),
                                             [] { return false; });
    }
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
