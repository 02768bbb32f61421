#!/usr/bin/python3
"""Tessera's local Kubernetes cluster: real kube-apiserver, controller-manager, scheduler and
kubelets (1.20, built by scripts/cluster/build-kubernetes.sh) on this machine, with fake GPUs.

Each node of the cluster file has its own loopback address (127.0.0.2, .3, ...), its own mount
namespace (held by `tessera-cri node-namespace`; kubelet 1.20 fixes /var/lib/kubelet/device-plugins
and /var/log/pods, which are bound there over the node's own directories), its own fake GPU
(a device file generated from the cluster file and a state file), a container runtime
(tessera-cri), a kubelet and the node agent (build/bin/tessera-node). Prometheus scrapes every
node agent. Everything lives under the state directory (build/cluster): logs in logs/, what runs
in state.json. Every process is started by a small keeper process (a child subreaper, so that
nothing becomes a zombie of the machine's init, which reaps nobody here).

Commands:
  up [--cluster FILE] [--no-agent]   start the cluster (idempotent); prints `export KUBECONFIG=...`
  down                                stop everything `up` started, containers included
  status                              what runs, and the nodes
  restart-kubelet NODE                stop a node's kubelet and start it again with the same flags
  restart-cri NODE                    the same for its tessera-cri (containers keep running)
  kill-agent NODE / start-agent NODE  SIGKILL / start again a node's tessera-node
  kill-scheduler N / start-scheduler N   SIGKILL / start again tessera-scheduler replica N (0, 1)
  exec NODE -- CMD...                 run CMD in NODE's mount namespace with its fake GPU

Runs as root. Python 3 from Debian (/usr/bin/python3, for python3-yaml).
"""

import argparse
import base64
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

try:
    import yaml
except ImportError:
    sys.exit("cluster.py: needs python3-yaml: run it with /usr/bin/python3 (Debian's), not " + sys.executable)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CLUSTER = os.path.join(REPO, "deploy", "dev-cluster", "cluster.yaml")
# Tessera's control plane runs with deploy/'s own configuration, rewritten for host processes.
SCHEDULER_CONFIG = os.path.join(REPO, "deploy", "tessera-scheduler", "scheduler-config-v1beta1.yaml")
WEBHOOK_CONFIG = os.path.join(REPO, "deploy", "tessera-scheduler", "webhook.yaml")
SCHEDULER_REPLICAS = 2  # active and standby
BUILD_KUBERNETES = os.path.join(REPO, "scripts", "cluster", "build-kubernetes.sh")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_PORTS = {
    "etcd": 23790,
    "etcdPeer": 23800,
    "apiserver": 6443,
    "controllerManager": 10257,
    "scheduler": 10259,
    "schedulerInsecure": 10251,  # 1.20's scheduler cannot be without its plain-HTTP healthz
    "prometheus": 9090,
    "tesseraScheduler": 9443,         # the leader's HTTPS extender and webhook
    "tesseraSchedulerMetrics": 9395,  # replica i: this + i (plain-HTTP health and metrics)
    # Per node, on the node's own address:
    "kubelet": 10250,
    "kubeletHealthz": 10248,
    "metrics": 9394,
}
GPU_MODES = ("whole", "time-sliced", "mig", "shared")
MAX_GPUS_PER_NODE = 16  # the fake GPU's limit
# GPU UUIDs: uuid5 of "<node>/<index>" in this namespace, so every node has its own, stably.
UUID_NAMESPACE = uuid.UUID("5c6c8f0e-6f1a-4c39-9a43-746573736572")

# Generous deadlines: the machine may have two busy cores.
DEADLINE_START = 60
DEADLINE_NODES = 240


class ClusterError(Exception):
    pass


def log(message):
    print("cluster: " + message, file=sys.stderr, flush=True)


# ---- Processes ------------------------------------------------------------------------------

