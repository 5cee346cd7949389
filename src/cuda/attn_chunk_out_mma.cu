/* Output kernels of the 16-bit split path (additive and delta updates), parallel over
 * chunks of C = 64 tokens, b the chunk-local inclusive cumulative log gate:
 *     O = scale e^{b_t} (Q ws[c]) + P V,   P = scale (Q K^T) o e^{b_t - b_s} [s <= t]
 * (the delta rule passes V = U - W S). Only differences b_t - b_s with s <= t are
 * exponentiated; P is rounded to T before its product with V, as fla does.
 *
 * wide (K = 128): one block of 8 warps per (chunk, value head, 128 value columns);
 *   warps w and w + 4 share the rows t = 16 (w % 4) .. + 15 and take the value columns
 *   64 (w / 4) .. + 63. The pair splits that row tile's P (key tiles alternately) and
 *   exchanges it through shared memory in fragment order, so Q K^T is computed once per
 *   chunk and head and Q, K are loaded once (the narrow kernel does both per 64 columns).
 * narrow (any K <= 256): one block of 4 warps per (chunk, value head, 64 value columns);
 *   warp w computes the rows t = 16w .. 16w + 15 with P in registers.
 * LINA_CUDA_OUT_IMPL=narrow forces the narrow kernel (for comparison).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_types.h"

#define MC LINA_CUDA_SPLIT_CHUNK /* tokens per chunk, 64 */
#define MT 128                   /* threads of the narrow kernel: 4 warps */
#define LDT 72                   /* leading dim of 64-wide tiles: 144-byte rows, conflict-free ldmatrix */
#define WT 256                   /* threads of the wide kernel: 8 warps */
#define LDW 136                  /* leading dim of 128-wide tiles: 272-byte rows, conflict-free ldmatrix */

/* P of one 16 x 16 (row tile, key tile) block as the A fragment of an mma, scaled and
 * masked: nt0 = 2 * key tile; sc = the two n-tiles of Q K^T; (b_lo, b_hi) the gates of
 * this thread's rows t_lo, t_hi; b the chunk's gates in lane pairs. */
template <typename T>
__device__ __forceinline__ void p_fragment(uint32_t pf[4], const float (*sc)[4], int nt0, float2 b, float b_lo,
                                           float b_hi, int t_lo, int t_hi, float scale, int lane) {
    const int c2 = 2 * (lane & 3);
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int nt = nt0 + h, s = nt * 8 + c2; /* b_s, b_{s+1} are lane nt * 4 + c2 / 2's pair */
        const float bs0 = __shfl_sync(0xffffffffu, b.x, nt * 4 + (lane & 3));
        const float bs1 = __shfl_sync(0xffffffffu, b.y, nt * 4 + (lane & 3));
        const float x0 = s <= t_lo ? scale * __expf(b_lo - bs0) * sc[h][0] : 0.f;
        const float x1 = s + 1 <= t_lo ? scale * __expf(b_lo - bs1) * sc[h][1] : 0.f;
        const float x2 = s <= t_hi ? scale * __expf(b_hi - bs0) * sc[h][2] : 0.f;
        const float x3 = s + 1 <= t_hi ? scale * __expf(b_hi - bs1) * sc[h][3] : 0.f;
        pf[2 * h] = pack2<T>(x0, x1);
        pf[2 * h + 1] = pack2<T>(x2, x3);
    }
}

/* Shared memory of the wide kernel: Q, K (64, LDW) | S (128, LDW) | V (64, LDW) | P fragments
 * (4 row tiles x 4 key tiles x 32 lanes x 16 bytes). */
static __host__ __device__ inline size_t wide_bytes(int ts) { return (size_t)(3 * MC + 128) * LDW * ts + 4 * 4 * 32 * 16; }

