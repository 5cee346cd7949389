#!/usr/bin/env python3
"""Char-LM comparison tables from `lina train` runs (see scripts/charlm_report.sh).

Usage: charlm_table.py RUNS OUT NAME PREFIX STEPS BATCH SEQ LR "MIXERS"
Reads RUNS/PREFIX-MIXER-sSTEPS-bBATCH-tSEQ-lrLR/log.csv (+ .stderr, .config.json) and
writes OUT/results_NAME.jsonl, OUT/table_NAME.md (final validation loss in nats/char
and bits/char, tokens/s, params, SwiGLU width) and OUT/charlm_NAME.png (validation
curves). Runs that have not reached STEPS are listed as unfinished."""
import csv
import json
import math
import os
import re
import subprocess
import sys


def main():
    runs, out, name, prefix, steps, batch, seq, lr, mixers = sys.argv[1:10]
    rows, curves, unfinished = [], [], []
    for mx in mixers.split():
        d = os.path.join(runs, f"{prefix}-{mx}-s{steps}-b{batch}-t{seq}-lr{lr}")
        log = os.path.join(d, "log.csv")
        if not os.path.exists(log):
            unfinished.append(f"{mx} (not run)")
            continue
        with open(log) as f:
            recs = list(csv.DictReader(f))
        if not recs or recs[-1]["step"] != steps:
            unfinished.append(f"{mx} (at step {recs[-1]['step'] if recs else 0})")
            continue
        val = [(int(r["step"]), float(r["val_loss"])) for r in recs if r["val_loss"]]
        tps = [float(r["tokens_per_s"]) for r in recs[len(recs) // 10:]]  # skip warm-up steps
        params = None
        try:
            m = re.search(r"\| (\d+) params \|", open(d + ".stderr").read())
            params = int(m.group(1)) if m else None
        except OSError:
            pass
        hid = json.load(open(d + ".config.json")).get("intermediate_size")
        rows.append({"data": name, "mixer": mx, "steps": int(steps), "batch": int(batch),
                     "seq": int(seq), "lr": float(lr), "params": params, "intermediate": hid,
                     "val_loss": val[-1][1] if val else None,
                     "val_bits_per_char": val[-1][1] / math.log(2) if val else None,
                     "best_val_loss": min(v for _, v in val) if val else None,
                     "tokens_per_s": sorted(tps)[len(tps) // 2] if tps else None,
                     "elapsed_s": float(recs[-1]["elapsed_s"])})
        curves.append((mx, val))
    with open(os.path.join(out, f"results_{name}.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    md = ["| mixer | params | SwiGLU width | val loss (nats/char) | bits/char | tokens/s (median) | wall s |",
          "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["val_loss"] if r["val_loss"] is not None else 1e9):
        md.append(f"| {r['mixer']} | {r['params']} | {r['intermediate']} | {r['val_loss']:.4f} | "
                  f"{r['val_bits_per_char']:.4f} | {r['tokens_per_s']:.0f} | {r['elapsed_s']:.0f} |")
    if unfinished:
        md += ["", "Unfinished: " + ", ".join(unfinished) + "."]
    with open(os.path.join(out, f"table_{name}.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    if curves:
        dat = os.path.join(out, f"charlm_{name}_plot.dat")
        with open(dat, "w") as f:
            for mx, val in curves:
                f.write(f"# {mx}\n" + "".join(f"{s} {v}\n" for s, v in val) + "\n\n")
        colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf"]
        plots = ", ".join(f"'{dat}' index {i} with linespoints lw 2 pt {i % 7 + 1} "
                          f"lc rgb '{colors[i % len(colors)]}' dt {1 + i // len(colors)} title '{mx}'"
                          for i, (mx, _) in enumerate(curves))
        gp = (f"set terminal pngcairo size 900,560 noenhanced\n"
              f"set output '{os.path.join(out, f'charlm_{name}.png')}'\n"
              f"set title '{name}: {steps} steps x {batch} x {seq} bytes, equal parameters'\n"
              "set xlabel 'step'\nset ylabel 'validation loss (nats/char)'\nset grid\n"
              "set yrange [:3.2]\nset key outside right\n" f"plot {plots}\n")
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)
        os.remove(dat)


if __name__ == "__main__":
    main()
