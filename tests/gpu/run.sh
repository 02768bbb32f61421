#!/usr/bin/env bash
# The GPU suite: the shim on a real NVIDIA driver. Builds the shim, the driver-API client and the
# tessera command into build-gpu (Release), then checks
#   (a) a driver-API program allocating 2 MiB blocks under CUDA_DEVICE_MEMORY_LIMIT=4GiB is
#       refused at the limit (within one 2 MiB granule once its context is charged), and
#       cuMemGetInfo / cuDeviceTotalMem / NVML report 4 GiB in total;
#   (b) PyTorch under the shim: mem_get_info() totals 4 GiB, an allocation beyond the limit raises
#       OutOfMemoryError, one below it works (skipped if torch is not importable);
#   (c) a launch-bound loop of 100k empty kernels without the shim, with it, and with it under
#       CUDA_DEVICE_SM_LIMIT=100 (the limiter's path, never throttled): the overhead per launch
#       in microseconds and the ratio against no shim (skipped if nvcc is missing);
#   (d) the compute limiter: a saturating kernel loop (saturate.cu) alone under
#       CUDA_DEVICE_SM_LIMIT=25/50/75 gets its limit within 5 points, by its own event-calibrated
#       kernel count and by nvidia-smi's GPU utilisation; two processes in two containers at 30
#       and 70 get 30 and 70 within 5 points (skipped if nvcc is missing);
#   (e) a PyTorch training step (a large MLP) under CUDA_DEVICE_SM_LIMIT=50 runs at 50 % +-10 of
#       its unlimited step rate (skipped if torch is not importable);
#   (f) CUDA graphs under a compute limit: a PyTorch CUDA-graph step (torch_graph.py, eight
#       matmuls) under CUDA_DEVICE_SM_LIMIT=50 and the 4 GiB limit is captured (not invalidated),
#       its replay gives the eager result, and it replays at 50 % +-10 of its rate without the
#       shim (skipped if torch is not importable); a driver-API capture (graph_capture.cu:
#       cuStreamBeginCapture in global mode, cuLaunchKernel, cuStreamEndCapture,
#       cuGraphInstantiate, cuGraphLaunch) under CUDA_DEVICE_SM_LIMIT=25 is captured and its
#       launches get 25 % within 5 points (skipped if nvcc is missing);
#   (g) VMM under CUDA_DEVICE_MEMORY_LIMIT=1GiB: `vmm-mapped 8 512M` (handles released while
#       mapped) creates as many as fit beside its context (1 when the context is under 512 MiB)
#       and is refused the rest, creates again once unmapped, and nvidia-smi's memory for the
#       process stays under the limit + the context;
#   (h) the context charge: what `tessera status --json` shows the shim charged for a context
#       (`hold 0`) is within 2 MiB of what nvidia-smi shows for the same program without the shim;
#   (i) nvidia-smi inside the limit: under a limits file of 4096m for the GPU's UUID,
#       NVIDIA_VISIBLE_DEVICES and LD_PRELOAD, nvidia-smi shows 4096 MiB in total before any CUDA
#       process, 1 GiB + the context used while a client holds 1 GiB, and only the container's
#       processes (skipped where LD_PRELOAD cannot reach nvidia-smi's NVML).
# Checks that read nvidia-smi's per-process memory find the process by its pid, or, where
# nvidia-smi knows it by another pid namespace's, as the one process that appeared; they are
# skipped where it lists neither.
# Prints PASS/FAIL lines and a markdown block (also written to $OUT/gpu-results.md when OUT is
# set; paste it into docs/gpu-results.md). Exits 0 with a "no GPU" message where there is no
# NVIDIA GPU, 1 if any check failed. Changes no GPU setting; the processes it starts are ended
# when it exits, however it exits.
#
#   tests/gpu/run.sh            BUILD_DIR (default build-gpu) and JOBS may be set
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build-gpu}

if ! compgen -G "/dev/nvidia[0-9]*" >/dev/null; then
  echo "no GPU: no /dev/nvidia[0-9]* device; the GPU suite is skipped"
  exit 0
fi
if ! gpu_info=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1); then
  echo "no GPU: nvidia-smi failed: $gpu_info"
  echo "the GPU suite is skipped"
  exit 0
fi

