#include "common/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace tessera {

std::string WriteJson(const Json& value, JsonLayout layout) {
  // nlohmann's serializer writes every non-finite double as null (the rule the header states);
  // `replace` is what keeps a stray non-UTF-8 byte from throwing.
  return value.dump(layout == JsonLayout::kIndented ? 2 : -1, ' ', /*ensure_ascii=*/false,
                    Json::error_handler_t::replace);
}

double RoundToDecimals(double value, int decimals) {
  static constexpr double kScales[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
  if (decimals < 0) decimals = 0;
  if (decimals > 9) decimals = 9;
  const double scale = kScales[decimals];
  // Past 2^52 a double has no fractional places left, and the product could overflow.
  if (!std::isfinite(value) || std::fabs(value) * scale >= 0x1p52) return value;
  return std::round(value * scale) / scale;
}

double RoundToSignificantDigits(double value, int digits) {
  if (!std::isfinite(value)) return value;
  if (digits < 1) digits = 1;
  if (digits > 17) digits = 17;
  // %.17g of any double fits: sign, 17 digits, point, exponent.
  char text[32];
  std::snprintf(text, sizeof text, "%.*g", digits, value);
  return std::strtod(text, nullptr);
}

}  // namespace tessera
