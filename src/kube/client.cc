#include "kube/client.h"

#include <cstdio>

#include "common/log.h"
#include "kube/curl_transport.h"

namespace tessera::kube {
namespace {

constexpr const char* kLog = "kube";

std::string Excerpt(std::string_view text) {
  constexpr size_t kMax = 200;
  std::string out(text.substr(0, kMax));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return text.size() > kMax ? out + "..." : out;
}

std::string Seconds(Milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(duration.count()) / 1000.0);
  return text;
}

bool IsIdempotent(std::string_view method) {
  return method == "GET" || method == "PUT" || method == "DELETE" || method == "HEAD";
}

// Why `response` deserves another attempt; "" when it does not.
std::string RetryReason(std::string_view method, const HttpResponse& response) {
  switch (response.failure) {
    case TransportFailure::kNotSent:
      return "no connection: " + response.error;
    case TransportFailure::kInterrupted:
      return IsIdempotent(method) ? "connection failed: " + response.error : "";
    case TransportFailure::kRejected:
    case TransportFailure::kAborted:
    case TransportFailure::kStopped:
      return "";
    case TransportFailure::kNone:
      break;
  }
  long code = response.code;
  if (code == 429) return "HTTP 429 (too many requests)";
  // 503 and a Retry-After mean the server did not act on the request.
  if (code == 503 || (code >= 500 && !response.retry_after.empty())) {
    return "HTTP " + std::to_string(code);
  }
  if (code >= 500 && IsIdempotent(method)) return "HTTP " + std::to_string(code);
  return "";
}

std::string StringField(const nlohmann::json& object, const char* key) {
  auto found = object.find(key);
  return found != object.end() && found->is_string() ? found->get<std::string>() : "";
}

}  // namespace

std::string_view ContentTypeOf(PatchType type) {
  switch (type) {
    case PatchType::kMerge:
      return "application/merge-patch+json";
    case PatchType::kStrategicMerge:
      return "application/strategic-merge-patch+json";
    case PatchType::kJson:
      return "application/json-patch+json";
  }
  return "application/merge-patch+json";
}

ApiResult ErrorResult(std::string_view method, std::string_view target,
                      const HttpResponse& response) {
  std::string prefix = std::string(method) + " " + std::string(target) + ": ";
  if (response.failure != TransportFailure::kNone && response.code == 0) {
    return ApiResult(Status::Error(prefix + "no response: " + response.error), 0);
  }
  if (response.failure != TransportFailure::kNone) {
    return ApiResult(Status::Error(prefix + "HTTP " + std::to_string(response.code) +
                                   ", then the connection failed: " + response.error),
                     response.code);
  }
  std::string reason;
  std::string message;
  nlohmann::json status = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (status.is_object() && StringField(status, "kind") == "Status") {
    reason = StringField(status, "reason");
    message = StringField(status, "message");
  } else {
    message = Excerpt(response.body);
  }
  std::string text = prefix + "HTTP " + std::to_string(response.code);
  if (!reason.empty()) text += " " + reason;
  if (!message.empty()) text += ": " + message;
  return ApiResult(Status::Error(text), response.code, reason);
}

Result<std::unique_ptr<Client>> Client::FromConfig(const Config& config, ClientOptions options) {
  auto transport = CurlTransport::Create(config, options.user_agent);
  if (!transport.ok()) return transport.status();
  return std::make_unique<Client>(std::move(*transport), std::move(options), config.namespace_name);
}

Client::Client(std::unique_ptr<Transport> transport, ClientOptions options,
               std::string namespace_name)
    : transport_(std::move(transport)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : &Clock::Real()),
      namespace_name_(std::move(namespace_name)) {}

ApiResult Client::Get(std::string_view path) { return Call("GET", path); }

ApiResult Client::List(std::string_view collection_path, const ListOptions& options) {
  std::string target = WithQuery(std::string(collection_path),
                                 {{"labelSelector", options.label_selector},
                                  {"fieldSelector", options.field_selector},
                                  {"resourceVersion", options.resource_version},
                                  {"limit", options.limit > 0 ? std::to_string(options.limit) : ""},
                                  {"continue", options.continue_token}});
  return Call("GET", target);
}

