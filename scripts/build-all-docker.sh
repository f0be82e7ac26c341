#!/usr/bin/env bash
# Runs scripts/build-all.sh inside a builder image made from Dockerfile.build,
# so release binaries do not depend on the host's toolchain.
#
# The builder starts FROM $GO_IMAGE (default golang:1.26-bookworm). Where that
# image cannot be pulled (no Docker Hub access), a base image is made from
# this machine's Go installation and the static busybox instead.
# Modules come from the host's module cache (mounted read-only; GOPROXY=off),
# so the build needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
GO_IMAGE=${GO_IMAGE:-golang:1.26-bookworm}
version=$(tr -d '[:space:]' < src/release/version.txt)

if ! docker image inspect "$GO_IMAGE" >/dev/null 2>&1 && ! docker pull "$GO_IMAGE" >/dev/null 2>&1; then
  goroot=$($GO env GOROOT)
  gover=$($GO env GOVERSION)
  GO_IMAGE="reagent-go-base:$gover"
  if ! docker image inspect "$GO_IMAGE" >/dev/null 2>&1; then
    echo "no Docker Hub: making $GO_IMAGE from $goroot and /bin/busybox"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/bin" "$tmp/usr/local" "$tmp/tmp"
    cp /bin/busybox "$tmp/bin/busybox"
    for a in sh env mkdir cat echo rm cp mv ls tr; do ln -s busybox "$tmp/bin/$a"; done
    tar -C "$goroot/.." -cf - "$(basename "$goroot")" | tar -C "$tmp/usr/local" -xf -
    [ "$(basename "$goroot")" = go ] || mv "$tmp/usr/local/$(basename "$goroot")" "$tmp/usr/local/go"
    tar -C "$tmp" -cf - . | docker import \
      -c 'ENV PATH=/usr/local/go/bin:/bin' -c 'ENV HOME=/tmp' - "$GO_IMAGE" >/dev/null
  fi
fi

$GO mod download
docker build -q -f Dockerfile.build --build-arg "GO_IMAGE=$GO_IMAGE" -t "reagent-builder:$version" . >/dev/null
modcache=$($GO env GOMODCACHE)
docker run --rm -u "$(id -u):$(id -g)" \
  -v "$PWD:/src" -v "$modcache:/gomod:ro" \
  -e GOMODCACHE=/gomod -e GOPROXY=off -e GOFLAGS=-mod=mod -e GOCACHE=/tmp/gocache -e HOME=/tmp \
  "reagent-builder:$version"
