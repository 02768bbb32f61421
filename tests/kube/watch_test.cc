// ListWatch against a fake apiserver that plays one list or watch answer per request.
#include "kube/watch.h"

#include <gtest/gtest.h>

#include <deque>
#include <thread>

#include "tests/kube/fakes.h"

namespace tessera::kube {
namespace {

using std::chrono::milliseconds;
using testing::FailedResponse;
using testing::FakeApiServer;
using testing::FakeClock;
using testing::JsonResponse;
using testing::StatusResponse;

nlohmann::json Pod(const std::string& name, const std::string& version) {
  return {{"kind", "Pod"}, {"metadata", {{"name", name}, {"resourceVersion", version}}}};
}

nlohmann::json PodList(const std::string& version, std::vector<nlohmann::json> items) {
  return {{"kind", "PodList"}, {"metadata", {{"resourceVersion", version}}}, {"items", items}};
}

std::string Event(const std::string& type, const nlohmann::json& object) {
  return nlohmann::json{{"type", type}, {"object", object}}.dump() + "\n";
}

// Streams `lines` into the sink as a 200 response would, stopping where the sink says.
HttpResponse Stream(const BodySink* sink, const std::vector<std::string>& lines) {
  HttpResponse response;
  response.code = 200;
  for (const std::string& line : lines) {
    if (!(*sink)(line)) {
      response.failure = TransportFailure::kAborted;
      break;
    }
  }
  return response;
}

bool IsWatch(const HttpRequest& request) {
  return request.target.find("watch=true") != std::string::npos;
}

std::string VersionIn(const HttpRequest& request) {
  size_t at = request.target.find("resourceVersion=");
  if (at == std::string::npos) return "";
  size_t end = request.target.find('&', at);
  return request.target.substr(at + 16,
                               end == std::string::npos ? std::string::npos : end - at - 16);
}

// Plays `answers` in order; after the last one, stops the ListWatch.
class Script {
 public:
  using Answer = std::function<HttpResponse(const HttpRequest&, const BodySink*)>;

  explicit Script(std::vector<Answer> answers, Clock* clock = nullptr)
      : answers_(answers.begin(), answers.end()) {
    auto* server = new FakeApiServer(
        [this](const HttpRequest& request, const BodySink* sink, const std::stop_token&) {
          if (answers_.empty()) {
            stop_.request_stop();
            return FailedResponse(TransportFailure::kStopped, "stopped");
          }
          Answer answer = std::move(answers_.front());
          answers_.pop_front();
          return answer(request, sink);
        });
    server_ = server;
    ClientOptions options;
    options.clock = clock != nullptr ? clock : &clock_;
    client_ = std::make_unique<Client>(std::unique_ptr<Transport>(server), options);
    handlers_.on_synced = [this](const nlohmann::json& list) { lists_.push_back(list); };
    handlers_.on_event = [this](const WatchEvent& event) {
      events_.push_back(std::string(EventTypeName(event.type)) + " " +
                        event.object["metadata"].value("name", "") + "@" +
                        ResourceVersionOf(event.object));
    };
    handlers_.on_watch_ended = [this] { ++watches_ended_; };
  }

  Status Run(const WatchOptions& options = {}) {
    return ListWatch(*client_, "/api/v1/pods", options, handlers_, stop_.get_token());
  }

  std::vector<HttpRequest> requests() { return server_->requests(); }
  std::vector<std::string> VersionsOfWatches() {
    std::vector<std::string> versions;
    for (const HttpRequest& request : requests()) {
      if (IsWatch(request)) versions.push_back(VersionIn(request));
    }
    return versions;
  }

  FakeClock clock_;
  std::vector<nlohmann::json> lists_;
  std::vector<std::string> events_;
  int watches_ended_ = 0;
  WatchHandlers handlers_;
  std::stop_source stop_;

