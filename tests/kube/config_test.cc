#include "kube/config.h"

#include <gtest/gtest.h>

#include <string>

#include "kube/curl_transport.h"
#include "tests/kube/temp_dir.h"

namespace tessera::kube {
namespace {

using testing::TempDir;
using testing::WriteFile;

constexpr const char* kCaPem = "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n";
constexpr const char* kCaBase64 =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmNhCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";
constexpr const char* kClientPem =
    "-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n";
constexpr const char* kClientBase64 =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmNsaWVudAotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";
constexpr const char* kKeyPem = "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n";
constexpr const char* kKeyBase64 =
    "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCmtleQotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg==";

// A kubeconfig with two contexts; `cluster` and `user` are the bodies of the entries that the
// current context ("main") names.
std::string Kubeconfig(const std::string& cluster, const std::string& user) {
  return "apiVersion: v1\n"
         "kind: Config\n"
         "current-context: main\n"
         "contexts:\n"
         "- name: other\n"
         "  context: {cluster: spare, user: spare}\n"
         "- name: main\n"
         "  context:\n"
         "    cluster: c\n"
         "    user: u\n"
         "    namespace: gpu-jobs\n"
         "clusters:\n"
         "- name: spare\n"
         "  cluster: {server: 'https://spare:6443', insecure-skip-tls-verify: true}\n"
         "- name: c\n"
         "  cluster:\n" +
         cluster +
         "users:\n"
         "- name: spare\n"
         "  user: {token: spare-token}\n"
         "- name: u\n"
         "  user:\n" +
         user;
}

void ExpectError(const Result<Config>& config, const std::string& part) {
  ASSERT_FALSE(config.ok()) << "expected an error containing: " << part;
  EXPECT_NE(config.status().message().find(part), std::string::npos)
      << "error \"" << config.status().message() << "\" lacks \"" << part << "\"";
}

TEST(ParseKubeconfig, ReadsTheCurrentContextsClusterAndToken) {
  auto config = ParseKubeconfig(Kubeconfig("    server: https://10.1.2.3:6443/\n"
                                           "    certificate-authority-data: " +
                                               std::string(kCaBase64) + "\n",
                                           "    token: secret-token\n"),
                                "/home/me/.kube/config");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://10.1.2.3:6443");
  EXPECT_EQ(config->certificate_authority_pem, kCaPem);
  EXPECT_EQ(config->certificate_authority_file, "");
  EXPECT_FALSE(config->insecure_skip_tls_verify);
  EXPECT_EQ(config->token, "secret-token");
  EXPECT_EQ(config->token_file, "");
  EXPECT_EQ(config->namespace_name, "gpu-jobs");
  EXPECT_EQ(config->source, "kubeconfig /home/me/.kube/config, context main");
}

TEST(ParseKubeconfig, AnExplicitContextWinsOverCurrentContext) {
  auto config =
      ParseKubeconfig(Kubeconfig("    server: https://c\n", "    token: t\n"), "/k", "other");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://spare:6443");
  EXPECT_TRUE(config->insecure_skip_tls_verify);
  EXPECT_EQ(config->token, "spare-token");
  EXPECT_EQ(config->namespace_name, "default");
}

TEST(ParseKubeconfig, ReadsInlineClientCertificateAndKey) {
  auto config =
      ParseKubeconfig(Kubeconfig("    server: https://c\n",
                                 "    client-certificate-data: " + std::string(kClientBase64) +
                                     "\n" + "    client-key-data: " + kKeyBase64 + "\n"),
                      "/k");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->client_certificate_pem, kClientPem);
  EXPECT_EQ(config->client_key_pem, kKeyPem);
  EXPECT_EQ(config->token, "");
}

TEST(ParseKubeconfig, MakesFilePathsAbsoluteAgainstTheKubeconfigsDirectory) {
  auto config = ParseKubeconfig(Kubeconfig("    server: https://c\n"
                                           "    certificate-authority: pki/ca.crt\n",
                                           "    client-certificate: /abs/client.crt\n"
                                           "    client-key: client.key\n"
                                           "    tokenFile: token\n"),
                                "/etc/tessera/kubeconfig");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->certificate_authority_file, "/etc/tessera/pki/ca.crt");
  EXPECT_EQ(config->client_certificate_file, "/abs/client.crt");
  EXPECT_EQ(config->client_key_file, "/etc/tessera/client.key");
  EXPECT_EQ(config->token_file, "/etc/tessera/token");
}