def start_ticks(pid):
    """Field 22 of /proc/PID/stat (start time since boot): tells a reused pid apart. 0 when the
    process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return 0
    return int(fields[19])


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def alive(record):
    """Whether the process a record names (pid, start_ticks, match) still runs."""
    if not record or not record.get("pid"):
        return False
    pid = record["pid"]
    if start_ticks(pid) != record.get("start_ticks"):
        return False
    # A process that is still in execve has no command line yet (the kernel lets the parent of a
    # vfork-style spawn run before it sets the new one up): same pid and start time is then enough.
    words = cmdline(pid)
    return not words or record.get("match", "") in " ".join(words)


def wait_until(what, predicate, deadline, watch=None, interval=0.2):
    """Polls predicate until it is true; fails after `deadline` seconds or as soon as a process
    in `watch` (records with a log) has died."""
    end = time.monotonic() + deadline
    while True:
        if predicate():
            return
        for record in watch or []:
            if not alive(record):
                raise ClusterError(f"{record['match']} (pid {record['pid']}) exited while waiting for {what}"
                                   + log_tail(record.get("log")))
        if time.monotonic() > end:
            raise ClusterError(f"timed out after {deadline} s waiting for {what}"
                               + "".join(log_tail(r.get("log")) for r in (watch or [])))
        time.sleep(interval)


def log_tail(path, lines=15):
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        text = f.readlines()[-lines:]
    return f"\n--- last lines of {path}:\n" + "".join(text).rstrip() + "\n---"


def stop_process(record, what, grace=10.0):
    """SIGTERM, then SIGKILL after `grace` seconds (at once when grace is 0); returns once the
    process is gone (a zombie counts as gone: its parent, the keeper, reaps it)."""
    if not alive(record):
        return False
    pid = record["pid"]
    try:
        os.kill(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    except ProcessLookupError:
        return True
    end = time.monotonic() + grace
    while grace > 0 and alive(record) and time.monotonic() < end:
        time.sleep(0.05)
    if grace > 0 and alive(record):
        log(f"{what} (pid {pid}) ignored SIGTERM for {grace:.0f} s: SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 30
    while alive(record) and time.monotonic() < end:
        time.sleep(0.05)
    return True


# ---- The keeper: parent and reaper of every process of the cluster -------------------------

PR_SET_CHILD_SUBREAPER = 36


def keeper_main(state_dir):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    path = os.path.join(state_dir, "keeper.sock")
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    server.settimeout(0.5)
    names = {}
    running = [True]

    def stop(signum, frame):
        running[0] = False
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"keeper {os.getpid()}: serving {path}", flush=True)
    while running[0]:
        while True:  # reap
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            print(f"keeper: pid {pid} ({names.pop(pid, 'adopted orphan')}) ended: {describe_status(status)}", flush=True)
        try:
            conn, _ = server.accept()
        except (socket.timeout, InterruptedError):
            continue
        except OSError:
            if running[0]:
                raise
            break
        with conn:
            conn.settimeout(10)
            try:
                request = json.loads(conn.makefile().readline())
                if request.get("op") == "ping":
                    reply = {"ok": True, "pid": os.getpid()}
                else:
                    pid = keeper_spawn(request)
                    names[pid] = request.get("name", request["argv"][0])
                    print(f"keeper: started pid {pid} ({names[pid]}): {' '.join(request['argv'])}", flush=True)
                    reply = {"ok": True, "pid": pid}
            except Exception as error:  # the request is bad: say why, keep serving
                reply = {"ok": False, "error": str(error)}
            conn.sendall((json.dumps(reply) + "\n").encode())
    os.unlink(path)
    # `down` stops the keeper last: reap what it stopped before, or the machine's init (which reaps
    # nobody here) inherits the zombies.
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
            continue
        print(f"keeper: pid {pid} ({names.pop(pid, 'adopted orphan')}) ended: {describe_status(status)}", flush=True)
    print("keeper: done", flush=True)


def describe_status(status):
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"status {status}"


def keeper_spawn(request):
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open("/dev/null", os.O_RDONLY)
    try:
        defaults = [signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD]
        pid = os.posix_spawnp(request["argv"][0], request["argv"], request["env"],
                               file_actions=[(os.POSIX_SPAWN_DUP2, null_fd, 0),
                                             (os.POSIX_SPAWN_DUP2, log_fd, 1),
                                             (os.POSIX_SPAWN_DUP2, log_fd, 2)],
                               setsid=True, setsigdef=defaults, setsigmask=[])
    finally:
        os.close(log_fd)
        os.close(null_fd)
    # posix_spawn returns once the child has replaced its memory, but before the kernel has set up
    # its new command line: a reader in that window sees none and would take the process for gone.
    # Reply once it is there (or the process has already ended), so that every later check sees it.
    end = time.monotonic() + 5
    while not cmdline(pid) and start_ticks(pid) and time.monotonic() < end:
        time.sleep(0.001)
    return pid


def keeper_request(state_dir, request, timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(os.path.join(state_dir, "keeper.sock"))
        conn.sendall((json.dumps(request) + "\n").encode())
        reply = json.loads(conn.makefile().readline())
    if not reply.get("ok"):
        raise ClusterError(f"the keeper could not start {request.get('name')}: {reply.get('error')}")
    return reply


# ---- Configuration --------------------------------------------------------------------------

BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[kmgt]i?b?|B)?\s*$")
MIG_RE = re.compile(r"^([1-7])g\.(\d+)gb$")


def parse_bytes(text, where):
    match = BYTES_RE.match(str(text))
    if not match:
        raise ClusterError(f"{where}: memory {text!r} is not a size like 80GiB")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper().rstrip("B").rstrip("I")
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def load_cluster(path):
    try:
        with open(path) as f:
            spec = yaml.safe_load(f) or {}
    except OSError as error:
        raise ClusterError(f"cannot read the cluster file: {error}")
    except yaml.YAMLError as error:
        raise ClusterError(f"{path}: not valid YAML: {error}")
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list) or not spec["nodes"]:
        raise ClusterError(f"{path}: needs a non-empty `nodes:` list")
    unknown = set(spec) - {"nodes", "ports", "scheduler"}
    if unknown:
        raise ClusterError(f"{path}: unknown top-level keys {sorted(unknown)} (known: nodes, ports, scheduler)")
    ports = dict(DEFAULT_PORTS)
    for key, value in (spec.get("ports") or {}).items():
        if key not in DEFAULT_PORTS:
            raise ClusterError(f"{path}: ports.{key}: unknown (known: {', '.join(DEFAULT_PORTS)})")
        if not isinstance(value, int) or not 0 < value < 65536:
            raise ClusterError(f"{path}: ports.{key}: {value!r} is not a port")
        ports[key] = value
    nodes, seen = [], set()
    if len(spec["nodes"]) > 250:
        raise ClusterError(f"{path}: at most 250 nodes (addresses 127.0.0.2 to 127.0.0.251)")
    for n, node in enumerate(spec["nodes"]):
        where = f"{path}: nodes[{n}]"
        if not isinstance(node, dict):
            raise ClusterError(f"{where}: not a mapping")
        unknown = set(node) - {"name", "gpus", "labels"}
        if unknown:
            raise ClusterError(f"{where}: unknown keys {sorted(unknown)} (known: name, gpus, labels)")
        name = node.get("name")
        if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", name):
            raise ClusterError(f"{where}: name {name!r} is not a DNS label (lower case, digits, '-')")
        if name in seen:
            raise ClusterError(f"{where}: node name {name} appears twice")
        seen.add(name)
        where = f"{path}: node {name}"
        gpus = []
        for g, group in enumerate(node.get("gpus") or []):
            gwhere = f"{where}: gpus[{g}]"
            if not isinstance(group, dict):
                raise ClusterError(f"{gwhere}: not a mapping")
            unknown = set(group) - {"model", "memory", "sms", "count", "mode", "replicas", "mig", "numa"}
            if unknown:
                raise ClusterError(f"{gwhere}: unknown keys {sorted(unknown)}")
            model = group.get("model")
            if not isinstance(model, str) or not model or len(model) > 95 or '"' in model:
                raise ClusterError(f"{gwhere}: model {model!r}: want a name of 1-95 characters without quotes")
            memory = parse_bytes(group.get("memory", ""), gwhere)
            sms = group.get("sms")
            if not isinstance(sms, int) or not 1 <= sms <= 4096:
                raise ClusterError(f"{gwhere}: sms {sms!r}: want 1-4096")
            count = group.get("count", 1)
            if not isinstance(count, int) or count < 1:
                raise ClusterError(f"{gwhere}: count {count!r}: want a positive number")
            mode = group.get("mode", "whole")
            if mode not in GPU_MODES:
                raise ClusterError(f"{gwhere}: mode {mode!r}: want one of {', '.join(GPU_MODES)}")
            replicas = group.get("replicas")
            if mode == "time-sliced":
                if not isinstance(replicas, int) or not 1 <= replicas <= 64:
                    raise ClusterError(f"{gwhere}: time-sliced needs replicas: 1-64 (got {replicas!r})")
            elif replicas is not None:
                raise ClusterError(f"{gwhere}: replicas is for mode time-sliced only")
            layout = group.get("mig")
            if mode == "mig":
                if not isinstance(layout, list) or not layout:
                    raise ClusterError(f"{gwhere}: mig needs a layout, e.g. mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]")
                slices = gigabytes = 0
                for profile in layout:
                    match = MIG_RE.match(str(profile))
                    if not match:
                        raise ClusterError(f"{gwhere}: MIG profile {profile!r} is not like 3g.40gb")
                    slices += int(match.group(1))
                    gigabytes += int(match.group(2))
                if slices > 7:
                    raise ClusterError(f"{gwhere}: MIG layout {layout} uses {slices} compute slices (a GPU has 7)")
                if gigabytes << 30 > memory:
                    raise ClusterError(f"{gwhere}: MIG layout {layout} needs {gigabytes} GB, more than the GPU's memory")
            elif layout is not None:
                raise ClusterError(f"{gwhere}: mig is for mode mig only")
            numa = group.get("numa")
            if numa is not None and (not isinstance(numa, int) or not 0 <= numa <= 63):
                raise ClusterError(f"{gwhere}: numa {numa!r}: want a NUMA node number (0-63)")
            for _ in range(count):
                index = len(gpus)
                gpus.append({
                    "index": index, "model": model, "memory": str(group["memory"]), "memory_bytes": memory,
                    "sms": sms, "mode": mode, "replicas": replicas, "mig": [str(p) for p in layout or []],
                    "numa": numa, "uuid": "GPU-" + str(uuid.uuid5(UUID_NAMESPACE, f"{name}/{index}")),
                })
        if len(gpus) > MAX_GPUS_PER_NODE:
            raise ClusterError(f"{where}: {len(gpus)} GPUs; the fake GPU has at most {MAX_GPUS_PER_NODE} per node")
        labels = node.get("labels") or {}
        if not isinstance(labels, dict):
            raise ClusterError(f"{where}: labels must be a mapping")
        nodes.append({"name": name, "address": f"127.0.0.{n + 2}", "gpus": gpus,
                      "labels": {str(k): str(v) for k, v in labels.items()}})
    scheduler = spec.get("scheduler") or {}
    if not isinstance(scheduler, dict):
        raise ClusterError(f"{path}: scheduler must be a mapping (KubeSchedulerConfiguration fields)")
    return {"file": os.path.abspath(path), "nodes": nodes, "ports": ports, "scheduler": scheduler}


def fakegpu_device_file(node):
    lines = [f"# Generated by scripts/cluster/cluster.py for node {node['name']}: its fake GPUs."]
    for gpu in node["gpus"]:
        line = f"device name=\"{gpu['model']}\" memory={gpu['memory']} sms={gpu['sms']} uuid={gpu['uuid']}"
        if gpu["mode"] == "mig":
            line += " mig=" + ",".join(gpu["mig"])
        if gpu["numa"] is not None:
            line += f" numa={gpu['numa']}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def node_config_file(node):
    gpus = []
    for gpu in node["gpus"]:
        entry = {"index": gpu["index"], "mode": gpu["mode"]}
        if gpu["mode"] == "time-sliced":
            entry["replicas"] = gpu["replicas"]
        if gpu["mode"] == "mig":
            entry["mig"] = gpu["mig"]
        gpus.append(entry)
    header = f"# Generated by scripts/cluster/cluster.py for node {node['name']}: tessera-node's configuration.\n"
    return header + yaml.safe_dump({"gpus": gpus}, default_flow_style=None, sort_keys=False)


# ---- Paths and state ------------------------------------------------------------------------

class Paths:
    def __init__(self, build_dir):
        self.build = os.path.abspath(build_dir)
        self.state = os.path.join(self.build, "cluster")
        self.state_json = os.path.join(self.state, "state.json")
        self.logs = os.path.join(self.state, "logs")
        self.pki = os.path.join(self.state, "pki")
        self.kubeconfig = os.path.join(self.state, "kubeconfig")
        self.fakegpu = os.path.join(self.build, "fakegpu")
        self.agent = os.path.join(self.build, "bin", "tessera-node")
        self.scheduler = os.path.join(self.build, "bin", "tessera-scheduler")
        self.bin = subprocess.run([BUILD_KUBERNETES, "--print-bin-dir"], check=True, capture_output=True,
                                  text=True).stdout.strip()

    def node_dir(self, name):
        return os.path.join(self.state, "nodes", name)

    def tool(self, name):
        return os.path.join(self.bin, name)


def load_state(paths):
    try:
        with open(paths.state_json) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log(f"ignoring an unreadable {paths.state_json}: {error}")
        return None


def save_state(paths, state):
    tmp = paths.state_json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
        f.write("\n")
    os.replace(tmp, paths.state_json)


def all_records(state):
    """(description, record) of every process in state, in the order `down` stops them."""
    records = []
    for node in state.get("nodes", []):
        records.append((f"tessera-node on {node['name']}", node.get("agent")))
    for node in state.get("nodes", []):
        records.append((f"kubelet on {node['name']}", node.get("kubelet")))
    for node in state.get("nodes", []):
        records.append((f"tessera-cri on {node['name']}", node.get("cri")))
    cp = state.get("control_plane", {})
    records.append(("prometheus", state.get("prometheus")))
    for i, record in enumerate(state.get("tessera_schedulers", [])):
        records.append((f"tessera-scheduler {i}", record))
    for key in ("scheduler", "controller_manager", "apiserver", "etcd"):
        records.append((key.replace("_", "-"), cp.get(key)))
    for node in state.get("nodes", []):
        records.append((f"mount namespace of {node['name']}", node.get("namespace")))
    records.append(("keeper", state.get("keeper")))
    return [(what, r) for what, r in records if r and r.get("pid")]


# ---- HTTP checks ----------------------------------------------------------------------------

_INSECURE = ssl._create_unverified_context()


def http_get(url, token=None, timeout=3):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_INSECURE if url.startswith("https") else None) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, ValueError):
        return None, ""


def http_ok(url, token=None):
    return lambda: http_get(url, token)[0] == 200


def agent_ready(address):
    """Whether the node agent's /readyz answers 200."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as connection:
            connection.sendall(f"GET /readyz HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            status_line = connection.recv(64).split(b"\r\n", 1)[0].split(b" ")
            return len(status_line) >= 2 and status_line[1] == b"200"
    except OSError:
        return False


def nodes_ready(state, names):
    """True when every named node is Ready and has no taint."""
    status, body = http_get(state["apiserver_url"] + "/api/v1/nodes", state["admin_token"])
    if status != 200:
        return False
    ready = set()
    for item in json.loads(body).get("items", []):
        conditions = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") == "True" and not item.get("spec", {}).get("taints"):
            ready.add(item["metadata"]["name"])
    return set(names) <= ready


# ---- Ports ----------------------------------------------------------------------------------

def port_holders():
    """'address:port' -> who listens, from ss -ltnp (empty when ss says nothing)."""
    try:
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    holders = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            holders[fields[3]] = " ".join(fields[5:]) or "(process unknown)"
    return holders


def listening_sockets():
    """{(address, port)} of every listening TCP socket, from /proc/net/tcp{,6}; a wildcard address
    is "0.0.0.0" (IPv4 or IPv6). Sockets in TIME_WAIT do not count: the servers here bind with
    SO_REUSEADDR or SO_REUSEPORT."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            if len(raw) == 16:  # IPv6: four little-endian words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                if raw == bytes(16):
                    found.add(("0.0.0.0", int(port, 16)))
                elif raw[:12] == bytes(10) + b"\xff\xff":
                    found.add((socket.inet_ntoa(raw[12:]), int(port, 16)))
                continue
            found.add((socket.inet_ntoa(raw[::-1]), int(port, 16)))
    return found


def check_ports(wanted):
    """wanted: [(address, port, what)]. Fails naming every port something listens on, and who
    (when ss -ltnp tells)."""
    listening = listening_sockets()
    busy = [(a, p, w) for a, p, w in wanted if (a, p) in listening or ("0.0.0.0", p) in listening]
    if not busy:
        return
    holders = port_holders()
    lines = []
    for address, port, what in busy:
        holder = next((h for key, h in holders.items()
                       if key.rsplit(":", 1)[-1] == str(port) and key.rsplit(":", 1)[0] in
                       (address, "0.0.0.0", "*", "[::]", "[::ffff:0.0.0.0]", f"[::ffff:{address}]")),
                      "holder unknown")
        lines.append(f"  {address}:{port} ({what}) is in use: {holder}")
    raise ClusterError("ports the cluster needs are taken:\n" + "\n".join(lines))


# ---- up -------------------------------------------------------------------------------------

def run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def make_pki(paths, tokens):
    os.makedirs(paths.pki, exist_ok=True)
    p = lambda name: os.path.join(paths.pki, name)
    run(["openssl", "genrsa", "-out", p("ca.key"), "2048"])
    run(["openssl", "req", "-x509", "-new", "-key", p("ca.key"), "-subj", "/CN=tessera-dev-cluster-ca",
         "-days", "365", "-out", p("ca.crt")])
    with open(p("apiserver.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
                "DNS:kubernetes.default,DNS:kubernetes.default.svc\n")
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", p("apiserver.key"),
         "-subj", "/CN=kube-apiserver", "-out", p("apiserver.csr")])
    run(["openssl", "x509", "-req", "-in", p("apiserver.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-days", "365", "-extfile", p("apiserver.ext"), "-out", p("apiserver.crt")])
    # tessera-scheduler's serving certificate (kube-scheduler and the API server verify it).
    with open(p("tessera-scheduler.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:tessera-scheduler.tessera-system.svc\n")
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", p("tessera-scheduler.key"),
         "-subj", "/CN=tessera-scheduler", "-out", p("tessera-scheduler.csr")])
    run(["openssl", "x509", "-req", "-in", p("tessera-scheduler.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-days", "365", "-extfile", p("tessera-scheduler.ext"),
         "-out", p("tessera-scheduler.crt")])
    run(["openssl", "genrsa", "-out", p("sa.key"), "2048"])
    run(["openssl", "rsa", "-in", p("sa.key"), "-pubout", "-out", p("sa.pub")])
    with open(p("tokens.csv"), "w") as f:
        for user, (token, groups) in tokens.items():
            f.write(f'{token},{user},{user},"{groups}"\n')
    os.chmod(p("tokens.csv"), 0o600)


def write_kubeconfig(path, server, user, token):
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "tessera-dev", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "tessera-dev", "context": {"cluster": "tessera-dev", "user": user}}],
        "current-context": "tessera-dev",
    }
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.chmod(path, 0o600)


def base_env(extra=None):
    env = {"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/root")}
    env.update(extra or {})
    return env


def fakegpu_env(node):
    return {"LD_LIBRARY_PATH": node["fakegpu_lib_dir"], "TESSERA_FAKEGPU_CONFIG": node["fakegpu_config"],
            "TESSERA_FAKEGPU_STATE": node["fakegpu_state"]}


class Starter:
    """Starts processes through the keeper and records them in state.json as it goes, so that a
    failure half-way leaves a state that `down` can clean."""

    def __init__(self, paths, state):
        self.paths, self.state = paths, state

    def start(self, name, argv, env, match, log_name):
        log_path = os.path.join(self.paths.logs, log_name)
        reply = keeper_request(self.paths.state, {"op": "spawn", "name": name, "argv": argv, "env": env,
                                                  "log": log_path})
        pid = reply["pid"]
        record = {"pid": pid, "start_ticks": start_ticks(pid), "match": match, "log": log_path,
                  "argv": argv, "env": env}
        return record

    def save(self):
        save_state(self.paths, self.state)


def kubelet_argv(paths, node, ports):
    d = paths.node_dir(node["name"])
    argv = [paths.tool("kubelet"),
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{d}/cri.sock",
            f"--image-service-endpoint=unix://{d}/cri.sock",
            "--cgroups-per-qos=false", "--enforce-node-allocatable=", "--cgroup-driver=cgroupfs",
            "--fail-swap-on=false",
            f"--root-dir={d}/kubelet", f"--cert-dir={d}/kubelet/pki",
            f"--volume-plugin-dir={d}/volume-plugins",
            f"--hostname-override={node['name']}",
            f"--kubeconfig={d}/kubeconfig",
            f"--address={node['address']}", f"--port={ports['kubelet']}", "--read-only-port=0",
            f"--healthz-bind-address={node['address']}", f"--healthz-port={ports['kubeletHealthz']}",
            # Only memory pressure evicts: a shared development disk must not taint the nodes.
            "--eviction-hard=memory.available<100Mi",
            "--image-gc-high-threshold=100", "--image-gc-low-threshold=99",
            # The runtime's pulls are instant and local: kubelet's default of 5 pulls/s would
            # only fail a burst of pods with ErrImagePull and minutes of back-off.
            "--registry-qps=0",
            # Kubernetes 1.27's defaults (1.20's 5/10 would make a node's status updates, not its
            # pods, the bottleneck of a burst: a few writes per pod at 5 a second).
            "--kube-api-qps=50", "--kube-api-burst=100",
            # The Node's status (allocatable devices among it) is posted every 4 s rather than
            # kubelet's default 10 s, so that a device's health shows within seconds.
            "--node-status-update-frequency=4s",
            "--v=1"]
    if node["labels"]:
        argv.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(node["labels"].items())))
    return argv


def cmd_up(args, paths):
    if args.agent:
        paths.agent = os.path.abspath(args.agent)
    if os.geteuid() != 0:
        raise ClusterError("must run as root (it makes mount namespaces and bind mounts)")
    cluster = load_cluster(args.cluster)
    if already_running(args, paths, cluster):
        return 0
    check_programs(paths, with_agent=not args.no_agent)
    check_ports(planned_ports(cluster, with_agent=not args.no_agent))

    started = time.monotonic()
    fresh_state_dir(paths)
    tokens = {"admin": (secrets.token_hex(16), "system:masters"),
              "system:kube-controller-manager": (secrets.token_hex(16), "system:masters"),
              "system:kube-scheduler": (secrets.token_hex(16), "system:masters"),
              "system:tessera-scheduler": (secrets.token_hex(16), "system:masters")}
    for node in cluster["nodes"]:
        tokens[f"system:node:{node['name']}"] = (secrets.token_hex(16), "system:nodes")
    make_pki(paths, tokens)
    ports = cluster["ports"]
    api_url = f"https://127.0.0.1:{ports['apiserver']}"
    for user, name in (("admin", "kubeconfig"), ("system:kube-controller-manager", "controller-manager.kubeconfig"),
                       ("system:kube-scheduler", "scheduler.kubeconfig"),
                       ("system:tessera-scheduler", "tessera-scheduler.kubeconfig")):
        write_kubeconfig(os.path.join(paths.state, name), api_url, user, tokens[user][0])
    state = {
        "complete": False,
        "cluster_file": cluster["file"],
        "state_dir": paths.state, "log_dir": paths.logs, "kubeconfig": paths.kubeconfig,
        "kubectl": paths.tool("kubectl"), "bin_dir": paths.bin,
        "apiserver_url": api_url, "admin_token": tokens["admin"][0],
        "ca": {"cert": os.path.join(paths.pki, "ca.crt"), "key": os.path.join(paths.pki, "ca.key")},
        "ports": ports, "agent_enabled": not args.no_agent, "agent_program": paths.agent,
        "control_plane": {}, "nodes": [],
    }
    starter = Starter(paths, state)
    starter.save()

    start_keeper(starter)
    log(f"starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler (state in {paths.state})")
    start_control_plane(starter, cluster, tokens)
    state["tessera_schedulers"] = []
    if os.path.exists(paths.scheduler):
        log(f"starting tessera-scheduler ({SCHEDULER_REPLICAS} replicas: one serves, the other stands by)")
        for replica in range(SCHEDULER_REPLICAS):
            state["tessera_schedulers"].append(start_tessera_scheduler(starter, paths, state, replica))
        starter.save()
        register_webhook(paths, state)
    log(f"starting {len(cluster['nodes'])} nodes: " +
        ", ".join(f"{n['name']} ({n['address']}, {len(n['gpus'])} GPUs)" for n in cluster["nodes"]))
    start_nodes(starter, cluster, tokens)
    start_prometheus(starter)

    cp, admin = state["control_plane"], tokens["admin"][0]
    for entry in state["nodes"]:
        wait_until(f"the kubelet of {entry['name']} (healthz)",
                   http_ok(f"http://{entry['address']}:{ports['kubeletHealthz']}/healthz"), DEADLINE_NODES,
                   watch=[entry["kubelet"], entry["cri"]])
    wait_until("kube-controller-manager", http_ok(f"https://127.0.0.1:{ports['controllerManager']}/healthz", admin),
               DEADLINE_START, watch=[cp["controller_manager"]])
    wait_until("kube-scheduler", http_ok(f"https://127.0.0.1:{ports['scheduler']}/healthz", admin), DEADLINE_START,
               watch=[cp["scheduler"]])
    wait_until("prometheus", http_ok(f"http://{state['prometheus']['address']}/-/ready"), DEADLINE_START,
               watch=[state["prometheus"]])

    # The agent registers with its kubelet: it starts once the kubelet's socket is there.
    for entry in state["nodes"]:
        entry["agent"] = None
        if not args.no_agent:
            socket_path = os.path.join(entry["kubelet"]["device_plugin_dir"], "kubelet.sock")
            wait_until(f"the device-plugin socket of {entry['name']}'s kubelet",
                       lambda: os.path.exists(socket_path), DEADLINE_NODES, watch=[entry["kubelet"]])
            entry["agent"] = start_agent(starter, paths, entry)
        starter.save()

    names = [n["name"] for n in state["nodes"]]
    log("waiting for every node to be Ready without taints")
    wait_until("every node Ready without taints", lambda: nodes_ready(state, names), DEADLINE_NODES,
               watch=[r for e in state["nodes"] for r in (e["kubelet"], e["cri"])] + [cp["controller_manager"]])
    for entry in state["nodes"]:
        if entry["agent"]:
            wait_until(f"tessera-node of {entry['name']} ready on {entry['metrics_address']}",
                       lambda: agent_ready(entry["metrics_address"]), DEADLINE_START, watch=[entry["agent"]])
    if state["tessera_schedulers"]:
        wait_until("a tessera-scheduler replica serving (leader, cluster listed)",
                   lambda: scheduler_leader(state) is not None, DEADLINE_START,
                   watch=state["tessera_schedulers"])
    state["complete"] = True
    state["up_seconds"] = round(time.monotonic() - started, 1)
    starter.save()
    log(f"up in {state['up_seconds']} s")
    print_summary(paths, state)
    return 0


def already_running(args, paths, cluster):
    """True when a complete cluster runs (up then only says so). A half-started or partly dead
    one is stopped, as are processes of a cluster whose state.json is lost."""
    state = load_state(paths)
    if not state:
        if find_strays(paths):
            log(f"stopping leftover processes of an earlier cluster in {paths.state}")
            stop_strays(paths)
        return False
    running = state.get("complete") and all(alive(r) for _, r in all_records(state))
    if running:
        try:
            wait_until("the running cluster's nodes to be Ready",
                       lambda: nodes_ready(state, [n["name"] for n in state["nodes"]]), 60)
        except ClusterError as error:
            log(str(error))
            running = False
    if not running:
        log("a cluster was half-started or has died: cleaning it up before starting again")
        cmd_down(args, paths, quiet=True)
        return False
    if state.get("cluster_file") != cluster["file"]:
        log(f"note: the running cluster is from {state.get('cluster_file')}, not {cluster['file']}; "
            "`down` first to switch")
    log("the cluster is already running")
    print_summary(paths, state)
    return True


def check_programs(paths, with_agent):
    needed = [paths.tool(t) for t in ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                      "kubelet", "kubectl", "tessera-cri")]
    needed += [os.path.join(paths.fakegpu, "libcuda.so.1"), os.path.join(paths.fakegpu, "libnvidia-ml.so.1")]
    if with_agent:
        needed.append(paths.agent)
    missing = [p for p in needed if not os.path.exists(p)]
    if missing:
        hint = " (or pass --no-agent to start without tessera-node)" if paths.agent in missing else ""
        raise ClusterError("missing: " + ", ".join(missing) +
                           f"; run scripts/cluster/build-kubernetes.sh and `make build`{hint}")
    for tool in ("etcd", "prometheus", "openssl", "unshare", "nsenter", "mount"):
        if not shutil.which(tool, path=SYSTEM_PATH):
            raise ClusterError(f"{tool} not found (Debian packages: etcd-server, prometheus, openssl, util-linux)")


def planned_ports(cluster, with_agent):
    ports = cluster["ports"]
    wanted = [("127.0.0.1", ports["etcd"], "etcd"), ("127.0.0.1", ports["etcdPeer"], "etcd peer"),
              ("127.0.0.1", ports["apiserver"], "kube-apiserver"),
              ("127.0.0.1", ports["controllerManager"], "kube-controller-manager"),
              ("127.0.0.1", ports["scheduler"], "kube-scheduler"),
              ("127.0.0.1", ports["schedulerInsecure"], "kube-scheduler plain-HTTP healthz"),
              ("127.0.0.1", ports["prometheus"], "prometheus"),
              ("127.0.0.1", ports["tesseraScheduler"], "tessera-scheduler")]
    wanted += [("127.0.0.1", ports["tesseraSchedulerMetrics"] + i, f"tessera-scheduler {i} metrics")
               for i in range(SCHEDULER_REPLICAS)]
    for node in cluster["nodes"]:
        wanted += [(node["address"], ports["kubelet"], f"kubelet of {node['name']}"),
                   (node["address"], ports["kubeletHealthz"], f"kubelet healthz of {node['name']}")]
        if with_agent:
            wanted.append((node["address"], ports["metrics"], f"tessera-node metrics of {node['name']}"))
    return wanted


def fresh_state_dir(paths):
    """Empties the state directory, keeping the previous run's logs in logs.previous."""
    os.makedirs(paths.state, exist_ok=True)
    previous = os.path.join(paths.state, "logs.previous")
    if os.path.isdir(paths.logs):
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(paths.logs, previous)
    for entry in os.listdir(paths.state):
        if entry != "logs.previous":
            full = os.path.join(paths.state, entry)
            shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.unlink(full)
    os.makedirs(paths.logs)


def start_keeper(starter):
    """The keeper first: every other process is its child."""
    paths, state = starter.paths, starter.state
    keeper_log = os.path.join(paths.logs, "keeper.log")
    with open(keeper_log, "a") as out:
        keeper = subprocess.Popen(["/usr/bin/python3", os.path.abspath(__file__), "_keeper", paths.state],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, env=base_env())
    state["keeper"] = {"pid": keeper.pid, "start_ticks": start_ticks(keeper.pid), "match": "_keeper",
                       "log": keeper_log}
    starter.save()

    def answers():
        try:
            keeper_request(paths.state, {"op": "ping"}, timeout=1)
            return True
        except (OSError, ValueError):
            return False
    wait_until("the keeper", answers, DEADLINE_START, watch=[state["keeper"]])


def start_control_plane(starter, cluster, tokens):
    paths, state, ports = starter.paths, starter.state, cluster["ports"]
    cp = state["control_plane"]
    etcd_dir = os.path.join(paths.state, "etcd")
    cp["etcd"] = starter.start("etcd", [
        shutil.which("etcd", path=SYSTEM_PATH), "--name", "tessera-dev", "--data-dir", etcd_dir,
        "--listen-client-urls", f"http://127.0.0.1:{ports['etcd']}",
        "--advertise-client-urls", f"http://127.0.0.1:{ports['etcd']}",
        "--listen-peer-urls", f"http://127.0.0.1:{ports['etcdPeer']}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcdPeer']}",
        "--initial-cluster", f"tessera-dev=http://127.0.0.1:{ports['etcdPeer']}"],
        base_env(), etcd_dir, "etcd.log")
    cp["etcd"]["port"] = ports["etcd"]
    starter.save()
    wait_until("etcd", http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), DEADLINE_START, watch=[cp["etcd"]])

    # The API server reaches kubelets by node name: its own /etc/hosts maps each to its address.
    hosts = os.path.join(paths.state, "apiserver-hosts")
    with open("/etc/hosts") as f:
        host_lines = f.read()
    with open(hosts, "w") as f:
        f.write(host_lines.rstrip("\n") + "\n# Tessera's local cluster: the nodes\n")
        for node in cluster["nodes"]:
            f.write(f"{node['address']}\t{node['name']}\n")
    p = lambda name: os.path.join(paths.pki, name)
    cp["apiserver"] = starter.start("kube-apiserver", [
        shutil.which("unshare", path=SYSTEM_PATH), "-m", "--propagation", "private", "--",
        "/bin/sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
        paths.tool("kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
        f"--cert-dir={paths.pki}/apiserver",
        f"--tls-cert-file={p('apiserver.crt')}", f"--tls-private-key-file={p('apiserver.key')}",
        f"--client-ca-file={p('ca.crt')}",
        f"--token-auth-file={p('tokens.csv')}", "--authorization-mode=AlwaysAllow",
        f"--service-account-key-file={p('sa.pub')}", f"--service-account-signing-key-file={p('sa.key')}",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--disable-admission-plugins=ServiceAccount",
        "--endpoint-reconciler-type=none",  # the advertised 127.0.0.1 may not be an endpoint
        "--kubelet-preferred-address-types=Hostname",
        "--allow-privileged=true"],
        base_env(), "kube-apiserver", "kube-apiserver.log")
    cp["apiserver"]["port"] = ports["apiserver"]
    cp["apiserver"]["hosts_file"] = hosts
    starter.save()
    wait_until("kube-apiserver /readyz", http_ok(state["apiserver_url"] + "/readyz", tokens["admin"][0]),
               DEADLINE_START, watch=[cp["apiserver"]])

    cm_kubeconfig = os.path.join(paths.state, "controller-manager.kubeconfig")
    cp["controller_manager"] = starter.start("kube-controller-manager", [
        paths.tool("kube-controller-manager"),
        f"--kubeconfig={cm_kubeconfig}", f"--authentication-kubeconfig={cm_kubeconfig}",
        f"--authorization-kubeconfig={cm_kubeconfig}",
        "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={ports['controllerManager']}",
        "--port=0", f"--cert-dir={paths.pki}/controller-manager",
        "--controllers=*,-serviceaccount-token", "--use-service-account-credentials=false"],
        base_env(), "kube-controller-manager", "kube-controller-manager.log")
    cp["controller_manager"]["port"] = ports["controllerManager"]

    sched_kubeconfig = os.path.join(paths.state, "scheduler.kubeconfig")
    sched_config = {"apiVersion": "kubescheduler.config.k8s.io/v1beta1", "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": sched_kubeconfig},
                    "leaderElection": {"leaderElect": False},
                    # 1.20 refuses port 0 here: its plain-HTTP healthz stays, on loopback only.
                    "healthzBindAddress": f"127.0.0.1:{ports['schedulerInsecure']}",
                    "metricsBindAddress": f"127.0.0.1:{ports['schedulerInsecure']}"}
    sched_config.update(extender_config(paths, ports))
    sched_config.update(cluster["scheduler"])
    sched_config_path = os.path.join(paths.state, "scheduler-config.yaml")
    with open(sched_config_path, "w") as f:
        yaml.safe_dump(sched_config, f, sort_keys=False)
    cp["scheduler"] = starter.start("kube-scheduler", [
        paths.tool("kube-scheduler"), f"--config={sched_config_path}",
        f"--authentication-kubeconfig={sched_kubeconfig}", f"--authorization-kubeconfig={sched_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
        f"--cert-dir={paths.pki}/scheduler"],
        base_env(), "kube-scheduler", "kube-scheduler.log")
    cp["scheduler"]["port"] = ports["scheduler"]
    cp["scheduler"]["config"] = sched_config_path
    starter.save()


