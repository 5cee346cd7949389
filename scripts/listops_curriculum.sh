#!/usr/bin/env bash
# LRA ListOps by curriculum on the CPU: phase 1 trains the linear-attention
# encoder on short expressions (50-200 tokens) and saves it; phase 2 starts
# from those weights (--init-from) at the LRA lengths (500-2000 tokens, 96k
# training examples as LRA) and trains as long as PHASE2_STEPS says. Both
# phases checkpoint (--checkpoint, every 100 steps): rerunning this script
# after an interruption resumes where it stopped, bit-exactly; a finished
# phase is not rerun (its JSON exists). Before phase 2, the phase-1 model is
# scored at LRA lengths without further training (--steps 0).
# Settings from the environment (defaults in brackets):
#   PHASE1_STEPS [3000] PHASE2_STEPS [3000] PHASE2_LR [5e-4] DIM [64] LAYERS [2]
#   HEADS [2] SEED [1] THREADS [1] POS ["" or --no-pos]
# Usage: scripts/listops_curriculum.sh [OUT=reports/listops/curriculum]
set -euo pipefail
out=${1:-reports/listops/curriculum}
lina=${LINA:-./build/lina}
p1_steps=${PHASE1_STEPS:-3000}; p2_steps=${PHASE2_STEPS:-3000}; p2_lr=${PHASE2_LR:-5e-4}
dim=${DIM:-64}; layers=${LAYERS:-2}; heads=${HEADS:-2}; seed=${SEED:-1}; threads=${THREADS:-1}
pos=${POS:-}
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$out"
model=(--mixer linear --dim "$dim" --layers "$layers" --heads "$heads" --threads "$threads" --seed "$seed" $pos)
run() { # name, then lina listops options; skipped if OUT/name.json exists
  local name=$1; shift
  if [ -s "$out/$name.json" ]; then echo "$name: done ($out/$name.json)"; return; fi
  nice -n 19 "$lina" listops "${model[@]}" "$@" --json > "$out/$name.json.tmp" 2> "$out/$name.log"
  mv "$out/$name.json.tmp" "$out/$name.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]}: test {100*r['accuracy']:.2f}%, best val {100*r['best_val_accuracy']:.2f}%, {r['steps']} x {r['batch']}, {r['train_seconds']/60:.1f} min\")" "$out/$name.json" "$name"
}
# phase 1: short expressions
run phase1_50_200 --min-len 50 --max-len 200 --train 50000 --val 1000 --test 2000 --steps "$p1_steps" \
  --batch 32 --lr 1e-3 --eval-every 300 --checkpoint "$out/phase1_ckpt" --every 100 --save "$out/phase1.safetensors"
# the phase-1 model at LRA lengths, (almost) no training
run zeroshot_500_2000 --min-len 500 --max-len 2000 --train 1 --val 1000 --test 2000 --steps 0 --batch 16 \
  --init-from "$out/phase1.safetensors"
# phase 2: LRA lengths from the phase-1 weights
run phase2_500_2000 --min-len 500 --max-len 2000 --train 96000 --val 1000 --test 2000 --steps "$p2_steps" \
  --batch 16 --lr "$p2_lr" --eval-every 500 --checkpoint "$out/phase2_ckpt" --every 100 \
  --init-from "$out/phase1.safetensors" --save "$out/phase2.safetensors"
