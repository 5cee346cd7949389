/* Backward of the additive update with gates NONE / CONST / SCALAR, built from
 * three runs of the chunkwise forward (tensor cores for 16-bit inputs).
 *
 * With b_t the cumulative log gate of a sequence and a_j = e^{g_j},
 *   o_t = scale sum_{s<=t} e^{b_t - b_s} (q_t . k_s) v_s + scale e^{b_t} h0^T q_t
 * so each gradient is itself a gated linear attention:
 *   dq_t = scale sum_{s<=t} e^{b_t-b_s} (do_t . v_s) k_s + scale e^{b_t} h0 do_t
 *        = forward(q = do, k = v, v = k, same gates, h0^T)        (its ht is ht^T)
 *   dv_s = scale sum_{t>=s} e^{b_t-b_s} (q_t . k_s) do_t + e^{b_last-b_s} dht^T k_s
 *   dk_s = scale sum_{t>=s} e^{b_t-b_s} (do_t . v_s) q_t + e^{b_last-b_s} dht v_s
 * The last two run forward in time on each sequence reversed: reversed position
 * i holds token last - i, and the decay between reversed positions must be
 * prod_{j=s+1..t} a_j, i.e. the gate at reversed position i is g of token
 * last - i + 1 (0 at i = 0, so CONST becomes SCALAR there):
 *   dv = rev(forward(q = rev k, k = rev q, v = rev do, g', h0 = dht / scale))
 *   dk = rev(forward(q = rev v, k = rev do, v = rev q, g', h0 = dht^T / scale))
 * The dv run's final state is sum_t e^{b_t - g_first} q_t do_t^T + e^{b_last - g_first} dht / scale,
 * so dh0 = scale e^{g_first} ht'. The log gates follow from the identity
 *   dL/db_t = q_t . dq_t - k_t . dk_t  (+ <dht, ht> at the last token),
 * dg_t = sum_{u>=t} dL/db_u. Only SCALAR gates take dg from here: the identity cancels, and a
 * CONST dg (one number per head) is routed to the token-by-token kernels by the caller. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#include "cuda_internal.h"
#include "cuda_types.h"

extern "C" lina_status lina_fail(lina_status code, const char *fmt, ...);

/* Token t of the packed layout: its sequence's first token and length. */
__device__ __forceinline__ void token_seq(const int64_t *cu, int n_seqs, int T, int64_t t, int64_t *bos, int64_t *len) {
    if (!cu) {
        *bos = t / T * T;
        *len = T;
        return;
    }
    int lo = 0, hi = n_seqs - 1; /* the last n with cu[n] <= t: never an empty sequence */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (cu[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    *bos = cu[lo];
    *len = cu[lo + 1] - cu[lo];
}

/* dst token t = src token (bos + len - 1 - (t - bos)): each sequence reversed in place. */
template <typename T>
__global__ void reverse_rows_kernel(const T *src, T *dst, int row, const int64_t *cu, int n_seqs, int Tlen) {
    const int64_t t = blockIdx.x;
    int64_t bos, len;
    token_seq(cu, n_seqs, Tlen, t, &bos, &len);
    const int64_t from = bos + len - 1 - (t - bos);
    const T *s = src + from * row;
    T *d = dst + t * row;
    for (int i = threadIdx.x; i < row; i += blockDim.x) d[i] = s[i];
}

/* Gates of the reversed sequences: g'[t] = 0 at a sequence's first reversed position, else the
 * gate of the token after the one at t (CONST: g[h]). (tokens, H) fp32. */
__global__ void reverse_gates_kernel(const float *g, float *gr, int gate, int H, const int64_t *cu, int n_seqs,
                                     int Tlen, int64_t tokens) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= tokens * H) return;
    const int64_t t = i / H;
    const int h = (int)(i % H);
    int64_t bos, len;
    token_seq(cu, n_seqs, Tlen, t, &bos, &len);
    const int64_t from = bos + len - 1 - (t - bos);
    gr[i] = t == bos ? 0.f : gate == LINA_GATE_CONST ? g[h] : g[(from + 1) * H + h];
}