def extender_config(paths, ports):
    """deploy/'s KubeSchedulerConfiguration, for host processes: tessera-scheduler's port and CA
    here, and both scheduler names served (pods the webhook has not seen keep default-scheduler)."""
    with open(SCHEDULER_CONFIG) as f:
        deployed = yaml.safe_load(f)
    extenders = deployed["extenders"]
    for extender in extenders:
        extender["urlPrefix"] = f"https://127.0.0.1:{ports['tesseraScheduler']}"
        extender["tlsConfig"] = {"caFile": os.path.join(paths.pki, "ca.crt")}
    profiles = [{"schedulerName": "default-scheduler"}] + deployed["profiles"]
    return {"profiles": profiles, "extenders": extenders}


def start_tessera_scheduler(starter, paths, state, replica):
    ports = state["ports"]
    p = lambda name: os.path.join(paths.pki, name)
    argv = [paths.scheduler, "--kubeconfig", os.path.join(paths.state, "tessera-scheduler.kubeconfig"),
            "--bind", f"127.0.0.1:{ports['tesseraScheduler']}",
            "--metrics-bind", f"127.0.0.1:{ports['tesseraSchedulerMetrics'] + replica}",
            "--cert-file", p("tessera-scheduler.crt"), "--key-file", p("tessera-scheduler.key"),
            "--lease-identity", f"tessera-scheduler-{replica}-{secrets.token_hex(3)}",
            "--lease-duration-s", "10", "--lease-retry-ms", "2000"]
    record = starter.start(f"tessera-scheduler {replica}", argv, base_env({"TESSERA_LOG_LEVEL": "info"}),
                           f"--metrics-bind 127.0.0.1:{ports['tesseraSchedulerMetrics'] + replica}",
                           f"tessera-scheduler-{replica}.log")
    record["metrics_address"] = f"127.0.0.1:{ports['tesseraSchedulerMetrics'] + replica}"
    return record


