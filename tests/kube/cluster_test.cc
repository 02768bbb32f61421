// The client against a real kube-apiserver 1.20 and etcd (tests/kube/test_cluster.h), started
// once for all these tests. Each test uses objects of its own names.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/watch.h"
#include "tests/kube/temp_dir.h"
#include "tests/kube/test_cluster.h"

namespace tessera::kube {
namespace {

using nlohmann::json;
using std::chrono::seconds;
using testing::TempDir;
using testing::TestCluster;
using testing::WriteFile;

constexpr seconds kEventDeadline(60);

class KubeCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto cluster = TestCluster::Start();
    if (cluster.ok()) {
      cluster_ = std::move(cluster).value().release();
    } else {
      start_error_ = new std::string(cluster.status().message());
    }
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(cluster_, nullptr) << "no cluster: " << *start_error_;
    auto client = Client::FromConfig(cluster_->AdminConfig());
    ASSERT_TRUE(client.ok()) << client.status().message();
    client_ = std::move(*client);
  }

  Client& client() { return *client_; }
  static TestCluster& cluster() { return *cluster_; }

  static TestCluster* cluster_;
  static std::string* start_error_;
  std::unique_ptr<Client> client_;
};

TestCluster* KubeCluster::cluster_ = nullptr;
std::string* KubeCluster::start_error_ = nullptr;

json Pod(const std::string& name, const std::string& node) {
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", name}}},
              {"spec", {{"containers", json::array({{{"name", "c"}, {"image", "busybox"}}})}}}};
  if (!node.empty()) pod["spec"]["nodeName"] = node;
  return pod;
}

std::string Base64(const std::string& text) {
  std::string out(4 * ((text.size() + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(text.data()),
                               static_cast<int>(text.size()));
  out.resize(static_cast<size_t>(length));
  return out;
}

// Runs ListWatch on its own thread and records what it delivers.
class Recorder {
 public:
  struct Event {
    EventType type;
    std::string name;
    json object;
  };

  Recorder(Client& client, const std::string& path, const WatchOptions& options,
           std::function<void()> on_watch_ended = {})
      : on_watch_ended_(std::move(on_watch_ended)) {
    WatchHandlers handlers;
    handlers.on_synced = [this](const json& list) {
      std::lock_guard lock(mutex_);
      lists_.push_back(list);
      changed_.notify_all();
    };
    handlers.on_event = [this](const WatchEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back({event.type, event.object["metadata"].value("name", ""), event.object});
      changed_.notify_all();
    };
    handlers.on_watch_ended = [this] {
      if (on_watch_ended_) on_watch_ended_();
      std::lock_guard lock(mutex_);
      ++watches_ended_;
      changed_.notify_all();
    };
    thread_ = std::jthread([this, &client, path, options, handlers](std::stop_token stop) {
      Status status = ListWatch(client, path, options, handlers, stop);
      std::lock_guard lock(mutex_);
      result_ = status;
      finished_ = true;
      changed_.notify_all();
    });
  }
  ~Recorder() { Stop(); }

  void Stop() {
    if (!thread_.joinable()) return;
    thread_.request_stop();
    thread_.join();
  }

  // Waits until `condition` holds (checked under the lock) or the deadline passes.
  bool WaitUntil(const std::function<bool()>& condition, seconds deadline = kEventDeadline) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, deadline, [&] { return condition() || finished_; }) &&
           condition();
  }

  // The types of the events for object `name`, "ADDED MODIFIED ...". REQUIRES: the lock, or
  // the watch stopped.
  std::string TypesOf(const std::string& name) const {
    std::string types;
    for (const Event& event : events_) {
      if (event.name != name) continue;
      if (!types.empty()) types += " ";
      types += EventTypeName(event.type);
    }
    return types;
  }
  size_t CountOf(EventType type, const std::string& name) const {
    size_t count = 0;
    for (const Event& event : events_) count += event.type == type && event.name == name;
    return count;
  }
  static bool Holds(const json& list, const std::string& name) {
    for (const json& item : list["items"]) {
      if (item["metadata"]["name"] == name) return true;
    }
    return false;
  }

  std::mutex mutex_;
  std::vector<json> lists_;
  std::vector<Event> events_;
  int watches_ended_ = 0;
  bool finished_ = false;
  Status result_;

 private:
  std::function<void()> on_watch_ended_;
  std::condition_variable changed_;
  std::jthread thread_;
};

