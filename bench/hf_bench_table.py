#!/usr/bin/python3
"""Markdown table of a bench/hf_bench.sh run (docs/HF_BENCH.md).

    python3 bench/hf_bench_table.py WORKDIR [RUNDIR]

Reads RUNDIR/lina.jsonl (bench/hf_speed.c) and RUNDIR/llama.jsonl (llama-bench
-o jsonl) and prints one row per family and thread count: tokens/s of the
fastest of the repeated runs (every run in brackets), llama.cpp's the same,
and lina / llama.cpp. Parameters are counted from WORKDIR/<family>/model.safetensors'
header. RUNDIR (default WORKDIR) holds an earlier run's two files moved aside.
"""
import json
import os
import struct
import sys


def n_params(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name != "__metadata__":
            k = 1
            for s in t["shape"]:
                k *= s
            total += k
    return total


def runs(values):
    return "%.0f [%s]" % (max(values), ", ".join("%.0f" % v for v in values))


def main():
    work = sys.argv[1]
    rundir = sys.argv[2] if len(sys.argv) > 2 else work
    lina, llama, order = {}, {}, []
    for line in open(os.path.join(rundir, "lina.jsonl")):
        d = json.loads(line)
        fam = os.path.basename(d["dir"].rstrip("/"))
        key = (fam, d["threads"])
        if key not in lina:
            order.append(key)
        lina.setdefault(key, {})[(d["test"], d["tokens"])] = ([d["tokens"] / s for s in d["runs_s"]], d["load1"])
    path = os.path.join(rundir, "llama.jsonl")
    if os.path.exists(path):
        for line in open(path):
            d = json.loads(line)
            test = ("prefill", d["n_prompt"]) if d["n_gen"] == 0 else ("decode", d["n_gen"])
            llama.setdefault((d["family"], d["n_threads"]), {})[test] = (d["samples_ts"], d["load1"])
            llama[(d["family"], d["n_threads"])]["commit"] = d["build_commit"]
    tests = [("prefill", 512), ("prefill", 2048), ("decode", 128)]
    print("| family | params | threads | lina pp512 | lina pp2048 | lina tg128 | llama.cpp pp512 | llama.cpp pp2048 "
          "| llama.cpp tg128 | lina/llama.cpp pp512, pp2048, tg128 | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for fam, th in order:
        li, ll = lina[(fam, th)], llama.get((fam, th), {})
        cells = [runs(li[t][0]) if t in li else "-" for t in tests]
        cells += [runs(ll[t][0]) if t in ll else "-" for t in tests]
        ratio = ", ".join("%.2f" % (max(li[t][0]) / max(ll[t][0])) for t in tests if t in li and t in ll) or "-"
        loads = [li[t][1] for t in tests if t in li] + [ll[t][1] for t in tests if t in ll]
        params = n_params(os.path.join(work, fam, "model.safetensors")) / 1e6
        print("| %s | %.1fM | %d | %s | %s | %s-%s |" % (fam, params, th, " | ".join(cells), ratio,
                                                         "%.1f" % min(loads), "%.1f" % max(loads)))


if __name__ == "__main__":
    main()
