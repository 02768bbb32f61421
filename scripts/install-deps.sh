#!/usr/bin/env bash
# Installs, from Debian's packages, what building and testing Tessera needs. Does nothing when all
# of it is present already; needs root (or sudo) otherwise.
set -euo pipefail

packages=(cmake ninja-build g++ make libgtest-dev libgmock-dev libbenchmark-dev libyaml-dev
          clang libclang-rt-14-dev clang-format clang-tidy git valgrind python3 procps
          # tessera-node and the Kubernetes client
          libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler nlohmann-json3-dev
          libcurl4-openssl-dev libssl-dev libcpp-httplib-dev libyaml-cpp-dev libcli11-dev
          # the local cluster (make cluster): Kubernetes is built from Debian's source package
          golang-go etcd-server rsync dpkg-dev prometheus python3-yaml python3-prometheus-client
          iproute2 util-linux curl openssl)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
