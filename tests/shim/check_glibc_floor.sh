#!/usr/bin/env bash
# The shim loads on glibc 2.28 and newer: no symbol version newer than GLIBC_2.28, no C++ runtime
# (libstdc++, libgcc_s) of the host needed (src/shim/glibc_compat.cc).
# Usage: check_glibc_floor.sh LIBRARY [FLOOR]   (FLOOR: 2.28)
set -euo pipefail
library=$1 floor=${2:-2.28}
versions=$(objdump -T "$library" | grep -oE '\((GLIBC|GLIBCXX|CXXABI|GCC)_[0-9.]+\)' | tr -d '()' |
           sort -u)
if [ -z "$versions" ]; then
  echo "$library: objdump -T shows no symbol versions at all; is it a shared library?"
  exit 1
fi
status=0
newest=$(echo "$versions" | grep '^GLIBC_' | sed 's/^GLIBC_//' | sort -V | tail -1)
if [ "$(printf '%s\n%s\n' "$floor" "$newest" | sort -V | tail -1)" != "$floor" ]; then
  echo "$library needs glibc $newest, newer than the floor $floor; these symbols:"
  objdump -T "$library" | sed -nE 's/.*\(GLIBC_([0-9.]+)\)[[:space:]]+(.*)$/\1 \2/p' | sort -V |
    while read -r version symbol; do
      if [ "$(printf '%s\n%s\n' "$floor" "$version" | sort -V | tail -1)" != "$floor" ]; then
        echo "  ${symbol##* }@GLIBC_$version"
      fi
    done
  status=1
fi
if echo "$versions" | grep -qE '^(GLIBCXX|CXXABI|GCC)_'; then
  echo "$library needs the host's C++ runtime:" $(echo "$versions" | grep -E '^(GLIBCXX|CXXABI|GCC)_')
  status=1
fi
if readelf -d "$library" | grep -E 'NEEDED.*(libstdc\+\+|libgcc_s)'; then
  echo "$library links the host's C++ runtime; it must bring its own"
  status=1
fi
[ $status -eq 0 ] && echo "$library: newest glibc version GLIBC_$newest (floor $floor); no C++ runtime needed"
exit $status
