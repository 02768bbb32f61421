#include "sim/mix/yaml_tree.h"

#include <yaml.h>

#include <memory>

namespace tessera::sim::mix {
namespace {

// Owns a libyaml parser; libyaml reports errors through the parser's fields.
class EventReader {
 public:
  EventReader(std::string_view text, std::string_view source) : source_(source) {
    yaml_parser_initialize(&parser_);
    yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
  }
  ~EventReader() {
    if (has_event_) yaml_event_delete(&event_);
    yaml_parser_delete(&parser_);
  }
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Advances to the next event; the previous one is released.
  Status Next() {
    if (has_event_) {
      yaml_event_delete(&event_);
      has_event_ = false;
    }
    if (!yaml_parser_parse(&parser_, &event_)) {
      std::string problem = parser_.problem != nullptr ? parser_.problem : "malformed document";
      const yaml_mark_t& mark = parser_.problem_mark;
      return Status::Error(source_ + ":" + std::to_string(mark.line + 1) + ":" +
                           std::to_string(mark.column + 1) + ": not valid YAML/JSON: " + problem);
    }
    has_event_ = true;
    return Status::Ok();
  }

  const yaml_event_t& event() const { return event_; }
  int line() const { return static_cast<int>(event_.start_mark.line) + 1; }
  const std::string& source() const { return source_; }

  Status ErrorHere(const std::string& what) const {
    return Status::Error(source_ + ":" + std::to_string(line()) + ": " + what);
  }

 private:
  std::string source_;
  yaml_parser_t parser_{};
  yaml_event_t event_{};
  bool has_event_ = false;
};

// REQUIRES: reader.event() is the first event of the node. On return it is the node's last event.
Result<YamlNode> ReadNode(EventReader& reader, int depth) {
  if (depth > kMaxYamlDepth) {
    return reader.ErrorHere("nested more than " + std::to_string(kMaxYamlDepth) + " levels deep");
  }
  const yaml_event_t& event = reader.event();
  YamlNode node;
  node.line = reader.line();
  switch (event.type) {
    case YAML_ALIAS_EVENT:
      return reader.ErrorHere("aliases (*name) are not supported in scenario files");
    case YAML_SCALAR_EVENT: {
      if (event.data.scalar.anchor != nullptr) {
        return reader.ErrorHere("anchors (&name) are not supported in scenario files");
      }
      node.kind = YamlNode::Kind::kScalar;
      node.scalar.assign(reinterpret_cast<const char*>(event.data.scalar.value),
                         event.data.scalar.length);
      node.quoted = event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
      return node;
    }
    case YAML_SEQUENCE_START_EVENT: {
      if (event.data.sequence_start.anchor != nullptr) {
        return reader.ErrorHere("anchors (&name) are not supported in scenario files");
      }
      node.kind = YamlNode::Kind::kSequence;
      while (true) {
        if (Status status = reader.Next(); !status.ok()) return status;
        if (reader.event().type == YAML_SEQUENCE_END_EVENT) return node;
        Result<YamlNode> item = ReadNode(reader, depth + 1);
        if (!item.ok()) return item.status();
        node.items.push_back(std::move(item).value());
      }
    }
    case YAML_MAPPING_START_EVENT: {
      if (event.data.mapping_start.anchor != nullptr) {
        return reader.ErrorHere("anchors (&name) are not supported in scenario files");
      }
      node.kind = YamlNode::Kind::kMapping;
      while (true) {
        if (Status status = reader.Next(); !status.ok()) return status;
        if (reader.event().type == YAML_MAPPING_END_EVENT) return node;
        if (reader.event().type != YAML_SCALAR_EVENT) {
          return reader.ErrorHere("a mapping key must be a plain name, not a list or mapping");
        }
        const int key_line = reader.line();
        std::string key(reinterpret_cast<const char*>(reader.event().data.scalar.value),
                        reader.event().data.scalar.length);
        if (node.Find(key) != nullptr) {
          return reader.ErrorHere("key \"" + key + "\" appears twice in the same mapping");
        }
        if (Status status = reader.Next(); !status.ok()) return status;
        Result<YamlNode> value = ReadNode(reader, depth + 1);
        if (!value.ok()) return value.status();
        node.keys.push_back(std::move(key));
        node.values.push_back(std::move(value).value());
        node.key_lines.push_back(key_line);
      }
    }
    default:
      return reader.ErrorHere("unexpected YAML event");
  }
}

}  // namespace

const YamlNode* YamlNode::Find(std::string_view key) const {
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] == key) return &values[i];
  }
  return nullptr;
}

Result<YamlNode> ParseYaml(std::string_view text, std::string_view source) {
  EventReader reader(text, source);
  // STREAM-START, then DOCUMENT-START (or STREAM-END for an empty input).
  if (Status status = reader.Next(); !status.ok()) return status;
  if (Status status = reader.Next(); !status.ok()) return status;
  if (reader.event().type == YAML_STREAM_END_EVENT) {
    return Status::Error(std::string(source) + ": the document is empty");
  }
  if (Status status = reader.Next(); !status.ok()) return status;
  Result<YamlNode> root = ReadNode(reader, 0);
  if (!root.ok()) return root.status();
  if (Status status = reader.Next(); !status.ok()) return status;  // DOCUMENT-END
  if (Status status = reader.Next(); !status.ok()) return status;
  if (reader.event().type != YAML_STREAM_END_EVENT) {
    return reader.ErrorHere("more than one document; a scenario file holds exactly one");
  }
  return root;
}

}  // namespace tessera::sim::mix
