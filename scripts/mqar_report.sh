#!/usr/bin/env bash
# Multi-query associative recall sweep (Zoology; DeltaNet paper Fig. 2 setting) with
# `lina mqar`: mixers x d_model x (seq, pairs). Resumable: each finished run is a line
# of OUT/results.jsonl and is skipped next time (keyed by mixer, dim, seq, pairs,
# steps, batch, train, lr). Then writes OUT/README.md (tables) and OUT/mqar.png.
# Settings come from the environment (defaults in brackets):
#   MIXERS ["deltanet gated_deltanet softmax gla retnet linear mamba2"]
#   DIMS ["64 128 256"]   SETTINGS ["512:64 256:16 128:8 64:4"] (seq:pairs)
#   VOCAB [8192] STEPS [600] BATCH [16] TRAIN [2000] TEST [300] LR [1e-3] THREADS [1] SEED [1]
#   LR may be a list ("1e-3 3e-3"): every lr runs, the table keeps each cell's best (Zoology
#   sweeps lr per model). Several copies (one per lr, say) may share OUT: lines are appended.
#   DEVICE [cpu] (cuda: lina mqar --device cuda), JOBS [1] runs at once (on one GPU: ~16).
# Usage: scripts/mqar_report.sh [OUT=reports/mqar]
set -euo pipefail
out=${1:-reports/mqar}
lina=${LINA:-./build/lina}
mixers=${MIXERS:-deltanet gated_deltanet softmax gla retnet linear mamba2}
dims=${DIMS:-64 128 256}
settings=${SETTINGS:-512:64 256:16 128:8 64:4}
steps=${STEPS:-600}; batch=${BATCH:-16}; train=${TRAIN:-2000}; test_n=${TEST:-300}
lr=${LR:-1e-3}; vocab=${VOCAB:-8192}; threads=${THREADS:-1}; seed=${SEED:-1}
mkdir -p "$out"; res="$out/results.jsonl"; touch "$res"
# one thread per run: on a busy 2-core machine OpenMP's second thread mostly waits
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
device=${DEVICE:-cpu}; jobs=${JOBS:-1}
todo=() # one command per missing cell, run JOBS at a time (each appends one JSON line)
for st in $settings; do
  seq=${st%%:*}; pairs=${st##*:}
  for d in $dims; do
    for mx in $mixers; do
     for lr1 in $lr; do
      if python3 scripts/mqar_table.py --has "$res" mixer="$mx" dim="$d" seq="$seq" pairs="$pairs" vocab="$vocab" \
          steps="$steps" batch="$batch" train="$train" lr="$lr1"; then continue; fi
      todo+=("echo 'mqar: $mx d=$d seq=$seq pairs=$pairs steps=$steps lr=$lr1' >&2; \
nice -n 19 '$lina' mqar --mixer $mx --dim $d --seq $seq --pairs $pairs --vocab $vocab --steps $steps \
--batch $batch --train $train --test $test_n --lr $lr1 --seed $seed --threads $threads --device $device \
--json --quiet >> '$res' || echo 'mqar: $mx d=$d seq=$seq pairs=$pairs lr=$lr1 failed (kept out of the table)' >&2")
     done
    done
  done
done
if [ ${#todo[@]} -gt 0 ]; then printf '%s\0' "${todo[@]}" | xargs -0 -P "$jobs" -I{} bash -c {}; fi
python3 scripts/mqar_table.py "$res" "$out" \
  "MIXERS='$mixers' DIMS='$dims' SETTINGS='$settings' VOCAB=$vocab STEPS=$steps BATCH=$batch TRAIN=$train TEST=$test_n LR='$lr' scripts/mqar_report.sh $out"
