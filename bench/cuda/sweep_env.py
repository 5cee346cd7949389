"""Time one lina CUDA forward under several settings of its LINA_CUDA_* environment knobs,
alternating the settings round by round (the card's clock drifts between runs), and check
every setting's output against the first one's.

usage: python3 sweep_env.py path/to/liblina.so OP B T 'K=V,K=V' 'K=V' ...
  OP: linear_attn simple_gla gla delta_rule gated_delta_rule; H = 16, K = V = 128, bf16.
  '' (an empty argument) is the library's default. Prints one JSON object per setting."""
import ctypes as C, json, os, sys
import torch, torch.nn.functional as F
from triton.testing import do_bench

from lina_ctypes import Args, BF16, Desc, load

lib = load(sys.argv[1])
op, B, T = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
settings = sys.argv[5:] or ['']
H, D = 16, 128
torch.manual_seed(0)
r = lambda *sh: torch.randn(*sh, device='cuda', dtype=torch.bfloat16)
q, k, v = r(B, T, H, D), r(B, T, H, D), r(B, T, H, D)
kn = F.normalize(k.float(), dim=-1).to(torch.bfloat16)
gs = (F.logsigmoid(torch.randn(B, T, H, device='cuda')) / 16).float()
gv = (F.logsigmoid(r(B, T, H, D).float()) / 16).float()
beta = torch.rand(B, T, H, device='cuda').sigmoid()
gate, delta, kk, g, bb = dict(linear_attn=(0, 0, k, None, None), simple_gla=(2, 0, k, gs, None),
                              gla=(3, 0, k, gv, None), delta_rule=(0, 1, kn, None, beta),
                              gated_delta_rule=(2, 1, kn, gs, beta))[op]
ptr = lambda t: None if t is None else t.data_ptr()
desc = Desc(B=B, T=T, H=H, HV=0, K=D, V=D, gate=gate, update=delta, eps=1e-6, chunk=64)
stream = torch.cuda.current_stream().cuda_stream
base_env = {n: v for n, v in os.environ.items() if n.startswith('LINA_CUDA_')}


def apply(setting):  # the knobs are read at every call (getenv), so setting them here takes effect
    for n in [n for n in os.environ if n.startswith('LINA_CUDA_')]:
        del os.environ[n]
    os.environ.update(base_env)
    for kv in filter(None, setting.split(',')):
        n, val = kv.split('=')
        os.environ[n] = val


outs = {s: torch.empty_like(v) for s in settings}
runs = {}
for s in settings:
    a = Args(q=ptr(q), k=ptr(kk), v=ptr(v), g=ptr(g), beta=ptr(bb), o=ptr(outs[s]))
    def run(a=a, s=s):
        apply(s)
        if lib.lina_cuda_attn_forward(C.byref(desc), BF16, C.byref(a), stream) != 0:
            raise RuntimeError(lib.lina_last_error().decode())
    runs[s] = run
times = {s: [] for s in settings}
for _ in range(3):
    for s in settings:
        times[s].append(do_bench(runs[s], warmup=10, rep=100))
for s in settings:
    runs[s]()
torch.cuda.synchronize()
ref = outs[settings[0]].float()
for s in settings:
    rel = ((outs[s].float() - ref).norm() / ref.norm()).item()
    print(json.dumps(dict(op=op, B=B, T=T, setting=s or 'default', ms=min(times[s]), rel_vs_first=rel)), flush=True)
