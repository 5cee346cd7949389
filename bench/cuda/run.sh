#!/usr/bin/env bash
# On the H200 (device tool): build lina with CUDA, run the GPU tests, then
# time lina's CUDA kernels and fla's Triton kernels side by side.
#   bash bench/cuda/run.sh [quick]     (carry .whl for fla; results under $OUT)
# quick: skip the full test list (sanitizer-sized tests only).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lina-cuda-out}; mkdir -p "$OUT"
BUILD=build-gpu
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.used --format=csv,noheader
make BUILD=$BUILD CUDA=1 -j16 lib cuda-tests >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "== GPU tests"
$BUILD/cuda-tests/test_cuda_attn ${1:-} >"$OUT/tests.log" 2>&1; rc=$?
grep -E '^FAIL' "$OUT/tests.log" | head -30; tail -1 "$OUT/tests.log"
if [ "${SANITIZE:-0}" = 1 ]; then
    echo "== compute-sanitizer (memcheck, quick test list)"
    compute-sanitizer --tool memcheck --print-limit 10 $BUILD/cuda-tests/test_cuda_attn quick >"$OUT/sanitizer.log" 2>&1
    grep -E 'ERROR SUMMARY|^FAIL' "$OUT/sanitizer.log" | head; tail -1 "$OUT/sanitizer.log"
fi
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >"$OUT/pip.log" 2>&1 || tail -5 "$OUT/pip.log"
fi
echo "== lina vs fla (bf16 forward, median ms)"
PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site python3 bench/cuda/bench_vs_fla.py $BUILD/liblina.so "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | grep -v '^{'
exit $rc
