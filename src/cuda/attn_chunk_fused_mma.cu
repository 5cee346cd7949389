/* Chunkwise forward in ONE pass over the sequence, 16-bit inputs on tensor
 * cores (mma.sync m16n8k16, fp32 accumulators): gates NONE / CONST / SCALAR,
 * additive or delta update, K <= 128. Chunks of C = 64 tokens, b the
 * chunk-local inclusive cumulative log gate, S the (K x V) state:
 *
 *   additive:  O   = scale e^{b_t} Q S + P V,   P = scale Q K^T o e^{b_t - b_s} [s <= t]
 *              S  <- e^{b_{C-1}} S + (K o e^{b_{C-1} - b_s})^T V
 *   delta:     the same with V replaced by V' = U - W S (W, U from the WY kernel of
 *              attn_chunk_delta_mma.cu)
 *
 * The split kernels (attn_chunk_add_mma.cu, attn_chunk_delta_mma.cu) write the
 * state of every chunk to global memory (bf16, K x V per chunk: as many bytes
 * as q, k, v and o together at K = V) and read it back; here the state never
 * leaves registers. One block of 4 warps per (sequence, value head, 64 value
 * columns, segment); warp w owns value columns 16w .. 16w+15 of the tile and
 * holds S^T for them (16 x K fp32, mma accumulator layout: rows = value
 * columns, columns = keys). That layout, packed to 16 bits, is exactly the B
 * operand of Q S and W S, so no warp needs another warp's state:
 *   per chunk  (a) P = scale Q K^T o decay mask, 16 x 16 tiles spread over the warps -> shared
 *                  memory (the only exchange between warps)
 *              (b) delta:  V'[:, own] = U[:, own] - W S_w -> over U in shared memory
 *              (c) O[:, own] = scale e^{b_t} Q S_w           (B from registers)
 *              (e) O[:, own] += P V[:, own]                   (after one barrier)
 *              (g) S_w^T = e^{b_{C-1}} S_w^T + (V[:, own] o w)^T K
 * Q, K, V (U) stream through a double-buffered cp.async ring; W has one buffer,
 * refilled as soon as (b) is done.
 *
 * Segments (additive only; the delta rule's state is not additive over
 * segments): with few (sequence, head) pairs the sequence is cut into
 * segments of G chunks; a states-only pass of the same kernel gives each
 * segment's local state dS_j (from zero) and total log decay B_j, and the full
 * pass then runs all segments in parallel, each block starting from
 * S_{j+1} = e^{B_j} S_j + dS_j folded over the earlier segments.
 */
#include <limits.h>
#include <stdlib.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_types.h"

#define FC LINA_CUDA_SPLIT_CHUNK /* tokens per chunk, 64 */
#define FT 128                   /* threads per block: 4 warps */
#define LDV 72                   /* rows of 64-wide tiles (V, U, P, O staging): 144 bytes, conflict-free */

static_assert(FC == 64, "the fused kernel assumes 64-token chunks (4 warps x 16 rows)");

/* Shared memory, in elements: 2 stages of [Q (OUT) | K | V], then W (DELTA), then P (OUT). */
struct fused_layout {
    int ldq;
    size_t q, k, v, stage, w, p, elems;
};
static __host__ __device__ inline fused_layout fused_layout_make(int KP, bool out, bool delta) {
    fused_layout L;
    L.ldq = KP + 8;
    L.q = 0;
    L.k = out ? (size_t)FC * L.ldq : 0;
    L.v = L.k + (size_t)FC * L.ldq;
    L.stage = L.v + (size_t)FC * LDV;
    L.w = 2 * L.stage;
    L.p = L.w + (delta ? (size_t)FC * L.ldq : 0);
    L.elems = L.p + (out ? (size_t)FC * LDV : 0);
    return L;
}

/* NK = K rounded up to 16, over 16 (4: K <= 64, 8: K <= 128). OUT: outputs (else the
 * states-only pass of the segments). */
