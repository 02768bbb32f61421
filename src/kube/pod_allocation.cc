#include "kube/pod_allocation.h"

#include <nlohmann/json.hpp>

namespace tessera::kube {

using nlohmann::json;

const ContainerGrant* PodAllocation::Find(std::string_view name) const {
  for (const ContainerGrant& container : containers) {
    if (container.name == name) return &container;
  }
  return nullptr;
}

std::string EncodePodAllocation(const PodAllocation& allocation) {
  json containers = json::array();
  for (const ContainerGrant& container : allocation.containers) {
    json gpus = json::array();
    for (const GpuGrant& gpu : container.gpus) {
      gpus.push_back({{"uuid", gpu.uuid}, {"memoryMiB", gpu.memory_mib}, {"cores", gpu.cores}});
    }
    json entry = {{"name", container.name}, {"gpus", std::move(gpus)}};
    if (container.init) entry["init"] = true;
    containers.push_back(std::move(entry));
  }
  return json{{"node", allocation.node}, {"containers", std::move(containers)}}.dump();
}

namespace {

Status Unknown(const json& object, std::initializer_list<std::string_view> known,
               const std::string& where) {
  for (const auto& [key, value] : object.items()) {
    bool found = false;
    for (std::string_view name : known) found = found || key == name;
    if (!found) return Status::Error(where + ": unknown field \"" + key + "\"");
  }
  return Status::Ok();
}

}  // namespace

Result<PodAllocation> DecodePodAllocation(std::string_view text) {
  const std::string what = std::string(kAllocationAnnotation);
  json document = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) return Status::Error(what + ": not JSON");
  if (!document.is_object()) return Status::Error(what + ": not a JSON object");
  if (Status s = Unknown(document, {"node", "containers"}, what); !s.ok()) return s;
  PodAllocation allocation;
  auto node = document.find("node");
  if (node == document.end() || !node->is_string() || node->get_ref<const std::string&>().empty()) {
    return Status::Error(what + ": \"node\" must be a non-empty string");
  }
  allocation.node = node->get<std::string>();
  auto containers = document.find("containers");
  if (containers == document.end() || !containers->is_array()) {
    return Status::Error(what + ": \"containers\" must be an array");
  }
  for (size_t c = 0; c < containers->size(); ++c) {
    const json& entry = (*containers)[c];
    std::string where = what + ": containers[" + std::to_string(c) + "]";
    if (!entry.is_object()) return Status::Error(where + " is not an object");
    if (Status s = Unknown(entry, {"name", "init", "gpus"}, where); !s.ok()) return s;
    ContainerGrant container;
    auto name = entry.find("name");
    if (name == entry.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      return Status::Error(where + ".name must be a non-empty string");
    }
    container.name = name->get<std::string>();
    if (allocation.Find(container.name) != nullptr) {
      return Status::Error(where + ".name \"" + container.name + "\" appears twice");
    }
    if (auto init = entry.find("init"); init != entry.end()) {
      if (!init->is_boolean()) return Status::Error(where + ".init must be true or false");
      container.init = init->get<bool>();
    }
    auto gpus = entry.find("gpus");
    if (gpus == entry.end() || !gpus->is_array()) {
      return Status::Error(where + ".gpus must be an array");
    }
    for (size_t g = 0; g < gpus->size(); ++g) {
      const json& gpu = (*gpus)[g];
      std::string at = where + ".gpus[" + std::to_string(g) + "]";
      if (!gpu.is_object()) return Status::Error(at + " is not an object");
      if (Status s = Unknown(gpu, {"uuid", "memoryMiB", "cores"}, at); !s.ok()) return s;
      GpuGrant grant;
      auto uuid = gpu.find("uuid");
      if (uuid == gpu.end() || !uuid->is_string() || uuid->get_ref<const std::string&>().empty()) {
        return Status::Error(at + ".uuid must be a non-empty string");
      }
      grant.uuid = uuid->get<std::string>();
      auto memory = gpu.find("memoryMiB");
      if (memory == gpu.end() || !memory->is_number_integer() || memory->get<int64_t>() <= 0) {
        return Status::Error(at + ".memoryMiB must be a positive integer");
      }
      grant.memory_mib = memory->get<int64_t>();
      auto cores = gpu.find("cores");
      if (cores == gpu.end() || !cores->is_number_integer() || cores->get<int64_t>() < 0 ||
          cores->get<int64_t>() > 100) {
        return Status::Error(at + ".cores must be an integer in 0..100");
      }
      grant.cores = static_cast<int32_t>(cores->get<int64_t>());
      for (const GpuGrant& other : container.gpus) {
        if (other.uuid == grant.uuid) {
          return Status::Error(at + ".uuid \"" + grant.uuid + "\" appears twice");
        }
      }
      container.gpus.push_back(std::move(grant));
    }
    allocation.containers.push_back(std::move(container));
  }
  return allocation;
}

std::string EncodeHamiDevices(const PodAllocation& allocation) {
  std::string text;
  for (const ContainerGrant& container : allocation.containers) {
    for (const GpuGrant& gpu : container.gpus) {
      text += gpu.uuid + ",NVIDIA," + std::to_string(gpu.memory_mib) + "," +
              std::to_string(gpu.cores) + ":";
    }
    text += ";";
  }
  return text;
}

}  // namespace tessera::kube
