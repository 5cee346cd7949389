#!/usr/bin/python3
"""Tiny fla-layout checkpoints of architectures whose fla implementations need
Triton/GPU (so cannot run here), with reference logits from a self-written
float64 PyTorch re-statement of fla's layer math (token-by-token recurrence).
These are independent oracles written from fla's source, NOT fla outputs.

    gdn_gva_conv       GatedDeltaNet: num_v_heads 4 over 2 q/k heads, expand_v 1.5,
                       short conv, output gate, tied embeddings
    gdn_nogate_negeig  GatedDeltaNet: no short conv, no output gate, allow_neg_eigval
    retnet_kv_gate     RetNet: num_kv_heads 2 of 4, output gate (separate g_norm), expand_v 2
    retnet_relu_plain  RetNet: relu feature map, no output gate, no norm weight, tied embeddings
    hgrn2_lb_conv      HGRN2: lower bounds, short convs, 3 layers
    hgrn2_plain        HGRN2: no lower bound, no conv, no norm weight, expand_ratio null (from num_heads)
    la_hadamard_kv     LinearAttention: elementwise_product maps, num_kv_heads 2 of 4
    la_hedgehog_tied   LinearAttention: hedgehog map shared by q and k (saved once), norm_feature_map,
                       no norm weight
    la_elu_sumnorm     LinearAttention: elu + 1, norm_q, norm_k, norm_feature_map
    la_dpfp            LinearAttention: dpfp (nu 4), expand_v 2
    la_t2r             LinearAttention: t2r, tied embeddings

Run with /usr/bin/python3 (Debian's python3-torch) from the repository root:
    /usr/bin/python3 tests/data/hf_fla_oracle/make.py
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(4321)
B, T = 2, 150  # > 2 chunks of 64: prompts take the chunkwise form with a remainder
N_NEW = 12


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
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def short_conv_silu(x, w):
    """x (B, T, C), w (C, 1, W): causal depthwise conv (zeros before t = 0), then silu"""
    W = w.shape[-1]
    return F.silu(F.conv1d(F.pad(x.transpose(1, 2), (W - 1, 0)), w, groups=x.shape[-1]).transpose(1, 2))


def l2norm(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def gated_delta_recurrence(q, k, v, g, beta, scale):
    """q, k (B, T, H, K); v (B, T, HV, V); g, beta (B, T, HV); value head i uses q/k head i // (HV / H)"""
    Bn, Tn, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    q, k = q.repeat_interleave(HV // H, dim=2), k.repeat_interleave(HV // H, dim=2)
    S = torch.zeros(Bn, HV, K, V, dtype=q.dtype)
    out = []
    for t in range(Tn):
        S = S * torch.exp(g[:, t])[..., None, None]
        kt = k[:, t]
        u = v[:, t] - torch.einsum("bhkv,bhk->bhv", S, kt)
        S = S + beta[:, t][..., None, None] * torch.einsum("bhk,bhv->bhkv", kt, u)
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1)


def gdn_mixer(x, p, pre, cfg):
    H, Kh = cfg["num_heads"], cfg["head_dim"]
    HV = cfg.get("num_v_heads") or H
    Vh = int(Kh * cfg["expand_v"])
    q, k, v = (F.linear(x, p[pre + n + "_proj.weight"]) for n in "qkv")
    if cfg["use_short_conv"]:
        q, k, v = (short_conv_silu(t, p[pre + n + "_conv1d.weight"]) for t, n in ((q, "q"), (k, "k"), (v, "v")))
    else:
        q, k, v = F.silu(q), F.silu(k), F.silu(v)
    Bn, Tn = x.shape[:2]
    q, k, v = l2norm(q.view(Bn, Tn, H, Kh)), l2norm(k.view(Bn, Tn, H, Kh)), v.view(Bn, Tn, HV, Vh)
    beta = torch.sigmoid(F.linear(x, p[pre + "b_proj.weight"]))
    if cfg["allow_neg_eigval"]:
        beta = beta * 2
    g = -torch.exp(p[pre + "A_log"]) * F.softplus(F.linear(x, p[pre + "a_proj.weight"]) + p[pre + "dt_bias"])
    o = gated_delta_recurrence(q, k, v, g, beta, Kh ** -0.5)
    o = rmsnorm(o, p[pre + "o_norm.weight"], cfg["norm_eps"])
    if cfg["use_gate"]:
        o = o * F.silu(F.linear(x, p[pre + "g_proj.weight"]).view(Bn, Tn, HV, Vh))
    return F.linear(o.reshape(Bn, Tn, HV * Vh), p[pre + "o_proj.weight"])


