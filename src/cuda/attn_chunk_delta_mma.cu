/* Chunkwise forward of the delta rule (gates NONE / CONST / SCALAR) for 16-bit
 * inputs on tensor cores, in the shape of fla's chunk_gated_delta_rule_fwd:
 * chunks of C = 64 tokens, b the chunk-local inclusive cumulative log gate.
 *
 * With S_0 the state at the chunk start, the recurrence
 *     S_t = e^{g_t} S_{t-1} + beta_t k_t (v_t - e^{g_t} S_{t-1}^T k_t)^T
 * becomes, per chunk (the WY form),
 *     A    = tril(diag(beta) (K K^T) o e^{b_t - b_s}, -1)
 *     W    = (I + A)^{-1} diag(beta e^{b}) K,     U = (I + A)^{-1} diag(beta) V
 *     V'   = U - W S_0                            (the "new values")
 *     S_C  = e^{b_{C-1}} S_0 + (K o e^{b_{C-1} - b_s})^T V'
 *     O    = scale e^{b_t} Q S_0 + (scale Q K^T o e^{b_t - b_s} [s <= t]) V'
 * in three launches:
 * 1. wy (parallel over chunks, one block per (chunk, value head)): A with
 *    mma.sync, X = (I + A)^{-1} in fp32 by 16 x 16 blocks (diagonal blocks by
 *    substitution, the others by block products), then W = X diag(beta e^b) K and
 *    U = X diag(beta) V with mma.sync (X diag(coef) split into 16-bit high and low
 *    parts); W and U to the workspace in the input type. Also the first launch
 *    of the one-pass path (attn_chunk_fused_mma.cu).
 * 2. states (sequential over chunks, one block per (sequence, value head, WH x
 *    BV value columns), 4 warps per BV columns (WH = 2 at BV = 32, delta_wh);
 *    the warps hold all K rows of their state tile in registers, warp w rows
 *    16 KM (w % 4) .. 16 KM (w % 4 + 1) - 1): per chunk
 *    ws[c] = S (rounded, also the B operand of W S), V' = U - W S (written over
 *    U in place), S = e^{b_{C-1}} S + K^T (V' o w). Three barriers per chunk.
 *    K, W, U and the gates of the next chunk are in flight (cp.async ring;
 *    3 or 4 stages measured no faster: the chain is bound by instruction issue
 *    and latency, ~1300 instructions per warp and chunk at 4.6 cycles each, ncu
 *    run 22; the fixed-offset tile loader and V' o w instead of K o w cut that to
 *    ~700, ncu run 30b).
 * 3. outputs: lina_cuda_mma_outputs (attn_chunk_out_mma.cu) with V = V'.
 * Few long sequences (the states pass leaves the multiprocessors room): the three
 * kernels run per time segment on three streams, overlapped (launch_delta_overlapped).
 * The rounding points are fla's: S, W, U and V' in the input type.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_types.h"

#define DC LINA_CUDA_SPLIT_CHUNK /* tokens per chunk, 64 */
#define DT 128                   /* threads per block: 4 warps */
#define LDA 68                   /* fp32 rows of A: 16-byte aligned float4 reads */
#define LDX 72                   /* 16-bit rows of the split X: 144 bytes, conflict-free ldmatrix */
#define DS_STAGES 2              /* load-ring stages of the states pass */

static_assert(DC == 64, "the delta mma kernels assume 64-token chunks (4 warps x 16 rows)");

/* ---- 1. W and U per chunk ---- */

struct wy_layout {
    int KP, VP, ldk, ldv;
    size_t k, v, a, y, xs, ck, cv, bytes;
};
static __host__ __device__ inline size_t wy_take(size_t *off, size_t bytes) {
    size_t r = *off;
    *off += (bytes + 127) / 128 * 128;
    return r;
}
static __host__ __device__ inline wy_layout wy_layout_make(int K, int V, int ts) {
    wy_layout L;
    L.KP = (K + 15) / 16 * 16;
    L.VP = (V + 7) / 8 * 8;
    L.ldk = L.KP + 8;
    L.ldv = L.VP + 8;
    size_t o = 0;
    L.k = wy_take(&o, (size_t)DC * L.ldk * ts); /* K (C, KP) */
    L.v = wy_take(&o, (size_t)DC * L.ldv * ts); /* V (C, VP) */
    L.a = wy_take(&o, (size_t)DC * LDA * 4);    /* A (C, C) fp32, strictly lower; becomes X = (I + A)^{-1} */
    L.y = wy_take(&o, (size_t)6 * 16 * 8 * 4);  /* one row block of A X: six 16 x 8 fp32 tiles */
    L.xs = wy_take(&o, (size_t)2 * DC * LDX * ts); /* X diag(coef) split: high, low (C, C) 16-bit */
    L.ck = wy_take(&o, (size_t)DC * 4);         /* beta_t e^{b_t} (0 past the chunk) */
    L.cv = wy_take(&o, (size_t)DC * 4);         /* beta_t */
    L.bytes = o;
    return L;
}

