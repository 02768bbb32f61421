#include "fakegpu/mig.h"

#include "common/strings.h"
#include "cuda/footprint.h"
#include "fakegpu/config.h"

namespace tessera::fakegpu {
namespace {

constexpr unsigned kH100Multiprocessors = 132;

// NVML_GPU_INSTANCE_PROFILE_* values (cuda/nvml_api.h), repeated so the table needs no NVML header.
constexpr unsigned k1Slice = 0x0, k2Slice = 0x1, k3Slice = 0x2, k4Slice = 0x3, k7Slice = 0x4,
                   k1SliceRev2 =
                       0x9;  // NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2: 1 slice, 2 memory slices

// An H100 80GB's GPU instance profiles (the MIG user guide's table and `nvidia-smi mig -lgip`),
// without the media-extension variant 1g.10gb+me. Placements as on an A100/H100: starts in memory
// slices, each as long as the profile's memory slices.
// clang-format off
constexpr MigProfile kProfiles[] = {
    // name      NVML profile  id  compute memory count SMs  CE dec jpeg ofa
    //           placements: count, starts, GPU instance ids
    {"1g.10gb", k1Slice,      19, 1,      1,     7,    16,  1, 0,  0,   0,
                7, {0, 1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12, 13}},
    {"1g.20gb", k1SliceRev2,  15, 1,      2,     4,    26,  1, 1,  1,   0,
                4, {0, 2, 4, 6},          {3, 4, 5, 6}},
    {"2g.20gb", k2Slice,      14, 2,      2,     3,    32,  2, 1,  1,   0,
                3, {0, 2, 4},             {3, 4, 5}},
    {"3g.40gb", k3Slice,      9,  3,      4,     2,    60,  3, 2,  2,   0,
                2, {0, 4},                {1, 2}},
    {"4g.40gb", k4Slice,      5,  4,      4,     1,    64,  4, 2,  2,   0,
                1, {0},                   {1}},
    {"7g.80gb", k7Slice,      0,  7,      8,     1,    132, 8, 7,  7,   1,
                1, {0},                   {0}},
};
// clang-format on

constexpr std::string_view kProfileNames = "1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb or 7g.80gb";

// Memory slices [start, start + size) as a bit mask.
unsigned SliceMask(unsigned start, unsigned size) { return ((1u << size) - 1) << start; }

// Places profiles[next..] beside the slices already `occupied`, each at its first placement that
// lets the rest fit; records the chosen placement indices.
bool PlaceFrom(const std::vector<const MigProfile*>& profiles, size_t next, unsigned occupied,
               std::vector<unsigned>* placements) {
  if (next == profiles.size()) return true;
  const MigProfile& profile = *profiles[next];
  for (unsigned k = 0; k < profile.placement_count; ++k) {
    unsigned mask = SliceMask(profile.placement_starts[k], profile.memory_slices);
    if ((occupied & mask) != 0) continue;
    (*placements)[next] = k;
    if (PlaceFrom(profiles, next + 1, occupied | mask, placements)) return true;
  }
  return false;
}

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

std::span<const MigProfile> MigProfiles() { return kProfiles; }

const MigProfile* FindMigProfileByName(std::string_view name) {
  for (const MigProfile& profile : kProfiles) {
    if (profile.name == name) return &profile;
  }
  return nullptr;
}

const MigProfile* FindMigProfileByNvmlProfile(unsigned nvml_profile) {
  for (const MigProfile& profile : kProfiles) {
    if (profile.nvml_profile == nvml_profile) return &profile;
  }
  return nullptr;
}

const MigProfile* FindMigProfileById(unsigned id) {
  for (const MigProfile& profile : kProfiles) {
    if (profile.id == id) return &profile;
  }
  return nullptr;
}

Status CheckMigCapable(uint64_t memory_bytes, unsigned multiprocessors) {
  if (memory_bytes < kMigMinimumMemoryBytes || multiprocessors < kMigMinimumMultiprocessors) {
    return Status::Error("MIG needs a device with memory of at least 8GiB and sms of at least " +
                         std::to_string(kMigMinimumMultiprocessors) + " (this one has " +
                         std::to_string(memory_bytes >> 20) + " MiB and " +
                         std::to_string(multiprocessors) + " SMs)");
  }
  return Status::Ok();
}

uint64_t MigInstanceMemory(const MigProfile& profile, uint64_t device_memory_bytes) {
  uint64_t slice =
      device_memory_bytes / kMigMemorySlices / cuda::kAllocationGranule * cuda::kAllocationGranule;
  return slice * profile.memory_slices;
}

unsigned MigInstanceMultiprocessors(const MigProfile& profile, unsigned device_multiprocessors) {
  uint64_t scaled =
      uint64_t{device_multiprocessors} * profile.h100_multiprocessors / kH100Multiprocessors;
  return scaled == 0 ? 1 : static_cast<unsigned>(scaled);
}

Result<std::vector<MigInstance>> PlaceMigInstances(std::string_view layout,
                                                   uint64_t device_memory_bytes,
                                                   unsigned device_multiprocessors,
                                                   const std::array<unsigned char, 16>& gpu_uuid) {
  std::string quoted = "mig=" + std::string(layout);
  if (Status capable = CheckMigCapable(device_memory_bytes, device_multiprocessors);
      !capable.ok()) {
    return Status::Error(quoted + ": " + capable.message());
  }
  if (layout.empty()) {
    return Status::Error("mig= is empty; expected a comma-separated list of " +
                         std::string(kProfileNames) + ", e.g. mig=3g.40gb,2g.20gb,1g.10gb");
  }
  std::vector<const MigProfile*> profiles;
  for (std::string_view name : Split(layout, ',')) {
    if (name.empty()) {
      return Status::Error(quoted +
                           " has an empty profile (two commas, or a leading or trailing "
                           "comma)");
    }
    const MigProfile* profile = FindMigProfileByName(name);
    if (profile == nullptr) {
      return Status::Error(quoted + ": unknown profile \"" + std::string(name) + "\"; expected " +
                           std::string(kProfileNames));
    }
    profiles.push_back(profile);
  }
  // The first prefix that cannot be placed names the instance that does not fit.
  std::vector<unsigned> placements(profiles.size());
  for (size_t count = 1; count <= profiles.size(); ++count) {
    std::vector<const MigProfile*> prefix(profiles.begin(),
                                          profiles.begin() + static_cast<std::ptrdiff_t>(count));
    if (!PlaceFrom(prefix, 0, 0, &placements)) {
      return Status::Error(quoted +
                           " does not fit on one GPU: " + std::string(profiles[count - 1]->name) +
                           " (instance " + std::to_string(count) +
                           ") has no free placement beside the instances before it (a GPU has " +
                           std::to_string(kMigComputeSlices) + " compute and " +
                           std::to_string(kMigMemorySlices) + " memory slices)");
    }
  }
  std::vector<MigInstance> instances;
  for (size_t i = 0; i < profiles.size(); ++i) {
    const MigProfile& profile = *profiles[i];
    MigInstance instance;
    instance.profile = &profile;
    instance.placement_start = profile.placement_starts[placements[i]];
    instance.gpu_instance_id = profile.gpu_instance_ids[placements[i]];
    instance.memory_bytes = MigInstanceMemory(profile, device_memory_bytes);
    instance.multiprocessors = MigInstanceMultiprocessors(profile, device_multiprocessors);
    instance.uuid = MigUuid(gpu_uuid, instance.gpu_instance_id);
    instances.push_back(instance);
  }
  return instances;
}

std::array<unsigned char, 16> MigUuid(const std::array<unsigned char, 16>& gpu_uuid,
                                      unsigned gpu_instance_id) {
  uint64_t high = 0, low = 0;
  for (size_t i = 0; i < 8; ++i) {
    high = high << 8 | gpu_uuid[i];
    low = low << 8 | gpu_uuid[8 + i];
  }
  uint64_t salt = Mix(0x4d49470000000000ull + gpu_instance_id);  // "MIG" and the id
  high = Mix(high ^ salt);
  low = Mix(low ^ Mix(salt));
  std::array<unsigned char, 16> uuid{};
  for (size_t i = 0; i < 8; ++i) {
    uuid[i] = static_cast<unsigned char>(high >> (56 - 8 * i));
    uuid[8 + i] = static_cast<unsigned char>(low >> (56 - 8 * i));
  }
  return uuid;
}

std::string FormatMigUuid(const std::array<unsigned char, 16>& uuid) {
  return "MIG-" + FormatUuid(uuid).substr(4);  // the GPU form less its "GPU-"
}

std::string MigDeviceName(std::string_view gpu_name, const MigProfile& profile) {
  return std::string(gpu_name) + " MIG " + std::string(profile.name);
}

}  // namespace tessera::fakegpu