work=$(mktemp -d /tmp/tessera-gpu-XXXXXX)
cleanup() {  # the processes this suite started and still runs (by their pids), then its files
  local pids
  pids=$(jobs -p)
  # shellcheck disable=SC2086  # one pid per word
  [[ -n "$pids" ]] && kill $pids 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
limit=$((4 << 30))
granule=$((2 << 20))
passed=0
failed=0
skipped=0
results=()

record() {  # PASS|FAIL|SKIP, text
  echo "$1: $2"
  results+=("| $1 | $2 |")
  case "$1" in PASS) passed=$((passed + 1)) ;; FAIL) failed=$((failed + 1)) ;; *) skipped=$((skipped + 1)) ;; esac
}
check() {  # condition-as-arithmetic, text
  if (($1)); then record PASS "$2"; else record FAIL "$2"; fi
}
value() {  # key, "key=value ..." text: the value, or empty
  grep -o "\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2
}

echo "== build ($build)"
# -O2: GCC 12's -O3 trips a false-positive -Wrestrict in std::string under -Werror.
if ! { cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
         "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" >"$work/configure.log" 2>&1 &&
       cmake --build "$build" -j "${JOBS:-$(nproc)}" \
         --target tessera-cuda tessera-cuda-client tessera >"$work/build.log" 2>&1; }; then
  tail -n 30 "$work/configure.log" "$work/build.log" 2>/dev/null || true
  record FAIL "build of tessera-cuda, tessera-cuda-client and tessera"
  echo "SUMMARY: build failed"
  exit 1
fi
shim="$build/lib/libtessera-cuda.so"
client="$build/bin/tessera-cuda-client"
tessera="$build/bin/tessera"
gpu_uuid=$(nvidia-smi --query-gpu=uuid --format=csv,noheader -i 0 2>/dev/null | tr -d ' ')

# Everything under the shim runs with this limit and a region of its own.
under_shim() {  # region-name, command...
  local region=$1; shift
  env CUDA_DEVICE_MEMORY_LIMIT=4GiB CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/$region.region" \
      LD_PRELOAD="$shim" "$@"
}
limited() {  # region-name, percent, command...
  local region=$1 percent=$2; shift 2
  env CUDA_DEVICE_SM_LIMIT="$percent" CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/$region.region" \
      LD_PRELOAD="$shim" "$@"
}

# Programs that hold something until told to stop (the client's hold, vmm-mapped): each runs with
# its stdin a FIFO that this shell keeps open, and ends at EOF, when hold_stop closes it.
declare -A held_pid=() held_fd=()
running() {  # pid: true while that process runs (a zombie has ended)
  local state
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
  [[ -n "$state" && "$state" != Z ]]
}
hold_start() {  # name, command...: starts it and waits (60 s at most) for its "ready"
  local name=$1 fd deadline=$((SECONDS + 60))
  shift
  mkfifo "$work/$name.in"
  # The child closes the other holders' FIFOs, so that each one's EOF comes when its own closes.
  (
    for fd in "${held_fd[@]}"; do exec {fd}>&-; done
    exec "$@"
  ) <"$work/$name.in" >"$work/$name.out" 2>&1 &
  held_pid[$name]=$!
  exec {fd}>"$work/$name.in"
  held_fd[$name]=$fd
  until grep -qx ready "$work/$name.out"; do
    if ! running "${held_pid[$name]}" || ((SECONDS >= deadline)); then return 1; fi
    sleep 0.1
  done
}
hold_stop() {  # name: closes its stdin, waits (30 s at most) for it to end; its exit status
  local name=$1 fd=${held_fd[$1]} pid=${held_pid[$1]} deadline=$((SECONDS + 30))
  exec {fd}>&-
  unset "held_fd[$name]"
  while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if running "$pid"; then kill "$pid"; fi
  wait "$pid"
}

