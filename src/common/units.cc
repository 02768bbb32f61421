#include "common/units.h"

#include <charconv>
#include <cinttypes>
#include <cstdio>

namespace tessera {
namespace {

std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
      out += hex;
    }
  }
  return out + "\"";
}

Status Invalid(std::string_view what, std::string_view text, std::string_view why) {
  return Status::Error(std::string(what) + "=" + Quote(text) + ": " + std::string(why));
}

struct Suffix {
  std::string_view text;
  uint64_t multiplier;
};

constexpr Suffix kSuffixes[] = {
    {"KiB", kKiB}, {"MiB", kMiB}, {"GiB", kGiB}, {"TiB", kTiB}, {"k", kKiB},
    {"K", kKiB},   {"m", kMiB},   {"M", kMiB},   {"g", kGiB},   {"G", kGiB},
    {"t", kTiB},   {"T", kTiB},   {"B", 1},      {"", 1},
};

}  // namespace

Result<uint64_t> ParseBytes(std::string_view text, std::string_view what) {
  constexpr std::string_view kExpected =
      "expected a byte size such as 1073741824, 1024m, 4g or 4GiB";
  if (text.empty()) return Invalid(what, text, "is empty; " + std::string(kExpected));
  if (text.front() == '-') return Invalid(what, text, "is negative; " + std::string(kExpected));
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return Invalid(what, text, "is not a number; " + std::string(kExpected));
  uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + digits, number);
  if (error == std::errc::result_out_of_range) {
    return Invalid(what, text, "is too large (more than 2^64 bytes)");
  }
  std::string_view suffix = text.substr(digits);
  for (const Suffix& candidate : kSuffixes) {
    if (suffix != candidate.text) continue;
    if (number != 0 && number > UINT64_MAX / candidate.multiplier) {
      return Invalid(what, text, "is too large (more than 2^64 bytes)");
    }
    return number * candidate.multiplier;
  }
  return Invalid(what, text,
                 "has an unknown unit " + Quote(suffix) +
                     "; use one of k, m, g, t (or KiB, MiB, GiB, TiB), or none for bytes");
}

Result<uint64_t> ParseUnsigned(std::string_view text, std::string_view what, uint64_t min,
                               uint64_t max) {
  std::string range =
      "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (text.empty()) return Invalid(what, text, "is empty; " + range);
  if (text.front() == '-') return Invalid(what, text, "is negative; " + range);
  uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error == std::errc::result_out_of_range) return Invalid(what, text, "is too large; " + range);
  if (error != std::errc() || end != text.data() + text.size()) {
    return Invalid(what, text, "is not a whole number; " + range);
  }
  if (number < min || number > max) return Invalid(what, text, "is out of range; " + range);
  return number;
}

Result<int> ParsePercent(std::string_view text, std::string_view what) {
  std::string_view digits = text;
  if (!digits.empty() && digits.back() == '%') digits.remove_suffix(1);
  Result<uint64_t> value = ParseUnsigned(digits, what, 0, 100);
  if (!value.ok()) {
    return Invalid(what, text, "is not a percentage; expected a whole number from 0 to 100");
  }
  return static_cast<int>(*value);
}

std::string FormatBytes(uint64_t bytes) {
  constexpr struct {
    uint64_t size;
    const char* name;
  } kUnits[] = {{kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (const auto& unit : kUnits) {
    if (bytes < unit.size) continue;
    char text[64];
    if (bytes % unit.size == 0) {
      std::snprintf(text, sizeof text, "%" PRIu64 " %s", bytes / unit.size, unit.name);
    } else {
      std::snprintf(text, sizeof text, "%.2f %s",
                    static_cast<double>(bytes) / static_cast<double>(unit.size), unit.name);
    }
    return text;
  }
  return std::to_string(bytes) + " B";
}

uint64_t RoundUp(uint64_t value, uint64_t granule) {
  uint64_t mask = granule - 1;
  if (value > UINT64_MAX - mask) return UINT64_MAX & ~mask;
  return (value + mask) & ~mask;
}

}  // namespace tessera
