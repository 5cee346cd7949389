#!/usr/bin/python3
"""PyTorch eager baselines for `lina bench ops`, timed the same way (median ms).

Run with /usr/bin/python3 (Debian's python3-torch 1.13):

    /usr/bin/python3 bench/torch_chunk.py --op gated_delta --T 4096 --threads 1 [--backward] [--json]
    /usr/bin/python3 bench/torch_chunk.py --check      # chunk forms vs a naive float64 recurrence

Ops (layout [B, T, H, D] as in lina, scale 1/sqrt(K), chunk 64):
  linear       S_t = S_{t-1} + k_t v_t^T, o_t = scale S_t^T q_t; chunkwise with all chunks
               batched: intra-chunk tril(Q K^T) V plus Q times the exclusive prefix sum
               of the chunk states K_c^T V_c.
  simple_gla   as linear with a scalar log-gate g_t (decay e^{b_t - b_i} inside a chunk,
               chunk states combined by a sequential scan).
  delta        DeltaNet (no gate), via gated_delta with g = 0.
  gated_delta  S_t = e^{g_t} (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, chunkwise
               with the WY/UT representation. Per chunk, b = cumsum(g), S0 the state before:
                 A  = strictly-lower(diag(beta) K K^T * e^{b_i - b_j})
                 U  = (I + A)^-1 diag(beta) V,   Wk = (I + A)^-1 diag(beta e^b) K
                 W  = U - Wk S0                    (the "new values")
                 O  = scale [ (Q e^b) S0 + (Q K^T * e^{b_i - b_j}, lower incl. diag) W ]
                 S  = e^{b_C} S0 + (K e^{b_C - b})^T W
  softmax      causal softmax attention, naive (full T x T scores, masked).
Backward via autograd of sum(o * do).
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch

CHUNK = 64


def to_chunks(x, C):
    """(B, T, H, D) -> (B, H, N, C, D), T padded with zeros to a multiple of C."""
    B, T, H, D = x.shape
    pad = (-T) % C
    if pad:
        x = torch.cat([x, x.new_zeros(B, pad, H, D)], dim=1)
    return x.transpose(1, 2).reshape(B, H, -1, C, D)


def from_chunks(x, T):
    """(B, H, N, C, D) -> (B, T, H, D)."""
    B, H, N, C, D = x.shape
    return x.reshape(B, H, N * C, D)[:, :, :T].transpose(1, 2)


def linear_chunk(q, k, v, C=CHUNK):
    """Ungated linear attention, every chunk at once."""
    T, scale = q.shape[1], 1.0 / math.sqrt(q.shape[-1])
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    intra = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0) @ vc      # (B,H,N,C,V)
    kv = kc.transpose(-1, -2) @ vc                                         # (B,H,N,K,V) per chunk
    S_prev = kv.cumsum(dim=2) - kv                                         # exclusive prefix sum
    return from_chunks(scale * (intra + qc @ S_prev), T)


def gated_chunk(q, k, v, g, beta=None, C=CHUNK):
    """Scalar-gated linear attention (beta None) or the gated delta rule (WY form).
    q, k (B,T,H,K); v (B,T,H,V); g (B,T,H) log-gates; beta (B,T,H)."""
    B, T, H, K = q.shape
    V, scale = v.shape[-1], 1.0 / math.sqrt(K)
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)
    N = qc.shape[2]
    b = to_chunks(g.unsqueeze(-1), C).squeeze(-1).cumsum(-1)              # (B,H,N,C) chunk-local
    lower = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    # e^{b_i - b_j} on and below the diagonal, 0 above (masked before exp: no overflow)
    decay = (b.unsqueeze(-1) - b.unsqueeze(-2)).masked_fill(~lower, -math.inf).exp()
    scores = (qc @ kc.transpose(-1, -2)) * decay                          # (B,H,N,C,C)
    if beta is not None:
        bc = to_chunks(beta.unsqueeze(-1), C)                             # (B,H,N,C,1)
        eye = torch.eye(C, dtype=q.dtype, device=q.device)
        A = (bc * (kc @ kc.transpose(-1, -2)) * decay).tril(-1)
        U = torch.linalg.solve_triangular(eye + A, bc * vc, upper=False, unitriangular=True)
        Wk = torch.linalg.solve_triangular(eye + A, bc * b.exp().unsqueeze(-1) * kc,
                                           upper=False, unitriangular=True)
    q_decayed = qc * b.exp().unsqueeze(-1)                                # Q e^b
    k_to_end = kc * (b[..., -1:] - b).exp().unsqueeze(-1)                 # K e^{b_C - b}
    S = q.new_zeros(B, H, K, V)
    outs = []
    for n in range(N):
        W = vc[:, :, n] if beta is None else U[:, :, n] - Wk[:, :, n] @ S
        outs.append(q_decayed[:, :, n] @ S + scores[:, :, n] @ W)
        S = b[:, :, n, -1, None, None].exp() * S + k_to_end[:, :, n].transpose(-1, -2) @ W
    return from_chunks(scale * torch.stack(outs, dim=2), T)


def softmax_causal(q, k, v):
    T, scale = q.shape[1], 1.0 / math.sqrt(q.shape[-1])
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B,H,T,D)
    s = (qh @ kh.transpose(-1, -2)) * scale
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return (s.masked_fill(mask, -math.inf).softmax(-1) @ vh).transpose(1, 2)


def naive_recurrence(q, k, v, g=None, beta=None):
    """Token-by-token reference (float64 in --check)."""
    B, T, H, K = q.shape
    scale = 1.0 / math.sqrt(K)
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        if g is not None:
            S = S * g[:, t].exp()[..., None, None]
        kt, vt = k[:, t], v[:, t]
        if beta is not None:
            u = torch.einsum("bhkv,bhk->bhv", S, kt)
            vt = beta[:, t, :, None] * (vt - u)
        S = S + kt[..., :, None] * vt[..., None, :]
        out.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, dim=1)


OPS = ("linear", "simple_gla", "delta", "gated_delta", "softmax")


def make_inputs(op, B, T, H, K, V, dtype=torch.float32, seed=0):
    """Same statistics as `lina bench ops`: N(0,1) q, k, v; delta ops get
    L2-normalized q, k and beta = sigmoid(N(0,1)); log-gates uniform in [-0.1, 0]."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    k = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    g = beta = None
    if op in ("delta", "gated_delta"):
        q = q / q.norm(dim=-1, keepdim=True)
        k = k / k.norm(dim=-1, keepdim=True)
        beta = torch.randn(B, T, H, generator=gen, dtype=dtype).sigmoid()
    if op in ("simple_gla", "gated_delta"):
        g = -0.1 * torch.rand(B, T, H, generator=gen, dtype=dtype)
    if op == "delta":
        g = torch.zeros(B, T, H, dtype=dtype)
    return q, k, v, g, beta