/* dst[m][c][r] = mul * src[m][r][c] for m < count (R x C matrices). */
__global__ void transpose_scale_kernel(const float *src, float *dst, int64_t count, int R, int C, float mul) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const int64_t per = (int64_t)R * C;
    if (i >= count * per) return;
    const int64_t m = i / per, rc = i % per;
    const int r = (int)(rc / C), c = (int)(rc % C);
    dst[m * per + (int64_t)c * R + r] = mul * src[i];
}

__global__ void scale_copy_kernel(const float *src, float *dst, int64_t n, float mul) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = mul * src[i];
}

/* dh0[n, h] *= scale e^{g of the sequence's first token} (1 for an empty sequence or no gate). */
__global__ void dh0_scale_kernel(float *dh0, const float *g, int gate, int H, int64_t KV, const int64_t *cu,
                                 int n_seqs, int Tlen, float scale) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_seqs * H * KV) return;
    const int64_t nh = i / KV;
    const int n = (int)(nh / H), h = (int)(nh % H);
    const int64_t bos = cu ? cu[n] : (int64_t)n * Tlen, len = cu ? cu[n + 1] - cu[n] : Tlen;
    float a0 = 1.f;
    if (len > 0 && gate == LINA_GATE_CONST) a0 = expf(g[h]);
    else if (len > 0 && gate == LINA_GATE_SCALAR) a0 = expf(g[bos * H + h]);
    dh0[i] *= scale * a0;
}

/* dlb[t, h] = q_t . dq_t - k_t . dk_t, one warp per (token, head). */
template <typename T>
__global__ void dlogb_kernel(const T *q, const T *k, const T *dq, const T *dk, float *dlb, int64_t rows, int K) {
    const int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return;
    float acc = 0.f;
    for (int i = lane; i < K; i += 32)
        acc += to_f(q[r * K + i]) * to_f(dq[r * K + i]) - to_f(k[r * K + i]) * to_f(dk[r * K + i]);
#pragma unroll
    for (int m = 16; m; m >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, m);
    if (lane == 0) dlb[r] = acc;
}

/* dot[n, h] = <dht[n, h] (K x V), htT[n, h] (V x K) transposed>, one block per state. */
__global__ void state_dot_kernel(const float *dht, const float *htT, float *dot, int K, int V) {
    const int64_t m = blockIdx.x;
    const float *a = dht + m * K * V, *b = htT + m * K * V;
    float acc = 0.f;
    for (int i = threadIdx.x; i < K * V; i += blockDim.x) acc += a[i] * b[(int64_t)(i % V) * K + i / V];
    __shared__ float red[32];
#pragma unroll
    for (int s = 16; s; s >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, s);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float sum = 0.f;
        for (int w = 0; w < (int)blockDim.x / 32; w++) sum += red[w];
        dot[m] = sum;
    }
}

/* Reverse cumulative sums per (sequence, head): dg_t = sum_{u >= t} dlb_u (+ dot at the last token),
 * SCALAR gates. One block per (sequence, head): each thread sums a stretch
 * of tokens, the stretch sums are scanned, then each thread walks its stretch backwards. */
#define SCAN_THREADS 256
__global__ void gate_scan_kernel(const float *dlb, const float *dot, float *dg, int H, const int64_t *cu, int Tlen) {
    __shared__ double part[SCAN_THREADS];
    const int i = blockIdx.x, n = i / H, h = i % H, tid = threadIdx.x;
    const int64_t bos = cu ? cu[n] : (int64_t)n * Tlen, len = cu ? cu[n + 1] - cu[n] : Tlen;
    const int64_t per = (len + SCAN_THREADS - 1) / SCAN_THREADS, lo = bos + tid * per;
    const int64_t hi = lo + per < bos + len ? lo + per : bos + len;
    double sum = 0.0;
    for (int64_t t = lo; t < hi; t++) sum += dlb[t * H + h];
    part[tid] = sum;
    __syncthreads();
    if (tid == 0) { /* part[j] = everything after stretch j (+ dot) */
        double after = dot ? dot[i] : 0.0;
        for (int j = SCAN_THREADS - 1; j >= 0; j--) {
            const double here = part[j];
            part[j] = after;
            after += here;
        }
    }
    __syncthreads();
    double acc = part[tid];
    for (int64_t t = hi - 1; t >= lo; t--) {
        acc += dlb[t * H + h];
        dg[t * H + h] = (float)acc;
    }
}