template <typename T>
__global__ void __launch_bounds__(DT, 3) wy_kernel(const lina_cuda_attn_params p) {
    extern __shared__ __align__(128) unsigned char smem[];
    const wy_layout L = wy_layout_make(p.K, p.V, sizeof(T));
    T *k_s = (T *)(smem + L.k), *v_s = (T *)(smem + L.v);
    float *a_s = (float *)(smem + L.a), *ck = (float *)(smem + L.ck), *cv = (float *)(smem + L.cv);
    const int i = window_chunk(p, blockIdx.x / p.HV), hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7;
    int64_t start;
    int lc;
    chunk_range(p, i, &start, &lc);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V;
    const T *kg = (const T *)p.k + (start * p.H + h) * p.K, *vg = (const T *)p.v + (start * p.HV + hv) * p.V;
    if (p.K == 128 && p.V == 128 && lc == DC && p.vec_qk && p.vec_v) { /* the common full chunk */
        tile_to_smem_full<T, DT, DC, 128>(k_s, L.ldk, kg, sqk);
        tile_to_smem_full<T, DT, DC, 128>(v_s, L.ldv, vg, sv);
    } else {
        tile_to_smem<T, DT>(k_s, L.ldk, kg, sqk, DC, L.KP, lc, p.K, p.vec_qk);
        tile_to_smem<T, DT>(v_s, L.ldv, vg, sv, DC, L.VP, lc, p.V, p.vec_v);
    }
    cp_async_commit();

    /* per warp: cumulative gates b and beta of tokens 2 lane, 2 lane + 1 */
    const float gconst = p.gate == LINA_GATE_CONST ? p.g[hv] : 0.f;
    const float2 b = chunk_cumsum64(load_gates2(p.g, p.gate, start, lc, p.HV, hv), p.gate, gconst, lc);
    float2 beta = make_float2(0.f, 0.f);
    if (2 * lane < lc) beta.x = p.beta[(start + 2 * lane) * p.HV + hv];
    if (2 * lane + 1 < lc) beta.y = p.beta[(start + 2 * lane + 1) * p.HV + hv];
    if (warp == 0) {
        ck[2 * lane] = beta.x * __expf(b.x), ck[2 * lane + 1] = beta.y * __expf(b.y);
        cv[2 * lane] = beta.x, cv[2 * lane + 1] = beta.y;
    }
    /* A, then X in place (each row block of X is written after that of A was read); the upper
     * blocks are never written and are read as zeros */
    float *x_s = a_s, *y_s = (float *)(smem + L.y);
    for (int e = threadIdx.x; e < DC * LDA; e += DT) a_s[e] = 0.f;
    cp_async_wait<0>();
    __syncthreads();

    /* A_ts = beta_t e^{b_t - b_s} k_t.k_s for s < t, by 16 x 16 tiles (row tile mt, key tile
     * jt <= mt), the ten tiles spread 3 / 3 / 2 / 2 over the warps (digits as in the one-pass kernel) */
    {
        constexpr uint64_t tiles = 0x0FA098E54DC0ull;
        const int count = warp < 2 ? 3 : 2;
#pragma unroll
        for (int it = 0; it < 3; it++) {
            if (it >= count) break;
            const int tile = (int)(tiles >> (4 * (3 * warp + it))) & 15, mt = tile >> 2, jt = tile & 3;
            float sc[2][4];
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) sc[nt][e] = 0.f;
            for (int ks = 0; ks < L.KP / 16; ks++) {
                uint32_t a[4], bb[4];
                ldsm_x4(a, k_s + (16 * mt + (lane & 15)) * L.ldk + ((lane >> 4) << 3) + ks * 16);
                ldsm_x4(bb, k_s + (16 * jt + mr + ((mi >> 1) << 3)) * L.ldk + ks * 16 + ((mi & 1) << 3));
                mma16816<T>(sc[0], a, bb[0], bb[1]);
                mma16816<T>(sc[1], a, bb[2], bb[3]);
            }
            const int t_lo = 16 * mt + g, t_hi = t_lo + 8;
            const float b_lo = b_at(b, t_lo), b_hi = b_at(b, t_hi);
            const float beta_lo = b_at(beta, t_lo), beta_hi = b_at(beta, t_hi);
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                const int s = 16 * jt + 8 * nt + c2;
                const float bs0 = b_at(b, s), bs1 = b_at(b, s + 1);
                a_s[t_lo * LDA + s] = s < t_lo ? beta_lo * __expf(b_lo - bs0) * sc[nt][0] : 0.f;
                a_s[t_lo * LDA + s + 1] = s + 1 < t_lo ? beta_lo * __expf(b_lo - bs1) * sc[nt][1] : 0.f;
                a_s[t_hi * LDA + s] = s < t_hi ? beta_hi * __expf(b_hi - bs0) * sc[nt][2] : 0.f;
                a_s[t_hi * LDA + s + 1] = s + 1 < t_hi ? beta_hi * __expf(b_hi - bs1) * sc[nt][3] : 0.f;
            }
        }
    }
    __syncthreads();

    /* X = (I + A)^{-1} (unit lower triangular) by 16 x 16 blocks, fp32: the diagonal blocks by
     * substitution (one column per thread), then row blocks i = 1, 2, 3:
     *     Y = A[i, :16i] X[:16i, :16i],   X[i, :16i] = -X[i, i] Y */
    {
        const int r0 = 16 * ((threadIdx.x >> 4) & 3), c = threadIdx.x & 15;
        float x[16];
        if (threadIdx.x < 64)
#pragma unroll
            for (int t = 0; t < 16; t++) {
                float r = t == c ? 1.f : 0.f;
#pragma unroll
                for (int m = 0; m < t; m++) r -= a_s[(r0 + t) * LDA + r0 + m] * x[m];
                x[t] = r;
            }
        __syncthreads(); /* every diagonal block of A read */
        if (threadIdx.x < 64)
#pragma unroll
            for (int t = 0; t < 16; t++) x_s[(r0 + t) * LDA + r0 + c] = x[t];
    }
    __syncthreads();
    {
        /* 8-column tiles j < 2i of the row block, dealt to the warps (at most two each), on
         * tf32 tensor cores in fp32 grade (mma1688_3xtf32; the FMA form was ~1200 of the kernel's
         * ~3900 instructions per warp). X[k, 8j ..] = 0 for k < 16 (j / 2). Y passes through
         * shared memory (tile j: 16 x 8 at y_s + 128 j) to become the B operand of X_ii Y. */
        const int t4 = lane & 3;
#pragma unroll
        for (int i = 1; i < 4; i++) {
            const int r0 = 16 * i;
            float y[2][4] = {};
#pragma unroll
            for (int jj = 0; jj < 2; jj++) {
                const int j = warp + 4 * jj;
                if (j >= 2 * i) continue;
                for (int ks = j / 2 * 2; ks < 2 * i; ks++) {
                    const float *ar = a_s + (r0 + g) * LDA + 8 * ks + t4, *br = x_s + (8 * ks + t4) * LDA + 8 * j + g;
                    const float a[4] = {ar[0], ar[8 * LDA], ar[4], ar[8 * LDA + 4]};
                    mma1688_3xtf32(y[jj], a, br[0], br[4 * LDA]);
                }
                float *yt = y_s + 128 * j;
                *(float2 *)(yt + g * 8 + 2 * t4) = make_float2(y[jj][0], y[jj][1]);
                *(float2 *)(yt + (g + 8) * 8 + 2 * t4) = make_float2(y[jj][2], y[jj][3]);
            }
            __syncthreads(); /* A[i, :16i] read by every warp before X[i, :16i] is written over it */
#pragma unroll
            for (int jj = 0; jj < 2; jj++) {
                const int j = warp + 4 * jj;
                if (j >= 2 * i) continue;
                float d[4] = {};
#pragma unroll
                for (int kk = 0; kk < 2; kk++) {
                    const float *ar = x_s + (r0 + g) * LDA + r0 + 8 * kk + t4, *yt = y_s + 128 * j + (8 * kk + t4) * 8 + g;
                    const float a[4] = {ar[0], ar[8 * LDA], ar[4], ar[8 * LDA + 4]};
                    mma1688_3xtf32(d, a, yt[0], yt[32]);
                }
                float *xr = x_s + (r0 + g) * LDA + 8 * j + 2 * t4;
                *(float2 *)xr = make_float2(-d[0], -d[1]);
                *(float2 *)(xr + 8 * LDA) = make_float2(-d[2], -d[3]);
            }
            __syncthreads();
        }
    }

    /* W = X diag(beta e^b) K, U = X diag(beta) V on tensor cores, by 16-column groups dealt
     * round-robin to the warps (every warp all 64 rows: balanced). The A operand X diag(coef) is
     * split once into a 16-bit high part and the 16-bit rounding of the rest (two mma each), so
     * W and U carry fp32-grade weights. */
    const int64_t sw = (int64_t)p.HV * p.K;
    T *wg = (T *)p.wy_w + (start * p.HV + hv) * p.K, *ug = (T *)p.wy_u + (start * p.HV + hv) * p.V;
    T *xh_s = (T *)(smem + L.xs), *xl_s = xh_s + DC * LDX;
    auto product = [&](const T *b_s, int ldb, int ncols, const float *coef, T *dst, int64_t stride) {
        /* thread: columns s, s + 1 of rows warp + 4 it (coef hoisted: the stores below may alias it
         * as far as the compiler knows) */
        const int s = 2 * lane;
        const float2 cs = *(const float2 *)(coef + s);
#pragma unroll
        for (int it = 0; it < DC / 4; it++) {
            const int t = warp + 4 * it;
            const float2 xv = *(const float2 *)(x_s + t * LDA + s);
            const float x0 = xv.x * cs.x, x1 = xv.y * cs.y;
            const uint32_t hi = pack2<T>(x0, x1);
            const float2 hf = unpack2<T>(hi);
            *(uint32_t *)(xh_s + t * LDX + s) = hi;
            *(uint32_t *)(xl_s + t * LDX + s) = pack2<T>(x0 - hf.x, x1 - hf.y);
        }
        __syncthreads();
        const int groups = (ncols + 15) / 16;
        const bool pairs = ncols % 2 == 0, full = lc == DC && ncols % 16 == 0;
        for (int grp = warp; grp < groups; grp += 4) {
            float acc[4][2][4];
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int nt = 0; nt < 2; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t bb[4]; /* B[s][c] = B_s[s][c], tokens 16 j .., transposed load */
                ldsm_x4_t(bb, b_s + (16 * j + mr + ((mi & 1) << 3)) * ldb + 16 * grp + ((mi >> 1) << 3));
#pragma unroll
                for (int mt = 0; mt < 4; mt++) {
                    if (mt < j) continue; /* X is lower triangular */
                    uint32_t ahi[4], alo[4];
                    const int off = (16 * mt + (lane & 15)) * LDX + 16 * j + ((lane >> 4) << 3);
                    ldsm_x4(ahi, xh_s + off);
                    ldsm_x4(alo, xl_s + off);
                    mma16816<T>(acc[mt][0], ahi, bb[0], bb[1]);
                    mma16816<T>(acc[mt][0], alo, bb[0], bb[1]);
                    mma16816<T>(acc[mt][1], ahi, bb[2], bb[3]);
                    mma16816<T>(acc[mt][1], alo, bb[2], bb[3]);
                }
            }
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int nt = 0; nt < 2; nt++)
#pragma unroll
                    for (int hh = 0; hh < 2; hh++) {
                        const int t = 16 * mt + g + 8 * hh, col = 16 * grp + 8 * nt + c2;
                        T *d = dst + t * stride + col;
                        if (full) { /* no bounds: the per-element checks cost more than the stores */
                            *(uint32_t *)d = pack2<T>(acc[mt][nt][2 * hh], acc[mt][nt][2 * hh + 1]);
                            continue;
                        }
                        if (t >= lc || col >= ncols) continue;
                        if (pairs) {
                            *(uint32_t *)d = pack2<T>(acc[mt][nt][2 * hh], acc[mt][nt][2 * hh + 1]);
                        } else {
                            d[0] = from_f<T>(acc[mt][nt][2 * hh]);
                            if (col + 1 < ncols) d[1] = from_f<T>(acc[mt][nt][2 * hh + 1]);
                        }
                    }
        }
        __syncthreads(); /* the split X is rewritten by the next product */
    };
    product(k_s, L.ldk, p.K, ck, wg, sw);
    product(v_s, L.ldv, p.V, cv, ug, sv);
}

