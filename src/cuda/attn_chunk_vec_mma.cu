/* Chunkwise forward of the additive update with VECTOR gates (GLA: one log
 * gate per token, value head and key dim) for 16-bit inputs on tensor cores.
 * Opt-in (LINA_CUDA_VECTOR_IMPL=chunk) until it has passed the GPU tests;
 * the default for VECTOR gates is still the token-by-token kernel.
 *
 * Chunks of C = 64 tokens; B[t][k] = the chunk-local inclusive cumulative log
 * gate (every factor below is e^{x} with x <= 0):
 * 1. states, one 128-thread block per (sequence, head, 64 keys, BV values),
 *    state tile in registers, K, V and the raw gates through a 3-stage cp.async ring:
 *        ws[c] = S;   S = diag(e^{B[C-1]}) S + (K o e^{B[C-1] - B[t]})^T V
 * 2. outputs, one block per (chunk, head, 64 values), warp w owns rows
 *    t = 16w..16w+15 (a sub-chunk, reference row r = 16w):
 *        O    = scale (Q o e^{B_t}) ws[c] + P V,  P_ts = scale sum_k q_tk k_sk e^{B_tk - B_sk} [s <= t]
 *    key tiles before the warp's own: (Q o e^{B_t - B_r}) (K o e^{B_r - B_s})^T by mma;
 *    the diagonal 16 x 16 tile too, with r = the sub-chunk's middle row, when its decay range
 *    is small enough for the 16-bit operands; otherwise the sum over k with exact factors, in fp32.
 */
#include <limits.h>
#include <stdlib.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_types.h"

#define GC LINA_CUDA_SPLIT_CHUNK /* tokens per chunk, 64 */
#define GT 128                   /* threads per block */
#define GSTAGES 3
#define GLDT 72 /* 16-bit tiles of 64 columns */
#define GLDG 68 /* fp32 gate tiles of 64 columns: 16-byte aligned rows */

static_assert(GC == 64, "the VECTOR-gate mma kernels assume 64-token chunks");

