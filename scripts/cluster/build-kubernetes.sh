#!/usr/bin/env bash
# Builds the local cluster's Kubernetes components from Debian's `kubernetes` source package
# (1.20.2): kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, and the cluster's
# container runtime (tessera-cri, a Go program placed inside the tree so that it builds against
# the tree's CRI packages). Everything is cached under ${XDG_CACHE_HOME:-$HOME/.cache}/tessera/;
# a second run with nothing changed does no work.
#
# Usage: scripts/cluster/build-kubernetes.sh [--print-bin-dir]
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tessera
k8s_version=1.20.2
bin=$cache/kubernetes-$k8s_version/bin

if [ "${1:-}" = "--print-bin-dir" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "build-kubernetes: $*" >&2; }

as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)

# Debian's source package needs a deb-src line, which a minimal machine lacks.
ensure_deb_src() {
  if apt-get source --print-uris kubernetes >/dev/null 2>&1; then return; fi
  log "adding a deb-src line for Debian's main archive"
  local src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ]; then
    sed -e 's/^Types: deb$/Types: deb-src/' "$src" |
      "${as_root[@]}" tee /etc/apt/sources.list.d/tessera-deb-src.sources >/dev/null
  else
    grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
      "${as_root[@]}" tee /etc/apt/sources.list.d/tessera-deb-src.list >/dev/null
  fi
  "${as_root[@]}" apt-get update -q
}

components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
cri_src=$repo/deploy/dev-cluster/cri
patches=$repo/scripts/cluster/patches  # fixes to the 1.20 tree for today's Go, each with its reason
stamp_inputs() {
  # What the cached binaries depend on: the version, the list of programs, the runtime's source.
  { echo "$k8s_version ${components[*]} ldflags-v2"; cat "$cri_src"/*.go "$patches"/*.sh; } |
    sha256sum | cut -d' ' -f1
}
all_built() {
  local name
  for name in "${components[@]}" tessera-cri; do [ -x "$bin/$name" ] || return 1; done
}

# One Go build at a time: a second caller waits here for the first.
mkdir -p "$cache"
exec 9>"$cache/build.lock"
if ! flock -n 9; then
  log "another build holds $cache/build.lock; waiting for it"
  flock 9
fi

want=$(stamp_inputs)
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$want" ] && all_built; then
  log "up to date in $bin"
  exit 0
fi

start=$(date +%s)
tree=$cache/kubernetes-$k8s_version/src
if [ ! -f "$tree/.unpacked" ]; then
  ensure_deb_src
  log "fetching Debian's kubernetes source package"
  rm -rf "$cache/kubernetes-$k8s_version/download" "$tree"
  mkdir -p "$cache/kubernetes-$k8s_version/download"
  (cd "$cache/kubernetes-$k8s_version/download" && apt-get source --download-only -q kubernetes)
  orig=$(ls "$cache/kubernetes-$k8s_version/download"/kubernetes_*.orig.tar.gz | head -n1)
  mkdir -p "$tree"
  tar -xzf "$orig" -C "$tree" --strip-components=1
  touch "$tree/.unpacked"
fi

# GOPATH mode: the tree's vendor/ is complete but module mode refuses it.
gopath=$cache/kubernetes-$k8s_version/gopath
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
export GOPATH=$gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
export GOCACHE=$cache/go-build
cd "$gopath/src/k8s.io/kubernetes"

if [ ! -s pkg/generated/openapi/zz_generated.openapi.go ]; then
  log "generating OpenAPI code (needed by kube-apiserver)"
  [ -s _output/bin/openapi-gen ] || rm -rf _output
  make gen_openapi >"$cache/kubernetes-$k8s_version/gen_openapi.log" 2>&1 || {
    tail -n 30 "$cache/kubernetes-$k8s_version/gen_openapi.log" >&2
    log "make gen_openapi failed (log: $cache/kubernetes-$k8s_version/gen_openapi.log)"
    exit 1
  }
fi

for patch in "$patches"/*.sh; do
  bash "$patch" || { log "$patch failed"; exit 1; }
done

rm -rf cmd/tessera-cri
mkdir -p cmd/tessera-cri
cp "$cri_src"/*.go cmd/tessera-cri/

# The version variables live in the vendored packages (GOPATH mode: .../vendor/k8s.io/...).
ldflags="-s -w"
for pkg in client-go/pkg/version component-base/version; do
  for kv in gitVersion=v$k8s_version gitMajor=1 gitMinor=20 gitTreeState=clean; do
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/$pkg.$kv"
  done
done
mkdir -p "$bin"
log "building ${components[*]} tessera-cri (a cold build takes several minutes)"
go build -ldflags "$ldflags" -o "$bin/" "${components[@]/#/./cmd/}" ./cmd/tessera-cri
all_built || { log "go build finished but a program is missing from $bin"; exit 1; }
echo "$want" >"$bin/.stamp"
log "built in $(($(date +%s) - start)) s into $bin"