/* ---- 2. the sequential state pass ---- */

template <typename T, int KM, int BV, bool UNROLL, int WH>
__global__ void __launch_bounds__(DT * WH, 2 / WH) delta_states_kernel(const lina_cuda_attn_params p) {
    constexpr int NS = DS_STAGES;
    /* WH column halves per block: warps 4 j .. 4 j + 3 own value columns j BV .. (j + 1) BV - 1 of
     * the block's BB; the K and W tiles of a chunk are loaded once for all of them */
    constexpr int NTH = DT * WH, BB = BV * WH;
    constexpr int KR = 64 * KM, LDK = KR + 8, LDU = BB + 8, NT = BV / 8;
    /* elements of one stage: K, W, U of one chunk and its raw gates (C floats) */
    constexpr int GATES = DC * 4 / (int)sizeof(T), STAGE = DC * LDK * 2 + DC * LDU + GATES;
    extern __shared__ __align__(128) unsigned char smem[];
    T *stages = (T *)smem;          /* [NS][K (C, LDK) | W (C, LDK) | U (C, LDU) | g (C) fp32] */
    T *s_s = stages + NS * STAGE;   /* S (KR, LDU) in T */
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int v0 = blockIdx.y * BB, vcols = min(BB, p.V - v0);
    const int warp = (threadIdx.x >> 5) & 3, cw = (threadIdx.x >> 7) * BV, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7;
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const int64_t c0 = p.seq_chunk0 ? p.seq_chunk0[n] : (int64_t)n * ((p.T + DC - 1) / DC);
    const int64_t sqk = (int64_t)p.H * p.K, sw = (int64_t)p.HV * p.K, sv = (int64_t)p.HV * p.V;
    const T *kg = (const T *)p.k + (bos * p.H + h) * p.K;
    const T *wg = (const T *)p.wy_w + (bos * p.HV + hv) * p.K;
    T *ug = (T *)p.wy_u + (bos * p.HV + hv) * p.V + v0;
    const size_t KV = (size_t)p.K * p.V, soff = ((size_t)n * p.HV + hv) * KV;
    const int KP = (p.K + 15) / 16 * 16;
    const bool vec_w = p.K % 8 == 0, vec_u = p.V % 8 == 0, pairs = p.V % 2 == 0;
    const int lrow0 = 16 * KM * warp; /* this warp's first state row */

    float acc[KM][NT][4]; /* S[lrow0 + 16 m + g (+8)][v0 + 8 nt + c2 (+1)] */
#pragma unroll
    for (int m = 0; m < KM; m++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = lrow0 + 16 * m + g + (e >> 1) * 8, col = v0 + cw + nt * 8 + c2 + (e & 1);
                acc[m][nt][e] = (p.h0 && r < p.K && col < p.V) ? p.h0[soff + (size_t)r * p.V + col] : 0.f;
            }

    const int nc = (len + DC - 1) / DC; /* this launch walks chunks cbeg .. cend - 1 (see window_chunk) */
    const int cbeg = p.win_nc ? min(p.win_c0, nc) : 0, cend = p.win_nc ? min(p.win_c0 + p.win_nc, nc) : nc;
    const bool full_tiles = p.vec_qk && vec_w && vec_u && p.K == KR && vcols == BB;
    auto issue = [&](int c) {
        const int t0 = c * DC, lc = min(DC, len - t0);
        T *st = stages + (c % NS) * STAGE;
        if (full_tiles && lc == DC) {
            tile_to_smem_full<T, NTH, DC, KR>(st, LDK, kg + t0 * sqk, sqk);
            tile_to_smem_full<T, NTH, DC, KR>(st + DC * LDK, LDK, wg + t0 * sw, sw);
            tile_to_smem_full<T, NTH, DC, BB>(st + 2 * DC * LDK, LDU, ug + t0 * sv, sv);
        } else {
            tile_to_smem<T, NTH>(st, LDK, kg + t0 * sqk, sqk, DC, KR, lc, p.K, p.vec_qk);
            tile_to_smem<T, NTH>(st + DC * LDK, LDK, wg + t0 * sw, sw, DC, KR, lc, p.K, vec_w);
            tile_to_smem<T, NTH>(st + 2 * DC * LDK, LDU, ug + t0 * sv, sv, DC, BB, lc, vcols, vec_u);
        }
        if (p.gate == LINA_GATE_SCALAR && threadIdx.x < DC) {
            const int t = threadIdx.x;
            const float *src = p.g + (bos + t0 + min(t, lc - 1)) * p.HV + hv;
            cp_async4((float *)(st + 2 * DC * LDK + DC * LDU) + t, src, t < lc ? 4 : 0);
        }
    };
#pragma unroll
    for (int j = 0; j < NS - 1; j++) {
        if (cbeg + j < cend) issue(cbeg + j);
        cp_async_commit();
    }
    const float gconst = (p.gate == LINA_GATE_CONST && cend > cbeg) ? p.g[hv] : 0.f;

    for (int c = cbeg; c < cend; c++) {
        const int t0 = c * DC, lc = min(DC, len - t0);
        cp_async_wait<NS - 2>();
        __syncthreads(); /* chunk c landed; chunk c-1's buffers and s_s are free */
        if (c + NS - 1 < cend) issue(c + NS - 1);
        cp_async_commit();
        const T *k_cs = stages + (c % NS) * STAGE, *w_cs = k_cs + DC * LDK;
        T *u_cs = (T *)k_cs + 2 * DC * LDK;
        float2 graw = make_float2(0.f, 0.f); /* raw gates of tokens 2 lane, 2 lane + 1 (0 past lc) */
        if (p.gate == LINA_GATE_SCALAR) graw = *(const float2 *)((const float *)(u_cs + DC * LDU) + 2 * lane);

        /* S (rounded) -> s_s, and to ws[c]: from s_s in 16-byte units after the barrier for full
         * tiles (per-element stores with bounds checks were a third of the loop's issue slots) */
        T *wsc = (T *)p.ws + ((size_t)(c0 + c) * p.HV + hv) * KV;
#pragma unroll
        for (int m = 0; m < KM; m++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++)
                    *(uint32_t *)(s_s + (lrow0 + 16 * m + g + 8 * hh) * LDU + cw + nt * 8 + c2) =
                        pack2<T>(acc[m][nt][2 * hh], acc[m][nt][2 * hh + 1]);
        if (!full_tiles)
#pragma unroll
            for (int m = 0; m < KM; m++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int hh = 0; hh < 2; hh++) {
                        const int r = lrow0 + 16 * m + g + 8 * hh, col = cw + nt * 8 + c2;
                        if (r >= p.K || v0 + col >= p.V) continue;
                        T *dst = wsc + (size_t)r * p.V + v0 + col;
                        if (pairs) {
                            *(uint32_t *)dst = pack2<T>(acc[m][nt][2 * hh], acc[m][nt][2 * hh + 1]);
                        } else {
                            dst[0] = from_f<T>(acc[m][nt][2 * hh]);
                            if (v0 + col + 1 < p.V) dst[1] = from_f<T>(acc[m][nt][2 * hh + 1]);
                        }
                    }
        const float2 b = chunk_cumsum64(graw, p.gate, gconst, lc);
        const float blast = b_at(b, DC - 1), decay = __expf(blast);
        __syncthreads(); /* s_s complete */
        if (full_tiles)
#pragma unroll
            for (int i = 0; i < KR * BB / 8 / NTH; i++) {
                const int u = threadIdx.x + i * NTH, r = u / (BB / 8), cc = u % (BB / 8) * 8;
                *(uint4 *)(wsc + (size_t)r * p.V + v0 + cc) = *(const uint4 *)(s_s + r * LDU + cc);
            }

        /* V' = U - W S for token rows 16 warp + g (+8); u_cs gets V' o e^{b_{C-1} - b_t} (the
         * state update's operand, rounded once, as fla), global memory V' itself */
        const float wrow[2] = {__expf(blast - b_at(b, 16 * warp + g)), __expf(blast - b_at(b, 16 * warp + g + 8))};
        float vn[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) vn[nt][e] = 0.f;
        const T *w_row = w_cs + (16 * warp + (lane & 15)) * LDK + ((lane >> 4) << 3);
        auto ws_step = [&](int ks) {
            uint32_t a[4];
            ldsm_x4(a, w_row + ks * 16);
#pragma unroll
            for (int np = 0; np < BV / 16; np++) {
                uint32_t bb[4];
                ldsm_x4_t(bb, s_s + (ks * 16 + mr + ((mi & 1) << 3)) * LDU + cw + np * 16 + ((mi >> 1) << 3));
                mma16816<T>(vn[2 * np], a, bb[0], bb[1]);
                mma16816<T>(vn[2 * np + 1], a, bb[2], bb[3]);
            }
        };
        if constexpr (UNROLL) { /* all KR rows (W's columns and S's rows past K are zeros), unrolled */
#pragma unroll
            for (int ks = 0; ks < KR / 16; ks++) ws_step(ks);
        } else {
            for (int ks = 0; ks < KP / 16; ks++) ws_step(ks);
        }
        uint32_t vpk[NT][2]; /* V' rounded, for global memory */
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int tl = 16 * warp + g + 8 * hh, col = cw + nt * 8 + c2;
                uint32_t *pu = (uint32_t *)(u_cs + tl * LDU + col);
                const float2 u = unpack2<T>(*pu);
                const float n0 = u.x - vn[nt][2 * hh], n1 = u.y - vn[nt][2 * hh + 1];
                vpk[nt][hh] = pack2<T>(n0, n1);
                *pu = pack2<T>(n0 * wrow[hh], n1 * wrow[hh]);
            }
        if (full_tiles && lc == DC) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++)
                    *(uint32_t *)(ug + (t0 + 16 * warp + g + 8 * hh) * sv + cw + nt * 8 + c2) = vpk[nt][hh];
        } else {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    const int tl = 16 * warp + g + 8 * hh, col = cw + nt * 8 + c2;
                    if (tl >= lc || v0 + col >= p.V) continue;
                    T *dst = ug + (t0 + tl) * sv + col;
                    if (pairs) {
                        *(uint32_t *)dst = vpk[nt][hh];
                    } else {
                        const float2 f = unpack2<T>(vpk[nt][hh]);
                        dst[0] = from_f<T>(f.x);
                        if (v0 + col + 1 < p.V) dst[1] = from_f<T>(f.y);
                    }
                }
        }
        __syncthreads(); /* V' complete in u_cs */

        /* S = e^{b_{C-1}} S + K^T (V' o e^{b_{C-1} - b_t}) */
