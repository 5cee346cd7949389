/* Chunkwise attention on cuBLAS batched GEMMs, both directions, every gate and update:
 * the backward of everything the tensor-core kernels do not cover (the delta rule, VECTOR
 * gates, the additive update with a wanted dg or grouped heads) and the forward of KDA and
 * of fp32 delta rules / VECTOR gates. fp32 arithmetic (TF32 products for 16-bit inputs). The
 * math is the CPU twin's (src/ops/attn_chunk_delta.h, attn_chunk_delta_bwd.c); here every
 * sequence is cut into chunks of CB_C rows, padded with zero rows (k = v = q = dO = beta = 0,
 * log-gate 0: an identity step), and each (chunk, value head) z is one batch entry of cuBLAS
 * strided-batched GEMMs and of small per-chunk kernels. The additive update runs the same
 * steps with beta = 0 in L and Kg and V unscaled (X = [0 | V], U = V). VECTOR gates: b, gam,
 * dec, gl per key channel, E_rsk = e^{b_rk - b_sk} exact per element (cb_vscores).
 *
 * Per chunk (rows r, b_r the inclusive cumulative log-gate, gam_r = e^{b_r},
 * dec_r = e^{b_last - b_r}, gl = e^{b_last}, E_rs = e^{b_r - b_s} for s <= r):
 *   M = tril(K K^T o E, -1), Mq = tril(Q K^T o E), L = diag(beta) M
 *   X = [W | Ut] = (I + L)^-1 diag(beta) [Kg | V]      (explicit inverse Tinv)
 *   S_next = gl S_0 - (Kd^T W) S_0 + Kd^T Ut              (forward chain)
 *   U = Ut - W S_0,  O = scale (Qg S_0 + Mq U)
 * The two state recurrences over chunks are the only sequential parts:
 *   S_{i+1} = gl_i S_i - (W_i^T Kd_i)^T S_i + F_i,     F_i = Kd_i^T Ut_i
 *   dS_i    = gl_i dS_{i+1} - (W_i^T Kd_i) dS_{i+1} + H_i,
 *             H_i = scale Qg_i^T dO_i - W_i^T A_i,      A_i = scale Mq_i^T dO_i
 * (dS_i: gradient w.r.t. the state at chunk i's start; dS after the chunk is
 * dSa). Everything else is chunk-parallel:
 *   dU = A + Kd dSa, dKd = U dSa^T, dQg = scale dO S_0^T, dMq = scale tril(dO U^T),
 *   dW = -dU S_0^T, dB = Tinv^T [dW | dU], dL = -tril(dB X^T, -1),
 *   dbeta_r = dB_r . [Kg_r | v_r] + sum_s dL_rs M_rs, dv = beta dB[:, K:],
 *   scores: dKK = beta dL o E, dQK = dMq o E (strict), Mq's diagonal q.k apart,
 *   dq = dQK K + dQg o gam + diag k,  dk = (dKK + dKK^T) K + dQK^T Q + beta dB[:, :K] o gam + dKd o dec + diag q,
 *   db_r = sum_s Z_rs - sum_s Z_sr (Z = dM o M + dMq o Mq, strict) + gam (q.dQg + k.dKg) - dec k.dKd,
 *   db_last += sum_r dec_r k_r.dKd_r + gl sum(dSa o S_0),  dg_s = sum_{r >= s} db_r.
 * Workspace: about (12 C K + 4 C (K+V) + 7 C^2 + 5 K V) floats per (chunk, value head) for
 * the backward (cb_sizes), about half for the forward. */
#include <cublas_v2.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_types.h"

extern "C" lina_status lina_fail(lina_status code, const char *fmt, ...);

#define CB_C 64
#define CB_THREADS 256

/* Per-z buffers (fp32, row-major), each z-th slice at base + z * size. */
enum { B_QR, B_KR, B_VR, B_DR, B_QG, B_KG, B_KD, B_U, B_DKD, B_DQG, B_DQ, B_DK, /* (C, K) or (C, V) */
       B_BM, B_X, B_DWU, B_DB,                                                   /* (C, K + V) */
       B_M, B_MQ, B_TINV, B_DMQ, B_DL, B_DQK, B_SSYM,                            /* (C, C) */
       B_WTKD, B_KDTW, B_F, B_S0, B_DSA,                                         /* (K, K) or (K, V) */
       B_B, B_BETA, B_DBS,                                                       /* (C), VECTOR: B_B, B_DBS (C, K) */
       B_COUNT };

typedef struct {
    int K, V, H, HV, gate, n_seqs;
    int ldk;       /* leading dim of the (K, K) matrices: K rounded up to 4 (16-byte rows) */
    int tf32;      /* GEMMs on tensor cores in TF32 (16-bit inputs) */
    int additive;  /* the additive update through the same steps: beta = 0 in L and Kg, V unscaled (X = [0 | V]) */
    int vec;       /* VECTOR gates: b, db per key channel (B_B, B_DBS are (C, K)), scores by cb_vscores */
    float scale;
    int64_t NZ;
    const int64_t *chunk_t0; /* (chunks) first token */
    const int *chunk_len;    /* (chunks) rows */
    const int *seq_chunk0;   /* (n_seqs + 1) first chunk of each sequence */
    const void *q, *k, *v, *dout;
    const float *g, *beta, *h0, *dht;
    void *dv;
    float *dg, *dbeta, *dh0, *dq_acc, *dk_acc;
    float *ht; /* forward: the state after each sequence, or NULL */
    float *buf[B_COUNT];
    int64_t size[B_COUNT];
} cb_args;

__device__ __forceinline__ float *zbuf(const cb_args &a, int i, int64_t z) { return a.buf[i] + z * a.size[i]; }

/* Raw and gated copies of the chunk's rows, gates, beta; Bm = diag(beta) [Kg | V]. */
template <typename T>
__global__ void __launch_bounds__(CB_THREADS) cb_gather(cb_args a) {
    const int64_t z = blockIdx.x;
    const int c = (int)(z / a.HV), hv = (int)(z % a.HV), h = hv / (a.HV / a.H), K = a.K, V = a.V, P = K + V;
    const int64_t t0 = a.chunk_t0[c];
    const int n = a.chunk_len[c], tid = threadIdx.x;
    __shared__ float sb[CB_C], sbeta[CB_C];
    if (tid < CB_C) {
        const int r = tid;
        float g = 0.f;
        if (r < n && a.gate == LINA_GATE_SCALAR) g = a.g[(t0 + r) * a.HV + hv];
        if (r < n && a.gate == LINA_GATE_CONST) g = a.g[hv];
        sb[r] = g;
        sbeta[r] = r < n && !a.additive ? a.beta[(t0 + r) * a.HV + hv] : 0.f;
    }
    __syncthreads();
    /* cumulative sums in double: a float sum of 64 gates is off by up to ~32 ulps of b, which
     * e^{b} turns into relative errors of ~1e-5 at |b| ~ 30 (the fp32 tests' bar) */
    if (tid == 0) {
        double acc = 0.0;
        for (int r = 0; r < CB_C; r++) sb[r] = (float)(acc += sb[r]);
    }
    float *bv = zbuf(a, B_B, z); /* VECTOR: b (C, K), column k summed down the rows by thread k */
    if (a.vec)
        for (int kk = tid; kk < K; kk += CB_THREADS) {
            double acc = 0.0;
            for (int r = 0; r < CB_C; r++) {
                acc += r < n ? a.g[((t0 + r) * a.HV + hv) * K + kk] : 0.f;
                bv[r * K + kk] = (float)acc;
            }
        }
    __syncthreads();
    if (tid < CB_C) zbuf(a, B_BETA, z)[tid] = sbeta[tid];
    if (tid < CB_C && !a.vec) bv[tid] = sb[tid];
    const float blast = sb[CB_C - 1];
    const T *q = (const T *)a.q, *k = (const T *)a.k, *v = (const T *)a.v, *d = (const T *)a.dout;
    float *Qr = zbuf(a, B_QR, z), *Kr = zbuf(a, B_KR, z), *Qg = zbuf(a, B_QG, z), *Kg = zbuf(a, B_KG, z);
    float *Kd = zbuf(a, B_KD, z), *Bm = zbuf(a, B_BM, z), *Vr = zbuf(a, B_VR, z), *Dr = zbuf(a, B_DR, z);
    for (int i = tid; i < CB_C * K; i += CB_THREADS) {
        const int r = i / K, kk = i % K;
        float qv = 0.f, kv = 0.f;
        if (r < n) {
            const int64_t o = ((t0 + r) * a.H + h) * K + kk;
            qv = to_f(q[o]), kv = to_f(k[o]);
        }
        float gam = a.gate ? __expf(sb[r]) : 1.f, dec = a.gate ? __expf(blast - sb[r]) : 1.f;
        if (a.vec) gam = __expf(bv[i]), dec = __expf(bv[(CB_C - 1) * K + kk] - bv[i]);
        Qr[i] = qv, Kr[i] = kv, Qg[i] = qv * gam, Kg[i] = kv * gam, Kd[i] = kv * dec;
        Bm[r * P + kk] = sbeta[r] * kv * gam;
    }
    for (int i = tid; i < CB_C * V; i += CB_THREADS) {
        const int r = i / V, e = i % V;
        float vv = 0.f, dv = 0.f;
        if (r < n) {
            const int64_t o = ((t0 + r) * a.HV + hv) * V + e;
            vv = to_f(v[o]), dv = d ? to_f(d[o]) : 0.f;
        }
        Vr[i] = vv, Dr[i] = dv;
        Bm[r * P + K + e] = a.additive ? vv : sbeta[r] * vv;
    }
}