TEST_F(KubeCluster, AConfigMapIsCreatedReadPatchedReplacedAndDeleted) {
  const std::string collection = CollectionPath(kConfigMaps, "default");
  const std::string path = ObjectPath(kConfigMaps, "default", "lifecycle");
  ApiResult created = client().Create(collection, {{"apiVersion", "v1"},
                                                   {"kind", "ConfigMap"},
                                                   {"metadata", {{"name", "lifecycle"}}},
                                                   {"data", {{"a", "1"}}}});
  ASSERT_TRUE(created.ok()) << created.status().message();
  EXPECT_EQ(created.code(), 201);

  ApiResult got = client().Get(path);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ((*got)["data"], json({{"a", "1"}}));

  ApiResult merged = client().Patch(path, PatchType::kMerge, {{"data", {{"b", "2"}}}});
  ASSERT_TRUE(merged.ok()) << merged.status().message();
  EXPECT_EQ((*merged)["data"], json({{"a", "1"}, {"b", "2"}}));

  ApiResult json_patched =
      client().Patch(path, PatchType::kJson,
                     json::array({{{"op", "replace"}, {"path", "/data/a"}, {"value", "3"}}}));
  ASSERT_TRUE(json_patched.ok()) << json_patched.status().message();
  EXPECT_EQ((*json_patched)["data"]["a"], "3");

  json replacement = *json_patched;
  replacement["data"] = {{"only", "this"}};
  ApiResult replaced = client().Update(path, replacement);
  ASSERT_TRUE(replaced.ok()) << replaced.status().message();
  EXPECT_EQ((*replaced)["data"], json({{"only", "this"}}));
  EXPECT_NE(ResourceVersionOf(*replaced), ResourceVersionOf(*json_patched));

  ApiResult deleted = client().Delete(path);
  ASSERT_TRUE(deleted.ok()) << deleted.status().message();
  ApiResult gone = client().Get(path);
  EXPECT_TRUE(gone.IsNotFound());
  EXPECT_EQ(gone.status().message(),
            "GET /api/v1/namespaces/default/configmaps/lifecycle: HTTP 404 NotFound: "
            "configmaps \"lifecycle\" not found");
}

TEST_F(KubeCluster, ANodesAnnotationsAreMergePatchedAndItsStatusIsASubresource) {
  const std::string path = ObjectPath(kNodes, "", "gpu-node-a");
  ApiResult created =
      client().Create(CollectionPath(kNodes),
                      {{"apiVersion", "v1"},
                       {"kind", "Node"},
                       {"metadata", {{"name", "gpu-node-a"}, {"labels", {{"zone", "a"}}}}}});
  ASSERT_TRUE(created.ok()) << created.status().message();

  ApiResult annotated = client().Patch(
      path, PatchType::kMerge,
      {{"metadata", {{"annotations", {{"tessera.io/gpus", "2"}, {"tessera.io/model", "T4"}}}}}});
  ASSERT_TRUE(annotated.ok()) << annotated.status().message();
  EXPECT_EQ((*annotated)["metadata"]["annotations"]["tessera.io/gpus"], "2");
  EXPECT_EQ((*annotated)["metadata"]["labels"]["zone"], "a") << "a merge patch keeps the rest";

  // null deletes a key in a merge patch.
  ApiResult removed = client().Patch(
      path, PatchType::kMerge, {{"metadata", {{"annotations", {{"tessera.io/model", nullptr}}}}}});
  ASSERT_TRUE(removed.ok()) << removed.status().message();
  EXPECT_FALSE((*removed)["metadata"]["annotations"].contains("tessera.io/model"));
  EXPECT_EQ((*removed)["metadata"]["annotations"]["tessera.io/gpus"], "2");

  ApiResult labelled =
      client().Patch(path, PatchType::kStrategicMerge,
                     {{"metadata", {{"labels", {{"tessera.io/shared", "true"}}}}}});
  ASSERT_TRUE(labelled.ok()) << labelled.status().message();
  EXPECT_EQ((*labelled)["metadata"]["labels"].size(), 2u);

  ApiResult status =
      client().Patch(ObjectPath(kNodes, "", "gpu-node-a", "status"), PatchType::kMerge,
                     {{"status", {{"capacity", {{"tessera.io/vgpu", "20"}}}}}});
  ASSERT_TRUE(status.ok()) << status.status().message();
  ApiResult node = client().Get(path);
  ASSERT_TRUE(node.ok());
  EXPECT_EQ((*node)["status"]["capacity"]["tessera.io/vgpu"], "20");

  // The main resource ignores a status change: that is what the subresource is for.
  ApiResult ignored = client().Patch(path, PatchType::kMerge,
                                     {{"status", {{"capacity", {{"tessera.io/vgpu", "99"}}}}}});
  ASSERT_TRUE(ignored.ok()) << ignored.status().message();
  EXPECT_EQ((*ignored)["status"]["capacity"]["tessera.io/vgpu"], "20");

  ASSERT_TRUE(client().Delete(path).ok());
  EXPECT_TRUE(client().Get(path).IsNotFound());
}

