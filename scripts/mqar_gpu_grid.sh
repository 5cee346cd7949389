#!/usr/bin/env bash
# MQAR paper-setting recipe (scripts/mqar_stages.sh: three stages, 8000 x 32 steps) for several
# mixers at once on one GPU: one process per mixer, all on the same device (the models are small;
# concurrent processes keep the GPU busy). Copies each finished stage's JSON and curve to OUTDIR.
# Usage: MIXERS="deltanet gla" DIM=256 [LIMIT=540] scripts/mqar_gpu_grid.sh RUNDIR OUTDIR
#   RUNDIR holds the checkpoints (resumable: rerun the same command to continue); LIMIT seconds
#   stops the processes (they resume from their last checkpoint next time).
set -uo pipefail
run=${1:?RUNDIR}; out=${2:?OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$run" "$out"
pids=()
for m in ${MIXERS:?}; do
    MIXERS=$m DEVICE=cuda DIM=${DIM:-256} timeout "${LIMIT:-540}" "$here/mqar_stages.sh" "$run" \
        >"$run/grid_$m.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for f in "$run"/c_*_s?.json; do [ -s "$f" ] && cp "$f" "$out/"; done
for d in "$run"/c_*_s?; do [ -f "$d/curve.tsv" ] && cp "$d/curve.tsv" "$out/$(basename "$d")_curve.tsv"; done
for f in "$out"/c_*_s?.json; do
    [ -e "$f" ] && echo "$(basename "$f" .json) $(grep -o '"accuracy":[0-9.e-]*' "$f") $(grep -o '"train_seconds":[0-9.]*' "$f")"
done