#pragma unroll
        for (int m = 0; m < KM; m++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[m][nt][e] *= decay;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
#pragma unroll
            for (int m = 0; m < KM; m++) {
                uint32_t a[4];
                ldsm_x4_t(a, k_cs + (kk * 16 + mr + ((mi >> 1) << 3)) * LDK + lrow0 + 16 * m + ((mi & 1) << 3));
#pragma unroll
                for (int np = 0; np < BV / 16; np++) {
                    uint32_t bb[4];
                    ldsm_x4_t(bb, u_cs + (kk * 16 + mr + ((mi & 1) << 3)) * LDU + cw + np * 16 + ((mi >> 1) << 3));
                    mma16816<T>(acc[m][2 * np], a, bb[0], bb[1]);
                    mma16816<T>(acc[m][2 * np + 1], a, bb[2], bb[3]);
                }
            }
        }
    }
    cp_async_wait<0>();
    if (p.ht)
#pragma unroll
        for (int m = 0; m < KM; m++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = lrow0 + 16 * m + g + (e >> 1) * 8, col = v0 + cw + nt * 8 + c2 + (e & 1);
                    if (r < p.K && col < p.V) p.ht[soff + (size_t)r * p.V + col] = acc[m][nt][e];
                }
}

/* ---- host side ---- */