def scheduler_leader(state):
    """The index of the replica that serves, or None."""
    for i, record in enumerate(state.get("tessera_schedulers", [])):
        if record and alive(record) and http_ok(f"http://{record['metrics_address']}/readyz")():
            return i
    return None


def register_webhook(paths, state):
    """deploy/'s MutatingWebhookConfiguration, pointing at the host's tessera-scheduler."""
    with open(WEBHOOK_CONFIG) as f:
        webhook = yaml.safe_load(f)
    with open(os.path.join(paths.pki, "ca.crt"), "rb") as f:
        ca_bundle = base64.b64encode(f.read()).decode()
    for hook in webhook["webhooks"]:
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{state['ports']['tesseraScheduler']}/webhook",
                                "caBundle": ca_bundle}
    run([paths.tool("kubectl"), f"--kubeconfig={paths.kubeconfig}", "apply", "-f", "-"],
        input=json.dumps(webhook))


def start_nodes(starter, cluster, tokens):
    """Per node: a mount namespace, then its runtime, then its kubelet (each step for all nodes
    at once, so that they come up together)."""
    paths, state, ports = starter.paths, starter.state, cluster["ports"]
    for node in cluster["nodes"]:
        name, d = node["name"], paths.node_dir(node["name"])
        for sub in ("device-plugins", "pod-logs", "container-logs", "kubelet", "cri", "volume-plugins"):
            os.makedirs(os.path.join(d, sub))
        with open(os.path.join(d, "fakegpu.conf"), "w") as f:
            f.write(fakegpu_device_file(node))
        with open(os.path.join(d, "node-config.yaml"), "w") as f:
            f.write(node_config_file(node))
        write_kubeconfig(os.path.join(d, "kubeconfig"), state["apiserver_url"], f"system:node:{name}",
                         tokens[f"system:node:{name}"][0])
        make_device_nodes(os.path.join(d, "dev"), len(node["gpus"]))
        entry = {
            "name": name, "address": node["address"], "gpus": node["gpus"], "labels": node["labels"],
            "dir": d,
            "metrics_address": f"{node['address']}:{ports['metrics']}",
            "fakegpu_lib_dir": paths.fakegpu,
            "fakegpu_config": os.path.join(d, "fakegpu.conf"),
            "fakegpu_state": os.path.join(d, "fakegpu.state"),
            "node_config": os.path.join(d, "node-config.yaml"),
            "device_root": os.path.join(d, "dev"),
        }
        state["nodes"].append(entry)
        # kubelet 1.20 fixes these paths; the node's own directories are bound over them.
        entry["namespace"] = starter.start(f"namespace {name}", [
            shutil.which("unshare", path=SYSTEM_PATH), "-m", "--propagation", "private", "--",
            paths.tool("tessera-cri"), "node-namespace", "--scratch", os.path.join(d, "scratch"),
            "--ready", os.path.join(d, "namespace.ready"),
            "--bind", f"{d}/device-plugins:/var/lib/kubelet/device-plugins",
            "--bind", f"{d}/pod-logs:/var/log/pods",
            "--bind", f"{d}/container-logs:/var/log/containers"],
            base_env(), f"node-namespace --scratch {d}/scratch", f"{name}.namespace.log")
        entry["mount_namespace_pid"] = entry["namespace"]["pid"]
        starter.save()
    for entry in state["nodes"]:
        wait_until(f"the mount namespace of {entry['name']}",
                   lambda: os.path.exists(os.path.join(entry["dir"], "namespace.ready")), DEADLINE_START,
                   watch=[entry["namespace"]])
    nsenter = shutil.which("nsenter", path=SYSTEM_PATH)
    for entry in state["nodes"]:
        d, holder = entry["dir"], str(entry["namespace"]["pid"])
        entry["cri"] = starter.start(f"tessera-cri {entry['name']}", [
            nsenter, "-t", holder, "-m", "--", paths.tool("tessera-cri"), "serve",
            "--listen", f"{d}/cri.sock", "--state-dir", f"{d}/cri", "--node-name", entry["name"],
            "--pod-ip", entry["address"], "--fakegpu-lib-dir", entry["fakegpu_lib_dir"],
            "--fakegpu-config", entry["fakegpu_config"], "--fakegpu-state", entry["fakegpu_state"]],
            base_env(), f"--state-dir {d}/cri", f"{entry['name']}.tessera-cri.log")
        entry["cri"]["socket"] = f"{d}/cri.sock"
        entry["cri"]["state_dir"] = f"{d}/cri"
        starter.save()
    for entry in state["nodes"]:
        wait_until(f"tessera-cri of {entry['name']}", lambda: os.path.exists(entry["cri"]["socket"]),
                   DEADLINE_START, watch=[entry["cri"]])
    for entry, node in zip(state["nodes"], cluster["nodes"]):
        d, holder = entry["dir"], str(entry["namespace"]["pid"])
        entry["kubelet"] = starter.start(f"kubelet {entry['name']}",
                                         [nsenter, "-t", holder, "-m", "--"] + kubelet_argv(paths, node, ports),
                                         base_env(), f"--root-dir={d}/kubelet", f"{entry['name']}.kubelet.log")
        entry["kubelet"].update({
            "port": ports["kubelet"], "healthz_port": ports["kubeletHealthz"], "root_dir": f"{d}/kubelet",
            "device_plugin_dir": f"{d}/device-plugins",
            "pod_resources_socket": f"{d}/kubelet/pod-resources/kubelet.sock"})
        starter.save()


