#!/usr/bin/env bash
# Step time of lina mqar at the paper setting (T 512, 64 pairs, vocab 8192,
# d 128, 2 layers, DeltaNet) with the LM head at the 64 scored answer rows
# (default) vs at all 512 positions (--dense-head), interleaved in one run so
# both see the same machine load. Prints one JSON line per run.
#   scripts/mqar_head_speed.sh [LINA] [REPS] [BATCH] [STEPS]
set -euo pipefail
LINA=${1:-build/lina}
REPS=${2:-2}
BATCH=${3:-16}
STEPS=${4:-3}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$REPS"); do
    for head in "" --dense-head; do
        "$LINA" mqar --mixer deltanet --dim 128 --seq 512 --pairs 64 --vocab 8192 \
            --train $((BATCH * STEPS)) --test 8 --steps "$STEPS" --batch "$BATCH" \
            --threads 1 --json --quiet $head
    done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