TEST_F(KubeCluster, ErrorsComeBackWithTheirCodeAndTheServersMessage) {
  ApiResult missing = client().Get(ObjectPath(kNodes, "", "no-such-node"));
  EXPECT_EQ(missing.code(), 404);
  EXPECT_EQ(missing.reason(), "NotFound");

  const std::string collection = CollectionPath(kConfigMaps, "default");
  json config_map = {{"metadata", {{"name", "errors"}}}, {"data", {{"v", "1"}}}};
  ApiResult first = client().Create(collection, config_map);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ApiResult again = client().Create(collection, config_map);
  EXPECT_TRUE(again.IsAlreadyExists());
  EXPECT_EQ(again.code(), 409);
  EXPECT_NE(again.status().message().find(
                "POST /api/v1/namespaces/default/configmaps: HTTP 409 AlreadyExists: "
                "configmaps \"errors\" already exists"),
            std::string::npos)
      << again.status().message();

  // A write from a stale read: the resourceVersion no longer matches.
  json stale = *first;
  ASSERT_TRUE(client()
                  .Patch(ObjectPath(kConfigMaps, "default", "errors"), PatchType::kMerge,
                         {{"data", {{"v", "2"}}}})
                  .ok());
  stale["data"]["v"] = "3";
  ApiResult conflict = client().Update(ObjectPath(kConfigMaps, "default", "errors"), stale);
  EXPECT_TRUE(conflict.IsConflict());
  EXPECT_EQ(conflict.code(), 409);
  EXPECT_NE(conflict.status().message().find(
                "PUT /api/v1/namespaces/default/configmaps/errors: HTTP 409 Conflict: Operation "
                "cannot be fulfilled on configmaps \"errors\": the object has been modified"),
            std::string::npos)
      << conflict.status().message();

  ApiResult invalid = client().Create(collection, {{"metadata", {{"name", "Not_A_DNS_Name"}}}});
  EXPECT_EQ(invalid.code(), 422);
  EXPECT_EQ(invalid.reason(), "Invalid");
  ASSERT_TRUE(client().Delete(ObjectPath(kConfigMaps, "default", "errors")).ok());
}

// Reads counter "n" of a ConfigMap, adds one and writes it back with the version it read.
ApiResult Increment(Client& client, const std::string& path, std::atomic<int>* attempts,
                    const std::function<void()>& between_read_and_write = {}) {
  return RetryOnConflict([&]() -> ApiResult {
    ++*attempts;
    ApiResult read = client.Get(path);
    if (!read.ok()) return read;
    json object = std::move(read).value();
    object["data"]["n"] = std::to_string(std::stoi(object["data"]["n"].get<std::string>()) + 1);
    if (between_read_and_write) between_read_and_write();
    return client.Update(path, object);
  });
}

