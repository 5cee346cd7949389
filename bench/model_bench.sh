#!/usr/bin/env bash
# Language-model measurements of docs/MODELS_BENCH.md: Gated DeltaNet vs softmax.
#
#   bash bench/model_bench.sh [BUILD] [OUT] [quick|full] [gen|train|quality|all]
#
#   gen      decode tokens/s and peak RSS vs context length (1 thread)
#   train    training tokens/s vs sequence length, ~10M-parameter models, batch 1
#   quality  tinyshakespeare validation loss at equal size (~0.9M params) and steps
#
# MIXERS="gated_deltanet" limits the runs; rows are appended to existing .tsv files
# (start from a fresh OUT to reproduce).
# quick: small lengths and few steps, a smoke test that takes ~1 minute.
# Results go to OUT (default /tmp/lina_model_bench): gen.tsv, train.tsv,
# quality.tsv and the PNG plots (gnuplot pngcairo).
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-/tmp/lina_model_bench}
MODE=${3:-full}
WHAT=${4:-all}
LINA="$(cd "$(dirname "$0")/.." && pwd)/$BUILD/lina"
DATA=${LINA_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}/data/tinyshakespeare.txt
mkdir -p "$OUT"
[ -x "$LINA" ] || { echo "model_bench: $LINA not built (make BUILD=$BUILD)" >&2; exit 1; }
[ -r "$DATA" ] || { echo "model_bench: no $DATA" >&2; exit 1; }
MIXERS=${MIXERS:-"gated_deltanet softmax"}

if [ "$MODE" = quick ]; then
    GEN_LENGTHS="1024 4096"; GEN_NEW=50; GEN_NEW_LONG=50; GEN_NEW_LINEAR=200
    TRAIN_LENGTHS="512 1024"; TRAIN_DIM=128; TRAIN_LAYERS=2; TRAIN_HEADS=4; TRAIN_STEPS=2
    Q_STEPS=20; Q_EVAL=10
else
    GEN_LENGTHS="1024 4096 16384 65536"; GEN_NEW=200; GEN_NEW_LONG=100; GEN_NEW_LINEAR=2000
    TRAIN_LENGTHS="512 1024 2048 4096 8192"; TRAIN_DIM=384; TRAIN_LAYERS=6; TRAIN_HEADS=6; TRAIN_STEPS=2
    Q_STEPS=1000; Q_EVAL=100
fi

# peak RSS in MB of the command "$@" (GNU time -v), its stderr kept in $OUT/last.err
peak_rss_mb() {
    /usr/bin/time -v "$@" >/dev/null 2>"$OUT/last.err"
    awk '/Maximum resident set size/ {printf "%.1f", $6 / 1024}' "$OUT/last.err"
}

# ---- generation: random-weight tiny models (1 training step), context = exactly n + new ----
if [ "$WHAT" = gen ] || [ "$WHAT" = all ]; then
    [ -s "$OUT/gen.tsv" ] ||
        echo -e "mixer\tcontext\tnew_tokens\tdecode_tok_s\tprefill_tok_s\tstate_bytes\trss_prefill_mb\trss_decode_mb" >"$OUT/gen.tsv"
    for m in $MIXERS; do
        d="$OUT/gen_$m"
        "$LINA" train --preset tiny --mixer "$m" --steps 1 --batch 1 --seq 64 --eval-every 1 \
            --eval-batches 1 --threads 1 --data "$DATA" --out "$d" >"$d.log" 2>&1
        for n in $GEN_LENGTHS; do
            # softmax: fewer new tokens at 64K (O(context) each); linear: many, to time them
            new=$GEN_NEW; [ "$n" -ge 65536 ] && new=$GEN_NEW_LONG
            [ "$m" = softmax ] || new=$GEN_NEW_LINEAR
            # the KV cache is allocated for max_position_embeddings: make it exactly n + new
            sed -i "s/\"max_position_embeddings\":.*/\"max_position_embeddings\":\t$((n + new)),/" "$d/config.json"
            # 1) prefill the context and save the state: peak RSS of prefill
            rss_p=$(peak_rss_mb "$LINA" generate "$d" --prompt "$(head -c "$n" "$DATA")" --max-new 0 \
                --temperature 0 --stats --no-echo --threads 1 --save-state "$d/ctx$n.st")
            pre=$(sed -n 's/.*(\([0-9.]*\) tok\/s); 0 steps.*/\1/p' "$OUT/last.err")
            # 2) a fresh process loads the state and decodes: peak RSS of generation alone
            rss_d=$(peak_rss_mb "$LINA" generate "$d" --load-state "$d/ctx$n.st" --prompt "" \
                --max-new "$new" --temperature 0 --stats --no-echo --threads 1)
            dec=$(sed -n 's/.*steps in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$OUT/last.err")
            sb=$(sed -n 's/.*state \([0-9]*\) bytes.*/\1/p' "$OUT/last.err")
            rm -f "$d/ctx$n.st"
            echo -e "$m\t$n\t$new\t$dec\t$pre\t$sb\t$rss_p\t$rss_d" | tee -a "$OUT/gen.tsv"
        done
    done
fi

# ---- training throughput: batch 1, a few steps, tokens/s from log.csv ----
if [ "$WHAT" = train ] || [ "$WHAT" = all ]; then
    [ -s "$OUT/train.tsv" ] ||
        echo -e "mixer\tseq\tparams\ttok_s" >"$OUT/train.tsv"
    for T in $TRAIN_LENGTHS; do
        for m in $MIXERS; do
            d="$OUT/train_${m}_$T"
            "$LINA" train --mixer "$m" --dim $TRAIN_DIM --layers $TRAIN_LAYERS --heads $TRAIN_HEADS --batch 1 \
                --seq "$T" --steps $TRAIN_STEPS --eval-every 1000000 --eval-batches 1 --save-every 1000000 \
                --threads 1 --data "$DATA" --out "$d" >"$d.log" 2>&1
            params=$(sed -n 's/.*| \([0-9]*\) params.*/\1/p' "$d.log")
            # mean tokens/s of the steps after the first (the first touches fresh buffers)
            tok=$(awk -F, 'NR > 2 {s += $6; n++} END {printf "%.1f", s / n}' "$d/log.csv")
            echo -e "$m\t$T\t$params\t$tok" | tee -a "$OUT/train.tsv"
        done
    done
fi

# ---- quality: tinyshakespeare, equal size and steps, both runs side by side ----
if [ "$WHAT" = quality ] || [ "$WHAT" = all ]; then
    for m in $MIXERS; do
        "$LINA" train --preset small --mixer "$m" --steps $Q_STEPS --batch 8 --seq 128 --lr 2e-3 \
            --eval-every $Q_EVAL --eval-batches 16 --threads 1 --data "$DATA" \
            --out "$OUT/quality_$m" >"$OUT/quality_$m.log" 2>&1 &
    done
    wait
    echo -e "mixer\tstep\tval_nats_per_char\tval_bits_per_char" >"$OUT/quality.tsv"
    for m in $MIXERS; do
        awk -F, -v m="$m" 'NR > 1 && $4 != "" {printf "%s\t%s\t%.4f\t%.4f\n", m, $1, $4, $4 / log(2)}' \
            "$OUT/quality_$m/log.csv" >>"$OUT/quality.tsv"
    done
    cat "$OUT/quality.tsv"
fi

command -v gnuplot >/dev/null && gnuplot -e "dir='$OUT'" "$(dirname "$0")/model_bench.gp" 2>/dev/null \
    && echo "model_bench: plots in $OUT" || echo "model_bench: no plots (gnuplot missing or no data)"
