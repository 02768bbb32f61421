#!/usr/bin/env bash
# The Tessera demo on the fake GPU: three processes under different memory limits share one GPU,
# one is refused beyond its limit, `tessera status` shows the picture, one is killed and its
# memory comes back. Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
tessera="$build/bin/tessera"
client="$build/bin/tessera-cuda-client"
work=$(mktemp -d /tmp/tessera-demo-XXXXXX)
# The fake GPU's node: exactly one 80 GiB GPU, as the demo says.
echo 'device name="Tessera Fake H100" memory=80GiB sms=132 context_memory=256MiB' \
  >"$work/fakegpu.conf"
export LD_LIBRARY_PATH="$build/fakegpu" TESSERA_FAKEGPU_STATE="$work/fakegpu.state"
export TESSERA_FAKEGPU_CONFIG="$work/fakegpu.conf"
export TESSERA_REGION_DIR="$work/regions"
mkdir -p "$TESSERA_REGION_DIR"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }
field() { grep -o "$2=[0-9-]*" "$1" | tail -n 1 | cut -d= -f2; }

# start NAME LIMIT: a process under LIMIT that allocates 256 MiB blocks until refused, then holds.
# Its region is named, so it outlives the process and `tessera status` can show the reclaim.
start() {
  local name=$1 limit=$2
  mkfifo "$work/$name.in"
  "$tessera" run --gpu-memory "$limit" --region "$TESSERA_REGION_DIR/$name.region" -- \
    "$client" dlopen hold 1000G 256M \
    <"$work/$name.in" >"$work/$name.out" 2>&1 &
  pids+=($!)
  exec {fd}>"$work/$name.in"  # holding the pipe open keeps the process alive
  eval "hold_$name=$fd"
  for _ in $(seq 200); do grep -q ready "$work/$name.out" && break; sleep 0.05; done
  grep -q ready "$work/$name.out" || { cat "$work/$name.out"; echo "demo: $name did not start"; exit 1; }
  local allocated result
  allocated=$(field "$work/$name.out" allocated)
  result=$(field "$work/$name.out" result)
  echo "   $name, limit $limit: got $(gib "$allocated") in 256 MiB blocks (its CUDA context took" \
       "256 MiB more); the next block: error $result, CUDA_ERROR_OUT_OF_MEMORY"
}

echo "Tessera demo: one fake 80 GiB GPU (the fake driver in $build/fakegpu), three processes,"
echo "three memory limits."
echo
echo "1. Each process allocates until Tessera refuses it at its limit:"
start A 4GiB
start B 8GiB
start C 2GiB
echo
echo "2. tessera status shows each limit, each use and each process's share:"
echo
"$tessera" status | sed 's/^/   /'
echo
victim=$(pgrep -P "${pids[1]}")
echo "3. B (pid $victim) is killed with SIGKILL, mid-run, holding 8 GiB."
kill -KILL "$victim"
for _ in $(seq 100); do kill -0 "$victim" 2>/dev/null || break; sleep 0.02; done
echo "   The next look at its region reclaims what it held:"
echo
"$tessera" status "$TESSERA_REGION_DIR/B.region" | sed 's/^/   /'
echo
echo "B's 8 GiB is back; A and C kept theirs. 'make test' checks the rest, among it processes"
echo "racing for the last bytes and 1,000 kills mid-allocation."