/* From KK = K K^T (in B_M) and QK = Q K^T (in B_MQ): M, Mq in place, and
 * Tinv = (I + diag(beta) M)^-1 (unit lower triangular, column j by thread j). */
__global__ void __launch_bounds__(CB_THREADS) cb_scores(cb_args a) {
    const int64_t z = blockIdx.x;
    const int tid = threadIdx.x;
    __shared__ float sb[CB_C], sbeta[CB_C], sL[CB_C][CB_C + 1], sT[CB_C][CB_C + 1];
    if (tid < CB_C) sb[tid] = a.vec ? 0.f : zbuf(a, B_B, z)[tid], sbeta[tid] = zbuf(a, B_BETA, z)[tid];
    __syncthreads();
    float *M = zbuf(a, B_M, z), *Mq = zbuf(a, B_MQ, z);
    for (int i = tid; i < CB_C * CB_C; i += CB_THREADS) {
        const int r = i / CB_C, s = i % CB_C;
        if (a.vec) { /* M, Mq from cb_vscores */
            sL[r][s] = sbeta[r] * M[i];
            continue;
        }
        const float e = s > r ? 0.f : a.gate ? __expf(sb[r] - sb[s]) : 1.f;
        const float m = s < r ? M[i] * e : 0.f;
        M[i] = m;
        Mq[i] = s < r ? Mq[i] * e : s == r ? Mq[i] : 0.f;
        sL[r][s] = sbeta[r] * m;
    }
    __syncthreads();
    if (tid < CB_C) {
        const int j = tid;
        for (int i = 0; i < CB_C; i++) {
            float x = i == j ? 1.f : 0.f;
            if (i > j) {
                for (int s = j; s < i; s++) x -= sL[i][s] * sT[s][j];
            }
            sT[i][j] = x;
        }
    }
    __syncthreads();
    float *Ti = zbuf(a, B_TINV, z);
    for (int i = tid; i < CB_C * CB_C; i += CB_THREADS) Ti[i] = sT[i / CB_C][i % CB_C];
}

/* The state recurrences over one sequence's chunks, for value columns
 * [32 y, 32 y + 32) of head hv (block (n * HV + hv, y)):
 *   forward (reverse = 0): x <- gl x - KdtW x + F,  x saved into S0 before each step;
 *   reverse (reverse = 1): x <- gl x - WtKd x + F (F holds H), saved into dSa.
 * x (K x 32) lives in shared memory; thread (warp w, lane) owns rows w RT .. w RT + RT - 1
 * of column lane. The matrix A' streams in as tiles sA[k][r] = A'[r][k] (32 k at a time,
 * rows of A'^T, which is the other one of the pair) through a 3-stage cp.async ring that
 * runs ahead across steps: the matrices do not depend on x. */
