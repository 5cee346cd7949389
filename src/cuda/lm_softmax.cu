/* Causal softmax attention on the GPU, fp32, for the language model's training path: the
 * device twin of lina_softmax_forward / lina_softmax_backward (src/ops/softmax.c) in the case
 * mixer_softmax.c uses (causal, HKV = H, no window, no varlen, scale = 1/sqrt(K)).
 *
 * Layout: q, k (B, T, H, K), v, o, d_o (B, T, H, V), lse (B, T, H). Head h of batch b is the
 * row-major (T, K) matrix at q + (b T H + h) K with leading dimension H K, so for a fixed h
 * the B matrices are equally spaced (stride T H K): one cuBLAS strided-batched GEMM covers
 * all batches of one head, and heads are looped (H <= 8 in practice). No transposed copies.
 *
 * Forward, per head h (S, P: (B, T, T) in ws):
 *   S = scale Q K^T                                  (GEMM)
 *   m_i = max_{j<=i} S_ij,  l_i = sum_{j<=i} e^{S_ij - m_i}
 *   P_ij = e^{S_ij - m_i} / l_i for j <= i, 0 above the diagonal;  lse_i = m_i + ln l_i
 *   O = P V                                          (GEMM; the zeros make it causal)
 * Backward, per head h (P recomputed from q, k, lse; dP then dS in the second (B, T, T) slab):
 *   S = scale Q K^T,  dP = dO V^T                    (GEMMs)
 *   D_i = sum_c dO_ic O_ic (double),  P_ij = e^{S_ij - lse_i} (j <= i, else 0),
 *   dS_ij = P_ij (dP_ij - D_i)
 *   dV = P^T dO,  dQ = scale dS K,  dK = scale dS^T Q  (GEMMs, overwriting)
 * The GEMMs run over the full T x T square (the masked half is multiplied by exact zeros);
 * all products are fp32 (CUBLAS_COMPUTE_32F, no TF32), as on the CPU: the caller's handle may
 * be in TF32 math mode for the projections (LINA_CUDA_TF32), which CUBLAS_COMPUTE_32F would
 * follow, so the launchers switch it to CUBLAS_DEFAULT_MATH and restore it on return (a host
 * setting read when each GEMM is enqueued; nothing is synchronized).
 *
 * Workspace: 2 B T T floats (the forward uses the first half); it is reused head after head,
 * which the single stream orders. */
#include <cublas_v2.h>
#include <math.h>

#include "lm_kernels.h"

#define SM_WARPS 8 /* rows per block: one warp per score row */

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ double warp_sum_d(double x) {
    for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Row (b, i) of head h: S (B, T, T) scores -> probabilities in place (0 above the diagonal),
 * lse[(b T + i) H + h]. The diagonal is always visible, so m is finite and l >= 1. */
__global__ void __launch_bounds__(SM_WARPS * 32)
    sm_rows_fwd(int BT, int T, int H, int h, float *S, float *lse) {
    const int row = blockIdx.x * SM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= BT) return; /* whole warps leave together: the shuffles stay full */
    const int i = row % T;
    float *s = S + (size_t)row * T;
    float m = -INFINITY;
    for (int j = lane; j <= i; j += 32) m = fmaxf(m, s[j]);
    m = warp_max(m);
    float l = 0.f;
    for (int j = lane; j <= i; j += 32) {
        const float e = expf(s[j] - m);
        s[j] = e; /* each lane rereads only its own j below */
        l += e;
    }
    l = warp_sum(l);
    const float inv = 1.f / l;
    for (int j = lane; j < T; j += 32) s[j] = j <= i ? s[j] * inv : 0.f;
    if (lane == 0) lse[(size_t)row * H + h] = m + logf(l);
}

/* Row (b, i) of head h: S (scores) -> P = e^{S - lse} in place, dP -> dS = P (dP - D) in place,
 * D = dO_i . O_i accumulated in double (the CPU does too: dS cancels to ~0 in row sums, so D's
 * rounding shows directly in dq, dk). Masked entries are written as exact zeros in both. */
__global__ void __launch_bounds__(SM_WARPS * 32)
    sm_rows_bwd(int BT, int T, int H, int V, int h, const float *o, const float *d_o, const float *lse, float *S,
                float *dP) {
    const int row = blockIdx.x * SM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= BT) return;
    const int i = row % T;
    const size_t r = (size_t)row * H + h; /* (b T + i) H + h */
    const float *oi = o + r * V, *gi = d_o + r * V;
    double acc = 0.0;
    for (int c = lane; c < V; c += 32) acc += (double)gi[c] * oi[c];
    const float D = (float)warp_sum_d(acc), L = lse[r];
    float *s = S + (size_t)row * T, *dp = dP + (size_t)row * T;
    for (int j = lane; j < T; j += 32) {
        if (j <= i) {
            const float p = expf(s[j] - L);
            s[j] = p;
            dp[j] = p * (dp[j] - D);
        } else {
            s[j] = 0.f;
            dp[j] = 0.f;
        }
    }
}