template <typename T, int KM, int BV, bool UNROLL, int WH>
static cudaError_t launch_delta_states(const lina_cuda_attn_params *p, cudaStream_t st) {
    constexpr int KR = 64 * KM, BB = BV * WH, STAGE = DC * (KR + 8) * 2 + DC * (BB + 8) + DC * 4 / (int)sizeof(T);
    const size_t bytes = ((size_t)DS_STAGES * STAGE + (size_t)KR * (BB + 8)) * sizeof(T);
    cudaError_t e = cudaFuncSetAttribute(delta_states_kernel<T, KM, BV, UNROLL, WH>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)(p->n_seqs * p->HV), (unsigned)((p->V + BB - 1) / BB));
    delta_states_kernel<T, KM, BV, UNROLL, WH><<<grid, DT * WH, bytes, st>>>(*p);
    return cudaGetLastError();
}

/* Column halves per states block where BV = 32 and K <= 128: two 32-column tiles of a head in one
 * block of 8 warps, K and W loaded once for both (LINA_CUDA_DELTA_WH = 1: one tile, 4 warps).
 * The per-warp chain is the same; the block count halves (B2 T16384 H16: 64 blocks), so the states
 * pass moves half the K and W bytes and shares fewer multiprocessors with the WY and output
 * kernels: gated delta B2 T16384 1.052 -> 1.014 ms, delta 1.014 -> 0.993 (run 42; B8 T4096, where
 * BV = 64 is picked, 0.762 either way). */