template <int RT>
__global__ void __launch_bounds__(CB_THREADS, 2) cb_chain(cb_args a, int reverse) {
    extern __shared__ __align__(16) float sm[];
    constexpr int STAGES = 3, R = 8 * RT;
    const int K = a.K, V = a.V, ld = a.ldk;
    float *sx = sm, *sA = sm + K * 32;
    const int nh = blockIdx.x, n = nh / a.HV, hv = nh % a.HV, tid = threadIdx.x, w = tid / 32, lane = tid % 32;
    const int col = blockIdx.y * 32 + lane, colok = col < V;
    const int64_t kv = (int64_t)K * V;
    const float *init = reverse ? a.dht : a.h0;
    for (int r = w; r < K; r += 8) sx[r * 32 + lane] = init && colok ? init[(int64_t)nh * kv + (int64_t)r * V + col] : 0.f;
    const int c0 = a.seq_chunk0[n], c1 = a.seq_chunk0[n + 1], steps = c1 - c0, nkt = (K + 31) / 32;
    const int mat = reverse ? B_KDTW : B_WTKD;
    auto z_of = [&](int step) -> int64_t { return (int64_t)(reverse ? c1 - 1 - step : c0 + step) * a.HV + hv; };
    auto issue = [&](int j) { /* tile j of the stream into stage j % STAGES */
        if (j < steps * nkt) {
            const int kt = (j % nkt) * 32, rows = min(32, K - kt), units = ld / 4;
            const float *A = zbuf(a, mat, z_of(j / nkt)) + (int64_t)kt * ld;
            float *dst = sA + (j % STAGES) * 32 * R;
            for (int i = tid; i < rows * units; i += CB_THREADS) {
                const int kl = i / units, u = 4 * (i % units);
                cp_async16(dst + kl * R + u, A + (int64_t)kl * ld + u, 16);
            }
        }
        cp_async_commit();
    };
    issue(0);
    issue(1);
    for (int step = 0, j = 0; step < steps; step++) {
        const int64_t z = z_of(step);
        const float *F = zbuf(a, B_F, z);
        const float *bz = zbuf(a, B_B, z);
        const float gl = a.gate && !a.vec ? __expf(bz[CB_C - 1]) : 1.f;
        float acc[RT], f[RT];
#pragma unroll
        for (int i = 0; i < RT; i++) {
            const int r = w * RT + i;
            f[i] = r < K && colok ? F[(int64_t)r * V + col] : 0.f;
            acc[i] = 0.f;
        }
        __syncthreads();
        float *save = zbuf(a, reverse ? B_DSA : B_S0, z);
        if (colok)
            for (int r = w; r < K; r += 8) save[(int64_t)r * V + col] = sx[r * 32 + lane];
        for (int kt = 0; kt < K; kt += 32, j++) {
            cp_async_wait<1>();
            __syncthreads();
            issue(j + 2);
            const float *tile = sA + (j % STAGES) * 32 * R;
            auto rank1 = [&](int kl) { /* acc += A'[rows, kt + kl] x[kt + kl, lane] */
                const float xk = sx[(kt + kl) * 32 + lane];
                const float4 *ar = (const float4 *)(tile + kl * R + w * RT);
#pragma unroll
                for (int i = 0; i < RT / 4; i++) {
                    const float4 a4 = ar[i];
                    acc[4 * i] += a4.x * xk, acc[4 * i + 1] += a4.y * xk;
                    acc[4 * i + 2] += a4.z * xk, acc[4 * i + 3] += a4.w * xk;
                }
            };
            if (K - kt >= 32) {
#pragma unroll 4
                for (int kl = 0; kl < 32; kl++) rank1(kl);
            } else {
                for (int kl = 0; kl < K - kt; kl++) rank1(kl);
            }
        }
#pragma unroll
        for (int i = 0; i < RT; i++) {
            const int r = w * RT + i;
            const float glr = a.vec ? __expf(bz[(CB_C - 1) * K + min(r, K - 1)]) : gl;
            if (r < K) acc[i] = glr * sx[r * 32 + lane] - acc[i] + f[i];
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < RT; i++) {
            const int r = w * RT + i;
            if (r < K) sx[r * 32 + lane] = acc[i];
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    float *last = reverse ? a.dh0 : a.ht;
    if (last && colok)
        for (int r = w; r < K; r += 8) last[(int64_t)nh * kv + (int64_t)r * V + col] = sx[r * 32 + lane];
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* dbeta, dv; the scores' backward: dQK (strict lower) into B_DQK, dKK + dKK^T into
 * B_SSYM, and the scores' part of db into B_DBS. */
template <typename T>
__global__ void __launch_bounds__(CB_THREADS) cb_post(cb_args a) {
    const int64_t z = blockIdx.x;
    const int c = (int)(z / a.HV), hv = (int)(z % a.HV), K = a.K, V = a.V, P = K + V;
    const int64_t t0 = a.chunk_t0[c];
    const int n = a.chunk_len[c], tid = threadIdx.x, w = tid / 32, lane = tid % 32;
    __shared__ float sb[CB_C], sbeta[CB_C], sK[CB_C][CB_C + 1], sZ[CB_C][CB_C + 1];
    if (tid < CB_C) sb[tid] = zbuf(a, B_B, z)[tid], sbeta[tid] = zbuf(a, B_BETA, z)[tid];
    __syncthreads();
    const float *dB = zbuf(a, B_DB, z), *dL = zbuf(a, B_DL, z), *M = zbuf(a, B_M, z), *Mq = zbuf(a, B_MQ, z);
    const float *dMq = zbuf(a, B_DMQ, z), *Kg = zbuf(a, B_KG, z), *Vr = zbuf(a, B_VR, z);
    for (int r = w; r < (a.additive ? 0 : n); r += 8) { /* dbeta_r = sum_{s<r} dL_rs M_rs + dB_r . [Kg_r | v_r] */
        float acc = 0.f;
        for (int s = lane; s < r; s += 32) acc += dL[r * CB_C + s] * M[r * CB_C + s];
        for (int kk = lane; kk < K; kk += 32) acc += dB[r * P + kk] * Kg[r * K + kk];
        for (int e = lane; e < V; e += 32) acc += dB[r * P + K + e] * Vr[r * V + e];
        acc = warp_sum(acc);
        if (lane == 0) a.dbeta[(t0 + r) * a.HV + hv] = acc;
    }
    T *dv = (T *)a.dv;
    for (int i = tid; i < n * V; i += CB_THREADS) {
        const int r = i / V, e = i % V;
        dv[((t0 + r) * a.HV + hv) * V + e] = from_f<T>((a.additive ? 1.f : sbeta[r]) * dB[r * P + K + e]);
    }
    if (a.vec) return; /* the scores' backward: cb_vscores_bwd */
    float *dQK = zbuf(a, B_DQK, z);
    for (int i = tid; i < CB_C * CB_C; i += CB_THREADS) {
        const int r = i / CB_C, s = i % CB_C;
        float dkk = 0.f, dqk = 0.f, zz = 0.f;
        if (s < r) {
            const float e = a.gate ? __expf(sb[r] - sb[s]) : 1.f, dm = sbeta[r] * dL[i];
            dkk = dm * e, dqk = dMq[i] * e;
            zz = dm * M[i] + dMq[i] * Mq[i];
        }
        sK[r][s] = dkk, sZ[r][s] = zz, dQK[i] = dqk;
    }
    __syncthreads();
    float *Ss = zbuf(a, B_SSYM, z);
    for (int i = tid; i < CB_C * CB_C; i += CB_THREADS) Ss[i] = sK[i / CB_C][i % CB_C] + sK[i % CB_C][i / CB_C];
    if (tid < CB_C) {
        float rs = 0.f, cs = 0.f;
        for (int s = 0; s < CB_C; s++) rs += sZ[tid][s], cs += sZ[s][tid];
        zbuf(a, B_DBS, z)[tid] = a.gate ? rs - cs : 0.f;
    }
}

/* Channels [kt, kt + 32) of the chunk's q, k and b rows (B_QR, B_KR, B_B: (C, K)) into
 * (CB_C x ld) shared tiles, zeros past K. All threads call. */
__device__ __forceinline__ void load_qkb_tile(const cb_args &a, int64_t z, int kt, float *sQ, float *sK, float *sB,
                                              int ld) {
    const int K = a.K, kn = min(32, K - kt);
    const float *Q = zbuf(a, B_QR, z), *Kr = zbuf(a, B_KR, z), *B = zbuf(a, B_B, z);
    for (int i = threadIdx.x; i < CB_C * 32; i += CB_THREADS) {
        const int rr = i / 32, kk = i % 32, ok = kk < kn;
        sQ[rr * ld + kk] = ok ? Q[rr * K + kt + kk] : 0.f;
        sK[rr * ld + kk] = ok ? Kr[rr * K + kt + kk] : 0.f;
        sB[rr * ld + kk] = ok ? B[rr * K + kt + kk] : 0.f;
    }
}

/* dq, dk of one element into the fp32 sums: a plain store when each (token, head) has one
 * value head, atomics over a group of value heads otherwise. */
__device__ __forceinline__ void store_dqk(const cb_args &a, int64_t o, float dqv, float dkv) {
    if (a.HV == a.H) {
        a.dq_acc[o] = dqv, a.dk_acc[o] = dkv;
    } else {
        atomicAdd(a.dq_acc + o, dqv);
        atomicAdd(a.dk_acc + o, dkv);
    }
}

/* VECTOR gates, scores of one chunk with exact per-channel factors (all <= 1):
 *   Mq_rs = sum_k q_rk k_sk e^{b_rk - b_sk} (s <= r),  M_rs = the same with k_rk (s < r).
 * Thread t: row r = t / 4, columns 16 (t % 4) .. + 15; 32 channels at a time. */
__global__ void __launch_bounds__(CB_THREADS) cb_vscores(cb_args a) {
    const int64_t z = blockIdx.x;
    const int K = a.K, tid = threadIdx.x, r = tid / 4, s0 = 16 * (tid % 4);
    __shared__ float sQ[CB_C][33], sK[CB_C][33], sB[CB_C][33];
    float mq[16], m[16];
#pragma unroll
    for (int j = 0; j < 16; j++) mq[j] = m[j] = 0.f;
    for (int kt = 0; kt < K; kt += 32) {
        const int kn = min(32, K - kt);
        __syncthreads();
        load_qkb_tile(a, z, kt, &sQ[0][0], &sK[0][0], &sB[0][0], 33);
        __syncthreads();
        if (s0 > r) continue;
        for (int kk = 0; kk < kn; kk++) {
            const float q = sQ[r][kk], k = sK[r][kk], b = sB[r][kk];
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int s = s0 + j;
                const float ks = s <= r ? sK[s][kk] * __expf(b - sB[s][kk]) : 0.f;
                mq[j] += q * ks, m[j] += k * ks;
            }
        }
    }
    float *M = zbuf(a, B_M, z), *Mq = zbuf(a, B_MQ, z);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const int s = s0 + j;
        Mq[r * CB_C + s] = s <= r ? mq[j] : 0.f;
        M[r * CB_C + s] = s < r ? m[j] : 0.f;
    }
}

/* VECTOR gates, the scores' backward (strict lower parts; Mq's diagonal is in cb_final):
 *   dq_rk  = sum_{s<r} dMq_rs k_sk E_rsk,   dk_rk (row) = sum_{s<r} dM_rs k_sk E_rsk,
 *   dk_sk (column) = sum_{r>s} (dMq_rs q_rk + dM_rs k_rk) E_rsk,   E_rsk = e^{b_rk - b_sk},
 *   db_rk = q_rk dq_rk + k_rk dk_rk (row) - k_rk dk_rk (column)
 * into B_DQ, B_DK (row + column) and B_DBS (C, K). dM = beta dL (strict lower).
 * Thread t: channel kt + t % 32, rows t / 32 + 8 j. Dynamic shared memory. */
__global__ void __launch_bounds__(CB_THREADS) cb_vscores_bwd(cb_args a) {
    extern __shared__ __align__(16) float smv[];
    const int64_t z = blockIdx.x;
    const int K = a.K, tid = threadIdx.x, lane = tid % 32, w = tid / 32;
    float (*dMq)[CB_C] = (float (*)[CB_C])smv, (*dM)[CB_C] = (float (*)[CB_C])(smv + CB_C * CB_C);
    float (*sQ)[32] = (float (*)[32])(smv + 2 * CB_C * CB_C), (*sK)[32] = sQ + CB_C, (*sB)[32] = sQ + 2 * CB_C;
    const float *gMq = zbuf(a, B_DMQ, z), *gL = zbuf(a, B_DL, z), *beta = zbuf(a, B_BETA, z);
    for (int i = tid; i < CB_C * CB_C; i += CB_THREADS) {
        const int r = i / CB_C, s = i % CB_C;
        dMq[r][s] = s < r ? gMq[i] : 0.f;
        dM[r][s] = s < r ? beta[r] * gL[i] : 0.f;
    }
    float *dq = zbuf(a, B_DQ, z), *dk = zbuf(a, B_DK, z), *db = zbuf(a, B_DBS, z);
    for (int kt = 0; kt < K; kt += 32) {
        const int kn = min(32, K - kt);
        __syncthreads();
        load_qkb_tile(a, z, kt, &sQ[0][0], &sK[0][0], &sB[0][0], 32);
        __syncthreads();
        if (lane >= kn) continue;
        for (int r = w; r < CB_C; r += 8) {
            const float q = sQ[r][lane], k = sK[r][lane], b = sB[r][lane];
            float gq = 0.f, gkr = 0.f, gkc = 0.f;
            for (int s = 0; s < r; s++) {
                const float ks = sK[s][lane] * __expf(b - sB[s][lane]);
                gq += dMq[r][s] * ks, gkr += dM[r][s] * ks;
            }
            for (int t = r + 1; t < CB_C; t++) {
                const float e = __expf(sB[t][lane] - b);
                gkc += (dMq[t][r] * sQ[t][lane] + dM[t][r] * sK[t][lane]) * e;
            }
            const int o = r * K + kt + lane;
            dq[o] = gq, dk[o] = gkr + gkc, db[o] = q * gq + k * gkr - k * gkc;
        }
    }
}

/* dq, dk (fp32 sums over grouped heads), dg (reverse cumulative sum of db). */
__global__ void __launch_bounds__(CB_THREADS) cb_final(cb_args a) {
    const int64_t z = blockIdx.x;
    const int c = (int)(z / a.HV), hv = (int)(z % a.HV), h = hv / (a.HV / a.H), K = a.K, V = a.V, P = K + V;
    const int64_t t0 = a.chunk_t0[c];
    const int n = a.chunk_len[c], tid = threadIdx.x, w = tid / 32, lane = tid % 32;
    __shared__ float sdb[CB_C], sred[CB_THREADS / 32];
    const float *b = zbuf(a, B_B, z), *beta = zbuf(a, B_BETA, z), *dMq = zbuf(a, B_DMQ, z);
    const float *Qr = zbuf(a, B_QR, z), *Kr = zbuf(a, B_KR, z), *dQg = zbuf(a, B_DQG, z), *dKd = zbuf(a, B_DKD, z);
    const float *dq = zbuf(a, B_DQ, z), *dk = zbuf(a, B_DK, z), *dB = zbuf(a, B_DB, z);
    const float blast = b[CB_C - 1];
    float last = 0.f; /* per thread: contributions to db_last */
    for (int r = w; r < CB_C; r += 8) {
        float dbr = 0.f;
        if (r < n) {
            const float gam = a.gate ? __expf(b[r]) : 1.f, dec = a.gate ? __expf(blast - b[r]) : 1.f;
            const float diag = dMq[r * CB_C + r], br = beta[r];
            for (int kk = lane; kk < K; kk += 32) {
                const int i = r * K + kk;
                const float dkg = br * dB[r * P + kk], q = Qr[i], k = Kr[i];
                const float dqv = dq[i] + dQg[i] * gam + diag * k;
                const float dkv = dk[i] + dkg * gam + dKd[i] * dec + diag * q;
                dbr += gam * (q * dQg[i] + k * dkg) - dec * k * dKd[i];
                last += dec * k * dKd[i];
                const int64_t o = ((t0 + r) * a.H + h) * K + kk;
                store_dqk(a, o, dqv, dkv);
            }
        }
        dbr = warp_sum(dbr);
        if (lane == 0) sdb[r] = dbr;
    }
    if (!a.gate || !a.dg) return;
    const float *dSa = zbuf(a, B_DSA, z), *S0 = zbuf(a, B_S0, z);
    float ss = 0.f;
    for (int64_t i = tid; i < (int64_t)K * V; i += CB_THREADS) ss += dSa[i] * S0[i];
    last += __expf(blast) * ss;
    last = warp_sum(last);
    if (lane == 0) sred[w] = last;
    __syncthreads();
    if (w == 0) {
        const float *dbs = zbuf(a, B_DBS, z);
        float tail = 0.f;
        for (int j = 0; j < CB_THREADS / 32; j++) tail += sred[j];
        /* lane l holds rows 2l, 2l + 1; suffix sums from the last row */
        float x0 = sdb[2 * lane] + dbs[2 * lane], x1 = sdb[2 * lane + 1] + dbs[2 * lane + 1];
        if (lane == 31) x1 += tail;
        float own = x0 + x1, suf = own;
        for (int o = 1; o < 32; o *= 2) {
            const float y = __shfl_down_sync(0xffffffffu, suf, o);
            if (lane + o < 32) suf += y;
        }
        const float g0 = suf, g1 = suf - x0; /* dg of rows 2l and 2l + 1 */
        if (a.gate == LINA_GATE_SCALAR) {
            if (2 * lane < n) a.dg[(t0 + 2 * lane) * a.HV + hv] = g0;
            if (2 * lane + 1 < n) a.dg[(t0 + 2 * lane + 1) * a.HV + hv] = g1;
        } else {
            float s = (2 * lane < n ? g0 : 0.f) + (2 * lane + 1 < n ? g1 : 0.f);
            s = warp_sum(s);
            if (lane == 0) atomicAdd(a.dg + hv, s);
        }
    }
}

/* VECTOR gates: dq, dk as cb_final; db_rk = (scores' part) + e^{b_rk} (q dQg + k dKg)_rk
 * - dec_rk (k dKd)_rk; db_last,k += sum_r dec_rk (k dKd)_rk + e^{b_last,k} sum_v (dSa o S_0)_kv;
 * dg_sk = sum_{r >= s} db_rk (thread k walks its column up). */
__global__ void __launch_bounds__(CB_THREADS) cb_final_vec(cb_args a) {
    const int64_t z = blockIdx.x;
    const int c = (int)(z / a.HV), hv = (int)(z % a.HV), h = hv / (a.HV / a.H), K = a.K, V = a.V, P = K + V;
    const int64_t t0 = a.chunk_t0[c];
    const int n = a.chunk_len[c], tid = threadIdx.x;
    __shared__ float slast[LINA_CUDA_MAX_HEAD_DIM];
    const float *b = zbuf(a, B_B, z), *beta = zbuf(a, B_BETA, z), *dMq = zbuf(a, B_DMQ, z);
    const float *Qr = zbuf(a, B_QR, z), *Kr = zbuf(a, B_KR, z), *dQg = zbuf(a, B_DQG, z), *dKd = zbuf(a, B_DKD, z);
    const float *dq = zbuf(a, B_DQ, z), *dk = zbuf(a, B_DK, z), *dB = zbuf(a, B_DB, z);
    float *db = zbuf(a, B_DBS, z);
    for (int kk = tid; kk < K; kk += CB_THREADS) slast[kk] = 0.f;
    __syncthreads();
    for (int i = tid; i < CB_C * K; i += CB_THREADS) {
        const int r = i / K, kk = i % K;
        if (r >= n) continue;
        const float gam = __expf(b[i]), dec = __expf(b[(CB_C - 1) * K + kk] - b[i]);
        const float diag = dMq[r * CB_C + r], q = Qr[i], k = Kr[i], dkg = beta[r] * dB[r * P + kk];
        const float dqv = dq[i] + dQg[i] * gam + diag * k;
        const float dkv = dk[i] + dkg * gam + dKd[i] * dec + diag * q;
        db[i] += gam * (q * dQg[i] + k * dkg) - dec * k * dKd[i];
        atomicAdd(&slast[kk], dec * k * dKd[i]);
        const int64_t o = ((t0 + r) * a.H + h) * K + kk;
        store_dqk(a, o, dqv, dkv);
    }
    __syncthreads();
    if (!a.dg) return;
    const float *dSa = zbuf(a, B_DSA, z), *S0 = zbuf(a, B_S0, z);
    for (int kk = tid; kk < K; kk += CB_THREADS) {
        float ss = 0.f;
        for (int v = 0; v < V; v++) ss += dSa[(int64_t)kk * V + v] * S0[(int64_t)kk * V + v];
        float acc = slast[kk] + __expf(b[(CB_C - 1) * K + kk]) * ss;
        for (int r = CB_C - 1; r >= 0; r--) {
            if (r < n) {
                acc += db[r * K + kk];
                a.dg[((t0 + r) * a.HV + hv) * K + kk] = acc;
            }
        }
    }
}

/* ---- host side ---- */

#define TRY_STATUS(x)                                                                              \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

static cublasHandle_t blas_handle(void) {
    static thread_local cublasHandle_t handles[64];
    static thread_local int made[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return NULL;
    if (!made[dev]) {
        if (cublasCreate(&handles[dev]) != CUBLAS_STATUS_SUCCESS) return NULL;
        made[dev] = 1;
    }
    return handles[dev];
}

/* Row-major, batched over the z slices: C = alpha op(A) op(B) + beta C with
 * op(A) (M x Kd), op(B) (Kd x N); A, B, C given as (buffer, column offset, ld). */
typedef struct {
    cublasHandle_t h;
    cb_args *a;
    int status;
} blas_ctx;

static void rgemm(blas_ctx *x, int ta, int tb, int M, int N, int Kd, float alpha, int ia, int oa, int lda, int ib,
                  int ob, int ldb, float beta, int ic, int oc, int ldc) {
    if (x->status != CUBLAS_STATUS_SUCCESS) return;
    const cb_args *a = x->a;
    x->status = cublasGemmStridedBatchedEx(
        x->h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, Kd, &alpha, a->buf[ib] + ob,
        CUDA_R_32F, ldb, a->size[ib], a->buf[ia] + oa, CUDA_R_32F, lda, a->size[ia], &beta, a->buf[ic] + oc,
        CUDA_R_32F, ldc, a->size[ic], (int)a->NZ, a->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT);
}

static void gather(const cb_args &a, lina_dtype dt, cudaStream_t st) {
    const unsigned nz = (unsigned)a.NZ;
    if (dt == LINA_DTYPE_F32) cb_gather<float><<<nz, CB_THREADS, 0, st>>>(a);
    else if (dt == LINA_DTYPE_BF16) cb_gather<__nv_bfloat16><<<nz, CB_THREADS, 0, st>>>(a);
    else cb_gather<__half><<<nz, CB_THREADS, 0, st>>>(a);
}

static void post(const cb_args &a, lina_dtype dt, cudaStream_t st) {
    const unsigned nz = (unsigned)a.NZ;
    if (dt == LINA_DTYPE_F32) cb_post<float><<<nz, CB_THREADS, 0, st>>>(a);
    else if (dt == LINA_DTYPE_BF16) cb_post<__nv_bfloat16><<<nz, CB_THREADS, 0, st>>>(a);
    else cb_post<__half><<<nz, CB_THREADS, 0, st>>>(a);
}

static int chain(const cb_args &a, int reverse, cudaStream_t st) {
    const dim3 grid((unsigned)(a.n_seqs * a.HV), (unsigned)((a.V + 31) / 32));
    const int RT = a.K <= 128 ? 16 : 32;
    const size_t smem = (size_t)(a.K * 32 + 3 * 32 * 8 * RT) * 4;
    if (RT == 16) {
        cudaFuncSetAttribute(cb_chain<16>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        cb_chain<16><<<grid, CB_THREADS, smem, st>>>(a, reverse);
    } else {
        cudaFuncSetAttribute(cb_chain<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        cb_chain<32><<<grid, CB_THREADS, smem, st>>>(a, reverse);
    }
    return (int)cudaGetLastError();
}

/* One call's state: arguments, workspace, cuBLAS, the first error, optional phase timers. */
typedef struct {
    cb_args a;
    unsigned char *ws;
    float *extra; /* extra_floats after the per-z buffers */
    blas_ctx x;
    cudaError_t e;
    const char *what;
    cudaStream_t st;
    int timing, n_ev;
    cudaEvent_t ev[10];
    const char *ev_name[10];
    struct timespec t_start;
} cb_run;

/* LINA_CUDA_BLAS_TIMES=1: the time of each phase on stderr (synchronizes at the end). */
static void mark(cb_run *R, const char *name) {
    if (R->timing && R->n_ev < 10 && cudaEventCreate(&R->ev[R->n_ev]) == cudaSuccess) {
        R->ev_name[R->n_ev] = name;
        cudaEventRecord(R->ev[R->n_ev++], R->st);
    }
}

/* Floats of each per-z buffer (backward-only ones left out of a forward; 64-float aligned)
 * into size[], and their sum. */
static int64_t cb_sizes(const lina_attn_desc *d, int backward, int64_t size[B_COUNT]) {
    const int64_t C = CB_C, K = d->K, V = d->V, ldk = (K + 3) / 4 * 4, b = backward;
    const int64_t CK = C * K, CV = C * V, CP = C * (K + V), CC = C * C, vec = d->gate == LINA_GATE_VECTOR;
    const int64_t sizes[B_COUNT] = {CK, CK, CV, CV, CK, CK, CK, CV, b * CK, b * CK, b * CK, b * CK, CP, CP,
                                    b * CP, b * CP, CC, CC, CC, b * CC, b * CC, b * CC, b * CC,
                                    K * ldk, b * K * ldk, K * V, K * V, b * K * V, vec ? CK : C, C,
                                    b * (vec ? CK : C)};
    int64_t per_z = 0;
    for (int i = 0; i < B_COUNT; i++) size[i] = (sizes[i] + 63) / 64 * 64, per_z += size[i];
    return per_z;
}

/* Chunk tables, the per-z buffers (backward-only ones left out of a forward), cuBLAS. */
static lina_status cb_setup(const char *fn, const lina_attn_desc *d, lina_dtype dtype, int backward,
                             size_t extra_floats, cb_run *R) {
    const int K = d->K, V = d->V, HV = d->HV ? d->HV : d->H, C = CB_C;
    const int N = d->cu_seqlens ? d->n_seqs : d->B;
    clock_gettime(CLOCK_MONOTONIC, &R->t_start);
    const char *tm = getenv("LINA_CUDA_BLAS_TIMES");
    R->timing = tm && strcmp(tm, "1") == 0;
    int64_t n_chunks = 0;
    for (int n = 0; n < N; n++) {
        const int64_t len = d->cu_seqlens ? d->cu_seqlens[n + 1] - d->cu_seqlens[n] : d->T;
        n_chunks += (len + C - 1) / C;
    }
    if (n_chunks * HV > INT_MAX)
        return lina_fail(LINA_ERR_UNSUPPORTED, "%s: %lld chunks x %d heads exceed the batch limit", fn,
                         (long long)n_chunks, HV);
    cb_args &a = R->a;
    memset(&a, 0, sizeof a);
    a.K = K, a.V = V, a.H = d->H, a.HV = HV, a.gate = (int)d->gate, a.n_seqs = N;
    a.additive = d->update != LINA_UPDATE_DELTA;
    a.vec = d->gate == LINA_GATE_VECTOR;
    a.scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)K);
    a.NZ = n_chunks * HV;
    a.ldk = (K + 3) / 4 * 4;
    const char *tf = getenv("LINA_CUDA_TF32");
    a.tf32 = dtype != LINA_DTYPE_F32 && !(tf && strcmp(tf, "0") == 0);
    const int64_t per_z = cb_sizes(d, backward, a.size);
    const size_t table_bytes = ((size_t)n_chunks * 12 + (size_t)(N + 1) * 4 + 255) / 256 * 256;
    const double total_d = (double)per_z * 4 * a.NZ + table_bytes + 4.0 * extra_floats;
    if (total_d > 1e15) return lina_fail(LINA_ERR_OOM, "%s: %.3g bytes of workspace", fn, total_d);
    const size_t total = (size_t)total_d;
    mark(R, "setup");
    cudaError_t e = cudaMallocAsync((void **)&R->ws, total, R->st);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(LINA_ERR_OOM, "%s: cannot allocate %zu bytes of device workspace: %s", fn, total,
                         cudaGetErrorString(e));
    }
    unsigned char *host = (unsigned char *)malloc(table_bytes);
    if (!host) {
        cudaFreeAsync(R->ws, R->st);
        return lina_fail(LINA_ERR_OOM, "%s: cannot allocate %zu host bytes", fn, table_bytes);
    }
    /* first token and length of each chunk, first chunk of each sequence */
    int64_t *t0 = (int64_t *)host;
    int *len = (int *)(t0 + n_chunks), *c0 = len + n_chunks;
    for (int n = 0, ci = 0; n < N; n++) {
        const int64_t bos = d->cu_seqlens ? d->cu_seqlens[n] : (int64_t)n * d->T;
        const int64_t L = d->cu_seqlens ? d->cu_seqlens[n + 1] - bos : d->T;
        c0[n] = ci;
        for (int64_t s = 0; s < L; s += C, ci++) t0[ci] = bos + s, len[ci] = (int)(L - s < C ? L - s : C);
        c0[n + 1] = ci;
    }
    /* pageable source: the call returns once the table is staged, so it may be freed */
    R->e = cudaMemcpyAsync(R->ws, host, table_bytes, cudaMemcpyHostToDevice, R->st);
    free(host);
    R->what = "copying the chunk table";
    a.chunk_t0 = (const int64_t *)R->ws;
    a.chunk_len = (const int *)(a.chunk_t0 + n_chunks);
    a.seq_chunk0 = a.chunk_len + n_chunks;
    float *base = (float *)(R->ws + table_bytes);
    for (int i = 0; i < B_COUNT; i++) a.buf[i] = base, base += a.size[i] * a.NZ;
    R->extra = base;
    R->x = {blas_handle(), &R->a, CUBLAS_STATUS_SUCCESS};
    if (R->e == cudaSuccess && !R->x.h) R->what = "creating the cuBLAS handle", R->e = cudaErrorUnknown;
    if (R->e == cudaSuccess) R->x.status = cublasSetStream(R->x.h, R->st);
    return LINA_OK;
}

static int cb_ok(const cb_run *R) { return R->e == cudaSuccess && R->x.status == CUBLAS_STATUS_SUCCESS; }

/* Both directions: the chunk's copies, scores, X = [W | Ut], W^T Kd (and Kd^T W for the
 * backward), F = Kd^T Ut; the forward state recurrence (S0 per chunk, ht); U = Ut - W S0. */
static void cb_front(cb_run *R, lina_dtype dtype, int backward) {
    cb_args &a = R->a;
    blas_ctx *x = &R->x;
    const int K = a.K, V = a.V, P = K + V, C = CB_C;
    if (cb_ok(R) && a.NZ > 0) {
        R->what = "chunk kernels";
        mark(R, "prep");
        gather(a, dtype, R->st);
        if (a.vec) {
            cb_vscores<<<(unsigned)a.NZ, CB_THREADS, 0, R->st>>>(a);
        } else {
            rgemm(x, 0, 1, C, C, K, 1.f, B_KR, 0, K, B_KR, 0, K, 0.f, B_M, 0, C);       /* KK = K K^T */
            rgemm(x, 0, 1, C, C, K, 1.f, B_QR, 0, K, B_KR, 0, K, 0.f, B_MQ, 0, C);      /* QK = Q K^T */
        }
        if (x->status == CUBLAS_STATUS_SUCCESS) cb_scores<<<(unsigned)a.NZ, CB_THREADS, 0, R->st>>>(a);
        rgemm(x, 0, 0, C, P, C, 1.f, B_TINV, 0, C, B_BM, 0, P, 0.f, B_X, 0, P);         /* X = Tinv Bm */
        rgemm(x, 1, 0, K, K, C, 1.f, B_X, 0, P, B_KD, 0, K, 0.f, B_WTKD, 0, a.ldk);     /* W^T Kd */
        if (backward) rgemm(x, 1, 0, K, K, C, 1.f, B_KD, 0, K, B_X, 0, P, 0.f, B_KDTW, 0, a.ldk); /* Kd^T W */
        rgemm(x, 1, 0, K, V, C, 1.f, B_KD, 0, K, B_X, K, P, 0.f, B_F, 0, V);            /* F = Kd^T Ut */
    }
    if (cb_ok(R)) {
        R->what = "state recurrence (forward)";
        mark(R, "chain fwd");
        R->e = (cudaError_t)chain(a, 0, R->st);
    }
    if (cb_ok(R) && a.NZ > 0) {
        R->what = "chunk kernels";
        mark(R, "mid");
        /* slices of C V and C P floats: contiguous rows */
        R->e = cudaMemcpy2DAsync(a.buf[B_U], (size_t)V * 4, a.buf[B_X] + K, (size_t)P * 4, (size_t)V * 4,
                                 (size_t)a.NZ * C, cudaMemcpyDeviceToDevice, R->st);
        rgemm(x, 0, 0, C, V, K, -1.f, B_X, 0, P, B_S0, 0, V, 1.f, B_U, 0, V);           /* U = Ut - W S0 */
    }
}

static lina_status cb_finish(const char *fn, cb_run *R) {
    if (R->e == cudaSuccess) R->e = cudaGetLastError();
    mark(R, "end");
    if (R->timing && R->n_ev > 1) {
        cudaEventSynchronize(R->ev[R->n_ev - 1]);
        fprintf(stderr, "[%s]", fn);
        for (int i = 1; i < R->n_ev; i++) {
            float ms = 0.f;
            cudaEventElapsedTime(&ms, R->ev[i - 1], R->ev[i]);
            fprintf(stderr, " %s %.3f ms", R->ev_name[i - 1], ms);
        }
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "; host %.3f ms\n",
                (t1.tv_sec - R->t_start.tv_sec) * 1e3 + (t1.tv_nsec - R->t_start.tv_nsec) * 1e-6);
    }
    for (int i = 0; i < R->n_ev; i++) cudaEventDestroy(R->ev[i]);
    cudaFreeAsync(R->ws, R->st);
    if (R->x.status != CUBLAS_STATUS_SUCCESS)
        return lina_fail(LINA_ERR_CUDA, "%s: cuBLAS status %d", fn, (int)R->x.status);
    if (R->e != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(R->e == cudaErrorMemoryAllocation ? LINA_ERR_OOM : LINA_ERR_CUDA, "%s: %s: %s", fn,
                         R->what, cudaGetErrorString(R->e));
    }
    return LINA_OK;
}

