#include "tests/kube/test_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "kube/curl_transport.h"

namespace tessera::kube::testing {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr seconds kReadyDeadline(180);  // two busy cores can take a while
constexpr seconds kStopDeadline(20);

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// `count` distinct free loopback ports. The sockets stay bound until all are chosen: one released
// at once could be handed out again for the next (etcd and the apiserver were once given the
// same port).
std::vector<int> FreePorts(size_t count) {
  std::vector<int> sockets;
  std::vector<int> ports;
  for (size_t i = 0; i < count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    sockets.push_back(fd);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      break;
    }
    ports.push_back(ntohs(address.sin_port));
  }
  for (int fd : sockets) close(fd);
  if (ports.size() != count) ports.clear();
  return ports;
}

std::string Tail(const std::string& path, size_t lines = 25) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "  " + all[i] + "\n";
  }
  return out;
}

// Starts `argv` with stdout and stderr appended to `log`. The child dies with this process (so a
// crashed test leaves no apiserver behind).
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || null < 0) return -1;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(null, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out);
  close(null);
  return pid;
}

// True once `pid` has exited; it is then reaped and `pid` set to -1.
bool Exited(pid_t& pid) {
  int status = 0;
  if (pid <= 0) return true;
  if (waitpid(pid, &status, WNOHANG) != pid) return false;
  pid = -1;
  return true;
}

