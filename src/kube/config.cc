#include "kube/config.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/strings.h"

namespace tessera::kube {
namespace {

// Kubeconfigs, certificates and tokens are small; a limit keeps a wrong path (a device, a log)
// from being read whole.
constexpr std::streamsize kMaxFileBytes = 16 << 20;

Result<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path + ": cannot read: " + std::strerror(errno));
  std::string text;
  text.resize(static_cast<size_t>(kMaxFileBytes) + 1);
  in.read(text.data(), kMaxFileBytes + 1);
  if (in.bad()) return Status::Error(path + ": cannot read: " + std::strerror(errno));
  std::streamsize got = in.gcount();
  if (got > kMaxFileBytes) {
    return Status::Error(path + ": larger than " + std::to_string(kMaxFileBytes) + " bytes");
  }
  text.resize(static_cast<size_t>(got));
  return text;
}

// Standard base64 as kubeconfig's *-data fields hold it (line breaks allowed), by OpenSSL.
std::optional<std::string> DecodeBase64(const std::string& text) {
  std::string out;
  out.resize(text.size() / 4 * 3 + 3 + 64);
  EVP_ENCODE_CTX* context = EVP_ENCODE_CTX_new();
  if (context == nullptr) return std::nullopt;
  EVP_DecodeInit(context);
  int written = 0;
  int final_written = 0;
  bool ok = EVP_DecodeUpdate(context, reinterpret_cast<unsigned char*>(out.data()), &written,
                             reinterpret_cast<const unsigned char*>(text.data()),
                             static_cast<int>(text.size())) >= 0 &&
            EVP_DecodeFinal(context, reinterpret_cast<unsigned char*>(out.data()) + written,
                            &final_written) == 1;
  EVP_ENCODE_CTX_free(context);
  if (!ok) return std::nullopt;
  out.resize(static_cast<size_t>(written) + static_cast<size_t>(final_written));
  return out;
}

// Reads kubeconfig fields, naming each by its path in the file for messages.
class KubeconfigReader {
 public:
  explicit KubeconfigReader(std::string_view file_name) : file_name_(file_name) {}

  Status Error(const std::string& field, const std::string& what) const {
    return Status::Error("kubeconfig " + file_name_ + ": " + field + ": " + what);
  }

  // The string at map[key]; nullopt when absent or null; an error when it is not a scalar.
  Result<std::optional<std::string>> OptionalString(const YAML::Node& map, const char* key,
                                                    const std::string& where) const {
    YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull()) return std::optional<std::string>();
    if (!node.IsScalar()) return Error(where + "." + key, "must be a string");
    return std::optional<std::string>(node.Scalar());
  }

  Result<bool> OptionalBool(const YAML::Node& map, const char* key,
                            const std::string& where) const {
    YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull()) return false;
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
      return Error(where + "." + key, "must be true or false");
    }
    return value;
  }

  // The `inner` map of the entry of list `list` whose name is `name`, e.g. the `cluster` of
  // clusters[name="kind"]. Sets *where to that map's path.
  Result<YAML::Node> Named(const YAML::Node& root, const char* list, const char* inner,
                           const std::string& name, const std::string& wanted_by,
                           std::string* where) const {
    YAML::Node entries = root[list];
    if (!entries.IsDefined() || entries.IsNull()) {
      return Error(list, "missing, but " + wanted_by + " names \"" + name + "\"");
    }
    if (!entries.IsSequence()) return Error(list, "must be a list");
    for (size_t i = 0; i < entries.size(); ++i) {
      YAML::Node entry = entries[i];
      std::string at = std::string(list) + "[" + std::to_string(i) + "]";
      if (!entry.IsMap()) return Error(at, std::string("must be a map with name and ") + inner);
      auto entry_name = OptionalString(entry, "name", at);
      if (!entry_name.ok()) return entry_name.status();
      if (!entry_name->has_value() || **entry_name != name) continue;
      *where = std::string(list) + "[name=\"" + name + "\"]." + inner;
      YAML::Node body = entry[inner];
      if (!body.IsDefined() || body.IsNull()) return YAML::Node(YAML::NodeType::Map);
      if (!body.IsMap()) return Error(*where, "must be a map");
      return body;
    }
    return Error(list, "no entry named \"" + name + "\" (named by " + wanted_by + ")");
  }

  // A path in the file, made absolute against the kubeconfig's directory.
  std::string Resolve(const std::string& path) const {
    std::filesystem::path p(path);
    if (p.is_absolute()) return path;
    std::filesystem::path dir = std::filesystem::path(file_name_).parent_path();
    return dir.empty() ? path : (dir / p).string();
  }

  // A file/data pair such as client-certificate / client-certificate-data. Only one may be set.
  Status FileOrData(const YAML::Node& map, const char* file_key, const char* data_key,
                    const std::string& where, std::string* file, std::string* data) const {
    auto file_value = OptionalString(map, file_key, where);
    if (!file_value.ok()) return file_value.status();
    auto data_value = OptionalString(map, data_key, where);
    if (!data_value.ok()) return data_value.status();
    if (file_value->has_value() && data_value->has_value()) {
      return Error(where, std::string("set only one of ") + file_key + " and " + data_key);
    }
    if (file_value->has_value()) {
      if ((*file_value)->empty()) return Error(where + "." + file_key, "is empty");
      *file = Resolve(**file_value);
    }
    if (data_value->has_value()) {
      std::optional<std::string> decoded = DecodeBase64(**data_value);
      if (!decoded) return Error(where + "." + data_key, "not valid base64");
      if (decoded->empty()) return Error(where + "." + data_key, "is empty");
      *data = std::move(*decoded);
    }
    return Status::Ok();
  }

  const std::string& file_name() const { return file_name_; }

 private:
  std::string file_name_;
};

