/* Chunkwise forward of the additive update (gates NONE / CONST / SCALAR) in
 * two launches (fp32 inputs; 16-bit ones use attn_chunk_add_mma.cu), so that most of the work runs in parallel over chunks:
 *
 * 1. states (sequential over the chunks of a sequence; one block per
 *    sequence, value head and VT value columns): with b the chunk-local
 *    inclusive cumulative log gate,
 *        ws[c] = S                       (state at the start of chunk c, in T)
 *        S     = e^{b_C} S + (K o e^{b_C - b_j})^T V
 *    the next chunk's K and V are fetched into registers while this chunk computes.
 * 2. outputs (one block per chunk, value head and VT value columns):
 *        O = scale (Q o e^{b_i}) ws[c] + (scale Q K^T o e^{b_i - b_j} [j <= i]) V
 * Only differences b_i - b_j with j <= i are exponentiated (factors <= 1).
 * ws holds the state in the input type, as fla's h: for bf16 the Q S product
 * sees the state rounded to bf16, for fp32 it is exact.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_tiles.h"
#include "cuda_types.h"

#define ADD_THREADS 256
#define CS LINA_CUDA_SPLIT_CHUNK

/* Shared-memory layout of both kernels (byte offsets; leading dims padded by
 * 16 bytes). For fp32 the T copies of the state and scores alias fp32 ones. */
struct add_layout {
    int KP, VT, ldk, ldv, lda, ldfv, ldfa;
    size_t q, k, v, sf, st, af, at, of, b, total;
};

__host__ __device__ static inline size_t take_bytes(size_t *off, size_t bytes) {
    size_t r = *off;
    *off += (bytes + 127) / 128 * 128;
    return r;
}

/* outputs = 0: the states kernel (k, v, sf, st, b); 1: the output kernel (q, k, v, st, af, at, of, b) */
__host__ __device__ static inline add_layout add_layout_make(int K, int VT, int ts, int outputs) {
    add_layout L;
    L.KP = (K + 15) / 16 * 16;
    L.VT = VT;
    const int pad = 16 / ts;
    L.ldk = L.KP + pad;
    L.ldv = VT + pad;
    L.lda = CS + pad;
    L.ldfv = VT + 4;
    L.ldfa = CS + 4;
    size_t o = 0;
    L.q = outputs ? take_bytes(&o, (size_t)CS * L.ldk * ts) : 0; /* Q (C, KP) */
    L.k = take_bytes(&o, (size_t)CS * L.ldk * ts);               /* K (C, KP) */
    L.v = take_bytes(&o, (size_t)CS * L.ldv * ts);               /* V tile (C, VT) */
    L.sf = outputs ? 0 : take_bytes(&o, (size_t)L.KP * L.ldfv * 4); /* S (KP, VT) fp32 */
    L.st = (!outputs && ts == 4) ? L.sf : take_bytes(&o, (size_t)L.KP * L.ldv * ts); /* S in T */
    L.af = outputs ? take_bytes(&o, (size_t)CS * L.ldfa * 4) : 0; /* scores (C, C) fp32 */
    L.at = outputs ? (ts == 4 ? L.af : take_bytes(&o, (size_t)CS * L.lda * ts)) : 0;
    L.of = outputs ? take_bytes(&o, (size_t)CS * L.ldfv * 4) : 0; /* O tile (C, VT) fp32 */
    L.b = take_bytes(&o, (size_t)CS * 4);                         /* cumulative log gates */
    L.total = o;
    return L;
}

/* Raw log gates of a chunk into b (padding rows 0), then the inclusive cumulative sum. */
__device__ __forceinline__ void chunk_gates(const lina_cuda_attn_params &p, int64_t start, int lc, int hv,
                                            float *b) {
    if (threadIdx.x < CS) {
        float g = 0.f;
        if ((int)threadIdx.x < lc) {
            if (p.gate == LINA_GATE_CONST) g = p.g[hv];
            else if (p.gate == LINA_GATE_SCALAR) g = p.g[(start + threadIdx.x) * p.HV + hv];
        }
        b[threadIdx.x] = g;
    }
    __syncthreads();
    if (p.gate == LINA_GATE_CONST) { /* b_i = min(i + 1, lc) g, without summation error */
        if (threadIdx.x < CS) b[threadIdx.x] = (float)min((int)threadIdx.x + 1, lc) * p.g[hv];
    } else {
        warp0_cumsum<CS>(b);
    }
    __syncthreads();
}

