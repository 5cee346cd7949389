#!/usr/bin/python3
"""Write tests/data/attn_fixtures.safetensors: PyTorch-autograd oracles for lina_attn.

Run with /usr/bin/python3 (Debian's python3-torch 1.13):

    /usr/bin/python3 scripts/make_fixtures.py [out.safetensors]

For a handful of small cases (every gate x update, initial states, grouped
heads, normalization, a packed varlen batch with an empty sequence) it builds
random f32 inputs, runs a naive token-by-token recurrence in float64 (the spec
in include/lina/ops.h, the same math as src/ops/attn_recurrent.c):

    S_t = G_t S_{t-1} [ - beta_t k_t (k_t^T G_t S_{t-1}) ] + beta_t k_t v_t^T
    o_t = scale S_t^T q_t        [ / (scale q_t . z_t + eps) if normalize ]

and differentiates L = sum(o * do) + sum(ht * dht) with autograd. Inputs,
outputs and gradients are stored as F32; the case descriptors are a JSON list
in the header's __metadata__["cases"]. tests/test_torch_fixtures.c reads them.
torch 1.13 has no safetensors package, so a tiny writer lives below.
"""
import json
import math
import struct
import sys

import torch

GATES = {"none": 0, "const": 1, "scalar": 2, "vector": 3}
UPDATES = {"add": 0, "delta": 1}


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 tensor). Format: u64 LE header length,
    JSON header {name: {dtype, shape, data_offsets}}, raw little-endian data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        raw = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def reference(c, q, k, v, g, beta, h0):
    """Naive recurrence in float64. q, k (B,T,H,K); v (B,T,HV,V);
    g: const (HV) | scalar (B,T,HV) | vector (B,T,HV,K); beta (B,T,HV);
    h0 (N,HV,K,Vs) or None. Returns o (B,T,HV,V), ht (N,HV,K,Vs)."""
    B, T, H, HV, K, V = c["B"], c["T"], c["H"], c["HV"], c["K"], c["V"]
    norm, group = c["normalize"], HV // H
    Vs = V + 1 if norm else V
    scale = c["scale"] if c["scale"] != 0 else 1.0 / math.sqrt(K)
    # sequences as (batch row, first token, length)
    if c["cu_seqlens"]:
        cu = c["cu_seqlens"]
        seqs = [(0, cu[n], cu[n + 1] - cu[n]) for n in range(len(cu) - 1)]
    else:
        seqs = [(b, 0, T) for b in range(B)]
    qh = q.repeat_interleave(group, dim=2)  # (B,T,HV,K): value head hv reads q/k head hv // group
    kh = k.repeat_interleave(group, dim=2)
    if norm:  # the normalizer z rides along as a ones column of v
        v = torch.cat([v, torch.ones(B, T, HV, 1, dtype=v.dtype)], dim=3)
    o_rows, hts = [[None] * T for _ in range(B)], []
    for n, (b, t0, length) in enumerate(seqs):
        S = h0[n].clone() if h0 is not None else torch.zeros(HV, K, Vs, dtype=torch.float64)
        for t in range(t0, t0 + length):
            if c["gate"] == "const":
                S = S * torch.exp(g)[:, None, None]
            elif c["gate"] == "scalar":
                S = S * torch.exp(g[b, t])[:, None, None]
            elif c["gate"] == "vector":
                S = S * torch.exp(g[b, t])[:, :, None]
            kt, vt = kh[b, t], v[b, t]  # (HV,K), (HV,Vs)
            if c["update"] == "delta":
                u = torch.einsum("hkv,hk->hv", S, kt)
                w = beta[b, t][:, None] * (vt - u)
                S = S + kt[:, :, None] * w[:, None, :]
            else:
                S = S + kt[:, :, None] * vt[:, None, :]
            ot = scale * torch.einsum("hkv,hk->hv", S, qh[b, t])
            if norm:
                ot = ot[:, :V] / (ot[:, V:] + c["eps"])
            o_rows[b][t] = ot
        hts.append(S)
    o = torch.stack([torch.stack(row) for row in o_rows])
    return o, torch.stack(hts)


