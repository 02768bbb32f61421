// Publishes the node's GPU inventory (node_annotations.h) on its Node object through the API
// server: a merge patch of the annotations whenever they change, and again every few minutes in
// case someone removed them. Patching happens on the publisher's own thread with retries and
// backoff, so a slow or absent API server never holds up kubelet's calls.
#ifndef TESSERA_NODE_NODE_PUBLISHER_H_
#define TESSERA_NODE_NODE_PUBLISHER_H_

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "common/status.h"

namespace tessera::kube {
class Client;
}

namespace tessera::node {

class NodePublisher {
 public:
  // `kubeconfig` empty: the pod's service account.
  static Result<std::unique_ptr<NodePublisher>> Create(const std::string& kubeconfig,
                                                       const std::string& node_name);
  ~NodePublisher();
  NodePublisher(const NodePublisher&) = delete;
  NodePublisher& operator=(const NodePublisher&) = delete;

  // Asks for `annotations` to be on the Node; returns at once.
  void Publish(const std::map<std::string, std::string>& annotations);

 private:
  NodePublisher(std::unique_ptr<kube::Client> client, std::string node_name);
  void Run();

  std::unique_ptr<kube::Client> client_;
  const std::string node_name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, std::string> wanted_;
  uint64_t wanted_version_ = 0;
  bool stopping_ = false;
  std::stop_source stop_;  // cuts a call in flight short at shutdown
  std::thread thread_;
};

}  // namespace tessera::node

#endif  // TESSERA_NODE_NODE_PUBLISHER_H_
