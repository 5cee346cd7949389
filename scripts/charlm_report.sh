#!/usr/bin/env bash
# Character-level LM comparison on tinyshakespeare (90/10 split, done by `lina train`):
# one model per mixer, same shape (preset tiny unless PRESET), same steps, batch, seed.
# Resumable: a mixer whose run directory already finished STEPS is skipped. Writes
# OUT/README.md (val loss in nats/char and bits/char, tokens/s, params), OUT/results.jsonl
# and OUT/charlm.png (validation curves). Checkpoints stay in RUNS (not committed).
# Environment (defaults in brackets): MIXERS ["deltanet gated_deltanet softmax gla retnet
# linear mamba2 hgrn2"] PRESET [tiny] STEPS [300] BATCH [8] SEQ [128] LR [3e-3]
# EVAL_EVERY [50] THREADS [1] RUNS [$TMPDIR/lina-charlm]
# Usage: scripts/charlm_report.sh [OUT=reports/charlm]
set -euo pipefail
out=${1:-reports/charlm}
lina=${LINA:-./build/lina}
mixers=${MIXERS:-deltanet gated_deltanet softmax gla retnet linear mamba2 hgrn2}
preset=${PRESET:-tiny}; steps=${STEPS:-300}; batch=${BATCH:-8}; seq=${SEQ:-128}; lr=${LR:-3e-3}
every=${EVAL_EVERY:-50}; threads=${THREADS:-1}; runs=${RUNS:-${TMPDIR:-/tmp}/lina-charlm}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$out" "$runs"
for mx in $mixers; do
  dir="$runs/$preset-$mx-s$steps-b$batch-t$seq-lr$lr"
  if [ -f "$dir/log.csv" ] && [ "$(tail -n 1 "$dir/log.csv" | cut -d, -f1)" = "$steps" ]; then continue; fi
  echo "charlm: $mx ($preset, $steps steps)" >&2
  rm -rf "$dir"
  nice "$lina" train --preset "$preset" --mixer "$mx" --steps "$steps" --batch "$batch" --seq "$seq" \
    --lr "$lr" --eval-every "$every" --save-every "$steps" --threads "$threads" --seed 1 \
    --out "$dir" 2> "$dir.stderr" || { echo "charlm: $mx failed (see $dir.stderr)" >&2; continue; }
done
python3 scripts/charlm_table.py "$runs" "$out" "$preset" "$steps" "$batch" "$seq" "$lr" "$mixers" \
  "MIXERS='$mixers' PRESET=$preset STEPS=$steps BATCH=$batch SEQ=$seq LR=$lr scripts/charlm_report.sh $out"
