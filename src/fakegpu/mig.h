// MIG (Multi-Instance GPU) as an H100 80GB has it: the GPU instance profiles, where each may be
// placed, and the instances that a config line's `mig=` asks for.
//
// A GPU in MIG mode has 7 compute slices and 8 memory slices. A GPU instance takes one of its
// profile's placements (start and size in memory slices, as nvmlGpuInstancePlacement_t); no two
// instances overlap. Each instance has one compute instance spanning it (compute instance id 0).
// The profiles keep an H100 80GB's names, ids and placements; memory and SMs scale with the
// device: an instance gets memory_slices/8 of the device's memory (each slice rounded down to
// 2 MiB) and the share of the device's SMs that the profile has of an H100 SXM's 132.
#ifndef TESSERA_FAKEGPU_MIG_H_
#define TESSERA_FAKEGPU_MIG_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::fakegpu {

inline constexpr unsigned kMigComputeSlices = 7;
inline constexpr unsigned kMigMemorySlices = 8;
// The most MIG devices one GPU holds (seven 1g instances); nvmlDeviceGetMaxMigDeviceCount.
inline constexpr int kMaxMigInstances = 7;
// What a device needs for MIG: at least 1 GiB per memory slice and two SMs per compute slice.
inline constexpr uint64_t kMigMinimumMemoryBytes = 8ull << 30;
inline constexpr unsigned kMigMinimumMultiprocessors = 14;

struct MigProfile {
  std::string_view name;  // "3g.40gb"
  unsigned nvml_profile;  // NVML_GPU_INSTANCE_PROFILE_*: what ..GetGpuInstanceProfileInfo takes
  unsigned id;            // nvmlGpuInstanceProfileInfo_t::id (nvidia-smi's profile ID)
  unsigned compute_slices;
  unsigned memory_slices;         // also the size of each placement
  unsigned instance_count;        // how many fit on one GPU
  unsigned h100_multiprocessors;  // of an H100 SXM's 132
  unsigned copy_engines;
  unsigned decoders;
  unsigned jpegs;
  unsigned ofas;
  unsigned placement_count;
  std::array<unsigned, kMaxMigInstances> placement_starts;
  // The GPU instance id of an instance at placement_starts[k], as the hardware numbers them.
  std::array<unsigned, kMaxMigInstances> gpu_instance_ids;
};

// One GPU instance (with its one compute instance) of a GPU in MIG mode.
struct MigInstance {
  const MigProfile* profile = nullptr;
  unsigned placement_start = 0;
  unsigned gpu_instance_id = 0;
  unsigned compute_instance_id = 0;
  uint64_t memory_bytes = 0;
  unsigned multiprocessors = 0;
  std::array<unsigned char, 16> uuid{};  // "MIG-..." once formatted
};

// The H100 80GB profiles the fake knows, smallest first.
std::span<const MigProfile> MigProfiles();
const MigProfile* FindMigProfileByName(std::string_view name);
const MigProfile* FindMigProfileByNvmlProfile(unsigned nvml_profile);
const MigProfile* FindMigProfileById(unsigned id);

// Whether a device of this size can be put in MIG mode; the error says why not.
Status CheckMigCapable(uint64_t memory_bytes, unsigned multiprocessors);

// A profile's memory and SMs on a device of this size. REQUIRES: CheckMigCapable passed.
uint64_t MigInstanceMemory(const MigProfile& profile, uint64_t device_memory_bytes);
unsigned MigInstanceMultiprocessors(const MigProfile& profile, unsigned device_multiprocessors);

// The instances of `mig=` (comma-separated profile names), placed in order, each at its first
// free placement that leaves room for the ones after it, so that every layout a real GPU holds is
// accepted. Errors quote the value and say which profile is unknown or does not fit.
Result<std::vector<MigInstance>> PlaceMigInstances(std::string_view layout,
                                                   uint64_t device_memory_bytes,
                                                   unsigned device_multiprocessors,
                                                   const std::array<unsigned char, 16>& gpu_uuid);

// Derived from the GPU's UUID and the GPU instance id only: every process agrees on it.
std::array<unsigned char, 16> MigUuid(const std::array<unsigned char, 16>& gpu_uuid,
                                      unsigned gpu_instance_id);
// "MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as NVML and nvidia-smi print it.
std::string FormatMigUuid(const std::array<unsigned char, 16>& uuid);
// "<gpu name> MIG 3g.40gb", as NVML and CUDA name a MIG device.
std::string MigDeviceName(std::string_view gpu_name, const MigProfile& profile);

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_MIG_H_
