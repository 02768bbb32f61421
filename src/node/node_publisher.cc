#include "node/node_publisher.h"

#include <chrono>

#include "common/log.h"
#include "kube/client.h"
#include "kube/config.h"
#include "kube/paths.h"

namespace tessera::node {
namespace {

// Annotations are patched again this often even when unchanged, so that one removed by hand (or
// by an older agent) comes back.
constexpr auto kRefresh = std::chrono::minutes(5);

}  // namespace

Result<std::unique_ptr<NodePublisher>> NodePublisher::Create(const std::string& kubeconfig,
                                                             const std::string& node_name) {
  auto config = kubeconfig.empty() ? kube::LoadInClusterConfig() : kube::LoadKubeconfig(kubeconfig);
  if (!config.ok()) return config.status();
  auto client = kube::Client::FromConfig(*config);
  if (!client.ok()) return client.status();
  return std::unique_ptr<NodePublisher>(new NodePublisher(std::move(*client), node_name));
}

NodePublisher::NodePublisher(std::unique_ptr<kube::Client> client, std::string node_name)
    : client_(std::move(client)), node_name_(std::move(node_name)) {
  thread_ = std::thread([this] { Run(); });
}

NodePublisher::~NodePublisher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  stop_.request_stop();
  if (thread_.joinable()) thread_.join();
}

void NodePublisher::Publish(const std::map<std::string, std::string>& annotations) {
  std::lock_guard lock(mutex_);
  if (annotations == wanted_) return;
  wanted_ = annotations;
  ++wanted_version_;
  wake_.notify_all();
}

void NodePublisher::Run() {
  uint64_t published = 0;
  auto last_patch = std::chrono::steady_clock::time_point{};
  auto retry = std::chrono::milliseconds(500);
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    const bool due = published != wanted_version_ || now - last_patch >= kRefresh;
    if (!due || wanted_.empty()) {
      wake_.wait_for(lock, std::chrono::seconds(10));
      continue;
    }
    const uint64_t version = wanted_version_;
    nlohmann::json annotations = nlohmann::json::object();
    for (const auto& [key, value] : wanted_) annotations[key] = value;
    lock.unlock();
    const std::string path = kube::ObjectPath(kube::kNodes, "", node_name_);
    auto result = client_->Call("PATCH", path, {{"metadata", {{"annotations", annotations}}}},
                                kube::ContentTypeOf(kube::PatchType::kMerge), stop_.get_token());
    lock.lock();
    if (result.ok()) {
      if (published == 0) {
        log::Write(log::Level::kWarn, "node", "published the GPU inventory on Node %s",
                   node_name_.c_str());
      } else {
        log::Write(log::Level::kInfo, "node", "updated the GPU inventory on Node %s",
                   node_name_.c_str());
      }
      published = version;
      last_patch = std::chrono::steady_clock::now();
      retry = std::chrono::milliseconds(500);
    } else if (!stopping_) {
      log::Write(log::Level::kWarn, "node",
                 "cannot publish the GPU inventory: %s; retrying in %lld ms",
                 result.status().message().c_str(), static_cast<long long>(retry.count()));
      wake_.wait_for(lock, retry, [&] { return stopping_; });
      retry = std::min(retry * 2, std::chrono::milliseconds(30000));
    }
  }
}

}  // namespace tessera::node
