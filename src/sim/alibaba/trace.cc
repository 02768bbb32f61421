#include "sim/alibaba/trace.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_set>

#include "common/strings.h"

namespace tessera::sim::alibaba {
namespace {

constexpr int32_t kMaxGpusPerNode = 64;

// One line at a time, with its 1-based number; '\r' before '\n' dropped.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool Next(std::string_view* line, int* number) {
    if (pos_ >= text_.size()) return false;
    size_t end = text_.find('\n', pos_);
    if (end == std::string_view::npos) end = text_.size();
    *line = text_.substr(pos_, end - pos_);
    if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
    pos_ = end + 1;
    *number = ++line_;
    return true;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  int line_ = 0;
};

std::string Where(std::string_view file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": ";
}

std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text.substr(0, 40)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') ? '?' : c;
  }
  if (text.size() > 40) out += "...";
  return out + "\"";
}

Result<int64_t> ParseInt(std::string_view text, std::string_view column, int64_t max,
                         std::string_view file, int line) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < 0 ||
      value > max) {
    return Status::Error(Where(file, line) + "column " + std::string(column) + ": " + Quote(text) +
                         " is not an integer in 0.." + std::to_string(max));
  }
  return value;
}

// Column positions found in the header; -1 when absent.
struct Header {
  std::vector<std::string_view> names;
  int Find(std::string_view name) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return static_cast<int>(i);
    }
    return -1;
  }
};

Status ReadHeader(LineReader& reader, std::string_view file, const std::vector<std::string>& need,
                  Header* header, std::vector<int>* columns) {
  std::string_view line;
  int number = 0;
  if (!reader.Next(&line, &number)) return Status::Error(std::string(file) + ": empty file");
  header->names = Split(line, ',');
  columns->clear();
  for (const std::string& name : need) {
    int at = header->Find(name);
    if (at < 0) {
      return Status::Error(Where(file, number) + "header lacks column " + name);
    }
    columns->push_back(at);
  }
  return Status::Ok();
}

std::vector<std::string> SplitSpec(std::string_view spec) {
  std::vector<std::string> models;
  for (std::string_view piece : Split(spec, '|')) {
    std::string model(piece);
    if (!model.empty() && std::find(models.begin(), models.end(), model) == models.end()) {
      models.push_back(std::move(model));
    }
  }
  return models;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path + ": cannot open");
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return Status::Error(path + ": read failed");
  return contents.str();
}

}  // namespace

Result<std::vector<TraceNode>> ParseNodeCsv(std::string_view text, std::string_view file) {
  LineReader reader(text);
  Header header;
  std::vector<int> col;
  if (Status s = ReadHeader(reader, file, {"sn", "cpu_milli", "memory_mib", "gpu", "model"},
                            &header, &col);
      !s.ok()) {
    return s;
  }
  std::vector<TraceNode> nodes;
  std::unordered_set<std::string> names;
  std::string_view line;
  int number = 0;
  while (reader.Next(&line, &number)) {
    if (line.empty()) continue;
    std::vector<std::string_view> fields = Split(line, ',');
    if (fields.size() != header.names.size()) {
      return Status::Error(Where(file, number) + "expected " + std::to_string(header.names.size()) +
                           " fields, found " + std::to_string(fields.size()));
    }
    TraceNode node;
    node.name = std::string(fields[col[0]]);
    if (node.name.empty()) return Status::Error(Where(file, number) + "empty node name (sn)");
    if (!names.insert(node.name).second) {
      return Status::Error(Where(file, number) + "node " + Quote(node.name) + " appears twice");
    }
    auto cpu =
        ParseInt(fields[col[1]], "cpu_milli", std::numeric_limits<int32_t>::max(), file, number);
    if (!cpu.ok()) return cpu.status();
    auto memory = ParseInt(fields[col[2]], "memory_mib", int64_t{1} << 40, file, number);
    if (!memory.ok()) return memory.status();
    auto gpus = ParseInt(fields[col[3]], "gpu", kMaxGpusPerNode, file, number);
    if (!gpus.ok()) return gpus.status();
    node.cpu_milli = *cpu;
    node.memory_mib = *memory;
    node.gpus = static_cast<int32_t>(*gpus);
    node.model = std::string(fields[col[4]]);
    if (node.gpus > 0 && node.model.empty()) {
      return Status::Error(Where(file, number) + "node " + Quote(node.name) +
                           " has GPUs but no model");
    }
    nodes.push_back(std::move(node));
  }
  return nodes;
}

