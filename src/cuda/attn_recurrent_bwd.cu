/* Backward of the linear-attention recurrence, token by token: every gate
 * (NONE, CONST, SCALAR, VECTOR), both updates, fp32 / bf16 / fp16 inputs.
 *
 * Forward per token (as attn_recurrent.cu):
 *   Sg = G_t S_{t-1},  w = v_t - Sg^T k_t (delta),  u = beta_t w | v_t,
 *   S_t = Sg + k_t u^T,  o_t = scale S_t^T q_t.
 * Reverse, with dS = dL/dS_t (dht at the end, plus every later token's share):
 *   dq_t  = scale S_t do_t                    dS   += scale q_t do_t^T
 *   du    = dS^T k_t                          dk_t  = dS u [- beta_t Sg du]
 *   dv_t  = du | beta_t du                    dbeta_t = du . w
 *   dSg   = dS [- beta_t k_t du^T]            dg_t  = sum over the value columns of dSg o Sg
 *   dS_{t-1} = G_t dSg                        (dg_t also summed over k for SCALAR, over t for CONST)
 * The states are not invertible (gates down to e^-20, beta k k^T projections), so the
 * forward sweep (recurrent_fwd_kernel with p.ckpt) keeps the state before every 16th
 * token; the reverse sweep reloads one such checkpoint, recomputes its 16 gated states
 * Sg into a per-block scratch (each thread reads back only what it wrote) and walks
 * them backwards.
 *
 * Block (32 x 8 threads) per (sequence, value head, 32 value columns), thread (x, y)
 * holding rows y, y + 8, ... of column x as in the forward kernel. Sums over k reduce
 * across the 8 rows of threads in shared memory; sums over the value columns (dq, dk,
 * dg) go through a (K x 33) shared tile, then atomically into fp32 accumulators shared
 * by the value tiles and by the value heads of a group. */
#include "cuda_internal.h"
#include "cuda_types.h"

#define BWD_COLS 32
#define BWD_ROWS 8
#define BWD_THREADS (BWD_COLS * BWD_ROWS)
#define CB LINA_CUDA_CKPT_EVERY

/* Dynamic shared memory of the reverse kernel, in floats. */
static size_t bwd_smem_floats(int K) {
    return 3 * (size_t)CB * K              /* q, k, e^g of the stretch */
           + 4 * (size_t)CB * BWD_COLS     /* v, do, u, w */
           + CB                            /* beta */
           + BWD_ROWS * (BWD_COLS + 1)     /* sums over k */
           + 3 * (size_t)K * (BWD_COLS + 1); /* dq, dk, dg before the sums over columns */
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int m = 16; m; m >>= 1) x += __shfl_xor_sync(0xffffffffu, x, m);
    return x;
}

/* Two blocks per SM up to NI = 16 (K <= 128): without the bound the K = 128 kernel took 154
 * registers, one block per SM, and the backward ran 61 -> 81 ms at B8 T4096 H16 (runs 11-16) */