Result<Config> ParseKubeconfigDocument(const YAML::Node& root, const KubeconfigReader& reader,
                                       std::string_view context_override) {
  if (!root.IsMap()) return reader.Error("top level", "must be a map");
  Config config;

  std::string context_name;
  std::string wanted_by;
  if (!context_override.empty()) {
    context_name = std::string(context_override);
    wanted_by = "the requested context";
  } else {
    auto current = reader.OptionalString(root, "current-context", "");
    if (!current.ok()) return current.status();
    if (!current->has_value() || (*current)->empty()) {
      return reader.Error("current-context", "not set (and no context was given)");
    }
    context_name = **current;
    wanted_by = "current-context";
  }

  std::string context_where;
  auto context = reader.Named(root, "contexts", "context", context_name, wanted_by, &context_where);
  if (!context.ok()) return context.status();
  auto cluster_name = reader.OptionalString(*context, "cluster", context_where);
  if (!cluster_name.ok()) return cluster_name.status();
  if (!cluster_name->has_value()) return reader.Error(context_where + ".cluster", "missing");
  auto user_name = reader.OptionalString(*context, "user", context_where);
  if (!user_name.ok()) return user_name.status();
  auto namespace_name = reader.OptionalString(*context, "namespace", context_where);
  if (!namespace_name.ok()) return namespace_name.status();
  if (namespace_name->has_value() && !(*namespace_name)->empty()) {
    config.namespace_name = **namespace_name;
  }

  std::string cluster_where;
  auto cluster = reader.Named(root, "clusters", "cluster", **cluster_name,
                              context_where + ".cluster", &cluster_where);
  if (!cluster.ok()) return cluster.status();
  auto server = reader.OptionalString(*cluster, "server", cluster_where);
  if (!server.ok()) return server.status();
  if (!server->has_value() || (*server)->empty()) {
    return reader.Error(cluster_where + ".server", "missing");
  }
  config.server = **server;
  while (!config.server.empty() && config.server.back() == '/') config.server.pop_back();
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return reader.Error(cluster_where + ".server",
                        "\"" + config.server + "\" is not an http:// or https:// URL");
  }
  Status status = reader.FileOrData(*cluster, "certificate-authority", "certificate-authority-data",
                                    cluster_where, &config.certificate_authority_file,
                                    &config.certificate_authority_pem);
  if (!status.ok()) return status;
  auto insecure = reader.OptionalBool(*cluster, "insecure-skip-tls-verify", cluster_where);
  if (!insecure.ok()) return insecure.status();
  config.insecure_skip_tls_verify = *insecure;
  if (config.insecure_skip_tls_verify &&
      (!config.certificate_authority_file.empty() || !config.certificate_authority_pem.empty())) {
    // As client-go: trusting a CA and trusting everything contradict each other.
    return reader.Error(cluster_where + ".insecure-skip-tls-verify",
                        "cannot be true together with a certificate authority");
  }

  if (user_name->has_value() && !(*user_name)->empty()) {
    std::string user_where;
    auto user =
        reader.Named(root, "users", "user", **user_name, context_where + ".user", &user_where);
    if (!user.ok()) return user.status();
    for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
      YAML::Node node = (*user)[unsupported];
      if (node.IsDefined() && !node.IsNull()) {
        return reader.Error(user_where + "." + unsupported,
                            "not supported (use a token, tokenFile or client certificate)");
      }
    }
    auto token = reader.OptionalString(*user, "token", user_where);
    if (!token.ok()) return token.status();
    if (token->has_value()) config.token = std::string(Trim(**token));
    auto token_file = reader.OptionalString(*user, "tokenFile", user_where);
    if (!token_file.ok()) return token_file.status();
    if (token_file->has_value()) {
      if ((*token_file)->empty()) return reader.Error(user_where + ".tokenFile", "is empty");
      config.token_file = reader.Resolve(**token_file);
    }
    status = reader.FileOrData(*user, "client-certificate", "client-certificate-data", user_where,
                               &config.client_certificate_file, &config.client_certificate_pem);
    if (!status.ok()) return status;
    status = reader.FileOrData(*user, "client-key", "client-key-data", user_where,
                               &config.client_key_file, &config.client_key_pem);
    if (!status.ok()) return status;
    bool has_certificate =
        !config.client_certificate_file.empty() || !config.client_certificate_pem.empty();
    bool has_key = !config.client_key_file.empty() || !config.client_key_pem.empty();
    if (has_certificate != has_key) {
      return reader.Error(user_where, has_certificate ? "client-certificate without client-key"
                                                      : "client-key without client-certificate");
    }
  }

  config.source = "kubeconfig " + reader.file_name() + ", context " + context_name;
  return config;
}