Result<std::vector<TracePod>> ParsePodCsv(std::string_view text, std::string_view file) {
  LineReader reader(text);
  Header header;
  std::vector<int> col;
  if (Status s = ReadHeader(
          reader, file, {"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"}, &header, &col);
      !s.ok()) {
    return s;
  }
  const int spec_column = header.Find("gpu_spec");
  std::vector<TracePod> pods;
  std::string_view line;
  int number = 0;
  while (reader.Next(&line, &number)) {
    if (line.empty()) continue;
    std::vector<std::string_view> fields = Split(line, ',');
    if (fields.size() != header.names.size()) {
      return Status::Error(Where(file, number) + "expected " + std::to_string(header.names.size()) +
                           " fields, found " + std::to_string(fields.size()));
    }
    TracePod pod;
    pod.name = std::string(fields[col[0]]);
    if (pod.name.empty()) return Status::Error(Where(file, number) + "empty pod name");
    auto cpu =
        ParseInt(fields[col[1]], "cpu_milli", std::numeric_limits<int32_t>::max(), file, number);
    if (!cpu.ok()) return cpu.status();
    auto memory = ParseInt(fields[col[2]], "memory_mib", int64_t{1} << 40, file, number);
    if (!memory.ok()) return memory.status();
    auto num_gpu = ParseInt(fields[col[3]], "num_gpu", kMaxGpusPerNode, file, number);
    if (!num_gpu.ok()) return num_gpu.status();
    auto gpu_milli = ParseInt(fields[col[4]], "gpu_milli", 1000, file, number);
    if (!gpu_milli.ok()) return gpu_milli.status();
    pod.cpu_milli = *cpu;
    pod.memory_mib = *memory;
    pod.num_gpu = static_cast<int32_t>(*num_gpu);
    // The trace gives CPU-only pods any gpu_milli; only GPU pods' shares mean something.
    pod.gpu_milli = pod.num_gpu > 0 ? static_cast<int32_t>(*gpu_milli) : 0;
    if (pod.num_gpu > 0 && pod.gpu_milli == 0) {
      return Status::Error(Where(file, number) + "pod " + Quote(pod.name) + " asks for " +
                           std::to_string(pod.num_gpu) + " GPUs with gpu_milli 0");
    }
    if (spec_column >= 0) pod.gpu_spec = SplitSpec(fields[spec_column]);
    pods.push_back(std::move(pod));
  }
  return pods;
}

Result<std::vector<TraceNode>> ReadNodeCsv(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseNodeCsv(*text, path);
}

Result<std::vector<TracePod>> ReadPodCsv(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParsePodCsv(*text, path);
}

Result<Trace> LoadTrace(const std::string& dir, const std::string& variant) {
  Trace trace;
  trace.variant = variant;
  auto nodes = ReadNodeCsv(dir + "/openb_node_list_gpu_node.csv");
  if (!nodes.ok()) return nodes.status();
  auto pods = ReadPodCsv(dir + "/openb_pod_list_" + variant + ".csv");
  if (!pods.ok()) return pods.status();
  trace.nodes = std::move(*nodes);
  trace.pods = std::move(*pods);
  return trace;
}

const std::vector<std::string>& PublishedVariants() {
  static const std::vector<std::string> variants = {
      "default",    "cpu050",     "cpu100",      "cpu200",     "cpu250",    "gpushare40",
      "gpushare60", "gpushare80", "gpushare100", "gpuspec10",  "gpuspec20", "gpuspec25",
      "gpuspec33",  "multigpu20", "multigpu30",  "multigpu40", "multigpu50"};
  return variants;
}

}  // namespace tessera::sim::alibaba
