#!/usr/bin/env python3
"""Training curves of resumable `lina mqar --checkpoint DIR` runs: DIR/curve.tsv holds
one line per progress interval (step, mean training loss over the interval, accuracy on
the first --eval-n test examples or -1, training seconds so far).

  mqar_curves.py OUT.png TITLE NAME=CURVE.tsv[@OFFSET][+CURVE.tsv@OFFSET ...] [NAME=...]
writes a two-panel PNG (answer accuracy and training loss vs step). @OFFSET shifts a
curve's steps (a warm-started run continuing another: --init-from); '+' joins the stages
of one model into one line.
"""
import subprocess
import sys
import tempfile


def joined(spec, tmp):
    """One data file for 'a.tsv@0+b.tsv@1500+...' with the offsets applied (first column)."""
    rows = []
    for part in spec.split("+"):
        path, _, offset = part.partition("@")
        for line in open(path):
            f = line.split()
            if f and not line.startswith("#"):
                rows.append(" ".join([str(int(float(f[0])) + int(offset or 0))] + f[1:]))
    out = tempfile.NamedTemporaryFile("w", suffix=".tsv", dir=tmp, delete=False)
    out.write("\n".join(rows) + "\n")
    out.close()
    return out.name


def main():
    out, title, runs = sys.argv[1], sys.argv[2], [a.split("=", 1) for a in sys.argv[3:]]
    acc_plots, loss_plots = [], []
    with tempfile.TemporaryDirectory() as tmp:  # joined stages live until gnuplot has read them
        for name, spec in runs:
            if "+" in spec:
                spec = joined(spec, tmp)
            path, _, offset = spec.partition("@")
            x = f"($1 + {int(offset or 0)})"
            acc_plots.append(f"'{path}' using {x}:($3 >= 0 ? 100 * $3 : 1/0) with linespoints lw 2 title '{name}'")
            loss_plots.append(f"'{path}' using {x}:2 with lines lw 2 title '{name}'")
        gp = (f"set terminal pngcairo size 900,700 noenhanced\nset output '{out}'\n"
              "set multiplot layout 2,1\nset grid\nset key left top\n"
              f"set title '{title}'\nset ylabel 'eval accuracy (%)'\nset yrange [0:105]\n"
              f"plot {', '.join(acc_plots)}\n"
              "set title ''\nset xlabel 'optimizer step'\nset ylabel 'training loss (answers, nats)'\n"
              "set yrange [*:*]\nset key right top\n"
              f"plot {', '.join(loss_plots)}\nunset multiplot\n")
        subprocess.run(["gnuplot"], input=gp.encode(), check=True)

if __name__ == "__main__":
    main()
