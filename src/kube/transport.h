// One HTTP exchange with the apiserver, where the network enters. The client adds JSON, retries
// and error messages on top; CurlTransport (curl_transport.h) is the real one, and tests put a fake
// apiserver behind this interface.
#ifndef TESSERA_KUBE_TRANSPORT_H_
#define TESSERA_KUBE_TRANSPORT_H_

#include <chrono>
#include <functional>
#include <stop_token>
#include <string>
#include <string_view>

namespace tessera::kube {

struct HttpRequest {
  std::string method;  // GET, POST, PUT, PATCH, DELETE
  std::string target;  // path and query, "/api/v1/pods?watch=1"
  std::string body;
  std::string content_type;              // of the body
  std::chrono::milliseconds timeout{0};  // for the whole exchange; 0: none (a watch)
};

// Why no complete response came. Retrying is safe after kNotSent; after kInterrupted the server
// may have acted on the request.
enum class TransportFailure {
  kNone,
  kNotSent,      // no connection (refused, DNS, TLS handshake); the request never left
  kInterrupted,  // the connection failed or timed out after the request was sent
  kRejected,     // will not work by trying again: bad certificate, unreadable token file
  kAborted,      // the body sink returned false
  kStopped,      // the caller's stop token was requested
};

struct HttpResponse {
  long code = 0;            // HTTP status; 0 when no response came
  std::string body;         // unless a sink took it
  std::string retry_after;  // the Retry-After header, if any
  TransportFailure failure = TransportFailure::kNone;
  std::string error;  // what failed, when failure != kNone
};

// Takes a streamed 2xx body as it arrives; returns false to end the exchange (kAborted).
using BodySink = std::function<bool(std::string_view)>;

class Transport {
 public:
  virtual ~Transport() = default;

  // Sends `request` and waits for the response. With a sink, a 2xx body goes to the sink piece by
  // piece instead of into HttpResponse::body (other bodies are always collected). Returns
  // promptly, with kStopped, once `stop` is requested. Thread-safe.
  virtual HttpResponse Send(const HttpRequest& request, const BodySink* sink,
                            std::stop_token stop) = 0;
};

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_TRANSPORT_H_
