// Fakes for the client's unit tests: an apiserver behind the Transport interface, answering with a
// function the test writes, and a clock whose sleeps pass at once.
#ifndef TESSERA_TESTS_KUBE_FAKES_H_
#define TESSERA_TESTS_KUBE_FAKES_H_

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube/backoff.h"
#include "kube/transport.h"

namespace tessera::kube::testing {

class FakeApiServer final : public Transport {
 public:
  // Answers one request. A handler that streams calls (*sink)(bytes) and returns a 200.
  using Handler =
      std::function<HttpResponse(const HttpRequest&, const BodySink*, const std::stop_token&)>;

  explicit FakeApiServer(Handler handler) : handler_(std::move(handler)) {}

  HttpResponse Send(const HttpRequest& request, const BodySink* sink,
                    std::stop_token stop) override {
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
    }
    return handler_(request, sink, stop);
  }

  std::vector<HttpRequest> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  Handler handler_;
  std::mutex mutex_;
  std::vector<HttpRequest> requests_;
};

inline HttpResponse JsonResponse(long code, const nlohmann::json& body) {
  HttpResponse response;
  response.code = code;
  response.body = body.dump();
  return response;
}

// An error response as the apiserver sends it: a Status object.
inline HttpResponse StatusResponse(long code, const std::string& reason,
                                   const std::string& message) {
  return JsonResponse(code, {{"kind", "Status"},
                             {"apiVersion", "v1"},
                             {"status", "Failure"},
                             {"message", message},
                             {"reason", reason},
                             {"code", code}});
}

inline HttpResponse FailedResponse(TransportFailure failure, const std::string& error) {
  HttpResponse response;
  response.failure = failure;
  response.error = error;
  return response;
}

// Time passes only when someone sleeps.
class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() override {
    std::lock_guard lock(mutex_);
    return now_;
  }
  bool SleepFor(Milliseconds delay, std::stop_token stop) override {
    std::lock_guard lock(mutex_);
    sleeps_.push_back(delay);
    now_ += delay;
    return !stop.stop_requested();
  }
  std::vector<Milliseconds> sleeps() {
    std::lock_guard lock(mutex_);
    return sleeps_;
  }

 private:
  std::mutex mutex_;
  std::chrono::steady_clock::time_point now_{};
  std::vector<Milliseconds> sleeps_;
};

}  // namespace tessera::kube::testing

#endif  // TESSERA_TESTS_KUBE_FAKES_H_
