#!/usr/bin/env bash
# The GPU suite: the shim on a real NVIDIA driver. Builds the project into build-gpu (Release),
# then checks
#   (a) a driver-API program allocating 2 MiB blocks under CUDA_DEVICE_MEMORY_LIMIT=4GiB is
#       refused at the limit (within one 2 MiB granule once its context is charged), and
#       cuMemGetInfo / cuDeviceTotalMem / NVML report 4 GiB in total;
#   (b) PyTorch under the shim: mem_get_info() totals 4 GiB, an allocation beyond the limit raises
#       OutOfMemoryError, one below it works (skipped if torch is not importable);
#   (c) a launch-bound loop of 100k empty kernels, with and without the shim: the overhead ratio
#       (skipped if nvcc is missing);
#   (d) the compute limiter: a saturating kernel loop (saturate.cu) alone under
#       CUDA_DEVICE_SM_LIMIT=25/50/75 gets its limit within 5 points, by its own event-calibrated
#       kernel count and by nvidia-smi's GPU utilisation; two processes in two containers at 30
#       and 70 get 30 and 70 within 5 points (skipped if nvcc is missing);
#   (e) a PyTorch training step (a large MLP) under CUDA_DEVICE_SM_LIMIT=50 runs at 50 % +-10 of
#       its unlimited step rate (skipped if torch is not importable).
# Prints PASS/FAIL lines and a markdown block (also written to $OUT/gpu-results.md when OUT is
# set; paste it into docs/gpu-results.md). Exits 0 with a "no GPU" message where there is no
# NVIDIA GPU, 1 if any check failed. Changes no GPU setting.
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
trap 'rm -rf "$work"' EXIT
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
       cmake --build "$build" -j "${JOBS:-$(nproc)}" --target tessera-cuda tessera-cuda-client \
         >"$work/build.log" 2>&1; }; then
  tail -n 30 "$work/configure.log" "$work/build.log" 2>/dev/null || true
  record FAIL "build of tessera-cuda and tessera-cuda-client"
  echo "SUMMARY: build failed"
  exit 1
fi
shim="$build/lib/libtessera-cuda.so"
client="$build/bin/tessera-cuda-client"

# Everything under the shim runs with this limit and a region of its own.
under_shim() {  # region-name, command...
  local region=$1; shift
  env CUDA_DEVICE_MEMORY_LIMIT=4GiB CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/$region.region" \
      LD_PRELOAD="$shim" "$@"
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

echo "== (c) launch-bound loop: 100k empty kernels, without and with the shim"
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
  direct_runs=(); shim_runs=()
  for round in 1 2 3 4 5; do  # alternate, so drift hits both alike; keep the best of each
    direct_runs+=("$("$loop" 100000 2>&1)")
    shim_runs+=("$(under_shim "launch-$round" "$loop" 100000 2>&1)")
  done
  printf '    direct: %s\n' "${direct_runs[@]}"
  printf '    shim:   %s\n' "${shim_runs[@]}"
  d_submit=$(for r in "${direct_runs[@]}"; do value submit_ns "$r"; done | best)
  d_total=$(for r in "${direct_runs[@]}"; do value total_ns "$r"; done | best)
  s_submit=$(for r in "${shim_runs[@]}"; do value submit_ns "$r"; done | best)
  s_total=$(for r in "${shim_runs[@]}"; do value total_ns "$r"; done | best)
  if [[ -z "$d_total" || -z "$s_total" ]]; then
    record FAIL "(launch) the launch loop ran (see output above)"
  else
    ratio_submit=$(awk -v s="$s_submit" -v d="$d_submit" 'BEGIN { printf "%.3f", s / d }')
    ratio_total=$(awk -v s="$s_total" -v d="$d_total" 'BEGIN { printf "%.3f", s / d }')
    within=$(awk -v r="$ratio_total" 'BEGIN { print (r <= 1.10) ? 1 : 0 }')
    check "within == 1" \
      "(launch) per launch: submit ${d_submit} -> ${s_submit} ns (x${ratio_submit}), to completion ${d_total} -> ${s_total} ns (x${ratio_total}; <= 1.10)"
  fi
fi

echo "== (d) compute limiter: saturating kernel loops under CUDA_DEVICE_SM_LIMIT"
limited() {  # region-name, percent, command...
  local region=$1 percent=$2; shift 2
  env CUDA_DEVICE_SM_LIMIT="$percent" CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/$region.region" \
      LD_PRELOAD="$shim" "$@"
}
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
