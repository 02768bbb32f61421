// tessera status: what the regions say, like nvidia-smi for shares. For a person a table, for
// scripts JSON. Reading a region also reclaims the usage of processes that died.
#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "common/json.h"
#include "common/units.h"
#include "region/region.h"

namespace tessera::cli {
namespace {

constexpr const char* kUsage =
    "usage: tessera status [REGION...] [--json]\n"
    "\n"
    "Shows, for each region (one per container or `tessera run`), each GPU's memory limit and\n"
    "use and each process's share, and each GPU's compute share over the last second next to\n"
    "its limit (COMPUTE/LIMIT). Without REGION, every *.region file in $TESSERA_REGION_DIR\n"
    "(default /tmp/tessera-<uid>). Usage of processes that died is reclaimed first, for the\n"
    "processes of this pid namespace; those of another (a container's, read from the host) are\n"
    "left as they are, their pids being that namespace's, and show \"alive\": null.\n"
    "\n"
    "options:\n"
    "  --json      one JSON object: {\"regions\": [{\"path\", \"layout_version\", \"devices\": "
    "[...],\n"
    "              \"processes\": [...]}], \"errors\": [...]}\n"
    "  -h, --help  this help\n";

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return std::to_string(
             std::lround(100.0 * static_cast<double>(part) / static_cast<double>(whole))) +
         "%";
}

struct RegionView {
  std::string path;
  region::Snapshot snapshot;
};

void PrintTable(const std::vector<RegionView>& views) {
  for (size_t r = 0; r < views.size(); ++r) {
    const RegionView& view = views[r];
    if (r > 0) std::printf("\n");
    std::printf("Region %s\n", view.path.c_str());
    std::printf("  %-4s %-42s %12s %12s %6s %14s\n", "GPU", "UUID", "USED", "LIMIT", "USE",
                "COMPUTE/LIMIT");
    // The region holds limits for 16 device indexes; those no process has bound to a GPU are
    // indexes the container has no GPU for (the shim binds every GPU it sees at start-up), so
    // they are left out.
    bool any_seen = false;
    uint64_t unseen_limit = 0;
    for (const region::DeviceUsage& device : view.snapshot.devices) {
      if (device.uuid.empty() && device.used == 0) {
        unseen_limit = std::max(unseen_limit, device.limits.memory_bytes);
        continue;
      }
      any_seen = true;
      uint64_t limit = device.limits.memory_bytes;
      // The share achieved over the last second (device time the limiter charged), next to the
      // limit; "-" when the device has no limit or was idle.
      std::string achieved = device.compute_share_permille >= 0
                                 ? std::to_string((device.compute_share_permille + 5) / 10) + "%"
                                 : "-";
      std::string compute =
          achieved + "/" +
          (device.limits.sm_percent ? std::to_string(device.limits.sm_percent) + "%" : "-");
      std::printf("  %-4d %-42s %12s %12s %6s %14s\n", device.index,
                  device.uuid.empty() ? "(not seen yet)" : device.uuid.c_str(),
                  FormatBytes(device.used).c_str(), limit ? FormatBytes(limit).c_str() : "none",
                  Percent(device.used, limit).c_str(), compute.c_str());
    }
    if (!any_seen) {
      std::printf("  (no process has opened a GPU yet%s%s)\n",
                  unseen_limit ? "; memory limit up to " : "",
                  unseen_limit ? FormatBytes(unseen_limit).c_str() : "");
    }
    std::printf("  %-8s %-16s %-4s %12s %15s\n", "PID", "COMMAND", "GPU", "MEMORY",
                "SHARE OF LIMIT");
    bool any = false;
    for (const region::ProcessUsage& process : view.snapshot.processes) {
      for (const region::DeviceUsage& device : view.snapshot.devices) {
        uint64_t used = process.used[device.index];
        if (used == 0) continue;
        any = true;
        std::printf("  %-8d %-16s %-4d %12s %15s\n", static_cast<int>(process.pid),
                    process.command.c_str(), device.index, FormatBytes(used).c_str(),
                    Percent(used, device.limits.memory_bytes).c_str());
      }
    }
    if (!any) std::printf("  (no process holds GPU memory)\n");
  }
}

// One line, so that a script can read it as one record; `| jq` shows it to a person.
void PrintJson(const std::vector<RegionView>& views, const std::vector<std::string>& errors) {
  Json regions = Json::array();
  for (const RegionView& view : views) {
    Json devices = Json::array();
    for (const region::DeviceUsage& device : view.snapshot.devices) {
      // The share achieved over the last second, in percent with one decimal; null when the
      // device has no limit or was idle.
      Json achieved = nullptr;
      if (device.compute_share_permille >= 0) achieved = device.compute_share_permille / 10.0;
      devices.push_back({{"index", device.index},
                         {"uuid", device.uuid},
                         {"memory_limit_bytes", device.limits.memory_bytes},
                         {"memory_used_bytes", device.used},
                         {"sm_limit_percent", device.limits.sm_percent},
                         {"sm_achieved_percent", std::move(achieved)},
                         {"sm_charged_ns", device.compute_charged_ns}});
    }
    Json processes = Json::array();
    for (const region::ProcessUsage& process : view.snapshot.processes) {
      Json used = Json::array();
      for (int device = 0; device < region::kMaxDevices; ++device) {
        if (process.used[device] == 0) continue;
        used.push_back({{"index", device}, {"memory_used_bytes", process.used[device]}});
      }
      // null: the process's pid is of another pid namespace (a container's, seen from the host),
      // so this reader cannot tell; its charges are then left as they are.
      Json alive = nullptr;
      if (process.liveness != region::Liveness::kUnknown) {
        alive = process.liveness == region::Liveness::kAlive;
      }
      // The pid NVML and the node know it by (null: not known yet).
      Json driver_pid = nullptr;
      if (process.driver_pid != 0) driver_pid = process.driver_pid;
      processes.push_back({{"pid", static_cast<int>(process.pid)},
                           {"pid_namespace", process.pid_namespace},
                           {"driver_pid", std::move(driver_pid)},
                           {"command", process.command},
                           {"alive", std::move(alive)},
                           {"devices", std::move(used)}});
    }
    regions.push_back({{"path", view.path},
                       {"layout_version", view.snapshot.layout_version},
                       {"devices", std::move(devices)},
                       {"processes", std::move(processes)}});
  }
  const Json out = {{"regions", std::move(regions)}, {"errors", errors}};
  std::printf("%s\n", WriteJson(out, JsonLayout::kOneLine).c_str());
}

std::vector<std::string> RegionsIn(const std::string& directory) {
  std::vector<std::string> paths;
  DIR* listing = opendir(directory.c_str());
  if (listing == nullptr) return paths;
  while (dirent* entry = readdir(listing)) {
    std::string name = entry->d_name;
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".region") == 0) {
      paths.push_back(directory + "/" + name);
    }
  }
  closedir(listing);
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace

