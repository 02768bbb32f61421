// How much device memory an allocation occupies, as the driver lays it out. The fake GPU uses
// these rules to allocate and the shim to reserve, so a reservation made before the driver call
// is the size the driver will take. On a real driver the shim trues up against what the driver
// reports where it can (see src/shim/memory_hooks.cc).
#ifndef TESSERA_CUDA_FOOTPRINT_H_
#define TESSERA_CUDA_FOOTPRINT_H_

#include <cstdint>

#include "cuda/driver_api.h"

namespace tessera::cuda {

// Physical memory is handed out in 2 MiB pages (the VMM granularity of current NVIDIA GPUs).
inline constexpr uint64_t kAllocationGranule = 2ull << 20;
// Rows of pitched allocations and arrays start on 512-byte boundaries.
inline constexpr uint64_t kPitchAlignment = 512;

inline constexpr uint64_t RoundUpTo(uint64_t value, uint64_t granule) {
  uint64_t mask = granule - 1;
  return value > UINT64_MAX - mask ? UINT64_MAX & ~mask : (value + mask) & ~mask;
}

inline constexpr uint64_t PageBytes(uint64_t requested) {
  return RoundUpTo(requested == 0 ? 1 : requested, kAllocationGranule);
}

inline constexpr uint64_t PitchFor(uint64_t width_bytes) {
  return RoundUpTo(width_bytes == 0 ? 1 : width_bytes, kPitchAlignment);
}

// Bytes of one element of one channel; 0 for a format Tessera does not know.
inline constexpr uint64_t ArrayFormatBytes(CUarray_format format) {
  switch (format) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8:
      return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF:
      return 2;
    case CU_AD_FORMAT_UNSIGNED_INT32:
    case CU_AD_FORMAT_SIGNED_INT32:
    case CU_AD_FORMAT_FLOAT:
      return 4;
  }
  return 0;
}

// Saturating multiply, so absurd descriptors become "too large" instead of wrapping to small.
inline constexpr uint64_t MultiplySaturating(uint64_t a, uint64_t b) {
  if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
  return a * b;
}

// Pages occupied by an array: rows pitched to 512 bytes, height and depth at least 1.
inline constexpr uint64_t ArrayBytes(uint64_t width, uint64_t height, uint64_t depth,
                                     CUarray_format format, unsigned channels) {
  uint64_t row =
      PitchFor(MultiplySaturating(MultiplySaturating(width, channels), ArrayFormatBytes(format)));
  uint64_t rows = MultiplySaturating(height == 0 ? 1 : height, depth == 0 ? 1 : depth);
  return PageBytes(MultiplySaturating(row, rows));
}

inline constexpr uint64_t ArrayBytes(const CUDA_ARRAY_DESCRIPTOR& d) {
  return ArrayBytes(d.Width, d.Height, 1, d.Format, d.NumChannels);
}

inline constexpr uint64_t ArrayBytes(const CUDA_ARRAY3D_DESCRIPTOR& d) {
  return ArrayBytes(d.Width, d.Height, d.Depth, d.Format, d.NumChannels);
}

// A mipmapped array: the sum of its levels, each half the previous in every dimension (min 1).
inline constexpr uint64_t MipmappedArrayBytes(const CUDA_ARRAY3D_DESCRIPTOR& d, unsigned levels) {
  uint64_t total = 0;
  uint64_t w = d.Width, h = d.Height, z = d.Depth;
  for (unsigned level = 0; level < levels; ++level) {
    uint64_t add = ArrayBytes(w, h, z, d.Format, d.NumChannels);
    total = total > UINT64_MAX - add ? UINT64_MAX : total + add;
    w = w > 1 ? w / 2 : 1;
    h = h > 1 ? h / 2 : h;
    z = z > 1 ? z / 2 : z;
  }
  return total;
}

}  // namespace tessera::cuda

#endif  // TESSERA_CUDA_FOOTPRINT_H_
