/* Single-token decode step (lina_cuda_attn_step) for K <= 128 and V % 4 == 0, every gate and
 * both updates, as attn_recurrent.cu's kernel at T = 1:
 *   S <- diag(e^{g}) S;   u = beta (v - S^T k)  (delta)  |  u = v  (additive)
 *   S <- S + k u^T;       o = scale S^T q
 * The step is bound by the fp32 state's bytes (read once, written once: N HV K V 8 bytes;
 * B64 H16 K=V=128: 134 MB, 31 us at 4.3 TB/s). Block (256 threads) per (sequence, value head,
 * 32 value columns); thread (x, y) = (tid % 8, tid / 8) holds S[y + 32 i][4 x .. 4 x + 3] for
 * i < K / 32 as float4, so each state row of the block is one 128-byte line read by 8 threads
 * with 16-byte loads. Sums over K: the 4 rows of threads in a warp by shuffles, the 8 warps
 * through shared memory. */
#include "cuda_internal.h"
#include "cuda_types.h"

#define STEP_QUADS 8                        /* column quads per block: 32 columns */
#define STEP_ROWS 32                        /* rows of threads */
#define STEP_MAX_K 128
#define STEP_RI (STEP_MAX_K / STEP_ROWS)    /* state rows per thread */
#define STEP_THREADS (STEP_QUADS * STEP_ROWS)
#define STEP_WARPS (STEP_THREADS / 32)

static __device__ __forceinline__ float4 fma4(float a, float4 b, float4 c) {
    return make_float4(fmaf(a, b.x, c.x), fmaf(a, b.y, c.y), fmaf(a, b.z, c.z), fmaf(a, b.w, c.w));
}

/* sum over the block's rows of threads of each column quad; every thread gets its quad's sums */
static __device__ __forceinline__ float4 sum_over_rows(float4 part, float4 (*red)[STEP_QUADS], int tid) {
#pragma unroll
    for (int off = 8; off < 32; off <<= 1) { /* lane = 8 (y % 4) + x: xor 8, 16 walk y % 4 */
        part.x += __shfl_xor_sync(0xffffffffu, part.x, off);
        part.y += __shfl_xor_sync(0xffffffffu, part.y, off);
        part.z += __shfl_xor_sync(0xffffffffu, part.z, off);
        part.w += __shfl_xor_sync(0xffffffffu, part.w, off);
    }
    const int x = tid % STEP_QUADS;
    if ((tid & 31) < STEP_QUADS) red[tid / 32][x] = part;
    __syncthreads();
    float4 sum = red[0][x];
#pragma unroll
    for (int w = 1; w < STEP_WARPS; w++) {
        const float4 r = red[w][x];
        sum = make_float4(sum.x + r.x, sum.y + r.y, sum.z + r.z, sum.w + r.w);
    }
    return sum;
}