def forward(op, q, k, v, g, beta):
    if op == "linear":
        return linear_chunk(q, k, v)
    if op == "softmax":
        return softmax_causal(q, k, v)
    return gated_chunk(q, k, v, g, beta)


def median_ms(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(op, B, T, H, K, V, threads, backward, repeat, warmup):
    torch.set_num_threads(threads)
    q, k, v, g, beta = make_inputs(op, B, T, H, K, V)
    with torch.no_grad():
        fwd_ms = median_ms(lambda: forward(op, q, k, v, g, beta), repeat, warmup)
    res = {"impl": "torch", "torch": torch.__version__, "op": op, "form": "chunk" if op != "softmax" else "naive",
           "chunk": CHUNK, "B": B, "T": T, "H": H, "K": K, "V": V, "threads": threads, "repeat": repeat,
           "fwd_ms": fwd_ms}
    if backward:
        leaves = [x.clone().requires_grad_(True) if x is not None else None for x in (q, k, v, g, beta)]
        dout = torch.randn(B, T, H, V)

        def fwd_bwd():
            for x in leaves:
                if x is not None:
                    x.grad = None
            forward(op, *leaves).backward(dout)

        res["fwdbwd_ms"] = median_ms(fwd_bwd, repeat, warmup)
    return res


def check():
    """Chunk forms (T not a multiple of the chunk) against the naive recurrence in float64."""
    torch.manual_seed(0)
    ok = True
    for op in ("linear", "simple_gla", "delta", "gated_delta"):
        q, k, v, g, beta = make_inputs(op, 2, 150, 3, 16, 12, dtype=torch.float64)
        if op == "simple_gla":
            g = -3.0 * torch.rand_like(g)  # strong decays as well
        ref = naive_recurrence(q, k, v, g if op != "linear" else None, beta)
        got = forward(op, q, k, v, g, beta)
        err = ((got - ref).norm() / ref.norm()).item()
        good = err < 1e-10
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} torch {op} chunk vs recurrence: rel err {err:.2e}")
    q, k, v, _, _ = make_inputs("softmax", 1, 40, 2, 8, 8, dtype=torch.float64)
    s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(8)
    p = s.masked_fill(torch.ones(40, 40, dtype=torch.bool).triu(1), -math.inf).softmax(-1)
    ref = torch.einsum("bhts,bshd->bthd", p, v)
    err = ((softmax_causal(q, k, v) - ref).norm() / ref.norm()).item()
    ok &= err < 1e-12
    print(f"{'PASS' if err < 1e-12 else 'FAIL'} torch softmax vs einsum: rel err {err:.2e}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", choices=OPS, default="linear")
    for name, default in (("B", 1), ("T", 4096), ("H", 8), ("K", 64), ("V", 64), ("threads", 1),
                          ("repeat", 5), ("warmup", 1)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true", help="verify the chunk forms and exit")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check() else 1)
    for name in ("B", "T", "H", "K", "V", "threads", "repeat"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} {getattr(a, name)} must be >= 1")
    r = bench(a.op, a.B, a.T, a.H, a.K, a.V, a.threads, a.backward, a.repeat, a.warmup)
    if a.json:
        print(json.dumps(r))
    else:
        line = f"torch {r['op']} T={a.T} threads={a.threads}: forward {r['fwd_ms']:.3f} ms"
        if a.backward:
            line += f", forward+backward {r['fwdbwd_ms']:.3f} ms"
        print(line)


if __name__ == "__main__":
    main()