# nvidia-smi's per-process view of the suite's GPU (GPU 0).
compute_apps() {  # lines "pid MiB" (MiB: a number, or what nvidia-smi says instead)
  nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits \
      2>/dev/null | awk -F', *' -v gpu="$gpu_uuid" '$1 == gpu { print $2, $3 }'
}
listed_pids() {  # the pids compute_apps lists, on one line
  compute_apps | awk '{ printf "%s ", $1 }'
}
# "PID MiB": the most of 5 samples (0.2 s apart) that nvidia-smi shows for process `pid`; where it
# knows the process by another pid namespace's pid (the suite in a container: NVML reports the
# node's pids), the one process it lists that it did not list before. Nothing when neither.
app_memory() {  # pid, pids listed before that process started
  local pid=$1 before=" $2 " samples=""
  for _ in 1 2 3 4 5; do
    samples+=$(compute_apps | awk -v pid="$pid" -v before="$before" '
      $1 == pid { own = $0 }
      index(before, " " $1 " ") == 0 { new[++count] = $0 }
      END { if (own != "") print own; else if (count == 1) print new[1] }')$'\n'
    sleep 0.2
  done
  awk '$2 ~ /^[0-9]+$/ && $2 + 0 >= most { most = $2 + 0; line = $1 " " $2 }
       END { if (line != "") print line }' <<<"$samples"
}
# The bytes a region charges process `pid` (over its devices), as `tessera status --json` shows
# them; nothing when it does not list the process.
region_bytes() {  # region path, pid
  "$tessera" status "$1" --json 2>/dev/null | grep -o "{\"pid\":$2,[^]]*]" | head -1 |
    grep -o '"memory_used_bytes":[0-9]*' | awk -F: '{ sum += $2; n++ } END { if (n) print sum }'
}
mib_up() {  # bytes: MiB, rounded up
  echo $((($1 + (1 << 20) - 1) >> 20))
}

echo "== (a) driver API: fill 2 MiB blocks under CUDA_DEVICE_MEMORY_LIMIT=4GiB"
for via in dlopen procaddress; do
  out=$(under_shim "fill-$via" "$client" "$via" fill 2M 2>&1)
  echo "$out" | sed 's/^/    /'
  out=$(tr '\n' ' ' <<<"$out")
  allocated=$(value allocated "$out"); refused=$(value refused "$out")
  free=$(value free "$out"); total=$(value total "$out"); device_total=$(value device_total "$out")
  nvml_total=$(value nvml_total "$out")
  if [[ -z "$allocated" || -z "$free" || -z "$total" ]]; then
    record FAIL "($via) the client ran and reported (see output above)"
    continue
  fi
  context=$((limit - free - allocated))
  check "refused == 2" "($via) refused with CUDA_ERROR_OUT_OF_MEMORY (got ${refused})"
  check "free < granule" \
    "($via) refused at the limit: allocated $((allocated >> 20)) MiB + context $((context >> 20)) MiB, $((free >> 10)) KiB left (< 2 MiB)"
  check "context > 0 && context <= (2 << 30)" \
    "($via) the context is charged: $((context >> 20)) MiB (0 < context <= 2 GiB)"
  check "total == limit && device_total == limit" \
    "($via) cuMemGetInfo total = ${total}, cuDeviceTotalMem = ${device_total} (4 GiB = ${limit})"
  if [[ -n "$nvml_total" ]]; then
    check "nvml_total == limit" "($via) NVML total = ${nvml_total}"
  fi
done

echo "== (b) PyTorch under the shim"
if ! python3 -c "import torch" >/dev/null 2>&1; then
  record SKIP "(torch) python3 cannot import torch"
else
  cat >"$work/torch_check.py" <<'PY'
import torch

gib = 1 << 30
oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
free, total = torch.cuda.mem_get_info()
print(f"total={total} free={free}")
below = torch.empty(gib, dtype=torch.uint8, device="cuda")
below.fill_(1)
torch.cuda.synchronize()
print(f"below={int(below[-1].item())}")
del below
torch.cuda.empty_cache()
try:
    beyond = torch.empty(5 * gib, dtype=torch.uint8, device="cuda")
    print("beyond=allocated")
except oom:
    print("beyond=oom")
blocks = []
try:
    while True:
        blocks.append(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
except oom:
    pass
print(f"filled={len(blocks) * (256 << 20)}")
PY
  out=$(under_shim torch python3 "$work/torch_check.py" 2>&1)
  echo "$out" | tail -20 | sed 's/^/    /'
  out=$(tr '\n' ' ' <<<"$out")
  total=$(value total "$out"); below=$(value below "$out"); beyond=$(value beyond "$out")
  filled=$(value filled "$out")
  check "${total:-0} == limit" "(torch) torch.cuda.mem_get_info() total = ${total:-none} (4 GiB)"
  check "${below:-0} == 1" "(torch) a 1 GiB tensor below the limit is allocated and written"
  check "$([[ "$beyond" == oom ]] && echo 1 || echo 0)" \
    "(torch) a 5 GiB tensor beyond the limit raises OutOfMemoryError (got ${beyond:-none})"
  check "${filled:-0} > 0 && ${filled:-0} <= limit" \
    "(torch) 256 MiB tensors until refused: $((${filled:-0} >> 20)) MiB (<= 4096 MiB)"
fi

echo "== (c) launch-bound loop: 100k empty kernels without the shim, with it, and at CUDA_DEVICE_SM_LIMIT=100"
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [[ -z "$nvcc" ]]; then
  record SKIP "(launch) nvcc not found"
elif ! "$nvcc" -O2 -o "$build/tessera-gpu-launch-loop" "$root/tests/gpu/launch_loop.cu" \
       >"$work/nvcc.log" 2>&1; then
  cat "$work/nvcc.log"
  record FAIL "(launch) tests/gpu/launch_loop.cu compiles with nvcc"
else
  loop="$build/tessera-gpu-launch-loop"
  best() { sort -g | head -1; }
  best_of() {  # key, runs...: the least value of key among the runs
    local key=$1 run; shift
    for run in "$@"; do value "$key" "$run"; done | best
  }
  # A run's figures against the direct one's: sets ratio_total, overhead_us (per launch, to
  # completion) and figures (the line's words).
  launch_figures() {  # direct submit, direct total, submit, total
    local ratio_submit
    ratio_submit=$(awk -v s="$3" -v d="$1" 'BEGIN { printf "%.3f", s / d }')
    ratio_total=$(awk -v s="$4" -v d="$2" 'BEGIN { printf "%.3f", s / d }')
    overhead_us=$(awk -v s="$4" -v d="$2" 'BEGIN { printf "%.3f", (s - d) / 1000 }')
    figures="submit $1 -> $3 ns (x${ratio_submit}), to completion $2 -> $4 ns (x${ratio_total}), ${overhead_us} us added per launch"
  }
  direct_runs=(); shim_runs=(); limiter_runs=()
  for round in 1 2 3 4 5; do  # alternate, so drift hits all alike; keep the best of each
    direct_runs+=("$("$loop" 100000 2>&1)")
    shim_runs+=("$(under_shim "launch-$round" "$loop" 100000 2>&1)")
    limiter_runs+=("$(limited "launch-limiter-$round" 100 "$loop" 100000 2>&1)")
  done
  printf '    direct:  %s\n' "${direct_runs[@]}"
  printf '    shim:    %s\n' "${shim_runs[@]}"
  printf '    at 100:  %s\n' "${limiter_runs[@]}"
  d_submit=$(best_of submit_ns "${direct_runs[@]}"); d_total=$(best_of total_ns "${direct_runs[@]}")
  s_submit=$(best_of submit_ns "${shim_runs[@]}"); s_total=$(best_of total_ns "${shim_runs[@]}")
  l_submit=$(best_of submit_ns "${limiter_runs[@]}")
  l_total=$(best_of total_ns "${limiter_runs[@]}")
  if [[ -z "$d_total" || -z "$s_total" ]]; then
    record FAIL "(launch) the launch loop ran (see output above)"
  else
    launch_figures "$d_submit" "$d_total" "$s_submit" "$s_total"
    within=$(awk -v r="$ratio_total" 'BEGIN { print (r <= 1.10) ? 1 : 0 }')
    check "within == 1" "(launch) per launch, no shim -> shim: ${figures} (x <= 1.10 to completion)"
  fi
  # The limiter's path at a share it never needs to enforce: what it costs per launch
  # (cuStreamIsCapturing, the bucket, two cuEventRecords) against no shim. A launch it held back
  # would cost tens of microseconds (an unmeasured launch is charged 100 us).
  if [[ -z "$d_total" || -z "$l_total" ]]; then
    record FAIL "(launch) the launch loop ran under CUDA_DEVICE_SM_LIMIT=100 (see output above)"
  else
    launch_figures "$d_submit" "$d_total" "$l_submit" "$l_total"
    within=$(awk -v o="$overhead_us" 'BEGIN { print (o <= 10) ? 1 : 0 }')
    check "within == 1" \
      "(launch) per launch, no shim -> CUDA_DEVICE_SM_LIMIT=100 (the limiter's path): ${figures} (<= 10 us added)"
  fi
fi

echo "== (d) compute limiter: saturating kernel loops under CUDA_DEVICE_SM_LIMIT"
if [[ -z "$nvcc" ]]; then
  record SKIP "(limiter) nvcc not found"
elif ! "$nvcc" -O2 -o "$build/tessera-gpu-saturate" "$root/tests/gpu/saturate.cu" \
       >"$work/nvcc-saturate.log" 2>&1; then
  cat "$work/nvcc-saturate.log"
  record FAIL "(limiter) tests/gpu/saturate.cu compiles with nvcc"
else
  saturate="$build/tessera-gpu-saturate"
  for percent in 25 50 75; do
    # nvidia-smi samples the device's utilisation while the loop runs (seconds 2 to 5).
    (sleep 2; for _ in 1 2 3; do nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -i 0; sleep 1; done) >"$work/util-$percent" 2>/dev/null &
    sampler=$!
    out=$(limited "sat-$percent" "$percent" "$saturate" 6 2>&1)
    wait "$sampler"
    echo "    $out"
    share=$(value share_permille "$out")
    util=$(sort -n "$work/util-$percent" | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : -1) }')
    check "${share:-0} >= ($percent - 5) * 10 && ${share:-0} <= ($percent + 5) * 10" \
      "(limiter) alone at ${percent} %: the loop got $((${share:-0} / 10)).$((${share:-0} % 10)) % of the device (events)"
    check "${util:--1} >= $percent - 5 && ${util:--1} <= $percent + 5" \
      "(limiter) alone at ${percent} %: nvidia-smi utilisation ${util:-none} % (median of 3 samples)"
  done
  limited "pair-30" 30 "$saturate" 6 >"$work/pair-30.out" 2>&1 &
  first=$!
  limited "pair-70" 70 "$saturate" 6 >"$work/pair-70.out" 2>&1
  wait "$first"
  s30=$(value share_permille "$(cat "$work/pair-30.out")")
  s70=$(value share_permille "$(cat "$work/pair-70.out")")
  echo "    30 %: $(cat "$work/pair-30.out")"
  echo "    70 %: $(cat "$work/pair-70.out")"
  check "${s30:-0} >= 250 && ${s30:-0} <= 350 && ${s70:-0} >= 650 && ${s70:-0} <= 750" \
    "(limiter) two containers at 30/70 on one GPU got ${s30:-none}/${s70:-none} per mille"
fi

echo "== (e) PyTorch training steps under CUDA_DEVICE_SM_LIMIT=50"
if ! python3 -c "import torch" >/dev/null 2>&1; then
  record SKIP "(torch limiter) python3 cannot import torch"
else
  cat >"$work/torch_train.py" <<'PY'
import time
import torch

model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(8)]).cuda()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
data = torch.randn(512, 4096, device="cuda")
def step():
    optimizer.zero_grad()
    model(data).square().mean().backward()
    optimizer.step()