template <typename T>
__global__ void __launch_bounds__(WT, 2) mma_output_wide_kernel(const lina_cuda_attn_params p) {
    extern __shared__ __align__(128) unsigned char smem[];
    T *q_s = (T *)smem, *k_s = q_s + MC * LDW, *s_s = k_s + MC * LDW, *v_s = s_s + 128 * LDW;
    uint4 *p_s = (uint4 *)(v_s + MC * LDW);
    const int nvt = (p.V + 127) / 128;
    const int vt = blockIdx.x % nvt, hv = (blockIdx.x / nvt) % p.HV, i = window_chunk(p, blockIdx.x / nvt / p.HV);
    const int h = hv / (p.HV / p.H), v0 = vt * 128, vcols = min(128, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int mi = lane >> 3, mr = lane & 7;
    const int rt = warp & 3, vh = warp >> 2; /* rows 16 rt .. + 15, tile columns 64 vh .. + 63 */
    int64_t start;
    int lc;
    chunk_range(p, i, &start, &lc);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V;
    const T *qg = (const T *)p.q + (start * p.H + h) * p.K, *kg = (const T *)p.k + (start * p.H + h) * p.K;
    const T *vg = (const T *)p.v + (start * p.HV + hv) * p.V + v0;
    const T *sg = (const T *)p.ws + ((size_t)i * p.HV + hv) * p.K * p.V + v0;
    /* three cp.async groups: Q, K | S | V, in the order they are used */
    if (lc == MC && vcols == 128 && p.vec_qk && p.vec_v) { /* the common full chunk */
        tile_to_smem_full<T, WT, MC, 128>(q_s, LDW, qg, sqk);
        tile_to_smem_full<T, WT, MC, 128>(k_s, LDW, kg, sqk);
        cp_async_commit();
        tile_to_smem_full<T, WT, 128, 128>(s_s, LDW, sg, p.V);
        cp_async_commit();
        tile_to_smem_full<T, WT, MC, 128>(v_s, LDW, vg, sv);
    } else {
        tile_to_smem<T, WT>(q_s, LDW, qg, sqk, MC, 128, lc, 128, p.vec_qk);
        tile_to_smem<T, WT>(k_s, LDW, kg, sqk, MC, 128, lc, 128, p.vec_qk);
        cp_async_commit();
        tile_to_smem<T, WT>(s_s, LDW, sg, p.V, 128, 128, 128, vcols, p.vec_v);
        cp_async_commit();
        tile_to_smem<T, WT>(v_s, LDW, vg, sv, MC, 128, lc, vcols, p.vec_v);
    }
    cp_async_commit();

    const float gconst = p.gate == LINA_GATE_CONST ? p.g[hv] : 0.f;
    const float2 b = chunk_cumsum64(load_gates2(p.g, p.gate, start, lc, p.HV, hv), p.gate, gconst, lc);
    const int t_lo = 16 * rt + g, t_hi = t_lo + 8; /* this thread's rows */
    const float b_lo = b_at(b, t_lo), b_hi = b_at(b, t_hi);
    cp_async_wait<2>();
    __syncthreads();

    /* the warp's 16 rows of Q as A fragments, for Q K^T and Q S */
    uint32_t qa[8][4];
    const T *q_row = q_s + (16 * rt + (lane & 15)) * LDW + ((lane >> 4) << 3);
#pragma unroll
    for (int ks = 0; ks < 8; ks++) ldsm_x4(qa[ks], q_row + ks * 16);
    /* this warp's half of the row tile's P: key tiles np = vh, vh + 2 <= rt */
    for (int np = vh; np <= rt; np += 2) {
        float sc[2][4] = {};
#pragma unroll
        for (int ks = 0; ks < 8; ks++) { /* B[k][s] = K[s][k]: plain load of K rows */
            uint32_t bb[4];
            ldsm_x4(bb, k_s + (np * 16 + mr + ((mi >> 1) << 3)) * LDW + ks * 16 + ((mi & 1) << 3));
            mma16816<T>(sc[0], qa[ks], bb[0], bb[1]);
            mma16816<T>(sc[1], qa[ks], bb[2], bb[3]);
        }
        uint32_t pf[4];
        p_fragment<T>(pf, sc, 2 * np, b, b_lo, b_hi, t_lo, t_hi, p.scale, lane);
        p_s[(rt * 4 + np) * 32 + lane] = make_uint4(pf[0], pf[1], pf[2], pf[3]);
    }
    cp_async_wait<1>();
    __syncthreads(); /* S has landed */

    /* O = scale e^{b_t} (Q S): B[k][v] = S[k][v], transposed load */
    float o[8][4] = {};
#pragma unroll
    for (int ks = 0; ks < 8; ks++) mma_tile_16x64<T>(o, qa[ks], s_s + ks * 16 * LDW + 64 * vh, LDW);
    const float f_lo = p.scale * __expf(b_lo), f_hi = p.scale * __expf(b_hi);
#pragma unroll
    for (int nt = 0; nt < 8; nt++) o[nt][0] *= f_lo, o[nt][1] *= f_lo, o[nt][2] *= f_hi, o[nt][3] *= f_hi;
    cp_async_wait<0>();
    __syncthreads(); /* V has landed; the pair's P fragments are visible */

    /* O += P V over key tiles j <= rt: B[t][v] = V[t][v], transposed load */
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (j <= rt) {
            const uint4 f = p_s[(rt * 4 + j) * 32 + lane];
            const uint32_t pf[4] = {f.x, f.y, f.z, f.w};
            mma_tile_16x64<T>(o, pf, v_s + j * 16 * LDW + 64 * vh, LDW);
        }

    /* the warp's 16 x 64 tile, staged in its part of Q's rows (Q was last read before the
     * previous barrier) */
    T *og = (T *)p.o + ((start + 16 * rt) * p.HV + hv) * p.V + v0 + 64 * vh;
    store_warp_tile<T>(o, q_s + 16 * rt * LDW + 64 * vh, LDW, og, sv, min(16, lc - 16 * rt), min(64, vcols - 64 * vh),
                       p.vec_v, lane);
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
__global__ void __launch_bounds__(MT, 3) mma_output_narrow_kernel(const lina_cuda_attn_params p) {
    extern __shared__ __align__(128) unsigned char smem[];
    const mma_out_layout L = mma_out_layout_make(p.K, sizeof(T));
    const int KP = L.KP, ldq = L.ldq, ldk = L.ldk;
    T *q_s = (T *)smem, *k_s = q_s + MC * ldq, *s_s = k_s + MC * ldk, *v_s = s_s + KP * LDT;
    const int nvt = (p.V + 63) / 64;
    const int vt = blockIdx.x % nvt, hv = (blockIdx.x / nvt) % p.HV, i = window_chunk(p, blockIdx.x / nvt / p.HV);
    const int h = hv / (p.HV / p.H), v0 = vt * 64, vcols = min(64, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
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
    /* P = scale e^{b_t - b_s} A [s <= t], packed as A fragments of k-step j */
    uint32_t pf[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++) p_fragment<T>(pf[j], sc + 2 * j, 2 * j, b, b_lo, b_hi, t_lo, t_hi, p.scale, lane);
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
        mma_tile_16x64<T>(o, a, s_s + ks * 16 * LDT, LDT);
    }
    const float f_lo = p.scale * __expf(b_lo), f_hi = p.scale * __expf(b_hi);
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        o[nt][0] *= f_lo, o[nt][1] *= f_lo, o[nt][2] *= f_hi, o[nt][3] *= f_hi;
    }
    /* O += P V over token tiles j <= warp: B[t][v] = V[t][v], transposed load */
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (j <= warp) mma_tile_16x64<T>(o, pf[j], v_s + j * 16 * LDT, LDT);

    /* the warp's 16 x 64 tile, staged in its own rows of Q (no other warp reads them) */
    T *og = (T *)p.o + ((start + 16 * warp) * p.HV + hv) * p.V + v0;
    const int rows = min(16, lc - 16 * warp);
    store_warp_tile<T>(o, q_s + 16 * warp * ldq, ldq, og, sv, rows, vcols, p.vec_v, lane);
}

/* ---- host side ---- */

template <typename T>
static cudaError_t launch_outputs(const lina_cuda_attn_params *p, cudaStream_t st) {
    if (lina_cuda_launch_chunks(p) == 0) return cudaSuccess;
    const char *env = getenv("LINA_CUDA_OUT_IMPL");
    const bool wide = p->K == 128 && !(env && strcmp(env, "narrow") == 0);
    const int width = wide ? 128 : 64, nvt = (p->V + width - 1) / width;
    const int64_t blocks = lina_cuda_launch_chunks(p) * p->HV * nvt;
    if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    /* value tile fastest: the blocks of one chunk and head run together and share Q, K in L2 */
    if (wide) {
        const size_t bytes = wide_bytes(sizeof(T));
        cudaError_t e = cudaFuncSetAttribute(mma_output_wide_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bytes);
        if (e != cudaSuccess) return e;
        mma_output_wide_kernel<T><<<(unsigned)blocks, WT, bytes, st>>>(*p);
    } else {
        const mma_out_layout L = mma_out_layout_make(p->K, sizeof(T));
        cudaError_t e = cudaFuncSetAttribute(mma_output_narrow_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)L.bytes);
        if (e != cudaSuccess) return e;
        mma_output_narrow_kernel<T><<<(unsigned)blocks, MT, L.bytes, st>>>(*p);
    }
    return cudaGetLastError();
}

extern "C" int lina_cuda_mma_outputs(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_outputs<__nv_bfloat16>(p, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_outputs<__half>(p, st);
    return (int)cudaErrorInvalidValue;
}
