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
 * 2. outputs: one block of 4 warps per (chunk, value head, 64 value columns);
 *    warp w computes the rows t = 16w..16w+15:
 *        A = Q K^T                 (only key tiles s <= 16w + 15)
 *        P = scale e^{b_t - b_s} A [s <= t]   (rounded to T, kept in registers
 *                                             as the A operand of the next mma)
 *        O = scale e^{b_t} (Q ws[c]) + P V
 * Only differences b_t - b_s with s <= t, and b_{C-1} - b_j, are exponentiated.
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

/* Shared memory of the output kernel: Q (64, ldq) | K (64, ldk) | S (KP, LDT) | V (64, LDT),
 * KP = K rounded up to 16, ldk = KP + 8, ldq = max(KP, 64) + 8 (warp w's
 * rows of Q later stage its 16 x 64 output tile). */
struct mma_out_layout {
    int KP, ldq, ldk;
    size_t bytes;
};
static __host__ __device__ inline mma_out_layout mma_out_layout_make(int K, int ts) {
    mma_out_layout L;
    L.KP = (K + 15) / 16 * 16;
    L.ldq = (L.KP > 64 ? L.KP : 64) + 8;
    L.ldk = L.KP + 8;
    L.bytes = ((size_t)MC * L.ldq + (size_t)MC * L.ldk + (size_t)L.KP * LDT + (size_t)MC * LDT) * ts;
    return L;
}

