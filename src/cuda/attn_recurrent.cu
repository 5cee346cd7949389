/* Token-by-token forward kernel: every gate (NONE, CONST, SCALAR, VECTOR) and
 * both updates. It runs the decode step where attn_step.cu's kernel does not
 * apply (K > 128, V % 4 != 0), the VECTOR-gate forward and form RECURRENT. Per token, as the CPU reference (attn_recurrent.c):
 *   S <- diag(e^{g_t}) S
 *   u = beta_t (v_t - S^T k_t)  (delta)  |  u = v_t  (additive)
 *   S <- S + k_t u^T;   o_t = scale S^T q_t
 * Block (32 x 8 threads) per (sequence, value head, 32 value columns):
 * thread (x, y) holds S[kk][col] for kk = y, y + 8, ... in registers
 * (K <= 256: 32 registers), column col = 32 * blockIdx.y + x. The sums over
 * K are reduced across the 8 rows of threads through shared memory. */
#include "cuda_internal.h"
#include "cuda_types.h"

#define REC_COLS 32
#define REC_ROWS 8
#define REC_PER_THREAD (LINA_CUDA_MAX_HEAD_DIM / REC_ROWS)

template <typename T>
__global__ void __launch_bounds__(REC_COLS *REC_ROWS) recurrent_fwd_kernel(lina_cuda_attn_params p) {
    __shared__ float q_s[LINA_CUDA_MAX_HEAD_DIM], k_s[LINA_CUDA_MAX_HEAD_DIM];
    __shared__ float decay_s[LINA_CUDA_MAX_HEAD_DIM]; /* e^{g_t} per key channel */
    __shared__ float v_s[REC_COLS], red[REC_ROWS][REC_COLS + 1];
    __shared__ float beta_s;

    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * REC_COLS + tx;
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int col = blockIdx.y * REC_COLS + tx;
    const bool valid = col < p.V;
    int64_t bos;
    int len;
    seq_range(p.cu, p.T, n, &bos, &len);
    const size_t state_off = ((size_t)n * p.HV + hv) * p.K * p.V + col;

    float s[REC_PER_THREAD]; /* S[ty + 8 i][col] */
#pragma unroll
    for (int i = 0; i < REC_PER_THREAD; i++) {
        const int kk = ty + REC_ROWS * i;
        s[i] = (p.h0 && valid && kk < p.K) ? p.h0[state_off + (size_t)kk * p.V] : 0.f;
    }

    const int64_t ckpt_base = p.ckpt0 ? p.ckpt0[n] : (int64_t)n * ((p.T + LINA_CUDA_CKPT_EVERY - 1) / LINA_CUDA_CKPT_EVERY);
    for (int t = 0; t < len; t++) {
        const int64_t tok = bos + t;
        if (p.ckpt && t % LINA_CUDA_CKPT_EVERY == 0 && valid) {
            float *c = p.ckpt + ((ckpt_base + t / LINA_CUDA_CKPT_EVERY) * p.HV + hv) * p.K * p.V + col;
#pragma unroll
            for (int i = 0; i < REC_PER_THREAD; i++) {
                const int kk = ty + REC_ROWS * i;
                if (kk < p.K) c[(size_t)kk * p.V] = s[i];
            }
        }
        const T *q = (const T *)p.q + (tok * p.H + h) * p.K, *k = (const T *)p.k + (tok * p.H + h) * p.K;
        for (int kk = tid; kk < p.K; kk += REC_COLS * REC_ROWS) {
            q_s[kk] = to_f(q[kk]);
            k_s[kk] = to_f(k[kk]);
            float g = 0.f;
            if (p.gate == LINA_GATE_CONST) g = p.g[hv];
            else if (p.gate == LINA_GATE_SCALAR) g = p.g[tok * p.HV + hv];
            else if (p.gate == LINA_GATE_VECTOR) g = p.g[(tok * p.HV + hv) * p.K + kk];
            decay_s[kk] = expf(g);
        }
        if (ty == 0) v_s[tx] = valid ? to_f(((const T *)p.v)[(tok * p.HV + hv) * p.V + col]) : 0.f;
        if (tid == 0 && p.delta) beta_s = p.beta[tok * p.HV + hv];
        __syncthreads();

        float u = v_s[tx];
        if (p.delta) { /* u = beta (v - (G S)^T k) */
            float part = 0.f;
#pragma unroll
            for (int i = 0; i < REC_PER_THREAD; i++) {
                const int kk = ty + REC_ROWS * i;
                if (kk < p.K) {
                    s[i] *= decay_s[kk];
                    part = fmaf(k_s[kk], s[i], part);
                }
            }
            red[ty][tx] = part;
            __syncthreads();
            float sk = 0.f;
#pragma unroll
            for (int y = 0; y < REC_ROWS; y++) sk += red[y][tx];
            u = beta_s * (u - sk);
            __syncthreads(); /* red is reused below */
        } else {
#pragma unroll
            for (int i = 0; i < REC_PER_THREAD; i++) {
                const int kk = ty + REC_ROWS * i;
                if (kk < p.K) s[i] *= decay_s[kk];
            }
        }
        float part = 0.f;
#pragma unroll
        for (int i = 0; i < REC_PER_THREAD; i++) {
            const int kk = ty + REC_ROWS * i;
            if (kk < p.K) {
                s[i] = fmaf(k_s[kk], u, s[i]);
                part = fmaf(q_s[kk], s[i], part);
            }
        }
        if (!p.o) { /* checkpoint sweep: no outputs; q_s, k_s, v_s are rewritten next token */
            __syncthreads();
            continue;
        }
        red[ty][tx] = part;
        __syncthreads();
        if (ty == 0 && valid) {
            float o = 0.f;
#pragma unroll
            for (int y = 0; y < REC_ROWS; y++) o += red[y][tx];
            ((T *)p.o)[(tok * p.HV + hv) * p.V + col] = from_f<T>(p.scale * o);
        }
        __syncthreads(); /* q_s, k_s, v_s and red are rewritten by the next token */
    }
    if (p.ht && valid)
#pragma unroll
        for (int i = 0; i < REC_PER_THREAD; i++) {
            const int kk = ty + REC_ROWS * i;
            if (kk < p.K) p.ht[state_off + (size_t)kk * p.V] = s[i];
        }
}

extern "C" int lina_cuda_recurrent_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    dim3 grid((unsigned)(p->n_seqs * p->HV), (unsigned)((p->V + REC_COLS - 1) / REC_COLS));
    dim3 block(REC_COLS, REC_ROWS);
    cudaStream_t st = (cudaStream_t)stream;
    switch (dtype) {
    case LINA_DTYPE_F32: recurrent_fwd_kernel<float><<<grid, block, 0, st>>>(*p); break;
    case LINA_DTYPE_BF16: recurrent_fwd_kernel<__nv_bfloat16><<<grid, block, 0, st>>>(*p); break;
    default: recurrent_fwd_kernel<__half><<<grid, block, 0, st>>>(*p); break;
    }
    return (int)cudaGetLastError();
}
