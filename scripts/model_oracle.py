#!/usr/bin/python3
"""PyTorch autograd oracle for lina's language model (tests/test_model.c).

Reads DIR/config.json + DIR/model.safetensors (written by lina) and
DIR/tokens.safetensors ("tokens" int32 (B, T+1)), rebuilds the model from the
math in docs/MODELS.md with plain torch ops in float64 (the recurrences as
naive token loops), and writes DIR/expected.safetensors with
  "loss" (1,), "logits" (B, T, vocab), "grad.<tensor name>" for every weight,
all float32. Independent of lina's C code: nothing here is shared with it.

usage: /usr/bin/python3 scripts/model_oracle.py tests/data/model_gdn [...]
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

DT = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I32": (torch.int32, 4), "I64": (torch.int64, 8)}


def read_st(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, size = DT[info["dtype"]]
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dtype).clone() if b > a else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def l2norm(x):
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def short_conv_silu(x, w):  # x (B, T, C), w (C, 1, W): causal depthwise conv, then SiLU
    B, T, C = x.shape
    y = F.conv1d(x.transpose(1, 2), w, padding=w.shape[-1] - 1, groups=C)[..., :T]
    return F.silu(y.transpose(1, 2))


def rotary(x, theta):  # x (B, T, H, D), non-interleaved halves
    B, T, H, D = x.shape
    half = D // 2
    inv = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)


def recurrence(q, k, v, g, beta, gate, delta, normalize, scale, eps=1e-6):
    """Naive token loop. q, k (B,T,H,K); v (B,T,H,V); g: None | (H) | (B,T,H) | (B,T,H,K)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = torch.zeros(B, H, K, V, dtype=q.dtype)
    z = torch.zeros(B, H, K, dtype=q.dtype)
    outs = []
    for t in range(T):
        if gate == "const":
            a = torch.exp(g)[None, :, None, None]
        elif gate == "scalar":
            a = torch.exp(g[:, t])[:, :, None, None]
        elif gate == "vector":
            a = torch.exp(g[:, t])[:, :, :, None]
        else:
            a = None
        if a is not None:
            S = S * a
            z = z * a[..., 0]
        kt, vt, qt = k[:, t], v[:, t], q[:, t]
        if delta:
            pred = torch.einsum("bhkv,bhk->bhv", S, kt)
            u = beta[:, t][..., None] * (vt - pred)
            S = S + kt[..., :, None] * u[..., None, :]
        else:
            S = S + kt[..., :, None] * vt[..., None, :]
            z = z + kt
        o = scale * torch.einsum("bhkv,bhk->bhv", S, qt)
        if normalize:
            o = o / (scale * (qt * z).sum(-1, keepdim=True) + eps)
        outs.append(o)
    return torch.stack(outs, 1)


def softmax_attention(q, k, v):
    B, T, H, K = q.shape
    s = torch.einsum("bthk,bshk->bhts", q, k) / math.sqrt(K)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    return torch.einsum("bhts,bshv->bthv", torch.softmax(s, -1), v)


