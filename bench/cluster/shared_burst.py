#!/usr/bin/python3
"""A burst of fractional-GPU pods on the local cluster, through tessera-scheduler and tessera-node.

N pods, each asking for one GPU with a random `nvidia.com/gpumem` (1-12 GiB) and
`nvidia.com/gpucores` (0-15), are created at once against the shared GPUs of `make cluster`
(gpu-shared-0 and gpu-shared-1: 2 nodes x 8 GPUs of 80 GiB). Each pod runs tessera-gpu-report
and then sleeps. The same N pods without GPU resources are then created on the same two nodes
under the plain kube-scheduler. The script checks and reports:

  - every GPU pod's CUDA program saw exactly its own limit (cuMemGetInfo total = gpumem);
  - the sum of limits on each GPU never went past its memory, from tessera-node's side (the
    agents' tessera_gpu_memory_limit_sum_peak_bytes, a high-water mark, so nothing is missed
    between samples), and the pods' tessera.io/allocation agree with it;
  - no bind timed out and no pod was refused at PreStart (the pods' events);
  - the time from the first creation until all are Running, GPU pods against CPU pods, as a ratio;
  - tessera-scheduler's extender latency per call (p50/p99 from its histogram, estimated within
    the bucket).

With --kills K, the tessera-scheduler leader is SIGKILLed K times while the GPU pods are being
placed; each time the script measures how long the standby takes to serve (Lease takeover),
then starts the killed replica again as the new standby. Every pod must still end Running with
no GPU over-committed.

  make cluster
  /usr/bin/python3 bench/cluster/shared_burst.py [--pods 160] [--kills 0] [--seed 42]

Exits 1, saying why, when any check fails.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_NODES = ("gpu-shared-0", "gpu-shared-1")
MIB = 1 << 20


class Failure(Exception):
    pass


def kubectl(state, *args, stdin=None, check=True):
    result = subprocess.run([state["kubectl"], "--kubeconfig", state["kubeconfig"], *args],
                            input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise Failure(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()}")
    return result.stdout


def http_get(address, path, timeout=2):
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except OSError:
        return 0, ""


def samples(text, family):
    """{labels text: value} of one metric family in Prometheus text."""
    found = {}
    for line in text.splitlines():
        match = re.match(rf"^{family}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def label(labels, name):
    match = re.search(rf'{name}="([^"]*)"', labels)
    return match.group(1) if match else ""


# ---- The pods -------------------------------------------------------------------------------

def gpu_requests(count, seed):
    rng = random.Random(seed)
    return [(rng.randint(1, 12) * 1024, rng.randint(0, 15)) for _ in range(count)]


def gpu_pod(namespace, name, memory_mib, cores, report):
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: bench
    command: ["/bin/sh", "-c", "{report}; exec sleep 3600"]
    resources: {{limits: {{nvidia.com/gpu: 1, nvidia.com/gpumem: {memory_mib}, nvidia.com/gpucores: {cores}}}}}
"""


def cpu_pod(namespace, name):
    nodes = ", ".join(SHARED_NODES)
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{nodes}]}}]
  containers:
  - name: main
    image: bench
    command: ["/bin/sh", "-c", "exec sleep 3600"]