ApiResult Client::Create(std::string_view path, const nlohmann::json& object) {
  return Call("POST", path, object);
}

ApiResult Client::Update(std::string_view path, const nlohmann::json& object) {
  return Call("PUT", path, object);
}

ApiResult Client::Patch(std::string_view path, PatchType type, const nlohmann::json& patch) {
  return Call("PATCH", path, patch, ContentTypeOf(type));
}

ApiResult Client::Delete(std::string_view path, const nlohmann::json& options) {
  return Call("DELETE", path, options);
}

ApiResult Client::Call(std::string_view method, std::string_view target, const nlohmann::json& body,
                       std::string_view content_type, const std::stop_token& stop) {
  HttpRequest request;
  request.method = std::string(method);
  request.target = std::string(target);
  request.timeout = options_.request_timeout;
  if (!body.is_null()) {
    // Replace, not throw, on invalid UTF-8 in a string the caller built.
    request.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    request.content_type = std::string(content_type);
  }
  Backoff backoff(options_.retry);
  auto start = clock_->Now();
  for (int attempt = 1;; ++attempt) {
    HttpResponse response = transport_->Send(request, nullptr, stop);
    if (response.failure == TransportFailure::kNone && response.code >= 200 &&
        response.code < 300) {
      if (response.body.empty()) return ApiResult(nlohmann::json(), response.code);
      nlohmann::json value = nlohmann::json::parse(response.body, nullptr, false);
      if (value.is_discarded()) {
        return ApiResult(Status::Error(request.method + " " + request.target + ": HTTP " +
                                       std::to_string(response.code) +
                                       " with a body that is not JSON: " + Excerpt(response.body)),
                         response.code);
      }
      return ApiResult(std::move(value), response.code);
    }
    std::string why = RetryReason(method, response);
    if (why.empty() || stop.stop_requested()) return ErrorResult(method, target, response);
    auto elapsed = std::chrono::duration_cast<Milliseconds>(clock_->Now() - start);
    std::optional<Milliseconds> delay =
        backoff.NextDelay(elapsed, ParseRetryAfter(response.retry_after));
    if (!delay) {
      ApiResult error = ErrorResult(method, target, response);
      return ApiResult(
          Status::Error(error.status().message() + " (gave up after " + std::to_string(attempt) +
                        " attempts in " + Seconds(elapsed) + ")"),
          error.code(), error.reason());
    }
    log::Write(log::Level::kWarn, kLog, "%s %s: %s; retry %d in %lld ms", request.method.c_str(),
               request.target.c_str(), why.c_str(), attempt,
               static_cast<long long>(delay->count()));
    if (!clock_->SleepFor(*delay, stop)) return ErrorResult(method, target, response);
  }
}

BackoffPolicy ConflictRetryPolicy() {
  BackoffPolicy policy;
  policy.initial_delay = Milliseconds(10);
  policy.multiplier = 2.0;
  policy.max_delay = Milliseconds(500);
  policy.jitter = 0.5;
  policy.max_retries = 10;
  policy.deadline = Milliseconds(30'000);
  return policy;
}

ApiResult RetryOnConflict(const std::function<ApiResult()>& attempt, const BackoffPolicy& policy,
                          Clock& clock) {
  Backoff backoff(policy);
  auto start = clock.Now();
  while (true) {
    ApiResult result = attempt();
    if (!result.IsConflict()) return result;
    auto elapsed = std::chrono::duration_cast<Milliseconds>(clock.Now() - start);
    std::optional<Milliseconds> delay = backoff.NextDelay(elapsed);
    if (!delay) return result;
    log::Write(log::Level::kInfo, kLog, "conflict (%s); read-modify-write again in %lld ms",
               result.status().message().c_str(), static_cast<long long>(delay->count()));
    clock.SleepFor(*delay, {});
  }
}

}  // namespace tessera::kube
