// `tessera sim replay`: parses the flags, reads the cluster and pods files, replays, prints.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "placement/policy.h"
#include "sim/replay/replay.h"
#include "sim/sim_command.h"

namespace tessera::sim {

int RunReplayCommand(int argc, char** argv) {
  std::string cluster_path;
  std::string pods_path;
  scheduler::StateOptions options;  // tessera-scheduler's defaults
  bool json = false;

  CLI::App app{
      "Places pods, in arrival order, with tessera-scheduler's own webhook, /filter and\n"
      "/bind, on the nodes of a cluster file as tessera-node publishes them, and prints\n"
      "where each pod went: node, GPU index and UUID, memory limit (MiB) and compute share\n"
      "(%). The same sequence, created one pod at a time in that cluster (`make cluster`),\n"
      "is placed the same (docs/placement.md).",
      "tessera sim replay"};
  app.add_option("--cluster", cluster_path,
                 "cluster file, as deploy/dev-cluster/cluster.yaml (nodes and their GPUs)")
      ->required();
  app.add_option("--pods", pods_path,
                 "YAML or JSON: a list of Pod manifests in arrival order, a List, or Pod "
                 "documents separated by ---")
      ->required();
  app.add_option("--policy", options.policy,
                 "tessera-scheduler's --policy, for pods that name none")
      ->capture_default_str()
      ->check(CLI::IsMember(placement::PolicyNames()));
  app.add_option("--seed", options.seed, "tessera-scheduler's --seed: the policy's tie-break seed")
      ->capture_default_str();
  app.add_flag("--json", json, "one JSON object: {\"pods\":[{\"name\",\"node\",\"gpus\":[...]}]}");
  app.footer(
      "A pod that fits nowhere is reported pending and not tried again; pods never leave.\n"
      "example: tessera sim replay --cluster deploy/dev-cluster/cluster.yaml --pods pods.yaml");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;  // --help, or bad usage (said on stderr)
  }

  Result<std::vector<replay::ClusterNode>> nodes = replay::LoadClusterFile(cluster_path);
  if (!nodes.ok()) {
    std::fprintf(stderr, "tessera sim replay: %s\n", nodes.status().message().c_str());
    return 1;
  }
  Result<std::vector<nlohmann::json>> pods = replay::LoadPods(pods_path);
  if (!pods.ok()) {
    std::fprintf(stderr, "tessera sim replay: %s\n", pods.status().message().c_str());
    return 1;
  }
  const std::vector<replay::PodPlacement> placements = replay::Replay(*nodes, *pods, options);
  const std::string text = json ? replay::FormatJson(placements) : replay::FormatTable(placements);
  std::fputs(text.c_str(), stdout);
  return 0;
}

}  // namespace tessera::sim
