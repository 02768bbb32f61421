#include "sim/mix/scenario.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "sim/mix/embedded_scenarios.h"
#include "sim/mix/yaml_tree.h"

namespace tessera::sim::mix {
namespace {

using Kind = YamlNode::Kind;
using placement::SharingMode;

std::string Quote(std::string_view text) {
  std::string quoted = "\"";
  for (char c : text.substr(0, 60)) {
    quoted += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > 60) quoted += "...";
  return quoted + "\"";
}

std::string JoinNames(std::initializer_list<std::string_view> names) {
  std::string joined;
  for (std::string_view name : names) {
    if (!joined.empty()) joined += ", ";
    joined += name;
  }
  return joined;
}

// Reads typed values out of the tree; every error names source:line: path.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  Status Error(const YamlNode& node, const std::string& path, const std::string& what) const {
    return Status::Error(source_ + ":" + std::to_string(node.line) + ": " + path + ": " + what);
  }

  // `node` must be a mapping holding only `allowed` keys.
  Status ExpectMapping(const YamlNode& node, const std::string& path,
                       std::initializer_list<std::string_view> allowed) const {
    if (node.kind != Kind::kMapping) {
      return Error(node, path, "expected a mapping (key: value lines or {...})");
    }
    for (size_t i = 0; i < node.keys.size(); ++i) {
      const std::string& key = node.keys[i];
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return Status::Error(source_ + ":" + std::to_string(node.key_lines[i]) + ": " +
                             Join(path, key) +
                             ": unknown key (expected one of: " + JoinNames(allowed) + ")");
      }
    }
    return Status::Ok();
  }

  Result<const YamlNode*> Required(const YamlNode& map, const std::string& path,
                                   std::string_view key) const {
    const YamlNode* value = map.Find(key);
    if (value == nullptr) {
      return Error(map, path.empty() ? "(top level)" : path,
                   "missing required key \"" + std::string(key) + "\"");
    }
    return value;
  }

  Result<double> Number(const YamlNode& node, const std::string& path, double min,
                        double max) const {
    if (node.kind != Kind::kScalar || node.quoted) {
      return Error(node, path, "expected a number");
    }
    const std::string& text = node.scalar;
    double value = 0;
    // "a/b" is accepted so that shares can be written as the fractions people say.
    if (size_t slash = text.find('/'); slash != std::string::npos) {
      Result<double> numerator = ParseDouble(text.substr(0, slash));
      Result<double> denominator = ParseDouble(text.substr(slash + 1));
      if (!numerator.ok() || !denominator.ok() || *denominator == 0) {
        return Error(node, path, "expected a number or a fraction like 1/6, got " + Quote(text));
      }
      value = *numerator / *denominator;
    } else {
      Result<double> parsed = ParseDouble(text);
      if (!parsed.ok()) return Error(node, path, "expected a number, got " + Quote(text));
      value = *parsed;
    }
    if (!(value >= min && value <= max)) {
      std::ostringstream range;
      range << "must be in [" << min << ", " << max << "], got " << Quote(text);
      return Error(node, path, range.str());
    }
    return value;
  }

  Result<int> Integer(const YamlNode& node, const std::string& path, int min, int max) const {
    if (node.kind != Kind::kScalar || node.quoted) {
      return Error(node, path, "expected a whole number");
    }
    int value = 0;
    const char* first = node.scalar.data();
    const char* last = first + node.scalar.size();
    auto [end, error] = std::from_chars(first, last, value);
    if (error != std::errc() || end != last) {
      return Error(node, path, "expected a whole number, got " + Quote(node.scalar));
    }
    if (value < min || value > max) {
      return Error(node, path,
                   "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                       Quote(node.scalar));
    }
    return value;
  }

  Result<std::string> String(const YamlNode& node, const std::string& path) const {
    if (node.kind != Kind::kScalar) return Error(node, path, "expected a string");
    return node.scalar;
  }

  Result<std::vector<std::string>> StringList(const YamlNode& node, const std::string& path) const {
    if (node.kind != Kind::kSequence) return Error(node, path, "expected a list like [a, b]");
    std::vector<std::string> values;
    for (size_t i = 0; i < node.items.size(); ++i) {
      Result<std::string> value = String(node.items[i], Index(path, i));
      if (!value.ok()) return value.status();
      values.push_back(std::move(value).value());
    }
    return values;
  }

  // A number, or {min: a, max: b}.
  Result<UniformRange> Range(const YamlNode& node, const std::string& path, double min,
                             double max) const {
    if (node.kind == Kind::kScalar) {
      Result<double> value = Number(node, path, min, max);
      if (!value.ok()) return value.status();
      return UniformRange{*value, *value};
    }
    if (Status status = ExpectMapping(node, path, {"min", "max"}); !status.ok()) return status;
    UniformRange range;
    for (auto [key, field] : {std::pair{"min", &range.min}, std::pair{"max", &range.max}}) {
      Result<const YamlNode*> child = Required(node, path, key);
      if (!child.ok()) return child.status();
      Result<double> value = Number(**child, Join(path, key), min, max);
      if (!value.ok()) return value.status();
      *field = *value;
    }
    if (range.min > range.max) return Error(node, path, "min is larger than max");
    return range;
  }

  static std::string Join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  static std::string Index(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

 private:
  static Result<double> ParseDouble(std::string_view text) {
    double value = 0;
    const char* first = text.data();
    const char* last = first + text.size();
    if (first != last && *first == '+') ++first;
    auto [end, error] = std::from_chars(first, last, value);
    if (text.empty() || error != std::errc() || end != last || !std::isfinite(value)) {
      return Status::Error("not a number");
    }
    return value;
  }

  std::string source_;
};

// Reads `key` of `map` into `*out` when present (keeping the default otherwise) or fails when
// it is required and absent.

Status ReadNumber(const Reader& reader, const YamlNode& map, const std::string& path,
                  std::string_view key, double min, double max, bool required, double* out) {
  const YamlNode* node = map.Find(key);
  if (node == nullptr) {
    if (!required) return Status::Ok();
    return reader.Required(map, path, key).status();
  }
  Result<double> value = reader.Number(*node, Reader::Join(path, key), min, max);
  if (!value.ok()) return value.status();
  *out = *value;
  return Status::Ok();
}

Status ReadInteger(const Reader& reader, const YamlNode& map, const std::string& path,
                   std::string_view key, int min, int max, bool required, int* out) {
  const YamlNode* node = map.Find(key);
  if (node == nullptr) {
    if (!required) return Status::Ok();
    return reader.Required(map, path, key).status();
  }
  Result<int> value = reader.Integer(*node, Reader::Join(path, key), min, max);
  if (!value.ok()) return value.status();
  *out = *value;
  return Status::Ok();
}

Status ReadString(const Reader& reader, const YamlNode& map, const std::string& path,
                  std::string_view key, bool required, std::string* out) {
  const YamlNode* node = map.Find(key);
  if (node == nullptr) {
    if (!required) return Status::Ok();
    return reader.Required(map, path, key).status();
  }
  Result<std::string> value = reader.String(*node, Reader::Join(path, key));
  if (!value.ok()) return value.status();
  *out = std::move(value).value();
  return Status::Ok();
}

// Resolves class names to indices, naming the list entry that is unknown.
Status ReadClassList(const Reader& reader, const Scenario& scenario, const YamlNode& map,
                     const std::string& path, std::string_view key, std::vector<int>* out) {
  Result<const YamlNode*> node = reader.Required(map, path, key);
  if (!node.ok()) return node.status();
  const std::string list_path = Reader::Join(path, key);
  Result<std::vector<std::string>> names = reader.StringList(**node, list_path);
  if (!names.ok()) return names.status();
  if (names->empty()) return reader.Error(**node, list_path, "lists no class");
  for (size_t i = 0; i < names->size(); ++i) {
    int index = scenario.ClassIndex((*names)[i]);
    if (index < 0) {
      return reader.Error((*node)->items[i], Reader::Index(list_path, i),
                          "no class named " + Quote((*names)[i]));
    }
    if (std::find(out->begin(), out->end(), index) != out->end()) {
      return reader.Error((*node)->items[i], Reader::Index(list_path, i),
                          "class " + Quote((*names)[i]) + " is listed twice");
    }
    out->push_back(index);
  }
  return Status::Ok();
}

Status ReadCluster(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  Result<const YamlNode*> node = reader.Required(root, "", "cluster");
  if (!node.ok()) return node.status();
  const YamlNode& map = **node;
  if (Status status = reader.ExpectMapping(
          map, "cluster", {"nodes", "gpus_per_node", "gpu_memory_gib", "cpus_per_node"});
      !status.ok()) {
    return status;
  }
  if (Status status = ReadNumber(reader, map, "cluster", "cpus_per_node", 0, 1e5, false,
                                 &scenario->cpus_per_node);
      !status.ok()) {
    return status;
  }
  if (Status status =
          ReadInteger(reader, map, "cluster", "nodes", 1, 100000, true, &scenario->nodes);
      !status.ok()) {
    return status;
  }
  if (Status status = ReadInteger(reader, map, "cluster", "gpus_per_node", 1, 64, true,
                                  &scenario->gpus_per_node);
      !status.ok()) {
    return status;
  }
  return ReadNumber(reader, map, "cluster", "gpu_memory_gib", 1, 1 << 20, true,
                    &scenario->gpu_memory_gib);
}

Status ReadOverheads(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  Result<const YamlNode*> node = reader.Required(root, "", "overheads");
  if (!node.ok()) return node.status();
  const YamlNode& map = **node;
  if (Status status = reader.ExpectMapping(
          map, "overheads", {"context_memory_gib", "shim_slowdown", "interference_per_cotenant"});
      !status.ok()) {
    return status;
  }
  Overheads& overheads = scenario->overheads;
  if (Status status = ReadNumber(reader, map, "overheads", "context_memory_gib", 0,
                                 scenario->gpu_memory_gib, true, &overheads.context_memory_gib);
      !status.ok()) {
    return status;
  }
  if (Status status = ReadNumber(reader, map, "overheads", "shim_slowdown", 0, 10, true,
                                 &overheads.shim_slowdown);
      !status.ok()) {
    return status;
  }
  return ReadNumber(reader, map, "overheads", "interference_per_cotenant", 0, 10, true,
                    &overheads.interference_per_cotenant);
}

Status ReadShares(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  const YamlNode* node = root.Find("shares");
  if (node == nullptr) return Status::Ok();
  if (Status status = reader.ExpectMapping(*node, "shares", {"compute_policy"}); !status.ok()) {
    return status;
  }
  std::string policy = "work_conserving";
  if (Status status = ReadString(reader, *node, "shares", "compute_policy", false, &policy);
      !status.ok()) {
    return status;
  }
  if (policy == "work_conserving") {
    scenario->compute_policy = ComputePolicy::kWorkConserving;
  } else if (policy == "capped") {
    scenario->compute_policy = ComputePolicy::kCapped;
  } else {
    return reader.Error(*node->Find("compute_policy"), "shares.compute_policy",
                        "expected work_conserving or capped, got " + Quote(policy));
  }
  return Status::Ok();
}

Status ReadMig(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  const YamlNode* node = root.Find("mig");
  if (node == nullptr) return Status::Ok();
  if (Status status =
          reader.ExpectMapping(*node, "mig", {"compute_slices", "memory_slices", "profiles"});
      !status.ok()) {
    return status;
  }
  MigSpec& mig = scenario->mig;
  if (Status status =
          ReadInteger(reader, *node, "mig", "compute_slices", 1, 64, true, &mig.compute_slices);
      !status.ok()) {
    return status;
  }
  if (Status status =
          ReadInteger(reader, *node, "mig", "memory_slices", 1, 64, true, &mig.memory_slices);
      !status.ok()) {
    return status;
  }
  Result<const YamlNode*> profiles = reader.Required(*node, "mig", "profiles");
  if (!profiles.ok()) return profiles.status();
  if ((*profiles)->kind != Kind::kSequence) {
    return reader.Error(**profiles, "mig.profiles", "expected a list of profiles");
  }
  for (size_t i = 0; i < (*profiles)->items.size(); ++i) {
    const YamlNode& item = (*profiles)->items[i];
    const std::string path = Reader::Index("mig.profiles", i);
    if (Status status = reader.ExpectMapping(item, path, {"name", "compute", "memory"});
        !status.ok()) {
      return status;
    }
    MigProfile profile;
    if (Status status = ReadString(reader, item, path, "name", true, &profile.name); !status.ok()) {
      return status;
    }
    if (Status status = ReadInteger(reader, item, path, "compute", 1, mig.compute_slices, true,
                                    &profile.compute_slices);
        !status.ok()) {
      return status;
    }
    if (Status status = ReadInteger(reader, item, path, "memory", 1, mig.memory_slices, true,
                                    &profile.memory_slices);
        !status.ok()) {
      return status;
    }
    for (const MigProfile& other : mig.profiles) {
      if (other.name == profile.name) {
        return reader.Error(item, path, "profile " + Quote(profile.name) + " is defined twice");
      }
    }
    mig.profiles.push_back(std::move(profile));
  }
  return Status::Ok();
}

Status ReadTimeSlicing(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  const YamlNode* node = root.Find("time_slicing");
  if (node == nullptr) return Status::Ok();
  if (Status status = reader.ExpectMapping(*node, "time_slicing",
                                           {"oom_after_minutes", "retry_backoff_minutes"});
      !status.ok()) {
    return status;
  }
  if (Status status = ReadNumber(reader, *node, "time_slicing", "oom_after_minutes", 0, 1e4, false,
                                 &scenario->time_slicing.oom_after_minutes);
      !status.ok()) {
    return status;
  }
  return ReadNumber(reader, *node, "time_slicing", "retry_backoff_minutes", 0.01, 1e4, false,
                    &scenario->time_slicing.retry_backoff_minutes);
}

Status ReadClasses(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  Result<const YamlNode*> node = reader.Required(root, "", "classes");
  if (!node.ok()) return node.status();
  if ((*node)->kind != Kind::kSequence || (*node)->items.empty()) {
    return reader.Error(**node, "classes", "expected a non-empty list of job classes");
  }
  const double usable_memory = scenario->gpu_memory_gib - scenario->overheads.context_memory_gib;
  for (size_t i = 0; i < (*node)->items.size(); ++i) {
    const YamlNode& item = (*node)->items[i];
    std::string path = Reader::Index("classes", i);
    if (Status status =
            reader.ExpectMapping(item, path,
                                 {"name", "arrivals_per_hour", "duration_minutes", "gpus",
                                  "memory_gib", "busy_fraction", "share", "cpus"});
        !status.ok()) {
      return status;
    }
    JobClass job_class;
    if (Status status = ReadString(reader, item, path, "name", true, &job_class.name);
        !status.ok()) {
      return status;
    }
    if (job_class.name.empty()) return reader.Error(item, path + ".name", "must not be empty");
    if (scenario->ClassIndex(job_class.name) >= 0) {
      return reader.Error(item, path + ".name",
                          "class " + Quote(job_class.name) + " is defined twice");
    }
    path = "classes[" + job_class.name + "]";
    if (Status status = ReadNumber(reader, item, path, "arrivals_per_hour", 0, 1e6, true,
                                   &job_class.arrivals_per_hour);
        !status.ok()) {
      return status;
    }

    Result<const YamlNode*> duration = reader.Required(item, path, "duration_minutes");
    if (!duration.ok()) return duration.status();
    const std::string duration_path = path + ".duration_minutes";
    if (Status status =
            reader.ExpectMapping(**duration, duration_path, {"median", "sigma", "min", "max"});
        !status.ok()) {
      return status;
    }
    DurationSpec& spec = job_class.duration;
    if (Status status = ReadNumber(reader, **duration, duration_path, "median", 1e-3, 1e6, true,
                                   &spec.median_minutes);
        !status.ok()) {
      return status;
    }
    if (Status status =
            ReadNumber(reader, **duration, duration_path, "sigma", 0, 5, false, &spec.sigma);
        !status.ok()) {
      return status;
    }
    spec.min_minutes = spec.median_minutes;
    spec.max_minutes = spec.median_minutes;
    if (spec.sigma > 0) {
      spec.min_minutes = 1e-3;
      spec.max_minutes = 1e6;
    }
    if (Status status = ReadNumber(reader, **duration, duration_path, "min", 1e-3, 1e6, false,
                                   &spec.min_minutes);
        !status.ok()) {
      return status;
    }
    if (Status status = ReadNumber(reader, **duration, duration_path, "max", 1e-3, 1e6, false,
                                   &spec.max_minutes);
        !status.ok()) {
      return status;
    }
    if (!(spec.min_minutes <= spec.median_minutes && spec.median_minutes <= spec.max_minutes)) {
      return reader.Error(**duration, duration_path, "needs min <= median <= max");
    }

    if (Status status = ReadInteger(reader, item, path, "gpus", 1, scenario->gpus_per_node, false,
                                    &job_class.gpus);
        !status.ok()) {
      return status;
    }
    Result<const YamlNode*> memory = reader.Required(item, path, "memory_gib");
    if (!memory.ok()) return memory.status();
    Result<UniformRange> memory_range =
        reader.Range(**memory, path + ".memory_gib", 0, scenario->gpu_memory_gib);
    if (!memory_range.ok()) return memory_range.status();
    if (memory_range->max > usable_memory) {
      return reader.Error(**memory, path + ".memory_gib",
                          "a job of this class cannot fit a whole GPU once its CUDA context "
                          "(overheads.context_memory_gib) is counted");
    }
    job_class.memory_gib = *memory_range;
    Result<const YamlNode*> busy = reader.Required(item, path, "busy_fraction");
    if (!busy.ok()) return busy.status();
    Result<UniformRange> busy_range = reader.Range(**busy, path + ".busy_fraction", 0, 1);
    if (!busy_range.ok()) return busy_range.status();
    if (busy_range->min <= 0) {
      return reader.Error(**busy, path + ".busy_fraction",
                          "must be above 0 (a GPU job uses its GPU)");
    }
    job_class.busy_fraction = *busy_range;
    if (Status status = ReadNumber(reader, item, path, "share", 1e-3, 1, false, &job_class.share);
        !status.ok()) {
      return status;
    }
    if (Status status = ReadNumber(reader, item, path, "cpus", 0, 1e4, false, &job_class.cpus);
        !status.ok()) {
      return status;
    }
    if (job_class.cpus > 0 && scenario->cpus_per_node <= 0) {
      return reader.Error(item, path + ".cpus", "needs cluster.cpus_per_node to be set");
    }
    scenario->classes.push_back(std::move(job_class));
  }
  return Status::Ok();
}

Result<SharingMode> ParseMode(const Reader& reader, const YamlNode& node, const std::string& path) {
  Result<std::string> text = reader.String(node, path);
  if (!text.ok()) return text.status();
  for (SharingMode mode :
       {SharingMode::kWhole, SharingMode::kMig, SharingMode::kTimeSliced, SharingMode::kShared}) {
    if (*text == PoolModeName(mode)) return mode;
  }
  return reader.Error(node, path,
                      "expected whole, mig, time_slicing or shares, got " + Quote(*text));
}

// The most memory a job can use in a pool (a whole GPU, a share, the largest MIG instance).
double LargestJobMemory(const Scenario& scenario, const Pool& pool) {
  double memory = scenario.gpu_memory_gib;
  if (pool.mode == SharingMode::kMig) {
    int slices = 0;
    for (int profile : pool.mig_geometry) {
      slices = std::max(slices, scenario.mig.profiles[profile].memory_slices);
    }
    memory = scenario.gpu_memory_gib * slices / scenario.mig.memory_slices;
  }
  return memory - scenario.overheads.context_memory_gib;
}

Status ReadPool(const Reader& reader, const YamlNode& item, const std::string& path,
                const Scenario& scenario, Pool* pool) {
  if (Status status = reader.ExpectMapping(
          item, path, {"name", "mode", "nodes", "classes", "geometry", "replicas"});
      !status.ok()) {
    return status;
  }
  if (Status status = ReadString(reader, item, path, "name", true, &pool->name); !status.ok()) {
    return status;
  }
  Result<const YamlNode*> mode_node = reader.Required(item, path, "mode");
  if (!mode_node.ok()) return mode_node.status();
  Result<SharingMode> mode = ParseMode(reader, **mode_node, path + ".mode");
  if (!mode.ok()) return mode.status();
  pool->mode = *mode;
  if (Status status =
          ReadInteger(reader, item, path, "nodes", 1, scenario.nodes, true, &pool->nodes);
      !status.ok()) {
    return status;
  }
  if (Status status = ReadClassList(reader, scenario, item, path, "classes", &pool->classes);
      !status.ok()) {
    return status;
  }

  const YamlNode* geometry = item.Find("geometry");
  if ((geometry != nullptr) != (pool->mode == SharingMode::kMig)) {
    return reader.Error(item, path, "a geometry is given for, and only for, a mig pool");
  }
  if (geometry != nullptr) {
    Result<std::vector<std::string>> names = reader.StringList(*geometry, path + ".geometry");
    if (!names.ok()) return names.status();
    int compute = 0;
    int memory = 0;
    for (size_t i = 0; i < names->size(); ++i) {
      auto found =
          std::find_if(scenario.mig.profiles.begin(), scenario.mig.profiles.end(),
                       [&](const MigProfile& profile) { return profile.name == (*names)[i]; });
      if (found == scenario.mig.profiles.end()) {
        return reader.Error(geometry->items[i], Reader::Index(path + ".geometry", i),
                            "no MIG profile named " + Quote((*names)[i]) + " under mig.profiles");
      }
      pool->mig_geometry.push_back(static_cast<int>(found - scenario.mig.profiles.begin()));
      compute += found->compute_slices;
      memory += found->memory_slices;
    }
    if (names->empty() || compute > scenario.mig.compute_slices ||
        memory > scenario.mig.memory_slices) {
      return reader.Error(*geometry, path + ".geometry",
                          "must list at least one instance and fit one GPU (" +
                              std::to_string(scenario.mig.compute_slices) + " compute and " +
                              std::to_string(scenario.mig.memory_slices) + " memory slices)");
    }
  }
  const YamlNode* replicas = item.Find("replicas");
  if ((replicas != nullptr) != (pool->mode == SharingMode::kTimeSliced)) {
    return reader.Error(item, path, "replicas are given for, and only for, a time_slicing pool");
  }
  if (replicas != nullptr) {
    if (Status status = ReadInteger(reader, item, path, "replicas", 1, 64, true, &pool->replicas);
        !status.ok()) {
      return status;
    }
  }
  for (int class_index : pool->classes) {
    if (scenario.classes[class_index].gpus > 1 && pool->mode != SharingMode::kWhole) {
      return reader.Error(item, path + ".classes",
                          "class " + Quote(scenario.classes[class_index].name) +
                              " asks for several GPUs per job, which only a whole pool serves");
    }
  }
  return Status::Ok();
}

Status ReadStrategies(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  Result<const YamlNode*> node = reader.Required(root, "", "strategies");
  if (!node.ok()) return node.status();
  if ((*node)->kind != Kind::kSequence || (*node)->items.empty()) {
    return reader.Error(**node, "strategies", "expected a non-empty list of strategies");
  }
  for (size_t i = 0; i < (*node)->items.size(); ++i) {
    const YamlNode& item = (*node)->items[i];
    std::string path = Reader::Index("strategies", i);
    if (Status status = reader.ExpectMapping(item, path, {"name", "description", "pools"});
        !status.ok()) {
      return status;
    }
    Strategy strategy;
    if (Status status = ReadString(reader, item, path, "name", true, &strategy.name);
        !status.ok()) {
      return status;
    }
    if (strategy.name.empty() || strategy.name.find(',') != std::string::npos) {
      return reader.Error(item, path + ".name", "must be a non-empty name without commas");
    }
    if (scenario->StrategyIndex(strategy.name) >= 0) {
      return reader.Error(item, path + ".name",
                          "strategy " + Quote(strategy.name) + " is defined twice");
    }
    path = "strategies[" + strategy.name + "]";
    if (Status status = ReadString(reader, item, path, "description", false, &strategy.description);
        !status.ok()) {
      return status;
    }
    Result<const YamlNode*> pools = reader.Required(item, path, "pools");
    if (!pools.ok()) return pools.status();
    if ((*pools)->kind != Kind::kSequence || (*pools)->items.empty()) {
      return reader.Error(**pools, path + ".pools", "expected a non-empty list of pools");
    }
    int nodes = 0;
    for (size_t p = 0; p < (*pools)->items.size(); ++p) {
      Pool pool;
      if (Status status = ReadPool(reader, (*pools)->items[p], Reader::Index(path + ".pools", p),
                                   *scenario, &pool);
          !status.ok()) {
        return status;
      }
      nodes += pool.nodes;
      strategy.pools.push_back(std::move(pool));
    }
    if (nodes != scenario->nodes) {
      return reader.Error(**pools, path + ".pools",
                          "the pools hold " + std::to_string(nodes) +
                              " nodes but cluster.nodes is " + std::to_string(scenario->nodes));
    }
    // Every class must have a pool that can hold its largest job, or its jobs would wait forever.
    for (size_t c = 0; c < scenario->classes.size(); ++c) {
      const JobClass& job_class = scenario->classes[c];
      bool served = false;
      for (const Pool& pool : strategy.pools) {
        bool lists = std::find(pool.classes.begin(), pool.classes.end(), static_cast<int>(c)) !=
                     pool.classes.end();
        if (lists && job_class.memory_gib.max <= LargestJobMemory(*scenario, pool) &&
            job_class.gpus <= scenario->gpus_per_node) {
          served = true;
        }
      }
      if (!served) {
        return reader.Error(**pools, path + ".pools",
                            "no pool can run the largest job of class " + Quote(job_class.name));
      }
    }
    scenario->strategies.push_back(std::move(strategy));
  }
  return Status::Ok();
}

Status ReadSweep(const Reader& reader, const YamlNode& root, Scenario* scenario) {
  Result<const YamlNode*> node = reader.Required(root, "", "sweep");
  if (!node.ok()) return node.status();
  const YamlNode& map = **node;
  if (Status status = reader.ExpectMapping(
          map, "sweep", {"nodes", "classes", "partitions", "hours", "warmup_hours"});
      !status.ok()) {
    return status;
  }
  Sweep& sweep = scenario->sweep;
  if (Status status =
          ReadInteger(reader, map, "sweep", "nodes", 1, scenario->nodes, true, &sweep.nodes);
      !status.ok()) {
    return status;
  }
  if (Status status = ReadClassList(reader, *scenario, map, "sweep", "classes", &sweep.classes);
      !status.ok()) {
    return status;
  }
  for (int class_index : sweep.classes) {
    if (scenario->classes[class_index].gpus > 1) {
      return reader.Error(*map.Find("classes"), "sweep.classes",
                          "class " + Quote(scenario->classes[class_index].name) +
                              " needs several whole GPUs and cannot be partitioned");
    }
  }
  Result<const YamlNode*> partitions = reader.Required(map, "sweep", "partitions");
  if (!partitions.ok()) return partitions.status();
  if ((*partitions)->kind != Kind::kSequence || (*partitions)->items.empty()) {
    return reader.Error(**partitions, "sweep.partitions",
                        "expected a non-empty list of denominators, like [1, 2, 4, 8]");
  }
  for (size_t i = 0; i < (*partitions)->items.size(); ++i) {
    Result<int> k =
        reader.Integer((*partitions)->items[i], Reader::Index("sweep.partitions", i), 1, 64);
    if (!k.ok()) return k.status();
    if (std::find(sweep.partitions.begin(), sweep.partitions.end(), *k) != sweep.partitions.end()) {
      return reader.Error((*partitions)->items[i], Reader::Index("sweep.partitions", i),
                          "partition 1/" + std::to_string(*k) + " is listed twice");
    }
    sweep.partitions.push_back(*k);
  }
  if (Status status = ReadNumber(reader, map, "sweep", "hours", 0.1, 1e4, false, &sweep.hours);
      !status.ok()) {
    return status;
  }
  return ReadNumber(reader, map, "sweep", "warmup_hours", 0, 1e4, false, &sweep.warmup_hours);
}

}  // namespace