"""


class RunningWatch:
    """One `kubectl get pods -w` for the namespace: when each pod was first seen bound to a node
    and Running (time.monotonic())."""

    def __init__(self, state, namespace):
        self.first_running = {}
        self.first_bound = {}
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [state["kubectl"], "--kubeconfig", state["kubeconfig"], "get", "pods", "-n", namespace,
             "-w", "-o", "jsonpath={.metadata.name} {.status.phase} {.spec.nodeName}{\"\\n\"}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.begin = time.monotonic()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            words = line.split()
            with self.lock:
                if len(words) == 3:
                    self.first_bound.setdefault(words[0], time.monotonic())
                if len(words) >= 2 and words[1] == "Running":
                    self.first_running.setdefault(words[0], time.monotonic())

    def times(self, names):
        with self.lock:
            return {n: t for n, t in self.first_running.items() if n in names}

    def bound(self, names):
        with self.lock:
            return {n: t for n, t in self.first_bound.items() if n in names}

    def stop(self):
        self.process.kill()
        self.process.wait()


def create_all(state, manifests, writers=4):
    """Creates the pods at once: `writers` kubectl processes in parallel, as several clients
    would (one kubectl creates its objects one after another)."""
    errors = []

    def create(part):
        try:
            kubectl(state, "create", "-f", "-", stdin="---\n".join(part))
        except Failure as error:
            errors.append(str(error))
    threads = [threading.Thread(target=create, args=(manifests[i::writers],)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise Failure(errors[0])


def run_set(state, namespace, names, manifests, deadline_s, during=None):
    """Creates the pods at once and waits until all are Running; seconds from the creation until
    each was Running and until each was bound, both sorted, and the seconds the creation took. `during` runs in a thread while the set starts (the scheduler kills)."""
    watch = RunningWatch(state, namespace)
    try:
        # The watch is open before the first pod exists: nothing is missed.
        time.sleep(0.5)
        begin = time.monotonic()
        worker = None
        if during:
            worker = threading.Thread(target=during, daemon=True)
            worker.start()
        create_all(state, manifests)
        created = time.monotonic() - begin
        end = begin + deadline_s
        while True:
            seen = watch.times(names)
            if len(seen) == len(names):
                break
            if time.monotonic() > end:
                raise Failure(f"only {len(seen)}/{len(names)} pods Running after {deadline_s} s; the others:\n"
                              + why_not_running(state, namespace, sorted(set(names) - set(seen))))
            time.sleep(0.2)
        if worker:
            worker.join()
        bound = watch.bound(names)
        return (sorted(t - begin for t in seen.values()),
                sorted(t - begin for t in bound.values()), created)
    finally:
        watch.stop()


def why_not_running(state, namespace, names, most=10):
    """Each pod's phase and its last event, for the first `most` of `names`."""
    events = json.loads(kubectl(state, "get", "events", "-n", namespace, "-o", "json"))["items"]
    last = {}
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or ""):
        last[event["involvedObject"].get("name")] = f"{event.get('reason')}: {event.get('message')}"
    lines = []
    for name in names[:most]:
        pod = json.loads(kubectl(state, "get", "pod", "-n", namespace, name, "-o", "json"))
        lines.append(f"  {name} ({pod['status'].get('phase')}): {last.get(name, 'no event')}")
    return "\n".join(lines)


# ---- Checks ---------------------------------------------------------------------------------

def check_limits_seen(state, namespace, names, requests):
    """Each GPU pod's program printed `memory_mib=<its gpumem>` for its one CUDA device."""
    wrong = []
    for name, (memory_mib, _) in zip(names, requests):
        logs = kubectl(state, "logs", "-n", namespace, name, check=False)
        devices = [line for line in logs.splitlines() if line.startswith("cuda ") and "uuid=" in line]
        if len(devices) != 1 or f"memory_mib={memory_mib} " not in devices[0]:
            wrong.append(f"{name} (gpumem {memory_mib}): {logs.strip()[:300]}")
    if wrong:
        raise Failure(f"{len(wrong)} pods did not see exactly their limit:\n" + "\n".join(wrong[:10]))


def gpu_memory(state):
    """{uuid: bytes} of the shared nodes' GPUs (from the cluster's state)."""
    memory = {}
    for node in state["nodes"]:
        if node["name"] in SHARED_NODES:
            for gpu in node["gpus"]:
                memory[gpu["uuid"]] = gpu["memory_bytes"]
    return memory


def check_no_overcommit(state, namespace, memory):
    """From tessera-node's side (peak sums) and from the pods' allocations: no GPU over its
    memory. Returns the highest fill of any GPU, 0-1."""
    peaks = {}
    for node in state["nodes"]:
        if node["name"] not in SHARED_NODES:
            continue
        status, text = http_get(node["metrics_address"], "/metrics")
        if status != 200:
            raise Failure(f"tessera-node on {node['name']}: no metrics at {node['metrics_address']}")
        for labels, value in samples(text, "tessera_gpu_memory_limit_sum_peak_bytes").items():
            peaks[label(labels, "device_uuid")] = value
    if set(peaks) != set(memory):
        raise Failure(f"the agents report peak sums for {sorted(peaks)}, the cluster has {sorted(memory)}")
    over = [f"{uuid}: peak {peaks[uuid] / MIB:.0f} MiB > {memory[uuid] / MIB:.0f} MiB"
            for uuid in memory if peaks[uuid] > memory[uuid]]
    pods = json.loads(kubectl(state, "get", "pods", "-n", namespace, "-o", "json"))["items"]
    allocated = {uuid: 0 for uuid in memory}
    for pod in pods:
        text = pod["metadata"].get("annotations", {}).get("tessera.io/allocation")
        if not text:
            continue
        decision = json.loads(text)
        if decision["node"] != pod["spec"].get("nodeName"):
            over.append(f"{pod['metadata']['name']}: allocated on {decision['node']}, bound to "
                        f"{pod['spec'].get('nodeName')}")
        for container in decision["containers"]:
            for gpu in container["gpus"]:
                allocated[gpu["uuid"]] = allocated.get(gpu["uuid"], 0) + gpu["memoryMiB"] * MIB
    over += [f"{uuid}: pods' allocations {allocated[uuid] / MIB:.0f} MiB > {memory[uuid] / MIB:.0f} MiB"
             for uuid in memory if allocated.get(uuid, 0) > memory[uuid]]
    if over:
        raise Failure("GPUs over-committed:\n" + "\n".join(over))
    return max(peaks[u] / memory[u] for u in memory), sum(allocated.values())