def rotary(x):
    """x (B, T, H, d): fla RotaryEmbedding (base 10000, non-interleaved halves) at positions 0..T-1"""
    d = x.shape[-1]
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.arange(x.shape[1], dtype=torch.float64)[:, None] * inv_freq  # (T, d/2)
    c, s = torch.cos(ang)[None, :, None], torch.sin(ang)[None, :, None]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)


def retention(q, k, v, scale):
    """q, k (B, T, H, K), v (B, T, H, V): S_t = gamma_h S_{t-1} + k_t v_t^T, gamma_h = 1 - 2^(-5-h)"""
    Bn, Tn, H, K = q.shape
    gamma = 1 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float64))
    S = torch.zeros(Bn, H, K, v.shape[-1], dtype=q.dtype)
    out = []
    for t in range(Tn):
        S = S * gamma[None, :, None, None] + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1)


def retnet_mixer(x, p, pre, cfg):
    H, D = cfg["num_heads"], cfg["hidden_size"]
    Hkv = cfg.get("num_kv_heads") or H
    G = H // Hkv
    Kh, Vh = int(D * cfg["expand_k"]) // H, int(D * cfg["expand_v"]) // H
    q, k, v = (F.linear(x, p[pre + n + "_proj.weight"]) for n in "qkv")
    Bn, Tn = x.shape[:2]
    q, k, v = q.view(Bn, Tn, H, Kh), k.view(Bn, Tn, Hkv, Kh), v.view(Bn, Tn, Hkv, Vh)
    if cfg["feature_map"] == "relu":
        q, k = q.relu(), k.relu()
    q, k = rotary(q), rotary(k)
    k, v = k.repeat_interleave(G, dim=2), v.repeat_interleave(G, dim=2)  # kv head h serves query heads h*G..
    o = retention(q, k, v, Kh ** -0.5)
    w = p[pre + "g_norm.weight"] if cfg["elementwise_affine"] else 1.0
    o = rmsnorm(o, w, cfg["norm_eps"]).reshape(Bn, Tn, H * Vh)
    if cfg["use_output_gate"]:
        o = o * F.silu(F.linear(x, p[pre + "g_proj.weight"]))
    return F.linear(o, p[pre + "o_proj.weight"])


def gla_recurrence(q, k, v, g, scale):
    """q, k, g (B, T, H, K), v (B, T, H, V): S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T"""
    Bn, Tn, H, K = q.shape
    S = torch.zeros(Bn, H, K, v.shape[-1], dtype=q.dtype)
    out = []
    for t in range(Tn):
        S = S * torch.exp(g[:, t])[..., None] + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, 1)


def hgrn2_heads(cfg):
    D = cfg["hidden_size"]
    ratio = cfg["expand_ratio"] if cfg["expand_ratio"] is not None else D // cfg["num_heads"]
    return D // ratio, ratio


