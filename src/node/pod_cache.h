// The agent's cache of the pods bound to its node (a list+watch of pods with fieldSelector
// spec.nodeName=<node>, kube/watch.h): each pod's phase and `tessera.io/allocation`, for the
// identity joins of pod_identity.h.
//
// Thread-safe. The watch runs on the cache's own thread; callers that found a pod in kubelet's
// PodResources before the watch delivered it wait for it on a condition (WaitFor), never in a
// sleep loop.
#ifndef TESSERA_NODE_POD_CACHE_H_
#define TESSERA_NODE_POD_CACHE_H_

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "node/pod_identity.h"

namespace tessera::kube {
class Client;
}

namespace tessera::node {

class PodCache {
 public:
  PodCache();
  ~PodCache();
  PodCache(const PodCache&) = delete;
  PodCache& operator=(const PodCache&) = delete;

  // Watches `node`'s pods through `client` on the cache's thread until the cache is destroyed.
  void Start(std::unique_ptr<kube::Client> client, const std::string& node);

  // What the watch does; tests fill a cache with these directly.
  void Replace(const std::vector<CachedPod>& pods);
  void Upsert(const CachedPod& pod);
  void Erase(const std::string& key);

  PodSnapshot Snapshot() const;
  // Whether the first list has arrived.
  bool synced() const;
  // Waits until every pod of `keys` is cached, or until `deadline`; returns the snapshot then.
  PodSnapshot WaitFor(const std::vector<std::string>& keys,
                      std::chrono::steady_clock::time_point deadline) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  PodSnapshot pods_;
  bool synced_ = false;
  std::unique_ptr<kube::Client> client_;
  std::jthread thread_;
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_POD_CACHE_H_
