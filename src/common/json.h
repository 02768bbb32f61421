// Writing JSON reports. Every report (`tessera status --json`, `tessera sim alibaba --json`,
// `tessera sim mix --json`) builds its document as a `Json` value and writes it with WriteJson, so
// they share one set of rules instead of each formatting numbers and quoting strings by hand:
//  - keys stay in the order they were added (the order the reports' docs list them);
//  - a double that is not finite (NaN, +inf, -inf) is written as null, since JSON has no such
//    numbers and a reader's parser would refuse the whole document;
//  - bytes in a string that are not UTF-8 (a path, a process's command line) are written as
//    U+FFFD rather than failing the report.
#ifndef TESSERA_COMMON_JSON_H_
#define TESSERA_COMMON_JSON_H_

#include <nlohmann/json.hpp>
#include <string>

namespace tessera {

using Json = nlohmann::ordered_json;

enum class JsonLayout {
  kOneLine,   // {"a":1,"b":[2,3]}
  kIndented,  // two spaces per level, one member or element per line
};

// `value` as JSON text, without a trailing newline.
std::string WriteJson(const Json& value, JsonLayout layout);

// `value` rounded to `decimals` places after the point (at most 9), for reports whose numbers
// mean nothing past that; a value too large to have those places, or not finite, is unchanged.
double RoundToDecimals(double value, int decimals);

// `value` rounded to `digits` significant digits (1 to 17), as printf's %.*g would show it;
// not finite stays not finite.
double RoundToSignificantDigits(double value, int digits);

}  // namespace tessera

#endif  // TESSERA_COMMON_JSON_H_