 private:
  std::deque<Answer> answers_;
  FakeApiServer* server_;
  std::unique_ptr<Client> client_;
};

Script::Answer List(const nlohmann::json& list) {
  return [list](const HttpRequest& request, const BodySink*) {
    EXPECT_FALSE(IsWatch(request)) << request.target;
    return JsonResponse(200, list);
  };
}

Script::Answer Watch(const std::vector<std::string>& lines) {
  return [lines](const HttpRequest& request, const BodySink* sink) {
    EXPECT_TRUE(IsWatch(request)) << request.target;
    return Stream(sink, lines);
  };
}

Script::Answer Respond(const HttpResponse& response) {
  return [response](const HttpRequest&, const BodySink*) { return response; };
}

TEST(ListWatch, ListsThenWatchesFromTheListAndResumesFromTheLastEventSeen) {
  Script script({List(PodList("10", {Pod("a", "9")})),
                 Watch({Event("ADDED", Pod("b", "11")), Event("MODIFIED", Pod("b", "12")),
                        Event("BOOKMARK", Pod("", "15"))})});
  ASSERT_TRUE(script.Run().ok());
  ASSERT_EQ(script.lists_.size(), 1u);
  EXPECT_EQ(script.lists_[0]["items"].size(), 1u);
  EXPECT_EQ(script.events_,
            (std::vector<std::string>{"ADDED b@11", "MODIFIED b@12", "BOOKMARK @15"}));
  EXPECT_EQ(script.VersionsOfWatches(), (std::vector<std::string>{"10", "15"}));
  EXPECT_EQ(script.watches_ended_, 1);
  std::string target = script.requests()[1].target;
  EXPECT_NE(target.find("allowWatchBookmarks=true"), std::string::npos) << target;
  EXPECT_NE(target.find("timeoutSeconds=300"), std::string::npos) << target;
}

TEST(ListWatch, PassesSelectorsToTheListAndTheWatch) {
  Script script({List(PodList("10", {})), Watch({})});
  WatchOptions options;
  options.field_selector = "spec.nodeName=gpu-1";
  options.timeout_seconds = 2;
  ASSERT_TRUE(script.Run(options).ok());
  for (const HttpRequest& request : script.requests()) {
    EXPECT_NE(request.target.find("fieldSelector=spec.nodeName%3Dgpu-1"), std::string::npos)
        << request.target;
  }
  EXPECT_NE(script.requests()[1].target.find("timeoutSeconds=2"), std::string::npos);
}

TEST(ListWatch, RelistsWhenTheWatchIsAnswered410Gone) {
  Script script({List(PodList("10", {Pod("a", "9")})),
                 Respond(StatusResponse(410, "Expired", "too old resource version: 10 (20)")),
                 List(PodList("30", {Pod("a", "9"), Pod("c", "25")})),
                 Watch({Event("ADDED", Pod("d", "31"))})});
  ASSERT_TRUE(script.Run().ok());
  ASSERT_EQ(script.lists_.size(), 2u);
  EXPECT_EQ(script.lists_[1]["items"].size(), 2u);
  EXPECT_EQ(script.VersionsOfWatches(), (std::vector<std::string>{"10", "30", "31"}));
  EXPECT_TRUE(script.clock_.sleeps().empty()) << "a relist after 410 needs no backoff";
}

TEST(ListWatch, RelistsOnAnErrorEventWithCode410AndDropsTheRestOfThatStream) {
  nlohmann::json expired = {{"kind", "Status"},
                            {"code", 410},
                            {"reason", "Expired"},
                            {"message", "too old resource version: 1 (40)"}};
  Script script({List(PodList("10", {})),
                 Watch({Event("ADDED", Pod("x", "11")), Event("ERROR", expired),
                        Event("ADDED", Pod("y", "12"))}),
                 List(PodList("40", {Pod("x", "11")}))});
  ASSERT_TRUE(script.Run().ok());
  EXPECT_EQ(script.events_, std::vector<std::string>{"ADDED x@11"});
  EXPECT_EQ(script.lists_.size(), 2u);
  EXPECT_TRUE(script.clock_.sleeps().empty());
}

TEST(ListWatch, OtherErrorEventsRelistAfterABackoff) {
  nlohmann::json internal = {{"kind", "Status"}, {"code", 500}, {"message", "etcd hiccup"}};
  Script script(
      {List(PodList("10", {})), Watch({Event("ERROR", internal)}), List(PodList("12", {}))});
  ASSERT_TRUE(script.Run().ok());
  EXPECT_EQ(script.lists_.size(), 2u);
  EXPECT_EQ(script.clock_.sleeps().size(), 1u);
}

TEST(ListWatch, StartsFromAGivenVersionWithoutListing) {
  Script script({Watch({Event("MODIFIED", Pod("a", "56"))})});
  WatchOptions options;
  options.resource_version = "55";
  ASSERT_TRUE(script.Run(options).ok());
  EXPECT_TRUE(script.lists_.empty());
  EXPECT_EQ(script.VersionsOfWatches(), (std::vector<std::string>{"55", "56"}));
}

TEST(ListWatch, AMalformedStreamIsWatchedAgainFromTheLastGoodEvent) {
  Script script(
      {List(PodList("10", {})),
       Watch({Event("ADDED", Pod("a", "11")), "garbage\n", Event("ADDED", Pod("b", "12"))}),
       Watch({Event("ADDED", Pod("b", "12"))})});
  ASSERT_TRUE(script.Run().ok());
  EXPECT_EQ(script.events_, (std::vector<std::string>{"ADDED a@11", "ADDED b@12"}));
  EXPECT_EQ(script.VersionsOfWatches(), (std::vector<std::string>{"10", "11", "12"}));
  EXPECT_EQ(script.lists_.size(), 1u) << "a bad line does not need a relist";
  EXPECT_EQ(script.clock_.sleeps().size(), 1u);
}

TEST(ListWatch, RetriesAFailedWatchWithBackoffFromTheSameVersion) {
  HttpResponse busy = StatusResponse(429, "TooManyRequests", "");
  busy.retry_after = "5";
  Script script({List(PodList("10", {})),
                 Respond(FailedResponse(TransportFailure::kNotSent, "Connection refused")),
                 Respond(busy), Respond(StatusResponse(500, "InternalError", "")),
                 Watch({Event("ADDED", Pod("a", "11"))})});
  ASSERT_TRUE(script.Run().ok());
  EXPECT_EQ(script.VersionsOfWatches(), (std::vector<std::string>{"10", "10", "10", "10", "11"}));
  auto sleeps = script.clock_.sleeps();
  ASSERT_EQ(sleeps.size(), 3u);
  EXPECT_EQ(sleeps[1], milliseconds(5000)) << "Retry-After";
  EXPECT_EQ(script.lists_.size(), 1u);
}

TEST(ListWatch, EndsWithTheErrorOfAListThatRetryingCannotFix) {
  Script script({Respond(StatusResponse(403, "Forbidden", "pods is forbidden: User \"x\""))});
  Status status = script.Run();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("GET /api/v1/pods: HTTP 403 Forbidden: pods is forbidden"),
            std::string::npos)
      << status.message();
}

TEST(ListWatch, EndsWithTheErrorOfAWatchThatRetryingCannotFix) {
  Script script({List(PodList("10", {})),
                 Respond(StatusResponse(404, "NotFound", "the server could not find it"))});
  Status status = script.Run();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("HTTP 404 NotFound"), std::string::npos) << status.message();
}

TEST(ListWatch, AListWithoutAResourceVersionIsAnError) {
  Script script({List({{"items", nlohmann::json::array()}})});
  EXPECT_FALSE(script.Run().ok());
}

TEST(ListWatch, StopsPromptlyWhileWaitingToRetry) {
  // A real clock, and a retry delay far longer than the test may take.
  std::vector<Script::Answer> answers = {List(PodList("10", {}))};
  for (int i = 0; i < 100; ++i) {
    answers.push_back(Respond(StatusResponse(503, "ServiceUnavailable", "")));
  }
  Script script(answers, &Clock::Real());
  WatchOptions options;
  options.retry.initial_delay = milliseconds(60'000);
  options.retry.max_delay = milliseconds(60'000);
  std::atomic<bool> failed_once{false};
  script.handlers_.on_watch_ended = [&] { failed_once = true; };
  std::thread stopper([&] {
    while (!failed_once) std::this_thread::yield();
    script.stop_.request_stop();
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(script.Run(options).ok());
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace tessera::kube
