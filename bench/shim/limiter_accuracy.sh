#!/usr/bin/env bash
# The compute limiter's accuracy on the fake GPU (docs/benchmarks.md, "Compute limiter").
#
#   bench/shim/limiter_accuracy.sh BUILD_DIR [WINDOW_MS]
#   DRIVER_VERSION=12020 bench/shim/limiter_accuracy.sh BUILD_DIR ...   (an older driver: the fake's
#                                                        `driver version=`; default 13000)
#
# Saturating workloads (tessera-limiter-client: busy_us_1000 kernels, two in flight) under
# LD_PRELOAD=libtessera-cuda.so, each container with its own region, all on one fake node:
#   alone   10, 25, 50 and 75 % at once, each alone on its own device, plus one without a limit
#           (cuLaunchKernel; mixed: one function at 1 and 10 blocks; capture: graphs captured
#           every 50 launches and replayed)
#   shared  10/90 and 25/25/50 on one device, through cuLaunchKernel, cuLaunchKernelEx, cuGraphLaunch
# Each runs 1 s, then is measured over WINDOW_MS (default 5000). Prints one line per container:
#   <scenario> <path> limit=<L> achieved=<A> error=<A-L> settle_ms=<S> nvml=<N>
# achieved: device time of its kernels (by the fake's timeline) over the window, percent.
# settle_ms: the start of the first 250 ms bucket from which every bucket up to the end of the
# window is within 3 points of the limit (alone only; shared shares also move with the neighbour).
# nvml: the fake NVML's smUtil for the process over the last second.
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR [WINDOW_MS]}" && pwd)
window=${2:-5000}
warmup=1000
client="$build/bin/tessera-limiter-client"
shim="$build/lib/libtessera-cuda.so"
for file in "$client" "$shim" "$build/fakegpu/libcuda.so.1"; do
  [[ -e "$file" ]] || { echo "$0: $file missing; build tessera-limiter-client and tessera-cuda" >&2; exit 2; }
done
work=$(mktemp -d /tmp/tessera-limiter-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
{
  [[ -z "${DRIVER_VERSION:-}" ]] || echo "driver version=$DRIVER_VERSION"
  for i in 0 1 2 3 4; do echo "device memory=16GiB context_memory=32MiB"; done
} >"$work/gpus.conf"

# run SCENARIO PATH "NAME:LIMIT:DEVICE ..." (LIMIT 0: none)
run() {
  local scenario=$1 path=$2 specs=$3 run="$work/$1-$2"
  mkdir -p "$run"
  mkfifo "$run/go"
  exec 3<>"$run/go"  # held open (read-write: no blocking) until every client is ready
  local -a names=()
  for spec in $specs; do
    IFS=: read -r name limit device <<<"$spec"
    names+=("$name:$limit:$device")
    local -a environment=(LD_LIBRARY_PATH="$build/fakegpu" LD_PRELOAD="$shim"
                          TESSERA_FAKEGPU_CONFIG="$work/gpus.conf" TESSERA_FAKEGPU_STATE="$run/state"
                          CUDA_DEVICE_MEMORY_SHARED_CACHE="$run/region-$name")
    [[ "$limit" != 0 ]] && environment+=(CUDA_DEVICE_SM_LIMIT="$limit")
    env "${environment[@]}" "$client" "$path" 1000 "$warmup" "$window" "$device" \
      <"$run/go" >"$run/$name.out" 2>&1 3>&- &
  done
  for entry in "${names[@]}"; do
    IFS=: read -r name limit device <<<"$entry"
    until grep -q '^ready' "$run/$name.out" 2>/dev/null; do sleep 0.05; done
  done
  exec 3>&-  # the last writer goes: every client sees EOF on stdin and starts
  wait
  for entry in "${names[@]}"; do
    IFS=: read -r name limit device <<<"$entry"
    awk -v scenario="$scenario" -v path="$path" -v limit="$limit" -v warmup="$warmup" \
        -v window="$window" -v alone="$([[ $scenario == alone ]] && echo 1 || echo 0)" '
      /share_permille=/ { for (i = 1; i <= NF; i++) if ($i ~ /^share_permille=/) { split($i, f, "="); share = f[2] / 10 } }
      /^buckets=/ { sub("buckets=", ""); n = split($0, b, ",") }
      /^nvml_sm=/ { split($0, f, "="); nvml = f[2] }
      END {
        settle = "-"
        if (alone == 1 && limit > 0) {
          last = int((warmup + window) / 250)
          settle = "never"
          for (s = 1; s <= last; s++) {
            ok = 1
            for (i = s; i <= last; i++) if (b[i] / 10 < limit - 3 || b[i] / 10 > limit + 3) ok = 0
            if (ok) { settle = (s - 1) * 250; break }
          }
        }
        printf "%s %s limit=%s achieved=%.1f error=%+.1f settle_ms=%s nvml=%s\n", scenario, path,
               (limit == 0 ? "none" : limit), share, (limit == 0 ? 0 : share - limit), settle, nvml
      }' "$run/$name.out"
  done
}

run alone launch "a10:10:0 a25:25:1 a50:50:2 a75:75:3 free:0:4"
run alone mixed "a10:10:0 a25:25:1 a50:50:2 a75:75:3 free:0:4"
run alone capture "a10:10:0 a25:25:1 a50:50:2 a75:75:3 free:0:4"
for path in launch ex graph; do
  run shared-10-90 "$path" "s10:10:0 s90:90:0"
  run shared-25-25-50 "$path" "t25a:25:0 t25b:25:0 t50:50:0"
done