void Stop(pid_t& pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  auto deadline = Clock::now() + kStopDeadline;
  while (Clock::now() < deadline) {
    if (Exited(pid)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  pid = -1;
}

// Runs a short command (openssl) to completion.
Status Run(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = Spawn(argv, log);
  if (pid < 0) return Status::Error("cannot start " + argv[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string command;
    for (const std::string& arg : argv) command += arg + " ";
    return Status::Error("failed: " + command + "\n" + Tail(log));
  }
  return Status::Ok();
}

std::string RandomToken() {
  std::random_device random;
  std::ostringstream text;
  for (int i = 0; i < 4; ++i) text << std::hex << random();
  return text.str();
}

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

}  // namespace

Result<std::unique_ptr<TestCluster>> TestCluster::Start() {
  std::unique_ptr<TestCluster> cluster(new TestCluster());
  cluster->bin_dir_ = Env("TESSERA_KUBE_BIN_DIR");
  if (cluster->bin_dir_.empty()) {
    return Status::Error(
        "TESSERA_KUBE_BIN_DIR is not set. The cluster tests need kube-apiserver 1.20: build it "
        "with scripts/cluster/build-kubernetes.sh, then run them through ctest (CMake's cache "
        "variable TESSERA_KUBE_BIN_DIR, by default the script's --print-bin-dir, is passed on) "
        "or set it yourself: TESSERA_KUBE_BIN_DIR=$(scripts/cluster/build-kubernetes.sh "
        "--print-bin-dir) build/bin/tessera_kube_cluster_test");
  }
  if (!IsExecutable(cluster->bin_dir_ + "/kube-apiserver")) {
    return Status::Error("TESSERA_KUBE_BIN_DIR=" + cluster->bin_dir_ +
                         " holds no kube-apiserver; build it with "
                         "scripts/cluster/build-kubernetes.sh");
  }
  cluster->etcd_binary_ = Env("TESSERA_ETCD").empty() ? "/usr/bin/etcd" : Env("TESSERA_ETCD");
  if (!IsExecutable(cluster->etcd_binary_)) {
    return Status::Error("no etcd at " + cluster->etcd_binary_ +
                         " (apt-get install etcd-server, or set TESSERA_ETCD)");
  }
  std::string base = Env("TMPDIR").empty() ? "/tmp" : Env("TMPDIR");
  std::string pattern = base + "/tessera-kube-cluster-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return Status::Error("mkdtemp " + pattern + " failed");
  cluster->dir_ = pattern;
  Status launched = cluster->Launch();
  if (!launched.ok()) return launched;
  Status ready = cluster->WaitUntilReady();
  if (!ready.ok()) return Status::Error(ready.message() + "\n" + cluster->LogTails());
  return cluster;
}

Status TestCluster::Launch() {
  const std::string& d = dir_;
  token_ = RandomToken();
  {
    std::ofstream tokens(d + "/tokens.csv");
    tokens << token_ << ",admin,admin,system:masters\n";
  }
  std::string log = d + "/openssl.log";
  std::string openssl = "/usr/bin/openssl";
  for (const auto& command : std::vector<std::vector<std::string>>{
           {openssl, "genrsa", "-out", d + "/sa.key", "2048"},
           {openssl, "rsa", "-in", d + "/sa.key", "-pubout", "-out", d + "/sa.pub"},
           {openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=tessera-test-client-ca", "-keyout", d + "/client-ca.key", "-out",
            d + "/client-ca.crt"},
           {openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj",
            "/O=system:masters/CN=tessera-test-user", "-keyout", d + "/client.key", "-out",
            d + "/client.csr"},
           {openssl, "x509", "-req", "-days", "2", "-in", d + "/client.csr", "-CA",
            d + "/client-ca.crt", "-CAkey", d + "/client-ca.key", "-CAcreateserial", "-out",
            d + "/client.crt"},
       }) {
    Status status = Run(command, log);
    if (!status.ok()) return status;
  }

  const std::vector<int> ports = FreePorts(3);
  if (ports.empty()) return Status::Error("no three free loopback ports");
  const int etcd_port = ports[0];
  const int peer_port = ports[1];
  apiserver_port_ = ports[2];
  std::string etcd_url = "http://127.0.0.1:" + std::to_string(etcd_port);
  etcd_url_ = etcd_url;
  std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port);
  etcd_ = Spawn({etcd_binary_, "--name=tessera-test", "--data-dir=" + d + "/etcd",
                 "--listen-client-urls=" + etcd_url, "--advertise-client-urls=" + etcd_url,
                 "--listen-peer-urls=" + peer_url, "--initial-advertise-peer-urls=" + peer_url,
                 "--initial-cluster=tessera-test=" + peer_url},
                d + "/etcd.log");
  if (etcd_ < 0) return Status::Error("cannot start " + etcd_binary_);

  server_ = "https://127.0.0.1:" + std::to_string(apiserver_port_);
  apiserver_ =
      Spawn({bin_dir_ + "/kube-apiserver", "--etcd-servers=" + etcd_url, "--bind-address=127.0.0.1",
             "--secure-port=" + std::to_string(apiserver_port_), "--cert-dir=" + d + "/certs",
             "--token-auth-file=" + d + "/tokens.csv", "--client-ca-file=" + d + "/client-ca.crt",
             "--anonymous-auth=false", "--authorization-mode=AlwaysAllow",
             "--service-account-key-file=" + d + "/sa.pub",
             "--service-account-signing-key-file=" + d + "/sa.key",
             "--service-account-issuer=https://kubernetes.default.svc",
             "--service-cluster-ip-range=10.0.0.0/24", "--disable-admission-plugins=ServiceAccount",
             "--enable-priority-and-fairness=false", "--watch-cache-sizes=configmaps#0",
             "--profiling=false", "--v=1"},
            d + "/apiserver.log");
  if (apiserver_ < 0) return Status::Error("cannot start kube-apiserver");
  return Status::Ok();
}

Status TestCluster::WaitUntilReady() {
  // The serving certificate does not exist until the apiserver makes it, so readiness is asked
  // without verifying it; the tests verify it.
  Config config = ConfigForServer(server_, token_);
  config.insecure_skip_tls_verify = true;
  auto transport = CurlTransport::Create(config, "tessera-test-cluster");
  if (!transport.ok()) return transport.status();
  auto deadline = Clock::now() + kReadyDeadline;
  std::string last = "no answer yet";
  // Ready, then the default namespace (made by a bootstrap controller just after).
  for (const char* path : {"/readyz", "/api/v1/namespaces/default"}) {
    while (true) {
      if (Exited(etcd_)) return Status::Error("etcd exited while the cluster was starting");
      if (Exited(apiserver_)) {
        return Status::Error("kube-apiserver exited while the cluster was starting");
      }
      HttpRequest request{"GET", path, "", "", std::chrono::seconds(10)};
      HttpResponse response = (*transport)->Send(request, nullptr, {});
      if (response.failure == TransportFailure::kNone && response.code == 200) break;
      last = response.failure != TransportFailure::kNone
                 ? response.error
                 : "HTTP " + std::to_string(response.code) + " " + response.body.substr(0, 300);
      if (Clock::now() > deadline) {
        return Status::Error(std::string("the cluster was not ready within ") +
                             std::to_string(kReadyDeadline.count()) + " s: GET " + path + ": " +
                             last);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polling a condition
    }
  }
  return Status::Ok();
}

Config TestCluster::AdminConfig() const {
  Config config = ConfigForServer(server_, token_);
  config.certificate_authority_file = ca_file();
  return config;
}

Status TestCluster::CompactEtcd(const std::string& revision) {
  // etcd's JSON gateway to its gRPC API.
  auto transport = CurlTransport::Create(ConfigForServer(etcd_url_, ""), "tessera-test-cluster");
  if (!transport.ok()) return transport.status();
  HttpRequest request{"POST", "/v3/kv/compaction",
                      R"({"revision":")" + revision + R"(","physical":true})", "application/json",
                      std::chrono::seconds(30)};
  HttpResponse response = (*transport)->Send(request, nullptr, {});
  if (response.failure != TransportFailure::kNone || response.code != 200) {
    return Status::Error("etcd compaction to " + revision + " failed: HTTP " +
                         std::to_string(response.code) + " " + response.error + " " +
                         response.body);
  }
  return Status::Ok();
}

std::string TestCluster::LogTails() const {
  return "etcd log (" + dir_ + "/etcd.log):\n" + Tail(dir_ + "/etcd.log") + "kube-apiserver log (" +
         dir_ + "/apiserver.log):\n" + Tail(dir_ + "/apiserver.log");
}

TestCluster::~TestCluster() {
  Stop(apiserver_);
  Stop(etcd_);
  if (!dir_.empty() && Env("TESSERA_KUBE_KEEP_DIR").empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

}  // namespace tessera::kube::testing