static int delta_wh(void) {
    const char *env = getenv("LINA_CUDA_DELTA_WH");
    return env && atoi(env) == 1 ? 1 : 2;
}

/* W S unrolled over all KR rows, or a loop over K's 16-row steps: LINA_CUDA_DELTA_UNROLL (0, 1) if
 * set, else `unroll`. Unrolled is faster alone (gated delta B2 T16384 split, one stream: 1.081 vs
 * 1.123 ms) but slower beside the chunk-parallel kernels (4 segments: 1.074 vs 1.062; run 36). */
template <typename T, int KM, int BV>
static cudaError_t launch_delta_states(const lina_cuda_attn_params *p, bool unroll, cudaStream_t st) {
    const char *env = getenv("LINA_CUDA_DELTA_UNROLL");
    if (env && (atoi(env) == 0 || atoi(env) == 1)) unroll = atoi(env) == 1;
    if constexpr (BV == 32 && KM <= 2) {
        if (delta_wh() == 2)
            return unroll ? launch_delta_states<T, KM, BV, true, 2>(p, st) : launch_delta_states<T, KM, BV, false, 2>(p, st);
    }
    return unroll ? launch_delta_states<T, KM, BV, true, 1>(p, st) : launch_delta_states<T, KM, BV, false, 1>(p, st);
}

