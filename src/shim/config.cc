#include "shim/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "common/units.h"
#include "shim/environment.h"

extern char** environ;

namespace tessera::shim {
namespace {

// "true"/"1" or "false"/"0"; anything else is an error naming the variable.
void ParseFlag(std::string_view name, std::string_view value, bool* flag,
               std::vector<std::string>& errors) {
  if (value == "true" || value == "1") {
    *flag = true;
  } else if (value == "false" || value == "0") {
    *flag = false;
  } else {
    errors.push_back(std::string(name) + "=\"" + std::string(value) + "\": expected true or false");
  }
}

// For "PREFIX" or "PREFIX_<i>": the device index (-1 for all devices), or nullopt with an error
// when the suffix is not a device index.
std::optional<int> DeviceSuffix(std::string_view name, std::string_view prefix,
                                std::vector<std::string>& errors) {
  if (name == prefix) return -1;
  std::string_view suffix = name.substr(prefix.size() + 1);
  Result<uint64_t> index =
      ParseUnsigned(suffix, name, 0, static_cast<uint64_t>(region::kMaxDevices - 1));
  if (!index.ok()) {
    errors.push_back(std::string(name) + ": the suffix after " + std::string(prefix) +
                     "_ must be a device index from 0 to " +
                     std::to_string(region::kMaxDevices - 1));
    return std::nullopt;
  }
  return static_cast<int>(*index);
}

bool HasPrefix(std::string_view name, std::string_view prefix) {
  return name == prefix || (name.size() > prefix.size() + 1 &&
                            name.substr(0, prefix.size()) == prefix && name[prefix.size()] == '_');
}

// The limit variables' values as parsed, before per-device values override the default:
// index 0 is the all-devices value, index i + 1 device i's. Fixed arrays: no allocation.
struct LimitValues {
  std::optional<uint64_t> memory[region::kMaxDevices + 1];
  std::optional<uint32_t> sm[region::kMaxDevices + 1];
  std::optional<std::string> uuid[region::kMaxDevices + 1];  // index 0 unused: always per device
};

// The kinds of variable a limits file may set, each at most once per device.
enum VariableKind { kSmVariable, kMemoryVariable, kUuidVariable, kVariableKinds };

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// "GPU-" or "MIG-" and a UUID in 8-4-4-4-12 hex digits, as NVML and NVIDIA_VISIBLE_DEVICES
// spell them.
bool IsDeviceUuid(std::string_view text) {
  constexpr std::string_view kShape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
  if (text.size() != 4 + kShape.size()) return false;
  if (text.substr(0, 4) != "GPU-" && text.substr(0, 4) != "MIG-") return false;
  for (size_t i = 0; i < kShape.size(); ++i) {
    char c = text[4 + i];
    if (kShape[i] == '-' ? c != '-' : std::isxdigit(static_cast<unsigned char>(c)) == 0) {
      return false;
    }
  }
  return true;
}

enum class LimitParse { kNotALimit, kSet, kBad };

// Parses `name`=`value` if it is a limit variable or a device's UUID. On kSet, `*slot` is the
// LimitValues index it set and `*kind` what it set. Errors name the variable.
LimitParse ParseLimitVariable(std::string_view name, std::string_view value, LimitValues& values,
                              std::vector<std::string>& errors, int* slot, VariableKind* kind) {
  if (HasPrefix(name, kDeviceUuidVariable)) {
    if (name == kDeviceUuidVariable) {
      errors.push_back(std::string(name) + ": names no device; set " +
                       std::string(kDeviceUuidVariable) + "_<i> for container device i");
      return LimitParse::kBad;
    }
    std::optional<int> device = DeviceSuffix(name, kDeviceUuidVariable, errors);
    if (!device) return LimitParse::kBad;
    if (!IsDeviceUuid(value)) {
      errors.push_back(std::string(name) + "=\"" + std::string(value) +
                       "\": expected a GPU or MIG UUID, such as "
                       "GPU-5d1f0a3c-1b2e-4c6d-8e9f-0a1b2c3d4e5f");
      return LimitParse::kBad;
    }
    *slot = *device + 1;
    *kind = kUuidVariable;
    values.uuid[*slot] = std::string(value);
    return LimitParse::kSet;
  }
  if (HasPrefix(name, kMemoryLimitVariable)) {
    std::optional<int> device = DeviceSuffix(name, kMemoryLimitVariable, errors);
    if (!device) return LimitParse::kBad;
    Result<uint64_t> bytes = ParseBytes(value, name);
    if (!bytes.ok()) {
      errors.push_back(bytes.status().message());
      return LimitParse::kBad;
    }
    if (*bytes == 0) {
      errors.push_back(std::string(name) +
                       "=\"0\": a limit of zero bytes admits nothing; unset the variable for no "
                       "limit");
      return LimitParse::kBad;
    }
    *slot = *device + 1;
    *kind = kMemoryVariable;
    values.memory[*slot] = *bytes;
    return LimitParse::kSet;
  }
  if (HasPrefix(name, kSmLimitVariable)) {
    std::optional<int> device = DeviceSuffix(name, kSmLimitVariable, errors);
    if (!device) return LimitParse::kBad;
    Result<int> percent = ParsePercent(value, name);
    if (!percent.ok()) {
      errors.push_back(percent.status().message());
      return LimitParse::kBad;
    }
    *slot = *device + 1;
    *kind = kSmVariable;
    values.sm[*slot] = static_cast<uint32_t>(*percent);
    return LimitParse::kSet;
  }
  return LimitParse::kNotALimit;
}

// Per-device values override the all-devices value whatever their order.
region::RegionConfig ResolveLimits(const LimitValues& values) {
  region::RegionConfig limits;
  for (int device = 0; device < region::kMaxDevices; ++device) {
    const std::optional<uint64_t>& memory =
        values.memory[device + 1] ? values.memory[device + 1] : values.memory[0];
    const std::optional<uint32_t>& sm =
        values.sm[device + 1] ? values.sm[device + 1] : values.sm[0];
    limits.devices[device].memory_bytes = memory.value_or(0);
    limits.devices[device].sm_percent = sm.value_or(0);
  }
  return limits;
}

bool SameUuids(const LimitValues& a, const LimitValues& b) {
  for (int slot = 1; slot <= region::kMaxDevices; ++slot) {
    if (a.uuid[slot] != b.uuid[slot]) return false;
  }
  return true;
}

bool SameLimits(const region::RegionConfig& a, const region::RegionConfig& b) {
  for (int device = 0; device < region::kMaxDevices; ++device) {
    if (a.devices[device].memory_bytes != b.devices[device].memory_bytes ||
        a.devices[device].sm_percent != b.devices[device].sm_percent) {
      return false;
    }
  }
  return true;
}

// The environment's variables. With `limits_file` empty its limit variables go to `limits`;
// otherwise they, CUDA_DISABLE_CONTROL and TESSERA_LIMITS_FILE are ignored (with a notice).
// NVIDIA_VISIBLE_DEVICES's value, if any, goes to `*visible`.
void ParseEnvironment(const std::vector<std::string_view>& environment,
                      std::string_view limits_file, Config& config, LimitValues& limits,
                      std::optional<std::string_view>* visible) {
  bool authoritative = !limits_file.empty();
  LimitValues ignored;
  std::vector<std::string> ignored_errors;
  bool disable_ignored = false;
  bool limits_ignored = false;
  for (std::string_view entry : environment) {
    size_t equals = entry.find('=');
    if (equals == std::string_view::npos) continue;
    std::string_view name = entry.substr(0, equals);
    std::string_view value = entry.substr(equals + 1);
    int slot = 0;
    VariableKind kind = kSmVariable;
    if (!authoritative) {
      if (ParseLimitVariable(name, value, limits, config.errors, &slot, &kind) !=
          LimitParse::kNotALimit) {
        continue;
      }
    } else if (ParseLimitVariable(name, value, ignored, ignored_errors, &slot, &kind) !=
               LimitParse::kNotALimit) {
      limits_ignored = true;
      continue;
    }
    if (name == kVisibleDevicesVariable) {
      *visible = value;
    } else if (name == kRegionVariable) {
      if (value.empty()) {
        config.errors.push_back(std::string(kRegionVariable) +
                                "=\"\": is empty; expected the path of the region file");
      } else {
        config.region_path = std::string(value);
      }
    } else if (name == kDisableVariable) {
      if (authoritative) {
        disable_ignored = true;
      } else {
        ParseFlag(name, value, &config.disabled, config.errors);
      }
    } else if (name == kWorkConservingVariable) {
      ParseFlag(name, value, &config.work_conserving, config.errors);
    } else if (name == kPriorityVariable) {
      if (value == "0" || value == "1") {
        config.task_priority = value[0] - '0';
      } else {
        config.errors.push_back(std::string(kPriorityVariable) + "=\"" + std::string(value) +
                                "\": expected 0 (high) or 1 (low)");
      }
    } else if (name == kNodeBoardVariable) {
      if (value.empty()) {
        config.errors.push_back(std::string(kNodeBoardVariable) +
                                "=\"\": is empty; expected the path of the node board file");
      } else {
        config.node_board_path = std::string(value);
      }
    }
  }
  if (!authoritative) return;
  if (disable_ignored) {
    config.notices.push_back(std::string(kDisableVariable) +
                             " in the environment is ignored: the limits "
                             "file " +
                             std::string(limits_file) + " governs this process");
  }
  // Said only when the environment asks for something else: tessera-node may set the same
  // limits in both places.
  if (limits_ignored &&
      (!ignored_errors.empty() || !SameLimits(ResolveLimits(ignored), ResolveLimits(limits)) ||
       !SameUuids(ignored, limits))) {
    config.notices.push_back(
        "the environment's " + std::string(kMemoryLimitVariable) + "/" +
        std::string(kSmLimitVariable) + "/" + std::string(kDeviceUuidVariable) +
        " variables are ignored: the limits file " + std::string(limits_file) + " sets the limits");
  }
}

// The container's devices: TESSERA_DEVICE_UUID_<i> from `values` (from `source`), else
// NVIDIA_VISIBLE_DEVICES when it lists only UUIDs (otherwise it is "all", indices, or none: no
// list).
void ResolveDevices(const LimitValues& values, std::string_view source,
                    std::optional<std::string_view> visible, Config& config) {
  int count = 0;
  while (count < region::kMaxDevices && values.uuid[count + 1]) ++count;
  for (int slot = count + 2; slot <= region::kMaxDevices; ++slot) {
    if (!values.uuid[slot]) continue;
    config.errors.push_back(DeviceVariable(kDeviceUuidVariable, slot - 1) + " (in " +
                            std::string(source) + ") is set but " +
                            DeviceVariable(kDeviceUuidVariable, count) +
                            " is not: container devices are numbered from 0 without a gap");
    return;
  }
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < i; ++j) {
      if (!region::SameDeviceUuid(*values.uuid[i + 1], *values.uuid[j + 1])) continue;
      config.errors.push_back(DeviceVariable(kDeviceUuidVariable, i) + " (in " +
                              std::string(source) + ") names " + *values.uuid[i + 1] + ", as " +
                              DeviceVariable(kDeviceUuidVariable, j) +
                              " does: a device is listed once");
      return;
    }
  }
  if (count > 0) {
    for (int i = 0; i < count; ++i) config.device_uuids.push_back(*values.uuid[i + 1]);
    config.device_uuids_source = std::string(source);
    return;
  }
  if (!visible || visible->empty()) return;
  std::vector<std::string> listed;
  std::string_view rest = *visible;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view entry = rest.substr(0, comma);
    while (!entry.empty() && IsBlank(entry.front())) entry.remove_prefix(1);
    while (!entry.empty() && IsBlank(entry.back())) entry.remove_suffix(1);
    if (!IsDeviceUuid(entry) || listed.size() == region::kMaxDevices) return;
    for (const std::string& earlier : listed) {
      if (region::SameDeviceUuid(earlier, entry)) return;
    }
    listed.emplace_back(entry);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  config.device_uuids = std::move(listed);
  config.device_uuids_source = std::string(kVisibleDevicesVariable);
}

