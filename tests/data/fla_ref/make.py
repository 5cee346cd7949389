#!/usr/bin/env python3
"""fla's own models at their default configurations (shrunk), with logits and greedy
continuations computed by fla's own Triton kernels, on the CPU, through Triton's
interpreter. For tests/test_golden.c (same file layout as ../shared/golden):

    <arch>/config.json, model.safetensors   as fla's save_pretrained writes them
    <arch>/golden.safetensors               input_ids [2, T], logits [2, T, vocab] (f32),
                                            greedy_prompt [1, P], greedy_output [1, P + N]
                                            (greedy: argmax of fla's logits, whole sequence
                                            re-run per token)

Weights: fla's own initialisation with initializer_range 0.1 (as ../shared/golden).
Kernels: attn_mode fused_recurrent (plain fp32; fla's chunk kernels use TF32 on a GPU).
Triton's interpreter has no driver to time autotuning candidates, so the first
candidate is taken (results do not depend on it). Checked: on the H200 fla's GPU
kernels and this interpreter gave the same relative RMS against lina's oracles
(e.g. 1.07e-5 and 1.45e-3 for two HGRN2 folders before the eps fix).

Needs torch, transformers, triton, einops and fla (pip install flash-linear-attention):
    TRITON_INTERPRET=1 python3 tests/data/fla_ref/make.py [ARCH ...]
"""
import json
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
import torch  # noqa: E402
import triton.runtime.autotuner as autotuner  # noqa: E402

autotuner.Autotuner._bench = lambda self, *a, config=None, **k: [0.0, 0.0, 0.0]

import fla  # noqa: E402,F401
from fla.models import (DeltaNetConfig, GatedDeltaNetConfig, GLAConfig, HGRN2Config,  # noqa: E402
                        LinearAttentionConfig, Mamba2Config, RetNetConfig, RWKV7Config)
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = dict(hidden_size=64, num_hidden_layers=2, vocab_size=128, initializer_range=0.1)
T, PROMPT, NEW = 100, 32, 16
CONFIGS = {
    "gla": lambda: GLAConfig(num_heads=2, **SMALL),
    "delta_net": lambda: DeltaNetConfig(num_heads=2, **SMALL),
    "gated_deltanet": lambda: GatedDeltaNetConfig(num_heads=2, head_dim=32, **SMALL),
    "retnet": lambda: RetNetConfig(num_heads=2, **SMALL),
    "hgrn2": lambda: HGRN2Config(expand_ratio=16, **SMALL),
    "linear_attn": lambda: LinearAttentionConfig(num_heads=2, **SMALL),
    "rwkv7": lambda: RWKV7Config(head_dim=16, **SMALL),
    "mamba2": lambda: Mamba2Config(num_heads=8, head_dim=16, state_size=16, **SMALL),
}

for name in sys.argv[1:] or list(CONFIGS):
    torch.manual_seed(1234)
    cfg = CONFIGS[name]()
    cfg.attn_mode = "fused_recurrent"
    model = AutoModelForCausalLM.from_config(cfg).float().eval()
    d = os.path.join(HERE, name)
    model.save_pretrained(d)
    # fla's RWKV-7 layer switches to its chunk kernels for 64 tokens and more (whatever
    # attn_mode says); those fail in Triton 3.9's interpreter (and hung in fp32 on the H200)
    ids = torch.randint(0, cfg.vocab_size, (2, 60 if name == "rwkv7" else T))
    with torch.no_grad():
        logits = model(ids).logits.float()
        # greedy by re-running the whole sequence each step: fla 0.6's generate() under
        # transformers 5.24 does not carry its cache (after the first new token each step
        # sees only the previous token, with an empty state), so it is not used
        prompt = ids[:1, :PROMPT].clone()
        out = prompt
        for _ in range(NEW):
            out = torch.cat([out, model(out).logits[:, -1].argmax(-1, keepdim=True)], 1)
    save_file({"input_ids": ids, "logits": logits.contiguous(), "greedy_prompt": prompt,
               "greedy_output": out.contiguous()}, os.path.join(d, "golden.safetensors"))
    print(name, "params", sum(p.numel() for p in model.parameters()), "logits std %.3f" % logits.std().item(),
          flush=True)