/* o rows of the chunk (O in B_DR) in the element type. */
template <typename T>
__global__ void __launch_bounds__(CB_THREADS) cb_store_o(cb_args a, void *out) {
    const int64_t z = blockIdx.x;
    const int c = (int)(z / a.HV), hv = (int)(z % a.HV), V = a.V, n = a.chunk_len[c];
    const int64_t t0 = a.chunk_t0[c];
    const float *O = zbuf(a, B_DR, z);
    T *o = (T *)out;
    for (int i = threadIdx.x; i < n * V; i += CB_THREADS) o[((t0 + i / V) * a.HV + hv) * V + i % V] = from_f<T>(O[i]);
}

static lina_status blas_forward(const lina_attn_desc *d, lina_dtype dtype, const lina_cuda_attn_fwd_args *f,
                                void *stream) {
    static const char fn[] = "lina_cuda_attn_forward (chunkwise, cuBLAS)";
    cb_run R;
    memset(&R, 0, sizeof R);
    R.st = (cudaStream_t)stream;
    TRY_STATUS(cb_setup(fn, d, dtype, 0, 0, &R));
    cb_args &a = R.a;
    a.q = f->q, a.k = f->k, a.v = f->v, a.g = f->g, a.beta = f->beta, a.h0 = f->h0, a.ht = f->ht;
    cb_front(&R, dtype, 0);
    if (cb_ok(&R) && a.NZ > 0) { /* O = scale (Qg S0 + Mq U) */
        const int K = a.K, V = a.V, C = CB_C;
        mark(&R, "outputs");
        rgemm(&R.x, 0, 0, C, V, K, a.scale, B_QG, 0, K, B_S0, 0, V, 0.f, B_DR, 0, V);
        rgemm(&R.x, 0, 0, C, V, C, a.scale, B_MQ, 0, C, B_U, 0, V, 1.f, B_DR, 0, V);
        if (cb_ok(&R)) {
            const unsigned nz = (unsigned)a.NZ;
            if (dtype == LINA_DTYPE_F32) cb_store_o<float><<<nz, CB_THREADS, 0, R.st>>>(a, f->o);
            else if (dtype == LINA_DTYPE_BF16) cb_store_o<__nv_bfloat16><<<nz, CB_THREADS, 0, R.st>>>(a, f->o);
            else cb_store_o<__half><<<nz, CB_THREADS, 0, R.st>>>(a, f->o);
        }
    }
    return cb_finish(fn, &R);
}

