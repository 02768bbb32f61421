// A test fixture for the local Kubernetes cluster (`scripts/cluster/cluster.py up`): it reads
// build/cluster/state.json, runs the cluster's own kubectl with the cluster's kubeconfig, applies
// manifests and waits on conditions with generous deadlines.
//
// Without a running cluster every test is skipped, unless TESSERA_CLUSTER_REQUIRED=1 (set by
// `make test-cluster`), which makes a missing cluster a failure.
#ifndef TESSERA_TESTS_CLUSTER_CLUSTER_FIXTURE_H_
#define TESSERA_TESTS_CLUSTER_CLUSTER_FIXTURE_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"

namespace tessera::cluster_test {

using nlohmann::json;
using namespace std::chrono_literals;

// The fake GPU's context on the local cluster (its default context_memory), which the shim
// charges against a container's limit as a driver's context is.
inline constexpr long long kContextMiB = 256;

// What a program can allocate well within a limit of `limit_mib`: 90 % of what its context
// leaves.
inline long long WithinLimitMiB(long long limit_mib) { return (limit_mib - kContextMiB) * 9 / 10; }

struct CommandResult {
  int status = -1;     // exit code, or -signal
  std::string output;  // stdout only (stderr goes to the test's stderr)
};

// Runs argv (argv[0] a path) with `input` on its stdin.
inline CommandResult RunCommand(const std::vector<std::string>& argv,
                                const std::string& input = "") {
  testing::Child child(argv);
  if (!input.empty()) child.WriteLine(input);
  CommandResult result;
  result.status = child.Finish();
  result.output = child.output();
  return result;
}

// Polls `condition` until it holds or `deadline` passes; true if it held.
inline bool WaitUntil(const std::function<bool()>& condition,
                      std::chrono::seconds deadline = std::chrono::seconds(120)) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(200ms);
  }
  return true;
}

// A name no other run uses (pods, config maps, process markers): `prefix`-<8 hex digits>.
inline std::string Unique(const std::string& prefix) {
  static std::mt19937_64 random(std::random_device{}());
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08llx",
                static_cast<unsigned long long>(random() & 0xffffffff));
  return prefix + "-" + suffix;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* path = std::getenv("TESSERA_CLUSTER_STATE");
    state_path_ = path != nullptr ? path : TESSERA_CLUSTER_STATE;
    std::string text = ReadFile(state_path_);
    state_ = text.empty() ? json() : json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!Running()) return;
    // One namespace per test suite: nothing collides with another suite's or run's leftovers.
    namespace_ = Unique("tessera-cluster-test");
    Kubectl({"create", "namespace", namespace_});
  }

  static void TearDownTestSuite() {
    if (Running() && !namespace_.empty()) {
      Kubectl({"delete", "namespace", namespace_, "--wait=false"});
    }
  }

  void SetUp() override {
    if (!Running()) {
      const char* required = std::getenv("TESSERA_CLUSTER_REQUIRED");
      if (required != nullptr && std::string(required) == "1") {
        FAIL() << "no running cluster: " << state_path_
               << " is missing or incomplete (scripts/cluster/cluster.py up)";
      }
      GTEST_SKIP() << "no running cluster (" << state_path_ << "); run `make test-cluster`";
    }
  }

  static bool Running() { return state_.is_object() && state_.value("complete", false); }
  static const json& State() { return state_; }
  static const std::string& Namespace() { return namespace_; }

  // The node of state.json called `name`.
  static const json& Node(const std::string& name) {
    for (const auto& node : state_["nodes"]) {
      if (node["name"] == name) return node;
    }
    static const json none;
    return none;
  }

  // kubectl of the cluster (built by scripts/cluster/build-kubernetes.sh) with its kubeconfig.
  static CommandResult Kubectl(const std::vector<std::string>& args,
                               const std::string& input = "") {
    std::vector<std::string> argv = {state_["kubectl"].get<std::string>(), "--kubeconfig",
                                     state_["kubeconfig"].get<std::string>()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, input);
  }

  // scripts/cluster/cluster.py on this cluster, e.g. {"restart-kubelet", "gpu-whole"}.
  static CommandResult ClusterTool(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/python3", TESSERA_CLUSTER_TOOL, "--build-dir",
                                     state_["state_dir"].get<std::string>() + "/.."};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  // kubectl in the test's namespace.
  static CommandResult KubectlHere(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--namespace", namespace_});
    return Kubectl(args, input);
  }

  static bool Apply(const std::string& manifest) {
    CommandResult result = KubectlHere({"apply", "-f", "-"}, manifest);
    return result.status == 0;
  }

  // The pod as JSON (null when it does not exist).
  static json Pod(const std::string& name) {
    CommandResult result = KubectlHere({"get", "pod", name, "-o", "json", "--ignore-not-found"});
    if (result.status != 0 || result.output.empty()) return json();
    return json::parse(result.output, nullptr, /*allow_exceptions=*/false);
  }

  static std::string Phase(const std::string& pod) {
    json p = Pod(pod);
    return p.is_object() ? p["status"].value("phase", "") : "";
  }

  // Waits until the pod has finished (Succeeded or Failed) and returns the phase ("" if not).
  static std::string WaitFinished(const std::string& pod, std::chrono::seconds deadline = 120s) {
    std::string phase;
    WaitUntil(
        [&] {
          phase = Phase(pod);
          return phase == "Succeeded" || phase == "Failed";
        },
        deadline);
    return phase;
  }

  static bool WaitRunning(const std::string& pod, std::chrono::seconds deadline = 120s) {
    return WaitUntil([&] { return Phase(pod) == "Running"; }, deadline);
  }

  static std::string Logs(const std::string& pod) { return KubectlHere({"logs", pod}).output; }

  // A single-container pod that never restarts, running `command` (a YAML flow list).
  static std::string PodManifest(const std::string& name, const std::string& command,
                                 const std::string& extra_container = "",
                                 const std::string& extra_spec = "") {
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
           "}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 2\n" + extra_spec +
           "  containers:\n  - name: main\n    image: busybox\n    command: " + command + "\n" +
           extra_container;
  }

 private:
  static inline std::string state_path_;
  static inline json state_;
  static inline std::string namespace_;
};

}  // namespace tessera::cluster_test

#endif  // TESSERA_TESTS_CLUSTER_CLUSTER_FIXTURE_H_
