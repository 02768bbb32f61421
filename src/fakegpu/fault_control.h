// Raising and clearing Xids on the fake node's GPUs: what `tessera-fakegpu fault` and the
// tesseraFakeNvml* control functions share. A raised Xid goes into the GPU's fault record in the
// state file (fakegpu/shared_state.h), where every process sees it: NVML event sets registered
// for the GPU receive it once, and the GPU reports it until it is cleared.
#ifndef TESSERA_FAKEGPU_FAULT_CONTROL_H_
#define TESSERA_FAKEGPU_FAULT_CONTROL_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "fakegpu/config.h"
#include "fakegpu/shared_state.h"

namespace tessera::fakegpu {

inline constexpr uint64_t kMaxXid = 999;

// The GPU of the node that `text` names: its index ("1") or its GPU UUID. A MIG UUID is refused
// (faults are per GPU) with the index of its GPU in the message.
Result<int> FindNodeGpu(const std::vector<DeviceSpec>& node, std::string_view text);

// Raises `xid` (1 to kMaxXid) on GPU `gpu` of the node; returns its sequence number.
Result<uint64_t> RaiseXidOnGpu(SharedState& state, const std::vector<DeviceSpec>& node, int gpu,
                               uint64_t xid);
Status ClearGpuFault(SharedState& state, const std::vector<DeviceSpec>& node, int gpu);

// What a real GPU means by the Xid, for messages ("" for one the fake does not describe).
std::string_view XidMeaning(uint32_t xid);
// What the fake GPU does about it while it is raised, for messages.
std::string_view XidEffect(uint32_t xid);

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_FAULT_CONTROL_H_