template <typename T>
__global__ void __launch_bounds__(STEP_THREADS) step_kernel(const lina_cuda_attn_params p) {
    __shared__ float q_s[STEP_MAX_K], k_s[STEP_MAX_K], decay_s[STEP_MAX_K];
    __shared__ float4 red[2][STEP_WARPS][STEP_QUADS]; /* one buffer per sum: no barrier between them */
    __shared__ float4 v_s[STEP_QUADS];
    __shared__ float beta_s;
    const int tid = threadIdx.x, x = tid % STEP_QUADS, y = tid / STEP_QUADS;
    const int n = blockIdx.x / p.HV, hv = blockIdx.x % p.HV, h = hv / (p.HV / p.H);
    const int col = blockIdx.y * (4 * STEP_QUADS) + 4 * x;
    const bool valid = col < p.V; /* V % 4 == 0: a quad is all in or all out */
    const size_t soff = ((size_t)n * p.HV + hv) * p.K * p.V + col;
    const int64_t nh = (int64_t)n * p.HV + hv;

    float4 s[STEP_RI]; /* state loads first: the rest of the prologue runs while they are in flight */
#pragma unroll
    for (int i = 0; i < STEP_RI; i++) {
        const int kk = y + STEP_ROWS * i;
        s[i] = (p.h0 && valid && kk < p.K) ? *(const float4 *)(p.h0 + soff + (size_t)kk * p.V)
                                          : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (tid < p.K) {
        const int64_t qk = ((int64_t)n * p.H + h) * p.K + tid;
        q_s[tid] = to_f(((const T *)p.q)[qk]);
        k_s[tid] = to_f(((const T *)p.k)[qk]);
        float g = 0.f;
        if (p.gate == LINA_GATE_CONST) g = p.g[hv];
        else if (p.gate == LINA_GATE_SCALAR) g = p.g[nh];
        else if (p.gate == LINA_GATE_VECTOR) g = p.g[nh * p.K + tid];
        decay_s[tid] = expf(g);
    }
    if (tid < STEP_QUADS) {
        const int c = blockIdx.y * (4 * STEP_QUADS) + 4 * tid;
        const T *v = (const T *)p.v + nh * p.V + c;
        v_s[tid] = c < p.V ? make_float4(to_f(v[0]), to_f(v[1]), to_f(v[2]), to_f(v[3])) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (tid == 0 && p.delta) beta_s = p.beta[nh];
    __syncthreads();

#pragma unroll
    for (int i = 0; i < STEP_RI; i++) {
        const int kk = y + STEP_ROWS * i;
        if (kk < p.K) {
            const float d = decay_s[kk];
            s[i] = make_float4(s[i].x * d, s[i].y * d, s[i].z * d, s[i].w * d);
        }
    }
    float4 u = v_s[x];
    if (p.delta) { /* u = beta (v - (G S)^T k) */
        float4 part = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int i = 0; i < STEP_RI; i++) {
            const int kk = y + STEP_ROWS * i;
            if (kk < p.K) part = fma4(k_s[kk], s[i], part);
        }
        const float4 sk = sum_over_rows(part, red[0], tid);
        u = make_float4(beta_s * (u.x - sk.x), beta_s * (u.y - sk.y), beta_s * (u.z - sk.z), beta_s * (u.w - sk.w));
    }
    float4 part = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int i = 0; i < STEP_RI; i++) {
        const int kk = y + STEP_ROWS * i;
        if (kk < p.K) {
            const float kv = k_s[kk];
            s[i] = make_float4(fmaf(kv, u.x, s[i].x), fmaf(kv, u.y, s[i].y), fmaf(kv, u.z, s[i].z), fmaf(kv, u.w, s[i].w));
            part = fma4(q_s[kk], s[i], part);
        }
    }
    const float4 o = sum_over_rows(part, red[1], tid);
    if (y == 0 && valid) {
        T *out = (T *)p.o + nh * p.V + col;
        out[0] = from_f<T>(p.scale * o.x);
        out[1] = from_f<T>(p.scale * o.y);
        out[2] = from_f<T>(p.scale * o.z);
        out[3] = from_f<T>(p.scale * o.w);
    }
    if (p.ht && valid)
#pragma unroll
        for (int i = 0; i < STEP_RI; i++) {
            const int kk = y + STEP_ROWS * i;
            if (kk < p.K) *(float4 *)(p.ht + soff + (size_t)kk * p.V) = s[i];
        }
}

/* Where the step kernel applies: one token per sequence, K <= 128, whole column quads, 16-byte
 * aligned states */
extern "C" int lina_cuda_step_applies(const lina_cuda_attn_params *p) {
    return p->T == 1 && !p->cu && p->K <= STEP_MAX_K && p->V % 4 == 0 && (uintptr_t)p->h0 % 16 == 0 &&
           (uintptr_t)p->ht % 16 == 0;
}

extern "C" int lina_cuda_step_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream) {
    dim3 grid((unsigned)(p->n_seqs * p->HV), (unsigned)((p->V + 4 * STEP_QUADS - 1) / (4 * STEP_QUADS)));
    cudaStream_t st = (cudaStream_t)stream;
    switch (dtype) {
    case LINA_DTYPE_F32: step_kernel<float><<<grid, STEP_THREADS, 0, st>>>(*p); break;
    case LINA_DTYPE_BF16: step_kernel<__nv_bfloat16><<<grid, STEP_THREADS, 0, st>>>(*p); break;
    default: step_kernel<__half><<<grid, STEP_THREADS, 0, st>>>(*p); break;
    }
    return (int)cudaGetLastError();
}
