#include "kube/paths.h"

namespace tessera::kube {
namespace {

std::string Prefix(const ResourceType& type) {
  // The core group lives under /api, every other group under /apis.
  bool core = type.group_version.find('/') == std::string_view::npos;
  return std::string(core ? "/api/" : "/apis/") + std::string(type.group_version);
}

}  // namespace

std::string Escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  return out;
}

std::string CollectionPath(const ResourceType& type, std::string_view namespace_name) {
  std::string path = Prefix(type);
  if (type.namespaced && !namespace_name.empty()) path += "/namespaces/" + Escape(namespace_name);
  path += '/';
  path += type.plural;
  return path;
}

std::string ObjectPath(const ResourceType& type, std::string_view namespace_name,
                       std::string_view name, std::string_view subresource) {
  std::string path = CollectionPath(type, namespace_name) + "/" + Escape(name);
  // Appended piecewise here and above: GCC 12 at -O3 (Release) takes "/" + a temporary string
  // for an overlapping copy (-Wrestrict, a false positive: its bug 105651).
  if (!subresource.empty()) {
    path += '/';
    path += Escape(subresource);
  }
  return path;
}

std::string WithQuery(std::string path,
                      const std::vector<std::pair<std::string_view, std::string>>& parameters) {
  char separator = path.find('?') == std::string::npos ? '?' : '&';
  for (const auto& [key, value] : parameters) {
    if (value.empty()) continue;
    path += separator;
    path += Escape(key) + "=" + Escape(value);
    separator = '&';
  }
  return path;
}

}  // namespace tessera::kube
