#!/usr/bin/python3
"""Pod start-up on the local cluster: the time from creation to Running of N pods created at once
that ask for GPUs (whole, time-sliced and MIG, through tessera-node), against N that ask only for
CPU, in one run on one cluster. What matters is the ratio: the same kubelets, runtime and machine
start both sets, so the difference is what the device plugin path adds.

Run on a cluster started from bench/cluster/startup-cluster.yaml:
  make cluster CLUSTER=bench/cluster/startup-cluster.yaml
  /usr/bin/python3 bench/cluster/pod_startup.py [--pods 100] [--rounds 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = os.path.join(REPO, "build", "cluster", "state.json")


def kubectl(state, *args, stdin=None):
    return subprocess.run([state["kubectl"], "--kubeconfig", state["kubeconfig"], *args],
                          input=stdin, capture_output=True, text=True, check=True).stdout


def manifests(namespace, prefix, requests):
    docs = []
    for i, (node, resource) in enumerate(requests):
        limits = f"\n    resources: {{limits: {{{resource}: 1}}}}" if resource else ""
        selector = f"\n  nodeSelector: {{kubernetes.io/hostname: {node}}}" if node else ""
        docs.append(f"""apiVersion: v1
kind: Pod
metadata: {{name: {prefix}-{i}, namespace: {namespace}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1{selector}
  containers:
  - name: main
    image: bench
    command: ["sleep", "600"]{limits}
""")
    return "---\n".join(docs)


def start_times(state, namespace, names, deadline_s=600):
    """Seconds from now until each pod was first seen Running (polled every 100 ms)."""
    begin = time.monotonic()
    running = {}
    while len(running) < len(names):
        if time.monotonic() - begin > deadline_s:
            raise SystemExit(f"pod_startup: only {len(running)}/{len(names)} pods Running after {deadline_s} s")
        pods = json.loads(kubectl(state, "get", "pods", "-n", namespace, "-o", "json"))["items"]
        now = time.monotonic() - begin
        for pod in pods:
            name = pod["metadata"]["name"]
            if name in names and name not in running and pod["status"].get("phase") == "Running":
                running[name] = now
        time.sleep(0.1)
    return sorted(running.values())


def percentile(values, q):
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def run_set(state, namespace, prefix, requests):
    text = manifests(namespace, prefix, requests)
    names = {f"{prefix}-{i}" for i in range(len(requests))}
    begin = time.monotonic()
    kubectl(state, "apply", "-f", "-", stdin=text)
    created = time.monotonic() - begin
    times = [t + 0 for t in start_times(state, namespace, names)]
    kubectl(state, "delete", "pods", "-n", namespace, "--all", "--grace-period=1", "--wait=true")
    return created, times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100, help="pods per set (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (GPU set, CPU set), alternating")
    args = parser.parse_args()
    with open(STATE) as f:
        state = json.load(f)
    # 16 whole GPUs, 56 time-sliced replicas, 28 MIG instances = 100 (the benchmark cluster's).
    gpu = ([("gpu-whole", "nvidia.com/gpu")] * 16 + [("gpu-sliced", "nvidia.com/gpu.shared")] * 56 +
           [("gpu-mig", "nvidia.com/mig-1g.10gb")] * 28)
    scale = args.pods / len(gpu)
    gpu = gpu[:args.pods] if scale <= 1 else sys.exit("pod_startup: at most 100 GPU pods fit the benchmark cluster")
    nodes = [n for n, _ in gpu]
    cpu = [(node, None) for node in nodes]  # the same nodes, no device
    namespace = f"bench-startup-{os.getpid()}"
    kubectl(state, "create", "namespace", namespace)
    results = {"gpu": [], "cpu": []}
    try:
        for round_ in range(args.rounds):
            for kind, requests in (("gpu", gpu), ("cpu", cpu)) if round_ % 2 == 0 else (("cpu", cpu), ("gpu", gpu)):
                created, times = run_set(state, namespace, f"{kind}{round_}", requests)
                results[kind].append(times)
                print(f"round {round_} {kind}: {len(times)} pods, apply {created:.1f} s, "
                      f"p50 {percentile(times, 0.5):.1f} s, p99 {percentile(times, 0.99):.1f} s, "
                      f"all Running {times[-1]:.1f} s", flush=True)
    finally:
        kubectl(state, "delete", "namespace", namespace, "--wait=false")
    summary = {}
    for kind in ("gpu", "cpu"):
        merged = sorted(t for times in results[kind] for t in times)
        last = sum(times[-1] for times in results[kind]) / len(results[kind])
        summary[kind] = (percentile(merged, 0.5), percentile(merged, 0.99), last)
    g, c = summary["gpu"], summary["cpu"]
    print(f"GPU pods: p50 {g[0]:.1f} s  p99 {g[1]:.1f} s  all Running (mean of rounds) {g[2]:.1f} s")
    print(f"CPU pods: p50 {c[0]:.1f} s  p99 {c[1]:.1f} s  all Running (mean of rounds) {c[2]:.1f} s")
    print(f"GPU / CPU: p50 {g[0] / c[0]:.2f}x  p99 {g[1] / c[1]:.2f}x  all Running {g[2] / c[2]:.2f}x")


if __name__ == "__main__":
    main()
