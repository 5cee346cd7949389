#!/usr/bin/env bash
# MQAR at the paper setting (seq 512, 64 pairs, vocab 8192) with the three-stage recipe of
# reports/mqar/README.md ("d = 64 at the paper setting", "d = 128 at the paper setting"):
#   stage 1: Zoology's training mix, 1500 x 32 steps, lr 3e-3, from scratch
#   stage 2: the mix + 512:64:200000, 1500 x 32, lr 1e-3, warm start from stage 1
#   stage 3: same mix, 5000 x 32, lr 1e-3, warm start from stage 2
# --tie, --conv (see below), THREADS threads (default 1), one seed. Resumable at two levels: a stage
# whose JSON exists is skipped, and an interrupted stage resumes from its --checkpoint.
# Usage: MIXERS="retnet linear" DIM=128 [THREADS=1] [DEVICE=cuda] scripts/mqar_stages.sh [DIR=/tmp/mqar$DIM]
# LR1 overrides stage 1's learning rate. DEVICE=cuda trains on the GPU (lina mqar --device cuda); stages resume across devices.
# Results: DIR/c_<mixer>_s<stage>.json (one JSON object) and DIR/c_<mixer>_s<stage>/curve.tsv.
set -euo pipefail
dim=${DIM:-128}
dir=${1:-/tmp/mqar$dim}
lina=$(realpath "${LINA:-./build/lina}")
mix=64:4:100000,128:8:20000,256:16:20000,256:32:20000,256:64:20000
mkdir -p "$dir"
cd "$dir"
threads=${THREADS:-1}
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=passive
for m in ${MIXERS:-deltanet gated_deltanet softmax gla retnet linear mamba2}; do
    # as the d = 64 runs: --conv for the mixers without a built-in convolution (DeltaNet and
    # Gated DeltaNet have one, softmax none), and softmax at lr 1e-3 in stage 1 too
    conv=--conv lr1=3e-3
    case $m in deltanet | gated_deltanet) conv= ;; softmax) conv= lr1=1e-3 ;; esac
    lr1=${LR1:-$lr1} # LR1=1e-3: stage 1's lr for every mixer (a run that stays on the plateau at 3e-3)
    common="--mixer $m --dim $dim --seq 512 --pairs 64 --vocab 8192 --tie $conv --batch 32 --test 300
            --eval-n 32 --every 50 --threads $threads --device ${DEVICE:-cpu} --json --quiet"
    run() { # stage, extra arguments
        local s=$1; shift
        [ -s "c_${m}_s$s.json" ] && return 0
        # shellcheck disable=SC2086
        nice -n 19 "$lina" mqar $common "$@" --checkpoint "c_${m}_s$s" >"c_${m}_s$s.json.tmp" 2>"c_${m}_s$s.log"
        mv "c_${m}_s$s.json.tmp" "c_${m}_s$s.json"
    }
    run 1 --train-mix $mix --steps 1500 --lr $lr1
    run 2 --train-mix $mix,512:64:200000 --init-from "c_${m}_s1/cur" --steps 1500 --lr 1e-3
    run 3 --train-mix $mix,512:64:200000 --init-from "c_${m}_s2/cur" --steps 5000 --lr 1e-3
done
