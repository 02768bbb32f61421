#!/usr/bin/env bash
# Reproduces docs/benchmarks.md's "Shim hook cost" on the fake GPU: builds the benchmark targets in
# BUILD_DIR (configured already, e.g. `cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release`),
# counts instructions per call with callgrind, and times each call with Google Benchmark, without
# and with LD_PRELOAD=libtessera-cuda.so. Usage: scripts/bench-shim.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build-bench}" && pwd)
cmake --build "$build" -j "${JOBS:-2}" --target tessera_shim_bench_all >/dev/null

echo "## Instructions per call (callgrind; direct = fake driver only)"
"$root/bench/shim/callgrind_launch.sh" "$build" launch
"$root/bench/shim/callgrind_launch.sh" "$build" alloc

work=$(mktemp -d /tmp/tessera-bench-shim-XXXXXX)
trap 'rm -rf "$work"' EXIT
# Wall clock: median of 5 repetitions, pinned to one CPU when taskset exists (a shared machine
# is noisy; compare the two rows of one run, not numbers across runs).
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
run_bench() {  # label, extra environment...
  local label=$1; shift
  echo "## $label"
  env LD_LIBRARY_PATH="$build/fakegpu" TESSERA_FAKEGPU_STATE="$work/$label.state" \
      CUDA_DEVICE_MEMORY_LIMIT=8GiB CUDA_DEVICE_MEMORY_SHARED_CACHE="$work/$label.region" "$@" \
      "${pin[@]}" "$build/bin/tessera_shim_bench" --benchmark_repetitions=5 \
      --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 2>/dev/null |
    grep -E '^(BM_|Benchmark)'
}
run_bench direct
run_bench shim LD_PRELOAD="$build/lib/libtessera-cuda.so"