template <typename T, int BV>
__global__ void __launch_bounds__(GT, 2) vec_states_kernel(const lina_cuda_attn_params p) {
    constexpr int LDV = BV + 8, NT = BV / 8;
    constexpr int STAGE_BYTES = GC * GLDT * 2 + GC * LDV * 2 + GC * GLDG * 4;
    extern __shared__ __align__(128) unsigned char smem[];
    const int nvt = (p.V + BV - 1) / BV;
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int kt = blockIdx.y / nvt, vt = blockIdx.y % nvt;
    const int k0 = kt * 64, v0 = vt * BV, kcols = min(64, p.K - k0), vcols = min(BV, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7;
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const int64_t c0 = p.seq_chunk0 ? p.seq_chunk0[n] : (int64_t)n * ((p.T + GC - 1) / GC);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V, sg = (int64_t)p.HV * p.K;
    const T *kg = (const T *)p.k + (bos * p.H + h) * p.K + k0;
    const T *vg = (const T *)p.v + (bos * p.HV + hv) * p.V + v0;
    const float *gg = p.g + (bos * p.HV + hv) * p.K + k0;
    const bool vec_g = p.K % 4 == 0 && ((uintptr_t)p.g & 15) == 0;
    const size_t KV = (size_t)p.K * p.V, soff = ((size_t)n * p.HV + hv) * KV;
    const int kl = 16 * warp + g; /* this thread's state rows in the tile: kl, kl + 8 */
    const int row0 = k0 + kl;

    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = row0 + (e >> 1) * 8, col = v0 + nt * 8 + c2 + (e & 1);
            acc[nt][e] = (p.h0 && r < p.K && col < p.V) ? p.h0[soff + (size_t)r * p.V + col] : 0.f;
        }

    const int nc = (len + GC - 1) / GC;
    auto stage = [&](int c) { return smem + (size_t)(c % GSTAGES) * STAGE_BYTES; };
    const bool full_tiles = p.vec_qk && p.vec_v && vec_g && kcols == 64 && vcols == BV;
    auto issue = [&](int c) {
        const int t0 = c * GC, lc = min(GC, len - t0);
        unsigned char *st = stage(c);
        if (full_tiles && lc == GC) {
            tile_to_smem_full<T, GT, GC, 64>((T *)st, GLDT, kg + t0 * sqk, sqk);
            tile_to_smem_full<T, GT, GC, BV>((T *)(st + GC * GLDT * 2), LDV, vg + t0 * sv, sv);
            tile_to_smem_full<float, GT, GC, 64>((float *)(st + GC * GLDT * 2 + GC * LDV * 2), GLDG, gg + t0 * sg, sg);
            return;
        }
        tile_to_smem<T, GT>((T *)st, GLDT, kg + t0 * sqk, sqk, GC, 64, lc, kcols, p.vec_qk);
        tile_to_smem<T, GT>((T *)(st + GC * GLDT * 2), LDV, vg + t0 * sv, sv, GC, BV, lc, vcols, p.vec_v);
        tile_to_smem_f32<GT>((float *)(st + GC * GLDT * 2 + GC * LDV * 2), GLDG, gg + t0 * sg, sg, GC, 64, lc,
                             kcols, vec_g);
    };
#pragma unroll
    for (int s = 0; s < GSTAGES - 1; s++) {
        if (s < nc) issue(s);
        cp_async_commit();
    }
    const bool ws_pairs = p.V % 2 == 0;

    for (int c = 0; c < nc; c++) {
        cp_async_wait<GSTAGES - 2>();
        __syncthreads();
        if (c + GSTAGES - 1 < nc) issue(c + GSTAGES - 1);
        cp_async_commit();
        unsigned char *st = stage(c);
        const T *ks = (const T *)st, *vs = (const T *)(st + GC * GLDT * 2);
        float *b_s = (float *)(st + GC * GLDT * 2 + GC * LDV * 2);

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
        /* cumulative gates down each key column (padding rows hold 0) */
        if (threadIdx.x < 64) {
            float run = 0.f;
            for (int t = 0; t < GC; t++) b_s[t * GLDG + threadIdx.x] = run += b_s[t * GLDG + threadIdx.x];
        }
        __syncthreads();
        const float blo = b_s[(GC - 1) * GLDG + kl], bhi = b_s[(GC - 1) * GLDG + kl + 8];
        const float dlo = __expf(blo), dhi = __expf(bhi);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            acc[nt][0] *= dlo, acc[nt][1] *= dlo, acc[nt][2] *= dhi, acc[nt][3] *= dhi;
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4]; /* A = K^T: a0 = (key kl, tokens t, t+1), a1 = key kl+8, a2/a3 tokens t+8, t+9 */
            ldsm_x4_t(a, ks + (kk * 16 + mr + ((mi >> 1) << 3)) * GLDT + 16 * warp + ((mi & 1) << 3));
            const int t = kk * 16 + c2;
            const float *b0 = b_s + t * GLDG, *b1 = b0 + GLDG, *b8 = b0 + 8 * GLDG, *b9 = b0 + 9 * GLDG;
            a[0] = scale2<T>(a[0], __expf(blo - b0[kl]), __expf(blo - b1[kl]));
            a[1] = scale2<T>(a[1], __expf(bhi - b0[kl + 8]), __expf(bhi - b1[kl + 8]));
            a[2] = scale2<T>(a[2], __expf(blo - b8[kl]), __expf(blo - b9[kl]));
            a[3] = scale2<T>(a[3], __expf(bhi - b8[kl + 8]), __expf(bhi - b9[kl + 8]));
#pragma unroll
            for (int np = 0; np < BV / 16; np++) {
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

/* Output kernel shared memory: Q (64, ldq) | K (64, ldk) | S (KP, GLDT) | V (64, GLDT) in T, B (64, ldb) fp32. */
struct vec_out_layout {
    int KP, ldq, ldk, ldb;
    size_t b_off, bytes;
};
static __host__ __device__ inline vec_out_layout vec_out_layout_make(int K, int ts) {
    vec_out_layout L;
    L.KP = (K + 15) / 16 * 16;
    L.ldq = (L.KP > 64 ? L.KP : 64) + 8;
    L.ldk = L.KP + 8;
    L.ldb = L.KP + 4;
    L.b_off = ((size_t)GC * L.ldq + (size_t)GC * L.ldk + (size_t)L.KP * GLDT + (size_t)GC * GLDT) * ts;
    L.b_off = (L.b_off + 127) / 128 * 128;
    L.bytes = L.b_off + (size_t)GC * L.ldb * 4;
    return L;
}

template <typename T>
__global__ void __launch_bounds__(GT, 2) vec_output_kernel(const lina_cuda_attn_params p) {
    extern __shared__ __align__(128) unsigned char smem[];
    const vec_out_layout L = vec_out_layout_make(p.K, sizeof(T));
    const int KP = L.KP, ldq = L.ldq, ldk = L.ldk, ldb = L.ldb;
    T *q_s = (T *)smem, *k_s = q_s + GC * ldq, *s_s = k_s + GC * ldk, *v_s = s_s + KP * GLDT;
    float *b_s = (float *)(smem + L.b_off);
    const int nvt = (p.V + 63) / 64;
    const int vt = blockIdx.x % nvt, hv = (blockIdx.x / nvt) % p.HV, i = blockIdx.x / nvt / p.HV;
    const int h = hv / (p.HV / p.H), v0 = vt * 64, vcols = min(64, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7;
    int64_t start;
    int lc;
    chunk_range(p, i, &start, &lc);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V, sg = (int64_t)p.HV * p.K;
    const T *qg = (const T *)p.q + (start * p.H + h) * p.K, *kg = (const T *)p.k + (start * p.H + h) * p.K;
    const T *vg = (const T *)p.v + (start * p.HV + hv) * p.V + v0;
    const T *sgp = (const T *)p.ws + ((size_t)i * p.HV + hv) * p.K * p.V + v0;
    const bool vec_g = p.K % 4 == 0 && ((uintptr_t)p.g & 15) == 0;
    tile_to_smem<T, GT>(q_s, ldq, qg, sqk, GC, KP, lc, p.K, p.vec_qk);
    tile_to_smem<T, GT>(k_s, ldk, kg, sqk, GC, KP, lc, p.K, p.vec_qk);
    tile_to_smem_f32<GT>(b_s, ldb, p.g + (start * p.HV + hv) * p.K, sg, GC, KP, lc, p.K, vec_g);
    cp_async_commit(); /* group 0: Q, K, raw gates */
    tile_to_smem<T, GT>(s_s, GLDT, sgp, p.V, KP, 64, p.K, vcols, p.vec_v);
    tile_to_smem<T, GT>(v_s, GLDT, vg, sv, GC, 64, lc, vcols, p.vec_v);
    cp_async_commit(); /* group 1: S, V */
    cp_async_wait<1>();
    __syncthreads();
    for (int col = threadIdx.x; col < KP; col += GT) { /* cumulative gates down each key column */
        float run = 0.f;
        for (int t = 0; t < GC; t++) b_s[t * ldb + col] = run += b_s[t * ldb + col];
    }
    __syncthreads();

    const int t_lo = 16 * warp + g, t_hi = t_lo + 8, r = 16 * warp; /* rows; the sub-chunk's first row */
    /* Reference row of the factorization e^{B_t - B_s} = e^{B_t - B_ref} e^{B_ref - B_s}: when the
     * sub-chunk's decay range max_k (B_r[k] - B_{r+15}[k]) is small enough that no factor can
     * overflow the 16-bit operands (e^60 for bf16, e^8 for fp16), ref = the middle row r + 8 and
     * the diagonal tile goes through the tensor cores like the others (factors <= e^range);
     * otherwise ref = r (every factor <= 1) and the diagonal tile is summed with exact factors. */
    float range = 0.f;
    for (int k = lane; k < p.K; k += 32) range = fmaxf(range, b_s[r * ldb + k] - b_s[(r + 15) * ldb + k]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) range = fmaxf(range, __shfl_xor_sync(0xffffffffu, range, off));
    const bool mid = range < (std::is_same<T, __half>::value ? 8.f : 60.f);
    const int ref = mid ? r + 8 : r;
    const float *bt_lo = b_s + t_lo * ldb, *bt_hi = b_s + t_hi * ldb, *br = b_s + ref * ldb;
    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) sc[nt][e] = 0.f;
    const T *q_row = q_s + (16 * warp + (lane & 15)) * ldq + ((lane >> 4) << 3);
    /* key tiles np < warp (and np == warp when mid): (Q o e^{B_t - B_ref}) (K o e^{B_ref - B_s})^T */
    const int last = mid ? warp : warp - 1;
    if (last >= 0)
        for (int ks = 0; ks < KP / 16; ks++) {
            const int kc = ks * 16 + c2; /* this thread's key dims: kc, kc+1, kc+8, kc+9 */
            uint32_t a[4];
            ldsm_x4(a, q_row + ks * 16);
            a[0] = scale2<T>(a[0], __expf(bt_lo[kc] - br[kc]), __expf(bt_lo[kc + 1] - br[kc + 1]));
            a[1] = scale2<T>(a[1], __expf(bt_hi[kc] - br[kc]), __expf(bt_hi[kc + 1] - br[kc + 1]));
            a[2] = scale2<T>(a[2], __expf(bt_lo[kc + 8] - br[kc + 8]), __expf(bt_lo[kc + 9] - br[kc + 9]));
            a[3] = scale2<T>(a[3], __expf(bt_hi[kc + 8] - br[kc + 8]), __expf(bt_hi[kc + 9] - br[kc + 9]));
#pragma unroll
            for (int np = 0; np < 4; np++)
                if (np <= last) { /* b0 = K[s][kc..kc+1], b1 = K[s][kc+8..kc+9] with s = 16 np (+8) + g */
                    uint32_t bb[4];
                    ldsm_x4(bb, k_s + (np * 16 + mr + ((mi >> 1) << 3)) * ldk + ks * 16 + ((mi & 1) << 3));
                    const float *bs0 = b_s + (np * 16 + g) * ldb, *bs1 = bs0 + 8 * ldb;
                    bb[0] = scale2<T>(bb[0], __expf(br[kc] - bs0[kc]), __expf(br[kc + 1] - bs0[kc + 1]));
                    bb[1] = scale2<T>(bb[1], __expf(br[kc + 8] - bs0[kc + 8]), __expf(br[kc + 9] - bs0[kc + 9]));
                    bb[2] = scale2<T>(bb[2], __expf(br[kc] - bs1[kc]), __expf(br[kc + 1] - bs1[kc + 1]));
                    bb[3] = scale2<T>(bb[3], __expf(br[kc + 8] - bs1[kc + 8]), __expf(br[kc + 9] - bs1[kc + 9]));
                    mma16816<T>(sc[2 * np], a, bb[0], bb[1]);
                    mma16816<T>(sc[2 * np + 1], a, bb[2], bb[3]);
                }
        }
    /* otherwise the diagonal tile (s, t in the warp's own 16 rows): exact factors, s <= t */
    if (!mid)
#pragma unroll
        for (int half = 0; half < 2; half++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int nt = 2 * warp + half; /* run-time n-tile index: select below keeps sc in registers */
                const int t = (e >> 1) ? t_hi : t_lo, s = 16 * warp + 8 * half + c2 + (e & 1);
                float sum = 0.f;
                if (s <= t) {
                    const T *qt = q_s + t * ldq, *kst = k_s + s * ldk;
                    const float *bt = b_s + t * ldb, *bsr = b_s + s * ldb;
                    for (int k = 0; k < p.K; k++) sum += to_f(qt[k]) * to_f(kst[k]) * __expf(bt[k] - bsr[k]);
                }
#pragma unroll
                for (int j = 0; j < 8; j++)
                    if (j == nt) sc[j][e] = sum;
            }
    /* P = scale A [s <= t] packed as A fragments */
    uint32_t pf[4][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        const int s = nt * 8 + c2;
        const float x0 = s <= t_lo ? p.scale * sc[nt][0] : 0.f, x1 = s + 1 <= t_lo ? p.scale * sc[nt][1] : 0.f;
        const float x2 = s <= t_hi ? p.scale * sc[nt][2] : 0.f, x3 = s + 1 <= t_hi ? p.scale * sc[nt][3] : 0.f;
        pf[nt >> 1][(nt & 1) * 2] = pack2<T>(x0, x1);
        pf[nt >> 1][(nt & 1) * 2 + 1] = pack2<T>(x2, x3);
    }
    cp_async_wait<0>();
    __syncthreads();

    /* O = scale (Q o e^{B_t}) S + P V */
    float o[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] = 0.f;
    for (int ks = 0; ks < KP / 16; ks++) {
        const int kc = ks * 16 + c2;
        uint32_t a[4];
        ldsm_x4(a, q_row + ks * 16);
        a[0] = scale2<T>(a[0], __expf(bt_lo[kc]), __expf(bt_lo[kc + 1]));
        a[1] = scale2<T>(a[1], __expf(bt_hi[kc]), __expf(bt_hi[kc + 1]));
        a[2] = scale2<T>(a[2], __expf(bt_lo[kc + 8]), __expf(bt_lo[kc + 9]));
        a[3] = scale2<T>(a[3], __expf(bt_hi[kc + 8]), __expf(bt_hi[kc + 9]));
        mma_tile_16x64<T>(o, a, s_s + ks * 16 * GLDT, GLDT);
    }
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] *= p.scale;
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (j <= warp) mma_tile_16x64<T>(o, pf[j], v_s + j * 16 * GLDT, GLDT);

    /* the warp's 16 x 64 tile, staged in its own rows of Q (no other warp reads them) */
    T *og = (T *)p.o + ((start + 16 * warp) * p.HV + hv) * p.V + v0;
    const int rows = min(16, lc - 16 * warp);
    store_warp_tile<T>(o, q_s + 16 * warp * ldq, ldq, og, sv, rows, vcols, p.vec_v, lane);
}

/* ---- host side ---- */

template <typename T, int BV>
static cudaError_t launch_vec_states(const lina_cuda_attn_params *p, cudaStream_t st) {
    const size_t bytes = (size_t)GSTAGES * (GC * GLDT * 2 + GC * (BV + 8) * 2 + GC * GLDG * 4);
    cudaError_t e = cudaFuncSetAttribute(vec_states_kernel<T, BV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes);
    if (e != cudaSuccess) return e;
    const int nkt = (p->K + 63) / 64, nvt = (p->V + BV - 1) / BV;
    vec_states_kernel<T, BV><<<dim3((unsigned)(p->n_seqs * p->HV), (unsigned)(nkt * nvt)), GT, bytes, st>>>(*p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_vec(const lina_cuda_attn_params *p, cudaStream_t st) {
    const int nvt = (p->V + 63) / 64;
    if ((int64_t)p->n_chunks * p->HV * nvt > INT_MAX) return cudaErrorInvalidConfiguration;
    /* value tile: LINA_CUDA_VEC_BV (16, 32, 64) if set; else 64 with half a block per SM or more
     * (run 14, H16 K=V=128: 64 beat 32 and 16 at B2 T16384 (1.57 / 1.61 / 2.00 ms) and B8 T4096) */
    const int64_t heads = (int64_t)p->n_seqs * p->HV * ((p->K + 63) / 64);
    const char *env = getenv("LINA_CUDA_VEC_BV");
    int bv = heads * ((p->V + 63) / 64) >= 64 ? 64 : 16;
    if (env && (atoi(env) == 16 || atoi(env) == 32 || atoi(env) == 64)) bv = atoi(env);
    cudaError_t e = bv == 64 ? launch_vec_states<T, 64>(p, st) : bv == 32 ? launch_vec_states<T, 32>(p, st)
                                                                          : launch_vec_states<T, 16>(p, st);
    if (e != cudaSuccess || p->n_chunks == 0) return e;
    const vec_out_layout L = vec_out_layout_make(p->K, sizeof(T));
    e = cudaFuncSetAttribute(vec_output_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.bytes);
    if (e != cudaSuccess) return e;
    vec_output_kernel<T><<<(unsigned)((int64_t)p->n_chunks * p->HV * nvt), GT, L.bytes, st>>>(*p);
    return cudaGetLastError();
}

extern "C" int lina_cuda_chunk_vec_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_vec<__nv_bfloat16>(p, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_vec<__half>(p, st);
    return (int)cudaErrorInvalidValue; /* fp32 VECTOR gates run token by token */
}