/* A (R x CP) tile fetched into registers (16-byte units, MAXU per thread)
 * and committed to shared memory later; rows/cols outside the valid range
 * become zeros. Without 16-byte access the fetch happens at commit. */
template <typename T, int MAXU>
struct tile_fetch {
    uint4 r[MAXU];
    const T *src;
    int64_t stride;
    int rows_valid, cols_valid;

    __device__ __forceinline__ void issue(const T *s, int64_t st, int R, int CP, int rv, int cv, bool vec) {
        src = s, stride = st, rows_valid = rv, cols_valid = cv;
        if (!vec) return;
        constexpr int VEC = 16 / sizeof(T);
        const int units = CP / VEC;
#pragma unroll
        for (int u = 0; u < MAXU; u++) {
            const int i = threadIdx.x + u * ADD_THREADS;
            r[u] = make_uint4(0, 0, 0, 0);
            if (i < R * units) {
                const int row = i / units, c = (i % units) * VEC;
                if (row < rv && c < cv) r[u] = *(const uint4 *)(s + row * st + c);
            }
        }
    }
    __device__ __forceinline__ void commit(T *dst, int ldd, int R, int CP, bool vec) {
        if (!vec) {
            load_tile(dst, ldd, src, stride, R, CP, rows_valid, cols_valid, false);
            return;
        }
        constexpr int VEC = 16 / sizeof(T);
        const int units = CP / VEC;
#pragma unroll
        for (int u = 0; u < MAXU; u++) {
            const int i = threadIdx.x + u * ADD_THREADS;
            if (i < R * units) *(uint4 *)(dst + (i / units) * ldd + (i % units) * VEC) = r[u];
        }
    }
};

/* 16-byte units per thread for a K tile (C, <= 256) and a V tile (C, <= 64):
 * 64 * 256 * sizeof(T) / 16 / 256 and 64 * 64 * sizeof(T) / 16 / 256, i.e.
 * fp32 16 and 4, 16-bit 8 and 2. */
#define FETCH_K (4 * (int)sizeof(T))
#define FETCH_V ((int)sizeof(T))

template <typename T>
__global__ void __launch_bounds__(ADD_THREADS, 2) add_states_kernel(lina_cuda_attn_params p, int VT) {
    extern __shared__ __align__(128) unsigned char smem[];
    const add_layout L = add_layout_make(p.K, VT, sizeof(T), 0);
    T *k_s = (T *)(smem + L.k), *v_s = (T *)(smem + L.v), *s_t = (T *)(smem + L.st);
    float *s_f = (float *)(smem + L.sf), *b_s = (float *)(smem + L.b);
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int v0 = blockIdx.y * VT, vcols = min(VT, p.V - v0), KP = L.KP;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, nwarps = ADD_THREADS / 32;
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const int64_t c0 = p.seq_chunk0 ? p.seq_chunk0[n] : (int64_t)n * ((p.T + CS - 1) / CS);
    const T *kg = (const T *)p.k + (bos * p.H + h) * p.K, *vg = (const T *)p.v + (bos * p.HV + hv) * p.V + v0;
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V;
    const size_t state_off = ((size_t)n * p.HV + hv) * p.K * p.V + v0;
    const bool vec_k = p.vec_qk, vec_v = p.vec_v;

    for (int r = warp; r < KP; r += nwarps)
        for (int c = lane; c < VT; c += 32)
            s_f[r * L.ldfv + c] = (p.h0 && r < p.K && c < vcols) ? p.h0[state_off + (size_t)r * p.V + c] : 0.f;
    tile_fetch<T, FETCH_K> fk;
    tile_fetch<T, FETCH_V> fv;
    if (len > 0) {
        fk.issue(kg, sqk, CS, KP, min(CS, len), p.K, vec_k);
        fv.issue(vg, sv, CS, VT, min(CS, len), vcols, vec_v);
    }
    __syncthreads();
    to_elem(s_t, L.ldv, s_f, L.ldfv, KP, VT);

    for (int c = 0, t0 = 0; t0 < len; c++, t0 += CS) {
        const int lc = min(CS, len - t0);
        fk.commit(k_s, L.ldk, CS, KP, vec_k);
        fv.commit(v_s, L.ldv, CS, VT, vec_v);
        chunk_gates(p, bos + t0, lc, hv, b_s); /* its barriers also order the commits and s_t */
        /* the state at the chunk start, for the output kernel */
        T *wsc = (T *)p.ws + ((size_t)(c0 + c) * p.HV + hv) * p.K * p.V + v0;
        for (int r = warp; r < p.K; r += nwarps)
            for (int cc = lane; cc < vcols; cc += 32) wsc[(size_t)r * p.V + cc] = s_t[r * L.ldv + cc];
        if (t0 + CS < len) {
            fk.issue(kg + (t0 + CS) * sqk, sqk, CS, KP, min(CS, len - t0 - CS), p.K, vec_k);
            fv.issue(vg + (t0 + CS) * sv, sv, CS, VT, min(CS, len - t0 - CS), vcols, vec_v);
        }
        const float blast = b_s[CS - 1], decay = __expf(blast);
        for (int r = warp; r < CS; r += nwarps) {
            const float w = __expf(blast - b_s[r]);
            for (int cc = lane; cc < KP; cc += 32) k_s[r * L.ldk + cc] = from_f<T>(to_f(k_s[r * L.ldk + cc]) * w);
        }
        for (int r = warp; r < KP; r += nwarps)
            for (int cc = lane; cc < VT; cc += 32) s_f[r * L.ldfv + cc] *= decay;
        __syncthreads();
        tile_mm<T, true, false>(s_f, L.ldfv, k_s, L.ldk, v_s, L.ldv, KP, VT, CS, true); /* S += K^T V */
        __syncthreads();
        to_elem(s_t, L.ldv, s_f, L.ldfv, KP, VT);
    }
    __syncthreads();
    if (p.ht)
        for (int r = warp; r < p.K; r += nwarps)
            for (int cc = lane; cc < vcols; cc += 32) p.ht[state_off + (size_t)r * p.V + cc] = s_f[r * L.ldfv + cc];
}