std::string_view PoolModeName(SharingMode mode) {
  switch (mode) {
    case SharingMode::kWhole:
      return "whole";
    case SharingMode::kMig:
      return "mig";
    case SharingMode::kTimeSliced:
      return "time_slicing";
    case SharingMode::kShared:
      return "shares";
  }
  return "?";
}

int Scenario::ClassIndex(std::string_view class_name) const {
  for (size_t i = 0; i < classes.size(); ++i) {
    if (classes[i].name == class_name) return static_cast<int>(i);
  }
  return -1;
}

int Scenario::StrategyIndex(std::string_view strategy_name) const {
  for (size_t i = 0; i < strategies.size(); ++i) {
    if (strategies[i].name == strategy_name) return static_cast<int>(i);
  }
  return -1;
}

Result<Scenario> ParseScenario(std::string_view text, std::string_view source) {
  Result<YamlNode> root = ParseYaml(text, source);
  if (!root.ok()) return root.status();
  const Reader reader(source);
  Scenario scenario;
  auto run = [&]() -> Status {
    if (Status status = reader.ExpectMapping(
            *root, "(top level)",
            {"name", "description", "seed", "hours", "cluster", "overheads", "shares", "mig",
             "time_slicing", "classes", "strategies", "sweep"});
        !status.ok()) {
      return status;
    }
    if (Status status = ReadString(reader, *root, "", "name", true, &scenario.name); !status.ok()) {
      return status;
    }
    if (Status status = ReadString(reader, *root, "", "description", false, &scenario.description);
        !status.ok()) {
      return status;
    }
    int seed = 1;
    if (Status status = ReadInteger(reader, *root, "", "seed", 0, 2147483647, false, &seed);
        !status.ok()) {
      return status;
    }
    scenario.seed = static_cast<uint64_t>(seed);
    if (Status status = ReadNumber(reader, *root, "", "hours", 0.01, 1e5, true, &scenario.hours);
        !status.ok()) {
      return status;
    }
    for (auto step : {ReadCluster, ReadOverheads, ReadShares, ReadMig, ReadTimeSlicing, ReadClasses,
                      ReadStrategies, ReadSweep}) {
      if (Status status = step(reader, *root, &scenario); !status.ok()) return status;
    }
    return Status::Ok();
  };
  if (Status status = run(); !status.ok()) return status;
  return scenario;
}

std::string_view BuiltInScenarioText(std::string_view name) {
  for (const EmbeddedScenario& scenario : kEmbeddedScenarios) {
    if (scenario.name == name) return scenario.text;
  }
  return {};
}

std::vector<std::string> BuiltInScenarioNames() {
  std::vector<std::string> names;
  for (const EmbeddedScenario& scenario : kEmbeddedScenarios) names.emplace_back(scenario.name);
  return names;
}

Result<Scenario> LoadScenario(std::string_view name_or_path) {
  if (std::string_view text = BuiltInScenarioText(name_or_path); !text.empty()) {
    return ParseScenario(text, "scenarios/" + std::string(name_or_path) + ".yaml (built in)");
  }
  const std::string path(name_or_path);
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::string known;
    for (const std::string& name : BuiltInScenarioNames()) {
      known += (known.empty() ? "" : ", ") + name;
    }
    return Status::Error("scenario \"" + path +
                         "\": no built-in scenario by that name (built in: " + known +
                         ") and no readable file at that path");
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (text.str().size() > (8u << 20)) {
    return Status::Error(path + ": larger than 8 MiB; not a scenario file");
  }
  return ParseScenario(text.str(), path);
}

}  // namespace tessera::sim::mix
