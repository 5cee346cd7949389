#!/usr/bin/env bash
# LRA ListOps with `lina listops`: one run per mixer (linear, softmax), each a
# JSON line in OUT/run_<mixer>_<min>_<max>.json with its progress log next to it,
# then a summary table (test accuracy, best validation accuracy, time) on stdout
# to paste into OUT/README.md next to the LRA table.
# Settings from the environment (defaults in brackets; LRA itself is
# MIN_LEN 500, MAX_LEN 2000, TRAIN 96000, VAL 2000, TEST 2000):
#   MIXERS ["linear softmax"] MIN_LEN [50] MAX_LEN [200] TRAIN [50000] VAL [1000]
#   TEST [2000] STEPS [3000] BATCH [32] LR [1e-3] DIM [64] LAYERS [2] HEADS [2]
#   THREADS [1] SEED [1] EVAL_EVERY [300]
# Runs the mixers in parallel (one thread each). Usage: scripts/listops_report.sh [OUT=reports/listops]
set -euo pipefail
out=${1:-reports/listops}
lina=${LINA:-./build/lina}
mixers=${MIXERS:-linear softmax}
min_len=${MIN_LEN:-50}; max_len=${MAX_LEN:-200}
train=${TRAIN:-50000}; val=${VAL:-1000}; test_n=${TEST:-2000}
steps=${STEPS:-3000}; batch=${BATCH:-32}; lr=${LR:-1e-3}
dim=${DIM:-64}; layers=${LAYERS:-2}; heads=${HEADS:-2}
threads=${THREADS:-1}; seed=${SEED:-1}; eval_every=${EVAL_EVERY:-300}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$out"
pids=()
for mx in $mixers; do
  base="$out/run_${mx}_${min_len}_${max_len}"
  nice -n 10 "$lina" listops --mixer "$mx" --min-len "$min_len" --max-len "$max_len" --train "$train" \
    --val "$val" --test "$test_n" --steps "$steps" --batch "$batch" --lr "$lr" --dim "$dim" \
    --layers "$layers" --heads "$heads" --eval-every "$eval_every" --threads "$threads" --seed "$seed" \
    --json > "$base.json" 2> "$base.log" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
python3 - "$out" "$min_len" "$max_len" $mixers <<'PY'
import json, sys
out, lo, hi, mixers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print("| mixer | tokens | steps x batch | params | best val acc | test acc | train time |")
print("|---|---|---|---|---|---|---|")
for mx in mixers:
    r = json.load(open(f"{out}/run_{mx}_{lo}_{hi}.json"))
    print(f"| {mx} | {lo}-{hi} | {r['steps']} x {r['batch']} | {r['params']} | "
          f"{100*r['best_val_accuracy']:.2f}% | {100*r['accuracy']:.2f}% | {r['train_seconds']/60:.1f} min |")
PY
