#!/usr/bin/env python3
"""fla's chunk kernels, forward and backward, on small odd shapes: the op-level fixtures
of tests/test_fla_ops.c. fla's Triton kernels run on the CPU through Triton's interpreter
(fp32; no autotuning: the first candidate is taken), so these are fla's own numbers.

One file per case, <case>.safetensors, all float32, fla's layouts (lina's too):
    q, k (B, T, H, K); v, do (B, T, H, V); g (B, T, H) or (B, T, H, K); beta (B, T, H);
    h0, dht (N, H, K, V); cu_seqlens (n+1) int64 for the varlen case
    o, ht                      fla's forward
    dq, dk, dv, dg, dbeta, dh0 fla's backward of sum(o * do) + sum(ht * dht)
Cases: simple_gla (scalar gate), gla (vector gate), delta_rule, gated_delta_rule, each at
B2 T70 H2 K32 V40 with h0 and a varlen one at B1 T90 = [17, 0, 73] (an empty sequence).

Needs torch, triton, einops, safetensors and fla (pip install flash-linear-attention):
    python3 tests/data/fla_ops/make.py
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton.runtime.autotuner as autotuner  # noqa: E402

autotuner.Autotuner._bench = lambda self, *a, config=None, **k: [0.0, 0.0, 0.0]

from fla.ops.delta_rule.chunk import ChunkDeltaRuleFunction  # noqa: E402
from fla.ops.gated_delta_rule import chunk_gated_delta_rule  # noqa: E402
from fla.ops.gla import chunk_gla  # noqa: E402
from fla.ops.simple_gla import chunk_simple_gla  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import triton.language as tl  # noqa: E402
import sys as _sys  # noqa: E402


def _kernel_range(*args):
    """range() for fla's kernel modules: under the interpreter a plain range gives Python ints,
    and fla's chunk kernels call .to(tl.int64) on the loop counter; yield interpreter scalars."""
    for i in range(*args):
        yield tl.full((), i, tl.int32)


for _name, _mod in list(_sys.modules.items()):
    if _name.startswith("fla.ops") and _mod is not None:
        _mod.range = _kernel_range

HERE = os.path.dirname(os.path.abspath(__file__))


def make(name, op, B, T, H, K, V, cu=None, seed=0):
    g_ = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g_)
    N = B if cu is None else len(cu) - 1
    t = dict(q=rn(B, T, H, K), k=rn(B, T, H, K), v=rn(B, T, H, V), do=rn(B, T, H, V),
             h0=0.5 * rn(N, H, K, V), dht=0.5 * rn(N, H, K, V))
    if op in ("delta_rule", "gated_delta_rule"):
        t["k"] = F.normalize(t["k"], dim=-1)
        t["beta"] = torch.rand(B, T, H, generator=g_) * 0.95 + 0.05
    if op in ("simple_gla", "gated_delta_rule"):
        t["g"] = F.logsigmoid(rn(B, T, H) + 2.0)  # mostly slow decays, some fast
    if op == "gla":
        t["g"] = F.logsigmoid(rn(B, T, H, K) + 2.0)
    x = {n: v.clone().requires_grad_() for n, v in t.items() if n not in ("do", "dht")}
    kw = dict(initial_state=x["h0"], output_final_state=True)
    if cu is not None:
        kw["cu_seqlens"] = torch.tensor(cu, dtype=torch.long)
    if op == "simple_gla":
        o, ht = chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"], **kw)
    elif op == "gla":
        o, ht = chunk_gla(x["q"], x["k"], x["v"], g=x["g"], **kw)
    elif op == "delta_rule":  # chunk_delta_rule refuses fp32 (a GPU precision guard): its Function directly
        cu_t = kw.get("cu_seqlens")
        o, ht = ChunkDeltaRuleFunction.apply(x["q"], x["k"], x["v"], x["beta"], K ** -0.5, x["h0"], True, False,
                                             cu_t, cu_t, 64)
    else:
        o, ht = chunk_gated_delta_rule(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"], **kw)
    ((o * t["do"]).sum() + (ht * t["dht"]).sum()).backward()
    out = {n: v.contiguous() for n, v in t.items()}
    out["o"], out["ht"] = o.detach().contiguous(), ht.detach().contiguous()
    for n in ("q", "k", "v", "g", "beta", "h0"):
        if n in x:
            out["d" + n] = x[n].grad.contiguous()
    if cu is not None:
        out["cu_seqlens"] = torch.tensor(cu, dtype=torch.int64)
    save_file(out, os.path.join(HERE, name + ".safetensors"))
    print(name, {n: tuple(v.shape) for n, v in out.items()})


if __name__ == "__main__":
    for i, op in enumerate(("simple_gla", "gla", "delta_rule", "gated_delta_rule")):
        make(op, op, 2, 70, 2, 32, 40, seed=i)
        make(op + "_varlen", op, 1, 90, 2, 32, 40, cu=[0, 17, 17, 90], seed=10 + i)