void Finish(const LimitValues& values, Config& config) {
  config.limits = ResolveLimits(values);
  config.any_limit = false;
  for (const region::DeviceLimits& device : config.limits.devices) {
    if (device.memory_bytes != 0 || device.sm_percent != 0) config.any_limit = true;
  }
}

// `text` for an error message: at most 64 bytes, anything unprintable as '?'.
std::string Printable(std::string_view text) {
  constexpr size_t kMost = 64;
  std::string shown(text.substr(0, kMost));
  for (char& c : shown) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  if (text.size() > kMost) shown += "...";
  return shown;
}

// Makes a message quoting bytes from a file safe to print: unprintable bytes become '?', and it
// is cut at 200 bytes.
void MakePrintable(std::string& message) {
  constexpr size_t kMost = 200;
  if (message.size() > kMost) message.replace(kMost, std::string::npos, "...");
  for (char& c : message) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
}

// Parses the limits file's text into `values`; errors name the file and the line.
void ParseLimitsText(std::string_view path, std::string_view text, LimitValues& values,
                     std::vector<std::string>& errors) {
  constexpr int kMostErrors = 8;  // garbage of 64 KiB must not become thousands of messages
  int error_count = 0;
  int set_on_line[kVariableKinds][region::kMaxDevices + 1] = {};  // the line, 0 = not yet
  size_t start = 0;
  int line_number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    size_t first = 0;
    while (first < line.size() && IsBlank(line[first])) ++first;
    if (first == line.size() || line[first] == '#') continue;
    if (error_count == kMostErrors) {
      errors.push_back(std::string(path) + ": more bad lines follow; only the first " +
                       std::to_string(kMostErrors) + " are shown");
      return;
    }
    std::string where = std::string(path) + ":" + std::to_string(line_number) + ": ";
    size_t errors_before = errors.size();
    size_t equals = line.find('=');
    if (equals == std::string_view::npos) {
      errors.push_back(where + "\"" + Printable(line) + "\": expected NAME=value");
    } else {
      std::string_view name = line.substr(0, equals);
      std::string_view value = line.substr(equals + 1);
      int slot = 0;
      VariableKind kind = kSmVariable;
      switch (ParseLimitVariable(name, value, values, errors, &slot, &kind)) {
        case LimitParse::kNotALimit:
          errors.push_back(where + Printable(name) + ": only " + std::string(kMemoryLimitVariable) +
                           "[_<i>], " + std::string(kSmLimitVariable) + "[_<i>] and " +
                           std::string(kDeviceUuidVariable) + "_<i> may be set in a limits file");
          break;
        case LimitParse::kBad:
          break;
        case LimitParse::kSet: {
          int& earlier = set_on_line[kind][slot];
          if (earlier != 0) {
            errors.push_back(where + Printable(name) + ": set again (first on line " +
                             std::to_string(earlier) + ")");
          } else {
            earlier = line_number;
          }
          break;
        }
      }
    }
    // ParseLimitVariable's messages name the variable; the file and line go in front, and what
    // they quote of the line is made printable and short.
    for (size_t i = errors_before; i < errors.size(); ++i) {
      if (errors[i].rfind(where, 0) != 0) errors[i].insert(0, where);
      MakePrintable(errors[i]);
    }
    if (errors.size() > errors_before) ++error_count;
  }
}

