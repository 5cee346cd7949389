#!/usr/bin/env bash
# Character-level LM comparison: one byte-level model per mixer, equal steps, batch,
# seed and (within ~1%) equal parameter count. Every mixer starts from preset PRESET;
# the SwiGLU width (intermediate_size) is then set per mixer so that its parameter
# count is the closest to TARGET (default: the largest count among the mixers at the
# preset's width). One SwiGLU unit is 3 x dim x layers parameters.
# cosFormer's horizon M (its max_position_embeddings) is COS_HORIZON [2 x SEQ].
# Resumable: finished runs are skipped, interrupted ones continue from their last
# checkpoint (--save-every SAVE_EVERY) with `lina train --resume` (bit-exact).
# Writes OUT/results_NAME.jsonl, OUT/table_NAME.md and OUT/charlm_NAME.png through
# scripts/charlm_table.py. Checkpoints stay in RUNS (not committed).
# Environment (defaults in brackets): DATA [tinyshakespeare; "kjv": the King James
# Bible from Debian's bible-kjv] NAME [shakespeare | kjv] MIXERS [the 10 below]
# PRESET [tiny] STEPS [2000] BATCH [8] SEQ [128] LR [3e-3] EVAL_EVERY [100]
# SAVE_EVERY [500] THREADS [1] JOBS [2 runs at a time] TARGET [auto]
# RUNS [$TMPDIR/lina-charlm] LINA [./build/lina]
# Usage: scripts/charlm_report.sh [OUT=reports/charlm]
set -euo pipefail
out=${1:-reports/charlm}
lina=${LINA:-./build/lina}
mixers=${MIXERS:-linear cosformer performer hedgehog retnet gla mamba2 deltanet gated_deltanet softmax}
preset=${PRESET:-tiny}; steps=${STEPS:-2000}; batch=${BATCH:-8}; seq=${SEQ:-128}; lr=${LR:-3e-3}
every=${EVAL_EVERY:-100}; save=${SAVE_EVERY:-500}; threads=${THREADS:-1}; jobs_max=${JOBS:-2}
runs=${RUNS:-${TMPDIR:-/tmp}/lina-charlm}; horizon=${COS_HORIZON:-$((2 * seq))}
data=${DATA:-/work/shared/data/tinyshakespeare.txt}; name=${NAME:-shakespeare}
if [ "$data" = kjv ]; then
  data=${TMPDIR:-/tmp}/lina-kjv.txt; name=${NAME:-kjv}
  [ -s "$data" ] || { /usr/bin/bible -f 'Genesis1:1-Revelation22:21' > "$data.part" && mv "$data.part" "$data"; }
fi
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$out" "$runs"

# 1. parameter count of each mixer at the preset's width (a 0-step run writes config.json)
declare -A p0 h0
for mx in $mixers; do
  probe="$runs/probe-$preset-$mx"
  if [ ! -f "$probe/config.json" ] || [ ! -f "$probe.params" ]; then
    rm -rf "$probe"
    "$lina" train --preset "$preset" --mixer "$mx" --steps 0 --data "$data" --out "$probe" 2>&1 |
      sed -n 's/.*| \([0-9]*\) params |.*/\1/p' > "$probe.params"
  fi
  p0[$mx]=$(cat "$probe.params")
  h0[$mx]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['intermediate_size'])" "$probe/config.json")
done
target=${TARGET:-$(for mx in $mixers; do echo "${p0[$mx]}"; done | sort -n | tail -n 1)}
unit=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(3*c['hidden_size']*c['num_hidden_layers'])" \
  "$runs/probe-$preset-$(set -- $mixers; echo "$1")/config.json")

# 2. one config per mixer with the matched SwiGLU width, then the runs (JOBS at a time)
run_one() {
  local mx=$1 hid=$2 dir=$3
  local cfg="$dir.config.json"
  python3 - "$runs/probe-$preset-$mx/config.json" "$cfg" "$hid" "$mx" "$horizon" <<'EOF'
import json, sys
src, dst, hid, mx, horizon = sys.argv[1:6]
c = json.load(open(src))
c["intermediate_size"] = int(hid)
if mx == "cosformer":
    c["max_position_embeddings"] = int(horizon)
json.dump(c, open(dst, "w"), indent=2)
EOF
  local resume=()
  if [ -f "$dir/train_state.json" ]; then resume=(--resume); else rm -rf "$dir"; fi
  echo "charlm: $name $mx (intermediate $hid, $steps steps${resume:+, resuming})" >&2
  nice -n 19 "$lina" train --config "$cfg" --data "$data" --steps "$steps" --batch "$batch" \
    --seq "$seq" --lr "$lr" --eval-every "$every" --save-every "$save" --threads "$threads" \
    --seed 1 --out "$dir" "${resume[@]}" 2>> "$dir.stderr" || echo "charlm: $mx failed (see $dir.stderr)" >&2
}
for mx in $mixers; do
  hid=$(( ${h0[$mx]} + ( (target - ${p0[$mx]}) * 2 + unit ) / (2 * unit) ))
  [ "$target" -lt "${p0[$mx]}" ] && hid=$(( ${h0[$mx]} - ( (${p0[$mx]} - target) * 2 + unit ) / (2 * unit) ))
  dir="$runs/$name-$preset-p$target-$mx-s$steps-b$batch-t$seq-lr$lr"
  if [ -f "$dir/log.csv" ] && [ "$(tail -n 1 "$dir/log.csv" | cut -d, -f1)" = "$steps" ]; then continue; fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 5; done
  run_one "$mx" "$hid" "$dir" &
done
wait
python3 scripts/charlm_table.py "$runs" "$out" "$name" "$name-$preset-p$target" "$steps" "$batch" "$seq" \
  "$lr" "$mixers"