/* zero_dg = 0: a CONST dg accumulates onto what an earlier group of sequences left */
static lina_status blas_backward(const lina_attn_desc *d, lina_dtype dtype, const lina_cuda_attn_bwd_args *ar,
                                 void *stream, int zero_dg) {
    static const char fn[] = "lina_cuda_attn_backward (chunkwise, cuBLAS)";
    cb_run R;
    memset(&R, 0, sizeof R);
    R.st = (cudaStream_t)stream;
    const int accumulate = dtype != LINA_DTYPE_F32; /* fp32 sums beside 16-bit dq, dk */
    const size_t n_qk = (size_t)d->B * d->T * d->H * d->K;
    TRY_STATUS(cb_setup(fn, d, dtype, 1, accumulate ? 2 * n_qk : 0, &R));
    cb_args &a = R.a;
    blas_ctx *x = &R.x;
    const int K = a.K, V = a.V, P = K + V, C = CB_C;
    const float sc = a.scale;
    a.dq_acc = accumulate ? R.extra : (float *)ar->dq;
    a.dk_acc = accumulate ? R.extra + n_qk : (float *)ar->dk;
    a.q = ar->q, a.k = ar->k, a.v = ar->v, a.dout = ar->dout, a.g = ar->g, a.beta = ar->beta;
    a.h0 = ar->h0, a.dht = ar->dht, a.dv = ar->dv, a.dbeta = ar->dbeta, a.dh0 = ar->dh0;
    a.dg = ar->dg; /* NULL: the gates' gradient is not wanted */
    const size_t n_g = lina_attn_gate_numel(d);
    if (R.e == cudaSuccess) R.what = "zeroing the gradients";
    if (R.e == cudaSuccess && n_qk) R.e = cudaMemsetAsync(a.dq_acc, 0, n_qk * 4, R.st);
    if (R.e == cudaSuccess && n_qk) R.e = cudaMemsetAsync(a.dk_acc, 0, n_qk * 4, R.st);
    if (R.e == cudaSuccess && n_g && a.dg && (zero_dg || d->gate != LINA_GATE_CONST))
        R.e = cudaMemsetAsync(a.dg, 0, n_g * 4, R.st);
    cb_front(&R, dtype, 1);
    if (cb_ok(&R) && a.NZ > 0) {
        rgemm(x, 1, 0, C, V, C, sc, B_MQ, 0, C, B_DR, 0, V, 0.f, B_DWU, K, P);          /* A = sc Mq^T dO */
        rgemm(x, 1, 0, K, V, C, sc, B_QG, 0, K, B_DR, 0, V, 0.f, B_F, 0, V);            /* sc Qg^T dO */
        rgemm(x, 1, 0, K, V, C, -1.f, B_X, 0, P, B_DWU, K, P, 1.f, B_F, 0, V);          /* H = .. - W^T A */
    }
    if (cb_ok(&R)) {
        R.what = "state recurrence (reverse)";
        mark(&R, "chain rev");
        R.e = (cudaError_t)chain(a, 1, R.st);
    }
    if (cb_ok(&R) && a.NZ > 0) {
        R.what = "chunk kernels";
        mark(&R, "grad gemms");
        rgemm(x, 0, 0, C, V, K, 1.f, B_KD, 0, K, B_DSA, 0, V, 1.f, B_DWU, K, P);        /* dU = A + Kd dSa */
        rgemm(x, 0, 1, C, K, V, 1.f, B_U, 0, V, B_DSA, 0, V, 0.f, B_DKD, 0, K);         /* dKd = U dSa^T */
        rgemm(x, 0, 1, C, K, V, sc, B_DR, 0, V, B_S0, 0, V, 0.f, B_DQG, 0, K);          /* dQg = sc dO S0^T */
        rgemm(x, 0, 1, C, C, V, sc, B_DR, 0, V, B_U, 0, V, 0.f, B_DMQ, 0, C);           /* sc dO U^T */
        rgemm(x, 0, 1, C, K, V, -1.f, B_DWU, K, P, B_S0, 0, V, 0.f, B_DWU, 0, P);       /* dW = -dU S0^T */
        rgemm(x, 1, 0, C, P, C, 1.f, B_TINV, 0, C, B_DWU, 0, P, 0.f, B_DB, 0, P);       /* dB = Tinv^T [dW | dU] */
        rgemm(x, 0, 1, C, C, P, -1.f, B_DB, 0, P, B_X, 0, P, 0.f, B_DL, 0, C);          /* -dB X^T */
        mark(&R, "post+final");
        if (x->status == CUBLAS_STATUS_SUCCESS) post(a, dtype, R.st);
        if (a.vec && x->status == CUBLAS_STATUS_SUCCESS) {
            const size_t smem = (2 * CB_C * CB_C + 3 * CB_C * 32) * 4;
            cudaFuncSetAttribute(cb_vscores_bwd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
            cb_vscores_bwd<<<(unsigned)a.NZ, CB_THREADS, smem, R.st>>>(a);
            cb_final_vec<<<(unsigned)a.NZ, CB_THREADS, 0, R.st>>>(a);
        } else {
            rgemm(x, 0, 0, C, K, C, 1.f, B_DQK, 0, C, B_KR, 0, K, 0.f, B_DQ, 0, K);     /* dQK K */
            rgemm(x, 0, 0, C, K, C, 1.f, B_SSYM, 0, C, B_KR, 0, K, 0.f, B_DK, 0, K);    /* (dKK + dKK^T) K */
            rgemm(x, 1, 0, C, K, C, 1.f, B_DQK, 0, C, B_QR, 0, K, 1.f, B_DK, 0, K);     /* + dQK^T Q */
            if (x->status == CUBLAS_STATUS_SUCCESS) cb_final<<<(unsigned)a.NZ, CB_THREADS, 0, R.st>>>(a);
        }
    }
    if (cb_ok(&R) && accumulate && n_qk) {
        R.what = "converting dq, dk";
        R.e = (cudaError_t)lina_cuda_convert_f32(a.dq_acc, ar->dq, n_qk, dtype, stream);
        if (R.e == cudaSuccess) R.e = (cudaError_t)lina_cuda_convert_f32(a.dk_acc, ar->dk, n_qk, dtype, stream);
    }
    return cb_finish(fn, &R);
}

/* ---- groups of sequences: the workspace grows with tokens x value heads (about 1 MB per
 * 64-token chunk and head at K = V = 128), so a large batch runs as several calls, each on
 * whole sequences, within a budget: LINA_CUDA_CHUNK_WS_MB, else half the free device memory. */

typedef struct {
    int n0, n1;       /* sequences [n0, n1) */
    int64_t tok0;     /* their first token */
    lina_attn_desc d; /* their own descriptor (cu_seqlens rebased into cu) */
    int64_t *cu;
} seq_group;

static size_t ws_budget(void) {
    const char *env = getenv("LINA_CUDA_CHUNK_WS_MB");
    if (env && atof(env) > 0) return (size_t)(atof(env) * 1048576.0);
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        cudaGetLastError();
        return (size_t)1 << 30;
    }
    return free_b / 2;
}