// Reads the file `fd` (at `path`) into `text`, or says why not in `error`.
bool ReadLimitsFile(int fd, std::string_view path, std::string& text, std::string& error) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    error = "limits file " + std::string(path) + ": cannot stat: " + std::strerror(errno);
    return false;
  }
  if (!S_ISREG(info.st_mode)) {
    error = "limits file " + std::string(path) + ": is not a regular file";
    return false;
  }
  if (info.st_size > static_cast<off_t>(kMaxLimitsFileBytes)) {
    error = "limits file " + std::string(path) + ": is larger than " +
            std::to_string(kMaxLimitsFileBytes) + " bytes";
    return false;
  }
  // One byte more than the limit, to notice a file that grew since fstat.
  text.resize(kMaxLimitsFileBytes + 1);
  size_t length = 0;
  while (length < text.size()) {
    ssize_t got = ::read(fd, text.data() + length, text.size() - length);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      error = "limits file " + std::string(path) + ": cannot read: " + std::strerror(errno);
      return false;
    }
    if (got == 0) break;
    length += static_cast<size_t>(got);
  }
  if (length > kMaxLimitsFileBytes) {
    error = "limits file " + std::string(path) + ": is larger than " +
            std::to_string(kMaxLimitsFileBytes) + " bytes";
    return false;
  }
  text.resize(length);
  return true;
}

