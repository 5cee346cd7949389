#!/usr/bin/env python3
"""What can an L-layer GD++ stack reach at sigma = 0? Full-batch L-BFGS (torch,
float64) on one fixed draw of B sequences, from a few starts; prints the
parameters (w_xx, w_yx per layer) and the loss on 20000 other sequences.

Same model as src/models/icl.c (GD++: x <- x + w_xx S_xx x, y <- y + w_yx S_yx x,
S = (1/N) sum over the context, prediction = -y of the query, loss = MSE/2),
d = 10, N = 20, w ~ N(0, I), x ~ N(0, I), y = <w, x>. At sigma = 0 the oracle
loss is 0, so the loss is the adjusted loss of the table.

  /usr/bin/python3 scripts/icl_gdpp_basins.py [LAYERS=3] [B=8000]
"""
import sys

import torch

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
L = int(sys.argv[1]) if len(sys.argv) > 1 else 3
B = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
d, N = 10, 20


def sample(n, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, d, generator=g)
    X = torch.randn(n, N + 1, d, generator=g)   # (n, N+1, d): context then query
    return X, torch.einsum('bnd,bd->bn', X, w)   # targets (n, N+1)


def loss(p, X, y):
    x, yy = X, torch.cat([y[:, :N], torch.zeros(len(y), 1)], 1)  # query's y starts at 0
    for l in range(L):
        wxx, wyx = p[2 * l], p[2 * l + 1]
        Sxx = torch.einsum('bni,bnj->bij', x[:, :N], x[:, :N]) / N  # (n, d, d)
        Syx = torch.einsum('bn,bni->bi', yy[:, :N], x[:, :N]) / N   # (n, d)
        yy = yy + wyx * torch.einsum('bi,bni->bn', Syx, x)
        x = x + wxx * torch.einsum('bij,bnj->bni', Sxx, x)
    return 0.5 * ((-yy[:, N] - y[:, N]) ** 2).mean()


X, y = sample(B, 0)
Xe, ye = sample(20000, 1)
for start in ([0.0, -0.3], [-0.1, -0.5], [-0.2, -0.8]):  # (w_xx, w_yx) in every layer
    p = torch.tensor(start * L, requires_grad=True)
    opt = torch.optim.LBFGS([p], lr=0.5, max_iter=500, line_search_fn='strong_wolfe',
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        f = loss(p, X, y)
        f.backward()
        return f

    opt.step(closure)
    with torch.no_grad():
        print("start (w_xx, w_yx) = %s: params %s, fit loss %.4f, eval loss %.4f" % (
            start, [round(v, 4) for v in p.tolist()], float(loss(p, X, y)), float(loss(p, Xe, ye))),
            flush=True)