def make_device_nodes(directory, gpus):
    """The node's /dev/nvidia* (tessera-node's --device-root, which the containers get bound on
    /dev/...): character devices with /dev/null's numbers, so that opening one works and does
    nothing (there is no driver behind the fake GPU)."""
    os.makedirs(directory)
    null = os.stat("/dev/null").st_rdev
    for name in ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] + [f"nvidia{i}" for i in range(gpus)]:
        os.mknod(os.path.join(directory, name), 0o666 | stat.S_IFCHR, null)
        os.chmod(os.path.join(directory, name), 0o666)


def start_prometheus(starter):
    """Prometheus, scraping every node's agent (static targets, labelled with the node)."""
    paths, state = starter.paths, starter.state
    prom_dir = os.path.join(paths.state, "prometheus")
    os.makedirs(prom_dir)
    prom_config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
                   "scrape_configs": [{"job_name": "tessera-node", "static_configs": [
                       {"targets": [e["metrics_address"]], "labels": {"node": e["name"]}} for e in state["nodes"]]}]}
    with open(os.path.join(prom_dir, "prometheus.yml"), "w") as f:
        yaml.safe_dump(prom_config, f, sort_keys=False)
    prom_address = f"127.0.0.1:{state['ports']['prometheus']}"
    state["prometheus"] = starter.start("prometheus", [
        shutil.which("prometheus", path=SYSTEM_PATH), f"--config.file={prom_dir}/prometheus.yml",
        f"--storage.tsdb.path={prom_dir}/data", f"--web.listen-address={prom_address}",
        "--storage.tsdb.retention.time=1d"],
        base_env(), f"{prom_dir}/prometheus.yml", "prometheus.log")
    state["prometheus"].update({"address": prom_address, "config": f"{prom_dir}/prometheus.yml",
                                "data_dir": f"{prom_dir}/data"})
    starter.save()