template <typename T, int NI>
__global__ void __launch_bounds__(BWD_THREADS, NI <= 16 ? 2 : 1) recurrent_bwd_kernel(lina_cuda_attn_bwd_params bp) {
    const lina_cuda_attn_params &p = bp.f;
    extern __shared__ float sm[];
    const int K = p.K;
    float *q_s = sm, *k_s = q_s + CB * K, *dec_s = k_s + CB * K;
    float *v_s = dec_s + CB * K, *do_s = v_s + CB * BWD_COLS, *u_s = do_s + CB * BWD_COLS, *w_s = u_s + CB * BWD_COLS;
    float *beta_s = w_s + CB * BWD_COLS, *red = beta_s + CB;
    float *part = red + BWD_ROWS * (BWD_COLS + 1); /* [3][K][33] */
    float *part_dq = part, *part_dk = part + K * (BWD_COLS + 1), *part_dg = part + 2 * K * (BWD_COLS + 1);

    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * BWD_COLS + tx;
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int col = blockIdx.y * BWD_COLS + tx;
    const bool valid = col < p.V;
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const size_t state_off = ((size_t)n * p.HV + hv) * K * p.V + col;
    const int64_t ckpt_base = p.ckpt0 ? p.ckpt0[n] : (int64_t)n * ((p.T + CB - 1) / CB);
    float *scratch = bp.scratch + ((size_t)blockIdx.x * gridDim.y + blockIdx.y) * CB * NI * BWD_THREADS + tid;
    const bool gated = p.gate != LINA_GATE_NONE, want_dg = gated && bp.dg; /* dg NULL: not wanted */

    float ds[NI], s[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) {
        const int kk = ty + BWD_ROWS * i;
        ds[i] = (bp.dht && valid && kk < K) ? bp.dht[state_off + (size_t)kk * p.V] : 0.f;
    }
    double dg_const = 0.0; /* CONST: this thread's row sums over all tokens (a long sum: double) */

    for (int j = (len + CB - 1) / CB - 1; j >= 0; j--) {
        const int t0 = j * CB, cb = min(CB, len - t0);
        __syncthreads(); /* the previous stretch is done with the shared arrays */
        for (int idx = tid; idx < cb * K; idx += BWD_THREADS) {
            const int t = idx / K, kk = idx % K;
            const int64_t tok = bos + t0 + t;
            q_s[t * K + kk] = to_f(((const T *)p.q)[(tok * p.H + h) * K + kk]);
            k_s[t * K + kk] = to_f(((const T *)p.k)[(tok * p.H + h) * K + kk]);
            float g = 0.f;
            if (p.gate == LINA_GATE_CONST) g = p.g[hv];
            else if (p.gate == LINA_GATE_SCALAR) g = p.g[tok * p.HV + hv];
            else if (p.gate == LINA_GATE_VECTOR) g = p.g[(tok * p.HV + hv) * K + kk];
            dec_s[t * K + kk] = expf(g);
        }
        for (int idx = tid; idx < cb * BWD_COLS; idx += BWD_THREADS) {
            const int t = idx / BWD_COLS, c = idx % BWD_COLS, cc = blockIdx.y * BWD_COLS + c;
            const int64_t at = ((bos + t0 + t) * p.HV + hv) * p.V + cc;
            const bool ok = cc < p.V;
            v_s[idx] = ok ? to_f(((const T *)p.v)[at]) : 0.f;
            do_s[idx] = ok ? to_f(((const T *)bp.dout)[at]) : 0.f;
        }
        if (tid < cb) beta_s[tid] = p.delta ? p.beta[(bos + t0 + tid) * p.HV + hv] : 1.f;
        const float *c = p.ckpt + ((ckpt_base + j) * p.HV + hv) * K * p.V + col;
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int kk = ty + BWD_ROWS * i;
            s[i] = (valid && kk < K) ? c[(size_t)kk * p.V] : 0.f;
        }
        __syncthreads();

        /* recompute the stretch: Sg per token into the scratch, u (and w) into shared memory */
        for (int t = 0; t < cb; t++) {
            const float *kt = k_s + t * K, *dt = dec_s + t * K;
            float part_sk = 0.f;
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int kk = ty + BWD_ROWS * i;
                if (kk < K) {
                    s[i] *= dt[kk];
                    part_sk = fmaf(kt[kk], s[i], part_sk);
                }
                scratch[(t * NI + i) * BWD_THREADS] = s[i];
            }
            float u = v_s[t * BWD_COLS + tx];
            if (p.delta) {
                red[ty * (BWD_COLS + 1) + tx] = part_sk;
                __syncthreads();
                float sk = 0.f;
#pragma unroll
                for (int y = 0; y < BWD_ROWS; y++) sk += red[y * (BWD_COLS + 1) + tx];
                const float w = u - sk;
                u = beta_s[t] * w;
                if (ty == 0) {
                    u_s[t * BWD_COLS + tx] = u;
                    w_s[t * BWD_COLS + tx] = w;
                }
                __syncthreads(); /* red is rewritten by the next token */
            }
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int kk = ty + BWD_ROWS * i;
                if (kk < K) s[i] = fmaf(kt[kk], u, s[i]);
            }
        }
        __syncthreads(); /* u_s, w_s */

        for (int t = cb - 1; t >= 0; t--) {
            const int64_t tok = bos + t0 + t;
            const float *qt = q_s + t * K, *kt = k_s + t * K, *dt = dec_s + t * K;
            const float u = p.delta ? u_s[t * BWD_COLS + tx] : v_s[t * BWD_COLS + tx];
            const float dov = do_s[t * BWD_COLS + tx];
            float sg[NI], part_du = 0.f;
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int kk = ty + BWD_ROWS * i;
                sg[i] = scratch[(t * NI + i) * BWD_THREADS];
                if (kk < K) {
                    part_dq[kk * (BWD_COLS + 1) + tx] = p.scale * fmaf(kt[kk], u, sg[i]) * dov;
                    ds[i] = fmaf(p.scale * qt[kk], dov, ds[i]);
                    part_du = fmaf(ds[i], kt[kk], part_du);
                }
            }
            red[ty * (BWD_COLS + 1) + tx] = part_du;
            __syncthreads();
            float du = 0.f;
