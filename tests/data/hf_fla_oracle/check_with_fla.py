#!/usr/bin/env python3
"""Cross-check the self-written oracles in this folder against fla itself.

fla's models need Triton on a GPU. On a machine with one, with fla importable
(pip install flash-linear-attention, or PYTHONPATH pointing at a checkout):

    python3 tests/data/hf_fla_oracle/check_with_fla.py [--out OUT.jsonl] [DIR ...]

(one JSON line per variant is appended to OUT.jsonl as soon as it is done, so
several processes can share the file and a timeout keeps what was finished)

loads every variant folder (default: the folders beside this script) with fla's own model class (AutoModelForCausalLM
after `import fla`), computes logits of expected.safetensors' input_ids in fp32
(TF32 off) and its greedy
continuation of greedy_prompt (model.generate with fla's cache), and reports the
relative RMS against the oracle's logits and whether the continuations agree.
attn_mode is set to fused_recurrent: fla's chunk kernels use TF32 dot products
(about 1e-3 relative), its recurrent kernels are plain fp32 (FLA_ATTN_MODE=chunk
overrides it).
"""
import json
import os
import sys

import torch

import fla  # noqa: F401  (registers fla's configs and models with transformers)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

ATTN_MODE = os.environ.get("FLA_ATTN_MODE", "fused_recurrent")
HERE = os.path.dirname(os.path.abspath(__file__))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

args = sys.argv[1:]
out_path = None
if len(args) >= 2 and args[0] == "--out":
    out_path, args = args[1], args[2:]
dirs = args or [os.path.join(HERE, n) for n in sorted(os.listdir(HERE))]

report = {}
for d in dirs:
    name = os.path.relpath(d)
    if not os.path.isfile(os.path.join(d, "expected.safetensors")):
        continue
    try:
        exp = load_file(os.path.join(d, "expected.safetensors"))
        model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                                     attn_mode=ATTN_MODE).cuda().eval()
        with torch.no_grad():
            logits = model(exp["input_ids"].cuda()).logits.float().cpu()
            ref = exp["logits"]
            rel = (((logits - ref) ** 2).mean() / (ref ** 2).mean()).sqrt().item()
            print(name, "logits_rel_rms", rel, flush=True)
            if out_path:
                with open(out_path, "a") as f:
                    f.write(json.dumps({"variant": name, "stage": "logits", "logits_rel_rms": rel}) + "\n")
            prompt = exp["greedy_prompt"].cuda()
            n_new = exp["greedy_output"].shape[1] - prompt.shape[1]
            out = model.generate(prompt, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False).cpu()
        report[name] = {"class": type(model).__name__, "logits_rel_rms": rel,
                        "greedy_same": bool(torch.equal(out, exp["greedy_output"]))}
    except Exception as e:  # report and go on with the next variant
        report[name] = {"error": "%s: %s" % (type(e).__name__, str(e)[:600])}
    print(name, report[name], flush=True)
    if out_path:
        with open(out_path, "a") as f:
            f.write(json.dumps({"variant": name, **report[name]}) + "\n")