template <typename T> __global__ void to_f32_kernel(const T *src, float *dst, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = to_f(src[i]);
}

static unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

template <typename T>
static void reverse_rows(const void *src, void *dst, int64_t tokens, int row, const int64_t *cu, int n_seqs, int Tlen,
                         cudaStream_t st) {
    if (tokens) reverse_rows_kernel<T><<<(unsigned)tokens, 128, 0, st>>>((const T *)src, (T *)dst, row, cu, n_seqs, Tlen);
}

static void reverse_any(lina_dtype dt, const void *src, void *dst, int64_t tokens, int row, const int64_t *cu,
                        int n_seqs, int Tlen, cudaStream_t st) {
    if (dt == LINA_DTYPE_F32) reverse_rows<float>(src, dst, tokens, row, cu, n_seqs, Tlen, st);
    else reverse_rows<uint16_t>(src, dst, tokens, row, cu, n_seqs, Tlen, st); /* 16-bit: a plain copy of bits */
}

template <typename T>
static void dlogb(const void *q, const void *k, const void *dq, const void *dk, float *dlb, int64_t rows, int K,
                  cudaStream_t st) {
    if (rows)
        dlogb_kernel<T><<<blocks_for(rows, 8), 256, 0, st>>>((const T *)q, (const T *)k, (const T *)dq, (const T *)dk,
                                                            dlb, rows, K);
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) {                                                                      \
            cudaFreeAsync(buf, st);                                                                \
            return st_;                                                                            \
        }                                                                                          \
    } while (0)

static const char fn[] = "lina_cuda_attn_backward";

/* The three runs; dg (by the identity) only for SCALAR gates with want_dg; the dv run is skipped when a->dv is NULL
 * (a->dh0 is then ignored). */
