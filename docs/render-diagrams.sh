#!/usr/bin/env bash
# Renders the Graphviz sources in docs/ to SVG (docs/architecture.dot -> docs/architecture.svg).
# Installs Debian's graphviz when `dot` is missing (as root, or through sudo).
# Usage: docs/render-diagrams.sh [file.dot ...]   (default: every docs/*.dot)
set -euo pipefail

docs_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v dot > /dev/null 2>&1; then
  echo "render-diagrams: dot not found, installing graphviz with apt-get" >&2
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo > /dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "render-diagrams: need root or sudo to install graphviz (apt-get install -y graphviz)" >&2
    exit 1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends graphviz
fi

if [ "$#" -gt 0 ]; then
  sources=("$@")
else
  shopt -s nullglob
  sources=("$docs_dir"/*.dot)
fi
if [ "${#sources[@]}" -eq 0 ]; then
  echo "render-diagrams: no .dot files in $docs_dir" >&2
  exit 1
fi

for src in "${sources[@]}"; do
  out="${src%.dot}.svg"
  tmp="$(mktemp "${out}.tmp.XXXXXX")"
  if ! dot -Tsvg "$src" -o "$tmp"; then
    rm -f "$tmp"
    echo "render-diagrams: dot failed on $src" >&2
    exit 1
  fi
  chmod 644 "$tmp"
  mv -f "$tmp" "$out"
  echo "wrote $out"
done
