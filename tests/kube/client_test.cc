// The client's retries and errors, against a fake apiserver and a fake clock.
#include "kube/client.h"

#include <gtest/gtest.h>

#include <atomic>

#include "tests/kube/fakes.h"

namespace tessera::kube {
namespace {

using std::chrono::milliseconds;
using testing::FailedResponse;
using testing::FakeApiServer;
using testing::FakeClock;
using testing::JsonResponse;
using testing::StatusResponse;

const nlohmann::json kNode = {{"kind", "Node"}, {"metadata", {{"name", "n1"}}}};

// A client whose apiserver answers with `responses` in turn (the last one again and again).
struct Scripted {
  explicit Scripted(std::vector<HttpResponse> responses, BackoffPolicy policy = {})
      : server(
            new FakeApiServer([this](const HttpRequest&, const BodySink*, const std::stop_token&) {
              size_t i = std::min(next++, script.size() - 1);
              return script[i];
            })),
        script(std::move(responses)) {
    ClientOptions options;
    options.retry = policy;
    options.retry.jitter = 0;
    options.clock = &clock;
    client = std::make_unique<Client>(std::unique_ptr<Transport>(server), options);
  }
  FakeApiServer* server;
  std::vector<HttpResponse> script;
  size_t next = 0;
  FakeClock clock;
  std::unique_ptr<Client> client;
};

void ExpectMessageHas(const ApiResult& result, const std::string& part) {
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find(part), std::string::npos)
      << "\"" << result.status().message() << "\" lacks \"" << part << "\"";
}

TEST(Client, RetriesServiceUnavailableAndReturnsTheObject) {
  Scripted s({StatusResponse(503, "ServiceUnavailable", "etcd is down"),
              StatusResponse(503, "ServiceUnavailable", "etcd is down"), JsonResponse(200, kNode)});
  ApiResult node = s.client->Get("/api/v1/nodes/n1");
  ASSERT_TRUE(node.ok()) << node.status().message();
  EXPECT_EQ(node.code(), 200);
  EXPECT_EQ((*node)["metadata"]["name"], "n1");
  EXPECT_EQ(s.server->requests().size(), 3u);
  EXPECT_EQ(s.clock.sleeps(), (std::vector<milliseconds>{milliseconds(200), milliseconds(400)}));
}

TEST(Client, WaitsAtLeastTheRetryAfterOfA429) {
  HttpResponse busy = StatusResponse(429, "TooManyRequests", "slow down");
  busy.retry_after = "3";
  Scripted s({busy, JsonResponse(201, kNode)});
  ApiResult created = s.client->Create("/api/v1/nodes", kNode);
  ASSERT_TRUE(created.ok()) << created.status().message();
  EXPECT_EQ(created.code(), 201);
  EXPECT_EQ(s.clock.sleeps(), std::vector<milliseconds>{milliseconds(3000)});
}

TEST(Client, GivesUpAtTheDeadlineAndSaysAfterHowManyAttempts) {
  BackoffPolicy policy;
  policy.initial_delay = milliseconds(100);
  policy.deadline = milliseconds(1000);
  Scripted s({StatusResponse(500, "InternalError", "boom")}, policy);
  ApiResult node = s.client->Get("/api/v1/nodes/n1");
  EXPECT_EQ(node.code(), 500);
  ExpectMessageHas(node,
                   "GET /api/v1/nodes/n1: HTTP 500 InternalError: boom (gave up after 4 "
                   "attempts in 0.7 s)");
  EXPECT_EQ(s.server->requests().size(), 4u);  // at 0, 100, 300 and 700 ms; the next: 1500
}

TEST(Client, ReturnsAConflictAtOnceWithItsCodeAndReason) {
  Scripted s({StatusResponse(409, "Conflict",
                             "Operation cannot be fulfilled on configmaps \"c\": the object has "
                             "been modified")});
  ApiResult updated = s.client->Update("/api/v1/namespaces/default/configmaps/c", kNode);
  EXPECT_TRUE(updated.IsConflict());
  EXPECT_FALSE(updated.IsAlreadyExists());
  EXPECT_EQ(updated.code(), 409);
  EXPECT_EQ(updated.reason(), "Conflict");
  ExpectMessageHas(updated,
                   "PUT /api/v1/namespaces/default/configmaps/c: HTTP 409 Conflict: "
                   "Operation cannot be fulfilled");
  EXPECT_EQ(s.server->requests().size(), 1u);
}

TEST(Client, NotFoundNamesTheVerbPathCodeAndServerMessage) {
  Scripted s({StatusResponse(404, "NotFound", "nodes \"n9\" not found")});
  ApiResult node = s.client->Patch("/api/v1/nodes/n9", PatchType::kMerge, {{"a", 1}});
  EXPECT_TRUE(node.IsNotFound());
  EXPECT_EQ(node.status().message(),
            "PATCH /api/v1/nodes/n9: HTTP 404 NotFound: nodes \"n9\" not found");
  EXPECT_EQ(s.server->requests().size(), 1u);
}

TEST(Client, AnErrorBodyThatIsNotAStatusIsQuoted) {
  HttpResponse response;
  response.code = 502;
  response.body = "<html>bad gateway</html>";
  Scripted s({response}, [] {
    BackoffPolicy policy;
    policy.max_retries = 1;
    return policy;
  }());
  ExpectMessageHas(s.client->Delete("/api/v1/nodes/n1"),
                   "DELETE /api/v1/nodes/n1: HTTP 502: <html>bad gateway</html>");
}

TEST(Client, RetriesAnyVerbWhoseRequestNeverLeft) {
  Scripted s({FailedResponse(TransportFailure::kNotSent, "Couldn't connect to server"),
              JsonResponse(201, kNode)});
  EXPECT_TRUE(s.client->Create("/api/v1/nodes", kNode).ok());
  EXPECT_EQ(s.server->requests().size(), 2u);
}

TEST(Client, DoesNotResendAPostOrPatchThatTheServerMayHaveApplied) {
  for (const HttpResponse& failure :
       {FailedResponse(TransportFailure::kInterrupted, "Recv failure: Connection reset by peer"),
        StatusResponse(500, "InternalError", "etcd timeout")}) {
    Scripted post({failure, JsonResponse(201, kNode)});
    EXPECT_FALSE(post.client->Create("/api/v1/nodes", kNode).ok());
    EXPECT_EQ(post.server->requests().size(), 1u);
    Scripted patch({failure, JsonResponse(200, kNode)});
    EXPECT_FALSE(
        patch.client->Patch("/api/v1/nodes/n1", PatchType::kJson, nlohmann::json::array()).ok());
    EXPECT_EQ(patch.server->requests().size(), 1u);
    Scripted get({failure, JsonResponse(200, kNode)});
    EXPECT_TRUE(get.client->Get("/api/v1/nodes/n1").ok()) << "a GET is safe to repeat";
    EXPECT_EQ(get.server->requests().size(), 2u);
  }
}

TEST(Client, ATransportFailureSaysNoResponse) {
  Scripted s({FailedResponse(TransportFailure::kRejected, "SSL peer certificate was not OK")});
  ApiResult node = s.client->Get("/api/v1/nodes/n1");
  EXPECT_EQ(node.code(), 0);
  EXPECT_EQ(node.status().message(),
            "GET /api/v1/nodes/n1: no response: SSL peer certificate was not OK");
  EXPECT_EQ(s.server->requests().size(), 1u) << "a bad certificate stays bad";
}

TEST(Client, ASuccessWhoseBodyIsNotJsonIsAnError) {
  HttpResponse response;
  response.code = 200;
  response.body = "ok";
  Scripted s({response});
  ExpectMessageHas(s.client->Get("/readyz"), "GET /readyz: HTTP 200 with a body that is not JSON");
}

TEST(Client, SendsJsonWithTheContentTypeOfEachPatch) {
  Scripted s({JsonResponse(200, kNode)});
  const nlohmann::json patch = {{"metadata", {{"labels", {{"a", "b"}}}}}};
  ASSERT_TRUE(s.client->Patch("/p", PatchType::kMerge, patch).ok());
  ASSERT_TRUE(s.client->Patch("/p", PatchType::kStrategicMerge, patch).ok());
  ASSERT_TRUE(s.client->Patch("/p", PatchType::kJson, nlohmann::json::array()).ok());
  ASSERT_TRUE(s.client->Update("/p", kNode).ok());
  ASSERT_TRUE(s.client->Delete("/p", {{"gracePeriodSeconds", 0}}).ok());
  ASSERT_TRUE(s.client->Delete("/p").ok());
  auto requests = s.server->requests();
  ASSERT_EQ(requests.size(), 6u);
  EXPECT_EQ(requests[0].method, "PATCH");
  EXPECT_EQ(requests[0].content_type, "application/merge-patch+json");
  EXPECT_EQ(nlohmann::json::parse(requests[0].body), patch);
  EXPECT_EQ(requests[1].content_type, "application/strategic-merge-patch+json");
  EXPECT_EQ(requests[2].content_type, "application/json-patch+json");
  EXPECT_EQ(requests[2].body, "[]");
  EXPECT_EQ(requests[3].method, "PUT");
  EXPECT_EQ(requests[3].content_type, "application/json");
  EXPECT_EQ(requests[4].method, "DELETE");
  EXPECT_EQ(requests[4].body, R"({"gracePeriodSeconds":0})");
  EXPECT_EQ(requests[5].body, "");
  EXPECT_EQ(requests[5].content_type, "");
}

TEST(Client, ListPutsSelectorsInTheQueryEscaped) {
  Scripted s({JsonResponse(200, {{"items", nlohmann::json::array()}})});
  ListOptions options;
  options.label_selector = "app=gpu,tier!=db";
  options.field_selector = "spec.nodeName=n 1";
  options.limit = 50;
  ASSERT_TRUE(s.client->List("/api/v1/pods", options).ok());
  EXPECT_EQ(
      s.server->requests()[0].target,
      "/api/v1/pods?labelSelector=app%3Dgpu%2Ctier%21%3Ddb&fieldSelector=spec.nodeName%3Dn%201"
      "&limit=50");
}

TEST(Client, AStopRequestEndsTheRetries) {
  Scripted s({StatusResponse(503, "ServiceUnavailable", "")});
  std::stop_source stop;
  stop.request_stop();
  ApiResult result = s.client->Call("GET", "/x", nullptr, "application/json", stop.get_token());
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(s.server->requests().size(), 1u);
}

TEST(RetryOnConflict, RunsTheAttemptAgainUntilItIsNotAConflict) {
  FakeClock clock;
  int attempts = 0;
  ApiResult result = RetryOnConflict(
      [&]() -> ApiResult {
        if (++attempts < 3) return ApiResult(Status::Error("conflict"), 409, "Conflict");
        return nlohmann::json{{"done", true}};
      },
      ConflictRetryPolicy(), clock);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(clock.sleeps().size(), 2u);
}

TEST(RetryOnConflict, ReturnsOtherErrorsAtOnceIncludingAlreadyExists) {
  FakeClock clock;
  int attempts = 0;
  ApiResult result = RetryOnConflict(
      [&] {
        ++attempts;
        return ApiResult(Status::Error("exists"), 409, "AlreadyExists");
      },
      ConflictRetryPolicy(), clock);
  EXPECT_TRUE(result.IsAlreadyExists());
  EXPECT_EQ(attempts, 1);
}

TEST(RetryOnConflict, GivesUpAfterThePolicysRetriesWithTheConflict) {
  FakeClock clock;
  BackoffPolicy policy = ConflictRetryPolicy();
  policy.max_retries = 4;
  int attempts = 0;
  ApiResult result = RetryOnConflict(
      [&] {
        ++attempts;
        return ApiResult(Status::Error("still conflicting"), 409, "Conflict");
      },
      policy, clock);
  EXPECT_TRUE(result.IsConflict());
  EXPECT_EQ(attempts, 5);
}

TEST(Paths, BuildCoreGroupAndNamedGroupPaths) {
  EXPECT_EQ(CollectionPath(kPods), "/api/v1/pods");
  EXPECT_EQ(CollectionPath(kPods, "default"), "/api/v1/namespaces/default/pods");
  EXPECT_EQ(CollectionPath(kNodes, "ignored"), "/api/v1/nodes");
  EXPECT_EQ(ObjectPath(kPods, "ns", "p", "binding"), "/api/v1/namespaces/ns/pods/p/binding");
  EXPECT_EQ(ObjectPath(kNodes, "", "n1", "status"), "/api/v1/nodes/n1/status");
  EXPECT_EQ(ObjectPath(kLeases, "kube-system", "tessera-scheduler"),
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/tessera-scheduler");
  EXPECT_EQ(ObjectPath(kConfigMaps, "a b", "x/y"), "/api/v1/namespaces/a%20b/configmaps/x%2Fy");
}

TEST(Paths, WithQueryLeavesOutEmptyValuesAndContinuesAnExistingQuery) {
  EXPECT_EQ(WithQuery("/p", {{"a", ""}, {"b", "1"}}), "/p?b=1");
  EXPECT_EQ(WithQuery("/p?x=1", {{"b", "2"}}), "/p?x=1&b=2");
  EXPECT_EQ(WithQuery("/p", {}), "/p");
}

}  // namespace
}  // namespace tessera::kube
