#!/usr/bin/env python3
"""MQAR report: tables of test accuracy (mixer x d_model, one per setting) next to
the DeltaNet paper's figures, and a gnuplot PNG of accuracy vs d_model.

  mqar_table.py RESULTS.jsonl OUTDIR "command line"   -> OUTDIR/README.md, OUTDIR/mqar.png
  mqar_table.py --has RESULTS.jsonl key=value ...      -> exit 0 if a run with those settings exists
"""
import json
import os
import subprocess
import sys

# DeltaNet paper (Yang et al. 2024, Fig. 2: MQAR, seq 512, 64 pairs), read off the figure.
PAPER = {"deltanet": {64: 100, 128: 100, 256: 100},
         "gla": {64: 22, 128: 95, 256: 100},
         "retnet": {64: 5, 128: 87, 256: 96}}
ORDER = ["softmax", "deltanet", "gated_deltanet", "gla", "mamba2", "hgrn2", "retnet", "linear"]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def has(path, pairs):
    want = dict(p.split("=", 1) for p in pairs)
    for r in load(path) if os.path.exists(path) else []:
        if all(k in r and float(r[k]) == float(v) if k != "mixer" else r[k] == v
               for k, v in want.items()):
            return True
    return False


def main():
    if sys.argv[1] == "--has":
        sys.exit(0 if has(sys.argv[2], sys.argv[3:]) else 1)
    res, out, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = load(res)
    # (seq, pairs, steps, batch, train, vocab) -> {(mixer, dim): the best row over the lrs}
    groups, lrs = {}, {}
    for r in rows:
        # a --train-mix run names its mix (and warm start) in place of the training-set size
        train = (f"mix {r['train_mix']}" + (f", tied head, from {r['init_from']}" if r.get("init_from") else
                                             ", tied head" if r.get("tie") else "")) if r.get("train_mix") else r["train"]
        g = (r["seq"], r["pairs"], r["steps"], r["batch"], train, r["vocab"])
        cell = groups.setdefault(g, {})
        lrs.setdefault(g, set()).add(r["lr"])
        old = cell.get((r["mixer"], r["dim"]))
        if old is None or r["accuracy"] > old["accuracy"]:
            cell[(r["mixer"], r["dim"])] = r
    md = ["# Multi-query associative recall (MQAR)", "",
          "Zoology's MQAR (Arora et al. 2023): vocabulary V (Zoology: 8192), keys in [1, V/2), values in",
          "[V/2, V), K pairs then each key queried once at a power-law gap (a = 0.01), random",
          "tokens elsewhere; only the K answers per example are scored (argmax exact match).",
          "Two-layer lina models (mixer + SwiGLU MLP per layer, max(1, d/64) heads), AdamW (wd 0.1),",
          "5% warm-up then cosine to lr/10, gradient clip 1, one seed.", "",
          "Regenerate (resumable; finished runs in results.jsonl are skipped):", "",
          "    " + cmd, "",
          "**Budget caveat.** Zoology trains on 100k examples for 64 epochs; the runs here are",
          "far smaller (steps x batch and training-set size in each table's heading), run on a",
          "shared 2-core CPU. Low numbers mean *not trained enough*, not *cannot recall*.", ""]
    dims_all = sorted({r["dim"] for r in rows})
    for g in sorted(groups, key=lambda g: -len(groups[g])):  # fullest sweep first
        seq, pairs, steps, batch, train, vocab = g
        runs = groups[g]
        glrs = sorted(lrs[g])
        lr = f"{glrs[0]}" if len(glrs) == 1 else "best of " + "/".join(f"{x}" for x in glrs) + \
            " per cell (lr in brackets)"
        dims = sorted({d for (_, d) in runs})
        mixers = [m for m in ORDER if any((m, d) in runs for d in dims)]
        train_txt = train if isinstance(train, str) else f"{train} training examples"
        md += [f"## seq {seq}, {pairs} pairs, vocab {vocab}: {steps} steps x batch {batch}, {train_txt}, "
               f"lr {lr}", ""]
        paper = seq == 512 and pairs == 64 and vocab == 8192
        head = "| mixer | " + " | ".join(f"d={d}" for d in dims) + " |"
        if paper:
            head += " paper (d=64/128/256) |"
        md += [head, "|" + "---|" * (len(dims) + 1 + paper)]
        for m in mixers:
            cells = []
            for d in dims:
                r = runs.get((m, d))
                lr_note = f"lr {r['lr']}, " if len(glrs) > 1 else ""
                cells.append(f"{100 * r['accuracy']:.1f}% ({lr_note}{r['train_seconds']:.0f} s)" if r else "-")
            line = f"| {m} | " + " | ".join(cells) + " |"
            if paper:
                p = PAPER.get(m)
                line += (" " + "/".join(f"{p[d]}" for d in (64, 128, 256)) + "% |") if p else " - |"
            md.append(line)
        md.append("")
    # plot: the group with the most runs, accuracy vs d_model per mixer
    best = max(groups, key=lambda g: len(groups[g])) if groups else None
    if best:
        runs = groups[best]
        dat = os.path.join(out, "mqar_plot.dat")
        series = []
        with open(dat, "w") as f:
            for m in ORDER:
                pts = sorted((d, 100 * r["accuracy"]) for (mm, d), r in runs.items() if mm == m)
                if not pts:
                    continue
                f.write(f"# {m}\n" + "".join(f"{d} {a:.2f}\n" for d, a in pts) + "\n\n")
                series.append(m)
        plots = ", ".join(f"'{dat}' index {i} with linespoints lw 2 pt 7 title '{m}'"
                          for i, m in enumerate(series))
        for m, p in PAPER.items():
            if best[0] == 512 and best[1] == 64 and best[5] == 8192:
                pts = " ".join(f"{d} {a}" for d, a in p.items())
                plots += f", '-' with linespoints dt 2 title '{m} (paper)'"
        inline = ""
        if best[0] == 512 and best[1] == 64 and best[5] == 8192:
            for m, p in PAPER.items():
                inline += "".join(f"{d} {a}\n" for d, a in p.items()) + "e\n"
        gp = (f"set terminal pngcairo size 800,500 noenhanced\nset output '{os.path.join(out, 'mqar.png')}'\n"
              f"set title 'MQAR seq {best[0]}, {best[1]} pairs, vocab {best[5]}, {best[2]} steps x {best[3]}'\n"
              "set xlabel 'd_model'\nset ylabel 'test accuracy (%)'\nset logscale x 2\n"
              f"set xrange [{min(dims_all) / 1.3}:{max(dims_all) * 1.3}]\nset yrange [0:105]\n"
              "set key outside right\nset grid\n"
              f"plot {plots}\n{inline}")
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)
        os.remove(dat)
        md += [f"![accuracy vs d_model](mqar.png) (plot: seq {best[0]}, {best[1]} pairs; dashed: "
               "DeltaNet paper)", ""]
    # bar charts for single-width sweeps (the d = 64 ordering): lina vs the paper's d = 64
    for g, runs in sorted(groups.items()):
        dims = sorted({d for (_, d) in runs})
        if len(dims) != 1 or len(runs) < 3:
            continue
        d = dims[0]
        seq, pairs, steps, batch, train, vocab = g
        png = f"mqar_d{d}_{seq}_{pairs}_{vocab}_{steps}.png"
        mixers = [m for m in ORDER if (m, d) in runs]
        data = "".join(f"{m} {100 * runs[(m, d)]['accuracy']:.2f} "
                       f"{PAPER[m][d] if m in PAPER and d in PAPER[m] else '-'}\n" for m in mixers)
        gp = (f"set terminal pngcairo size 800,450 noenhanced\nset output '{os.path.join(out, png)}'\n"
              f"set title 'MQAR d={d}: lina at ({seq}, {pairs} pairs, V {vocab}), {steps} steps x {batch}'\n"
              "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8\n"
              "set boxwidth 0.9\nset yrange [0:105]\nset ylabel 'test accuracy (%)'\nset grid ytics\n"
              "set datafile missing '-'\nset key top right\n"
              "plot '-' using 2:xtic(1) title 'lina (best lr)', '' using 3 title 'paper (512, 64 pairs)'\n"
              f"{data}e\n{data}e\n")
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)
        md += [f"![d={d} ordering](" + png + f") (seq {seq}, {pairs} pairs, vocab {vocab}; paper bars: "
               "the DeltaNet paper's d = 64 at seq 512, 64 pairs, a harder setting)", ""]
    notes = os.path.join(out, "notes.md")  # hand-written: what ran, what did not, measurements
    if os.path.exists(notes):
        with open(notes) as f:
            md += [f.read()]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