def mixer(kind, p, pre, x, cfg):
    B, T, D = x.shape
    H, K, V = cfg["num_heads"], cfg["head_k_dim"], cfg["head_v_dim"]
    eps = cfg["norm_eps"]
    W = lambda n: p[pre + n]
    lin = lambda n, inp: inp @ W(n).t()
    heads = lambda t, d: t.reshape(B, T, H, d)
    if kind == "softmax":
        q = rotary(heads(lin("q_proj.weight", x), K), cfg["rope_theta"])
        k = rotary(heads(lin("k_proj.weight", x), K), cfg["rope_theta"])
        v = heads(lin("v_proj.weight", x), V)
        o = softmax_attention(q, k, v).reshape(B, T, H * V)
        return lin("o_proj.weight", o)
    hgrn = kind == "hgrn2"
    qp = lin("q_proj.weight", x)
    kp = lin("f_proj.weight" if hgrn else "k_proj.weight", x)
    vp = lin("i_proj.weight" if hgrn else "v_proj.weight", x)
    delta = kind in ("gated_deltanet", "deltanet")
    if delta or (cfg.get("short_conv_all") and not hgrn):
        qp = short_conv_silu(qp, W("q_conv1d.weight"))
        kp = short_conv_silu(kp, W("k_conv1d.weight"))
        vp = short_conv_silu(vp, W("v_conv1d.weight"))
    q, k, v = heads(qp, K), heads(kp, K), heads(vp, V)
    g, gate, beta, normalize = None, None, None, False
    if delta:
        q, k = l2norm(q), l2norm(k)
        beta = torch.sigmoid(lin("b_proj.weight", x))
    if kind in ("gated_deltanet", "mamba2"):
        a = lin("a_proj.weight", x) + W("dt_bias")
        g, gate = -torch.exp(W("A_log")) * F.softplus(a), "scalar"
    elif kind == "gla":
        gl = lin("gk_proj.0.weight", x) @ W("gk_proj.1.weight").t() + W("gk_proj.1.bias")
        g, gate = heads(F.logsigmoid(gl) / 16.0, K), "vector"
    elif kind == "retnet":
        q, k = rotary(q, cfg["rope_theta"]), rotary(k, cfg["rope_theta"])
        g = torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(H, dtype=torch.float64)))
        gate = "const"
    elif kind == "linear":
        q, k = F.elu(q) + 1, F.elu(k) + 1
        normalize = True
    elif kind == "cosformer":  # [relu cos, relu sin] of angle pi t / (2 M), M = max_position_embeddings
        ang = math.pi * torch.arange(T, dtype=torch.float64) / (2.0 * cfg["max_position_embeddings"])
        c, s = torch.cos(ang)[None, :, None, None], torch.sin(ang)[None, :, None, None]
        q = torch.cat([F.relu(q) * c, F.relu(q) * s], -1)
        k = torch.cat([F.relu(k) * c, F.relu(k) * s], -1)
        normalize = True
    elif kind == "performer":  # FAVOR+ of x K^(-1/4) with the fixed (not trained) projection (M, K)
        Wf = W("favor_proj.weight").detach()
        favor = lambda t: torch.exp((t * K ** -0.25) @ Wf.t() - 0.5 * (t * K ** -0.25).pow(2).sum(-1, keepdim=True)) \
            / math.sqrt(Wf.shape[0])
        q, k = favor(q), favor(k)
        normalize = True
    elif kind == "hedgehog":  # [softmax(x W), softmax(-x W)], W (K, M) learnable, one for q, one for k
        hh = lambda t, w: torch.cat([torch.softmax(t @ w, -1), torch.softmax(-(t @ w), -1)], -1)
        q, k = hh(q, W("feature_map_q.weight")), hh(k, W("feature_map_k.weight"))
        normalize = True
    elif hgrn:
        q = F.silu(q)
        g, gate = F.logsigmoid(k), "vector"
        k = torch.sigmoid(-k)
    o = recurrence(q, k, v, g, beta, gate, delta, normalize, 1.0 / math.sqrt(q.shape[-1]))
    norm = {"gla": "g_norm_swish_gate.weight", "retnet": "g_norm_swish_gate.weight",
            "linear": "norm.weight", "hgrn2": "g_norm.weight", "cosformer": "norm.weight",
            "performer": "norm.weight", "hedgehog": "norm.weight"}.get(kind, "o_norm.weight")
    y = rmsnorm(o, W(norm), eps)
    if kind in ("gated_deltanet", "gla", "mamba2", "retnet"):
        y = y * F.silu(heads(lin("g_proj.weight", x), V))
    return lin("o_proj.weight", y.reshape(B, T, H * V))


def model_loss(cfg, p, tokens):
    inp, tgt = tokens[:, :-1].long(), tokens[:, 1:].long()
    eps = cfg["norm_eps"]
    x = p["model.embeddings.weight"][inp]
    for l, kind in enumerate(cfg["mixers"]):
        pre = f"model.layers.{l}."
        x = x + mixer(kind, p, pre + "attn.", rmsnorm(x, p[pre + "attn_norm.weight"], eps), cfg)
        h = rmsnorm(x, p[pre + "mlp_norm.weight"], eps)
        m = F.silu(h @ p[pre + "mlp.gate_proj.weight"].t()) * (h @ p[pre + "mlp.up_proj.weight"].t())
        x = x + m @ p[pre + "mlp.down_proj.weight"].t()
    x = rmsnorm(x, p["model.norm.weight"], eps)
    head = p["model.embeddings.weight"] if cfg.get("tie_word_embeddings") else p["lm_head.weight"]
    logits = x @ head.t()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    return loss, logits


def main():
    torch.set_grad_enabled(True)
    for d in sys.argv[1:]:
        cfg = json.load(open(f"{d}/config.json"))
        p = {n: t.to(torch.float64).requires_grad_(True) for n, t in read_st(f"{d}/model.safetensors").items()}
        tokens = read_st(f"{d}/tokens.safetensors")["tokens"]
        loss, logits = model_loss(cfg, p, tokens)
        loss.backward()
        out = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
        for n, t in p.items():
            out["grad." + n] = t.grad if t.grad is not None else torch.zeros_like(t)
        write_st(f"{d}/expected.safetensors", out)
        print(f"{d}: loss {loss.item():.6f}, {len(p)} gradients")


if __name__ == "__main__":
    main()