def hgrn2_mixer(x, p, pre, cfg, lower_bound=None):
    H, Kh = hgrn2_heads(cfg)
    Vh = cfg["hidden_size"] // H
    q, f, i = (F.linear(x, p[pre + n + "_proj.weight"]) for n in "qfi")
    if cfg["use_short_conv"]:
        q, f, i = (plain_conv(t, p[pre + n + "_conv1d.weight"]) for t, n in ((q, "q"), (f, "f"), (i, "i")))
    q, g = F.silu(q), F.logsigmoid(f)
    if lower_bound is not None:
        g = torch.logaddexp(lower_bound.log(), torch.log1p(-lower_bound) + g)
    k = 1 - g.exp()
    Bn, Tn = x.shape[:2]
    o = gla_recurrence(q.view(Bn, Tn, H, Kh), k.view(Bn, Tn, H, Kh), i.view(Bn, Tn, H, Vh), g.view(Bn, Tn, H, Kh),
                       Kh ** -0.5).reshape(Bn, Tn, H * Vh)
    # fla's rms_norm_linear keeps its default eps 1e-5 here, whatever norm_eps says
    o = rmsnorm(o, p[pre + "g_norm.weight"] if cfg["elementwise_affine"] else 1.0, 1e-5)
    return F.linear(o, p[pre + "o_proj.weight"])


def plain_conv(x, w):
    W = w.shape[-1]
    return F.conv1d(F.pad(x.transpose(1, 2), (W - 1, 0)), w, groups=x.shape[-1]).transpose(1, 2)


def la_fmap(kind, x, p, pre):
    """fla feature maps on the last dim; pre names the module (attn.feature_map_q.)"""
    if kind == "identity":
        return x
    if kind == "relu":
        return x.relu()
    if kind == "elu":
        return F.elu(x) + 1
    if kind == "elementwise_product":
        return F.linear(x, p[pre + "layer1.weight"], p[pre + "layer1.bias"]) * \
            F.linear(x, p[pre + "layer2.weight"], p[pre + "layer2.bias"])
    if kind == "t2r":
        return F.linear(x, p[pre + "layer.weight"]).relu()
    if kind == "hedgehog":
        y = 2 * F.linear(x, p[pre + "layer.weight"], p[pre + "layer.bias"])
        return torch.cat([y, -y], -1).softmax(-1)
    if kind == "dpfp":
        z = torch.cat([x.relu(), (-x).relu()], -1)
        return torch.cat([z * z.roll(shifts=j, dims=-1) for j in range(1, 5)], -1)
    raise ValueError(kind)


def linear_attn_mixer(x, p, pre, cfg):
    H, D = cfg["num_heads"], cfg["hidden_size"]
    Hkv = cfg.get("num_kv_heads") or H
    G = H // Hkv
    Kh, Vh = int(D * cfg["expand_k"]) // H, int(D * cfg["expand_v"]) // H
    q, k, v = (F.linear(x, p[pre + n + "_proj.weight"]) for n in "qkv")
    Bn, Tn = x.shape[:2]
    q = q.view(Bn, Tn, H, Kh)
    k = k.view(Bn, Tn, Hkv, Kh).repeat_interleave(G, dim=2)
    v = v.view(Bn, Tn, Hkv, Vh).repeat_interleave(G, dim=2)
    kq = pre + "feature_map_q."
    kk = pre + ("feature_map_q." if cfg["tie_feature_map_qk"] else "feature_map_k.")
    q, k = la_fmap(cfg["feature_map"], q, p, kq), la_fmap(cfg["feature_map"], k, p, kk)
    if cfg["norm_q"]:
        q = q / (q.sum(-1, True) + 1e-4)
    if cfg["norm_k"]:
        k = k / (k.sum(-1, True) + 1e-4)
    scale = q.shape[-1] ** -0.5
    S = torch.zeros(Bn, H, q.shape[-1], Vh, dtype=x.dtype)
    z = torch.zeros(Bn, H, q.shape[-1], dtype=x.dtype)
    out = []
    for t in range(Tn):
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        z = z + k[:, t]
        o = scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t])
        if cfg["norm_feature_map"]:
            o = o / (scale * (q[:, t] * z).sum(-1, keepdim=True) + 1e-10)
        out.append(o)
    o = torch.stack(out, 1)
    o = rmsnorm(o, p[pre + "norm.weight"] if cfg["elementwise_affine"] else 1.0, cfg["norm_eps"])
    return F.linear(o.reshape(Bn, Tn, H * Vh), p[pre + "o_proj.weight"])