TEST_F(KubeCluster, RetryOnConflictWinsARaceWithAConcurrentWriter) {
  const std::string path = ObjectPath(kConfigMaps, "default", "race");
  ASSERT_TRUE(client()
                  .Create(CollectionPath(kConfigMaps, "default"),
                          {{"metadata", {{"name", "race"}}}, {"data", {{"n", "0"}}}})
                  .ok());
  std::atomic<int> attempts{0};
  bool interfered = false;
  // Another writer changes the object between our read and our write, once.
  ApiResult result = Increment(client(), path, &attempts, [&] {
    if (interfered) return;
    interfered = true;
    std::atomic<int> other_attempts{0};
    ASSERT_TRUE(Increment(client(), path, &other_attempts).ok());
  });
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(attempts.load(), 2) << "the first write must conflict, the second win";
  EXPECT_EQ((*client().Get(path))["data"]["n"], "2") << "neither increment may be lost";
  ASSERT_TRUE(client().Delete(path).ok());
}

TEST_F(KubeCluster, ConcurrentReadModifyWritesLoseNoIncrement) {
  const std::string path = ObjectPath(kConfigMaps, "default", "counter");
  ASSERT_TRUE(client()
                  .Create(CollectionPath(kConfigMaps, "default"),
                          {{"metadata", {{"name", "counter"}}}, {"data", {{"n", "0"}}}})
                  .ok());
  constexpr int kThreads = 4, kEach = 10;
  std::atomic<int> attempts{0};
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) {
          if (!Increment(client(), path, &attempts).ok()) ++failures;
        }
      });
    }
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ((*client().Get(path))["data"]["n"], std::to_string(kThreads * kEach));
  EXPECT_GE(attempts.load(), kThreads * kEach);
  ASSERT_TRUE(client().Delete(path).ok());
}

TEST_F(KubeCluster, ListFiltersByLabelAndFieldSelectors) {
  const std::string collection = CollectionPath(kPods, "default");
  for (const auto& [name, node, app] :
       {std::tuple{"select-1", "select-node", "a"}, std::tuple{"select-2", "select-node", "b"},
        std::tuple{"select-3", "elsewhere", "a"}}) {
    json pod = Pod(name, node);
    pod["metadata"]["labels"] = {{"app", app}, {"test", "select"}};
    ASSERT_TRUE(client().Create(collection, pod).ok());
  }
  ListOptions options;
  options.label_selector = "test=select,app=a";
  options.field_selector = "spec.nodeName=select-node";
  ApiResult list = client().List(CollectionPath(kPods), options);
  ASSERT_TRUE(list.ok()) << list.status().message();
  ASSERT_EQ((*list)["items"].size(), 1u);
  EXPECT_EQ((*list)["items"][0]["metadata"]["name"], "select-1");
  EXPECT_FALSE(ResourceVersionOf(*list).empty());
  for (const char* name : {"select-1", "select-2", "select-3"}) {
    ASSERT_TRUE(
        client().Delete(ObjectPath(kPods, "default", name), {{"gracePeriodSeconds", 0}}).ok());
  }
}

