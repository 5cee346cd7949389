#!/usr/bin/env bash
# On the H200 (device tool, carry .deb): build lina with CUDA and profile the kernels
# matching NCU_KERNELS (regex) of one `lina bench ops` call with Nsight Compute.
#   NCU_KERNELS='delta_states|wy_kernel' bash bench/cuda/ncu.sh gated_delta 2 16384
# (op, B, T; H16 K=V=128 bf16). Full report in $OUT/ncu_<op>.txt, stall summary on stdout.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-/tmp/lina-cuda-out}; mkdir -p "$OUT"
BUILD=build-gpu
if [ ! -e /usr/include/cjson/cJSON.h ] && ls "$ROOT"/.deb/libcjson*.deb >/dev/null 2>&1; then
    for f in "$ROOT"/.deb/libcjson*.deb; do dpkg -x "$f" /tmp/cjson; done
    cp -r /tmp/cjson/usr/include/cjson /usr/include/ && cp -P /tmp/cjson/usr/lib/x86_64-linux-gnu/libcjson* /usr/lib/x86_64-linux-gnu/ && ldconfig
fi
make BUILD=$BUILD CUDA=1 -j16 lib cli >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
op=${1:-gated_delta} B=${2:-2} T=${3:-16384}
timeout ${NCU_TIMEOUT:-300} ncu -k regex:"${NCU_KERNELS:-delta_states}" -c ${NCU_COUNT:-3} --import-source no \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SourceCounters \
    $BUILD/lina bench ops --op "$op" --device cuda --dtype bf16 --B "$B" --T "$T" --H 16 --K 128 --V 128 \
    --warmup 0 --repeat 1 >"$OUT/ncu_$op.txt" 2>&1
grep -E "^  [a-z_]+.*\(|Duration|Stall|Issued Warp|Eligible|Occupancy|Throughput|Registers|Shared Memory Config|Warp Cycles|Pipe|Bank" "$OUT/ncu_$op.txt" | head -${NCU_LINES:-150}
# NCU_SOURCE=1: per-SASS-instruction stall samples of the first matching kernel ($OUT/ncu_<op>_sass.csv)
if [ "${NCU_SOURCE:-0}" = 1 ]; then
    timeout ${NCU_TIMEOUT:-300} ncu -k regex:"${NCU_KERNELS:-delta_states}" -c 1 --section WarpStateStats --section SourceCounters \
        --page source --print-source sass --csv \
        $BUILD/lina bench ops --op "$op" --device cuda --dtype bf16 --B "$B" --T "$T" --H 16 --K 128 --V 128 \
        --warmup 0 --repeat 1 >"$OUT/ncu_${op}_sass.csv" 2>&1
    wc -c "$OUT/ncu_${op}_sass.csv"; head -c 600 "$OUT/ncu_${op}_sass.csv"
fi