std::optional<std::string_view> Find(const std::vector<std::string_view>& environment,
                                     std::string_view name) {
  std::optional<std::string_view> found;
  for (std::string_view entry : environment) {
    if (entry.size() > name.size() && entry.substr(0, name.size()) == name &&
        entry[name.size()] == '=') {
      found = entry.substr(name.size() + 1);
    }
  }
  return found;
}

int OpenForReading(const char* path) {
  // O_NONBLOCK: a FIFO put there must not hang the process; it is refused as not regular.
  return ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

}  // namespace

Config ParseConfig(const std::vector<std::string_view>& environment) {
  Config config;
  LimitValues values;
  std::optional<std::string_view> visible;
  ParseEnvironment(environment, /*limits_file=*/{}, config, values, &visible);
  Finish(values, config);
  ResolveDevices(values, "the environment", visible, config);
  return config;
}

Config ParseConfigWithLimitsFile(const std::vector<std::string_view>& environment,
                                 std::string_view limits_path, std::string_view limits_text) {
  Config config;
  config.limits_file =
      limits_path.empty() ? std::string("(unnamed limits file)") : std::string(limits_path);
  LimitValues values;
  ParseLimitsText(config.limits_file, limits_text, values, config.errors);
  std::optional<std::string_view> visible;
  ParseEnvironment(environment, config.limits_file, config, values, &visible);
  Finish(values, config);
  ResolveDevices(values, config.limits_file, visible, config);
  return config;
}

