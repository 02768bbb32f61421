// Pieces shared by the policy implementations; not part of the engine's public surface.
#ifndef TESSERA_PLACEMENT_POLICY_INTERNAL_H_
#define TESSERA_PLACEMENT_POLICY_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <random>

#include "common/random.h"
#include "placement/policy.h"

namespace tessera::placement {

std::unique_ptr<Policy> MakeFgdPolicy(const Cluster& cluster, const PolicyOptions& options);
std::unique_ptr<Policy> MakeTesseraPolicy(const Cluster& cluster, const PolicyOptions& options,
                                          bool online);

}  // namespace tessera::placement

#endif  // TESSERA_PLACEMENT_POLICY_INTERNAL_H_