for _ in range(10):
    step()
torch.cuda.synchronize()
steps, start = 0, time.monotonic()
while time.monotonic() - start < 5:
    step()
    steps += 1
torch.cuda.synchronize()
print(f"steps_per_s={steps / (time.monotonic() - start):.2f}")
PY
  free_rate=$(value steps_per_s "$(python3 "$work/torch_train.py" 2>&1)")
  limited_rate=$(value steps_per_s "$(limited torch-50 50 python3 "$work/torch_train.py" 2>&1)")
  ratio=$(awk -v l="${limited_rate:-0}" -v f="${free_rate:-0}" 'BEGIN { printf "%.3f", f > 0 ? l / f : 0 }')
  within=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.40 && r <= 0.60) ? 1 : 0 }')
  check "within == 1" \
    "(torch limiter) training steps/s ${free_rate:-none} unlimited, ${limited_rate:-none} at 50 % (x${ratio}; 0.40-0.60)"
fi

echo "== (f) CUDA graphs under a compute limit: PyTorch at 50 %, the driver API at 25 %"
if ! python3 -c "import torch" >/dev/null 2>&1; then
  record SKIP "(torch graph) python3 cannot import torch"
else
  graph_script="$root/tests/gpu/torch_graph.py"
  free_out=$(python3 "$graph_script" 4 2>&1)
  limited_out=$(under_shim torch-graph env CUDA_DEVICE_SM_LIMIT=50 python3 "$graph_script" 4 2>&1)
  tail -n 5 <<<"$free_out" | sed 's/^/    no shim: /'
  tail -n 5 <<<"$limited_out" | sed 's/^/    at 50 %: /'
  free_out=$(tr '\n' ' ' <<<"$free_out")
  limited_out=$(tr '\n' ' ' <<<"$limited_out")
  capture=$(value capture "$limited_out")
  error_type=$(value error_type "$limited_out")
  check "$([[ "$capture" == ok ]] && echo 1 || echo 0)" \
    "(torch graph) under CUDA_DEVICE_SM_LIMIT=50 and 4 GiB, torch.cuda.graph captures eight matmuls in global mode: ${capture:-no answer}${error_type:+ (${error_type})}"
  max_diff=$(value max_diff "$limited_out")
  equal=$(value equal "$limited_out")
  same=$(awk -v d="${max_diff:-none}" 'BEGIN { print (d ~ /^[0-9.e+-]+$/ && d + 0 <= 1e-3) ? 1 : 0 }')
  check "$same == 1" \
    "(torch graph) a replay on new input gives the eager result: max |difference| ${max_diff:-none} (<= 1e-3; bitwise equal: ${equal:-none})"
  free_rate=$(value replays_per_s "$free_out")
  limited_rate=$(value replays_per_s "$limited_out")
  ratio=$(awk -v l="${limited_rate:-0}" -v f="${free_rate:-0}" 'BEGIN { printf "%.3f", f > 0 ? l / f : 0 }')
  within=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.40 && r <= 0.60) ? 1 : 0 }')
  check "$within == 1" \
    "(torch graph) graph replays/s ${free_rate:-none} without the shim, ${limited_rate:-none} at 50 % (x${ratio}; 0.40-0.60)"