int StatusCommand(int argc, char** argv) {
  bool json = false;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument == "--json") {
      json = true;
    } else if (argument == "-h" || argument == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!argument.empty() && argument[0] == '-') {
      std::fprintf(stderr, "tessera status: unknown option \"%s\"\n\n%s", argument.c_str(), kUsage);
      return 2;
    } else {
      paths.push_back(argument);
    }
  }
  bool searched = paths.empty();
  if (searched) paths = RegionsIn(DefaultRegionDirectory());

  std::vector<RegionView> views;
  std::vector<std::string> errors;
  for (const std::string& path : paths) {
    auto region = region::Region::Open(path, nullptr);
    if (!region.ok()) {
      errors.push_back(region.status().message());
      continue;
    }
    Result<int> reaped = (*region)->Reap(/*force=*/true);
    Result<region::Snapshot> snapshot =
        reaped.ok() ? (*region)->TakeSnapshot() : Result<region::Snapshot>(reaped.status());
    if (!snapshot.ok()) {
      errors.push_back(snapshot.status().message());
      continue;
    }
    views.push_back({path, std::move(snapshot).value()});
  }
  if (json) {
    PrintJson(views, errors);
  } else {
    for (const std::string& error : errors) {
      std::fprintf(stderr, "tessera status: %s\n", error.c_str());
    }
    if (views.empty() && errors.empty()) {
      std::printf("No Tessera regions in %s (start one with `tessera run`).\n",
                  DefaultRegionDirectory().c_str());
    }
    PrintTable(views);
  }
  return errors.empty() ? 0 : 1;
}

}  // namespace tessera::cli