def swiglu(x, p, pre):
    return F.linear(F.silu(F.linear(x, p[pre + "gate_proj.weight"])) * F.linear(x, p[pre + "up_proj.weight"]),
                    p[pre + "down_proj.weight"])


def fla_model(p, cfg, ids, mixer):
    x = p["model.embeddings.weight"][ids]
    if cfg.get("use_lower_bound"):  # HGRN2: per-layer lower bounds from softmax over layers, cumulated
        lbs = p["model.lower_bounds"].softmax(0)
        lbs = lbs.cumsum(0) - lbs[0]
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, p[pre + "attn_norm.weight"], cfg["norm_eps"])
        if cfg.get("use_lower_bound") and l > 0:
            x = x + mixer(h, p, pre + "attn.", cfg, lbs[l])
        else:
            x = x + mixer(h, p, pre + "attn.", cfg)
        x = x + swiglu(rmsnorm(x, p[pre + "mlp_norm.weight"], cfg["norm_eps"]), p, pre + "mlp.")
    x = rmsnorm(x, p["model.norm.weight"], cfg["norm_eps"])
    head = p["model.embeddings.weight"] if cfg.get("tie_word_embeddings") else p["lm_head.weight"]
    return F.linear(x, head)


def common_params(cfg):
    D, V = cfg["hidden_size"], cfg["vocab_size"]
    inter = cfg["intermediate_size"]
    p = {"model.embeddings.weight": rnd(V, D, std=1.0), "model.norm.weight": 1 + rnd(D, std=0.1)}
    if not cfg.get("tie_word_embeddings"):
        p["lm_head.weight"] = rnd(V, D)
    for l in range(cfg["num_hidden_layers"]):
        p[f"model.layers.{l}.attn_norm.weight"] = 1 + rnd(D, std=0.1)
        p[f"model.layers.{l}.mlp_norm.weight"] = 1 + rnd(D, std=0.1)
        p[f"model.layers.{l}.mlp.gate_proj.weight"] = rnd(inter, D)
        p[f"model.layers.{l}.mlp.up_proj.weight"] = rnd(inter, D)
        p[f"model.layers.{l}.mlp.down_proj.weight"] = rnd(D, inter, std=0.05)
    return p


