#include "fakegpu/config.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include "common/units.h"
#include "cuda/footprint.h"

namespace tessera::fakegpu {
namespace {

constexpr size_t kMaxNameLength = 95;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE less the NUL
constexpr uint64_t kMaxMemoryBytes = 1ull << 50;
constexpr std::string_view kKeys =
    "name, memory, sms, uuid, context_memory, numa, mig or process_memory";
constexpr unsigned kMaxNumaNode = 63;

// splitmix64: a fixed, well-mixed function of the index, so default UUIDs look like real ones.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ParseUuid(std::string_view text, std::array<unsigned char, 16>* uuid) {
  constexpr std::string_view kPrefix = "GPU-";
  if (text.size() != kPrefix.size() + 36 || text.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view hex = text.substr(kPrefix.size());
  size_t byte = 0;
  for (size_t i = 0; i < hex.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (hex[i] != '-') return false;
      ++i;
      continue;
    }
    int high = HexValue(hex[i]);
    int low = i + 1 < hex.size() ? HexValue(hex[i + 1]) : -1;
    if (high < 0 || low < 0) return false;
    (*uuid)[byte++] = static_cast<unsigned char>(high * 16 + low);
    i += 2;
  }
  return byte == 16;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// One line's text without its comment, or an error about an unterminated quote.
class LineParser {
 public:
  LineParser(std::string_view line, std::string prefix) : line_(line), prefix_(std::move(prefix)) {}

  Status Error(const std::string& what) const { return Status::Error(prefix_ + what); }