static lina_status chunk_add_bwd(const lina_attn_desc *d, lina_dtype dtype, const lina_cuda_attn_bwd_args *a,
                                 void *stream, int want_dg) {
    cudaStream_t st = (cudaStream_t)stream;
    const int H = d->H, K = d->K, V = d->V, N = d->cu_seqlens ? d->n_seqs : d->B;
    const float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)K);
    const int64_t tokens = (int64_t)d->B * d->T, KV = (int64_t)K * V, states = (int64_t)N * H;
    const size_t es = dtype == LINA_DTYPE_F32 ? 4 : 2;
    const int gated = d->gate != LINA_GATE_NONE, dg_here = d->gate == LINA_GATE_SCALAR && want_dg;

    /* workspace (256-byte aligned pieces) */
    size_t off = 0;
    auto take = [&](size_t bytes) { size_t at = off; off += (bytes + 255) / 256 * 256; return at; };
    const size_t o_cu = d->cu_seqlens ? take((size_t)(N + 1) * 8) : 0;
    const size_t o_qr = take(tokens * H * K * es), o_kr = take(tokens * H * K * es);
    const size_t o_vr = take(tokens * H * V * es), o_dor = take(tokens * H * V * es);
    const size_t o_dkr = take(tokens * H * K * es), o_dvr = take(tokens * H * V * es);
    const size_t o_gr = gated ? take(tokens * H * 4) : 0, o_dlb = dg_here ? take(tokens * H * 4) : 0;
    const size_t o_h0T = a->h0 ? take(states * KV * 4) : 0;
    const int need_ht = dg_here && a->dht;
    const size_t o_htT = need_ht ? take(states * KV * 4) : 0, o_dot = need_ht ? take(states * 4) : 0;
    const size_t o_dhtS = a->dht ? take(states * KV * 4) : 0, o_dhtT = a->dht ? take(states * KV * 4) : 0;
    unsigned char *buf = NULL;
    cudaError_t e = cudaMallocAsync((void **)&buf, off, st);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(e == cudaErrorMemoryAllocation ? LINA_ERR_OOM : LINA_ERR_CUDA,
                         "%s: cannot allocate %zu bytes of device workspace (reversed copies): %s", fn, off,
                         cudaGetErrorString(e));
    }
    const int64_t *cu = NULL;
    if (d->cu_seqlens) {
        e = cudaMemcpyAsync(buf + o_cu, d->cu_seqlens, (size_t)(N + 1) * 8, cudaMemcpyHostToDevice, st);
        if (e != cudaSuccess) {
            cudaFreeAsync(buf, st);
            return lina_fail(LINA_ERR_CUDA, "%s: copying cu_seqlens: %s", fn, cudaGetErrorString(e));
        }
        cu = (const int64_t *)(buf + o_cu);
    }
    void *q_r = buf + o_qr, *k_r = buf + o_kr, *v_r = buf + o_vr, *do_r = buf + o_dor;
    void *dk_r = buf + o_dkr, *dv_r = buf + o_dvr;
    float *g_r = gated ? (float *)(buf + o_gr) : NULL, *dlb = dg_here ? (float *)(buf + o_dlb) : NULL;
    float *h0T = a->h0 ? (float *)(buf + o_h0T) : NULL, *htT = need_ht ? (float *)(buf + o_htT) : NULL;
    float *dot = need_ht ? (float *)(buf + o_dot) : NULL;
    float *dhtS = a->dht ? (float *)(buf + o_dhtS) : NULL, *dhtT = a->dht ? (float *)(buf + o_dhtT) : NULL;

    /* dq: forward(q = do, k = v, v = k, same gates, h0^T); its final state is ht^T */
    if (h0T) transpose_scale_kernel<<<blocks_for(states * KV, 256), 256, 0, st>>>(a->h0, h0T, states, K, V, 1.f);
    lina_attn_desc dsw = *d; /* K and V swapped */
    dsw.K = V, dsw.V = K, dsw.HV = 0, dsw.scale = scale, dsw.form = LINA_FORM_CHUNK;
    lina_cuda_attn_fwd_args f1 = {a->dout, a->v, a->k, a->g, NULL, h0T, a->dq, htT};
    TRY(lina_cuda_attn_forward(&dsw, dtype, &f1, stream));

    /* reversed sequences */
    const int Tl = d->T;
    reverse_any(dtype, a->q, q_r, tokens, H * K, cu, N, Tl, st);
    reverse_any(dtype, a->k, k_r, tokens, H * K, cu, N, Tl, st);
    reverse_any(dtype, a->v, v_r, tokens, H * V, cu, N, Tl, st);
    reverse_any(dtype, a->dout, do_r, tokens, H * V, cu, N, Tl, st);
    if (gated && tokens)
        reverse_gates_kernel<<<blocks_for(tokens * H, 256), 256, 0, st>>>(a->g, g_r, d->gate, H, cu, N, Tl, tokens);
    if (a->dht) {
        scale_copy_kernel<<<blocks_for(states * KV, 256), 256, 0, st>>>(a->dht, dhtS, states * KV, 1.f / scale);
        transpose_scale_kernel<<<blocks_for(states * KV, 256), 256, 0, st>>>(a->dht, dhtT, states, K, V, 1.f / scale);
    }
    lina_attn_desc drv = *d;
    drv.HV = 0, drv.scale = scale, drv.form = LINA_FORM_CHUNK, drv.gate = gated ? LINA_GATE_SCALAR : LINA_GATE_NONE;
    /* dv (reversed): forward(q = rev k, k = rev q, v = rev do, h0 = dht / scale); final state -> dh0 */
    if (a->dv) {
        lina_cuda_attn_fwd_args f2 = {k_r, q_r, do_r, g_r, NULL, dhtS, dv_r, a->dh0};
        TRY(lina_cuda_attn_forward(&drv, dtype, &f2, stream));
    }
    /* dk (reversed): forward(q = rev v, k = rev do, v = rev q, h0 = dht^T / scale) */
    lina_attn_desc drs = drv;
    drs.K = V, drs.V = K;
    lina_cuda_attn_fwd_args f3 = {v_r, do_r, q_r, g_r, NULL, dhtT, dk_r, NULL};
    TRY(lina_cuda_attn_forward(&drs, dtype, &f3, stream));
    if (a->dv) reverse_any(dtype, dv_r, a->dv, tokens, H * V, cu, N, Tl, st);
    reverse_any(dtype, dk_r, a->dk, tokens, H * K, cu, N, Tl, st);
    if (a->dv && a->dh0)
        dh0_scale_kernel<<<blocks_for(states * KV, 256), 256, 0, st>>>(a->dh0, a->g, d->gate, H, KV, cu, N, Tl, scale);

    if (dg_here) {
        if (dtype == LINA_DTYPE_F32) dlogb<float>(a->q, a->k, a->dq, a->dk, dlb, tokens * H, K, st);
        else if (dtype == LINA_DTYPE_BF16) dlogb<__nv_bfloat16>(a->q, a->k, a->dq, a->dk, dlb, tokens * H, K, st);
        else dlogb<__half>(a->q, a->k, a->dq, a->dk, dlb, tokens * H, K, st);
        if (need_ht) state_dot_kernel<<<(unsigned)states, 256, 0, st>>>(a->dht, htT, dot, K, V);
        if (states) gate_scan_kernel<<<(unsigned)states, SCAN_THREADS, 0, st>>>(dlb, dot, a->dg, H, cu, Tl);
    }
    e = cudaGetLastError();
    cudaFreeAsync(buf, st);
    if (e != cudaSuccess) return lina_fail(LINA_ERR_CUDA, "%s: kernel launch: %s", fn, cudaGetErrorString(e));
    return LINA_OK;
}

