#!/usr/bin/env bash
# Training throughput of the char-LM comparison's models, measured side by side:
# ROUNDS rounds, each running every mixer for STEPS steps (one thread, the same
# config.json as its comparison run, batch x seq as there), interleaved so that the
# machine's load hits all mixers alike. Per mixer: the median over rounds of each
# round's median tokens/s (steps after the first 5). Prints a markdown table.
# Environment: RUNS [$TMPDIR/lina-charlm] PREFIX [shakespeare-tiny-p152032]
# MIXERS [the 10 of charlm_report.sh] STEPS [40] ROUNDS [3] BATCH [8] SEQ [128]
# LINA [./build/lina] DATA [tinyshakespeare]
# Usage: scripts/charlm_speed.sh > reports/charlm/speed.md
set -euo pipefail
lina=${LINA:-./build/lina}; runs=${RUNS:-${TMPDIR:-/tmp}/lina-charlm}
prefix=${PREFIX:-shakespeare-tiny-p152032}
mixers=${MIXERS:-linear cosformer performer hedgehog retnet gla mamba2 deltanet gated_deltanet softmax}
steps=${STEPS:-40}; rounds=${ROUNDS:-3}; batch=${BATCH:-8}; seq=${SEQ:-128}
data=${DATA:-/work/shared/data/tinyshakespeare.txt}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  for mx in $mixers; do
    cfg=$(ls "$runs/$prefix-$mx"-s*-b"$batch"-t"$seq"-*.config.json | head -n 1)
    nice -n 19 "$lina" train --config "$cfg" --data "$data" --steps "$steps" --batch "$batch" \
      --seq "$seq" --eval-every "$steps" --save-every "$steps" --threads 1 --seed 1 \
      --out "$tmp/$mx-$r" 2> /dev/null
    python3 -c "import csv,sys; v=sorted(float(r['tokens_per_s']) for r in list(csv.DictReader(open(sys.argv[1])))[5:]); print(v[len(v)//2])" \
      "$tmp/$mx-$r/log.csv" >> "$tmp/$mx.tps"
    rm -rf "$tmp/$mx-$r"
  done
done
echo "| mixer | training tokens/s (1 thread, median of $rounds interleaved rounds of $steps steps) | per round |"
echo "|---|---|---|"
for mx in $mixers; do
  echo "| $mx | $(sort -g "$tmp/$mx.tps" | sed -n "$(( (rounds + 1) / 2 ))p" | xargs printf '%.0f') | $(xargs printf '%.0f ' < "$tmp/$mx.tps")|"
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
