#!/usr/bin/env bash
# lina's main job on a built-in default: train a small Gated DeltaNet language
# model on a corpus found on this machine (tinyshakespeare from ../shared, or the
# King James Bible from Debian's bible-kjv-text), then generate from it.
set -euo pipefail
build=${1:-build}
out=${LINA_DEMO_OUT:-runs/demo}
"$build/lina" train --out "$out" --steps "${LINA_DEMO_STEPS:-600}"
"$build/lina" generate "$out" --prompt "${LINA_DEMO_PROMPT:-ROMEO:}" --max-new 400 --temperature 0.8 --top-k 40 --seed 1
echo
echo "lina demo: model, training log (train_log.csv) and curves (train_curves.png) are in $out/"