template <typename T, int KM>
static cudaError_t launch_delta_states_bv(const lina_cuda_attn_params *p, int bv, bool unroll, cudaStream_t st) {
    if constexpr (KM < 4) {
        if (bv == 64) return launch_delta_states<T, KM, 64>(p, unroll, st);
    }
    if (bv >= 32) return launch_delta_states<T, KM, 32>(p, unroll, st);
    return launch_delta_states<T, KM, 16>(p, unroll, st);
}

/* Value tile of the states pass: LINA_CUDA_DELTA_BV (16, 32, 64) if set, else the widest
 * giving at least 3/4 of the multiprocessors a block (B2 T16384 H16: 32 with 128 blocks, 1.32
 * ms against 1.52 with 16 and two blocks per SM, run 23); 64 only for K <= 128 (registers). */
static int delta_bv(int64_t n_seqs, int HV, int K, int V) {
    const int max_bv = K > 128 ? 32 : 64;
    const char *env = getenv("LINA_CUDA_DELTA_BV");
    if (env && (atoi(env) == 16 || atoi(env) == 32 || atoi(env) == 64)) return atoi(env) < max_bv ? atoi(env) : max_bv;
    const int sms = lina_cuda_sm_count();
    for (int bv = max_bv; bv > 16; bv /= 2)
        if (4 * n_seqs * HV * ((V + bv - 1) / bv) >= 3 * (int64_t)sms) return bv;
    return 16;
}

#define MAX_SEGS 8 /* events: 1 + 2 per segment of the 32 in lina_cuda_side_streams */

extern "C" int lina_cuda_delta_segments(int64_t n_seqs, int HV, int K, int V, int max_chunks) {
    const char *env = getenv("LINA_CUDA_DELTA_SEGS");
    int segs;
    if (env && atoi(env) >= 1) {
        segs = atoi(env) < MAX_SEGS ? atoi(env) : MAX_SEGS;
    } else {
        const int bv = delta_bv(n_seqs, HV, K, V);
        segs = n_seqs * HV * ((V + bv - 1) / bv) <= lina_cuda_sm_count() && max_chunks >= 64 ? 4 : 1;
    }
    return segs < max_chunks ? segs : (max_chunks > 0 ? max_chunks : 1);
}

