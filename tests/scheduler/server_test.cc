// The extender as tessera-scheduler serves it (SetUpExtender), over real HTTP connections: each
// verb at its path, and kube-scheduler's back-to-back calls on one kept-alive connection.
#include "scheduler/server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <mutex>
#include <set>
#include <thread>

namespace tessera::scheduler {
namespace {

using nlohmann::json;

class NoApiServer : public Binder {
 public:
  Status Bind(const std::string&, const std::string&, const std::string&, const std::string&,
              const std::map<std::string, std::string>&) override {
    return Status::Error("no API server");
  }
  Result<json> GetPod(const std::string&, const std::string&) override {
    return Status::Error("no API server");
  }
};

class ExtenderServerTest : public ::testing::Test {
 protected:
  ExtenderServerTest() : state_(StateOptions{}), extender_(state_, binder_) {
    SetUpExtender(server_, extender_);
    // The logger runs once per call answered: the client ports it sees are the connections.
    server_.set_logger([this](const httplib::Request& request, const httplib::Response&) {
      std::lock_guard lock(mutex_);
      client_ports_.insert(request.remote_port);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    listener_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop runs would be lost; the socket already listens meanwhile.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  }
  ~ExtenderServerTest() override { Stop(); }

  // Stops the server and waits for its threads, so every answered call has been logged.
  void Stop() {
    if (!listener_.joinable()) return;
    server_.stop();
    listener_.join();
  }
  httplib::Client Client() {
    httplib::Client client("127.0.0.1", port_);
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);  // as kube-scheduler's Go client
    return client;
  }

  State state_;
  NoApiServer binder_;
  Extender extender_;
  httplib::Server server_;
  int port_ = 0;
  std::thread listener_;
  std::mutex mutex_;
  std::set<int> client_ports_;
};

TEST_F(ExtenderServerTest, EachVerbIsServedAtItsPath) {
  httplib::Client client = Client();
  for (const char* verb : {"filter", "prioritize", "bind", "preempt"}) {
    httplib::Result answer = client.Post(std::string("/") + verb, "{}", "application/json");
    ASSERT_TRUE(answer) << verb << ": " << httplib::to_string(answer.error());
    EXPECT_EQ(answer->status, 400) << verb;
    // Each verb names itself in its error: the path reached that verb.
    EXPECT_EQ(json::parse(answer->body).value("Error", "").rfind(verb, 0), 0u) << answer->body;
  }
}

TEST_F(ExtenderServerTest, OneKeptAliveConnectionCarriesBackToBackCalls) {
  httplib::Client client = Client();
  const json pod = {{"metadata", {{"name", "p"}, {"namespace", "default"}, {"uid", "uid-p"}}},
                    {"spec", {{"containers", json::array()}}}};
  const std::string body = json{{"Pod", pod}, {"NodeNames", {"a"}}}.dump();
  constexpr int kCalls = 50;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) {
    httplib::Result answer = client.Post("/prioritize", body, "application/json");
    ASSERT_TRUE(answer) << httplib::to_string(answer.error());
    ASSERT_EQ(answer->status, 200) << answer->body;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  Stop();
  // httplib's default closes a connection after 5 calls (a TLS handshake each time under HTTPS).
  EXPECT_EQ(client_ports_.size(), 1u);
  // Without TCP_NODELAY an answer's body waits behind its headers for the client's delayed ACK:
  // 40 ms a call on Linux. These calls take well under a millisecond each.
  EXPECT_LT(elapsed, kCalls * std::chrono::milliseconds(40) / 2);
}

}  // namespace
}  // namespace tessera::scheduler