  void SkipSpace() {
    while (position_ < line_.size() && IsSpace(line_[position_])) ++position_;
  }
  bool AtEnd() {
    SkipSpace();
    return position_ >= line_.size() || line_[position_] == '#';
  }
  // A run of characters up to whitespace, '=' or '#'.
  std::string_view Word() {
    size_t start = position_;
    while (position_ < line_.size() && !IsSpace(line_[position_]) && line_[position_] != '=' &&
           line_[position_] != '#') {
      ++position_;
    }
    return line_.substr(start, position_ - start);
  }
  bool Consume(char c) {
    if (position_ < line_.size() && line_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }
  // A value: "quoted text" (no escapes) or a bare word.
  Result<std::string_view> Value(std::string_view key) {
    if (!Consume('"')) return Word();
    size_t close = line_.find('"', position_);
    if (close == std::string_view::npos) {
      return Error(std::string(key) + " has an opening quote but no closing quote");
    }
    std::string_view value = line_.substr(position_, close - position_);
    position_ = close + 1;
    return value;
  }
  bool AtSeparator() const {
    return position_ >= line_.size() || IsSpace(line_[position_]) || line_[position_] == '#';
  }

 private:
  std::string_view line_;
  std::string prefix_;
  size_t position_ = 0;
};

// `mig` is kept as text until the whole line is read: the instances depend on memory, sms and uuid.
Status ApplyKey(LineParser& parser, std::string_view key, std::string_view value,
                DeviceSpec* device, std::optional<std::string>* mig) {
  if (key == "name") {
    if (value.empty()) return parser.Error("name is empty");
    if (value.size() > kMaxNameLength) {
      return parser.Error("name is " + std::to_string(value.size()) + " characters long; at most " +
                          std::to_string(kMaxNameLength) + " fit NVML's name buffer");
    }
    for (char c : value) {
      if (c < 0x20 || c > 0x7e) return parser.Error("name has a character that is not printable");
    }
    device->name = std::string(value);
    return Status::Ok();
  }
  if (key == "memory") {
    Result<uint64_t> bytes = ParseBytes(value, "memory");
    if (!bytes.ok()) return parser.Error(bytes.status().message());
    if (*bytes < cuda::kAllocationGranule || *bytes > kMaxMemoryBytes) {
      return parser.Error("memory=" + std::string(value) +
                          " is out of range; expected 2MiB to 1024TiB");
    }
    device->memory_bytes = *bytes;
    return Status::Ok();
  }
  if (key == "sms") {
    Result<uint64_t> count = ParseUnsigned(value, "sms", 1, 4096);
    if (!count.ok()) return parser.Error(count.status().message());
    device->multiprocessors = static_cast<unsigned>(*count);
    return Status::Ok();
  }
  if (key == "uuid") {
    if (!ParseUuid(value, &device->uuid)) {
      return parser.Error("uuid=" + std::string(value) +
                          " is not a GPU UUID; expected GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx "
                          "with hexadecimal digits");
    }
    return Status::Ok();
  }
  if (key == "context_memory") {
    Result<uint64_t> bytes = ParseBytes(value, "context_memory");
    if (!bytes.ok()) return parser.Error(bytes.status().message());
    device->context_memory_bytes = *bytes;
    return Status::Ok();
  }
  if (key == "numa") {
    Result<uint64_t> node = ParseUnsigned(value, "numa", 0, kMaxNumaNode);
    if (!node.ok()) return parser.Error(node.status().message());
    device->numa_node = static_cast<unsigned>(*node);
    return Status::Ok();
  }
  if (key == "mig") {
    *mig = std::string(value);
    return Status::Ok();
  }
  if (key == "process_memory") {
    if (value != "available" && value != "unavailable") {
      return parser.Error("process_memory=" + std::string(value) +
                          " is not available or unavailable");
    }
    device->process_memory_available = value == "available";
    return Status::Ok();
  }
  return parser.Error("unknown key \"" + std::string(key) + "\"; expected " + std::string(kKeys));
}

Result<DeviceSpec> ParseDeviceLine(LineParser& parser, int index) {
  DeviceSpec device;
  device.uuid = DefaultUuid(index);
  std::string seen;
  std::optional<std::string> mig;
  while (!parser.AtEnd()) {
    std::string_view key = parser.Word();
    if (key.empty() || !parser.Consume('=')) {
      return parser.Error("expected key=value after \"device\", e.g. memory=80GiB; keys are " +
                          std::string(kKeys));
    }
    if (seen.find("," + std::string(key) + ",") != std::string::npos) {
      return parser.Error(std::string(key) + " is given twice");
    }
    seen += "," + std::string(key) + ",";
    Result<std::string_view> value = parser.Value(key);
    if (!value.ok()) return value.status();
    if (!parser.AtSeparator()) {
      return parser.Error(std::string(key) +
                          " has text right after its value; separate "
                          "key=value pairs with spaces");
    }
    Status applied = ApplyKey(parser, key, *value, &device, &mig);
    if (!applied.ok()) return applied;
  }
  if (device.context_memory_bytes > device.memory_bytes) {
    return parser.Error("context_memory is larger than the device's memory");
  }
  if (mig.has_value()) {
    Result<std::vector<MigInstance>> instances =
        PlaceMigInstances(*mig, device.memory_bytes, device.multiprocessors, device.uuid);
    if (!instances.ok()) return parser.Error(instances.status().message());
    for (const MigInstance& instance : *instances) {
      std::string name = MigDeviceName(device.name, *instance.profile);
      if (name.size() > kMaxNameLength) {
        return parser.Error("name is too long for MIG: its MIG devices' names (\"" + name +
                            "\") must fit NVML's name buffer, at most " +
                            std::to_string(kMaxNameLength) + " characters");
      }
    }
    device.mig = std::move(instances).value();
  }
  return device;
}

}  // namespace

std::array<unsigned char, 16> DefaultUuid(int index) {
  std::array<unsigned char, 16> uuid{};
  uint64_t high = Mix(static_cast<uint64_t>(index) * 2 + 0x7e55e7a);
  uint64_t low = Mix(static_cast<uint64_t>(index) * 2 + 1 + 0x7e55e7a);
  for (int i = 0; i < 8; ++i) {
    uuid[i] = static_cast<unsigned char>(high >> (56 - 8 * i));
    uuid[8 + i] = static_cast<unsigned char>(low >> (56 - 8 * i));
  }
  return uuid;
}

std::string FormatUuid(const std::array<unsigned char, 16>& uuid) {
  std::string text = "GPU-";
  constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < uuid.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += kHex[uuid[i] >> 4];
    text += kHex[uuid[i] & 0xf];
  }
  return text;
}

std::vector<DeviceSpec> DefaultDevices() {
  std::vector<DeviceSpec> devices(2);
  for (int i = 0; i < 2; ++i) devices[i].uuid = DefaultUuid(i);
  return devices;
}

Result<NodeSpec> ParseNodeConfig(std::string_view text, std::string_view source) {
  NodeSpec node;
  bool driver_seen = false;
  std::vector<DeviceSpec>& devices = node.devices;
  size_t line_start = 0;
  for (int line_number = 1; line_start <= text.size(); ++line_number) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;

    std::string prefix = std::string(source) + ":" + std::to_string(line_number) + ": ";
    LineParser parser(line, prefix);
    if (parser.AtEnd()) continue;
    std::string_view keyword = parser.Word();
    if (keyword == "driver") {
      if (driver_seen) return parser.Error("a second driver line; give the version once");
      driver_seen = true;
      const std::string expected = "expected driver version=<" +
                                   std::to_string(kOldestDriverVersion) + " to " +
                                   std::to_string(kNewestDriverVersion) + ">, e.g. version=12020";
      if (!parser.AtSeparator() || parser.AtEnd() || parser.Word() != "version" ||
          !parser.Consume('=')) {
        return parser.Error(expected);
      }
      std::string_view value = parser.Word();
      Result<uint64_t> version =
          ParseUnsigned(value, "driver version", kOldestDriverVersion, kNewestDriverVersion);
      if (!version.ok()) return parser.Error(version.status().message());
      if (!parser.AtEnd()) return parser.Error(expected + "; nothing after it");
      node.driver_version = static_cast<int>(*version);
      continue;
    }
    if (keyword != "device") {
      return parser.Error("expected a line starting with \"device\" or \"driver\", found \"" +
                          std::string(keyword.substr(0, 32)) + "\"");
    }
    if (!parser.AtSeparator()) {
      return parser.Error("expected a space after \"device\"");
    }
    if (devices.size() == kMaxDevices) {
      return parser.Error("more than " + std::to_string(kMaxDevices) + " devices");
    }
    Result<DeviceSpec> device = ParseDeviceLine(parser, static_cast<int>(devices.size()));
    if (!device.ok()) return device.status();
    for (size_t i = 0; i < devices.size(); ++i) {
      if (devices[i].uuid == device->uuid) {
        return parser.Error("uuid " + FormatUuid(device->uuid) + " is also device " +
                            std::to_string(i) + "'s");
      }
    }
    devices.push_back(std::move(device).value());
  }
  return node;
}