template <typename T>
static cudaError_t launch_wy(const lina_cuda_attn_params *p, cudaStream_t st) {
    if (lina_cuda_launch_chunks(p) == 0) return cudaSuccess;
    const wy_layout L = wy_layout_make(p->K, p->V, sizeof(T));
    cudaError_t e = cudaFuncSetAttribute(wy_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.bytes);
    if (e != cudaSuccess) return e;
    wy_kernel<T><<<(unsigned)(lina_cuda_launch_chunks(p) * p->HV), DT, L.bytes, st>>>(*p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_states(const lina_cuda_attn_params *p, int bv, bool unroll, cudaStream_t st) {
    return p->K <= 64 ? launch_delta_states_bv<T, 1>(p, bv, unroll, st)
           : p->K <= 128 ? launch_delta_states_bv<T, 2>(p, bv, unroll, st)
                         : launch_delta_states_bv<T, 4>(p, bv, unroll, st);
}

template <typename T>
static cudaError_t launch_outputs(const lina_cuda_attn_params *p, lina_dtype dtype, cudaStream_t st) {
    lina_cuda_attn_params o = *p; /* outputs read V' (in wy_u) as their values */
    o.v = p->wy_u;
    return (cudaError_t)lina_cuda_mma_outputs(&o, dtype, st);
}

/* Segment boundaries: chunk seg_first[s] .. seg_first[s + 1] - 1 in segment s. Even by default;
 * LINA_CUDA_DELTA_SEGW = "w0:w1:..." (or commas; S relative weights, S = the segment count) for
 * experiments.
 * Uneven profiles measured (gated delta B2 T16384, 256 chunks): short first and last segments
 * (4 .. 32 chunks, S = 3 .. 8; run 38) all slower than even ones (1.049 ms even, 1.068 .. 1.33):
 * WY(s + 1) must be done before the states pass reaches segment s + 1, and a long middle
 * segment after a short first one makes the states pass wait for it; gentle ramps (weights
 * 0.5 .. 1.3, S = 4 .. 8; run 39) within noise of even (1.041 .. 1.062 vs 1.052). */
static void seg_bounds(int S, int nc, int *first) {
    double w[MAX_SEGS], total = 0;
    int n = 0;
    const char *env = getenv("LINA_CUDA_DELTA_SEGW");
    for (const char *c = env; c && *c && n < MAX_SEGS;) {
        char *end;
        const double v = strtod(c, &end);
        if (end == c || v <= 0) break;
        w[n++] = v;
        c = *end == ',' || *end == ':' ? end + 1 : end;
    }
    if (n != S)
        for (n = 0; n < S; n++) w[n] = 1;
    for (int s = 0; s < S; s++) total += w[s];
    double acc = 0;
    first[0] = 0;
    for (int s = 1; s <= S; s++) {
        acc += w[s - 1];
        /* at least one chunk per segment (S <= nc): win_nc = 0 would mean the whole sequence */
        const int f = (int)(nc * acc / total + 0.5);
        first[s] = s == S ? nc : max(first[s - 1] + 1, min(f, nc - (S - s)));
    }
}

/* The states pass occupies one block per multiprocessor or fewer when there are few long
 * sequences; the chunk-parallel kernels then run beside it. Time segments s = 0 .. S-1
 * (seg_bounds), on three streams:
 *     lo:  WY(0) WY(1) ... WY(S-1)
 *     hi:  states(s) after WY(s), state carried through p->seg_state  (highest priority)
 *     st:  outputs(s) after states(s)
 * st's outputs of the last segment come after everything else, so st is joined. */
template <typename T>
static cudaError_t launch_delta_overlapped(const lina_cuda_attn_params *p, lina_dtype dtype, cudaStream_t st,
                                          const lina_cuda_side_streams *ss) {
    const int S = p->n_segs, nc = (p->T + DC - 1) / DC, bv = delta_bv(p->n_seqs, p->HV, p->K, p->V);
    const size_t slot = (size_t)p->n_seqs * p->HV * p->K * p->V; /* floats of one carried state */
    cudaStream_t hi = (cudaStream_t)ss->hi, lo = (cudaStream_t)ss->lo;
    cudaEvent_t fork = (cudaEvent_t)ss->events[0];
    auto wy_done = [&](int s) { return (cudaEvent_t)ss->events[1 + s]; };
    auto states_done = [&](int s) { return (cudaEvent_t)ss->events[1 + MAX_SEGS + s]; };
    int first[MAX_SEGS + 1];
    seg_bounds(S, nc, first);
    auto window = [&](int s) {
        lina_cuda_attn_params q = *p;
        q.win_c0 = first[s];
        q.win_nc = first[s + 1] - first[s];
        return q;
    };
    cudaError_t e;
    if ((e = cudaEventRecord(fork, st)) != cudaSuccess || (e = cudaStreamWaitEvent(hi, fork, 0)) != cudaSuccess ||
        (e = cudaStreamWaitEvent(lo, fork, 0)) != cudaSuccess)
        return e;
    for (int s = 0; s < S; s++) {
        const lina_cuda_attn_params q = window(s);
        if ((e = launch_wy<T>(&q, lo)) != cudaSuccess || (e = cudaEventRecord(wy_done(s), lo)) != cudaSuccess) return e;
    }
    for (int s = 0; s < S; s++) {
        lina_cuda_attn_params q = window(s);
        q.h0 = s == 0 ? p->h0 : p->seg_state + (s - 1) * slot;
        q.ht = s == S - 1 ? p->ht : p->seg_state + s * slot;
        if ((e = cudaStreamWaitEvent(hi, wy_done(s), 0)) != cudaSuccess || (e = launch_states<T>(&q, bv, false, hi)) != cudaSuccess ||
            (e = cudaEventRecord(states_done(s), hi)) != cudaSuccess)
            return e;
    }
    for (int s = 0; s < S; s++) {
        const lina_cuda_attn_params q = window(s);
        if ((e = cudaStreamWaitEvent(st, states_done(s), 0)) != cudaSuccess || (e = launch_outputs<T>(&q, dtype, st)) != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

template <typename T>
static cudaError_t launch_delta(const lina_cuda_attn_params *p, lina_dtype dtype, cudaStream_t st) {
    if (p->n_segs > 1 && !p->cu && p->seg_state && p->n_segs <= MAX_SEGS) {
        const lina_cuda_side_streams *ss = lina_cuda_side_streams_acquire();
        if (ss) {
            const cudaError_t e = launch_delta_overlapped<T>(p, dtype, st, ss);
            lina_cuda_side_streams_release();
            return e;
        }
    }
    cudaError_t e = launch_wy<T>(p, st);
    if (e != cudaSuccess) return e;
    if ((e = launch_states<T>(p, delta_bv(p->n_seqs, p->HV, p->K, p->V), true, st)) != cudaSuccess) return e;
    return launch_outputs<T>(p, dtype, st);
}

extern "C" int lina_cuda_chunk_delta_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_delta<__nv_bfloat16>(p, dtype, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_delta<__half>(p, dtype, st);
    return (int)cudaErrorInvalidValue; /* fp32 stays on the fused kernel (attn_chunk.cu) */
}

extern "C" int lina_cuda_delta_wy(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_wy<__nv_bfloat16>(p, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_wy<__half>(p, st);
    return (int)cudaErrorInvalidValue;
}
