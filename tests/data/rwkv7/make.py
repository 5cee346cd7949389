#!/usr/bin/python3
"""Tiny fla RWKV-7 checkpoints with reference logits and a greedy continuation,
for tests/test_rwkv7.c:
    rwkv7/     model_type "rwkv7", fuse_norm true (kk = k / sqrt(|k|^2 + 1e-6)),
               intermediate_size given
    rwkv7/v1/  model_type "rwkv7_fla", fuse_norm false (kk = k / max(|k|, 1e-12)),
               the version-1 layout (attn.x_x (6, 1, 1, D) packs x_r..x_g),
               intermediate_size from a float hidden_ratio (3.5), no norm biases

The reference is SELF-WRITTEN: a float64, token-by-token PyTorch re-statement
of fla/models/rwkv7/modeling_rwkv7.py and fla/layers/rwkv7.py (fla's own
kernels need a GPU). It is not fla's code and was not checked against fla.

Per layer l (x the residual stream, ln0 applied to the embedding in layer 0):
  h = LN_attn(x); delta = h_{t-1} - h_t (h_{-1} = 0); x_c = h + delta * mu_c
  r = Wr x_r; k = Wk x_k; v = Wv x_v
  logw = -e^{-1/2} sigmoid(lora_w(x_w))   (tanh inside the LoRA)
  layer 0: v_first = v; else v = lerp(v, v_first, sigmoid(lora_v(x_v)))
  a = sigmoid(lora_a(x_a)); g = lora_g(x_g) (sigmoid inside, no bias)
  kk = normalize(k * k_k) per head (fuse_norm: l2_norm with eps 1e-6); k = k (1 + (a - 1) k_a)
  S_t = diag(e^{logw}) S + (kk a) (-kk^T S) + k v^T      (lina/dplr.h with a = -kk, b = kk a)
  o = (GroupNorm_H(S^T r) + sum(r k r_k) v) * g;  x += Wo o
  h = LN_ffn(x); x += W_value relu(W_key (h + (h_{t-1} - h) mu_k))^2
logits = lm_head(LN(x))

Run from the repository root: /usr/bin/python3 tests/data/rwkv7/make.py
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(77)

CFG = {
    "model_type": "rwkv7",
    "vocab_size": 96,
    "hidden_size": 32,
    "head_dim": 8,
    "num_hidden_layers": 3,
    "decay_low_rank_dim": 8,
    "gate_low_rank_dim": 12,
    "a_low_rank_dim": 8,
    "v_low_rank_dim": 4,
    "intermediate_size": 64,
    "hidden_act": "sqrelu",
    "norm_first": True,
    "norm_bias": True,
    "norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "value_dim": None,
    "attn": None,
    "fuse_norm": True,
}
CFG_V1 = dict(CFG, model_type="rwkv7_fla", fuse_norm=False, intermediate_size=None, hidden_ratio=3.5,
              norm_bias=False, value_dim=[32, 32, 32])
B, T, N_PROMPT, N_NEW = 2, 70, 16, 8


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        dt = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rnd(*shape, std=0.3):
    return torch.randn(*shape, dtype=torch.float64) * std


def inter(cfg):
    if cfg.get("intermediate_size"):
        return cfg["intermediate_size"]
    return 32 * ((int(cfg["hidden_size"] * cfg["hidden_ratio"]) + 31) // 32)


def params(cfg):
    D, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    I = inter(cfg)
    H, hd = D // cfg["head_dim"], cfg["head_dim"]
    p = {"model.embeddings.weight": rnd(V, D, std=1.0), "lm_head.weight": rnd(V, D, std=0.3),
         "model.norm.weight": 1 + rnd(D, std=0.1)}
    if cfg.get("norm_bias", True):
        p["model.norm.bias"] = rnd(D, std=0.1)
    ranks = {"w": cfg["decay_low_rank_dim"], "a": cfg["a_low_rank_dim"], "v": cfg["v_low_rank_dim"],
             "g": cfg["gate_low_rank_dim"]}
    for l in range(L):
        pre = "model.layers.%d." % l
        norms = ["attn_norm", "ffn_norm"] + (["pre_norm"] if l == 0 else [])
        for n in norms:
            p[pre + n + ".weight"] = 1 + rnd(D, std=0.1)
            if cfg.get("norm_bias", True):
                p[pre + n + ".bias"] = rnd(D, std=0.1)
        for c in "rwkvag":
            p[pre + "attn.x_" + c] = torch.rand(1, 1, D, dtype=torch.float64)
        p[pre + "attn.k_k"] = 0.7 + rnd(D, std=0.1)
        p[pre + "attn.k_a"] = 1.0 + rnd(D, std=0.1)
        p[pre + "attn.r_k"] = rnd(H, hd, std=0.3)
        for n in ["r_proj", "k_proj", "v_proj", "o_proj"]:
            p[pre + "attn.%s.weight" % n] = rnd(D, D, std=D ** -0.5)
        for c in "wavg":
            if c == "v" and l == 0:
                continue
            p[pre + "attn.%s_lora.lora.0.weight" % c] = rnd(ranks[c], D, std=0.5)
            p[pre + "attn.%s_lora.lora.2.weight" % c] = rnd(D, ranks[c], std=0.5)
            if c != "g":
                p[pre + "attn.%s_lora.lora.2.bias" % c] = rnd(D, std=0.5)
        p[pre + "attn.g_norm.weight"] = 1 + rnd(D, std=0.1)
        p[pre + "attn.g_norm.bias"] = rnd(D, std=0.1)
        p[pre + "ffn.x_k"] = torch.rand(D, dtype=torch.float64)
        p[pre + "ffn.key.weight"] = rnd(I, D, std=D ** -0.5)
        p[pre + "ffn.value.weight"] = rnd(D, I, std=I ** -0.5)
    return p


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * w
    return y + b if b is not None else y


def shift_delta(x):
    """(B, T, D): x_{t-1} - x_t with zeros before t = 0"""
    prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    return prev - x


def lora(x, p, pre, act):
    y = x @ p[pre + ".lora.0.weight"].T
    if act == "tanh":
        y = torch.tanh(y)
    elif act == "sigmoid":
        y = torch.sigmoid(y)
    y = y @ p[pre + ".lora.2.weight"].T
    if pre + ".lora.2.bias" in p:
        y = y + p[pre + ".lora.2.bias"]
    return y


def time_mix(h, p, pre, cfg, l, v_first):
    Bn, Tn, D = h.shape
    hd = cfg["head_dim"]
    H = D // hd
    delta = shift_delta(h)
    xs = {c: h + delta * p[pre + "x_" + c].view(D) for c in "rwkvag"}
    r = xs["r"] @ p[pre + "r_proj.weight"].T
    k = xs["k"] @ p[pre + "k_proj.weight"].T
    v = xs["v"] @ p[pre + "v_proj.weight"].T
    logw = -0.6065306597126334 * torch.sigmoid(lora(xs["w"], p, pre + "w_lora", "tanh"))
    if l == 0:
        v_first = v
    else:
        v = v + (v_first - v) * torch.sigmoid(lora(xs["v"], p, pre + "v_lora", None))
    a = torch.sigmoid(lora(xs["a"], p, pre + "a_lora", None))
    g = lora(xs["g"], p, pre + "g_lora", "sigmoid")
    kk = (k * p[pre + "k_k"]).view(Bn, Tn, H, hd)
    if cfg.get("fuse_norm", True):
        kk = kk / torch.sqrt((kk * kk).sum(-1, keepdim=True) + 1e-6)
    else:
        kk = kk / kk.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = k * (1 + (a - 1) * p[pre + "k_a"])
    r4, k4, v4, w4, a4 = (t.view(Bn, Tn, H, hd) for t in (r, k, v, logw, a))
    o = torch.zeros(Bn, Tn, H, hd, dtype=torch.float64)
    for b in range(Bn):
        for hh in range(H):
            S = torch.zeros(hd, hd, dtype=torch.float64)  # (K, V)
            for t in range(Tn):
                av, bv = -kk[b, t, hh], kk[b, t, hh] * a4[b, t, hh]
                u = S.T @ av
                S = torch.exp(w4[b, t, hh])[:, None] * S + torch.outer(bv, u) + torch.outer(k4[b, t, hh], v4[b, t, hh])
                o[b, t, hh] = S.T @ r4[b, t, hh]
    # GroupNorm over each head's channels, eps = head_dim * norm_eps
    mu = o.mean(-1, keepdim=True)
    var = ((o - mu) ** 2).mean(-1, keepdim=True)
    o = ((o - mu) / torch.sqrt(var + hd * cfg["norm_eps"])).reshape(Bn, Tn, D)
    o = o * p[pre + "g_norm.weight"] + p[pre + "g_norm.bias"]
    bonus = (r4 * k4 * p[pre + "r_k"]).sum(-1, keepdim=True) * v4
    o = (o + bonus.reshape(Bn, Tn, D)) * g
    return o @ p[pre + "o_proj.weight"].T, v_first


def model(p, cfg, ids):
    eps = cfg["norm_eps"]
    x = p["model.embeddings.weight"][ids]
    v_first = None
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % l
        if l == 0:
            x = layernorm(x, p[pre + "pre_norm.weight"], p.get(pre + "pre_norm.bias"), eps)
        h = layernorm(x, p[pre + "attn_norm.weight"], p.get(pre + "attn_norm.bias"), eps)
        o, v_first = time_mix(h, p, pre + "attn.", cfg, l, v_first)
        x = x + o
        h = layernorm(x, p[pre + "ffn_norm.weight"], p.get(pre + "ffn_norm.bias"), eps)
        hk = h + shift_delta(h) * p[pre + "ffn.x_k"]
        x = x + torch.relu(hk @ p[pre + "ffn.key.weight"].T) ** 2 @ p[pre + "ffn.value.weight"].T
    x = layernorm(x, p["model.norm.weight"], p.get("model.norm.bias"), eps)
    return x @ p["lm_head.weight"].T


def write(cfg, d, seed, v1_layout):
    torch.manual_seed(seed)
    os.makedirs(d, exist_ok=True)
    p = params(cfg)
    ids = torch.randint(0, cfg["vocab_size"], (B, T), dtype=torch.int64)
    with torch.no_grad():
        logits = model(p, cfg, ids)
        seq = ids[:1, :N_PROMPT].clone()
        for _ in range(N_NEW):
            nxt = model(p, cfg, seq)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    saved = dict(p)
    if v1_layout:  # fla's RWKV7Attention version 1: one packed x_x
        for l in range(cfg["num_hidden_layers"]):
            pre = "model.layers.%d.attn." % l
            saved[pre + "x_x"] = torch.stack([saved.pop(pre + "x_" + c) for c in "rwkvag"])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_safetensors(os.path.join(d, "model.safetensors"), {k: v.float() for k, v in saved.items()})
    save_safetensors(os.path.join(d, "expected.safetensors"),
                     {"input_ids": ids, "logits": logits.float(), "greedy_prompt": ids[:1, :N_PROMPT].clone(),
                      "greedy_output": seq})
    print(d, "logits std %.3f, greedy %s" % (logits.std().item(), seq[0, N_PROMPT:].tolist()))


def main():
    write(CFG, HERE, 77, False)
    write(CFG_V1, os.path.join(HERE, "v1"), 78, True)


if __name__ == "__main__":
    main()