def start_agent(starter, paths, entry):
    nsenter = shutil.which("nsenter", path=SYSTEM_PATH)
    argv = [nsenter, "-t", str(entry["namespace"]["pid"]), "-m", "--", paths.agent,
            "--node-name", entry["name"], "--config", entry["node_config"],
            "--kubeconfig", paths.kubeconfig, "--metrics-address", entry["metrics_address"],
            "--pod-resources-socket", entry["kubelet"]["pod_resources_socket"],
            "--device-root", entry["device_root"],
            # Shared GPUs: the per-container allocation directories (limits file, region) of this
            # node, and the shim that is mounted into each of its containers.
            "--state-dir", os.path.join(entry["dir"], "tessera"),
            "--shim-path", os.path.join(paths.build, "lib", "libtessera-cuda.so")]
    env = fakegpu_env(entry)
    env["TESSERA_LOG_LEVEL"] = "info"  # registrations, Allocates and health changes in the log
    record = starter.start(f"tessera-node {entry['name']}", argv, base_env(env),
                           f"--node-name {entry['name']} --config", f"{entry['name']}.tessera-node.log")
    return record


def print_summary(paths, state):
    kubectl = [state["kubectl"], "--kubeconfig", state["kubeconfig"]]
    result = subprocess.run(kubectl + ["get", "nodes", "-o", "wide"], capture_output=True, text=True)
    print(result.stdout.rstrip() or result.stderr.rstrip())
    print(f"state: {paths.state_json}   logs: {state['log_dir']}   prometheus: http://{state['prometheus']['address']}")
    print(f"kubectl: {state['kubectl']}")
    print(f"export KUBECONFIG={state['kubeconfig']}")


