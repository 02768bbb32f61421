// Where the Kubernetes API server is and how to prove who we are: from a kubeconfig file, from the
// service account a pod runs as (in-cluster), or from an explicit server and bearer token.
//
// A Config holds file names as well as inline data. Certificate files are read by libcurl when it
// connects and the token file is re-read by the client when it changes (projected service account
// tokens rotate), so neither is copied here. Every error names the file and the field that was
// wrong, e.g. `kubeconfig /root/.kube/config: users[name="admin"].user.client-key-data: not
// base64`.
#ifndef TESSERA_KUBE_CONFIG_H_
#define TESSERA_KUBE_CONFIG_H_

#include <string>
#include <string_view>

#include "common/status.h"

namespace tessera::kube {

struct Config {
  std::string server;  // "https://10.0.0.1:443", without a trailing slash

  // Whom to trust: a PEM file or PEM text (not both), or neither (the system's roots).
  std::string certificate_authority_file;
  std::string certificate_authority_pem;
  bool insecure_skip_tls_verify = false;

  // A bearer token. When token_file is set it is read before each request (re-read only when the
  // file changes) and `token` is the fallback while the file cannot be read.
  std::string token;
  std::string token_file;

  // A client certificate and its key, each a PEM file or PEM text.
  std::string client_certificate_file;
  std::string client_certificate_pem;
  std::string client_key_file;
  std::string client_key_pem;

  std::string namespace_name = "default";  // the context's or the service account's namespace
  std::string source;  // where this came from, for messages ("kubeconfig F, context C")
};

// An explicit server and bearer token, trusting the system's roots.
Config ConfigForServer(std::string server, std::string token);

// Parses kubeconfig text. Does no I/O: file references are made absolute against the directory of
// `file_name` (as kubectl does) but not opened. `context` overrides current-context when not empty.
// Supports clusters[].cluster.{server, certificate-authority, certificate-authority-data,
// insecure-skip-tls-verify} and users[].user.{token, tokenFile, client-certificate,
// client-certificate-data, client-key, client-key-data}; exec and auth-provider are refused.
Result<Config> ParseKubeconfig(std::string_view text, std::string_view file_name,
                               std::string_view context = {});

// Reads and parses `path`, then checks that every file it names can be read and that a token file
// holds a token.
Result<Config> LoadKubeconfig(const std::string& path, std::string_view context = {});

inline constexpr std::string_view kServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// What a pod sees: the apiserver's address in its environment and the service account's files.
struct InClusterEnvironment {
  std::string service_host;                             // KUBERNETES_SERVICE_HOST
  std::string service_port;                             // KUBERNETES_SERVICE_PORT
  std::string service_account_dir{kServiceAccountDir};  // holds token, ca.crt and namespace

  static InClusterEnvironment FromProcess();
};

// The service account's config: server https://HOST:PORT, token file (re-read as it rotates),
// ca.crt as the only trusted root, namespace from the namespace file (else "default").
Result<Config> LoadInClusterConfig(
    const InClusterEnvironment& environment = InClusterEnvironment::FromProcess());

// The usual search: the first file in $KUBECONFIG when set; else the in-cluster config when
// KUBERNETES_SERVICE_HOST is set; else $HOME/.kube/config.
Result<Config> LoadDefaultConfig();

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_CONFIG_H_
