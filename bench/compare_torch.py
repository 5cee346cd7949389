#!/usr/bin/python3
"""lina vs PyTorch eager, side by side in one run (the machine is shared: only the
ratios measured together mean something).

    /usr/bin/python3 bench/compare_torch.py [--lina build/lina] [--ops linear,gated_delta]
        [--threads 1,2] [--T 4096] [--repeat 5] [--no-backward] [--json out.json]

For each op and thread count it runs `lina bench ops --form chunk --json` and
bench/torch_chunk.py --json (B=1, H=8, K=V=64 by default) back to back, then
prints a table of median ms and the speed-up torch_ms / lina_ms, and one JSON
object with every measurement (to stdout, or to --json FILE).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"compare_torch: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lina", default="build/lina")
    ap.add_argument("--ops", default="linear,gated_delta",
                    help="comma list from linear, simple_gla, delta, gated_delta, softmax")
    ap.add_argument("--threads", default="1,2")
    for name, default in (("B", 1), ("T", 4096), ("H", 8), ("K", 64), ("V", 64), ("repeat", 5)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--json", help="write the JSON here instead of stdout")
    a = ap.parse_args()
    sizes = ["--B", str(a.B), "--T", str(a.T), "--H", str(a.H), "--K", str(a.K), "--V", str(a.V),
             "--repeat", str(a.repeat)]
    backward = [] if a.no_backward else ["--backward"]
    rows = []
    for op in a.ops.split(","):
        for threads in [int(t) for t in a.threads.split(",")]:
            th = ["--threads", str(threads)]
            form = [] if op == "softmax" else ["--form", "chunk"]
            lina = run_json([a.lina, "bench", "ops", "--op", op, *form, *sizes, *th, *backward, "--json"])
            torch = run_json([sys.executable, os.path.join(HERE, "torch_chunk.py"), "--op", op, *sizes, *th,
                              *backward, "--json"])
            row = {"op": op, "threads": threads, "lina": lina, "torch": torch,
                   "fwd_speedup": torch["fwd_ms"] / lina["fwd_ms"]}
            if backward:
                row["fwdbwd_speedup"] = torch["fwdbwd_ms"] / lina["fwdbwd_ms"]
            rows.append(row)
            print(f"  measured {op} threads={threads}", file=sys.stderr)

    print(f"lina (chunk form) vs PyTorch {rows[0]['torch']['torch']} eager, B={a.B} T={a.T} H={a.H} "
          f"K={a.K} V={a.V}, median of {a.repeat} (ms); speed-up = torch / lina")
    hdr = f"{'op':<12} {'thr':>3} {'lina fwd':>10} {'torch fwd':>10} {'x':>6}"
    if backward:
        hdr += f" {'lina f+b':>10} {'torch f+b':>10} {'x':>6}"
    hdr += f" {'lina GF/s':>9} {'sgemm GF/s':>10}"
    print(hdr)
    for r in rows:
        line = (f"{r['op']:<12} {r['threads']:>3} {r['lina']['fwd_ms']:>10.2f} {r['torch']['fwd_ms']:>10.2f} "
                f"{r['fwd_speedup']:>6.2f}")
        if backward:
            line += (f" {r['lina']['fwdbwd_ms']:>10.2f} {r['torch']['fwdbwd_ms']:>10.2f} "
                     f"{r['fwdbwd_speedup']:>6.2f}")
        line += f" {r['lina']['gflops']:>9.1f} {r['lina']['sgemm_gflops']:>10.1f}"
        print(line)
    out = {"B": a.B, "T": a.T, "H": a.H, "K": a.K, "V": a.V, "repeat": a.repeat, "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    else:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