def check_events(state, namespace):
    """No bind timeout and no refused PreStart in the namespace's events; the FailedScheduling
    events counted (the scheduler kills cause some)."""
    events = json.loads(kubectl(state, "get", "events", "-n", namespace, "-o", "json"))["items"]
    bad, failed_scheduling = [], 0
    for event in events:
        message = event.get("message", "")
        if event.get("reason") == "FailedScheduling":
            failed_scheduling += event.get("count", 1)
        if "timeout" in message.lower() or "timed out" in message.lower() or "PreStart" in message:
            bad.append(f"{event['involvedObject'].get('name')}: {event.get('reason')}: {message}")
    if bad:
        raise Failure("bind timeouts or refused containers:\n" + "\n".join(bad[:10]))
    return failed_scheduling


def histogram_quantiles(text, verb):
    """(count, p50, p99) in seconds of tessera-scheduler's extender calls for `verb`, by linear
    interpolation inside the Prometheus bucket."""
    buckets = []
    for labels, value in samples(text, "tessera_scheduler_extender_call_seconds_bucket").items():
        if label(labels, "verb") == verb:
            le = label(labels, "le")
            buckets.append((float("inf") if le == "+Inf" else float(le), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return 0, 0.0, 0.0
    total = buckets[-1][1]

    def quantile(q):
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                if upper == float("inf"):
                    return lower
                return lower + (upper - lower) * (rank - below) / max(count - below, 1)
            lower, below = upper, count
        return lower
    return int(total), quantile(0.5), quantile(0.99)


# ---- Scheduler kills ------------------------------------------------------------------------

def scheduler_tool(state, *args):
    build_dir = os.path.dirname(os.path.normpath(state["state_dir"]))
    result = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "scripts", "cluster", "cluster.py"),
                             "--build-dir", build_dir, *args],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f"cluster.py {' '.join(args)}: {result.stderr.strip()}")


def leader(state):
    """Index of the replica that says it leads and serves (/readyz 200), or None."""
    for i, replica in enumerate(state["tessera_schedulers"]):
        if not replica:
            continue
        status, text = http_get(replica["metrics_address"], "/metrics", timeout=1)
        if status == 200 and samples(text, "tessera_scheduler_leader").get("", 0) == 1:
            if http_get(replica["metrics_address"], "/readyz", timeout=1)[0] == 200:
                return i
    return None


def kill_leaders(state, kills, takeovers, errors, serve_s=3.0, deadline_s=60):
    """SIGKILLs the leader `kills` times; appends each standby's takeover time (seconds)."""
    try:
        for _ in range(kills):
            end = time.monotonic() + deadline_s
            while (current := leader(state)) is None:
                if time.monotonic() > end:
                    raise Failure(f"no tessera-scheduler leader within {deadline_s} s")
                time.sleep(0.1)
            time.sleep(serve_s)  # let it place some pods
            scheduler_tool(state, "kill-scheduler", str(current))
            killed = time.monotonic()
            other = 1 - current
            while leader(state) != other:
                if time.monotonic() - killed > deadline_s:
                    raise Failure(f"tessera-scheduler {other} did not take over within {deadline_s} s")
                time.sleep(0.05)
            takeovers.append(time.monotonic() - killed)
            scheduler_tool(state, "start-scheduler", str(current))
    except Failure as error:
        errors.append(str(error))


# ---- Main -----------------------------------------------------------------------------------

