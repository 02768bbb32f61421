// Quantities people type: byte sizes ("4GiB", "512m", "1073741824") and percentages ("25").
//
// Byte sizes: a non-negative integer, optionally followed by one suffix: k/m/g/t or K/M/G/T
// (binary multiples, HAMi's convention), KiB/MiB/GiB/TiB, or B. No sign, no hex, no octal,
// no fraction, no spaces inside; overflow of 64 bits is an error. Every error message names
// `what` (the variable or flag the text came from) and quotes the text.
#ifndef TESSERA_COMMON_UNITS_H_
#define TESSERA_COMMON_UNITS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tessera {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;
inline constexpr uint64_t kTiB = 1024 * kGiB;

Result<uint64_t> ParseBytes(std::string_view text, std::string_view what);

// An integer percentage 0..100 (no suffix, or a trailing '%').
Result<int> ParsePercent(std::string_view text, std::string_view what);

// An unsigned decimal integer in [min, max].
Result<uint64_t> ParseUnsigned(std::string_view text, std::string_view what, uint64_t min,
                               uint64_t max);

// "4.00 GiB", "512 MiB", "0 B": the largest binary unit with a value >= 1, two decimals when the
// value is not whole.
std::string FormatBytes(uint64_t bytes);

// Round up to a multiple of `granule` (a power of two); saturates instead of wrapping.
uint64_t RoundUp(uint64_t value, uint64_t granule);

}  // namespace tessera

#endif  // TESSERA_COMMON_UNITS_H_