TEST_F(KubeCluster, TheBindingSubresourceAssignsAPodToANode) {
  ASSERT_TRUE(client().Create(CollectionPath(kPods, "default"), Pod("to-bind", "")).ok());
  ApiResult bound = client().Create(
      ObjectPath(kPods, "default", "to-bind", "binding"),
      {{"apiVersion", "v1"},
       {"kind", "Binding"},
       {"metadata", {{"name", "to-bind"}}},
       {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", "bind-node"}}}});
  ASSERT_TRUE(bound.ok()) << bound.status().message();
  ApiResult pod = client().Get(ObjectPath(kPods, "default", "to-bind"));
  ASSERT_TRUE(pod.ok());
  EXPECT_EQ((*pod)["spec"]["nodeName"], "bind-node");
  ApiResult twice = client().Create(
      ObjectPath(kPods, "default", "to-bind", "binding"),
      {{"metadata", {{"name", "to-bind"}}}, {"target", {{"kind", "Node"}, {"name", "other"}}}});
  EXPECT_EQ(twice.code(), 409) << "a bound pod cannot be bound again";
  ASSERT_TRUE(
      client().Delete(ObjectPath(kPods, "default", "to-bind"), {{"gracePeriodSeconds", 0}}).ok());
}

TEST_F(KubeCluster, AWatchOnPodsOfOneNodeSeesThemAddedModifiedAndDeleted) {
  WatchOptions options;
  options.field_selector = "spec.nodeName=watch-node";
  Recorder recorder(client(), CollectionPath(kPods), options);
  ASSERT_TRUE(recorder.WaitUntil([&] { return !recorder.lists_.empty(); }));

  const std::string collection = CollectionPath(kPods, "default");
  ASSERT_TRUE(client().Create(collection, Pod("watched", "watch-node")).ok());
  ASSERT_TRUE(client().Create(collection, Pod("not-watched", "other-node")).ok());
  ASSERT_TRUE(client()
                  .Patch(ObjectPath(kPods, "default", "watched"), PatchType::kMerge,
                         {{"metadata", {{"labels", {{"seen", "yes"}}}}}})
                  .ok());
  ASSERT_TRUE(
      client().Delete(ObjectPath(kPods, "default", "watched"), {{"gracePeriodSeconds", 0}}).ok());
  ASSERT_TRUE(recorder.WaitUntil([&] { return recorder.CountOf(EventType::kDeleted, "watched"); }))
      << "events so far: " << recorder.TypesOf("watched");
  recorder.Stop();
  EXPECT_TRUE(recorder.result_.ok()) << recorder.result_.message();
  // Deleting a pod bound to a node first marks it (a MODIFIED with deletionTimestamp), then
  // removes it.
  std::string types = recorder.TypesOf("watched");
  EXPECT_TRUE(types == "ADDED MODIFIED DELETED" || types == "ADDED MODIFIED MODIFIED DELETED")
      << types;
  EXPECT_EQ(recorder.TypesOf("not-watched"), "") << "the field selector must filter";
  for (const auto& event : recorder.events_) {
    if (event.type == EventType::kModified) {
      EXPECT_EQ(event.object["metadata"]["labels"]["seen"], "yes");
    }
    if (event.type == EventType::kDeleted) {
      EXPECT_TRUE(event.object["metadata"].contains("deletionTimestamp"));
    }
  }
  EXPECT_EQ(recorder.lists_.size(), 1u);
  ASSERT_TRUE(client()
                  .Delete(ObjectPath(kPods, "default", "not-watched"), {{"gracePeriodSeconds", 0}})
                  .ok());
}

TEST_F(KubeCluster, AWatchResumesAfterTheServerEndsItWithoutMissingAnEvent) {
  WatchOptions options;
  options.field_selector = "spec.nodeName=resume-node";
  options.timeout_seconds = 1;
  std::atomic<int> ended{0};
  const std::string collection = CollectionPath(kPods, "default");
  // Created while no watch is open: after one ended, before the next begins.
  Recorder recorder(client(), CollectionPath(kPods), options, [&] {
    if (++ended == 1) {
      ApiResult created = client().Create(collection, Pod("between", "resume-node"));
      EXPECT_TRUE(created.ok()) << created.status().message();
    }
  });
  ASSERT_TRUE(recorder.WaitUntil([&] { return recorder.CountOf(EventType::kAdded, "between"); }))
      << "the pod created between two watches was missed";
  // More pods, each created after a further watch ended.
  for (int i = 0; i < 3; ++i) {
    int seen = ended;
    ASSERT_TRUE(recorder.WaitUntil([&] { return ended > seen; }));
    ASSERT_TRUE(client().Create(collection, Pod("later-" + std::to_string(i), "resume-node")).ok());
  }
  ASSERT_TRUE(recorder.WaitUntil([&] { return recorder.CountOf(EventType::kAdded, "later-2"); }));
  recorder.Stop();
  EXPECT_TRUE(recorder.result_.ok()) << recorder.result_.message();
  EXPECT_GE(recorder.watches_ended_, 4) << "the server should have ended several watches";
  EXPECT_EQ(recorder.lists_.size(), 1u) << "resuming needs no relist";
  for (const char* name : {"between", "later-0", "later-1", "later-2"}) {
    EXPECT_EQ(recorder.TypesOf(name), "ADDED") << name << ": each event exactly once";
    ASSERT_TRUE(
        client().Delete(ObjectPath(kPods, "default", name), {{"gracePeriodSeconds", 0}}).ok());
  }
}

TEST_F(KubeCluster, AWatchFromACompactedResourceVersionRelists) {
  const std::string collection = CollectionPath(kConfigMaps, "default");
  const std::string path = ObjectPath(kConfigMaps, "default", "before-relist");
  json labels = {{"test", "relist"}};
  ApiResult created =
      client().Create(collection, {{"metadata", {{"name", "before-relist"}, {"labels", labels}}}});
  ASSERT_TRUE(created.ok()) << created.status().message();
  const std::string old_version = ResourceVersionOf(*created);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        client().Patch(path, PatchType::kMerge, {{"data", {{"n", std::to_string(i)}}}}).ok());
  }
  ApiResult now = client().List(collection);
  ASSERT_TRUE(now.ok()) << now.status().message();
  ASSERT_TRUE(cluster().CompactEtcd(ResourceVersionOf(*now)).ok());
  // The server now answers 410 for that version: for a list as an HTTP status...
  ApiResult expired = client().Get(
      WithQuery(collection, {{"resourceVersion", old_version}, {"resourceVersionMatch", "Exact"}}));
  EXPECT_TRUE(expired.IsGone()) << expired.status().message();
  EXPECT_EQ(expired.reason(), "Expired");

  // ...and for a watch as an ERROR event, after which ListWatch lists again.
  WatchOptions options;
  options.label_selector = "test=relist";
  options.resource_version = old_version;
  Recorder recorder(client(), collection, options);
  ASSERT_TRUE(recorder.WaitUntil([&] { return !recorder.lists_.empty(); }))
      << "no relist after a compacted resourceVersion";
  {
    std::lock_guard lock(recorder.mutex_);
    EXPECT_TRUE(Recorder::Holds(recorder.lists_[0], "before-relist"));
    EXPECT_TRUE(recorder.events_.empty()) << "nothing may be delivered from the expired version";
  }
  ASSERT_TRUE(
      client()
          .Create(collection, {{"metadata", {{"name", "after-relist"}, {"labels", labels}}}})
          .ok());
  ASSERT_TRUE(
      recorder.WaitUntil([&] { return recorder.CountOf(EventType::kAdded, "after-relist"); }));
  recorder.Stop();
  EXPECT_TRUE(recorder.result_.ok()) << recorder.result_.message();
  EXPECT_EQ(recorder.lists_.size(), 1u);
  EXPECT_EQ(recorder.TypesOf("before-relist"), "") << "it came in the list, not as an event";
  for (const char* name : {"before-relist", "after-relist"}) {
    ASSERT_TRUE(client().Delete(ObjectPath(kConfigMaps, "default", name)).ok());
  }
}

TEST_F(KubeCluster, StoppingAWatchIsPromptNotAtTheServersTimeout) {
  WatchOptions options;
  options.timeout_seconds = 300;
  Recorder recorder(client(), CollectionPath(kPods), options);
  ASSERT_TRUE(recorder.WaitUntil([&] { return !recorder.lists_.empty(); }));
  auto start = std::chrono::steady_clock::now();
  recorder.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  EXPECT_TRUE(recorder.result_.ok()) << recorder.result_.message();
}

TEST_F(KubeCluster, TheInClusterConfigReadsTheTokenFileAndTheCaAndFollowsTokenRotation) {
  TempDir account;
  WriteFile(account.File("token"), cluster().token() + "\n");
  std::filesystem::copy_file(cluster().ca_file(), account.File("ca.crt"));
  WriteFile(account.File("namespace"), "default\n");
  auto config =
      LoadInClusterConfig({"127.0.0.1", std::to_string(cluster().port()), account.path()});
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto in_cluster = Client::FromConfig(*config);
  ASSERT_TRUE(in_cluster.ok()) << in_cluster.status().message();
  Client& client = **in_cluster;
  const std::string path = ObjectPath(kNamespaces, "", "default");
  ApiResult got = client.Get(path);
  ASSERT_TRUE(got.ok()) << got.status().message();  // TLS verified against ca.crt

  WriteFile(account.File("token"), "not-a-valid-token");  // the kubelet rotates the token
  ApiResult refused = client.Get(path);
  EXPECT_EQ(refused.code(), 401) << "the new (invalid) token must be used";
  EXPECT_NE(refused.status().message().find("HTTP 401 Unauthorized"), std::string::npos)
      << refused.status().message();

  WriteFile(account.File("token"), cluster().token());
  EXPECT_TRUE(client.Get(path).ok());
}

TEST_F(KubeCluster, AWrongCaIsRefused) {
  Config config = cluster().AdminConfig();
  config.certificate_authority_file = cluster().dir() + "/client-ca.crt";  // signed nothing here
  auto client = Client::FromConfig(config);
  ASSERT_TRUE(client.ok());
  ApiResult refused = (*client)->Get(ObjectPath(kNamespaces, "", "default"));
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), 0);
  EXPECT_NE(refused.status().message().find("no response"), std::string::npos)
      << refused.status().message();
}

