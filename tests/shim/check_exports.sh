#!/usr/bin/env bash
# The shim exports exactly the hooks listed in hooks.def plus dlsym, and does not link libcuda.
set -euo pipefail
library=$1 hooks=$2
expected=$( (grep -oE '^TESSERA_(CUDA|NVML)_HOOK\([A-Za-z0-9_]+\)' "$hooks" |
             sed -E 's/.*\((.*)\)/\1/'; echo dlsym) | sort)
actual=$(nm -D --defined-only "$library" | awk '$2 ~ /^[TtWi]$/ {print $3}' | sed 's/@.*//' | sort)
if [ "$expected" != "$actual" ]; then
  echo "exports of $library differ from hooks.def (< expected, > actual):"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
if readelf -d "$library" | grep -E 'NEEDED.*(libcuda|libnvidia-ml)'; then
  echo "$library links the driver; it must dlopen it"
  exit 1
fi
echo "exports: $(echo "$expected" | wc -l) symbols, exactly hooks.def + dlsym; driver not linked"
