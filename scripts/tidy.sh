#!/usr/bin/env bash
# clang-tidy (.clang-tidy) over every C++ file of src/, each warning an error: prints the
# diagnostics once each and fails when there are any. Needs BUILD_DIR's compile_commands.json and
# its generated headers (a built tree). Usage: scripts/tidy.sh BUILD_DIR [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: scripts/tidy.sh BUILD_DIR [JOBS]}
jobs=${2:-$(nproc)}
if [[ ! -f "$build/compile_commands.json" ]]; then
  echo "tidy: $build/compile_commands.json is missing; build first (make build)" >&2
  exit 2
fi
mapfile -t files < <(git ls-files 'src/*.cc' | sed "s|^|$PWD/|")
log="$build/tidy.log"
status=0
run-clang-tidy -p "$build" -j "$jobs" -quiet "${files[@]}" > "$log" 2>&1 || status=$?
# The diagnostics without colour, each once (a header's is reported by every file including it).
diagnostics=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^/.*: (warning|error):' | sort -u || true)
if [[ $status -ne 0 || -n "$diagnostics" ]]; then
  if [[ -n "$diagnostics" ]]; then
    echo "$diagnostics"
    echo "tidy: $(echo "$diagnostics" | wc -l) diagnostics in ${#files[@]} files (full log: $log)"
  else
    tail -n 40 "$log"
    echo "tidy: run-clang-tidy failed (exit $status; full log: $log)"
  fi
  exit 1
fi
echo "tidy: ${#files[@]} files of src/, no warnings"
