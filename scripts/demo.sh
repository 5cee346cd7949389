#!/usr/bin/env bash
# lina's main job on a built-in default: train a small Gated DeltaNet language
# model on a corpus found on this machine (tinyshakespeare from ../shared, or the
# King James Bible from Debian's bible-kjv-text), then generate from it.
set -euo pipefail
build=${1:-build}
out=${LINA_DEMO_OUT:-runs/demo}
"$build/lina" train --out "$out" --preset tiny --mixer gated_deltanet --steps "${LINA_DEMO_STEPS:-2000}" \
    --batch 8 --seq 128 --lr 2e-3
"$build/lina" generate "$out" --prompt "${LINA_DEMO_PROMPT:-ROMEO:}" --max-new 400 --temperature 0.8 --top-k 40 --seed 1
echo
echo "lina demo: the model (config.json, model.safetensors), the training log (log.csv) and"
echo "curves (curves.png) are in $out/; continue with: $build/lina generate $out --prompt 'KING:'"
