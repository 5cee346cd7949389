#!/usr/bin/env bash
# Entries that differ between 1 and 2 threads: OpenBLAS called directly vs lina's fixed-tile
# wrappers, and the attention's parallel form (bench/blas_threads.c). JSON lines on stdout.
# Usage: bash bench/blas_threads.sh [BUILD=build]   (after make)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
blas_cflags=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-openmp)
libs="-lopenblas -lcjson -lm"
[ -d /usr/local/cuda/lib64 ] && nm "$build/liblina.a" 2>/dev/null | grep -q cudaMalloc &&
    libs="$libs -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lcublas -lstdc++"
cc -O2 -fopenmp -Iinclude -Isrc $blas_cflags -o /tmp/lina_blas_threads bench/blas_threads.c "$build/liblina.a" $libs
/tmp/lina_blas_threads