TEST_F(KubeCluster, AKubeconfigWithAClientCertificateAuthenticates) {
  TempDir dir;
  std::filesystem::copy_file(cluster().ca_file(), dir.File("ca.crt"));
  WriteFile(dir.File("kubeconfig"),
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
            "contexts: [{name: test, context: {cluster: local, user: tester}}]\n"
            "clusters:\n- name: local\n  cluster:\n    server: " +
                cluster().server() +
                "\n    certificate-authority: ca.crt\n"
                "users:\n- name: tester\n  user:\n    client-certificate-data: " +
                Base64(testing::ReadFile(cluster().client_certificate_file())) +
                "\n    client-key-data: " + Base64(testing::ReadFile(cluster().client_key_file())) +
                "\n");
  auto config = LoadKubeconfig(dir.File("kubeconfig"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto client = Client::FromConfig(*config);
  ASSERT_TRUE(client.ok()) << client.status().message();
  ApiResult got = (*client)->Get(ObjectPath(kNamespaces, "", "default"));
  EXPECT_TRUE(got.ok()) << got.status().message();

  // The same without credentials is refused: the certificate is what let us in.
  Config anonymous = *config;
  anonymous.client_certificate_pem.clear();
  anonymous.client_key_pem.clear();
  auto no_credentials = Client::FromConfig(anonymous);
  ASSERT_TRUE(no_credentials.ok());
  EXPECT_EQ((*no_credentials)->Get(ObjectPath(kNamespaces, "", "default")).code(), 401);
}

TEST_F(KubeCluster, AKubeconfigWithATokenFileAndNoVerification) {
  TempDir dir;
  WriteFile(dir.File("token"), cluster().token());
  WriteFile(dir.File("kubeconfig"),
            "current-context: t\n"
            "contexts: [{name: t, context: {cluster: c, user: u, namespace: default}}]\n"
            "clusters: [{name: c, cluster: {server: '" +
                cluster().server() +
                "', insecure-skip-tls-verify: true}}]\n"
                "users: [{name: u, user: {tokenFile: token}}]\n");
  auto config = LoadKubeconfig(dir.File("kubeconfig"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto client = Client::FromConfig(*config);
  ASSERT_TRUE(client.ok()) << client.status().message();
  EXPECT_TRUE((*client)->Get(ObjectPath(kNamespaces, "", "default")).ok());
}

TEST_F(KubeCluster, OneClientServesManyThreadsAtOnce) {
  constexpr int kThreads = 8, kEach = 10;
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) {
          if (!client().Get(ObjectPath(kNamespaces, "", "default")).ok()) ++failures;
        }
      });
    }
  }
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace tessera::kube