def percentile(values, q):
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=160, help="pods per set (default 160)")
    parser.add_argument("--kills", type=int, default=0,
                        help="SIGKILL the tessera-scheduler leader this many times during the GPU set")
    parser.add_argument("--seed", type=int, default=42, help="seed of the random requests (default 42)")
    parser.add_argument("--no-cpu", action="store_true", help="skip the set without GPU resources")
    parser.add_argument("--deadline", type=int, default=900, help="seconds for a set to be Running")
    parser.add_argument("--state", default=os.path.join(REPO, "build", "cluster", "state.json"),
                        help="the cluster's state.json (default build/cluster/state.json)")
    parser.add_argument("--report", default=os.path.join(REPO, "build", "bin", "tessera-gpu-report"),
                        help="the CUDA program the pods run (default build/bin/tessera-gpu-report)")
    args = parser.parse_args()
    if args.pods < 1 or args.kills < 0:
        parser.error("--pods must be at least 1 and --kills at least 0")
    try:
        with open(args.state) as f:
            state = json.load(f)
    except OSError as error:
        sys.exit(f"shared_burst: no running cluster ({error}); start one with `make cluster`")
    report = args.report
    memory = gpu_memory(state)
    if len(memory) != 16:
        sys.exit(f"shared_burst: expected 16 shared GPUs on {', '.join(SHARED_NODES)}, found {len(memory)}")
    requests = gpu_requests(args.pods, args.seed)
    namespace = f"bench-burst-{os.getpid()}"
    kubectl(state, "create", "namespace", namespace)
    try:
        gpu_names = [f"gpu-{i}" for i in range(args.pods)]
        takeovers, errors = [], []
        during = (lambda: kill_leaders(state, args.kills, takeovers, errors)) if args.kills else None
        gpu_times, gpu_bound, gpu_created = run_set(state, namespace, set(gpu_names),
                            [gpu_pod(namespace, n, m, c, report) for n, (m, c) in zip(gpu_names, requests)],
                            args.deadline, during)
        if errors:
            raise Failure(errors[0])
        check_limits_seen(state, namespace, gpu_names, requests)
        fill, allocated = check_no_overcommit(state, namespace, memory)
        failed_scheduling = check_events(state, namespace)
        print(f"GPU set: {args.pods} pods, {allocated / MIB / 1024:.0f} GiB asked on 16 GPUs of 80 GiB; "
              f"created in {gpu_created:.1f} s, all bound {gpu_bound[-1]:.1f} s, all Running {gpu_times[-1]:.1f} s "
              f"(p50 {percentile(gpu_times, 0.5):.1f} s); "
              f"each saw exactly its limit; fullest GPU {fill * 100:.0f} % (node-side peak); "
              f"FailedScheduling events {failed_scheduling}", flush=True)
        if args.kills:
            print(f"scheduler kills: {len(takeovers)}; standby took over in "
                  f"{min(takeovers):.1f}-{max(takeovers):.1f} s (mean {sum(takeovers) / len(takeovers):.1f} s)")
            if max(takeovers) > 15:
                raise Failure(f"a standby took {max(takeovers):.1f} s to take over (goal 15 s)")
        for replica in state["tessera_schedulers"]:
            if not replica:
                continue
            status, text = http_get(replica["metrics_address"], "/metrics")
            for verb in ("filter", "prioritize", "bind"):
                count, p50, p99 = histogram_quantiles(text, verb)
                if count:
                    print(f"extender {verb} (replica at {replica['metrics_address']}, since it started): "
                          f"{count} calls, p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
        kubectl(state, "delete", "pods", "-n", namespace, "--all", "--grace-period=1", "--wait=true")
        if not args.no_cpu:
            cpu_names = [f"cpu-{i}" for i in range(args.pods)]
            cpu_times, cpu_bound, cpu_created = run_set(state, namespace, set(cpu_names), [cpu_pod(namespace, n) for n in cpu_names],
                                args.deadline)
            print(f"CPU set: {args.pods} pods under the plain kube-scheduler; created in {cpu_created:.1f} s, all bound {cpu_bound[-1]:.1f} s, "
                  f"all Running {cpu_times[-1]:.1f} s (p50 {percentile(cpu_times, 0.5):.1f} s)")
            print(f"throughput, GPU set / CPU set: {cpu_times[-1] / gpu_times[-1]:.2f} "
                  f"(all Running: {gpu_times[-1]:.1f} s against {cpu_times[-1]:.1f} s)")
    except Failure as error:
        print(f"shared_burst: FAILED: {error}\n(namespace {namespace} kept for a look)", file=sys.stderr)
        return 1
    kubectl(state, "delete", "namespace", namespace, "--wait=false", check=False)
    print("shared_burst: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
