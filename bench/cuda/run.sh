#!/usr/bin/env bash
# On the H200 (device tool): build lina with CUDA, run the GPU tests, then
# time lina's CUDA kernels and fla's Triton kernels side by side.
#   bash bench/cuda/run.sh [quick]     (carry .whl (fla wheels) and .deb (libcjson1,
#   libcjson-dev: `apt-get download`); results under $OUT; CUDA_SANITIZER=1 adds compute-sanitizer)
# quick: skip the full test list (sanitizer-sized tests only).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# Others may be mid-edit in the shared checkout: build a committed snapshot if one
# was carried (here: rm -rf .snap; mkdir .snap; git archive HEAD | tar -x -C .snap).
if [ -d .snap/src/cuda ]; then cd .snap; fi
OUT=${OUT:-/tmp/lina-cuda-out}; mkdir -p "$OUT"
BUILD=build-gpu
# libcjson is not on the GPU image: unpack the carried Debian packages (header + .so only)
if [ ! -e /usr/include/cjson/cJSON.h ] && ls "$ROOT"/.deb/libcjson*.deb >/dev/null 2>&1; then
    for f in "$ROOT"/.deb/libcjson*.deb; do dpkg -x "$f" /tmp/cjson; done
    cp -r /tmp/cjson/usr/include/cjson /usr/include/ && cp -P /tmp/cjson/usr/lib/x86_64-linux-gnu/libcjson* /usr/lib/x86_64-linux-gnu/ && ldconfig
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.used --format=csv,noheader
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
make BUILD=$BUILD CUDA=1 -j16 lib cli cuda-tests $BUILD/tests/test_cuda_mem >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
stamp built
# AB_PATCH=path/to.patch: variant B = this tree with the patch applied (patch -p1), built beside;
# bench_vs_fla.py then times A and B alternately on the same inputs (lines "A/B ...")
if [ -n "${AB_PATCH:-}" ]; then
    rm -rf /tmp/lina-b && mkdir -p /tmp/lina-b
    tar -cf - --exclude='./build*' --exclude=./.git --exclude=./.whl --exclude=./.triton-cache --exclude=./.deb . |
        tar -xf - -C /tmp/lina-b
    if (cd /tmp/lina-b && patch -p1 -s <"$ROOT/$AB_PATCH" && make BUILD=build-gpu CUDA=1 -j16 lib >"$OUT/build_b.log" 2>&1); then
        export LINA_LIB_B=/tmp/lina-b/build-gpu/liblina.so; stamp "built B ($AB_PATCH)"
    else
        echo "AB_PATCH: could not apply or build $AB_PATCH"; tail -20 "$OUT/build_b.log" 2>/dev/null
    fi
fi
echo "== GPU tests"
rc=0
# TESTS: which GPU test binaries (default all)
for t in ${TESTS:-cuda-tests/test_cuda_attn cuda-tests/test_cuda_bwd cuda-tests/test_cuda_lm_kernels cuda-tests/test_cuda_lm_softmax cuda-tests/test_cuda_lm tests/test_cuda_mem}; do
    timeout ${TEST_TIMEOUT:-300} $BUILD/$t ${1:-} >>"$OUT/tests.log" 2>&1 || { s=$?; rc=1; echo "FAIL: $t exited with $s" >>"$OUT/tests.log"; }
done
grep -E '^FAIL' "$OUT/tests.log" | head -40; grep -E '^# ' "$OUT/tests.log"
if [ "${CUDA_SANITIZER:-0}" = 1 ]; then
    echo "== compute-sanitizer (memcheck, quick test list)"
    for t in test_cuda_attn test_cuda_bwd; do
        timeout 120 compute-sanitizer --tool memcheck --print-limit 10 $BUILD/cuda-tests/$t quick >>"$OUT/sanitizer.log" 2>&1
    done
    grep -E 'ERROR SUMMARY|^FAIL' "$OUT/sanitizer.log" | head; tail -1 "$OUT/sanitizer.log"
    stamp sanitized
fi
if [ -d "$ROOT/.whl" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl \
        >/tmp/pip.log 2>&1 || tail -5 /tmp/pip.log
fi
# fla's Triton kernels take minutes to compile: reuse a cache brought back by an earlier call
# ($OUT/triton-cache.txz.* in 15 MB pieces, xz: 20 MB where gzip gave 46; carried in
# .triton-cache/) and hand the new one back
export TRITON_CACHE_DIR=/tmp/triton-cache; mkdir -p $TRITON_CACHE_DIR
[ -f "$ROOT/.triton-cache/triton-cache.txz.aa" ] && cat "$ROOT"/.triton-cache/triton-cache.txz.* | xz -dc | tar -xf - -C $TRITON_CACHE_DIR
stamp tested
if [ "${CLI_BENCH:-1}" = 1 ]; then
    echo "== lina bench ops --device cuda (bf16, H16 K=V=128: B8 T4096 forward and forward+backward, B2 T16384 forward)"
    for op in linear retention simple_gla gla delta gated_delta; do
        for bwd in "" --backward; do
            $BUILD/lina bench ops --op $op --device cuda --dtype bf16 --B 8 --T 4096 --H 16 --K 128 --V 128 \
                --warmup 2 --repeat 10 $bwd --json
        done
        $BUILD/lina bench ops --op $op --device cuda --dtype bf16 --B 2 --T 16384 --H 16 --K 128 --V 128 \
            --warmup 2 --repeat 10 --json
    done >"$OUT/cli_bench.jsonl" 2>&1
    for op in retention simple_gla; do  # the backward without the gates' gradient (fixed decays)
        $BUILD/lina bench ops --op $op --device cuda --dtype bf16 --B 8 --T 4096 --H 16 --K 128 --V 128 \
            --warmup 2 --repeat 10 --backward --fixed-gates --json
    done >>"$OUT/cli_bench.jsonl" 2>&1
    cut -c1-300 "$OUT/cli_bench.jsonl"
    stamp cli
fi
echo "== lina vs fla (bf16 forward, median ms; LINA_BENCH_FLA=0: lina alone)"
PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site timeout ${BENCH_TIMEOUT:-330} python3 bench/cuda/bench_vs_fla.py $BUILD/liblina.so "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | grep -v '^{' | cut -c1-400
stamp benchmarked
if [ "${NCU:-0}" = 1 ] && command -v ncu >/dev/null; then  # ncu sections of the kernels NCU_KERNELS matches (B2 T16384)
    for op in gated_delta gla; do
        timeout 120 ncu -k regex:"${NCU_KERNELS:-wy_kernel|vec_}" -c 3 --section WarpStateStats --section SchedulerStats \
            --section Occupancy --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
            $BUILD/lina bench ops --op $op --device cuda --dtype bf16 --B 2 --T 16384 --H 16 --K 128 --V 128 \
            --warmup 0 --repeat 1 >"$OUT/ncu_$op.txt" 2>&1
        grep -E "Stall|Issued|Occupancy|Throughput|Pipe|Warp Cycles|Eligible" "$OUT/ncu_$op.txt" | head -40
    done
    stamp profiled
fi
(cd $TRITON_CACHE_DIR && tar -cf - . | xz -T0 -6 | split -b 15m - "$OUT/triton-cache.txz.") && ls -la "$OUT"/triton-cache.txz.*
stamp done
exit $rc
