// A YAML (or JSON, which libyaml reads as YAML) document read into a small tree that remembers
// where each node came from, so a scenario reader can say "nio.yaml:12: classes[0].rate: ...".
//
// Only what scenario files need: mappings with scalar keys, sequences and scalars. Anchors and
// aliases are refused (they buy nothing here and open the door to exponential documents), as are
// duplicate keys, empty documents and more than one document. Nesting is limited to kMaxDepth.
#ifndef TESSERA_SIM_MIX_YAML_TREE_H_
#define TESSERA_SIM_MIX_YAML_TREE_H_

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tessera::sim::mix {

struct YamlNode {
  enum class Kind { kScalar, kSequence, kMapping };

  Kind kind = Kind::kScalar;
  int line = 0;                   // 1-based line of the node's first character
  std::string scalar;             // kScalar
  bool quoted = false;            // kScalar written in quotes
  std::vector<YamlNode> items;    // kSequence
  std::vector<std::string> keys;  // kMapping, in document order ...
  std::vector<YamlNode> values;   // ... with their values
  std::vector<int> key_lines;     // kMapping: line of each key

  // REQUIRES: kind == kMapping. The value under `key`, or nullptr.
  const YamlNode* Find(std::string_view key) const;
};

inline constexpr int kMaxYamlDepth = 32;

// Parses `text`. `source` names it in error messages ("nio.yaml", "<embedded nio>").
Result<YamlNode> ParseYaml(std::string_view text, std::string_view source);

}  // namespace tessera::sim::mix

#endif  // TESSERA_SIM_MIX_YAML_TREE_H_
