"""lina's CUDA kernels vs fla's Triton kernels, side by side in one process.

lina is called through ctypes on liblina.so with torch's device pointers, on
the very same bf16 tensors fla gets; each op is timed with triton's do_bench
(median of CUDA-event timings) and lina's output is compared with fla's
(relative RMS, an independent cross-check of both).
usage: python3 bench_vs_fla.py path/to/liblina.so out.json"""
import ctypes as C, json, math, os, sys
import torch, torch.nn.functional as F
from triton.testing import do_bench

from lina_ctypes import Args, BF16, BwdArgs, Desc, GATE, load

lib = load(sys.argv[1])
out_path = sys.argv[2]
# LINA_LIB_B: a second liblina (a kernel variant, built by run.sh from AB_PATCH) timed against
# the first on the same inputs, alternating, in this process
lib_b = load(os.environ['LINA_LIB_B']) if os.environ.get('LINA_LIB_B') else None
PEAK_TFLOPS, PEAK_TBS = 790.0, 4.3  # measured ceilings on this card (KINDS.md)

try:
    if os.environ.get('LINA_BENCH_FLA', '1') != '1':
        raise ImportError('LINA_BENCH_FLA=0: lina alone')
    sys.path.insert(0, '/tmp/site')
    from fla.ops.simple_gla import chunk_simple_gla
    from fla.ops.gla import chunk_gla
    from fla.ops.delta_rule import chunk_delta_rule
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.linear_attn import chunk_linear_attn
    have_fla = True
except Exception as e:  # still time lina alone
    print('fla import failed:', repr(e)[:300]); have_fla = False

def ptr(t):
    return None if t is None else t.data_ptr()

def lina_call(B, T, H, D, gate, delta, q, k, v, g, beta, o, l=None):
    l = l or lib
    d = Desc(B=B, T=T, H=H, HV=0, K=D, V=D, gate=GATE[gate], update=1 if delta else 0, eps=1e-6, chunk=64)
    a = Args(q=ptr(q), k=ptr(k), v=ptr(v), g=ptr(g), beta=ptr(beta), o=ptr(o))
    stream = torch.cuda.current_stream().cuda_stream
    def run():
        st = l.lina_cuda_attn_forward(C.byref(d), BF16, C.byref(a), stream)
        if st != 0:
            raise RuntimeError(l.lina_last_error().decode())
    return run, l.lina_attn_flops(C.byref(d), 2)

def lina_fwd_bwd(B, T, H, D, gate, delta, q, k, v, g, beta, o, dout):
    """lina forward then backward (all gradients), as one training step of the op."""
    fwd, _ = lina_call(B, T, H, D, gate, delta, q, k, v, g, beta, o)
    grads = [torch.empty_like(t) for t in (q, k, v)]
    dg = None if g is None else torch.empty_like(g)
    db = None if beta is None else torch.empty_like(beta)
    d = Desc(B=B, T=T, H=H, HV=0, K=D, V=D, gate=GATE[gate], update=1 if delta else 0, eps=1e-6, chunk=64)
    a = BwdArgs(q=ptr(q), k=ptr(k), v=ptr(v), g=ptr(g), beta=ptr(beta), dout=ptr(dout), dq=ptr(grads[0]),
                dk=ptr(grads[1]), dv=ptr(grads[2]), dg=ptr(dg), dbeta=ptr(db))
    stream = torch.cuda.current_stream().cuda_stream
    def run():
        fwd()
        st = lib.lina_cuda_attn_backward(C.byref(d), BF16, C.byref(a), stream)
        if st != 0:
            raise RuntimeError(lib.lina_last_error().decode())
    return run

def rel(a, b):
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()

