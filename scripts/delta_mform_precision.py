"""Precision study (CPU, torch): the gated delta rule's chunkwise forward with the rounding
points of the present CUDA kernels (fla's: W, U, V', S in bf16 as mma operands, fp32
accumulation) against the "one product per chunk" form the states pass could use instead:

    S_{c+1} = M_c S_c + B_c,   M_c = e^{b_C} I - K_d^T W_c,   B_c = K_d^T U_c,
    K_d = diag(e^{b_C - b_s}) K   (M_c and B_c chunk-parallel; only M_c S_c on the chain)

with M_c rounded to bf16 (the mma operand), optionally B_c too, and the pair form
S_{c+2} = (M_{c+1} M_c) S_c + (M_{c+1} B_c + B_{c+1}) that halves the chain. Reference: the
token-by-token recurrence in float64. Prints, per form, the relative RMS of the outputs and
of the final state (the chain's own error, without the output kernel's rounding).

usage: /usr/bin/python3 scripts/delta_mform_precision.py [T] [seeds]   (T = 4096 default)"""
import sys
import torch

torch.set_num_threads(1)
T = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
C, K, V = 64, 128, 128
bf = lambda x: x.to(torch.bfloat16).to(torch.float32)


def inputs(seed, gated):
    g = torch.Generator().manual_seed(seed)
    q = bf(torch.randn(T, K, generator=g))
    k = bf(torch.nn.functional.normalize(torch.randn(T, K, generator=g), dim=-1))
    v = bf(torch.randn(T, V, generator=g))
    beta = torch.sigmoid(torch.randn(T, generator=g))
    lg = torch.nn.functional.logsigmoid(torch.randn(T, generator=g)) / 16 if gated else torch.zeros(T)
    return q, k, v, beta, lg


def reference(q, k, v, beta, lg):
    S = torch.zeros(K, V, dtype=torch.float64)
    o = torch.empty(T, V, dtype=torch.float64)
    qd, kd, vd, bd, gd = (x.double() for x in (q, k, v, beta, lg))
    for t in range(T):
        S = S * torch.exp(gd[t])
        S = S + bd[t] * torch.outer(kd[t], vd[t] - S.t() @ kd[t])
        o[t] = (S.t() @ qd[t]) * K ** -0.5
    return o, S


def chunk_parts(k, v, beta, lg, c):
    """W, U (fp32, then bf16 as stored), b (cumulative log gate), K_d for chunk c."""
    sl = slice(c * C, (c + 1) * C)
    kc, vc, bc = k[sl], v[sl], beta[sl]
    b = torch.cumsum(lg[sl], 0)
    A = torch.tril((bc[:, None] * (kc @ kc.t())) * torch.exp(b[:, None] - b[None, :]), -1)
    X = torch.linalg.inv(torch.eye(C) + A)
    W = bf(X @ (kc * (bc * torch.exp(b))[:, None]))
    U = bf(X @ (vc * bc[:, None]))
    Kd = bf(kc * torch.exp(b[-1] - b)[:, None])
    return kc, W, U, b, Kd


def outputs(q, k, c, S, Vn, b):
    sl = slice(c * C, (c + 1) * C)
    qc, kc = q[sl], k[sl]
    P = torch.tril((qc @ kc.t()) * torch.exp(b[:, None] - b[None, :])) * K ** -0.5
    return (bf(qc) @ bf(S)) * torch.exp(b)[:, None] * K ** -0.5 + bf(P) @ bf(Vn)


def fla_form(q, k, v, beta, lg):
    """present kernels: V' = U - W S (S in bf16), S = e^{b_C} S + K_d^T V' (V' in bf16)"""
    S = torch.zeros(K, V)
    o = torch.empty(T, V)
    for c in range(T // C):
        kc, W, U, b, Kd = chunk_parts(k, v, beta, lg, c)
        Vn = bf(U - W @ bf(S))
        o[c * C:(c + 1) * C] = outputs(q, k, c, S, Vn, b)
        S = torch.exp(b[-1]) * S + bf(kc * torch.exp(b[-1] - b)[:, None]).t() @ bf(Vn)
    return o, S


def m_form(q, k, v, beta, lg, round_b=False, pairs=False):
    n = T // C
    parts = [chunk_parts(k, v, beta, lg, c) for c in range(n)]
    Ms = [torch.exp(p[3][-1]) * torch.eye(K) - p[4].t() @ p[1] for p in parts]
    Bs = [p[4].t() @ p[2] for p in parts]
    S = torch.zeros(K, V)
    starts = []
    c = 0
    while c < n:
        starts.append(S)
        if pairs and c + 1 < n:  # S_{c+2} = (M_{c+1} M_c) S_c + (M_{c+1} B_c + B_{c+1}); S_{c+1} off the chain
            M2, B2 = bf(Ms[c + 1] @ Ms[c]), Ms[c + 1] @ Bs[c] + Bs[c + 1]
            starts.append(bf(Ms[c]) @ bf(S) + (bf(Bs[c]) if round_b else Bs[c]))
            S = M2 @ bf(S) + (bf(B2) if round_b else B2)
            c += 2
        else:
            S = bf(Ms[c]) @ bf(S) + (bf(Bs[c]) if round_b else Bs[c])
            c += 1
    o = torch.empty(T, V)
    for c in range(n):
        kc, W, U, b, Kd = parts[c]
        Vn = bf(U - W @ bf(starts[c]))
        o[c * C:(c + 1) * C] = outputs(q, k, c, starts[c], Vn, b)
    return o, S


rel = lambda a, r: ((a.double() - r).norm() / r.norm()).item()
for gated in (False, True):
    for seed in range(SEEDS):
        x = inputs(seed, gated)
        ref_o, ref_s = reference(*x)
        forms = dict(fla_form=fla_form(*x), m_form=m_form(*x), m_form_bf16_B=m_form(*x, round_b=True),
                     m_pairs=m_form(*x, pairs=True))
        # output error (all rounding points) / final-state error (the chain's accumulation alone)
        print(f'gated={gated} seed={seed} T={T} ' + ' '.join(
            f'{n}={rel(o, ref_o):.2e}/{rel(st, ref_s):.2e}' for n, (o, st) in forms.items()), flush=True)