TEST(ParseKubeconfig, AcceptsJson) {
  auto config = ParseKubeconfig(
      R"({"current-context":"x","contexts":[{"name":"x","context":{"cluster":"k","user":"me"}}],
          "clusters":[{"name":"k","cluster":{"server":"https://k"}}],
          "users":[{"name":"me","user":{"token":"t"}}]})",
      "/k.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://k");
  EXPECT_EQ(config->token, "t");
}

TEST(ParseKubeconfig, AContextWithoutAUserHasNoCredentials) {
  auto config = ParseKubeconfig(
      "current-context: x\ncontexts: [{name: x, context: {cluster: k}}]\n"
      "clusters: [{name: k, cluster: {server: 'https://k'}}]\n",
      "/k");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->token, "");
  EXPECT_EQ(config->client_certificate_pem, "");
}

TEST(ParseKubeconfigErrors, NameTheFileAndTheField) {
  const std::string ok_cluster = "    server: https://c\n";
  const std::string ok_user = "    token: t\n";
  ExpectError(ParseKubeconfig("clusters: []\n", "/k"), "kubeconfig /k: current-context: not set");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, ok_user), "/k", "nope"),
              "kubeconfig /k: contexts: no entry named \"nope\" (named by the requested context)");
  ExpectError(ParseKubeconfig(Kubeconfig("    insecure-skip-tls-verify: true\n", ok_user), "/k"),
              "kubeconfig /k: clusters[name=\"c\"].cluster.server: missing");
  ExpectError(ParseKubeconfig(Kubeconfig("    server: 10.0.0.1:6443\n", ok_user), "/k"),
              "clusters[name=\"c\"].cluster.server: \"10.0.0.1:6443\" is not an http:// or "
              "https:// URL");
  ExpectError(
      ParseKubeconfig(Kubeconfig(ok_cluster + "    certificate-authority-data: '%%%'\n", ok_user),
                      "/k"),
      "clusters[name=\"c\"].cluster.certificate-authority-data: not valid base64");
  ExpectError(ParseKubeconfig(
                  Kubeconfig(ok_cluster + "    insecure-skip-tls-verify: maybe\n", ok_user), "/k"),
              "clusters[name=\"c\"].cluster.insecure-skip-tls-verify: must be true or false");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster + "    insecure-skip-tls-verify: true\n" +
                                             "    certificate-authority: /ca\n",
                                         ok_user),
                              "/k"),
              "clusters[name=\"c\"].cluster.insecure-skip-tls-verify: cannot be true together "
              "with a certificate authority");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster + "    certificate-authority: /ca\n" +
                                             "    certificate-authority-data: " + kCaBase64 + "\n",
                                         ok_user),
                              "/k"),
              "clusters[name=\"c\"].cluster: set only one of certificate-authority and "
              "certificate-authority-data");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, "    exec: {command: aws}\n"), "/k"),
              "users[name=\"u\"].user.exec: not supported");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, "    auth-provider: {name: gcp}\n"), "/k"),
              "users[name=\"u\"].user.auth-provider: not supported");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, "    client-certificate: /c.crt\n"), "/k"),
              "users[name=\"u\"].user: client-certificate without client-key");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, "    client-key-data: '!!'\n"), "/k"),
              "users[name=\"u\"].user.client-key-data: not valid base64");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, "    token: [a, b]\n"), "/k"),
              "users[name=\"u\"].user.token: must be a string");
  ExpectError(ParseKubeconfig(Kubeconfig(ok_cluster, "    tokenFile: ''\n"), "/k"),
              "users[name=\"u\"].user.tokenFile: is empty");
}

