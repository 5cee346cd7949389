#!/usr/bin/env python3
"""Bar chart of a bench/cuda run: lina vs fla forward time per op, one panel per shape.

    python3 bench/cuda/plot_vs_fla.py bench/cuda/results/run18_bench.json docs/cuda_vs_fla.png

Reads the rows of bench_vs_fla.py's JSON (op, shape, lina_ms, fla_ms); needs gnuplot.
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, png = sys.argv[1], sys.argv[2]
    rows = [r for r in json.load(open(src)) if 'lina_ms' in r and 'fla_ms' in r and 'pass_' not in r]
    if not rows:
        sys.exit(f'{src}: no rows with both lina_ms and fla_ms')
    shapes = list(dict.fromkeys(r['shape'] for r in rows))
    with tempfile.TemporaryDirectory() as tmp:
        panels = []
        for i, shape in enumerate(shapes):
            path = os.path.join(tmp, f'{i}.dat')
            with open(path, 'w') as f:
                for r in rows:
                    if r['shape'] == shape:
                        f.write(f"{r['op']} {r['lina_ms']:.4f} {r['fla_ms']:.4f} {r['fla_ms'] / r['lina_ms']:.2f}\n")
            top = 1.15 * max(max(r['lina_ms'], r['fla_ms']) for r in rows if r['shape'] == shape)
            panels.append(
                f"set title '{shape.replace('_', ' ')}'\nset yrange [0:{top:.3f}]\n"
                f"plot '{path}' using 2:xtic(1) title 'lina' lc rgb '#1f77b4', "
                f"'' using 3 title 'fla 0.6' lc rgb '#ff7f0e', "
                f"'' using ($0):($2 > $3 ? $2 : $3):(sprintf('%.2fx', $4)) with labels offset 0,0.8 notitle\n")
        gp = (f"set terminal pngcairo size {640 * len(shapes)},420 font ',10'\n"
              f"set output '{png}'\n"
              f"set multiplot layout 1,{len(shapes)} title 'bf16 forward on the H200, median ms (lower is better; "
              f"label: fla time / lina time)'\n"
              "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
              "set termoption noenhanced\nset ylabel 'ms'\nset xtics rotate by -25 scale 0\nset key top left\nset grid ytics\n"
              + ''.join(panels) + "unset multiplot\n")
        subprocess.run(['gnuplot'], input=gp.encode(), check=True)


if __name__ == '__main__':
    main()