Status CheckReadable(const std::string& path, const std::string& what) {
  if (path.empty()) return Status::Ok();
  auto text = ReadSmallFile(path);
  if (!text.ok()) return Status::Error(what + ": " + text.status().message());
  return Status::Ok();
}

}  // namespace

Config ConfigForServer(std::string server, std::string token) {
  Config config;
  config.server = std::move(server);
  while (!config.server.empty() && config.server.back() == '/') config.server.pop_back();
  config.token = std::move(token);
  config.source = "server " + config.server;
  return config;
}

Result<Config> ParseKubeconfig(std::string_view text, std::string_view file_name,
                               std::string_view context) {
  KubeconfigReader reader(file_name);
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return ParseKubeconfigDocument(root, reader, context);
  } catch (const YAML::Exception& e) {
    // Syntax errors, and any shape the checks above did not foresee.
    return Status::Error("kubeconfig " + std::string(file_name) + ": not valid YAML: " + e.what());
  }
}

Result<Config> LoadKubeconfig(const std::string& path, std::string_view context) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return Status::Error("kubeconfig " + text.status().message());
  auto config = ParseKubeconfig(*text, path, context);
  if (!config.ok()) return config;
  // Parse named the fields; here only the files are left to check.
  std::string prefix = "kubeconfig " + path + ": ";
  for (const auto& [file, field] :
       {std::pair{&config->certificate_authority_file, "certificate-authority"},
        std::pair{&config->client_certificate_file, "client-certificate"},
        std::pair{&config->client_key_file, "client-key"},
        std::pair{&config->token_file, "tokenFile"}}) {
    Status status = CheckReadable(*file, prefix + field);
    if (!status.ok()) return status;
  }
  if (!config->token_file.empty()) {
    auto token = ReadSmallFile(config->token_file);
    if (token.ok() && Trim(*token).empty()) {
      return Status::Error(prefix + "tokenFile: " + config->token_file + " is empty");
    }
  }
  return config;
}

InClusterEnvironment InClusterEnvironment::FromProcess() {
  InClusterEnvironment environment;
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host != nullptr) environment.service_host = host;
  if (port != nullptr) environment.service_port = port;
  return environment;
}

Result<Config> LoadInClusterConfig(const InClusterEnvironment& environment) {
  const std::string prefix = "in-cluster config: ";
  if (environment.service_host.empty()) {
    return Status::Error(prefix + "KUBERNETES_SERVICE_HOST is not set (not running in a pod?)");
  }
  if (environment.service_port.empty()) {
    return Status::Error(prefix + "KUBERNETES_SERVICE_PORT is not set");
  }
  Config config;
  // An IPv6 service address needs brackets in a URL.
  bool ipv6 = environment.service_host.find(':') != std::string::npos;
  config.server = "https://" +
                  (ipv6 ? "[" + environment.service_host + "]" : environment.service_host) + ":" +
                  environment.service_port;
  std::string dir = environment.service_account_dir;
  config.token_file = dir + "/token";
  auto token = ReadSmallFile(config.token_file);
  if (!token.ok()) return Status::Error(prefix + "token: " + token.status().message());
  config.token = std::string(Trim(*token));
  if (config.token.empty()) return Status::Error(prefix + config.token_file + " is empty");
  config.certificate_authority_file = dir + "/ca.crt";
  auto ca = ReadSmallFile(config.certificate_authority_file);
  if (!ca.ok()) return Status::Error(prefix + "CA: " + ca.status().message());
  if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Status::Error(prefix + config.certificate_authority_file + " holds no PEM certificate");
  }
  auto namespace_name = ReadSmallFile(dir + "/namespace");
  if (namespace_name.ok() && !Trim(*namespace_name).empty()) {
    config.namespace_name = std::string(Trim(*namespace_name));
  }
  config.source = "in-cluster service account " + dir;
  return config;
}

Result<Config> LoadDefaultConfig() {
  const char* kubeconfig = std::getenv("KUBECONFIG");
  if (kubeconfig != nullptr && *kubeconfig != '\0') {
    std::string first(kubeconfig);
    first = first.substr(0, first.find(':'));
    return LoadKubeconfig(first);
  }
  InClusterEnvironment environment = InClusterEnvironment::FromProcess();
  if (!environment.service_host.empty()) return LoadInClusterConfig(environment);
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    return Status::Error(
        "no Kubernetes config: KUBECONFIG, KUBERNETES_SERVICE_HOST and HOME are all unset");
  }
  return LoadKubeconfig(std::string(home) + "/.kube/config");
}

}  // namespace tessera::kube