TEST(ParseKubeconfigErrors, NameTheMissingListEntryAndWhoNamedIt) {
  ExpectError(
      ParseKubeconfig("current-context: x\ncontexts: [{name: x, context: {user: u}}]\n", "/k"),
      "contexts[name=\"x\"].context.cluster: missing");
  ExpectError(ParseKubeconfig("current-context: x\n"
                              "contexts: [{name: x, context: {cluster: gone, user: u}}]\n"
                              "clusters: [{name: c, cluster: {server: 'https://c'}}]\n",
                              "/k"),
              "clusters: no entry named \"gone\" (named by contexts[name=\"x\"].context.cluster)");
  ExpectError(ParseKubeconfig("current-context: x\n"
                              "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                              "clusters: [{name: c, cluster: {server: 'https://c'}}]\n",
                              "/k"),
              "users: missing, but contexts[name=\"x\"].context.user names \"u\"");
  ExpectError(ParseKubeconfig("current-context: x\ncontexts: {x: 1}\n", "/k"),
              "contexts: must be a list");
  ExpectError(ParseKubeconfig("current-context: x\ncontexts: [7]\n", "/k"),
              "contexts[0]: must be a map with name and context");
}

TEST(ParseKubeconfigErrors, SyntaxErrorsNameTheFile) {
  ExpectError(ParseKubeconfig("current-context: [unclosed\n", "/etc/k"),
              "kubeconfig /etc/k: not valid YAML");
  ExpectError(ParseKubeconfig("- just\n- a list\n", "/etc/k"),
              "kubeconfig /etc/k: top level: must be a map");
  ExpectError(ParseKubeconfig("", "/etc/k"), "kubeconfig /etc/k: top level: must be a map");
}

TEST(LoadKubeconfig, ReadsTheFileAndChecksTheFilesItNames) {
  TempDir dir;
  WriteFile(dir.File("ca.crt"), kCaPem);
  WriteFile(dir.File("token"), "file-token\n");
  WriteFile(dir.File("config"), Kubeconfig("    server: https://c\n"
                                           "    certificate-authority: ca.crt\n",
                                           "    tokenFile: token\n"));
  auto config = LoadKubeconfig(dir.File("config"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->certificate_authority_file, dir.File("ca.crt"));
  EXPECT_EQ(config->token_file, dir.File("token"));
}

TEST(LoadKubeconfig, ErrorsNameTheFieldAndTheMissingFile) {
  TempDir dir;
  ExpectError(LoadKubeconfig(dir.File("absent")),
              "kubeconfig " + dir.File("absent") + ": cannot read: No such file or directory");
  WriteFile(dir.File("config"), Kubeconfig("    server: https://c\n"
                                           "    certificate-authority: nowhere/ca.crt\n",
                                           "    token: t\n"));
  ExpectError(LoadKubeconfig(dir.File("config")),
              "kubeconfig " + dir.File("config") +
                  ": certificate-authority: " + dir.File("nowhere/ca.crt") + ": cannot read");
  WriteFile(dir.File("empty-token"), " \n");
  WriteFile(dir.File("config"),
            Kubeconfig("    server: https://c\n", "    tokenFile: empty-token\n"));
  ExpectError(LoadKubeconfig(dir.File("config")),
              "tokenFile: " + dir.File("empty-token") + " is empty");
}

TEST(LoadDefaultConfig, UsesTheFirstFileInKubeconfig) {
  TempDir dir;
  WriteFile(dir.File("config"), Kubeconfig("    server: https://from-env\n", "    token: t\n"));
  const char* saved = std::getenv("KUBECONFIG");
  std::string restore = saved != nullptr ? saved : "";
  setenv("KUBECONFIG", (dir.File("config") + ":/elsewhere/config").c_str(), 1);
  auto config = LoadDefaultConfig();
  if (saved != nullptr) {
    setenv("KUBECONFIG", restore.c_str(), 1);
  } else {
    unsetenv("KUBECONFIG");
  }
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://from-env");
}

TEST(InClusterConfig, ReadsTheServiceAccountsFiles) {
  TempDir dir;
  WriteFile(dir.File("token"), "sa-token\n");
  WriteFile(dir.File("ca.crt"), kCaPem);
  WriteFile(dir.File("namespace"), "tessera-system\n");
  auto config = LoadInClusterConfig({"10.96.0.1", "443", dir.path()});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://10.96.0.1:443");
  EXPECT_EQ(config->token, "sa-token");
  EXPECT_EQ(config->token_file, dir.File("token"));
  EXPECT_EQ(config->certificate_authority_file, dir.File("ca.crt"));
  EXPECT_EQ(config->namespace_name, "tessera-system");
}

TEST(InClusterConfig, BracketsAnIpv6ServiceAddress) {
  TempDir dir;
  WriteFile(dir.File("token"), "t");
  WriteFile(dir.File("ca.crt"), kCaPem);
  auto config = LoadInClusterConfig({"fd00::1", "443", dir.path()});
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->server, "https://[fd00::1]:443");
  EXPECT_EQ(config->namespace_name, "default");
}

