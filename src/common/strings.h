// Small string helpers every piece would otherwise write again.
#ifndef TESSERA_COMMON_STRINGS_H_
#define TESSERA_COMMON_STRINGS_H_

#include <string>
#include <vector>

namespace tessera {

// "a, b, c" for Join({"a", "b", "c"}, ", "); "" for none.
inline std::string Join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "" : separator) + items[i];
  return out;
}

}  // namespace tessera

#endif  // TESSERA_COMMON_STRINGS_H_
