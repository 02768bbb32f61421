#!/usr/bin/env bash
# Instructions per call added by the shim, counted by callgrind on the fake GPU.
#
#   bench/shim/callgrind_launch.sh BUILD_DIR [launch|limited|alloc] [N1 N2]
#
# Runs tessera_shim_loop under callgrind with N1 and N2 iterations, without and with
# LD_PRELOAD=libtessera-cuda.so; (Ir(N2) - Ir(N1)) / (N2 - N1) is one iteration's cost with
# everything outside the loop (loading, cuInit, exit) cancelled. launch: cuLaunchKernel with no
# limit set. limited: the same with CUDA_DEVICE_SM_LIMIT=50 and a region file (the compute
# limiter's path: charge, events around the launch, polling; the kernel takes no device time, so
# it never waits). alloc: cuMemAlloc(1 MiB) + cuMemFree with CUDA_DEVICE_MEMORY_LIMIT=8GiB and a region
# file. Prints one line: "<mode> direct=<Ir> shim=<Ir> added=<Ir>" (instructions per iteration).
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR [launch|alloc] [N1 N2]}" && pwd)
mode=${2:-launch}
case "$mode" in
  launch|limited) n1=${3:-1000}; n2=${4:-11000} ;;
  alloc) n1=${3:-1000}; n2=${4:-6000} ;;
  *) echo "$0: mode is launch, limited or alloc, not '$mode'" >&2; exit 2 ;;
esac
loop="$build/bin/tessera_shim_loop"
shim="$build/lib/libtessera-cuda.so"
for file in "$loop" "$shim" "$build/fakegpu/libcuda.so.1"; do
  [[ -e "$file" ]] || { echo "$0: $file missing; build target tessera_shim_bench_all" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "$0: valgrind is not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/tessera-callgrind-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Total Ir of one run; a fresh fake-GPU state and region each time so runs do not see each other.
instructions() {  # preload count
  local preload=$1 count=$2 run="$work/run-$1-$2"
  mkdir -p "$run"
  local -a environment=(LD_LIBRARY_PATH="$build/fakegpu" TESSERA_FAKEGPU_STATE="$run/fakegpu.state")
  [[ "$preload" == shim ]] && environment+=(LD_PRELOAD="$shim")
  [[ "$mode" == alloc ]] && environment+=(CUDA_DEVICE_MEMORY_LIMIT=8GiB
                                          CUDA_DEVICE_MEMORY_SHARED_CACHE="$run/region")
  [[ "$mode" == limited ]] && environment+=(CUDA_DEVICE_SM_LIMIT=50
                                            CUDA_DEVICE_MEMORY_SHARED_CACHE="$run/region")
  env "${environment[@]}" valgrind --tool=callgrind --callgrind-out-file="$run/out" \
    "$loop" "${mode/limited/launch}" "$count" >"$run/log" 2>&1 || { cat "$run/log" >&2; exit 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$run/out"
}

per_iteration() {  # preload
  local first second
  first=$(instructions "$1" "$n1")
  second=$(instructions "$1" "$n2")
  awk -v a="$first" -v b="$second" -v n1="$n1" -v n2="$n2" 'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }'
}

direct=$(per_iteration direct)
shimmed=$(per_iteration shim)
added=$(awk -v a="$direct" -v b="$shimmed" 'BEGIN { printf "%.1f", b - a }')
echo "$mode direct=$direct shim=$shimmed added=$added n1=$n1 n2=$n2"
