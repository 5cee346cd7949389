#!/usr/bin/env python3
"""Char-LM comparison report from `lina train` runs (see scripts/charlm_report.sh):
OUT/results.jsonl, OUT/README.md (final val loss in nats/char and bits/char, tokens/s,
params) and OUT/charlm.png (validation loss curves)."""
import csv
import json
import math
import os
import re
import subprocess
import sys


def main():
    runs, out, preset, steps, batch, seq, lr, mixers, cmd = sys.argv[1:10]
    rows = []
    curves = []
    for mx in mixers.split():
        d = os.path.join(runs, f"{preset}-{mx}-s{steps}-b{batch}-t{seq}-lr{lr}")
        log = os.path.join(d, "log.csv")
        if not os.path.exists(log):
            continue
        with open(log) as f:
            recs = list(csv.DictReader(f))
        if not recs or recs[-1]["step"] != steps:
            continue
        val = [(int(r["step"]), float(r["val_loss"])) for r in recs if r["val_loss"]]
        tps = [float(r["tokens_per_s"]) for r in recs[len(recs) // 10:]]  # skip warm-up steps
        params = None
        try:
            m = re.search(r"\| (\d+) params \|", open(d + ".stderr").read())
            params = int(m.group(1)) if m else None
        except OSError:
            pass
        row = {"mixer": mx, "preset": preset, "steps": int(steps), "batch": int(batch),
               "seq": int(seq), "lr": float(lr), "params": params,
               "val_loss": val[-1][1] if val else None,
               "val_bits_per_char": val[-1][1] / math.log(2) if val else None,
               "tokens_per_s": sorted(tps)[len(tps) // 2] if tps else None,
               "elapsed_s": float(recs[-1]["elapsed_s"])}
        rows.append(row)
        curves.append((mx, val))
    with open(os.path.join(out, "results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    md = ["# Character-level LM comparison (tinyshakespeare)", "",
          f"Byte-level models, preset `{preset}` for every mixer (same shape: parameter counts",
          "differ only by each mixer's own projections, see the params column), "
          f"{steps} steps x batch {batch} x {seq} bytes, lr {lr} (warm-up 5%, cosine to lr/10),",
          "seed 1, one thread, `lina train`'s 90/10 train/validation split. Validation loss",
          "after the last step (8 fixed validation batches).", "",
          "Regenerate (resumable):", "", "    " + cmd, "",
          "| mixer | params | val loss (nats/char) | bits/char | tokens/s (median) | wall s |",
          "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["val_loss"] if r["val_loss"] is not None else 1e9):
        md.append(f"| {r['mixer']} | {r['params']} | {r['val_loss']:.4f} | "
                  f"{r['val_bits_per_char']:.4f} | {r['tokens_per_s']:.0f} | {r['elapsed_s']:.0f} |")
    md += ["", "![validation loss curves](charlm.png)", ""]
    notes = os.path.join(out, "notes.md")
    if os.path.exists(notes):
        md += [open(notes).read()]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(md))
    if curves:
        dat = os.path.join(out, "charlm_plot.dat")
        with open(dat, "w") as f:
            for mx, val in curves:
                f.write(f"# {mx}\n" + "".join(f"{s} {v}\n" for s, v in val) + "\n\n")
        plots = ", ".join(f"'{dat}' index {i} with linespoints lw 2 title '{mx}'"
                          for i, (mx, _) in enumerate(curves))
        gp = (f"set terminal pngcairo size 800,500 noenhanced\nset output '{os.path.join(out, 'charlm.png')}'\n"
              f"set title 'tinyshakespeare, preset {preset}, {steps} steps x {batch} x {seq}'\n"
              "set xlabel 'step'\nset ylabel 'validation loss (nats/char)'\nset grid\n"
              "set key outside right\n" f"plot {plots}\n")
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)
        os.remove(dat)


if __name__ == "__main__":
    main()