# ---- down -----------------------------------------------------------------------------------

STRAY_PROGRAMS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                  "tessera-cri", "tessera-node", "prometheus", "unshare", "nsenter", "python3", "sh"}


def find_strays(paths):
    """Processes of a cluster in this state directory that no state.json accounts for: the
    programs the cluster runs, with the state directory in their command line."""
    strays = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        argv = cmdline(int(entry))
        if not argv or os.path.basename(argv[0]) not in STRAY_PROGRAMS:
            continue
        text = " ".join(argv)
        if paths.state + "/" in text or text.endswith(paths.state):
            if os.path.basename(argv[0]) == "python3" and "_keeper" not in text:
                continue
            ticks = start_ticks(int(entry))
            if ticks:
                strays.append({"pid": int(entry), "start_ticks": ticks, "match": argv[0], "argv": argv})
    return strays


def container_inits(paths, state):
    """The init (pid 1) of every container of every node: killing it ends the container."""
    records = []
    for node in (state or {}).get("nodes", []):
        try:
            with open(os.path.join(node["dir"], "cri", "state.json")) as f:
                cri_state = json.load(f)
        except (OSError, ValueError, KeyError):
            continue
        for cid, info in (cri_state.get("container_info") or {}).items():
            if info.get("init_pid"):
                records.append({"pid": info["init_pid"], "start_ticks": info.get("init_ticks"),
                                "match": "tessera-cri init"})
    return records


def stop_strays(paths):
    strays = find_strays(paths)
    # Container inits first, with SIGKILL (their namespaces die with them); then the rest.
    for record in strays:
        if record["argv"][1:2] == ["init"]:
            stop_process(record, "container", grace=0)
    for record in find_strays(paths):
        stop_process(record, " ".join(record["argv"][:2]), grace=5)


def cmd_down(args, paths, quiet=False):
    state = load_state(paths)
    stopped = 0
    if state:
        records = all_records(state)
        # Agents, kubelets, then the containers (nothing restarts them once kubelet is gone), then
        # runtimes, the control plane, the namespaces and the keeper.
        first = [(w, r) for w, r in records if w.startswith(("tessera-node", "kubelet"))]
        rest = [(w, r) for w, r in records if not w.startswith(("tessera-node", "kubelet"))]
        for what, record in first:
            stopped += stop_process(record, what)
        for record in container_inits(paths, state):
            stopped += stop_process(record, "container", grace=0)
        for what, record in rest:
            stopped += stop_process(record, what)
    strays = find_strays(paths)
    if strays:
        log(f"stopping {len(strays)} processes of the cluster that state.json did not name")
        stop_strays(paths)
    left = find_strays(paths)
    with open("/proc/mounts") as f:
        mounts = [line for line in f if paths.state in line]
    if state:
        os.unlink(paths.state_json)
    for sock in ("keeper.sock",):
        try:
            os.unlink(os.path.join(paths.state, sock))
        except OSError:
            pass
    if left or mounts:
        raise ClusterError("could not stop everything:\n" + "".join(
            f"  pid {r['pid']}: {' '.join(r['argv'])}\n" for r in left) + "".join(f"  mounted: {m}" for m in mounts))
    if not quiet:
        log(f"down: stopped {stopped + len(strays)} processes; nothing of the cluster is left running or "
            f"mounted (logs kept in {paths.logs})" if state or strays else "down: no cluster was running")
    return 0


# ---- The other commands ---------------------------------------------------------------------

def running_state(paths):
    state = load_state(paths)
    if not state:
        raise ClusterError(f"no cluster is running ({paths.state_json} does not exist): run `up` first")
    return state


def find_node(state, name):
    for node in state["nodes"]:
        if node["name"] == name:
            return node
    raise ClusterError(f"no node {name!r}; the nodes are {', '.join(n['name'] for n in state['nodes'])}")


def cmd_status(args, paths):
    state = load_state(paths)
    if not state:
        print("no cluster is running")
        return 3
    rows = [(what, r) for what, r in all_records(state)]
    down = 0
    for what, record in rows:
        ok = alive(record)
        down += not ok
        print(f"{'running' if ok else 'DEAD':8} {what:40} pid {record['pid']:<8} {record.get('log', '')}")
    for node in state["nodes"]:
        if state.get("agent_enabled") and not node.get("agent"):
            print(f"{'stopped':8} tessera-node on {node['name']}")
    print_summary(paths, state)
    return 0 if down == 0 and state.get("complete") else 1