template <typename T, int NK, bool OUT, bool DELTA>
__global__ void __launch_bounds__(FT, 2) fused_kernel(const lina_cuda_attn_params p) {
    static_assert(OUT || !DELTA, "the delta rule has no states-only pass");
    constexpr int KP = 16 * NK;
    extern __shared__ __align__(128) unsigned char smem[];
    const fused_layout L = fused_layout_make(KP, OUT, DELTA);
    const int ldq = L.ldq;
    T *const base = (T *)smem;
    const int nvt = (p.V + 63) / 64, nseg = OUT ? p.n_segs : p.n_segs - 1;
    int rest = blockIdx.x;
    const int vt = rest % nvt;
    rest /= nvt;
    const int hv = rest % p.HV;
    rest /= p.HV;
    const int j = rest % nseg, n = rest / nseg, h = hv / (p.HV / p.H);
    const int v0 = vt * 64, vcols = min(64, p.V - v0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
    const int mi = lane >> 3, mr = lane & 7;
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const int nc = (len + FC - 1) / FC;
    const int c_begin = min(j * p.seg_chunks, nc), c_end = min(nc, (j + 1) * p.seg_chunks);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V, sw = (int64_t)p.HV * p.K;
    const size_t KV = (size_t)p.K * p.V, soff = ((size_t)n * p.HV + hv) * KV;
    const size_t seg = ((size_t)n * p.HV + hv) * p.n_segs + j; /* this segment's slot */
    const T *qg = (const T *)p.q + (bos * p.H + h) * p.K, *kg = (const T *)p.k + (bos * p.H + h) * p.K;
    const T *vg = DELTA ? (const T *)p.wy_u + (bos * p.HV + hv) * p.V + v0 : (const T *)p.v + (bos * p.HV + hv) * p.V + v0;
    const T *wg = (const T *)p.wy_w + (bos * p.HV + hv) * p.K;
    const bool vec_v = DELTA ? p.V % 8 == 0 : p.vec_v, vec_w = p.K % 8 == 0;
    const int vrow = v0 + 16 * warp + g; /* this thread's state rows (value columns): vrow, vrow + 8 */

    /* S^T[vrow (+8)][8 nt + c2 (+1)] */
    float acc[2 * NK][4];
#pragma unroll
    for (int nt = 0; nt < 2 * NK; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int vc = vrow + (e >> 1) * 8, kr = nt * 8 + c2 + (e & 1);
            acc[nt][e] = (OUT && p.h0 && vc < p.V && kr < p.K) ? p.h0[soff + (size_t)kr * p.V + vc] : 0.f;
        }
    /* segment j > 0 starts from S_j: S_0 = h0, S_{i+1} = e^{B_i} S_i + dS_i over the earlier
     * segments' local states dS_i and log decays B_i (the states-only pass); folded in here
     * instead of a scan kernel (one launch less: ~25 us at B2 T16384) */
    if (OUT)
        for (int i = 0; i < j; i++) {
            const size_t slot = ((size_t)n * p.HV + hv) * p.n_segs + i;
            const float decay = __expf(p.seg_logdecay[slot]);
#pragma unroll
            for (int nt = 0; nt < 2 * NK; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int vc = vrow + (e >> 1) * 8, kr = nt * 8 + c2 + (e & 1);
                    const float ds = (vc < p.V && kr < p.K) ? p.seg_state[slot * KV + (size_t)kr * p.V + vc] : 0.f;
                    acc[nt][e] = decay * acc[nt][e] + ds;
                }
        }

    const bool full_tiles = p.vec_qk && vec_v && (!DELTA || vec_w) && p.K == KP && vcols == 64;
    auto issue = [&](int c) {
        const int t0 = c * FC, lc = min(FC, len - t0);
        T *st = base + ((c - c_begin) & 1) * L.stage;
        if (full_tiles && lc == FC) {
            if (OUT) tile_to_smem_full<T, FT, FC, KP>(st + L.q, ldq, qg + t0 * sqk, sqk);
            tile_to_smem_full<T, FT, FC, KP>(st + L.k, ldq, kg + t0 * sqk, sqk);
            tile_to_smem_full<T, FT, FC, 64>(st + L.v, LDV, vg + t0 * sv, sv);
            return;
        }
        if (OUT) tile_to_smem<T, FT>(st + L.q, ldq, qg + t0 * sqk, sqk, FC, KP, lc, p.K, p.vec_qk);
        tile_to_smem<T, FT>(st + L.k, ldq, kg + t0 * sqk, sqk, FC, KP, lc, p.K, p.vec_qk);
        tile_to_smem<T, FT>(st + L.v, LDV, vg + t0 * sv, sv, FC, 64, lc, vcols, vec_v);
    };
    auto issue_w = [&](int c) {
        const int t0 = c * FC, lc = min(FC, len - t0);
        if (full_tiles && lc == FC)
            tile_to_smem_full<T, FT, FC, KP>(base + L.w, ldq, wg + t0 * sw, sw);
        else
            tile_to_smem<T, FT>(base + L.w, ldq, wg + t0 * sw, sw, FC, KP, lc, p.K, vec_w);
    };
    if (c_begin < c_end) {
        issue(c_begin);
        if (DELTA) issue_w(c_begin);
    }
    cp_async_commit();
    const float gconst = (p.gate == LINA_GATE_CONST && nc > 0) ? p.g[hv] : 0.f; /* no g without tokens */
    float2 graw = make_float2(0.f, 0.f);
    if (c_begin < c_end) graw = load_gates2(p.g, p.gate, bos + (int64_t)c_begin * FC, min(FC, len - c_begin * FC), p.HV, hv);
    float logdecay = 0.f; /* the states-only pass: sum of the chunks' b_{C-1} */

    for (int c = c_begin; c < c_end; c++) {
        const int t0 = c * FC, lc = min(FC, len - t0);
        cp_async_wait<0>();
        __syncthreads(); /* chunk c (and W) landed; chunk c-1's buffers are free */
        if (c + 1 < c_end) issue(c + 1);
        cp_async_commit();
        T *st = base + ((c - c_begin) & 1) * L.stage;
        T *q_s = st + L.q, *k_s = st + L.k, *v_s = st + L.v;

        const float2 b = chunk_cumsum64(graw, p.gate, gconst, lc);
        if (c + 1 < c_end) graw = load_gates2(p.g, p.gate, bos + t0 + FC, min(FC, len - t0 - FC), p.HV, hv);
        const float blast = b_at(b, FC - 1);
        logdecay += blast;

        float o[4][2][4]; /* O rows 16 mt + g (+8), own value columns 8 nv + c2 (+1) */
        if constexpr (OUT) {
            T *p_s = base + L.p;
            /* (a) P by 16 x 16 tiles (row tile mt, key tile jt <= mt), the ten tiles of the lower
             * triangle spread over the warps 3 / 3 / 2 / 2 (by rows it would be 1 / 2 / 3 / 4,
             * and every warp waits for the slowest at the barrier below) */
            {
                /* tile = 4 mt + jt, one hex digit; warp w takes digits 3w .. 3w + count - 1:
                 * w0 {0, 12, 13}, w1 {4, 5, 14}, w2 {8, 9}, w3 {10, 15} */
                constexpr uint64_t tiles = 0x0FA098E54DC0ull; /* digit i = bits 4i .. 4i + 3 */
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
#pragma unroll
                    for (int ks = 0; ks < NK; ks++) {
                        uint32_t a[4], bb[4]; /* A = Q rows of tile mt; B[k][s] = K[s][k]: plain load of K rows */
                        ldsm_x4(a, q_s + (16 * mt + (lane & 15)) * ldq + ((lane >> 4) << 3) + ks * 16);
                        ldsm_x4(bb, k_s + (16 * jt + mr + ((mi >> 1) << 3)) * ldq + ks * 16 + ((mi & 1) << 3));
                        mma16816<T>(sc[0], a, bb[0], bb[1]);
                        mma16816<T>(sc[1], a, bb[2], bb[3]);
                    }
                    const int t_lo = 16 * mt + g, t_hi = t_lo + 8;
                    const float b_lo = b_at(b, t_lo), b_hi = b_at(b, t_hi);
#pragma unroll
                    for (int nt = 0; nt < 2; nt++) {
                        const int s = 16 * jt + 8 * nt + c2;
                        const float bs0 = b_at(b, s), bs1 = b_at(b, s + 1);
                        const float x0 = s <= t_lo ? p.scale * __expf(b_lo - bs0) * sc[nt][0] : 0.f;
                        const float x1 = s + 1 <= t_lo ? p.scale * __expf(b_lo - bs1) * sc[nt][1] : 0.f;
                        const float x2 = s <= t_hi ? p.scale * __expf(b_hi - bs0) * sc[nt][2] : 0.f;
                        const float x3 = s + 1 <= t_hi ? p.scale * __expf(b_hi - bs1) * sc[nt][3] : 0.f;
                        *(uint32_t *)(p_s + t_lo * LDV + s) = pack2<T>(x0, x1);
                        *(uint32_t *)(p_s + t_hi * LDV + s) = pack2<T>(x2, x3);
                    }
                }
            }
            /* A = rows of X (shared, ld ldq) times S_w: out[mt][nv] over all 64 rows, own columns */
            auto times_state = [&](const T *x_s, float (&out)[4][2][4]) {
#pragma unroll
                for (int mt = 0; mt < 4; mt++)
#pragma unroll
                    for (int nv = 0; nv < 2; nv++)
#pragma unroll
                        for (int e = 0; e < 4; e++) out[mt][nv][e] = 0.f;
#pragma unroll
                for (int ks = 0; ks < NK; ks++) {
                    /* B[k][v] = S[k][v]: keys 16 ks + c2 (+1) (+8) of value columns vrow, vrow + 8 */
                    const uint32_t b00 = pack2<T>(acc[2 * ks][0], acc[2 * ks][1]);
                    const uint32_t b01 = pack2<T>(acc[2 * ks + 1][0], acc[2 * ks + 1][1]);
                    const uint32_t b10 = pack2<T>(acc[2 * ks][2], acc[2 * ks][3]);
                    const uint32_t b11 = pack2<T>(acc[2 * ks + 1][2], acc[2 * ks + 1][3]);
#pragma unroll
                    for (int mt = 0; mt < 4; mt++) {
                        uint32_t a[4];
                        ldsm_x4(a, x_s + (16 * mt + (lane & 15)) * ldq + ((lane >> 4) << 3) + ks * 16);
                        mma16816<T>(out[mt][0], a, b00, b01);
                        mma16816<T>(out[mt][1], a, b10, b11);
                    }
                }
            };
            if constexpr (DELTA) { /* (b) V' = U - W S, written over U (own columns only) */
                times_state(base + L.w, o);
#pragma unroll
                for (int mt = 0; mt < 4; mt++)
#pragma unroll
                    for (int nv = 0; nv < 2; nv++)
#pragma unroll
                        for (int hh = 0; hh < 2; hh++) {
                            uint32_t *pu = (uint32_t *)(v_s + (16 * mt + g + 8 * hh) * LDV + 16 * warp + 8 * nv + c2);
                            const float2 u = unpack2<T>(*pu);
                            *pu = pack2<T>(u.x - o[mt][nv][2 * hh], u.y - o[mt][nv][2 * hh + 1]);
                        }
            }
            /* (c) O = scale e^{b_t} Q S */
            times_state(q_s, o);
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                const float f_lo = p.scale * __expf(b_at(b, 16 * mt + g)), f_hi = p.scale * __expf(b_at(b, 16 * mt + g + 8));
#pragma unroll
                for (int nv = 0; nv < 2; nv++) {
                    o[mt][nv][0] *= f_lo, o[mt][nv][1] *= f_lo, o[mt][nv][2] *= f_hi, o[mt][nv][3] *= f_hi;
                }
            }
            __syncthreads(); /* (d) P complete; every warp is done with Q and W */
            if constexpr (DELTA) {
                if (c + 1 < c_end) issue_w(c + 1);
                cp_async_commit();
            }
            /* (e) O += P V over token tiles jt <= mt: B[s][v] = V[s][v], transposed load */
#pragma unroll
            for (int jt = 0; jt < 4; jt++) {
                uint32_t bb[4];
                ldsm_x4_t(bb, v_s + (jt * 16 + mr + ((mi & 1) << 3)) * LDV + 16 * warp + ((mi >> 1) << 3));
#pragma unroll
                for (int mt = jt; mt < 4; mt++) {
                    uint32_t a[4];
                    ldsm_x4(a, p_s + (16 * mt + (lane & 15)) * LDV + jt * 16 + ((lane >> 4) << 3));
                    mma16816<T>(o[mt][0], a, bb[0], bb[1]);
                    mma16816<T>(o[mt][1], a, bb[2], bb[3]);
                }
            }
            /* (f) store: staged in the (now free) Q buffer as a 64 x 64 tile of ld LDV, own columns */
            T *o_s = q_s + 16 * warp;
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int nv = 0; nv < 2; nv++) {
                    *(uint32_t *)(o_s + (16 * mt + g) * LDV + 8 * nv + c2) = pack2<T>(o[mt][nv][0], o[mt][nv][1]);
                    *(uint32_t *)(o_s + (16 * mt + g + 8) * LDV + 8 * nv + c2) = pack2<T>(o[mt][nv][2], o[mt][nv][3]);
                }
            __syncwarp();
            T *og = (T *)p.o + ((bos + t0) * p.HV + hv) * p.V + v0 + 16 * warp;
            const int ocols = min(16, vcols - 16 * warp);
            if (p.vec_v) {
                for (int u = lane; u < FC * 2; u += 32) {
                    const int r = u >> 1, cc = (u & 1) * 8;
                    if (r < lc && cc < ocols) *(uint4 *)(og + r * sv + cc) = *(const uint4 *)(o_s + r * LDV + cc);
                }
            } else {
                for (int e = lane; e < FC * 16; e += 32) {
                    const int r = e >> 4, cc = e & 15;
                    if (r < lc && cc < ocols) og[r * sv + cc] = o_s[r * LDV + cc];
                }
            }
        }

        /* (g) S^T = e^{b_{C-1}} S^T + (V o w)^T K, w_s = e^{b_{C-1} - b_s} */
        const float decay = __expf(blast);
        const float2 wl = make_float2(__expf(blast - b.x), __expf(blast - b.y));