fi
if [[ -z "$nvcc" ]]; then
  record SKIP "(graph capture) nvcc not found"
else
  # Linked against libcuda (the toolkit's stub where there is one; the driver's at run time).
  link=()
  cuda_home=$(cd "$(dirname "$nvcc")/.." && pwd)
  for stubs in "$cuda_home"/lib64/stubs "$cuda_home"/targets/*/lib/stubs; do
    [[ -d "$stubs" ]] && link+=("-L$stubs")
  done
  if ! "$nvcc" -O2 -o "$build/tessera-gpu-graph-capture" "$root/tests/gpu/graph_capture.cu" \
         "${link[@]}" -lcuda >"$work/nvcc-graph.log" 2>&1; then
    cat "$work/nvcc-graph.log"
    record FAIL "(graph capture) tests/gpu/graph_capture.cu compiles with nvcc"
  else
    graph_capture="$build/tessera-gpu-graph-capture"
    free_out=$("$graph_capture" 3 2>&1)
    out=$(limited graph-25 25 "$graph_capture" 6 2>&1)
    sed 's/^/    no shim: /' <<<"$free_out"
    sed 's/^/    at 25 %: /' <<<"$out"
    out=$(tr '\n' ' ' <<<"$out")
    begin=$(value begin "$out"); launch=$(value launch "$out"); end=$(value end "$out")
    instantiate=$(value instantiate "$out"); nodes=$(value nodes "$out")
    errors=$(value errors "$out")
    check "${begin:--1} == 0 && ${launch:--1} == 0 && ${end:--1} == 0 && ${instantiate:--1} == 0 && ${nodes:--1} == 4 && ${errors:--1} == 0" \
      "(graph capture) driver API under CUDA_DEVICE_SM_LIMIT=25: cuStreamBeginCapture (global) ${begin:-none}, cuLaunchKernel x4 ${launch:-none}, cuStreamEndCapture ${end:-none}, cuGraphInstantiate ${instantiate:-none} (0 = success); ${nodes:-none} nodes captured (4); cuGraphLaunch errors ${errors:-none}"
    share=$(value share_permille "$out")
    free_share=$(value share_permille "$free_out")
    check "${share:-0} >= 200 && ${share:-0} <= 300" \
      "(graph capture) cuGraphLaunch at 25 %: the graphs got $((${share:-0} / 10)).$((${share:-0} % 10)) % of the device by their kernels' own time (20-30; $((${free_share:-0} / 10)) % without the shim)"
  fi
fi

echo "== (g) VMM: handles released while mapped, under CUDA_DEVICE_MEMORY_LIMIT=1GiB"
vmm_limit=$((1 << 30))
# `vmm-mapped 8 SIZE` in a region of its own; its checks. Sets vmm_expected: how many SIZE blocks
# fit beside the context that the region charged.
vmm_check() {  # SIZE as the client reads it (512M), the same in bytes
  local size=$1 bytes=$2 name="vmm-$1" before charged app out created refused after_unmap
  local other_errors context context_words
  vmm_expected=1
  before=$(listed_pids)
  if ! hold_start "$name" env CUDA_DEVICE_MEMORY_LIMIT=1GiB \
         CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/$name.region" LD_PRELOAD="$shim" \
         "$client" dlopen vmm-mapped 8 "$size"; then
    hold_stop "$name"
    sed 's/^/    /' "$work/$name.out"
    record FAIL "(vmm) vmm-mapped 8 $size ran to \"ready\" (see output above)"
    return
  fi
  charged=$(region_bytes "$work/$name.region" "${held_pid[$name]}")
  app=$(app_memory "${held_pid[$name]}" "$before")
  hold_stop "$name"
  sed 's/^/    /' "$work/$name.out"
  out=$(tr '\n' ' ' <"$work/$name.out")
  created=$(value created "$out"); refused=$(value refused "$out")
  after_unmap=$(value after_unmap "$out"); other_errors=$(value other_errors "$out")
  context=0
  context_words="the region's charge unread: 1 expected"
  if [[ -n "$charged" && -n "$created" ]]; then
    context=$((charged - created * bytes))
    ((context < 0)) && context=0
    vmm_expected=$(((vmm_limit - context) / bytes))
    ((vmm_expected < 0)) && vmm_expected=0
    ((vmm_expected > 8)) && vmm_expected=8
    context_words="the region charges $((charged >> 20)) MiB, of which the context $(mib_up "$context") MiB"
  fi
  check "${created:--1} == vmm_expected && ${refused:--1} == 8 - vmm_expected" \
    "(vmm) 8 x cuMemCreate of $((bytes >> 20)) MiB, each mapped and its handle released, under 1 GiB: ${created:-none} created, ${refused:-none} refused (${vmm_expected} and $((8 - vmm_expected)) expected; ${context_words})"
  check "${other_errors:--1} == 0 && (vmm_expected == 0 || ${after_unmap:--1} == 0)" \
    "(vmm) once unmapped, $((bytes >> 20)) MiB is created again (result ${after_unmap:-none}); other errors ${other_errors:-none}"
  if [[ -z "$app" ]]; then
    record SKIP "(vmm) nvidia-smi lists no memory for the process (not listed, or N/A)"
  else
    check "${app#* } <= 1024 + $(mib_up "$context")" \
      "(vmm) nvidia-smi shows ${app#* } MiB for the process (its pid there ${app%% *}) while it holds its $((bytes >> 20)) MiB mappings (<= 1024 MiB + the context's $(mib_up "$context") MiB)"
  fi
}
vmm_check 512M $((512 << 20))
if ((vmm_expected == 0)); then
  # Nothing of 512 MiB fits: what the release of a mapped handle must not free goes untested.
  echo "    the context leaves less than 512 MiB of 1 GiB: again with 256 MiB blocks"
  vmm_check 256M $((256 << 20))
fi

echo "== (h) the context's charge against NVML without the shim"
context_mib=""  # what NVML shows for a context without the shim; (i) uses it
direct="" charged="" shimmed="" ready=1
before=$(listed_pids)
if hold_start context-direct "$client" dlopen hold 0; then
  direct=$(app_memory "${held_pid[context-direct]}" "$before")
else
  ready=0
fi
hold_stop context-direct
sed 's/^/    no shim: /' "$work/context-direct.out"
before=$(listed_pids)
if hold_start context-shim env CUDA_DEVICE_MEMORY_LIMIT=4GiB \
     CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/context.region" LD_PRELOAD="$shim" \
     "$client" dlopen hold 0; then
  charged=$(region_bytes "$work/context.region" "${held_pid[context-shim]}")
  shimmed=$(app_memory "${held_pid[context-shim]}" "$before")
else
  ready=0
fi
hold_stop context-shim
sed 's/^/    shim:    /' "$work/context-shim.out"
if ((ready == 0)); then
  record FAIL "(context) the client's hold 0 ran to \"ready\" without and with the shim (see output above)"
elif [[ -z "$direct" ]]; then
  record SKIP "(context) nvidia-smi lists no memory for the client without the shim (not listed, or N/A): nothing to compare the charge with"
elif [[ -z "$charged" ]]; then
  record FAIL "(context) tessera status --json lists no charge for the client in its region"
else
  context_mib=${direct#* }
  shimmed_words="not listed with it"
  [[ -n "$shimmed" ]] && shimmed_words="${shimmed#* } MiB with it"
  difference=$((charged - (context_mib << 20)))
  ((difference < 0)) && difference=$((-difference))
  check "difference <= (2 << 20)" \
    "(context) the shim charged $(awk -v b="$charged" 'BEGIN { printf "%.1f", b / 1048576 }') MiB for a context (tessera status); nvidia-smi shows ${context_mib} MiB for the client without the shim (nvidia-smi's pid ${direct%% *}), ${shimmed_words}; $(awk -v b="$difference" 'BEGIN { printf "%.1f", b / 1048576 }') MiB apart (<= 2)"
fi

echo "== (i) nvidia-smi inside the limit: a limits file, NVIDIA_VISIBLE_DEVICES, LD_PRELOAD"
limits_file="$work/limits"
printf 'TESSERA_DEVICE_UUID_0=%s\nCUDA_DEVICE_MEMORY_LIMIT_0=4096m\n' "$gpu_uuid" >"$limits_file"
container=(env TESSERA_LIMITS_FILE="$limits_file" NVIDIA_VISIBLE_DEVICES="$gpu_uuid"
           CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/container.region" LD_PRELOAD="$shim")
smi_memory() {  # command prefix...: "total used" (MiB) of the suite's GPU, as nvidia-smi under it says
  "$@" nvidia-smi --query-gpu=memory.total,memory.used --format=csv,noheader,nounits \
      --id="$gpu_uuid" 2>/dev/null | awk -F', *' 'NR == 1 { print $1, $2 }'
}
smi_pids() {  # command prefix...: the pids nvidia-smi under it lists, sorted, on one line
  "$@" nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null |
    tr -d ' ' | grep -x '[0-9][0-9]*' | sort -n | paste -sd ' ' -
}
if ldd "$(command -v nvidia-smi)" 2>/dev/null | grep -q libnvidia-ml; then
  links="ldd lists libnvidia-ml"
else
  links="ldd lists no libnvidia-ml: linked statically or opened by hand"
fi
host=$(smi_memory)
inside=$(smi_memory "${container[@]}")
inside_total=${inside%% *}; inside_used=${inside#* }
if [[ -z "$gpu_uuid" ]]; then
  record SKIP "(nvidia-smi) nvidia-smi gave no UUID for GPU 0"
elif [[ -e /etc/tessera/limits ]]; then
  record SKIP "(nvidia-smi) /etc/tessera/limits exists here: it, not TESSERA_LIMITS_FILE, governs the shim"
elif [[ -z "$inside" || "$inside_total" == "${host%% *}" ]]; then
  record SKIP "(nvidia-smi) LD_PRELOAD does not reach nvidia-smi's NVML: memory.total ${inside_total:-none} MiB under the shim, ${host%% *} MiB without ($links)"
else
  check "$([[ "$inside_total" == 4096 ]] && echo 1 || echo 0)" \
    "(nvidia-smi) under a limits file of 4096m, before any CUDA process: memory.total ${inside_total} MiB (4096), used ${inside_used} MiB; without the shim ${host%% *} MiB ($links)"
  # A client in the container holds 1 GiB; another, outside it, holds a context.
  if hold_start container-outside "$client" dlopen hold 0 &&
     hold_start container-inside "${container[@]}" "$client" dlopen hold 1G; then
    inside_pid=${held_pid[container-inside]}
    outside_pid=${held_pid[container-outside]}
    held=$(smi_memory "${container[@]}")
    held_used=${held#* }
    charged=$(region_bytes "$work/container.region" "$inside_pid")
    if [[ -n "$charged" ]]; then
      context=$(mib_up $((charged > (1 << 30) ? charged - (1 << 30) : 0)))
      context_words="the context as charged, ${context} MiB"
    elif [[ -n "$context_mib" ]]; then
      context=$context_mib
      context_words="the context as NVML showed it in (h), ${context} MiB"
    else
      context=2048
      context_words="the context unknown: 2048 MiB allowed"
    fi
    used_mib=$([[ "$held_used" =~ ^[0-9]+$ ]] && echo "$held_used" || echo -1)
    check "$used_mib >= 1024 && $used_mib <= 1024 + $context" \
      "(nvidia-smi) memory.used while a client in the container holds 1 GiB: ${held_used:-none} MiB (1024 to 1024 + ${context_words})"
    host_listed=$(smi_pids)
    inside_listed=$(smi_pids "${container[@]}")
    if [[ " $host_listed " != *" $inside_pid "* || " $host_listed " != *" $outside_pid "* ]]; then
      record SKIP "(nvidia-smi) nvidia-smi lists pids ${host_listed:-none}, not this shell's ${inside_pid} and ${outside_pid} (another pid namespace): the container's processes cannot be told apart"
    else
      check "$([[ "$inside_listed" == "$inside_pid" ]] && echo 1 || echo 0)" \
        "(nvidia-smi) --query-compute-apps under the container's environment lists ${inside_listed:-none} (only the container's ${inside_pid} expected; ${outside_pid} is outside it; all: ${host_listed})"
    fi
  else
    sed 's/^/    /' "$work/container-outside.out" "$work/container-inside.out" 2>/dev/null
    record FAIL "(nvidia-smi) the clients inside and outside the container ran to \"ready\" (see output above)"
  fi
  for name in container-inside container-outside; do
    [[ -n "${held_fd[$name]:-}" ]] && hold_stop "$name" >/dev/null
  done
fi

summary="$passed passed, $failed failed, $skipped skipped"
echo "SUMMARY: $summary"
report() {
  echo "### GPU suite, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo '```'
  echo "$gpu_info"
  echo '```'
  echo
  echo "| result | check |"
  echo "|---|---|"
  printf '%s\n' "${results[@]}"
  echo
  echo "Summary: $summary."
}
echo
report
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT" && report >"$OUT/gpu-results.md"
fi
((failed == 0))
