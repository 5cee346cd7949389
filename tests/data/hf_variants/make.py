#!/usr/bin/python3
"""Tiny checkpoints of the config branches the golden models leave untested,
with reference logits from a plain PyTorch re-statement of each model's math
(float64, token-by-token recurrences), for tests/test_golden.c.

    gla_kv_conv_tied   GLA: num_kv_heads 2 of 4 heads, short conv, clamp_min,
                       no output gate (g_norm only), tied embeddings
    delta_gate_elu_sum DeltaNet: output gate (fused norm), elu+1 q/k, sum norm,
                       allow_neg_eigval, no short conv
    delta_relu_l2_conv DeltaNet: relu q/k after a plain conv, l2 norm, no beta
    mamba2_groups      Mamba2: n_groups 2, finite time_step_limit, tied embeddings
    mamba2_fla_groups  fla's Mamba2 config (norm_eps, dt_limit, rmsnorm): n_groups 2 with
                       fla's per-group gated norm, norm_before_gate, D_has_hdim
    mamba2_fla_nonorm  fla's Mamba2 with rmsnorm false (y * silu(z), no gated norm)

Run with /usr/bin/python3 (Debian's python3-torch) from the repository root:
    /usr/bin/python3 tests/data/hf_variants/make.py
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(1234)
B, T = 2, 37


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


def rmsnorm(x, w, eps):
    y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def short_conv(x, w, b, act):
    """x (B, T, C), w (C, 1, W): causal depthwise conv, zeros before t = 0"""
    W = w.shape[-1]
    xp = F.pad(x.transpose(1, 2), (W - 1, 0))
    y = F.conv1d(xp, w, b, groups=x.shape[-1]).transpose(1, 2)
    return F.silu(y) if act else y


def swiglu(x, p, pre):
    return F.linear(F.silu(F.linear(x, p[pre + "gate_proj.weight"])) * F.linear(x, p[pre + "up_proj.weight"]),
                    p[pre + "down_proj.weight"])


def recurrence(q, k, v, g=None, beta=None, scale=1.0):
    """q, k (B, T, H, K), v (B, T, H, V), g log-decay (B, T, H, K) or (B, T, H) or None,
    beta (B, T, H) for the delta rule. Returns o (B, T, H, V)."""
    Bn, Tn, H, K = q.shape
    V = v.shape[-1]
    S = torch.zeros(Bn, H, K, V, dtype=q.dtype)
    out = []
    for t in range(Tn):
        if g is not None:
            d = torch.exp(g[:, t])
            S = S * (d[..., None] if d.dim() == 3 else d[..., None, None])
        kt, vt = k[:, t], v[:, t]
        if beta is not None:
            u = vt - torch.einsum("bhkv,bhk->bhv", S, kt)
            S = S + beta[:, t][..., None, None] * torch.einsum("bhk,bhv->bhkv", kt, u)
        else:
            S = S + torch.einsum("bhk,bhv->bhkv", kt, vt)
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1)


def fla_model(p, cfg, ids, mixer):
    x = p["model.embeddings.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        x = x + mixer(rmsnorm(x, p[pre + "attn_norm.weight"], cfg["norm_eps"]), p, pre + "attn.", cfg)
        x = x + swiglu(rmsnorm(x, p[pre + "mlp_norm.weight"], cfg["norm_eps"]), p, pre + "mlp.")
    x = rmsnorm(x, p["model.norm.weight"], cfg["norm_eps"])
    head = p["model.embeddings.weight"] if cfg.get("tie_word_embeddings") else p["lm_head.weight"]
    return F.linear(x, head)


def gla_mixer(x, p, pre, cfg):
    H, D = cfg["num_heads"], cfg["hidden_size"]
    Hkv = cfg["num_kv_heads"] or H
    G = H // Hkv
    Kh, Vh = int(D * cfg["expand_k"]) // H, int(D * cfg["expand_v"]) // H
    q, k, v = (F.linear(x, p[pre + n + "_proj.weight"]) for n in "qkv")
    if cfg["use_short_conv"]:
        q, k, v = (short_conv(t, p[pre + n + "_conv1d.weight"], None, True) for t, n in ((q, "q"), (k, "k"), (v, "v")))
    gk = F.linear(F.linear(x, p[pre + "gk_proj.0.weight"]), p[pre + "gk_proj.1.weight"], p[pre + "gk_proj.1.bias"])
    Bn, Tn = x.shape[:2]
    q = q.view(Bn, Tn, H, Kh)
    # key/value head h serves query heads h*G .. h*G+G-1
    k = k.view(Bn, Tn, Hkv, Kh).repeat_interleave(G, dim=2)
    gk = gk.view(Bn, Tn, Hkv, Kh).repeat_interleave(G, dim=2)
    v = v.view(Bn, Tn, Hkv, Vh).repeat_interleave(G, dim=2)
    gk = F.logsigmoid(gk) / 16
    if cfg["clamp_min"] is not None:
        gk = gk.clamp_min(cfg["clamp_min"])
    o = recurrence(q, k, v, g=gk, scale=Kh ** -0.5)
    o = rmsnorm(o, p[pre + "g_norm.weight"], cfg["norm_eps"]).reshape(Bn, Tn, H * Vh)
    if cfg["use_output_gate"]:
        o = o * F.silu(F.linear(x, p[pre + "g_proj.weight"]))
    return F.linear(o, p[pre + "o_proj.weight"])


def delta_mixer(x, p, pre, cfg):
    H, D = cfg["num_heads"], cfg["hidden_size"]
    Kh, Vh = int(D * cfg["expand_k"]) // H, int(D * cfg["expand_v"]) // H
    act = cfg["qk_activation"]
    q, k, v = (F.linear(x, p[pre + n + "_proj.weight"]) for n in "qkv")
    if cfg["use_short_conv"]:
        q = short_conv(q, p[pre + "q_conv1d.weight"], None, act == "silu")
        k = short_conv(k, p[pre + "k_conv1d.weight"], None, act == "silu")
        v = short_conv(v, p[pre + "v_conv1d.weight"], None, True)
    else:
        if act == "silu":
            q, k = F.silu(q), F.silu(k)
        v = F.silu(v)
    Bn, Tn = x.shape[:2]
    q, k, v = q.view(Bn, Tn, H, Kh), k.view(Bn, Tn, H, Kh), v.view(Bn, Tn, H, Vh)
    if act == "relu":
        q, k = q.relu(), k.relu()
    elif act == "elu":
        q, k = F.elu(q) + 1, F.elu(k) + 1
    if cfg["qk_norm"] == "l2":
        q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    else:
        q, k = q / q.sum(-1, keepdim=True), k / k.sum(-1, keepdim=True)
    beta = torch.sigmoid(F.linear(x, p[pre + "b_proj.weight"])) if cfg["use_beta"] else torch.ones(Bn, Tn, H,
                                                                                                   dtype=x.dtype)
    if cfg["allow_neg_eigval"]:
        beta = beta * 2
    o = recurrence(q, k, v, beta=beta, scale=Kh ** -0.5)
    o = rmsnorm(o, p[pre + "o_norm.weight"], cfg["norm_eps"])
    if cfg["use_gate"]:
        o = o * F.silu(F.linear(x, p[pre + "g_proj.weight"]).view(Bn, Tn, H, Vh))
    return F.linear(o.reshape(Bn, Tn, H * Vh), p[pre + "o_proj.weight"])


def mamba2_model(p, cfg, ids):
    D, Hm, P, N, G = cfg["hidden_size"], cfg["num_heads"], cfg["head_dim"], cfg["state_size"], cfg["n_groups"]
    # transformers names: layer_norm_epsilon, time_step_limit, rms_norm; fla's: norm_eps, dt_limit, rmsnorm
    I, eps = cfg["expand"] * D, cfg.get("layer_norm_epsilon", cfg.get("norm_eps"))
    lo, hi = cfg.get("time_step_limit", cfg.get("dt_limit"))
    fla = "rmsnorm" in cfg
    gated_norm = cfg.get("rmsnorm", True)
    before_gate = cfg.get("norm_before_gate", False)
    group = I // G if fla else I  # fla's RMSNormGated normalizes groups of I / n_groups; transformers all of I
    x = p["backbone.embeddings.weight"][ids]
    Bn, Tn = ids.shape
    for l in range(cfg["num_hidden_layers"]):
        pre = f"backbone.layers.{l}."
        h = rmsnorm(x, p[pre + "norm.weight"], eps)
        proj = F.linear(h, p[pre + "mixer.in_proj.weight"])
        z, xbc, dt = proj.split([I, I + 2 * G * N, Hm], -1)
        xbc = short_conv(xbc, p[pre + "mixer.conv1d.weight"], p[pre + "mixer.conv1d.bias"], True)
        xs, Bm, Cm = xbc.split([I, G * N, G * N], -1)
        dt = F.softplus(dt + p[pre + "mixer.dt_bias"]).clamp(lo, hi)
        A = -torch.exp(p[pre + "mixer.A_log"])
        xs = xs.view(Bn, Tn, Hm, P)
        # head h reads B, C of group h // (Hm / G)
        Bm = Bm.view(Bn, Tn, G, N).repeat_interleave(Hm // G, dim=2)
        Cm = Cm.view(Bn, Tn, G, N).repeat_interleave(Hm // G, dim=2)
        y = recurrence(Cm, Bm, xs * dt[..., None], g=dt * A)
        Dskip = p[pre + "mixer.D"]
        y = y + (Dskip.view(Hm, P) if cfg.get("D_has_hdim") else Dskip[:, None]) * xs
        y = y.reshape(Bn, Tn, I)
        if not gated_norm:
            y = y * F.silu(z)
        elif before_gate:
            y = rmsnorm(y.view(Bn, Tn, I // group, group), 1.0, eps).reshape(Bn, Tn, I)
            y = y * p[pre + "mixer.norm.weight"] * F.silu(z)
        else:
            y = rmsnorm((y * F.silu(z)).view(Bn, Tn, I // group, group), 1.0, eps).reshape(Bn, Tn, I)
            y = y * p[pre + "mixer.norm.weight"]
        x = x + F.linear(y, p[pre + "mixer.out_proj.weight"])
    x = rmsnorm(x, p["backbone.norm_f.weight"], eps)
    head = p["backbone.embeddings.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    return F.linear(x, head)


def fla_params(cfg, kind):
    D, V, H = cfg["hidden_size"], cfg["vocab_size"], cfg["num_heads"]
    Kd, Vd = int(D * cfg["expand_k"]), int(D * cfg["expand_v"])
    inter = 256 * ((int(D * 4 * 2 / 3) + 255) // 256)
    p = {"model.embeddings.weight": rnd(V, D, std=1.0), "model.norm.weight": 1 + rnd(D, std=0.1)}
    if not cfg.get("tie_word_embeddings"):
        p["lm_head.weight"] = rnd(V, D)
    for l in range(cfg["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        p[f"model.layers.{l}.attn_norm.weight"] = 1 + rnd(D, std=0.1)
        p[f"model.layers.{l}.mlp_norm.weight"] = 1 + rnd(D, std=0.1)
        p[f"model.layers.{l}.mlp.gate_proj.weight"] = rnd(inter, D)
        p[f"model.layers.{l}.mlp.up_proj.weight"] = rnd(inter, D)
        p[f"model.layers.{l}.mlp.down_proj.weight"] = rnd(D, inter, std=0.05)
        if kind == "gla":
            Hkv = cfg["num_kv_heads"] or H
            kvk, kvv = Kd * Hkv // H, Vd * Hkv // H
            p[a + "q_proj.weight"], p[a + "k_proj.weight"], p[a + "v_proj.weight"] = rnd(Kd, D), rnd(kvk, D), rnd(kvv, D)
            if cfg["use_short_conv"]:
                for n, c in (("q", Kd), ("k", kvk), ("v", kvv)):
                    p[a + n + "_conv1d.weight"] = rnd(c, 1, cfg["conv_size"], std=0.5)
            p[a + "gk_proj.0.weight"], p[a + "gk_proj.1.weight"], p[a + "gk_proj.1.bias"] = rnd(16, D), rnd(kvk, 16), rnd(kvk)
            p[a + "g_norm.weight"] = 1 + rnd(Vd // H, std=0.1)
            if cfg["use_output_gate"]:
                p[a + "g_proj.weight"] = rnd(Vd, D)
        else:
            p[a + "q_proj.weight"], p[a + "k_proj.weight"], p[a + "v_proj.weight"] = rnd(Kd, D), rnd(Kd, D), rnd(Vd, D)
            if cfg["use_short_conv"]:
                for n, c in (("q", Kd), ("k", Kd), ("v", Vd)):
                    p[a + n + "_conv1d.weight"] = rnd(c, 1, cfg["conv_size"], std=0.5)
            if cfg["use_beta"]:
                p[a + "b_proj.weight"] = rnd(H, D)
            if cfg["use_gate"]:
                p[a + "g_proj.weight"] = rnd(Vd, D)
            p[a + "o_norm.weight"] = 1 + rnd(Vd // H, std=0.1)
        p[a + "o_proj.weight"] = rnd(D, Vd)
    return p


def mamba2_params(cfg):
    D, V, Hm, N, G = cfg["hidden_size"], cfg["vocab_size"], cfg["num_heads"], cfg["state_size"], cfg["n_groups"]
    I = cfg["expand"] * D
    CD = I + 2 * G * N
    p = {"backbone.embeddings.weight": rnd(V, D, std=1.0), "backbone.norm_f.weight": 1 + rnd(D, std=0.1)}
    for l in range(cfg["num_hidden_layers"]):
        m = f"backbone.layers.{l}.mixer."
        p[f"backbone.layers.{l}.norm.weight"] = 1 + rnd(D, std=0.1)
        p[m + "in_proj.weight"] = rnd(I + CD + Hm, D)
        p[m + "conv1d.weight"], p[m + "conv1d.bias"] = rnd(CD, 1, cfg["conv_kernel"], std=0.5), rnd(CD, std=0.1)
        p[m + "dt_bias"], p[m + "A_log"] = rnd(Hm), torch.log(torch.arange(1, Hm + 1, dtype=torch.float64))
        p[m + "D"] = rnd(I if cfg.get("D_has_hdim") else Hm)
        p[m + "norm.weight"], p[m + "out_proj.weight"] = 1 + rnd(I, std=0.1), rnd(D, I)
        if not cfg.get("rmsnorm", True):
            del p[m + "norm.weight"]
    if not cfg["tie_word_embeddings"]:
        p["lm_head.weight"] = rnd(V, D)
    return p


FLA_COMMON = dict(vocab_size=32, hidden_size=16, num_hidden_layers=2, num_heads=4, norm_eps=1e-6, hidden_ratio=4,
                  conv_size=4, hidden_act="swish", fuse_norm=False)
VARIANTS = {
    "gla_kv_conv_tied": ("gla", dict(FLA_COMMON, model_type="gla", num_kv_heads=2, expand_k=0.5, expand_v=1.0,
                                     use_short_conv=True, clamp_min=-0.05, use_output_gate=False,
                                     tie_word_embeddings=True, feature_map=None)),
    "delta_gate_elu_sum": ("delta_net", dict(FLA_COMMON, model_type="delta_net", expand_k=1.0, expand_v=1.0,
                                             use_gate=True, qk_activation="elu", qk_norm="sum", allow_neg_eigval=True,
                                             use_short_conv=False, use_beta=True, tie_word_embeddings=False)),
    "delta_relu_l2_conv": ("delta_net", dict(FLA_COMMON, model_type="delta_net", expand_k=1.0, expand_v=0.5,
                                             use_gate=False, qk_activation="relu", qk_norm="l2",
                                             allow_neg_eigval=False, use_short_conv=True, use_beta=False,
                                             tie_word_embeddings=False)),
    "mamba2_groups": ("mamba2", dict(model_type="mamba2", vocab_size=32, hidden_size=16, num_hidden_layers=2,
                                     num_heads=4, head_dim=8, state_size=8, n_groups=2, expand=2, conv_kernel=4,
                                     layer_norm_epsilon=1e-5, time_step_limit=[0.05, 0.6], use_bias=False,
                                     use_conv_bias=True, hidden_act="silu", tie_word_embeddings=True)),
    # fla's Mamba2 (fla/models/mamba2): its own config names, per-group gated norm, D per channel,
    # norm before the gate
    "mamba2_fla_groups": ("mamba2", dict(model_type="mamba2", vocab_size=32, hidden_size=16, num_hidden_layers=2,
                                         num_heads=4, head_dim=8, state_size=8, n_groups=2, expand=2, conv_kernel=4,
                                         norm_eps=1e-5, dt_limit=[0.05, 0.6], use_bias=False, use_conv_bias=True,
                                         hidden_act="silu", rmsnorm=True, norm_before_gate=True, D_has_hdim=True,
                                         residual_in_fp32=True, fuse_norm=True, tie_word_embeddings=False)),
    "mamba2_fla_nonorm": ("mamba2", dict(model_type="mamba2", vocab_size=32, hidden_size=16, num_hidden_layers=2,
                                         num_heads=4, head_dim=8, state_size=8, n_groups=1, expand=2, conv_kernel=4,
                                         norm_eps=1e-5, dt_limit=[0.0, 1e30], use_bias=False, use_conv_bias=True,
                                         hidden_act="silu", rmsnorm=False, norm_before_gate=False, D_has_hdim=False,
                                         residual_in_fp32=True, fuse_norm=True, tie_word_embeddings=False)),
}

for name, (kind, cfg) in VARIANTS.items():
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    p = mamba2_params(cfg) if kind == "mamba2" else fla_params(cfg, kind)
    p = {k: v.float().double() for k, v in p.items()}  # exactly representable in f32
    ids = torch.randint(0, cfg["vocab_size"], (B, T))
    with torch.no_grad():
        if kind == "mamba2":
            logits = mamba2_model(p, cfg, ids)
        else:
            logits = fla_model(p, cfg, ids, gla_mixer if kind == "gla" else delta_mixer)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_safetensors(os.path.join(d, "model.safetensors"), {k: v.float() for k, v in sorted(p.items())})
    save_safetensors(os.path.join(d, "expected.safetensors"), {"input_ids": ids, "logits": logits.float()})
    print(name, "logits std %.3f" % logits.std().item())