def decode_bench():
    # decode: one token per sequence with a state, B = 1..64, H = 16, K = V = 128 (lina_cuda_attn_step
    # vs fla's fused recurrent kernels at T = 1 with initial and final state)
    lib.lina_cuda_attn_step.argtypes = [C.POINTER(Desc), C.c_int] + [C.c_void_p] * 8
    lib.lina_cuda_attn_step.restype = C.c_int
    try:
        from fla.ops.simple_gla import fused_recurrent_simple_gla
        from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule
    except Exception as e:
        fused_recurrent_simple_gla = fused_recurrent_gated_delta_rule = None
        print('fla fused recurrent import failed:', repr(e)[:200])
    H, D = 16, 128
    for B in (1, 8, 64):
        r = lambda *sh: torch.randn(*sh, device='cuda', dtype=torch.bfloat16)
        q, v = r(B, 1, H, D), r(B, 1, H, D)
        k = F.normalize(r(B, 1, H, D).float(), dim=-1).to(torch.bfloat16)
        g = (F.logsigmoid(torch.randn(B, 1, H, device='cuda')) / 16).float()
        beta = torch.rand(B, 1, H, device='cuda').sigmoid()
        S = torch.randn(B, H, D, D, device='cuda') * 0.1
        o = torch.empty_like(v)
        for name, delta, fla_fn in (('simple_gla', False, fused_recurrent_simple_gla),
                                    ('gated_delta_rule', True, fused_recurrent_gated_delta_rule)):
            row = dict(op=name, shape=f'B{B}_H{H}_D{D}', pass_='decode')
            d = Desc(B=B, T=1, H=H, HV=0, K=D, V=D, gate=GATE['scalar'], update=1 if delta else 0, eps=1e-6, chunk=64)
            stream = torch.cuda.current_stream().cuda_stream
            def step():
                st = lib.lina_cuda_attn_step(C.byref(d), BF16, ptr(q), ptr(k), ptr(v), ptr(g), ptr(beta) if delta else None,
                                             ptr(S), ptr(o), stream)
                if st != 0:
                    raise RuntimeError(lib.lina_last_error().decode())
            row['lina_ms'] = do_bench(step, warmup=25, rep=100)
            if fla_fn is not None:
                try:
                    with torch.no_grad():
                        if delta:
                            fn = lambda: fla_fn(q, k, v, g=g, beta=beta, initial_state=S, output_final_state=True)
                        else:
                            fn = lambda: fla_fn(q, k, v, g=g, initial_state=S, output_final_state=True)
                        row['ref_ms'] = do_bench(fn, warmup=25, rep=100)
                        row['ref'] = 'fla'
                except Exception as e:
                    row['ref_error'] = repr(e)[:300]
            print(json.dumps(row), flush=True)
            rows.append(row)


rows = []
if os.environ.get('LINA_BENCH_DECODE_FIRST', '0') == '1':
    decode_bench()