/* The next group after g->n1 (g->n1 = 0 first): as many whole sequences as fit the budget
 * (at least one). Returns 0 when all sequences are done. */
static int next_group(const lina_attn_desc *d, int backward, size_t budget, seq_group *g) {
    const int N = d->cu_seqlens ? d->n_seqs : d->B, HV = d->HV ? d->HV : d->H;
    if (g->n1 >= N) return 0;
    int64_t size[B_COUNT];
    const double per_chunk = 4.0 * cb_sizes(d, backward, size) * HV;
    g->n0 = g->n1;
    double bytes = 0;
    for (g->n1 = g->n0; g->n1 < N; g->n1++) {
        const int64_t len = d->cu_seqlens ? d->cu_seqlens[g->n1 + 1] - d->cu_seqlens[g->n1] : d->T;
        const double more = per_chunk * (double)((len + CB_C - 1) / CB_C);
        if (g->n1 > g->n0 && bytes + more > (double)budget) break;
        bytes += more;
    }
    g->d = *d;
    if (d->cu_seqlens) {
        g->tok0 = d->cu_seqlens[g->n0];
        for (int n = g->n0; n <= g->n1; n++) g->cu[n - g->n0] = d->cu_seqlens[n] - g->tok0;
        g->d.cu_seqlens = g->cu;
        g->d.n_seqs = g->n1 - g->n0;
        g->d.T = (int)(d->cu_seqlens[g->n1] - g->tok0);
    } else {
        g->tok0 = (int64_t)g->n0 * d->T;
        g->d.B = g->n1 - g->n0;
    }
    return 1;
}