#pragma unroll
        for (int nt = 0; nt < 2 * NK; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[nt][e] *= decay;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { /* tokens 16 kk .. 16 kk + 15 */
            uint32_t a[4]; /* A[v][s] = V[s][v], own value columns */
            ldsm_x4_t(a, v_s + (kk * 16 + mr + ((mi >> 1) << 3)) * LDV + 16 * warp + ((mi & 1) << 3));
            const int src = kk * 8 + (lane & 3);
            const float w0 = __shfl_sync(0xffffffffu, wl.x, src), w1 = __shfl_sync(0xffffffffu, wl.y, src);
            const float w8 = __shfl_sync(0xffffffffu, wl.x, src + 4), w9 = __shfl_sync(0xffffffffu, wl.y, src + 4);
            a[0] = scale2<T>(a[0], w0, w1);
            a[1] = scale2<T>(a[1], w0, w1);
            a[2] = scale2<T>(a[2], w8, w9);
            a[3] = scale2<T>(a[3], w8, w9);
#pragma unroll
            for (int np = 0; np < NK; np++) { /* keys 16 np ..: B[s][k] = K[s][k], transposed load */
                uint32_t bb[4];
                ldsm_x4_t(bb, k_s + (kk * 16 + mr + ((mi & 1) << 3)) * ldq + np * 16 + ((mi >> 1) << 3));
                mma16816<T>(acc[2 * np], a, bb[0], bb[1]);
                mma16816<T>(acc[2 * np + 1], a, bb[2], bb[3]);
            }
        }
    }
    cp_async_wait<0>();

    /* OUT: the block holding the sequence's last chunk (or segment 0 of an empty sequence)
     * writes the final state; states-only: this segment's local state and log decay */
    float *dst = NULL;
    size_t d_off = 0;
    if (OUT && p.ht && c_end == nc && (c_begin < c_end || j == 0)) dst = p.ht, d_off = soff;
    if (!OUT) dst = p.seg_state, d_off = seg * KV;
    if (dst)
