#!/usr/bin/env bash
# Uploads release binaries (or only availableVersions.json) to the update
# bucket, in the layout the agents download from:
#   <bucket>/re-agent/<os>/<arch>/<version>/reagent[.exe]  (+ .sha256)
#   <bucket>/re-agent/availableVersions.json
# The bucket is a local directory or a gs:// URL (uses gsutil).
# Usage: scripts/publish.sh BUCKET VERSION [--versions-only]
set -euo pipefail
cd "$(dirname "$0")/.."
bucket=${1:?bucket (directory or gs://…) required}
version=${2:?version required}
mode=${3:-}

put() { # put SRC DEST-RELATIVE
  local src=$1 dest=$2
  case "$bucket" in
    gs://*) gsutil -q -h "Cache-control:public, max-age=0" cp "$src" "$bucket/$dest" ;;
    *) mkdir -p "$(dirname "$bucket/$dest")"
       cp "$src" "$bucket/$dest.tmp" && mv "$bucket/$dest.tmp" "$bucket/$dest" ;;
  esac
}

if [ "$mode" = "--versions-only" ]; then
  put availableVersions.json re-agent/availableVersions.json
  echo "published availableVersions.json to $bucket"
  exit 0
fi

shopt -s nullglob
files=(build/reagent-*-*)
[ ${#files[@]} -gt 0 ] || { echo "nothing to publish: run make build-all first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "${files[@]}"; do
  case "$f" in *.sha256) continue ;; esac
  base=$(basename "$f")            # reagent-<os>-<arch>
  rest=${base#reagent-}
  os=${rest%%-*}
  arch=${rest#*-}
  name=reagent
  [ "$os" = windows ] && name=reagent.exe
  dest="re-agent/$os/$arch/$version/$name"
  sha256sum "$f" | awk '{print $1}' > "$tmp/sum"
  put "$f" "$dest"
  put "$tmp/sum" "$dest.sha256"
  echo "published $dest"
done