template <typename T>
__global__ void __launch_bounds__(ADD_THREADS, 2) add_output_kernel(lina_cuda_attn_params p, int VT) {
    extern __shared__ __align__(128) unsigned char smem[];
    const add_layout L = add_layout_make(p.K, VT, sizeof(T), 1);
    T *q_s = (T *)(smem + L.q), *k_s = (T *)(smem + L.k), *v_s = (T *)(smem + L.v);
    T *s_t = (T *)(smem + L.st), *a_t = (T *)(smem + L.at);
    float *a_f = (float *)(smem + L.af), *o_f = (float *)(smem + L.of), *b_s = (float *)(smem + L.b);
    const int i = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int v0 = blockIdx.y * VT, vcols = min(VT, p.V - v0), KP = L.KP;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, nwarps = ADD_THREADS / 32;
    int64_t start;
    int lc;
    chunk_range(p, i, &start, &lc);
    const int64_t sqk = (int64_t)p.H * p.K, sv = (int64_t)p.HV * p.V;
    const T *qg = (const T *)p.q + (start * p.H + h) * p.K, *kg = (const T *)p.k + (start * p.H + h) * p.K;
    const T *vg = (const T *)p.v + (start * p.HV + hv) * p.V + v0;
    const T *sg = (const T *)p.ws + ((size_t)i * p.HV + hv) * p.K * p.V + v0;
    load_tile(q_s, L.ldk, qg, sqk, CS, KP, lc, p.K, p.vec_qk);
    load_tile(k_s, L.ldk, kg, sqk, CS, KP, lc, p.K, p.vec_qk);
    load_tile(v_s, L.ldv, vg, sv, CS, VT, lc, vcols, p.vec_v);
    load_tile(s_t, L.ldv, sg, (int64_t)p.V, KP, VT, p.K, vcols, p.vec_v);
    chunk_gates(p, start, lc, hv, b_s);

    tile_mm<T, false, true>(a_f, L.ldfa, q_s, L.ldk, k_s, L.ldk, CS, CS, KP, false); /* Q K^T */
    __syncthreads();
    for (int r = warp; r < CS; r += nwarps) {
        const float br = b_s[r];
        for (int c = lane; c < CS; c += 32)
            a_t[r * L.lda + c] = from_f<T>(c <= r ? p.scale * __expf(br - b_s[c]) * a_f[r * L.ldfa + c] : 0.f);
        const float w = p.scale * __expf(br);
        for (int c = lane; c < KP; c += 32) q_s[r * L.ldk + c] = from_f<T>(to_f(q_s[r * L.ldk + c]) * w);
    }
    __syncthreads();
    tile_mm<T, false, false>(o_f, L.ldfv, a_t, L.lda, v_s, L.ldv, CS, VT, CS, false); /* intra-chunk */
    __syncthreads();
    tile_mm<T, false, false>(o_f, L.ldfv, q_s, L.ldk, s_t, L.ldv, CS, VT, KP, true); /* + inter-chunk */
    __syncthreads();
    store_tile((T *)p.o + (start * p.HV + hv) * p.V + v0, sv, o_f, L.ldfv, lc, vcols, p.vec_v);
}