static size_t esize(lina_dtype t) { return t == LINA_DTYPE_F32 ? 4 : 2; }

/* Element offsets of a group's rows in each tensor kind. */
typedef struct {
    size_t qk, v, g, b, state;
} group_offsets;

static group_offsets offsets_of(const lina_attn_desc *d, const seq_group *g) {
    const size_t HV = d->HV ? d->HV : d->H, t = (size_t)g->tok0;
    group_offsets o;
    o.qk = t * d->H * d->K;
    o.v = t * HV * d->V;
    o.g = d->gate == LINA_GATE_SCALAR ? t * HV : d->gate == LINA_GATE_VECTOR ? t * HV * d->K : 0;
    o.b = t * HV;
    o.state = (size_t)g->n0 * HV * d->K * d->V;
    return o;
}

#define OFF(ptr, elems, bytes) ((ptr) ? (void *)((char *)(ptr) + (elems) * (bytes)) : NULL)

extern "C" lina_status lina_cuda_chunk_blas_forward(const lina_attn_desc *d, lina_dtype dtype,
                                                    const lina_cuda_attn_fwd_args *f, void *stream) {
    const int N = d->cu_seqlens ? d->n_seqs : d->B;
    int64_t *cu = (int64_t *)malloc(sizeof(int64_t) * (size_t)(N + 1));
    if (!cu) return lina_fail(LINA_ERR_OOM, "lina_cuda_attn_forward: cannot allocate %d host offsets", N + 1);
    seq_group g;
    memset(&g, 0, sizeof g);
    g.cu = cu;
    const size_t budget = ws_budget(), es = esize(dtype);
    lina_status s = LINA_OK;
    while (s == LINA_OK && next_group(d, 0, budget, &g)) {
        const group_offsets o = offsets_of(d, &g);
        lina_cuda_attn_fwd_args a = *f;
        a.q = OFF(f->q, o.qk, es), a.k = OFF(f->k, o.qk, es), a.v = OFF(f->v, o.v, es);
        a.o = OFF(f->o, o.v, es);
        a.g = (const float *)OFF(f->g, o.g, 4), a.beta = (const float *)OFF(f->beta, o.b, 4);
        a.h0 = (const float *)OFF(f->h0, o.state, 4), a.ht = (float *)OFF(f->ht, o.state, 4);
        s = blas_forward(&g.d, dtype, &a, stream);
    }
    free(cu);
    return s;
}