/* Row-major C (M x N) = alpha op(A) op(B), batched over `batch` equally spaced matrices;
 * lda, ldb, ldc are row-major leading dimensions. cuBLAS is column-major, so compute
 * C^T = op(B)^T op(A)^T: swap the operands and M, N, keep the transposition flags.
 * beta = 0: C is not read (it may hold anything, NaN included). */
static void rgemm(cublasHandle_t hd, int ta, int tb, int M, int N, int Kd, float alpha, const float *A, int lda,
                  long long sa, const float *Bm, int ldb, long long sb, float *C, int ldc, long long sc, int batch) {
    const float beta = 0.f;
    (void)cublasGemmStridedBatchedEx(hd, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, Kd,
                                     &alpha, Bm, CUDA_R_32F, ldb, sb, A, CUDA_R_32F, lda, sa, &beta, C, CUDA_R_32F,
                                     ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* Pure fp32 GEMMs whatever math mode the caller's handle is in (see the header comment). */
static cublasMath_t fp32_math(cublasHandle_t hd) {
    cublasMath_t mode = CUBLAS_DEFAULT_MATH;
    (void)cublasGetMathMode(hd, &mode);
    if (mode != CUBLAS_DEFAULT_MATH) (void)cublasSetMathMode(hd, CUBLAS_DEFAULT_MATH);
    return mode;
}
static void restore_math(cublasHandle_t hd, cublasMath_t mode) {
    if (mode != CUBLAS_DEFAULT_MATH) (void)cublasSetMathMode(hd, mode);
}

extern "C" size_t lk_softmax_ws_floats(int B, int T, int H) {
    (void)H; /* heads run one after another on the same slabs */
    return 2 * (size_t)B * T * T;
}

extern "C" void lk_softmax_forward(cublasHandle_t blas, int B, int T, int H, int K, int V, const float *q,
                                   const float *k, const float *v, float *o, float *lse, float *ws,
                                   cudaStream_t s) {
    if (B <= 0 || T <= 0 || H <= 0 || K <= 0 || V <= 0) return;
    const float scale = 1.0f / sqrtf((float)K); /* the CPU's default, bit for bit */
    const int HK = H * K, HV = H * V, BT = B * T;
    const long long sK = (long long)T * HK, sV = (long long)T * HV, sTT = (long long)T * T;
    const unsigned blocks = (unsigned)((BT + SM_WARPS - 1) / SM_WARPS);
    float *S = ws;
    const cublasMath_t mode = fp32_math(blas);
    for (int h = 0; h < H; h++) {
        rgemm(blas, 0, 1, T, T, K, scale, q + (size_t)h * K, HK, sK, k + (size_t)h * K, HK, sK, S, T, sTT, B);
        sm_rows_fwd<<<blocks, SM_WARPS * 32, 0, s>>>(BT, T, H, h, S, lse);
        rgemm(blas, 0, 0, T, V, T, 1.f, S, T, sTT, v + (size_t)h * V, HV, sV, o + (size_t)h * V, HV, sV, B);
    }
    restore_math(blas, mode);
}

extern "C" void lk_softmax_backward(cublasHandle_t blas, int B, int T, int H, int K, int V, const float *q,
                                    const float *k, const float *v, const float *o, const float *lse,
                                    const float *d_o, float *dq, float *dk, float *dv, float *ws, cudaStream_t s) {
    if (B <= 0 || T <= 0 || H <= 0 || K <= 0 || V <= 0) return;
    const float scale = 1.0f / sqrtf((float)K);
    const int HK = H * K, HV = H * V, BT = B * T;
    const long long sK = (long long)T * HK, sV = (long long)T * HV, sTT = (long long)T * T;
    const unsigned blocks = (unsigned)((BT + SM_WARPS - 1) / SM_WARPS);
    float *S = ws, *dP = ws + (size_t)B * T * T; /* S -> P, dP -> dS */
    const cublasMath_t mode = fp32_math(blas);
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * K, *kh = k + (size_t)h * K, *vh = v + (size_t)h * V;
        const float *doh = d_o + (size_t)h * V;
        rgemm(blas, 0, 1, T, T, K, scale, qh, HK, sK, kh, HK, sK, S, T, sTT, B);
        rgemm(blas, 0, 1, T, T, V, 1.f, doh, HV, sV, vh, HV, sV, dP, T, sTT, B);
        sm_rows_bwd<<<blocks, SM_WARPS * 32, 0, s>>>(BT, T, H, V, h, o, d_o, lse, S, dP);
        rgemm(blas, 1, 0, T, V, T, 1.f, S, T, sTT, doh, HV, sV, dv + (size_t)h * V, HV, sV, B);
        rgemm(blas, 0, 0, T, K, T, scale, dP, T, sTT, kh, HK, sK, dq + (size_t)h * K, HK, sK, B);
        rgemm(blas, 1, 0, T, K, T, scale, dP, T, sTT, qh, HK, sK, dk + (size_t)h * K, HK, sK, B);
    }
    restore_math(blas, mode);
}