template <typename T>
__global__ void __launch_bounds__(MT, 3) mma_output_kernel(const lina_cuda_attn_params p) {
    extern __shared__ __align__(128) unsigned char smem[];
    const mma_out_layout L = mma_out_layout_make(p.K, sizeof(T));
    const int KP = L.KP, ldq = L.ldq, ldk = L.ldk;
    T *q_s = (T *)smem, *k_s = q_s + MC * ldq, *s_s = k_s + MC * ldk, *v_s = s_s + KP * LDT;
    const int nvt = (p.V + 63) / 64;
    const int vt = blockIdx.x % nvt, hv = (blockIdx.x / nvt) % p.HV, i = blockIdx.x / nvt / p.HV;
    const int h = hv / (p.HV / p.H), v0 = vt * 64, vcols = min(64, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7;
    int64_t start;
    int lc;
    chunk_range(p, i, &start, &lc);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V;
    const T *qg = (const T *)p.q + (start * p.H + h) * p.K, *kg = (const T *)p.k + (start * p.H + h) * p.K;
    const T *vg = (const T *)p.v + (start * p.HV + hv) * p.V + v0;
    const T *sg = (const T *)p.ws + ((size_t)i * p.HV + hv) * p.K * p.V + v0;
    if (p.K == 128 && lc == MC && vcols == 64 && p.vec_qk && p.vec_v) { /* the common full chunk */
        tile_to_smem_full<T, MT, MC, 128>(q_s, ldq, qg, sqk);
        tile_to_smem_full<T, MT, MC, 128>(k_s, ldk, kg, sqk);
        cp_async_commit(); /* group 0: Q, K */
        tile_to_smem_full<T, MT, 128, 64>(s_s, LDT, sg, p.V);
        tile_to_smem_full<T, MT, MC, 64>(v_s, LDT, vg, sv);
    } else {
        tile_to_smem<T, MT>(q_s, ldq, qg, sqk, MC, KP, lc, p.K, p.vec_qk);
        tile_to_smem<T, MT>(k_s, ldk, kg, sqk, MC, KP, lc, p.K, p.vec_qk);
        cp_async_commit(); /* group 0: Q, K */
        tile_to_smem<T, MT>(s_s, LDT, sg, p.V, KP, 64, p.K, vcols, p.vec_v);
        tile_to_smem<T, MT>(v_s, LDT, vg, sv, MC, 64, lc, vcols, p.vec_v);
    }
    cp_async_commit(); /* group 1: S, V */

    const float gconst = p.gate == LINA_GATE_CONST ? p.g[hv] : 0.f;
    const float2 b = chunk_cumsum64(load_gates2(p.g, p.gate, start, lc, p.HV, hv), p.gate, gconst, lc);
    const int t_lo = 16 * warp + g, t_hi = t_lo + 8; /* this thread's rows */
    const float b_lo = b_at(b, t_lo), b_hi = b_at(b, t_hi);
    cp_async_wait<1>();
    __syncthreads();

    /* A = Q K^T: rows t_lo/t_hi, key columns 8 nt + c2 (+1), key tiles np <= warp only */
    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) sc[nt][e] = 0.f;
    const T *q_row = q_s + (16 * warp + (lane & 15)) * ldq + ((lane >> 4) << 3);
    for (int ks = 0; ks < KP / 16; ks++) {
        uint32_t a[4];
        ldsm_x4(a, q_row + ks * 16);
#pragma unroll
        for (int np = 0; np < 4; np++)
            if (np <= warp) { /* B[k][s] = K[s][k]: plain load of K rows */
                uint32_t bb[4];
                ldsm_x4(bb, k_s + (np * 16 + mr + ((mi >> 1) << 3)) * ldk + ks * 16 + ((mi & 1) << 3));
                mma16816<T>(sc[2 * np], a, bb[0], bb[1]);
                mma16816<T>(sc[2 * np + 1], a, bb[2], bb[3]);
            }
    }
    /* P = scale e^{b_t - b_s} A [s <= t], packed as A fragments of k-step j = nt / 2 */
    uint32_t pf[4][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        const int s = nt * 8 + c2; /* b_s, b_{s+1} are lane nt * 4 + c2 / 2's pair */
        const float bs0 = __shfl_sync(0xffffffffu, b.x, nt * 4 + (lane & 3));
        const float bs1 = __shfl_sync(0xffffffffu, b.y, nt * 4 + (lane & 3));
        const float x0 = s <= t_lo ? p.scale * __expf(b_lo - bs0) * sc[nt][0] : 0.f;
        const float x1 = s + 1 <= t_lo ? p.scale * __expf(b_lo - bs1) * sc[nt][1] : 0.f;
        const float x2 = s <= t_hi ? p.scale * __expf(b_hi - bs0) * sc[nt][2] : 0.f;
        const float x3 = s + 1 <= t_hi ? p.scale * __expf(b_hi - bs1) * sc[nt][3] : 0.f;
        pf[nt >> 1][(nt & 1) * 2] = pack2<T>(x0, x1);
        pf[nt >> 1][(nt & 1) * 2 + 1] = pack2<T>(x2, x3);
    }
    cp_async_wait<0>();
    __syncthreads();

    /* O = scale e^{b_t} (Q S): B[k][v] = S[k][v], transposed load */
    float o[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] = 0.f;
    for (int ks = 0; ks < KP / 16; ks++) {
        uint32_t a[4];
        ldsm_x4(a, q_row + ks * 16);
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t bb[4];
            ldsm_x4_t(bb, s_s + (ks * 16 + mr + ((mi & 1) << 3)) * LDT + np * 16 + ((mi >> 1) << 3));
            mma16816<T>(o[2 * np], a, bb[0], bb[1]);
            mma16816<T>(o[2 * np + 1], a, bb[2], bb[3]);
        }
    }
    const float f_lo = p.scale * __expf(b_lo), f_hi = p.scale * __expf(b_hi);
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        o[nt][0] *= f_lo, o[nt][1] *= f_lo, o[nt][2] *= f_hi, o[nt][3] *= f_hi;
    }
    /* O += P V over token tiles j <= warp: B[t][v] = V[t][v], transposed load */
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (j <= warp)
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t bb[4];
                ldsm_x4_t(bb, v_s + (j * 16 + mr + ((mi & 1) << 3)) * LDT + np * 16 + ((mi >> 1) << 3));
                mma16816<T>(o[2 * np], pf[j], bb[0], bb[1]);
                mma16816<T>(o[2 * np + 1], pf[j], bb[2], bb[3]);
            }

    /* the warp's 16 x 64 tile, staged in its own rows of Q (no other warp reads them) */
    T *og = (T *)p.o + ((start + 16 * warp) * p.HV + hv) * p.V + v0;
    const int rows = min(16, lc - 16 * warp);
    store_warp_tile<T>(o, q_s + 16 * warp * ldq, ldq, og, sv, rows, vcols, p.vec_v, lane);
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
static cudaError_t launch_outputs(const lina_cuda_attn_params *p, cudaStream_t st) {
    const int nvt = (p->V + 63) / 64;
    const mma_out_layout L = mma_out_layout_make(p->K, sizeof(T));
    if (p->n_chunks == 0) return cudaSuccess;
    if ((int64_t)p->n_chunks * p->HV * nvt > INT_MAX) return cudaErrorInvalidConfiguration;
    cudaError_t e = cudaFuncSetAttribute(mma_output_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.bytes);
    if (e != cudaSuccess) return e;
    /* value tile fastest: the blocks of one chunk and head run together and share Q, K in L2 */
    mma_output_kernel<T><<<(unsigned)((int64_t)p->n_chunks * p->HV * nvt), MT, L.bytes, st>>>(*p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_mma(const lina_cuda_attn_params *p, cudaStream_t st) {
    if ((int64_t)p->n_chunks * p->HV * ((p->V + 63) / 64) > INT_MAX) return cudaErrorInvalidConfiguration;
    const int bv = states_bv(p);
    cudaError_t e = bv == 64 ? launch_states<T, 64>(p, st) : bv == 32 ? launch_states<T, 32>(p, st)
                                                                      : launch_states<T, 16>(p, st);
    if (e != cudaSuccess) return e;
    return launch_outputs<T>(p, st);
}

extern "C" int lina_cuda_chunk_add_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_mma<__nv_bfloat16>(p, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_mma<__half>(p, st);
    return (int)cudaErrorInvalidValue; /* fp32 stays on attn_chunk_add.cu */
}

extern "C" int lina_cuda_mma_outputs(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_outputs<__nv_bfloat16>(p, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_outputs<__half>(p, st);
    return (int)cudaErrorInvalidValue;
}
