// What tessera-node publishes on its Node object, as annotations:
//  - hami.io/node-nvidia-register: HAMi's JSON device list (v2.8+ form), so that HAMi-aware tools
//    (dashboards, HAMi's own scheduler) read this node's GPUs;
//  - tessera.io/node-gpus: Tessera's own, with every GPU's mode, replicas, MIG layout and health.
// Pure functions of the Registry; the publisher (node_publisher.h) patches them when they change.
#ifndef TESSERA_NODE_NODE_ANNOTATIONS_H_
#define TESSERA_NODE_NODE_ANNOTATIONS_H_

#include <map>
#include <string>

#include "node/config.h"
#include "node/registry.h"

namespace tessera::node {

inline constexpr char kHamiRegisterAnnotation[] = "hami.io/node-nvidia-register";
inline constexpr char kTesseraGpusAnnotation[] = "tessera.io/node-gpus";

std::map<std::string, std::string> NodeAnnotations(const Registry& registry,
                                                   const NodeConfig& config);

}  // namespace tessera::node

#endif  // TESSERA_NODE_NODE_ANNOTATIONS_H_