Result<std::vector<DeviceSpec>> ParseDeviceConfig(std::string_view text, std::string_view source) {
  Result<NodeSpec> node = ParseNodeConfig(text, source);
  if (!node.ok()) return node.status();
  return std::move(node->devices);
}

Result<NodeSpec> LoadNodeConfig() {
  const char* path = std::getenv("TESSERA_FAKEGPU_CONFIG");
  if (path == nullptr || *path == '\0') return NodeSpec{DefaultDevices(), kNewestDriverVersion};
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return Status::Error(std::string("TESSERA_FAKEGPU_CONFIG=") + path +
                         ": cannot open: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << file.rdbuf();
  return ParseNodeConfig(text.str(), path);
}

Result<std::vector<DeviceSpec>> LoadDeviceConfig() {
  Result<NodeSpec> node = LoadNodeConfig();
  if (!node.ok()) return node.status();
  return std::move(node->devices);
}

int ConfiguredDriverVersion() {
  // cuGetProcAddress asks before cuInit, once per entry point: the file is read once per path.
  static std::mutex mutex;
  static std::string read_path;
  static int read_version = 0;
  const char* variable = std::getenv("TESSERA_FAKEGPU_CONFIG");
  const std::string path = variable != nullptr ? variable : "";
  std::lock_guard<std::mutex> lock(mutex);
  if (read_version == 0 || path != read_path) {
    Result<NodeSpec> node = LoadNodeConfig();
    read_path = path;
    read_version = node.ok() ? node->driver_version : kNewestDriverVersion;
  }
  return read_version;
}

}  // namespace tessera::fakegpu
