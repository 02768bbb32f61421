#include "kube/curl_transport.h"

#include <curl/curl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>

#include "common/log.h"
#include "common/strings.h"

namespace tessera::kube {
namespace {

constexpr const char* kLog = "kube";
constexpr size_t kMaxCollectedBody = size_t{512} << 20;  // a list of every pod fits easily
constexpr size_t kMaxIdleConnections = 8;
constexpr long kConnectTimeoutMs = 10'000;

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// What the callbacks of one exchange share.
struct Exchange {
  CURL* easy = nullptr;
  const BodySink* sink = nullptr;
  HttpResponse* response = nullptr;
  bool aborted = false;          // the sink said stop
  bool overflow = false;         // a collected body passed kMaxCollectedBody
  std::exception_ptr exception;  // thrown by the sink; rethrown once curl is out of the way
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  size_t bytes = size * count;
  long code = 0;
  curl_easy_getinfo(exchange->easy, CURLINFO_RESPONSE_CODE, &code);
  if (exchange->sink != nullptr && code >= 200 && code < 300) {
    // No exception may cross libcurl's C frames.
    try {
      if (!(*exchange->sink)(std::string_view(data, bytes))) {
        exchange->aborted = true;
        return 0;
      }
    } catch (...) {
      exchange->exception = std::current_exception();
      return 0;
    }
    return bytes;
  }
  if (exchange->response->body.size() + bytes > kMaxCollectedBody) {
    exchange->overflow = true;
    return 0;
  }
  exchange->response->body.append(data, bytes);
  return bytes;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  std::string_view line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) exchange->response->retry_after.clear();  // a new response
  constexpr std::string_view kRetryAfter = "retry-after:";
  if (StartsWithIgnoringCase(line, kRetryAfter)) {
    exchange->response->retry_after = std::string(Trim(line.substr(kRetryAfter.size())));
  }
  return size * count;
}

bool IsPermanent(CURLcode code) {
  switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_NOT_BUILT_IN:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<std::string> TokenSource::Token() {
  if (file_.empty()) return fallback_;
  std::lock_guard lock(mutex_);
  struct stat info {};
  std::string problem;
  if (stat(file_.c_str(), &info) != 0) {
    problem = std::strerror(errno);
  } else {
    FileState now{
        static_cast<unsigned long>(info.st_dev), static_cast<unsigned long>(info.st_ino),
        static_cast<long long>(info.st_size),
        static_cast<long long>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec};
    if (now == state_ && !from_file_.empty()) return from_file_;
    std::ifstream in(file_, std::ios::binary);
    std::string text;
    if (in && info.st_size < (1 << 20)) {
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    text = std::string(Trim(text));
    if (!text.empty()) {
      if (!from_file_.empty() && text != from_file_) {
        log::Write(log::Level::kInfo, kLog, "token file %s changed; using the new token",
                   file_.c_str());
      }
      from_file_ = std::move(text);
      state_ = now;
      return from_file_;
    }
    // Empty: perhaps being rewritten in place. Not remembered, so the next call reads again.
    problem = in ? "empty" : std::strerror(errno);
  }
  std::string keep = !from_file_.empty() ? from_file_ : fallback_;
  if (keep.empty()) return Status::Error("token file " + file_ + ": " + problem);
  log::Write(log::Level::kWarn, kLog, "token file %s: %s; using the %s token", file_.c_str(),
             problem.c_str(), from_file_.empty() ? "configured" : "previous");
  return keep;
}

struct CurlTransport::Share {
  CURLSH* handle = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];

  Share() {
    handle = curl_share_init();
    if (handle == nullptr) return;
    curl_share_setopt(handle, CURLSHOPT_LOCKFUNC, &Share::Lock);
    curl_share_setopt(handle, CURLSHOPT_UNLOCKFUNC, &Share::Unlock);
    curl_share_setopt(handle, CURLSHOPT_USERDATA, this);
    // Not CURL_LOCK_DATA_CONNECT: libcurl does not support sharing connections between threads.
    curl_share_setopt(handle, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(handle, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  ~Share() {
    if (handle != nullptr) curl_share_cleanup(handle);
  }
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Share*>(user)->locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Share*>(user)->locks[data].unlock();
  }
};

struct CurlTransport::Connection {
  CURLM* multi = curl_multi_init();
  CURL* easy = curl_easy_init();
  ~Connection() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (multi != nullptr) curl_multi_cleanup(multi);
  }
};

Result<std::unique_ptr<CurlTransport>> CurlTransport::Create(const Config& config,
                                                             std::string user_agent) {
  std::string where = config.source.empty() ? "kube config" : config.source;
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return Status::Error(where + ": server \"" + config.server + "\" is not an https:// URL");
  }
  if (!config.certificate_authority_file.empty() && !config.certificate_authority_pem.empty()) {
    return Status::Error(where + ": set a certificate authority file or PEM text, not both");
  }
  bool has_certificate =
      !config.client_certificate_file.empty() || !config.client_certificate_pem.empty();
  bool has_key = !config.client_key_file.empty() || !config.client_key_pem.empty();
  if (has_certificate != has_key) {
    return Status::Error(where + ": a client certificate needs its key, and a key its certificate");
  }
  InitCurlOnce();
  std::unique_ptr<CurlTransport> transport(new CurlTransport(config, std::move(user_agent)));
  if (transport->share_->handle == nullptr) return Status::Error("curl_share_init failed");
  if (!config.token_file.empty()) {
    auto token = transport->token_.Token();
    if (!token.ok()) return Status::Error(where + ": " + token.status().message());
  }
  return transport;
}

CurlTransport::CurlTransport(const Config& config, std::string user_agent)
    : config_(config),
      user_agent_(std::move(user_agent)),
      token_(config.token, config.token_file),
      share_(std::make_unique<Share>()) {}

CurlTransport::~CurlTransport() {
  idle_.clear();  // the connections use share_, which goes after them
}

std::unique_ptr<CurlTransport::Connection> CurlTransport::TakeConnection() {
  {
    std::lock_guard lock(pool_mutex_);
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
  }
  auto connection = std::make_unique<Connection>();
  if (connection->multi == nullptr || connection->easy == nullptr) return nullptr;
  return connection;
}

void CurlTransport::ReturnConnection(std::unique_ptr<Connection> connection) {
  std::lock_guard lock(pool_mutex_);
  if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(connection));
}

HttpResponse CurlTransport::Send(const HttpRequest& request, const BodySink* sink,
                                 std::stop_token stop) {
  HttpResponse response;
  Result<std::string> token = token_.Token();
  if (!token.ok()) {
    response.failure = TransportFailure::kRejected;
    response.error = token.status().message();
    return response;
  }
  std::unique_ptr<Connection> connection = TakeConnection();
  if (connection == nullptr) {
    response.failure = TransportFailure::kNotSent;
    response.error = "cannot make a curl handle";
    return response;
  }
  CURL* easy = connection->easy;
  CURLM* multi = connection->multi;
  curl_easy_reset(easy);

  Exchange exchange;
  exchange.easy = easy;
  exchange.sink = sink;
  exchange.response = &response;
  char error_text[CURL_ERROR_SIZE] = "";
  std::string url = config_.server + request.target;

  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_SHARE, share_->handle);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent_.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");  // gzip for large lists
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);    // notices a dead peer under a quiet watch
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &exchange);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &exchange);

  curl_blob ca_blob{const_cast<char*>(config_.certificate_authority_pem.data()),
                    config_.certificate_authority_pem.size(), CURL_BLOB_NOCOPY};
  curl_blob certificate_blob{const_cast<char*>(config_.client_certificate_pem.data()),
                             config_.client_certificate_pem.size(), CURL_BLOB_NOCOPY};
  curl_blob key_blob{const_cast<char*>(config_.client_key_pem.data()),
                     config_.client_key_pem.size(), CURL_BLOB_NOCOPY};
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config_.certificate_authority_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO, config_.certificate_authority_file.c_str());
  } else if (!config_.certificate_authority_pem.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &ca_blob);
  }
  if (!config_.client_certificate_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, config_.client_certificate_file.c_str());
  } else if (!config_.client_certificate_pem.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &certificate_blob);
  }
  if (!config_.client_key_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEY, config_.client_key_file.c_str());
  } else if (!config_.client_key_pem.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &key_blob);
  }
  curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
  curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");

  curl_slist* headers = nullptr;
  std::string authorization = "Authorization: Bearer " + *token;
  std::string content_type = "Content-Type: " + request.content_type;
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip for big bodies
  if (!token->empty()) headers = curl_slist_append(headers, authorization.c_str());
  if (!request.content_type.empty()) headers = curl_slist_append(headers, content_type.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);

  if (request.method == "GET") {
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (!request.body.empty() || request.method != "DELETE") {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    }
  }

  bool stopped = false;
  CURLcode result = CURLE_OK;
  CURLMcode multi_result = curl_multi_add_handle(multi, easy);
  if (multi_result == CURLM_OK) {
    {
      // Wakes curl_multi_poll below from whichever thread asks to stop.
      std::stop_callback wake(stop, [multi] { curl_multi_wakeup(multi); });
      int running = 1;
      while (multi_result == CURLM_OK) {
        multi_result = curl_multi_perform(multi, &running);
        if (running == 0 || multi_result != CURLM_OK) break;
        if (stop.stop_requested()) {
          stopped = true;
          break;
        }
        multi_result = curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
      }
    }
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
      if (message->msg == CURLMSG_DONE && message->easy_handle == easy) {
        result = message->data.result;
      }
    }
    curl_multi_remove_handle(multi, easy);
  }
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response.code);
  long request_bytes = 0;
  curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_bytes);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  // The connection goes back even after a failure: curl closed a broken one, and the handle and
  // its connection cache are still good.
  ReturnConnection(std::move(connection));

  if (exchange.exception) std::rethrow_exception(exchange.exception);
  if (stopped) {
    response.failure = TransportFailure::kStopped;
    response.error = "stopped";
  } else if (multi_result != CURLM_OK) {
    response.failure = TransportFailure::kInterrupted;
    response.error = std::string("curl multi: ") + curl_multi_strerror(multi_result);
  } else if (exchange.aborted) {
    response.failure = TransportFailure::kAborted;
    response.error = "ended by the reader";
  } else if (exchange.overflow) {
    response.failure = TransportFailure::kRejected;
    response.error = "response body larger than " + std::to_string(kMaxCollectedBody) + " bytes";
  } else if (result != CURLE_OK) {
    response.failure = IsPermanent(result)  ? TransportFailure::kRejected
                       : request_bytes == 0 ? TransportFailure::kNotSent
                                            : TransportFailure::kInterrupted;
    response.error = curl_easy_strerror(result);
    if (error_text[0] != '\0') response.error += std::string(": ") + error_text;
  }
  return response;
}

}  // namespace tessera::kube
