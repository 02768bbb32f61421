// API paths: "/api/v1/namespaces/default/pods/p/binding" from a resource type, a namespace, a name
// and a subresource, with each part percent-encoded. The client itself takes any path.
#ifndef TESSERA_KUBE_PATHS_H_
#define TESSERA_KUBE_PATHS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::kube {

struct ResourceType {
  std::string_view group_version;  // "v1" (the core group), "coordination.k8s.io/v1"
  std::string_view plural;         // "pods"
  bool namespaced = true;
};

inline constexpr ResourceType kPods{"v1", "pods", true};
inline constexpr ResourceType kNodes{"v1", "nodes", false};
inline constexpr ResourceType kConfigMaps{"v1", "configmaps", true};
inline constexpr ResourceType kNamespaces{"v1", "namespaces", false};
inline constexpr ResourceType kEvents{"v1", "events", true};
inline constexpr ResourceType kLeases{"coordination.k8s.io/v1", "leases", true};

// The collection: "/api/v1/namespaces/NS/pods"; every namespace's when `namespace_name` is empty
// ("/api/v1/pods"); "/api/v1/nodes" for a cluster-scoped type (the namespace is ignored).
std::string CollectionPath(const ResourceType& type, std::string_view namespace_name = {});

// One object, or its subresource: ObjectPath(kNodes, "", "n1", "status") is
// "/api/v1/nodes/n1/status".
std::string ObjectPath(const ResourceType& type, std::string_view namespace_name,
                       std::string_view name, std::string_view subresource = {});

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string Escape(std::string_view text);

// `path` with "?k=v&..." appended, keys and values escaped; pairs with an empty value are left out.
std::string WithQuery(std::string path,
                      const std::vector<std::pair<std::string_view, std::string>>& parameters);

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_PATHS_H_
