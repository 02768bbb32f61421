// Writing JSON by hand: the one string-quoting rule every report uses.
#ifndef TESSERA_COMMON_JSON_H_
#define TESSERA_COMMON_JSON_H_

#include <string>
#include <string_view>

namespace tessera {

// `text` as a JSON string literal, quotes included: ", \ and control characters escaped.
std::string JsonString(std::string_view text);

}  // namespace tessera

#endif  // TESSERA_COMMON_JSON_H_
