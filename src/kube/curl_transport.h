// The Transport over libcurl: HTTPS to the apiserver with the Config's trust and credentials.
//
// Each exchange takes an idle connection (a curl multi handle holding one easy handle, so that the
// multi's connection cache keeps the TCP+TLS connection for the next exchange) from a small pool,
// or makes one; so concurrent calls never share a handle. The DNS cache and TLS sessions are shared
// between them through a locked curl share. Waiting happens in curl_multi_poll, which a stop
// request wakes at once (curl_multi_wakeup).
#ifndef TESSERA_KUBE_CURL_TRANSPORT_H_
#define TESSERA_KUBE_CURL_TRANSPORT_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "kube/config.h"
#include "kube/transport.h"

namespace tessera::kube {

// A bearer token, from a file re-read only when it changes (a projected service account token is
// replaced every hour or so), or fixed. Thread-safe.
class TokenSource {
 public:
  TokenSource(std::string token, std::string token_file)
      : fallback_(std::move(token)), file_(std::move(token_file)) {}

  // The token to send; "" when there is none. An error only when the file cannot be read and
  // there is no token to fall back on.
  Result<std::string> Token();

 private:
  std::mutex mutex_;
  std::string fallback_;
  std::string file_;
  std::string from_file_;
  // What the file was when last read: a change in any of these means it must be read again.
  struct FileState {
    unsigned long device = 0, inode = 0;
    long long size = -1, modified_ns = 0;
    bool operator==(const FileState&) const = default;
  } state_;
};

class CurlTransport final : public Transport {
 public:
  static Result<std::unique_ptr<CurlTransport>> Create(const Config& config,
                                                       std::string user_agent = "tessera");
  ~CurlTransport() override;

  HttpResponse Send(const HttpRequest& request, const BodySink* sink,
                    std::stop_token stop) override;

 private:
  struct Connection;
  struct Share;
  CurlTransport(const Config& config, std::string user_agent);
  std::unique_ptr<Connection> TakeConnection();
  void ReturnConnection(std::unique_ptr<Connection> connection);

  Config config_;
  std::string user_agent_;
  TokenSource token_;
  std::unique_ptr<Share> share_;
  std::mutex pool_mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;  // REQUIRES: pool_mutex_
};

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_CURL_TRANSPORT_H_
