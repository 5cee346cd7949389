/* Chunkwise forward of the additive update (gates NONE / CONST / SCALAR) for
 * 16-bit inputs on tensor cores (mma.sync m16n8k16, fp32 accumulators), in
 * the shape of fla's chunk_fwd_h + chunk_fwd_o. Chunks of C = 64 tokens, b the
 * chunk-local inclusive cumulative log gate (b_{C-1} = b at the chunk's last token):
 *
 * 1. states: one block of 4 warps per (sequence, value head, 64-row K tile,
 *    BV-column V tile; BV = 64, or 32 / 16 when there are few (sequence, head)
 *    pairs, so that every multiprocessor gets blocks) walks the chunks of its
 *    sequence with the state tile in registers (warp w holds rows 16w..16w+15
 *    as BV/8 accumulator n-tiles):
 *        ws[c] = S                                  (rounded to T, as fla's h)
 *        S     = e^{b_{C-1}} S + (K o e^{b_{C-1} - b_j})^T V    (one mma chain)
 *    K and V tiles stream in through a 3-stage cp.async ring, one barrier per chunk.
 * 2. outputs, parallel over chunks (attn_chunk_out_mma.cu):
 *        O = scale e^{b_t} (Q ws[c]) + (scale Q K^T o e^{b_t - b_s} [s <= t]) V
 * Only differences b_{C-1} - b_j are exponentiated here.
 * fp32 inputs keep the FMA kernels of attn_chunk_add.cu (1e-5 accuracy).
 */
#include <limits.h>
#include <stdlib.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_types.h"

#define MC LINA_CUDA_SPLIT_CHUNK /* tokens per chunk, 64 */
#define MT 128                   /* threads per block: 4 warps */
#define MSTAGES 3                /* chunks in flight in the states kernel */
#define LDT 72                   /* leading dim of 64-wide tiles: 144-byte rows, conflict-free ldmatrix */

static_assert(MC == 64, "the mma kernels assume 64-token chunks (4 warps x 16 rows)");

template <typename T, int BV>
__global__ void __launch_bounds__(MT, 4) mma_states_kernel(const lina_cuda_attn_params p) {
    static_assert(BV == 16 || BV == 32 || BV == 64, "value tile of the states kernel");
    constexpr int LDV = BV + 8, NT = BV / 8; /* V rows of 2 BV + 16 bytes: conflict-free ldmatrix */
    extern __shared__ __align__(128) unsigned char smem[];
    T *kbuf = (T *)smem;                 /* [MSTAGES][MC][LDT]: K (tokens, 64 key columns) */
    T *vbuf = kbuf + MSTAGES * MC * LDT; /* [MSTAGES][MC][LDV]: V (tokens, BV value columns) */
    const int nvt = (p.V + BV - 1) / BV;
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int kt = blockIdx.y / nvt, vt = blockIdx.y % nvt;
    const int k0 = kt * 64, v0 = vt * BV, kcols = min(64, p.K - k0), vcols = min(BV, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7; /* ldmatrix: matrix and row this lane addresses */
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const int64_t c0 = p.seq_chunk0 ? p.seq_chunk0[n] : (int64_t)n * ((p.T + MC - 1) / MC);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V;
    const T *kg = (const T *)p.k + (bos * p.H + h) * p.K + k0;
    const T *vg = (const T *)p.v + (bos * p.HV + hv) * p.V + v0;
    const size_t KV = (size_t)p.K * p.V, soff = ((size_t)n * p.HV + hv) * KV;
    const int row0 = k0 + 16 * warp + g; /* this thread's state rows: row0, row0 + 8 */

    float acc[NT][4]; /* S[row0 (+8)][v0 + 8 nt + c2 (+1)] */
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = row0 + (e >> 1) * 8, col = v0 + nt * 8 + c2 + (e & 1);
            acc[nt][e] = (p.h0 && r < p.K && col < p.V) ? p.h0[soff + (size_t)r * p.V + col] : 0.f;
        }

    const int nc = (len + MC - 1) / MC;
    auto issue = [&](int c) {
        const int t0 = c * MC, lc = min(MC, len - t0), s = c % MSTAGES;
        tile_to_smem<T, MT>(kbuf + s * MC * LDT, LDT, kg + t0 * sqk, sqk, MC, 64, lc, kcols, p.vec_qk);
        tile_to_smem<T, MT>(vbuf + s * MC * LDV, LDV, vg + t0 * sv, sv, MC, BV, lc, vcols, p.vec_v);
    };
#pragma unroll
    for (int s = 0; s < MSTAGES - 1; s++) {
        if (s < nc) issue(s);
        cp_async_commit();
    }
    const float gconst = (p.gate == LINA_GATE_CONST && nc > 0) ? p.g[hv] : 0.f; /* no g without tokens */
    float2 graw = make_float2(0.f, 0.f);
    if (nc > 0) graw = load_gates2(p.g, p.gate, bos, min(MC, len), p.HV, hv);
    const bool ws_pairs = p.V % 2 == 0; /* (row, even col) pairs are 4-byte aligned in ws */

    for (int c = 0; c < nc; c++) {
        const int t0 = c * MC, lc = min(MC, len - t0);
        cp_async_wait<MSTAGES - 2>(); /* chunk c has landed (this thread's copies) */
        __syncthreads();              /* ... everyone's; and chunk c-1's buffers are free */
        if (c + MSTAGES - 1 < nc) issue(c + MSTAGES - 1);
        cp_async_commit();

        /* the state at the start of chunk c, for the output kernel */
        T *wsc = (T *)p.ws + ((size_t)(c0 + c) * p.HV + hv) * KV;
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int r = row0 + 8 * hh, col = v0 + nt * 8 + c2;
                if (r >= p.K || col >= p.V) continue;
                T *dst = wsc + (size_t)r * p.V + col;
                if (ws_pairs) {
                    *(uint32_t *)dst = pack2<T>(acc[nt][2 * hh], acc[nt][2 * hh + 1]);
                } else {
                    dst[0] = from_f<T>(acc[nt][2 * hh]);
                    if (col + 1 < p.V) dst[1] = from_f<T>(acc[nt][2 * hh + 1]);
                }
            }

        const float2 b = chunk_cumsum64(graw, p.gate, gconst, lc);
        if (c + 1 < nc) graw = load_gates2(p.g, p.gate, bos + t0 + MC, min(MC, len - t0 - MC), p.HV, hv);
        const float blast = b_at(b, MC - 1), decay = __expf(blast);
        /* lane l: the key weights e^{b_{C-1} - b_t} of tokens t = 2l, 2l+1 */
        const float2 wl = make_float2(__expf(blast - b.x), __expf(blast - b.y));
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[nt][e] *= decay;

        const T *ks = kbuf + (c % MSTAGES) * MC * LDT, *vs = vbuf + (c % MSTAGES) * MC * LDV;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { /* tokens 16 kk .. 16 kk + 15 */
            /* A = K^T (rows: this warp's 16 keys, columns: tokens), transposed from kbuf[t][k] */
            uint32_t a[4];
            ldsm_x4_t(a, ks + (kk * 16 + mr + ((mi >> 1) << 3)) * LDT + 16 * warp + ((mi & 1) << 3));
            /* weights of tokens 16 kk + c2 (+1) from lane 8 kk + c2/2, of + 8 (+9) from 4 lanes on */
            const int src = kk * 8 + (lane & 3);
            const float w0 = __shfl_sync(0xffffffffu, wl.x, src), w1 = __shfl_sync(0xffffffffu, wl.y, src);
            const float w8 = __shfl_sync(0xffffffffu, wl.x, src + 4), w9 = __shfl_sync(0xffffffffu, wl.y, src + 4);
            a[0] = scale2<T>(a[0], w0, w1);
            a[1] = scale2<T>(a[1], w0, w1);
            a[2] = scale2<T>(a[2], w8, w9);
            a[3] = scale2<T>(a[3], w8, w9);
#pragma unroll
            for (int np = 0; np < BV / 16; np++) { /* value columns 16 np .. 16 np + 15: B = V, transposed load */
                uint32_t bb[4];
                ldsm_x4_t(bb, vs + (kk * 16 + mr + ((mi & 1) << 3)) * LDV + np * 16 + ((mi >> 1) << 3));
                mma16816<T>(acc[2 * np], a, bb[0], bb[1]);
                mma16816<T>(acc[2 * np + 1], a, bb[2], bb[3]);
            }
        }
    }
    cp_async_wait<0>();
    if (p.ht)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = row0 + (e >> 1) * 8, col = v0 + nt * 8 + c2 + (e & 1);
                if (r < p.K && col < p.V) p.ht[soff + (size_t)r * p.V + col] = acc[nt][e];
            }
}