#pragma unroll
        for (int nt = 0; nt < 2 * NK; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int vc = vrow + (e >> 1) * 8, kr = nt * 8 + c2 + (e & 1);
                if (vc < p.V && kr < p.K) dst[d_off + (size_t)kr * p.V + vc] = acc[nt][e];
            }
    if (!OUT && vt == 0 && threadIdx.x == 0) p.seg_logdecay[seg] = logdecay;
}

/* ---- host side ---- */

template <typename T, int NK, bool OUT, bool DELTA>
static cudaError_t launch_fused_pass(const lina_cuda_attn_params *p, cudaStream_t st) {
    const int nseg = OUT ? p->n_segs : p->n_segs - 1;
    const int64_t blocks = (int64_t)p->n_seqs * p->HV * nseg * ((p->V + 63) / 64);
    if (blocks == 0) return cudaSuccess;
    if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    const size_t bytes = fused_layout_make(16 * NK, OUT, DELTA).elems * sizeof(T);
    cudaError_t e = cudaFuncSetAttribute(fused_kernel<T, NK, OUT, DELTA>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes);
    if (e != cudaSuccess) return e;
    fused_kernel<T, NK, OUT, DELTA><<<(unsigned)blocks, FT, bytes, st>>>(*p);
    return cudaGetLastError();
}