extern "C" lina_status lina_cuda_chunk_blas_backward(const lina_attn_desc *d, lina_dtype dtype,
                                                      const lina_cuda_attn_bwd_args *ar, void *stream) {
    const int N = d->cu_seqlens ? d->n_seqs : d->B;
    int64_t *cu = (int64_t *)malloc(sizeof(int64_t) * (size_t)(N + 1));
    if (!cu) return lina_fail(LINA_ERR_OOM, "lina_cuda_attn_backward: cannot allocate %d host offsets", N + 1);
    seq_group g;
    memset(&g, 0, sizeof g);
    g.cu = cu;
    const size_t budget = ws_budget(), es = esize(dtype);
    lina_status s = LINA_OK;
    for (int first = 1; s == LINA_OK && next_group(d, 1, budget, &g); first = 0) {
        const group_offsets o = offsets_of(d, &g);
        lina_cuda_attn_bwd_args a = *ar;
        a.q = OFF(ar->q, o.qk, es), a.k = OFF(ar->k, o.qk, es), a.v = OFF(ar->v, o.v, es);
        a.dout = OFF(ar->dout, o.v, es), a.dv = OFF(ar->dv, o.v, es);
        a.dq = OFF(ar->dq, o.qk, es), a.dk = OFF(ar->dk, o.qk, es);
        a.g = (const float *)OFF(ar->g, o.g, 4), a.dg = (float *)OFF(ar->dg, o.g, 4);
        a.beta = (const float *)OFF(ar->beta, o.b, 4), a.dbeta = (float *)OFF(ar->dbeta, o.b, 4);
        a.h0 = (const float *)OFF(ar->h0, o.state, 4), a.dht = (const float *)OFF(ar->dht, o.state, 4);
        a.dh0 = (float *)OFF(ar->dh0, o.state, 4);
        s = blas_backward(&g.d, dtype, &a, stream, first);
    }
    free(cu);
    return s;
}
