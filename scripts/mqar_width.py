#!/usr/bin/env python3
"""MQAR accuracy vs d_model at the paper setting (seq 512, 64 pairs, vocab 8192) from the
three-stage runs of scripts/mqar_stages.sh / mqar_gpu_grid.sh: a markdown table (stage 1 /
2 / 3 accuracy per mixer and width, the DeltaNet paper's figure beside) and a gnuplot PNG of
stage-3 accuracy vs d_model (dashed: the paper).

  mqar_width.py DIR OUT.png   DIR holds d<width>[_lr<x>]/c_<mixer>_s<stage>.json
"""
import glob
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqar_table import ORDER, PAPER  # noqa: E402


COLOR = {"softmax": "#9400d3", "deltanet": "#009e73", "gated_deltanet": "#56b4e9", "gla": "#e69f00",
         "mamba2": "#a08800", "hgrn2": "#777777", "retnet": "#0072b2", "linear": "#e51e10"}


def main():
    root, png = sys.argv[1], sys.argv[2]
    runs = {}  # (mixer, dim, variant) -> {stage: result}
    for path in glob.glob(os.path.join(root, "d*", "c_*_s?.json")):
        variant = os.path.basename(os.path.dirname(path))
        m = re.match(r"d(\d+)(?:_(.*))?$", variant)
        s = re.match(r"c_(.+)_s(\d)\.json$", os.path.basename(path))
        r = json.load(open(path))
        runs.setdefault((s.group(1), int(m.group(1)), m.group(2) or ""), {})[int(s.group(2))] = r
    dims = sorted({d for (_, d, _) in runs})
    variants = sorted({v for (_, _, v) in runs})
    rows = ["| mixer | " + " | ".join(f"d = {d}: s1 / s2 / **s3**" for d in dims) + " | paper (64 / 128 / 256) |",
            "|---|" + "---|" * len(dims) + "---|"]
    for v in variants:
        for mx in ORDER:
            if not any((mx, d, v) in runs for d in dims):
                continue
            cells = []
            for d in dims:
                st = runs.get((mx, d, v), {})
                acc = [f"{100 * st[i]['accuracy']:.2f}" if i in st else "-" for i in (1, 2, 3)]
                cells.append(f"{acc[0]} / {acc[1]} / **{acc[2]}**")
            name = mx + (f" ({v.replace('lr', 'stage-1 lr ')})" if v else "")
            p = PAPER.get(mx)
            rows.append(f"| {name} | " + " | ".join(cells) + " | " +
                        ("/".join(str(p[d]) for d in (64, 128, 256)) + "%" if p else "-") + " |")
    print("\n".join(rows))
    # plot: stage 3 vs width, every mixer (its best stage-1 lr), paper dashed
    dat = png + ".dat"
    series = []
    with open(dat, "w") as f:
        for mx in ORDER:
            pts = []
            for d in dims:
                accs = [runs[(mx, d, v)][3]["accuracy"] for v in variants if 3 in runs.get((mx, d, v), {})]
                if accs:
                    pts.append((d, 100 * max(accs)))
            if pts:
                f.write(f"# {mx}\n" + "".join(f"{d} {a:.2f}\n" for d, a in pts) + "\n\n")
                series.append(mx)
    plots = [f"'{dat}' index {i} with linespoints lw 2 pt 7 lc rgb '{COLOR[mx]}' title '{mx}'"
             for i, mx in enumerate(series)]
    inline = ""
    for mx, p in PAPER.items():
        plots.append(f"'-' with linespoints dt 2 pt 6 lc rgb '{COLOR[mx]}' title '{mx} (paper)'")
        inline += "".join(f"{d} {a}\n" for d, a in sorted(p.items())) + "e\n"
    gp = (f"set terminal pngcairo size 860,500 noenhanced\nset output '{png}'\n"
          "set title 'MQAR (512, 64 pairs, vocab 8192): three stages, 8000 x 32 steps, one seed (H200)'\n"
          "set xlabel 'd_model'\nset ylabel 'test accuracy (%)'\nset logscale x 2\n"
          f"set xrange [{min(dims) / 1.3}:{max(dims) * 1.3}]\nset yrange [0:105]\nset xtics ({', '.join(str(d) for d in dims)})\n"
          "set key outside right\nset grid\n"
          f"plot {', '.join(plots)}\n{inline}")
    subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    os.remove(dat)


if __name__ == "__main__":
    main()