#pragma unroll
            for (int y = 0; y < BWD_ROWS; y++) du += red[y * (BWD_COLS + 1) + tx];
            const float bdu = beta_s[t] * du; /* additive: beta = 1 */
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int kk = ty + BWD_ROWS * i;
                if (kk < K) {
                    float dk = ds[i] * u, dsg = ds[i];
                    if (p.delta) {
                        dk = fmaf(-bdu, sg[i], dk);
                        dsg = fmaf(-kt[kk], bdu, dsg);
                    }
                    part_dk[kk * (BWD_COLS + 1) + tx] = dk;
                    if (want_dg) part_dg[kk * (BWD_COLS + 1) + tx] = dsg * sg[i];
                    if (gated) dsg *= dt[kk];
                    ds[i] = dsg;
                }
            }
            if (ty == 0) {
                if (valid) ((T *)bp.dv)[(tok * p.HV + hv) * p.V + col] = from_f<T>(bdu);
                if (p.delta) {
                    const float db = warp_sum(valid ? du * w_s[t * BWD_COLS + tx] : 0.f);
                    if (tx == 0) atomicAdd(bp.dbeta + tok * p.HV + hv, db);
                }
            }
            __syncthreads();
            /* sums over the 32 value columns: thread kk < K owns row kk */
            if (tid < ((K + 31) & ~31)) {
                const int kk = tid;
                float dq = 0.f, dk = 0.f, dg = 0.f;
                if (kk < K) {
                    const float *a = part_dq + kk * (BWD_COLS + 1), *b = part_dk + kk * (BWD_COLS + 1),
                                *e = part_dg + kk * (BWD_COLS + 1);
#pragma unroll 8
                    for (int x = 0; x < BWD_COLS; x++) {
                        dq += a[x];
                        dk += b[x];
                        if (want_dg) dg += e[x];
                    }
                    atomicAdd(bp.dq_acc + (tok * p.H + h) * K + kk, dq);
                    atomicAdd(bp.dk_acc + (tok * p.H + h) * K + kk, dk);
                    if (want_dg && p.gate == LINA_GATE_VECTOR) atomicAdd(bp.dg + (tok * p.HV + hv) * K + kk, dg);
                }
                if (want_dg && p.gate == LINA_GATE_SCALAR) {
                    dg = warp_sum(dg);
                    if ((tid & 31) == 0) atomicAdd(bp.dg + tok * p.HV + hv, dg);
                } else if (p.gate == LINA_GATE_CONST) {
                    dg_const += dg;
                }
            }
            __syncthreads(); /* part and red are rewritten by the next token */
        }
    }
    if (want_dg && p.gate == LINA_GATE_CONST && tid < ((K + 31) & ~31)) {
#pragma unroll
        for (int m = 16; m; m >>= 1) dg_const += __shfl_xor_sync(0xffffffffu, dg_const, m);
        if ((tid & 31) == 0) atomicAdd(bp.dg + hv, (float)dg_const);
    }
    if (bp.dh0 && valid)
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int kk = ty + BWD_ROWS * i;
            if (kk < K) bp.dh0[state_off + (size_t)kk * p.V] = ds[i];
        }
}

template <typename T, int NI>
static int launch_bwd(const lina_cuda_attn_bwd_params *p, cudaStream_t st) {
    const size_t smem = bwd_smem_floats(p->f.K) * sizeof(float);
    cudaError_t e = cudaFuncSetAttribute(recurrent_bwd_kernel<T, NI>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) return (int)e;
    dim3 grid((unsigned)(p->f.n_seqs * p->f.HV), (unsigned)((p->f.V + BWD_COLS - 1) / BWD_COLS));
    recurrent_bwd_kernel<T, NI><<<grid, dim3(BWD_COLS, BWD_ROWS), smem, st>>>(*p);
    return (int)cudaGetLastError();
}

template <typename T>
static int launch_bwd_dims(const lina_cuda_attn_bwd_params *p, cudaStream_t st) {
    switch (lina_cuda_bwd_rows_per_thread(p->f.K)) {
    case 8: return launch_bwd<T, 8>(p, st);
    case 16: return launch_bwd<T, 16>(p, st);
    default: return launch_bwd<T, 32>(p, st);
    }
}

extern "C" int lina_cuda_recurrent_backward(const lina_cuda_attn_bwd_params *p, lina_dtype dtype, void *stream) {
    /* forward sweep: checkpoints only */
    lina_cuda_attn_params f = p->f;
    f.o = NULL;
    f.ht = NULL;
    int rc = lina_cuda_recurrent_forward(&f, dtype, stream);
    if (rc) return rc;
    cudaStream_t st = (cudaStream_t)stream;
    switch (dtype) {
    case LINA_DTYPE_F32: return launch_bwd_dims<float>(p, st);
    case LINA_DTYPE_BF16: return launch_bwd_dims<__nv_bfloat16>(p, st);
    default: return launch_bwd_dims<__half>(p, st);
    }
}

template <typename T> __global__ void convert_kernel(const float *src, T *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f<T>(src[i]);
}

extern "C" int lina_cuda_convert_f32(const float *src, void *dst, size_t n, lina_dtype dtype, void *stream) {
    if (!n) return 0;
    const unsigned blocks = (unsigned)(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536);
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == LINA_DTYPE_BF16) convert_kernel<<<blocks, 256, 0, st>>>(src, (__nv_bfloat16 *)dst, n);
    else if (dtype == LINA_DTYPE_F16) convert_kernel<<<blocks, 256, 0, st>>>(src, (__half *)dst, n);
    else return (int)cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, st);
    return (int)cudaGetLastError();
}