def cmd_restart_kubelet(args, paths):
    state = running_state(paths)
    node = find_node(state, args.node)
    kubelet = node["kubelet"]
    socket_path = os.path.join(kubelet["device_plugin_dir"], "kubelet.sock")
    stop_process(kubelet, f"kubelet on {node['name']}")
    began = time.time_ns()
    record = Starter(paths, state).start(f"kubelet {node['name']}", kubelet["argv"], kubelet["env"],
                                         kubelet["match"], f"{node['name']}.kubelet.log")
    for key in ("port", "healthz_port", "root_dir", "device_plugin_dir", "pod_resources_socket"):
        record[key] = kubelet[key]
    node["kubelet"] = record
    save_state(paths, state)

    def socket_recreated():
        try:
            return os.stat(socket_path).st_ctime_ns >= began
        except FileNotFoundError:
            return False
    wait_until(f"the restarted kubelet of {node['name']} to re-create {socket_path}", socket_recreated,
               DEADLINE_NODES, watch=[record])
    wait_until(f"the restarted kubelet of {node['name']} (healthz)",
               http_ok(f"http://{node['address']}:{record['healthz_port']}/healthz"), DEADLINE_NODES, watch=[record])
    wait_until(f"{node['name']} Ready", lambda: nodes_ready(state, [node["name"]]), DEADLINE_NODES, watch=[record])
    log(f"kubelet of {node['name']} restarted (pid {record['pid']})")
    return 0


def cmd_restart_cri(args, paths):
    state = running_state(paths)
    node = find_node(state, args.node)
    cri = node["cri"]
    stop_process(cri, f"tessera-cri on {node['name']}")
    record = Starter(paths, state).start(f"tessera-cri {node['name']}", cri["argv"], cri["env"], cri["match"],
                                         f"{node['name']}.tessera-cri.log")
    record["socket"], record["state_dir"] = cri["socket"], cri["state_dir"]
    node["cri"] = record
    save_state(paths, state)
    wait_until(f"tessera-cri of {node['name']} serving again",
               lambda: subprocess.run(["nsenter", "-t", str(node["namespace"]["pid"]), "-m", "--", "test", "-S",
                                       cri["socket"]]).returncode == 0 and cri_answers(cri["socket"]),
               DEADLINE_START, watch=[record])
    log(f"tessera-cri of {node['name']} restarted (pid {record['pid']}); its containers kept running")
    return 0


def cri_answers(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1)
            conn.connect(path)
            return True
    except OSError:
        return False


def cmd_kill_agent(args, paths):
    state = running_state(paths)
    node = find_node(state, args.node)
    agent = node.get("agent")
    if not alive(agent):
        log(f"tessera-node on {node['name']} is not running")
    else:
        os.kill(agent["pid"], signal.SIGKILL)
        wait_until(f"tessera-node on {node['name']} to die", lambda: not alive(agent), DEADLINE_START)
        log(f"killed tessera-node on {node['name']} (pid {agent['pid']})")
    node["agent"] = None
    save_state(paths, state)
    return 0


def cmd_start_agent(args, paths):
    state = running_state(paths)
    paths.agent = state.get("agent_program", paths.agent)
    node = find_node(state, args.node)
    if alive(node.get("agent")):
        log(f"tessera-node on {node['name']} already runs (pid {node['agent']['pid']})")
        return 0
    if not os.path.exists(paths.agent):
        raise ClusterError(f"{paths.agent} not found: run `make build`")
    record = start_agent(Starter(paths, state), paths, node)
    node["agent"] = record
    save_state(paths, state)
    # Ready: every resource registered and kubelet holding its device list again.
    wait_until(f"tessera-node of {node['name']} ready on {node['metrics_address']}",
               lambda: agent_ready(node["metrics_address"]), DEADLINE_START, watch=[record])
    log(f"started tessera-node on {node['name']} (pid {record['pid']})")
    return 0


def cmd_kill_scheduler(args, paths):
    state = running_state(paths)
    replica = scheduler_replica(state, args.replica)
    record = state["tessera_schedulers"][replica]
    if not alive(record):
        log(f"tessera-scheduler {replica} is not running")
    else:
        os.kill(record["pid"], signal.SIGKILL)
        wait_until(f"tessera-scheduler {replica} to die", lambda: not alive(record), DEADLINE_START)
        log(f"killed tessera-scheduler {replica} (pid {record['pid']})")
    state["tessera_schedulers"][replica] = None
    save_state(paths, state)
    return 0


def cmd_start_scheduler(args, paths):
    state = running_state(paths)
    replica = scheduler_replica(state, args.replica)
    if alive(state["tessera_schedulers"][replica]):
        log(f"tessera-scheduler {replica} already runs")
        return 0
    record = start_tessera_scheduler(Starter(paths, state), paths, state, replica)
    state["tessera_schedulers"][replica] = record
    save_state(paths, state)
    wait_until(f"tessera-scheduler {replica} healthy", http_ok(f"http://{record['metrics_address']}/healthz"),
               DEADLINE_START, watch=[record])
    log(f"started tessera-scheduler {replica} (pid {record['pid']})")
    return 0


def scheduler_replica(state, text):
    replicas = state.get("tessera_schedulers") or []
    if not text.isdigit() or int(text) >= len(replicas):
        raise ClusterError(f"tessera-scheduler replica {text!r}: the cluster has replicas 0..{len(replicas) - 1}")
    return int(text)


def cmd_exec(args, paths):
    state = running_state(paths)
    node = find_node(state, args.node)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ClusterError("exec needs a command: exec NODE -- CMD...")
    if not alive(node.get("namespace")):
        raise ClusterError(f"the mount namespace of {node['name']} is gone")
    env = dict(os.environ)
    env.update(fakegpu_env(node))
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] += ":" + os.environ["LD_LIBRARY_PATH"]
    nsenter = shutil.which("nsenter", path=SYSTEM_PATH)
    # Entering a mount namespace resets the working directory to its root: keep ours.
    os.execve(nsenter, [nsenter, "-t", str(node["namespace"]["pid"]), "-m", f"--wd={os.getcwd()}", "--"] + command, env)


def main():
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.environ.get("BUILD", os.path.join(REPO, "build")),
                        help="the CMake build directory (default: build, or $BUILD); state goes in BUILD/cluster")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="start the cluster (idempotent)")
    up.add_argument("--cluster", default=DEFAULT_CLUSTER, help="the cluster file (default: %(default)s)")
    up.add_argument("--no-agent", action="store_true",
                    help="start no tessera-node (for testing the cluster without the node agent)")
    up.add_argument("--agent", help="the node agent to run (default: BUILD/bin/tessera-node)")
    up.add_argument("--keep-on-failure", action="store_true",
                    help="leave a half-started cluster running for inspection (default: clean it up)")
    sub.add_parser("down", help="stop everything up started and check nothing is left")
    sub.add_parser("status", help="what runs")
    for name, text in (("restart-kubelet", "restart a node's kubelet with the same flags"),
                       ("restart-cri", "restart a node's tessera-cri (its containers keep running)"),
                       ("kill-agent", "SIGKILL a node's tessera-node"),
                       ("start-agent", "start a node's tessera-node again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("node")
    for name, text in (("kill-scheduler", "SIGKILL a tessera-scheduler replica"),
                       ("start-scheduler", "start a tessera-scheduler replica again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("replica")
    ex = sub.add_parser("exec", help="run a command in a node's mount namespace with its fake GPU")
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    keeper = sub.add_parser("_keeper")  # internal
    keeper.add_argument("state_dir")
    args = parser.parse_args()

    if args.cmd == "_keeper":
        keeper_main(args.state_dir)
        return 0
    paths = Paths(args.build_dir)
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "restart-kubelet": cmd_restart_kubelet,
                "restart-cri": cmd_restart_cri,
                "kill-agent": cmd_kill_agent, "start-agent": cmd_start_agent, "exec": cmd_exec,
                "kill-scheduler": cmd_kill_scheduler, "start-scheduler": cmd_start_scheduler}
    try:
        return commands[args.cmd](args, paths)
    except ClusterError as error:
        log("error: " + str(error))
        if args.cmd == "up" and not args.keep_on_failure and load_state(paths):
            log("cleaning up the half-started cluster (logs stay in " + paths.logs + ")")
            try:
                cmd_down(args, paths, quiet=True)
            except ClusterError as cleanup_error:
                log("error: " + str(cleanup_error))
        return 1
    except KeyboardInterrupt:
        log("interrupted" + ("; run `down` to clean up" if args.cmd == "up" else ""))
        return 130


if __name__ == "__main__":
    sys.exit(main())
