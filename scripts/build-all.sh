#!/bin/sh
# Builds one static agent binary per line of `targets` (os/arch[/variant]):
#   build/reagent-<os>-<arch>[v<variant>]
# Usage: scripts/build-all.sh [outdir]   (POSIX sh: runs in the minimal builder image too)
set -eu
cd "$(dirname "$0")/.."
out=${1:-build}
mkdir -p "$out"
go=${GO:-go}
while IFS=/ read -r os arch variant; do
  [ -n "$os" ] || continue
  name=$arch
  [ -n "$variant" ] && name="${arch}v${variant}"
  echo "build $os/$name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$variant \
    $go build -trimpath -buildvcs=false -tags codec.notfastpath \
    -ldflags "-s -w -X reagent/src/release.BuildArch=$name" \
    -o "$out/reagent-$os-$name" ./src
done < targets