shapes = [(8, 4096, 16, 128), (2, 16384, 16, 128)]
for (B, T, H, D) in shapes:
    torch.manual_seed(0)
    r = lambda *sh: torch.randn(*sh, device='cuda', dtype=torch.bfloat16)
    q, k, v = r(B, T, H, D), r(B, T, H, D), r(B, T, H, D)
    kn = F.normalize(k.float(), dim=-1).to(torch.bfloat16)
    gs = (F.logsigmoid(torch.randn(B, T, H, device='cuda')) / 16).float()
    gv = (F.logsigmoid(r(B, T, H, D).float()) / 16).to(torch.bfloat16)
    beta = torch.rand(B, T, H, device='cuda', dtype=torch.bfloat16).sigmoid()
    o = torch.empty_like(v)
    ops = [  # name, lina (gate, delta, k, g, beta), fla callable
        ('linear_attn', ('none', False, k, None, None), lambda: chunk_linear_attn(q, k, v, normalize=False)),
        ('simple_gla', ('scalar', False, k, gs, None), lambda: chunk_simple_gla(q, k, v, g=gs)),
        ('gla', ('vector', False, k, gv.float(), None), lambda: chunk_gla(q, k, v, g=gv)),
        ('delta_rule', ('none', True, kn, None, beta.float()), lambda: chunk_delta_rule(q, kn, v, beta=beta)),
        ('gated_delta_rule', ('scalar', True, kn, gs, beta.float()), lambda: chunk_gated_delta_rule(q, kn, v, g=gs, beta=beta)),
    ]
    shape_rows = []
    for name, (gate, delta, kk, g, bb), fla_fn in ops:
        row = dict(op=name, shape=f'B{B}_T{T}_H{H}_D{D}')
        bytes_moved = 4 * q.numel() * 2 + (0 if g is None else g.numel() * 4) + (0 if bb is None else bb.numel() * 4)
        run, flops = lina_call(B, T, H, D, gate, delta, q, kk, v, g, bb, o)
        try:
            with torch.no_grad():
                ms = do_bench(run, quantiles=[0.5, 0.2, 0.8], warmup=25, rep=200)
            row.update(lina_ms=ms[0], lina_p20=ms[1], lina_p80=ms[2], lina_tflops=flops / ms[0] / 1e9,
                       lina_tbs=bytes_moved / ms[0] / 1e9)
        except Exception as e:
            row['lina_error'] = repr(e)[:300]
        print(json.dumps(row), flush=True)  # lina first: a run cut short by fla's compile keeps these
        rows.append(row)
        shape_rows.append((row, run))
    if lib_b is not None:  # A/B: the two libraries alternately, three rounds; B's output vs A's
        for name, (gate, delta, kk, g, bb), _ in ops:
            o_b = torch.empty_like(o)
            run_a, _ = lina_call(B, T, H, D, gate, delta, q, kk, v, g, bb, o)
            run_b, _ = lina_call(B, T, H, D, gate, delta, q, kk, v, g, bb, o_b, lib_b)
            ta, tb = [], []
            for _ in range(3):
                ta.append(do_bench(run_a, warmup=10, rep=100))
                tb.append(do_bench(run_b, warmup=10, rep=100))
            run_a(); run_b(); torch.cuda.synchronize()
            print(f'A/B {name} {B}x{T}: A {min(ta):.3f} ms, B {min(tb):.3f} ms, A/B {min(ta) / min(tb):.3f}, '
                  f'rel rms B vs A {rel(o_b, o):.1e}', flush=True)
    if os.environ.get('LINA_BENCH_DETAIL', '1') == '1':  # per-kernel times (CUPTI via torch.profiler), tile variants
        from torch.profiler import profile, ProfilerActivity
        for name, (gate, delta, kk, g, bb), _ in ops:
            run, _ = lina_call(B, T, H, D, gate, delta, q, kk, v, g, bb, o)
            run(); torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    run()
                torch.cuda.synchronize()
            ks = [(e.key, e.device_time_total / e.count / 1e3, e.count) for e in prof.key_averages() if e.device_time_total > 0]
            print('profile', name, '; '.join(f'{k[:40]} {ms:.3f} ms x{c}' for k, ms, c in ks), flush=True)
        # the split kernels (a state per chunk through global memory) on the same inputs
        # and the one-pass delta rule where the default picks the split kernels (few blocks)
        for env in ('0', '1'):
            os.environ['LINA_CUDA_FUSED'] = env
            for name, (gate, delta, kk, g, bb), _ in ops:
                if gate == 'vector' or (env == '1' and not delta):
                    continue
                run, _ = lina_call(B, T, H, D, gate, delta, q, kk, v, g, bb, o)
                print(f'LINA_CUDA_FUSED={env}, {name}: {do_bench(run, warmup=10, rep=60):.3f} ms', flush=True)
        # output kernel of the split path: 8 warps x 128 value columns (default at K = 128) vs 4 x 64
        os.environ['LINA_CUDA_FUSED'] = '0'
        for impl in ('narrow', 'wide'):
            os.environ['LINA_CUDA_OUT_IMPL'] = impl
            for name, (gate, delta, kk, g, bb), _ in ops:
                if gate != 'vector':
                    run, _ = lina_call(B, T, H, D, gate, delta, q, kk, v, g, bb, o)
                    print(f'split {name} LINA_CUDA_OUT_IMPL={impl}: {do_bench(run, warmup=10, rep=60):.3f} ms', flush=True)
        del os.environ['LINA_CUDA_OUT_IMPL']
        # time segments of the split delta rule's overlapped schedule (1: one stream, no overlap)
        os.environ['LINA_CUDA_FUSED'] = '0'
        for unroll in ('0', '1'):
            os.environ['LINA_CUDA_DELTA_UNROLL'] = unroll
            for segs in (1, 4, 8):
                os.environ['LINA_CUDA_DELTA_SEGS'] = str(segs)
                for name, gg in (('delta_rule', None), ('gated_delta_rule', gs)):
                    run, _ = lina_call(B, T, H, D, 'scalar' if gg is not None else 'none', True, q, kn, v, gg, beta.float(), o)
                    print(f'split {name} LINA_CUDA_DELTA_UNROLL={unroll} LINA_CUDA_DELTA_SEGS={segs}: '
                          f'{do_bench(run, warmup=10, rep=60):.3f} ms', flush=True)
        del os.environ['LINA_CUDA_DELTA_SEGS'], os.environ['LINA_CUDA_DELTA_UNROLL']
        # value tile of the split delta rule's states pass
        os.environ['LINA_CUDA_FUSED'] = '0'
        for name, gg in (('delta_rule', None), ('gated_delta_rule', gs)):
            run, _ = lina_call(B, T, H, D, 'scalar' if gg is not None else 'none', True, q, kn, v, gg,
                               beta.float(), o)
            for bv in (16, 32, 64):
                os.environ['LINA_CUDA_DELTA_BV'] = str(bv)
                print(f'split {name} LINA_CUDA_DELTA_BV={bv}: {do_bench(run, warmup=10, rep=60):.3f} ms', flush=True)
        del os.environ['LINA_CUDA_DELTA_BV'], os.environ['LINA_CUDA_FUSED']
        # value tile of the VECTOR states kernel
        run, _ = lina_call(B, T, H, D, 'vector', False, q, k, v, gv.float(), None, o)
        for bv in (16, 32, 64):
            os.environ['LINA_CUDA_VEC_BV'] = str(bv)
            print(f'gla LINA_CUDA_VEC_BV={bv}: {do_bench(run, warmup=10, rep=60):.3f} ms', flush=True)
        del os.environ['LINA_CUDA_VEC_BV']
        # segments of the one-pass kernel (additive): states-only pass + scan + outputs
        for gate, gg in (('none', None), ('scalar', gs)):
            run, _ = lina_call(B, T, H, D, gate, False, q, k, v, gg, None, o)
            for segs in (1, 2, 4, 8):
                os.environ['LINA_CUDA_FUSED_SEGS'] = str(segs)
                print(f'one-pass segments={segs}, gate {gate}: {do_bench(run, warmup=10, rep=60):.3f} ms', flush=True)
            del os.environ['LINA_CUDA_FUSED_SEGS']
    # fla on the same inputs (its Triton kernels compile on first use: minutes), and lina's output vs fla's
    for (row, run), (name, _, fla_fn) in zip(shape_rows, ops):
        if not have_fla:
            break
        if 'lina_ms' in row:
            run()
        try:
            with torch.no_grad():
                ref = fla_fn()[0]
                row['rel_rms_vs_fla'] = rel(o, ref) if 'lina_ms' in row else None
                ms = do_bench(fla_fn, quantiles=[0.5, 0.2, 0.8], warmup=25, rep=200)
            row.update(fla_ms=ms[0], fla_p20=ms[1], fla_p80=ms[2])
            if 'lina_ms' in row:
                row['speedup'] = ms[0] / row['lina_ms']
            if os.environ.get('FLA_PROFILE', '0') == '1':  # fla's per-kernel times, as lina's above
                from torch.profiler import profile, ProfilerActivity
                with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(5):
                        fla_fn()
                    torch.cuda.synchronize()
                ks = [(e.key, e.device_time_total / e.count / 1e3, e.count) for e in prof.key_averages()
                      if e.device_time_total > 0]
                print('fla profile', name, row['shape'], '; '.join(f'{k[:48]} {t:.3f} ms x{c}' for k, t, c in ks),
                      flush=True)
        except Exception as e:
            row['fla_error'] = repr(e)[:300]
        print(json.dumps(row), flush=True)
    if os.environ.get('LINA_BENCH_BWD', '1') == '1':
        # forward+backward references: torch SDPA causal (flash) and fla's chunk kernels
        def fwd_bwd(fn, *leaves):
            def step():
                out = fn()
                out = out[0] if isinstance(out, tuple) else out
                out.backward(dout)
                for t in leaves:
                    t.grad = None
            return step
        dout = torch.randn_like(v)
        ql, kl, vl, knl = (t.detach().clone().requires_grad_() for t in (q, k, v, kn))
        gsl, gvl, bl = (t.detach().clone().requires_grad_() for t in (gs, gv, beta))
        qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
        dout_t = dout.transpose(1, 2).contiguous()
        def sdpa():
            o_ = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
            o_.backward(dout_t); qt.grad = kt.grad = vt.grad = None
        bwd = [('sdpa_causal', sdpa)]
        bwd += [('lina_' + name, lina_fwd_bwd(B, T, H, D, gate, delta, q, kk, v, g, bb, o, dout))
                for name, (gate, delta, kk, g, bb), _ in ops]
        if have_fla and T <= 4096:  # fla's backward kernels compile for minutes: one shape
            bwd += [
                ('linear_attn', fwd_bwd(lambda: chunk_linear_attn(ql, kl, vl, normalize=False), ql, kl, vl)),
                ('simple_gla', fwd_bwd(lambda: chunk_simple_gla(ql, kl, vl, g=gsl), ql, kl, vl, gsl)),
                ('gla', fwd_bwd(lambda: chunk_gla(ql, kl, vl, g=gvl), ql, kl, vl, gvl)),
                ('delta_rule', fwd_bwd(lambda: chunk_delta_rule(ql, knl, vl, beta=bl), ql, knl, vl, bl)),
                ('gated_delta_rule', fwd_bwd(lambda: chunk_gated_delta_rule(ql, knl, vl, g=gsl, beta=bl), ql, knl, vl, gsl, bl)),
            ]
        for name, fn in bwd:
            row = dict(op=name, shape=f'B{B}_T{T}_H{H}_D{D}', pass_='fwd+bwd')
            try:
                ms = do_bench(fn, quantiles=[0.5, 0.2, 0.8], warmup=2 if name.startswith('lina_') else 10,
                              rep=100)
                row.update(ref_ms=ms[0], ref_p20=ms[1], ref_p80=ms[2],
                           ref='torch' if name == 'sdpa_causal' else 'lina' if name.startswith('lina_') else 'fla')
            except Exception as e:
                row['ref_error'] = repr(e)[:300]
            print(json.dumps(row), flush=True)
            rows.append(row)
        del ql, kl, vl, knl, gsl, gvl, bl, qt, kt, vt, dout, dout_t
    del q, k, v, kn, gs, gv, beta, o
    torch.cuda.empty_cache()