def make_case(name, seed, gate, update, B=1, T=67, H=2, HV=0, K=16, V=12, gmin=-1.0,
              h0=True, normalize=False, cu_seqlens=None, scale=0.0):
    HV = HV or H
    c = {"name": name, "B": B, "T": T, "H": H, "HV": HV, "K": K, "V": V, "gate": gate,
         "update": update, "normalize": int(normalize), "eps": 1e-6, "scale": scale,
         "cu_seqlens": cu_seqlens or [], "has_h0": int(h0)}
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32)

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float32)

    N = len(cu_seqlens) - 1 if cu_seqlens else B
    Vs = V + 1 if normalize else V
    q, k, v = randn(B, T, H, K), randn(B, T, H, K), randn(B, T, HV, V)
    if update == "delta":  # L2-normalized keys, as DeltaNet uses them
        k = k / k.norm(dim=-1, keepdim=True)
    if normalize:  # positive features keep the denominator away from 0
        q, k = q.abs() + 0.1, k.abs() + 0.1
    g_shape = {"none": None, "const": (HV,), "scalar": (B, T, HV), "vector": (B, T, HV, K)}[gate]
    inputs = {"q": q, "k": k, "v": v}
    if g_shape:
        inputs["g"] = uniform(gmin, 0.0, *g_shape)
    if update == "delta":
        inputs["beta"] = uniform(0.05, 0.95, B, T, HV)
    if h0:
        s = 0.5 * randn(N, HV, K, Vs)
        if normalize:  # the z column must stay positive
            s[..., V] = s[..., V].abs() + 0.5
        inputs["h0"] = s
    dout, dht = randn(B, T, HV, V), randn(N, HV, K, Vs)

    leaves = {n: t.to(torch.float64).requires_grad_(True) for n, t in inputs.items()}
    o, ht = reference(c, leaves["q"], leaves["k"], leaves["v"], leaves.get("g"),
                      leaves.get("beta"), leaves.get("h0"))
    loss = (o * dout.double()).sum() + (ht * dht.double()).sum()
    loss.backward()

    out = [(f"{name}.{n}", t) for n, t in inputs.items()]
    out += [(f"{name}.dout", dout), (f"{name}.dht", dht), (f"{name}.o", o), (f"{name}.ht", ht)]
    out += [(f"{name}.d{n}", leaves[n].grad) for n in inputs]
    return c, out


CASES = [
    # name, seed, gate, update, options
    ("linear", 1, "none", "add", dict(B=2)),
    ("retention", 2, "const", "add", dict(h0=False, gmin=-0.2)),
    ("simple_gla", 3, "scalar", "add", dict(gmin=-2.0)),
    ("gla", 4, "vector", "add", dict(K=20, V=10)),
    ("gla_strong", 5, "vector", "add", dict(gmin=-6.0, T=70, H=1)),
    ("delta", 6, "none", "delta", dict()),
    ("retention_delta", 7, "const", "delta", dict(h0=False, gmin=-0.3)),
    ("gated_delta", 8, "scalar", "delta", dict(B=2, gmin=-2.0)),
    ("kda", 9, "vector", "delta", dict(K=20, V=10)),
    ("grouped_gated_delta", 10, "scalar", "delta", dict(H=1, HV=3)),
    ("normalized_linear", 11, "none", "add", dict(normalize=True)),
    ("normalized_gla", 12, "vector", "add", dict(normalize=True, H=1, gmin=-0.5)),
    ("varlen_gated_delta", 13, "scalar", "delta", dict(T=90, cu_seqlens=[0, 23, 23, 90])),
    ("single_token", 14, "scalar", "add", dict(T=1, scale=0.5)),
]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/attn_fixtures.safetensors"
    cases, tensors = [], []
    for name, seed, gate, update, opts in CASES:
        c, t = make_case(name, seed, gate, update, **opts)
        cases.append(c)
        tensors += t
    meta = {"format": "lina attention fixtures v1", "generator": "scripts/make_fixtures.py",
            "torch": torch.__version__, "cases": json.dumps(cases, separators=(",", ":"))}
    write_safetensors(path, tensors, meta)
    n = sum(t.numel() for _, t in tensors)
    print(f"wrote {path}: {len(cases)} cases, {len(tensors)} tensors, {4 * n / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
