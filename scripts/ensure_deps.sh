#!/usr/bin/env bash
# Install the Debian packages lina needs (as root), or print the exact apt line.
# Usage: ensure_deps.sh [build|test|bench]
set -u
what=${1:-build}
pkgs=(build-essential libopenblas-openmp-dev libcjson-dev)
[ "$what" = test ] || [ "$what" = bench ] && pkgs+=(python3-torch gnuplot-nox)
# the demo's corpus: tinyshakespeare from ../shared, else the King James Bible
if [ "$what" = demo ]; then
    pkgs+=(gnuplot-nox)
    here=$(cd "$(dirname "$0")/.." && pwd)
    [ -f "${LINA_SHARED:-$here/../shared}/data/tinyshakespeare.txt" ] || pkgs+=(bible-kjv)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "lina: installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        echo "lina: apt-get install failed; run: apt-get install ${missing[*]}" >&2; exit 1; }
else
    echo "lina: missing Debian packages. Run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