if os.environ.get('LINA_BENCH_DECODE_FIRST', '0') != '1':
    decode_bench()

json.dump(rows, open(out_path, 'w'), indent=1)
print(f"\n{'op':18s} {'shape':22s} {'lina ms':>9s} {'fla ms':>9s} {'x':>6s} {'TFLOP/s':>8s} {'TB/s':>6s} {'vs fla':>8s}")
for r in rows:
    if 'pass_' in r:
        continue
    f = lambda key, fmt: (fmt % r[key]) if r.get(key) is not None else '-'
    print(f"{r['op']:18s} {r['shape']:22s} {f('lina_ms', '%9.3f'):>9s} {f('fla_ms', '%9.3f'):>9s} "
          f"{f('speedup', '%6.2f'):>6s} {f('lina_tflops', '%8.1f'):>8s} {f('lina_tbs', '%6.2f'):>6s} "
          f"{f('rel_rms_vs_fla', '%8.1e'):>8s}")
for r in rows:
    if 'pass_' in r:
        print(f"{r['pass_']} {r['op']:18s} {r['shape']:22s} {r.get('ref', '-')}: " + (f"{r['ref_ms']:.3f} ms" if 'ref_ms' in r else r.get('ref_error', '')[:120])
              + (f" (lina {r['lina_ms']:.4f} ms)" if 'lina_ms' in r else ''))
print(f'ceilings: {PEAK_TFLOPS} TFLOP/s bf16, {PEAK_TBS} TB/s (KINDS.md measurements)')