template <typename T, int NK>
static cudaError_t launch_fused_nk(const lina_cuda_attn_params *p, cudaStream_t st) {
    if (p->delta) return launch_fused_pass<T, NK, true, true>(p, st);
    if (p->n_segs > 1) {
        cudaError_t e = launch_fused_pass<T, NK, false, false>(p, st);
        if (e != cudaSuccess) return e;
    }
    return launch_fused_pass<T, NK, true, false>(p, st);
}

template <typename T>
static cudaError_t launch_fused(const lina_cuda_attn_params *p, lina_dtype dtype, cudaStream_t st) {
    if (p->delta) {
        cudaError_t e = (cudaError_t)lina_cuda_delta_wy(p, dtype, st);
        if (e != cudaSuccess) return e;
    }
    return p->K <= 64 ? launch_fused_nk<T, 4>(p, st) : launch_fused_nk<T, 8>(p, st);
}

extern "C" int lina_cuda_fused_segments(int64_t n_seqs, int HV, int V, int max_chunks) {
    const int64_t blocks = n_seqs * HV * ((V + 63) / 64), sms = lina_cuda_sm_count();
    const char *env = getenv("LINA_CUDA_FUSED_SEGS");
    int segs = 1;
    if (env && atoi(env) >= 1)
        segs = atoi(env);
    else /* enough blocks for two per multiprocessor, segments of >= 16 chunks */
        while (blocks * segs * 10 < 19 * sms && (int64_t)max_chunks >= 16LL * segs) segs++;
    if (segs > max_chunks) segs = max_chunks > 0 ? max_chunks : 1;
    return segs;
}

extern "C" int lina_cuda_fused_delta_ok(int64_t n_seqs, int HV, int V) {
    return n_seqs * HV * ((V + 63) / 64) * 2 >= 3LL * lina_cuda_sm_count();
}

extern "C" int lina_cuda_chunk_fused_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (p->K > 128 || p->gate == LINA_GATE_VECTOR || (p->delta && !p->wy_w)) return (int)cudaErrorInvalidValue;
    if (dtype == LINA_DTYPE_BF16) return (int)launch_fused<__nv_bfloat16>(p, dtype, st);
    if (dtype == LINA_DTYPE_F16) return (int)launch_fused<__half>(p, dtype, st);
    return (int)cudaErrorInvalidValue;
}