/* ---- host side ---- */

template <typename T>
static cudaError_t launch_both(const lina_cuda_attn_params *p, int vt_state, int vt_out, size_t sm_state,
                               size_t sm_out, cudaStream_t st) {
    cudaError_t e = cudaFuncSetAttribute(add_states_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm_state);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(add_output_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm_out);
    if (e != cudaSuccess) return e;
    dim3 g1((unsigned)(p->n_seqs * p->HV), (unsigned)((p->V + vt_state - 1) / vt_state));
    add_states_kernel<T><<<g1, ADD_THREADS, sm_state, st>>>(*p, vt_state);
    if ((e = cudaGetLastError()) != cudaSuccess || p->n_chunks == 0) return e;
    dim3 g2((unsigned)p->n_chunks * (unsigned)p->HV, (unsigned)((p->V + vt_out - 1) / vt_out));
    add_output_kernel<T><<<g2, ADD_THREADS, sm_out, st>>>(*p, vt_out);
    return cudaGetLastError();
}

/* Largest value tile <= want (64, 32, 16; at most V rounded up to 16) whose layout fits. */
static int pick_vt(int want, int K, int V, int ts, int outputs, int max_smem, size_t *smem) {
    const int vp = (V + 15) / 16 * 16;
    for (int vt = want; vt >= 16; vt /= 2) {
        const int t = vt < vp ? vt : vp;
        add_layout L = add_layout_make(K, t, ts, outputs);
        if (L.total <= (size_t)max_smem) {
            *smem = L.total;
            return t;
        }
    }
    return 0;
}

extern "C" int lina_cuda_chunk_add_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    /* 16-bit inputs: the tensor-core kernels (attn_chunk_add_mma.cu); LINA_CUDA_ADD_IMPL=wmma
     * keeps these (benchmarks compare the two) */
    const char *impl = getenv("LINA_CUDA_ADD_IMPL");
    if (dtype != LINA_DTYPE_F32 && !(impl && strcmp(impl, "wmma") == 0))
        return lina_cuda_chunk_add_mma_forward(p, dtype, stream);
    int dev = 0, max_smem = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) return (int)e;
    const int ts = dtype == LINA_DTYPE_F32 ? 4 : 2;
    /* value tiles: LINA_CUDA_VT_STATE / LINA_CUDA_VT_OUT override the defaults (benchmarks) */
    const char *es = getenv("LINA_CUDA_VT_STATE"), *eo = getenv("LINA_CUDA_VT_OUT");
    /* measured on the H200 (docs/CUDA.md, run 4): 64-column state tiles win with
     * >= 128 (sequence, head) pairs, 32 below (more blocks for the sequential kernel) */
    const int wide = (int64_t)p->n_seqs * p->HV >= 128;
    int want_s = es ? atoi(es) : (wide ? 64 : 32), want_o = eo ? atoi(eo) : (ts == 4 ? 32 : 64);
    size_t sm_s = 0, sm_o = 0;
    int vt_s = pick_vt(want_s >= 16 && want_s <= 64 ? want_s : 32, p->K, p->V, ts, 0, max_smem, &sm_s);
    int vt_o = pick_vt(want_o >= 16 && want_o <= 64 ? want_o : 64, p->K, p->V, ts, 1, max_smem, &sm_o);
    if (!vt_s || !vt_o) return (int)cudaErrorInvalidConfiguration;
    cudaStream_t st = (cudaStream_t)stream;
    switch (dtype) {
    case LINA_DTYPE_F32: return (int)launch_both<float>(p, vt_s, vt_o, sm_s, sm_o, st);
    case LINA_DTYPE_BF16: return (int)launch_both<__nv_bfloat16>(p, vt_s, vt_o, sm_s, sm_o, st);
    default: return (int)launch_both<__half>(p, vt_s, vt_o, sm_s, sm_o, st);
    }
}