Config ReadConfig(const std::vector<std::string_view>& environment, const char* fixed_limits_path) {
  int saved_errno = errno;  // a guest: the caller's errno is not ours to change
  std::string path = fixed_limits_path;
  std::optional<std::string_view> named = Find(environment, kLimitsFileVariable);
  std::string error;
  int fd = OpenForReading(path.c_str());
  if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
    // No fixed file: only now may the environment name one.
    if (!named) {
      errno = saved_errno;
      return ParseConfig(environment);
    }
    if (named->empty()) {
      Config config = ParseConfigWithLimitsFile(environment, "(empty TESSERA_LIMITS_FILE)", "");
      config.errors.push_back(std::string(kLimitsFileVariable) +
                              "=\"\": is empty; expected the path of a limits file");
      errno = saved_errno;
      return config;
    }
    path = std::string(*named);
    fd = OpenForReading(path.c_str());
  }
  std::string text;
  if (fd < 0) {
    error = "limits file " + path + ": cannot open: " + std::strerror(errno);
  } else {
    ReadLimitsFile(fd, path, text, error);
    ::close(fd);
  }
  Config config = ParseConfigWithLimitsFile(environment, path, error.empty() ? text : "");
  if (!error.empty()) config.errors.insert(config.errors.begin(), error);
  if (named && path == fixed_limits_path && *named != path) {
    config.notices.push_back(std::string(kLimitsFileVariable) + " is ignored: the limits file " +
                             path + " exists");
  }
  errno = saved_errno;
  return config;
}

Config ReadConfigFromEnvironment() {
  std::vector<std::string_view> entries;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    entries.emplace_back(*entry);
  }
  return ReadConfig(entries, kLimitsFilePath);
}

}  // namespace tessera::shim