/* ---- host side ---- */

template <typename T, int BV>
static cudaError_t launch_states(const lina_cuda_attn_params *p, cudaStream_t st) {
    const int nkt = (p->K + 63) / 64, nvt = (p->V + BV - 1) / BV;
    const size_t bytes = (size_t)MSTAGES * MC * (LDT + BV + 8) * sizeof(T);
    cudaError_t e = cudaFuncSetAttribute(mma_states_kernel<T, BV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes);
    if (e != cudaSuccess) return e;
    mma_states_kernel<T, BV><<<dim3((unsigned)(p->n_seqs * p->HV), (unsigned)(nkt * nvt)), MT, bytes, st>>>(*p);
    return cudaGetLastError();
}

/* Value tile of the states kernel: LINA_CUDA_STATE_BV (16, 32, 64) if set, else
 * the widest whose grid gives every multiprocessor two blocks (at most 4 fit). */
static int states_bv(const lina_cuda_attn_params *p) {
    const char *env = getenv("LINA_CUDA_STATE_BV");
    if (env && (atoi(env) == 16 || atoi(env) == 32 || atoi(env) == 64)) return atoi(env);
    const int sms = lina_cuda_sm_count();
    const int64_t heads = (int64_t)p->n_seqs * p->HV * ((p->K + 63) / 64);
    for (int bv = 64; bv > 16; bv /= 2)
        if (heads * ((p->V + bv - 1) / bv) >= 2 * (int64_t)sms) return bv;
    return 16;
}

template <typename T>
static cudaError_t launch_mma(const lina_cuda_attn_params *p, lina_dtype dtype, cudaStream_t st) {
    if ((int64_t)p->n_chunks * p->HV * ((p->V + 63) / 64) > INT_MAX) return cudaErrorInvalidConfiguration;
    const int bv = states_bv(p);
    cudaError_t e = bv == 64 ? launch_states<T, 64>(p, st) : bv == 32 ? launch_states<T, 32>(p, st)
                                                                      : launch_states<T, 16>(p, st);
    if (e != cudaSuccess) return e;
    return (cudaError_t)lina_cuda_mma_outputs(p, dtype, st);
}

extern "C" int lina_cuda_chunk_add_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_mma<__nv_bfloat16>(p, dtype, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_mma<__half>(p, dtype, st);
    return (int)cudaErrorInvalidValue; /* fp32 stays on attn_chunk_add.cu */
}