def gdn_params(cfg):
    p = common_params(cfg)
    D, H, Kh = cfg["hidden_size"], cfg["num_heads"], cfg["head_dim"]
    HV = cfg.get("num_v_heads") or H
    Vd = HV * int(Kh * cfg["expand_v"])
    for l in range(cfg["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        p[a + "q_proj.weight"], p[a + "k_proj.weight"], p[a + "v_proj.weight"] = rnd(H * Kh, D), rnd(H * Kh, D), rnd(Vd, D)
        p[a + "a_proj.weight"], p[a + "b_proj.weight"] = rnd(HV, D), rnd(HV, D)
        p[a + "A_log"] = torch.log(torch.linspace(0.5, 8, HV, dtype=torch.float64))
        p[a + "dt_bias"] = rnd(HV, std=0.5) - 2
        if cfg["use_short_conv"]:
            for n, c in (("q", H * Kh), ("k", H * Kh), ("v", Vd)):
                p[a + n + "_conv1d.weight"] = rnd(c, 1, cfg["conv_size"], std=0.5)
        if cfg["use_gate"]:
            p[a + "g_proj.weight"] = rnd(Vd, D)
        p[a + "o_norm.weight"] = 1 + rnd(Vd // HV, std=0.1)
        p[a + "o_proj.weight"] = rnd(D, Vd)
    return p


def retnet_params(cfg):
    p = common_params(cfg)
    D, H = cfg["hidden_size"], cfg["num_heads"]
    Hkv = cfg.get("num_kv_heads") or H
    Kd, Vd = int(D * cfg["expand_k"]), int(D * cfg["expand_v"])
    for l in range(cfg["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        p[a + "q_proj.weight"], p[a + "k_proj.weight"] = rnd(Kd, D), rnd(Kd * Hkv // H, D)
        p[a + "v_proj.weight"] = rnd(Vd * Hkv // H, D)
        if cfg["use_output_gate"]:
            p[a + "g_proj.weight"] = rnd(Vd, D)
        if cfg["elementwise_affine"]:
            p[a + "g_norm.weight"] = 1 + rnd(Vd // H, std=0.1)
        p[a + "o_proj.weight"] = rnd(D, Vd)
    return p


def hgrn2_params(cfg):
    p = common_params(cfg)
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H, Kh = hgrn2_heads(cfg)
    if cfg["use_lower_bound"]:
        p["model.lower_bounds"] = rnd(L, D, std=1.0)
    for l in range(L):
        a = f"model.layers.{l}.attn."
        p[a + "q_proj.weight"], p[a + "f_proj.weight"], p[a + "i_proj.weight"] = rnd(H * Kh, D), rnd(H * Kh, D), rnd(D, D)
        if cfg["use_short_conv"]:
            for n, c in (("q", H * Kh), ("f", H * Kh), ("i", D)):
                p[a + n + "_conv1d.weight"] = rnd(c, 1, cfg["conv_size"], std=0.5)
        if cfg["elementwise_affine"]:
            p[a + "g_norm.weight"] = 1 + rnd(D, std=0.1)
        p[a + "o_proj.weight"] = rnd(D, D)
    return p


def linear_attn_params(cfg):
    p = common_params(cfg)
    D, H = cfg["hidden_size"], cfg["num_heads"]
    Hkv = cfg.get("num_kv_heads") or H
    Kd, Vd = int(D * cfg["expand_k"]), int(D * cfg["expand_v"])
    Kh = Kd // H
    for l in range(cfg["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        p[a + "q_proj.weight"], p[a + "k_proj.weight"] = rnd(Kd, D), rnd(Kd * Hkv // H, D)
        p[a + "v_proj.weight"] = rnd(Vd * Hkv // H, D)
        for which in ("q", "k")[: 1 if cfg["tie_feature_map_qk"] else 2]:
            m = a + "feature_map_" + which + "."
            if cfg["feature_map"] == "elementwise_product":
                for n in ("layer1", "layer2"):
                    p[m + n + ".weight"], p[m + n + ".bias"] = rnd(Kh, Kh, std=0.5), rnd(Kh, std=0.5)
            elif cfg["feature_map"] == "hedgehog":
                p[m + "layer.weight"], p[m + "layer.bias"] = torch.eye(Kh, dtype=torch.float64) + rnd(Kh, Kh), rnd(Kh)
            elif cfg["feature_map"] == "t2r":
                p[m + "layer.weight"] = rnd(Kh, Kh, std=0.5)
        if cfg["elementwise_affine"]:
            p[a + "norm.weight"] = 1 + rnd(Vd // H, std=0.1)
        p[a + "o_proj.weight"] = rnd(D, Vd)
    return p


LA = dict(model_type="linear_attn", num_heads=4, num_kv_heads=None, expand_k=1.0, expand_v=1.0,
          tie_feature_map_qk=False, norm_q=False, norm_k=False, norm_feature_map=False, elementwise_affine=True,
          tie_word_embeddings=False)
FLA_COMMON = dict(vocab_size=48, hidden_size=24, num_hidden_layers=2, norm_eps=1e-6, hidden_ratio=4,
                  intermediate_size=40, conv_size=4, hidden_act="swish", fuse_norm=False)
VARIANTS = {
    "gdn_gva_conv": (gdn_mixer, gdn_params,
                     dict(FLA_COMMON, model_type="gated_deltanet", num_heads=2, num_v_heads=4, head_dim=6,
                          expand_v=1.5, use_gate=True, use_short_conv=True, allow_neg_eigval=False,
                          tie_word_embeddings=True)),
    "gdn_nogate_negeig": (gdn_mixer, gdn_params,
                          dict(FLA_COMMON, model_type="gated_deltanet", num_heads=3, head_dim=8, expand_v=1.0,
                               use_gate=False, use_short_conv=False, allow_neg_eigval=True,
                               tie_word_embeddings=False)),
    "retnet_kv_gate": (retnet_mixer, retnet_params,
                       dict(FLA_COMMON, model_type="retnet", num_heads=4, num_kv_heads=2, expand_k=1.0, expand_v=2.0,
                            feature_map=None, use_output_gate=True, elementwise_affine=True,
                            tie_word_embeddings=False)),
    "retnet_relu_plain": (retnet_mixer, retnet_params,
                          dict(FLA_COMMON, model_type="retnet", num_heads=3, expand_k=0.5, expand_v=1.0,
                               feature_map="relu", use_output_gate=False, elementwise_affine=False,
                               tie_word_embeddings=True)),
    "hgrn2_lb_conv": (hgrn2_mixer, hgrn2_params,
                      dict(FLA_COMMON, model_type="hgrn2", num_hidden_layers=3, expand_ratio=8, num_heads=None,
                           use_short_conv=True, use_lower_bound=True, elementwise_affine=True,
                           tie_word_embeddings=False)),
    "hgrn2_plain": (hgrn2_mixer, hgrn2_params,
                    dict(FLA_COMMON, model_type="hgrn2", expand_ratio=None, num_heads=4, use_short_conv=False,
                         use_lower_bound=False, elementwise_affine=False, tie_word_embeddings=True)),
    "la_hadamard_kv": (linear_attn_mixer, linear_attn_params,
                       dict(FLA_COMMON, **dict(LA, feature_map="elementwise_product", num_kv_heads=2))),
    "la_hedgehog_tied": (linear_attn_mixer, linear_attn_params,
                         dict(FLA_COMMON, **dict(LA, feature_map="hedgehog", num_heads=3, tie_feature_map_qk=True,
                                                 norm_feature_map=True, elementwise_affine=False))),
    "la_elu_sumnorm": (linear_attn_mixer, linear_attn_params,
                       dict(FLA_COMMON, **dict(LA, feature_map="elu", norm_q=True, norm_k=True,
                                               norm_feature_map=True))),
    "la_dpfp": (linear_attn_mixer, linear_attn_params,
                dict(FLA_COMMON, **dict(LA, feature_map="dpfp", num_heads=6, expand_v=2.0))),
    "la_t2r": (linear_attn_mixer, linear_attn_params,
               dict(FLA_COMMON, **dict(LA, feature_map="t2r", tie_word_embeddings=True))),
}

for name, (mixer, params, cfg) in VARIANTS.items():
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    p = {k: v.float().double() for k, v in params(cfg).items()}  # exactly representable in f32
    ids = torch.randint(0, cfg["vocab_size"], (B, T))
    with torch.no_grad():
        logits = fla_model(p, cfg, ids, mixer)
        seq = ids[:1, :8]  # greedy: argmax of the last position, appended, N_NEW times
        for _ in range(N_NEW):
            seq = torch.cat([seq, fla_model(p, cfg, seq, mixer)[:, -1].argmax(-1, keepdim=True)], 1)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_safetensors(os.path.join(d, "model.safetensors"), {k: v.float() for k, v in sorted(p.items())})
    save_safetensors(os.path.join(d, "expected.safetensors"), {"input_ids": ids, "logits": logits.float(),
                                                                "greedy_prompt": ids[:1, :8].clone(),
                                                                "greedy_output": seq})
    print(name, "logits std %.3f" % logits.std().item())
