// A real control plane for integration tests: etcd and kube-apiserver 1.20 on loopback, on free
// ports, in a temporary directory, with a token file (one admin token in system:masters), a client
// CA (and a client certificate it signed), a service account key pair made with openssl, the
// self-signed serving certificate the apiserver makes in its --cert-dir, AlwaysAllow authorization
// and anonymous requests refused (so a test can tell whether its credentials were used).
// ConfigMaps have no watch cache (--watch-cache-sizes=configmaps#0): their watches go to etcd, so
// compacting etcd (CompactEtcd) makes an old resourceVersion too old, as in a long-running cluster.
//
// kube-apiserver comes from $TESSERA_KUBE_BIN_DIR (scripts/cluster/build-kubernetes.sh builds it;
// CMake passes the directory to ctest); etcd is Debian's /usr/bin/etcd ($TESSERA_ETCD overrides).
// Start() waits for /readyz and for the default namespace with a generous deadline; the destructor
// stops both processes and removes the directory ($TESSERA_KUBE_KEEP_DIR=1 keeps it, with logs).
#ifndef TESSERA_TESTS_KUBE_TEST_CLUSTER_H_
#define TESSERA_TESTS_KUBE_TEST_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "kube/config.h"

namespace tessera::kube::testing {

class TestCluster {
 public:
  static Result<std::unique_ptr<TestCluster>> Start();
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  const std::string& server() const { return server_; }  // https://127.0.0.1:PORT
  const std::string& token() const { return token_; }    // the admin's bearer token
  const std::string& dir() const { return dir_; }
  int port() const { return apiserver_port_; }
  // The apiserver's serving certificate with the CA that signed it (the apiserver writes both).
  std::string ca_file() const { return dir_ + "/certs/apiserver.crt"; }
  // A client certificate (CN tessera-test-user, O system:masters) and its key.
  std::string client_certificate_file() const { return dir_ + "/client.crt"; }
  std::string client_key_file() const { return dir_ + "/client.key"; }

  // The admin token, verifying the server against ca_file().
  Config AdminConfig() const;

  // Compacts etcd's history up to `revision` (a resourceVersion): watches from before it then get
  // 410 Gone (for resources without a watch cache).
  Status CompactEtcd(const std::string& revision);

  // The last lines of etcd's and the apiserver's logs, for a failure message.
  std::string LogTails() const;

 private:
  TestCluster() = default;
  Status Launch();
  Status WaitUntilReady();

  std::string bin_dir_;
  std::string etcd_binary_;
  std::string dir_;
  std::string server_;
  std::string etcd_url_;
  std::string token_;
  int apiserver_port_ = 0;
  pid_t etcd_ = -1;
  pid_t apiserver_ = -1;
};

}  // namespace tessera::kube::testing

#endif  // TESSERA_TESTS_KUBE_TEST_CLUSTER_H_
