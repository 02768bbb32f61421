// Fuzzes the kubeconfig parser (src/kube/config.h): any text must parse into a config that makes
// sense or fail with a message naming the file, never crash, hang or read a file.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kube/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  tessera::Result<tessera::kube::Config> config =
      tessera::kube::ParseKubeconfig(text, "/fuzz/kubeconfig");
  if (!config.ok()) {
    if (config.status().message().rfind("kubeconfig /fuzz/kubeconfig: ", 0) != 0) __builtin_trap();
    return 0;
  }
  const tessera::kube::Config& c = *config;
  if (c.server.rfind("https://", 0) != 0 && c.server.rfind("http://", 0) != 0) __builtin_trap();
  if (c.insecure_skip_tls_verify &&
      !(c.certificate_authority_file.empty() && c.certificate_authority_pem.empty())) {
    __builtin_trap();
  }
  bool has_certificate = !c.client_certificate_file.empty() || !c.client_certificate_pem.empty();
  bool has_key = !c.client_key_file.empty() || !c.client_key_pem.empty();
  if (has_certificate != has_key) __builtin_trap();
  for (const std::string* file : {&c.certificate_authority_file, &c.client_certificate_file,
                                  &c.client_key_file, &c.token_file}) {
    if (!file->empty() && (*file)[0] != '/') __builtin_trap();  // made absolute
  }
  return 0;
}