TEST(InClusterConfig, ErrorsNameTheVariableOrTheFile) {
  TempDir dir;
  ExpectError(LoadInClusterConfig({"", "443", dir.path()}), "KUBERNETES_SERVICE_HOST is not set");
  ExpectError(LoadInClusterConfig({"h", "", dir.path()}), "KUBERNETES_SERVICE_PORT is not set");
  ExpectError(LoadInClusterConfig({"h", "443", dir.path()}),
              "in-cluster config: token: " + dir.File("token") + ": cannot read");
  WriteFile(dir.File("token"), "t");
  ExpectError(LoadInClusterConfig({"h", "443", dir.path()}),
              "in-cluster config: CA: " + dir.File("ca.crt") + ": cannot read");
  WriteFile(dir.File("ca.crt"), "garbage");
  ExpectError(LoadInClusterConfig({"h", "443", dir.path()}),
              dir.File("ca.crt") + " holds no PEM certificate");
}

TEST(TokenSource, ReadsTheFileAgainOnlyWhenItChanges) {
  TempDir dir;
  std::string file = dir.File("token");
  WriteFile(file, "first\n");
  TokenSource source("fallback", file);
  EXPECT_EQ(*source.Token(), "first");
  WriteFile(file, "second");
  EXPECT_EQ(*source.Token(), "second");
  EXPECT_EQ(*source.Token(), "second");
}

TEST(TokenSource, KeepsTheLastTokenWhileTheFileIsGone) {
  TempDir dir;
  std::string file = dir.File("token");
  WriteFile(file, "first");
  TokenSource source("", file);
  EXPECT_EQ(*source.Token(), "first");
  std::filesystem::remove(file);
  EXPECT_EQ(*source.Token(), "first");
}

TEST(TokenSource, FallsBackToTheFixedTokenAndOtherwiseNamesTheFile) {
  TempDir dir;
  EXPECT_EQ(*TokenSource("fixed", dir.File("none")).Token(), "fixed");
  EXPECT_EQ(*TokenSource("fixed", "").Token(), "fixed");
  auto token = TokenSource("", dir.File("none")).Token();
  ASSERT_FALSE(token.ok());
  EXPECT_NE(token.status().message().find("token file " + dir.File("none")), std::string::npos)
      << token.status().message();
}

TEST(CurlTransport, RefusesAConfigThatCannotWork) {
  Config config = ConfigForServer("ftp://x", "t");
  EXPECT_FALSE(CurlTransport::Create(config).ok());
  config = ConfigForServer("https://x/", "t");
  EXPECT_EQ(config.server, "https://x");
  config.client_certificate_pem = kClientPem;
  auto transport = CurlTransport::Create(config);
  ASSERT_FALSE(transport.ok());
  EXPECT_NE(transport.status().message().find("client certificate needs its key"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera::kube
