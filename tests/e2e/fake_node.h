// A fake GPU node for end-to-end tests: a temporary directory holding the fake GPU's device file
// and shared state, removed at the end, and the environment a process on that node starts with.
// REQUIRES: the test target defines TESSERA_FAKEGPU_DIR (the fake driver's folder).
#ifndef TESSERA_TESTS_E2E_FAKE_NODE_H_
#define TESSERA_TESTS_E2E_FAKE_NODE_H_

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "fakegpu/node_pids.h"

namespace tessera::testing {

class FakeNode {
 public:
  // `devices`: the fake GPU's device file (src/fakegpu/README.md), one line per device.
  explicit FakeNode(const std::string& devices) {
    char pattern[] = "/tmp/tessera-e2e-XXXXXX";
    if (mkdtemp(pattern) != nullptr) directory_ = pattern;
    WriteDevices(devices);
  }
  ~FakeNode() {
    if (!directory_.empty()) std::system(("rm -rf " + directory_).c_str());
  }
  FakeNode(const FakeNode&) = delete;
  FakeNode& operator=(const FakeNode&) = delete;

  bool ok() const { return !directory_.empty(); }
  const std::string& directory() const { return directory_; }
  std::string Path(const std::string& name) const { return directory_ + "/" + name; }
  std::string StatePath() const { return Path("state"); }

  void WriteDevices(const std::string& devices) const {
    std::ofstream(Path("gpus.conf")) << devices;
  }

  // PATH, the fake driver on LD_LIBRARY_PATH, its device file and state, the sanitizer options
  // that let an instrumented shim be preloaded into an instrumented program; then `extra`.
  std::vector<std::string> Environment(const std::vector<std::string>& extra) const {
    std::vector<std::string> environment = {
        "PATH=/usr/bin:/bin",
        std::string("LD_LIBRARY_PATH=") + TESSERA_FAKEGPU_DIR,
        "TESSERA_FAKEGPU_CONFIG=" + Path("gpus.conf"),
        "TESSERA_FAKEGPU_STATE=" + StatePath(),
        "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0",
    };
    if (node_pids_ != nullptr) {
      environment.push_back(std::string(fakegpu::kNodePidsVariable) + "=" + node_pids_->path());
    }
    environment.insert(environment.end(), extra.begin(), extra.end());
    return environment;
  }

  // Serves the fake driver's node pids (fakegpu/node_pids.h) from this process, so that programs
  // in a pid namespace of their own are known to the fake GPU by their node pids, as a real
  // driver knows them. Environment() then names the service.
  bool StartNodePids() {
    auto service = fakegpu::NodePidService::Start(Path("node-pids.sock"));
    if (!service.ok()) return false;
    node_pids_ = std::move(service).value();
    return true;
  }

 private:
  std::string directory_;
  std::unique_ptr<fakegpu::NodePidService> node_pids_;
};

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_E2E_FAKE_NODE_H_
