// A client for the Kubernetes API: JSON objects in and out, over any path, with retries.
//
//   auto client = kube::Client::FromConfig(*kube::LoadDefaultConfig());
//   kube::ApiResult node = (*client)->Get(kube::ObjectPath(kube::kNodes, "", "gpu-1"));
//   (*client)->Patch(kube::ObjectPath(kube::kNodes, "", "gpu-1"), kube::PatchType::kMerge,
//                    {{"metadata", {{"annotations", {{"tessera.io/gpus", "2"}}}}}});
//
// Retries, with the ClientOptions' backoff: 429 (waiting at least its Retry-After) and 503 for
// every verb; other 5xx, and connections that failed after the request was sent, only for GET, PUT
// and DELETE (a POST or PATCH the server may have applied is not sent twice); connections that
// never sent the request for every verb. Nothing else is retried: 409 Conflict goes back to the
// caller, whose read-modify-write RetryOnConflict runs again.
//
// Every error names the verb, the path, the HTTP code and reason and the apiserver's message:
//   PUT /api/v1/namespaces/default/configmaps/c: HTTP 409 Conflict: Operation cannot be
//   fulfilled...
//
// Thread-safe: any number of threads may call one Client.
#ifndef TESSERA_KUBE_CLIENT_H_
#define TESSERA_KUBE_CLIENT_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string>
#include <string_view>

#include "common/status.h"
#include "kube/backoff.h"
#include "kube/config.h"
#include "kube/paths.h"
#include "kube/transport.h"

namespace tessera::kube {

// The outcome of one call: the object, or an error with the HTTP code and the apiserver's reason.
class ApiResult {
 public:
  ApiResult(nlohmann::json value, long code = 200)  // NOLINT(google-explicit-constructor)
      : code_(code), value_(std::move(value)) {}
  ApiResult(Status status, long code = 0,  // NOLINT(google-explicit-constructor)
            std::string reason = {})
      : status_(std::move(status)), code_(code), reason_(std::move(reason)) {}

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // The HTTP status of the last response; 0 when none came (connection failed, stopped).
  long code() const { return code_; }
  // The reason of the apiserver's Status ("NotFound", "Conflict", "AlreadyExists", "Expired").
  const std::string& reason() const { return reason_; }

  bool IsNotFound() const { return code_ == 404; }
  // A write lost to a concurrent one (resourceVersion mismatch); read again and retry.
  bool IsConflict() const { return code_ == 409 && reason_ != "AlreadyExists"; }
  bool IsAlreadyExists() const { return code_ == 409 && reason_ == "AlreadyExists"; }
  bool IsGone() const { return code_ == 410; }

  // REQUIRES: ok()
  nlohmann::json& value() & { return value_; }
  const nlohmann::json& value() const& { return value_; }
  nlohmann::json&& value() && { return std::move(value_); }
  nlohmann::json* operator->() { return &value_; }
  const nlohmann::json* operator->() const { return &value_; }
  nlohmann::json& operator*() & { return value_; }
  const nlohmann::json& operator*() const& { return value_; }

 private:
  Status status_;
  long code_ = 0;
  std::string reason_;
  nlohmann::json value_;
};

enum class PatchType {
  kMerge,           // application/merge-patch+json (RFC 7386)
  kStrategicMerge,  // application/strategic-merge-patch+json (lists merged by key)
  kJson,            // application/json-patch+json (RFC 6902: a list of operations)
};
std::string_view ContentTypeOf(PatchType type);

struct ListOptions {
  std::string label_selector;  // "app=x,tier!=db"
  std::string field_selector;  // "spec.nodeName=gpu-1"
  std::string resource_version;
  long long limit = 0;  // 0: all at once
  std::string continue_token;
};

struct ClientOptions {
  BackoffPolicy retry;
  Milliseconds request_timeout{30'000};  // one attempt of one call (watches have none)
  std::string user_agent = "tessera";
  Clock* clock = nullptr;  // Clock::Real() when null; must outlive the client
};

class Client {
 public:
  // The real client, over HTTPS as `config` says.
  static Result<std::unique_ptr<Client>> FromConfig(const Config& config,
                                                    ClientOptions options = {});
  // Over any transport (tests use a fake apiserver).
  explicit Client(std::unique_ptr<Transport> transport, ClientOptions options = {},
                  std::string namespace_name = "default");

  ApiResult Get(std::string_view path);
  ApiResult List(std::string_view collection_path, const ListOptions& options = {});
  // POST to a collection, or to a subresource such as pods/NAME/binding.
  ApiResult Create(std::string_view path, const nlohmann::json& object);
  // PUT: replaces the object; fails with a conflict when metadata.resourceVersion is stale.
  ApiResult Update(std::string_view path, const nlohmann::json& object);
  ApiResult Patch(std::string_view path, PatchType type, const nlohmann::json& patch);
  // `options` is a DeleteOptions body ({"gracePeriodSeconds": 0}) or null.
  ApiResult Delete(std::string_view path, const nlohmann::json& options = nullptr);

  // Any method on any path and query, with the retries above; `body` null sends none. Returns
  // early (code 0) once `stop` is requested.
  ApiResult Call(std::string_view method, std::string_view target,
                 const nlohmann::json& body = nullptr,
                 std::string_view content_type = "application/json",
                 const std::stop_token& stop = {});

  // The context's or service account's namespace.
  const std::string& namespace_name() const { return namespace_name_; }
  Transport& transport() { return *transport_; }
  Clock& clock() { return *clock_; }
  const ClientOptions& options() const { return options_; }

 private:
  std::unique_ptr<Transport> transport_;
  ClientOptions options_;
  Clock* clock_;
  std::string namespace_name_;
};

// The error of a failed exchange, as the client reports it: "VERB TARGET: HTTP 404 NotFound:
// message" (or ": no response: what failed"), and the apiserver's reason.
ApiResult ErrorResult(std::string_view method, std::string_view target,
                      const HttpResponse& response);

// For RetryOnConflict: many quick retries, since each costs a read and a write.
BackoffPolicy ConflictRetryPolicy();

// Runs `attempt` (read, modify, write) until it returns something other than a conflict, with a
// short backoff between tries; the last result is returned.
ApiResult RetryOnConflict(const std::function<ApiResult()>& attempt,
                          const BackoffPolicy& policy = ConflictRetryPolicy(),
                          Clock& clock = Clock::Real());

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_CLIENT_H_
