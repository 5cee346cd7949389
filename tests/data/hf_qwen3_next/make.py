#!/usr/bin/env python3
"""A tiny random-weight Hugging Face Qwen3NextForCausalLM (transformers' own
pure-PyTorch CPU path) and its outputs, for tests/test_hf_qwen3_next.c:
    config.json, model.safetensors   as save_pretrained writes them
    golden.safetensors               input_ids [2, T], logits [2, T, vocab],
                                     greedy_prompt [1, 16], greedy_output [1, 16 + 24]
                                     (model.generate, greedy, with its cache)
Layers: linear_attention (Gated DeltaNet, 2 k heads / 4 v heads) and full_attention
(gated softmax attention, GQA 4/2, partial rotary 0.25) alternating; sparse MoE
(4 experts, top 2, shared expert) everywhere except layer 1 (dense MLP).

Needs torch and transformers (>= 4.57) from PyPI in a venv outside the repo:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers safetensors
    /tmp/venv/bin/python tests/data/hf_qwen3_next/make.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(2024)
torch.backends.cuda.matmul.allow_tf32 = False

cfg = Qwen3NextConfig(
    vocab_size=256, hidden_size=64, num_hidden_layers=4, intermediate_size=80,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=12,
    linear_conv_kernel_dim=4, full_attention_interval=2,
    num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48,
    decoder_sparse_step=1, mlp_only_layers=[1], norm_topk_prob=True,
    rms_norm_eps=1e-6, initializer_range=0.1, tie_word_embeddings=False, max_position_embeddings=512,
)
model = Qwen3NextForCausalLM(cfg).float().eval()
with torch.no_grad():  # every weight random (norm weights too: Qwen3Next scales by 1 + w)
    for name, p in model.named_parameters():
        if name.endswith("A_log"):
            p.copy_(torch.log(torch.empty_like(p).uniform_(1, 8)))
        elif name.endswith("dt_bias"):
            p.copy_(torch.randn_like(p) * 0.5 - 1)
        elif "norm" in name:
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("linear_attn.norm.weight") else 0.0))
        else:
            p.copy_(torch.randn_like(p) * 0.1)
model.save_pretrained(HERE, safe_serialization=True)

B, T = 2, 100
ids = torch.randint(0, cfg.vocab_size, (B, T))
with torch.no_grad():
    logits = model(ids).logits
    prompt = ids[:1, :16]
    out = model.generate(prompt, max_new_tokens=24, do_sample=False, min_new_tokens=24)
save_file({"input_ids": ids.contiguous(), "logits": logits.float().contiguous(),
           "greedy_prompt": prompt.clone(), "greedy_output": out.contiguous()},
          os.path.join(HERE, "golden.safetensors"))
print("logits std %.3f, layer types %s" % (logits.std().item(), cfg.layer_types))