/* dL/db_t = q.dq - k.dk cancels: across a long sequence both terms hold every pair of tokens
 * and only the pairs crossing t survive, so 16-bit dq, dk (relative error ~2^-9) gave dg off by
 * 1e-1 on the H200 tests. With 16-bit inputs the gates' gradient therefore comes from a second
 * set of runs in fp32 (dq, dk to ~1e-6; dv not needed); dq, dk, dv, dh0 from the 16-bit runs. */
extern "C" lina_status lina_cuda_chunk_add_backward(const lina_attn_desc *d, lina_dtype dtype,
                                                    const lina_cuda_attn_bwd_args *a, void *stream) {
    if (d->gate == LINA_GATE_NONE || !a->dg || dtype == LINA_DTYPE_F32) return chunk_add_bwd(d, dtype, a, stream, a->dg != NULL);
    cudaStream_t st = (cudaStream_t)stream;
    const int64_t tokens = (int64_t)d->B * d->T, nqk = tokens * d->H * d->K, nv = tokens * d->H * d->V;
    const size_t bytes = (size_t)(4 * nqk + 2 * nv) * 4;
    float *buf = NULL;
    cudaError_t e = bytes ? cudaMallocAsync((void **)&buf, bytes, st) : cudaSuccess;
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(e == cudaErrorMemoryAllocation ? LINA_ERR_OOM : LINA_ERR_CUDA,
                         "%s: cannot allocate %zu bytes of device workspace (fp32 copies): %s", fn, bytes,
                         cudaGetErrorString(e));
    }
    float *q32 = buf, *k32 = q32 + nqk, *dq32 = k32 + nqk, *dk32 = dq32 + nqk, *v32 = dk32 + nqk, *do32 = v32 + nv;
    const void *src[4] = {a->q, a->k, a->v, a->dout};
    float *dst[4] = {q32, k32, v32, do32};
    const int64_t len[4] = {nqk, nqk, nv, nv};
    for (int i = 0; i < 4 && len[i]; i++) {
        if (dtype == LINA_DTYPE_BF16)
            to_f32_kernel<<<blocks_for(len[i], 256), 256, 0, st>>>((const __nv_bfloat16 *)src[i], dst[i], len[i]);
        else
            to_f32_kernel<<<blocks_for(len[i], 256), 256, 0, st>>>((const __half *)src[i], dst[i], len[i]);
    }
    lina_cuda_attn_bwd_args a32 = {q32, k32, v32, a->g, NULL, a->h0, do32, a->dht, dq32, dk32, NULL, a->dg, NULL, NULL};
    lina_status rc = chunk_add_bwd(d, LINA_DTYPE_F32, &a32, stream, 1);
    if (rc == LINA_OK) rc = chunk_add_bwd(d, dtype, a, stream, 0);
    cudaFreeAsync(buf, st);
    return rc;
}
