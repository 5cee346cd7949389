/* Device kernels of the language model's training path (lm_kernels.h), fp32: embedding, RMSNorm
 * (plain and gated), L2 norm, short causal convolution, rotary embeddings, elementwise
 * activations, gates, the normalized-attention ones column, cross-entropy rows and AdamW.
 * Each mirrors the CPU function named in lm_kernels.h (src/layers, src/training): same formulas
 * in the same order, expf / log1pf where the CPU uses them.
 *
 * Layouts: row ops run one block per row (a warp per row where rows are short), the block
 * summing by warp shuffles and a 32-float shared array. Sums over rows into parameter gradients
 * (dw, db, dA_log, ...) run column-per-thread: block (32, 8) covers 32 columns and 8 rows at a
 * time, a grid of gy blocks per column tile walks the rows with stride 8 gy, the 8 partial sums
 * meet in shared memory and one fp32 atomicAdd per column and block lands in the gradient.
 * Elementwise ops are grid-stride loops over 64-bit indices. */
#include <math.h>

#include "lm_kernels.h"

#define LK_THREADS 256      /* elementwise blocks */
#define LK_MAX_BLOCKS 4096  /* elementwise grid cap: about 4 waves of 132 SMs x 2048 threads */
#define LK_COL_X 32         /* column reductions: block (LK_COL_X, LK_COL_Y) */
#define LK_COL_Y 8
#define LK_COL_BLOCKS 2048  /* column reductions: target grid size */

#define FOR_EACH(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---- scalar helpers, as layers.h ---- */
static __device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
static __device__ __forceinline__ float siluf_(float x) { return x * sigmoidf_(x); }
static __device__ __forceinline__ float silu_grad_(float x) {
    float s = sigmoidf_(x);
    return s * (1.0f + x * (1.0f - s));
}
static __device__ __forceinline__ float softplusf_(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static __device__ __forceinline__ float logsigmoidf_(float x) { return -softplusf_(-x); }

/* ---- block sums (blockDim.x a multiple of 32, at most 1024); every thread gets the total ---- */
static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}
static __device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}
/* sh: 32 shared floats; the leading barrier lets a block call this several times in a row */
static __device__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    return warp_sum(lane < nw ? sh[lane] : 0.0f);
}
static __device__ double block_sum_d(double v, double *sh) {
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    return warp_sum_d(lane < nw ? sh[lane] : 0.0);
}
static __device__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    return warp_max(lane < nw ? sh[lane] : -INFINITY);
}

/* ---- launch shapes ---- */
static unsigned ew_grid(size_t n) {
    size_t b = (n + LK_THREADS - 1) / LK_THREADS;
    return (unsigned)(b < LK_MAX_BLOCKS ? b : LK_MAX_BLOCKS);
}
/* threads of a one-block-per-row kernel: a power of two from 32 to 256, about one per column */
static int row_threads(int D) {
    int t = 32;
    while (t < D && t < 256) t *= 2;
    return t;
}
/* column-reduction grid over (rows, cols): x tiles of 32 columns, y blocks sharing the rows (each
 * thread at least ~8 rows, so the atomics stay a small part of the traffic) */
static dim3 col_grid(size_t rows, int cols, int z) {
    unsigned gx = (unsigned)((cols + LK_COL_X - 1) / LK_COL_X);
    size_t gy = (rows + 8 * LK_COL_Y - 1) / (8 * LK_COL_Y), cap = LK_COL_BLOCKS / gx;
    if (gy > cap) gy = cap;
    if (gy < 1) gy = 1;
    if (gy > 65535) gy = 65535;
    return dim3(gx, (unsigned)gy, (unsigned)z);
}
static const dim3 col_block(LK_COL_X, LK_COL_Y);

/* sum of a column-reduction block's LK_COL_Y rows of partials; valid in threadIdx.y == 0 */
static __device__ __forceinline__ float col_block_sum(float v, float (*sh)[LK_COL_X + 1]) {
    sh[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    float s = 0;
    if (threadIdx.y == 0)
        for (int y = 0; y < LK_COL_Y; y++) s += sh[y][threadIdx.x];
    return s;
}

/* ======================= rows: embedding, norms ======================= */

/* x[n] = E[tok[n]]; backward dE[tok[n]] += dx[n] (atomics: tokens repeat) */
static __global__ void embedding_fwd_kernel(int D, const int32_t *tok, const float *E, float *x) {
    const size_t n = blockIdx.x;
    const float *e = E + (size_t)tok[n] * D;
    float *xr = x + n * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) xr[i] = e[i];
}
static __global__ void embedding_bwd_kernel(int D, const int32_t *tok, const float *dx, float *dE) {
    const size_t n = blockIdx.x;
    float *e = dE + (size_t)tok[n] * D;
    const float *dr = dx + n * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) atomicAdd(e + i, dr[i]);
}

extern "C" void lk_embedding_forward(int N, int D, const int32_t *tok, const float *E, float *x, cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    embedding_fwd_kernel<<<N, row_threads(D), 0, s>>>(D, tok, E, x);
}
extern "C" void lk_embedding_backward(int N, int D, const int32_t *tok, const float *dx, float *dE, cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    embedding_bwd_kernel<<<N, row_threads(D), 0, s>>>(D, tok, dx, dE);
}

/* (gated) RMSNorm forward, one block per row: r = (mean(o^2) + eps)^-1/2, y = o r w [silu(z)] */
static __global__ void rmsnorm_fwd_kernel(int D, const float *o, const float *z, const float *w, float eps,
                                          float *y, float *rstd) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *xr = o + row * D;
    float ss = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    const float r = 1.0f / sqrtf(ss / D + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    float *yr = y + row * D;
    if (z) {
        const float *zr = z + row * D;
        for (int i = threadIdx.x; i < D; i += blockDim.x) yr[i] = xr[i] * r * w[i] * siluf_(zr[i]);
    } else {
        for (int i = threadIdx.x; i < D; i += blockDim.x) yr[i] = xr[i] * r * w[i];
    }
}

/* (gated) RMSNorm input gradients, one block per row (norm.c):
 *   gate = silu(z) or 1, m = mean(dy w gate o r);  do = r (dy w gate - o r m)  (+= when accumulate)
 *   dz = dy o r w silu'(z) (overwritten) */
static __global__ void rmsnorm_bwd_kernel(int D, const float *o, const float *z, const float *w, const float *rstd,
                                          const float *dy, float *d_o, float *dz, int accumulate) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *xr = o + row * D, *dyr = dy + row * D, *zr = z ? z + row * D : NULL;
    const float r = rstd[row];
    float dot = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float gate = zr ? siluf_(zr[i]) : 1.0f;
        dot += dyr[i] * w[i] * gate * xr[i] * r;
    }
    const float m = block_sum(dot, sh) / D;
    float *dor = d_o + row * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float gate = zr ? siluf_(zr[i]) : 1.0f;
        float d = r * (dyr[i] * w[i] * gate - xr[i] * r * m);
        dor[i] = accumulate ? dor[i] + d : d;
        if (zr) dz[row * D + i] = dyr[i] * xr[i] * r * w[i] * silu_grad_(zr[i]);
    }
}

/* Column sums over N rows of (N, D) into out (D), accumulated:
 *   x == NULL: dy (bias);  else dy x rstd[n] [silu(z)] (RMSNorm weights). */
static __global__ void col_sum_kernel(int N, int D, const float *dy, const float *x, const float *rstd,
                                      const float *z, float *out) {
    __shared__ float sh[LK_COL_Y][LK_COL_X + 1];
    const int col = blockIdx.x * LK_COL_X + threadIdx.x;
    float acc = 0;
    if (col < D)
        for (int n = blockIdx.y * LK_COL_Y + threadIdx.y; n < N; n += gridDim.y * LK_COL_Y) {
            const size_t i = (size_t)n * D + col;
            if (!x) {
                acc += dy[i];
            } else {
                float t = dy[i] * x[i] * rstd[n];
                acc += z ? t * siluf_(z[i]) : t;
            }
        }
    const float s = col_block_sum(acc, sh);
    if (threadIdx.y == 0 && col < D) atomicAdd(out + col, s);
}

extern "C" void lk_rmsnorm_forward(int N, int D, const float *x, const float *w, float eps, float *y, float *rstd,
                                   cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    rmsnorm_fwd_kernel<<<N, row_threads(D), 0, s>>>(D, x, NULL, w, eps, y, rstd);
}
extern "C" void lk_rmsnorm_backward(int N, int D, const float *x, const float *w, const float *rstd, const float *dy,
                                    float *dx, float *dw, cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    rmsnorm_bwd_kernel<<<N, row_threads(D), 0, s>>>(D, x, NULL, w, rstd, dy, dx, NULL, 1);
    col_sum_kernel<<<col_grid(N, D, 1), col_block, 0, s>>>(N, D, dy, x, rstd, NULL, dw);
}
extern "C" void lk_gated_rmsnorm_forward(int N, int D, const float *o, const float *z, const float *w, float eps,
                                         float *y, float *rstd, cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    rmsnorm_fwd_kernel<<<N, row_threads(D), 0, s>>>(D, o, z, w, eps, y, rstd);
}
extern "C" void lk_gated_rmsnorm_backward(int N, int D, const float *o, const float *z, const float *w,
                                          const float *rstd, const float *dy, float *d_o, float *dz, float *dw,
                                          cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    rmsnorm_bwd_kernel<<<N, row_threads(D), 0, s>>>(D, o, z, w, rstd, dy, d_o, dz, 0);
    col_sum_kernel<<<col_grid(N, D, 1), col_block, 0, s>>>(N, D, dy, o, rstd, z, dw);
}

/* L2 norm of rows: r = (sum x^2 + eps)^-1/2, y = x r;  dx = r (dy - y (dy . y)) (overwritten) */
static __global__ void l2norm_fwd_kernel(int D, const float *x, float eps, float *y, float *rnorm) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float ss = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    const float r = 1.0f / sqrtf(block_sum(ss, sh) + eps);
    if (threadIdx.x == 0) rnorm[row] = r;
    for (int i = threadIdx.x; i < D; i += blockDim.x) y[row * D + i] = xr[i] * r;
}
static __global__ void l2norm_bwd_kernel(int D, const float *y, const float *rnorm, const float *dy, float *dx) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *yr = y + row * D, *dyr = dy + row * D;
    float dot = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dot += dyr[i] * yr[i];
    dot = block_sum(dot, sh);
    const float r = rnorm[row];
    for (int i = threadIdx.x; i < D; i += blockDim.x) dx[row * D + i] = r * (dyr[i] - yr[i] * dot);
}

extern "C" void lk_l2norm_forward(int N, int D, const float *x, float eps, float *y, float *rnorm, cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    l2norm_fwd_kernel<<<N, row_threads(D), 0, s>>>(D, x, eps, y, rnorm);
}
extern "C" void lk_l2norm_backward(int N, int D, const float *y, const float *rnorm, const float *dy, float *dx,
                                   cudaStream_t s) {
    if (N <= 0 || D <= 0) return;
    l2norm_bwd_kernel<<<N, row_threads(D), 0, s>>>(D, y, rnorm, dy, dx);
}

/* ======================= sequence ops ======================= */

/* Causal depthwise conv + SiLU (conv.c, zeros before t = 0 in every batch row), x, c, y (B, T, C),
 * w (C, W): c[t, ch] = sum_i w[ch, i] x[t - (W-1) + i, ch] in tap order, y = silu(c). */
static __global__ void conv_fwd_kernel(size_t n, int T, int C, int W, const float *x, const float *w, float *c,
                                       float *y) {
    FOR_EACH(idx, n) {
        const size_t bt = idx / C;
        const int ch = (int)(idx - bt * C), t = (int)(bt % T);
        float acc = 0;
        for (int i = 0; i < W; i++) {
            int src = t - (W - 1) + i;
            if (src >= 0) acc += w[(size_t)ch * W + i] * x[idx - (size_t)(W - 1 - i) * C];
        }
        c[idx] = acc;
        y[idx] = siluf_(acc);
    }
}
/* dc = dy silu'(c) (scratch, overwritten) */
static __global__ void conv_dc_kernel(size_t n, const float *c, const float *dy, float *dc) {
    FOR_EACH(i, n) dc[i] = dy[i] * silu_grad_(c[i]);
}
/* dx[s] = sum_i w[i] dc[s + (W-1) - i] over t = s + (W-1) - i < T (overwritten) */
static __global__ void conv_dx_kernel(size_t n, int T, int C, int W, const float *w, const float *dc, float *dx) {
    FOR_EACH(idx, n) {
        const size_t bs = idx / C;
        const int ch = (int)(idx - bs * C), s = (int)(bs % T);
        float acc = 0;
        for (int i = 0; i < W; i++) {
            int t = s + (W - 1) - i;
            if (t < T) acc += w[(size_t)ch * W + i] * dc[idx + (size_t)(W - 1 - i) * C];
        }
        dx[idx] = acc;
    }
}
/* dw[ch, i] += sum_{b, t} dc[b, t, ch] x[b, t - (W-1) + i, ch]; tap i = blockIdx.z */
static __global__ void conv_dw_kernel(int BT, int T, int C, int W, const float *x, const float *dc, float *dw) {
    __shared__ float sh[LK_COL_Y][LK_COL_X + 1];
    const int ch = blockIdx.x * LK_COL_X + threadIdx.x, i = blockIdx.z, lag = W - 1 - i;
    float acc = 0;
    if (ch < C)
        for (int bt = blockIdx.y * LK_COL_Y + threadIdx.y; bt < BT; bt += gridDim.y * LK_COL_Y)
            if (bt % T >= lag) acc += dc[(size_t)bt * C + ch] * x[(size_t)(bt - lag) * C + ch];
    const float s = col_block_sum(acc, sh);
    if (threadIdx.y == 0 && ch < C) atomicAdd(dw + (size_t)ch * W + i, s);
}

extern "C" void lk_conv_forward(int B, int T, int C, int W, const float *x, const float *w, float *c, float *y,
                                cudaStream_t s) {
    size_t n = (size_t)B * T * C;
    if (B <= 0 || T <= 0 || C <= 0) return;
    conv_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, T, C, W, x, w, c, y);
}
extern "C" void lk_conv_backward(int B, int T, int C, int W, const float *x, const float *w, const float *c,
                                 const float *dy, float *dc, float *dx, float *dw, cudaStream_t s) {
    size_t n = (size_t)B * T * C;
    if (B <= 0 || T <= 0 || C <= 0) return;
    conv_dc_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, c, dy, dc);
    conv_dx_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, T, C, W, w, dc, dx);
    if (W > 0) conv_dw_kernel<<<col_grid((size_t)B * T, C, W), col_block, 0, s>>>(B * T, T, C, W, x, dc, dw);
}

/* Rotary, non-interleaved halves (rotary.c), x (B, T, H, D) in place, one block per (b, t): the
 * angles a_i = (pos0 + t) theta^(-2i/D) in double as the CPU computes them, once per block into
 * shared memory, then the H * D/2 pairs (i, i + D/2) of the row. inverse: angle -a. */
static __global__ void rotary_kernel(int T, int H, int D, float theta, int pos0, float *x, int inverse) {
    extern __shared__ float cs[]; /* cos (half), then sin (half) */
    const int half = D / 2, t = blockIdx.x % T;
    float *sn = cs + half;
    const double pos = pos0 + t;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double a = pos * pow((double)theta, -2.0 * i / D), sa, ca;
        sincos(a, &sa, &ca);
        cs[i] = (float)ca;
        sn[i] = (float)(inverse ? -sa : sa);
    }
    __syncthreads();
    float *xr = x + (size_t)blockIdx.x * H * D;
    for (int j = threadIdx.x; j < H * half; j += blockDim.x) {
        const int h = j / half, i = j - h * half;
        float *r = xr + (size_t)h * D;
        const float c = cs[i], s = sn[i], x1 = r[i], x2 = r[i + half];
        r[i] = x1 * c - x2 * s;
        r[i + half] = x2 * c + x1 * s;
    }
}

extern "C" void lk_rotary_apply(int B, int T, int H, int D, float theta, int pos0, float *x, int inverse,
                                cudaStream_t s) {
    if (B <= 0 || T <= 0 || H <= 0 || D / 2 <= 0) return;
    rotary_kernel<<<B * T, 128, 2 * (D / 2) * sizeof(float), s>>>(T, H, D, theta, pos0, x, inverse);
}

/* ======================= elementwise ======================= */

static __global__ void add_kernel(size_t n, const float *a, const float *b, float *y) {
    FOR_EACH(i, n) y[i] = a[i] + b[i];
}
static __global__ void scale_kernel(size_t n, float alpha, float *x) {
    FOR_EACH(i, n) x[i] *= alpha;
}
static __global__ void swiglu_fwd_kernel(size_t n, const float *a, const float *b, float *h) {
    FOR_EACH(i, n) h[i] = siluf_(a[i]) * b[i];
}
/* dh read before da is written: da may alias dh (mlp.c computes dh into da) */
static __global__ void swiglu_bwd_kernel(size_t n, const float *a, const float *b, const float *dh, float *da,
                                         float *db) {
    FOR_EACH(i, n) {
        float g = dh[i];
        db[i] = g * siluf_(a[i]);
        da[i] = g * b[i] * silu_grad_(a[i]);
    }
}
static __global__ void sigmoid_fwd_kernel(size_t n, const float *x, float *y) {
    FOR_EACH(i, n) y[i] = sigmoidf_(x[i]);
}
static __global__ void sigmoid_bwd_kernel(size_t n, const float *y, const float *dy, float *dx) {
    FOR_EACH(i, n) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}
static __global__ void elu1_fwd_kernel(size_t n, const float *x, float *y) {
    FOR_EACH(i, n) y[i] = x[i] > 0 ? x[i] + 1.0f : expf(x[i]);
}
static __global__ void elu1_bwd_kernel(size_t n, const float *x, const float *dy, float *dx) {
    FOR_EACH(i, n) dx[i] = dy[i] * (x[i] > 0 ? 1.0f : expf(x[i]));
}
static __global__ void add_bias_kernel(size_t n, int out, const float *b, float *y) {
    FOR_EACH(i, n) y[i] += b[i % out];
}

extern "C" void lk_add(size_t n, const float *a, const float *b, float *y, cudaStream_t s) {
    if (n) add_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, a, b, y);
}
extern "C" void lk_scale(size_t n, float alpha, float *x, cudaStream_t s) {
    if (n) scale_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, alpha, x);
}
extern "C" void lk_swiglu_forward(size_t n, const float *a, const float *b, float *h, cudaStream_t s) {
    if (n) swiglu_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, a, b, h);
}
extern "C" void lk_swiglu_backward(size_t n, const float *a, const float *b, const float *dh, float *da, float *db,
                                   cudaStream_t s) {
    if (n) swiglu_bwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, a, b, dh, da, db);
}
extern "C" void lk_sigmoid_forward(size_t n, const float *x, float *y, cudaStream_t s) {
    if (n) sigmoid_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, x, y);
}
extern "C" void lk_sigmoid_backward(size_t n, const float *y, const float *dy, float *dx, cudaStream_t s) {
    if (n) sigmoid_bwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, y, dy, dx);
}
extern "C" void lk_elu1_forward(size_t n, const float *x, float *y, cudaStream_t s) {
    if (n) elu1_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, x, y);
}
extern "C" void lk_elu1_backward(size_t n, const float *x, const float *dy, float *dx, cudaStream_t s) {
    if (n) elu1_bwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, x, dy, dx);
}
extern "C" void lk_add_bias(int N, int out, const float *b, float *y, cudaStream_t s) {
    size_t n = (size_t)N * out;
    if (N <= 0 || out <= 0) return;
    add_bias_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, out, b, y);
}
extern "C" void lk_bias_backward(int N, int out, const float *dy, float *db, cudaStream_t s) {
    if (N <= 0 || out <= 0) return;
    col_sum_kernel<<<col_grid(N, out, 1), col_block, 0, s>>>(N, out, dy, NULL, NULL, NULL, db);
}

/* ======================= gates (mixer_linear.c) ======================= */

/* a (N, H) in place: a += dt_bias[h]; g = -exp(A_log[h]) softplus(a) */
static __global__ void scalar_gate_fwd_kernel(size_t n, int H, float *a, const float *dt_bias, const float *A_log,
                                              float *g) {
    FOR_EACH(i, n) {
        const int h = (int)(i % H);
        float v = a[i] + dt_bias[h];
        a[i] = v;
        g[i] = -expf(A_log[h]) * softplusf_(v);
    }
}
/* column h = head: da = dg (-exp(A_log)) sigmoid(a) (overwritten); dA_log[h] += sum_n dg g,
 * ddt_bias[h] += sum_n da */
static __global__ void scalar_gate_bwd_kernel(int N, int H, const float *dg, const float *g, const float *a,
                                              const float *A_log, float *da, float *dA_log, float *ddt_bias) {
    __shared__ float sh[LK_COL_Y][LK_COL_X + 1];
    const int h = blockIdx.x * LK_COL_X + threadIdx.x;
    float acc_a = 0, acc_b = 0;
    if (h < H) {
        const float e = -expf(A_log[h]);
        for (int n = blockIdx.y * LK_COL_Y + threadIdx.y; n < N; n += gridDim.y * LK_COL_Y) {
            const size_t i = (size_t)n * H + h;
            const float d = dg[i] * e * sigmoidf_(a[i]);
            da[i] = d;
            acc_a += dg[i] * g[i];
            acc_b += d;
        }
    }
    const float sa = col_block_sum(acc_a, sh);
    __syncthreads(); /* sh reused */
    const float sb = col_block_sum(acc_b, sh);
    if (threadIdx.y == 0 && h < H) {
        atomicAdd(dA_log + h, sa);
        atomicAdd(ddt_bias + h, sb);
    }
}
/* GLA: g = logsigmoid(gl) / 16;  dgl = dg sigmoid(-gl) / 16 */
static __global__ void gla_gate_fwd_kernel(size_t n, const float *gl, float *g) {
    FOR_EACH(i, n) g[i] = logsigmoidf_(gl[i]) / 16.0f;
}
static __global__ void gla_gate_bwd_kernel(size_t n, const float *gl, const float *dg, float *dgl) {
    FOR_EACH(i, n) dgl[i] = dg[i] * sigmoidf_(-gl[i]) / 16.0f;
}

extern "C" void lk_scalar_gate_forward(int N, int H, float *a, const float *dt_bias, const float *A_log, float *g,
                                       cudaStream_t s) {
    size_t n = (size_t)N * H;
    if (N <= 0 || H <= 0) return;
    scalar_gate_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, H, a, dt_bias, A_log, g);
}
extern "C" void lk_scalar_gate_backward(int N, int H, const float *dg, const float *g, const float *a,
                                        const float *A_log, float *da, float *dA_log, float *ddt_bias,
                                        cudaStream_t s) {
    if (N <= 0 || H <= 0) return;
    scalar_gate_bwd_kernel<<<col_grid(N, H, 1), col_block, 0, s>>>(N, H, dg, g, a, A_log, da, dA_log, ddt_bias);
}
extern "C" void lk_gla_gate_forward(size_t n, const float *gl, float *g, cudaStream_t s) {
    if (n) gla_gate_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, gl, g);
}
extern "C" void lk_gla_gate_backward(size_t n, const float *gl, const float *dg, float *dgl, cudaStream_t s) {
    if (n) gla_gate_bwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, gl, dg, dgl);
}

/* ======================= normalized attention: the ones column ======================= */

static __global__ void append_ones_kernel(size_t n, int V, const float *v, float *vaug) {
    FOR_EACH(i, n) {
        const size_t r = i / (V + 1);
        const int c = (int)(i - r * (V + 1));
        vaug[i] = c < V ? v[r * V + c] : 1.0f;
    }
}
static __global__ void drop_last_kernel(size_t n, int V, const float *xaug, float *x) {
    FOR_EACH(i, n) {
        const size_t r = i / V;
        x[i] = xaug[i + r]; /* r * (V + 1) + c */
    }
}
/* o = num / (den + eps) */
static __global__ void normalize_fwd_kernel(size_t n, int V, const float *oaug, float eps, float *o) {
    FOR_EACH(i, n) {
        const size_t r = i / V;
        o[i] = oaug[i + r] / (oaug[r * (V + 1) + V] + eps);
    }
}
/* a warp per row: doaug[:V] = do / (den + eps), doaug[V] = -(do . o) / (den + eps) */
static __global__ void normalize_bwd_kernel(int R, int V, const float *oaug, float eps, const float *o,
                                            const float *d_o, float *doaug) {
    const size_t r = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= (size_t)R) return; /* whole warps leave: the shuffles below stay full */
    const float den = oaug[r * (V + 1) + V] + eps;
    const float *dr = d_o + r * V, *orow = o + r * V;
    float *out = doaug + r * (V + 1);
    float dot = 0;
    for (int c = lane; c < V; c += 32) {
        out[c] = dr[c] / den;
        dot += dr[c] * orow[c];
    }
    dot = warp_sum(dot);
    if (lane == 0) out[V] = -dot / den;
}

extern "C" void lk_append_ones(int R, int V, const float *v, float *vaug, cudaStream_t s) {
    size_t n = (size_t)R * (V + 1);
    if (R <= 0 || V < 0) return;
    append_ones_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, V, v, vaug);
}
extern "C" void lk_normalize_forward(int R, int V, const float *oaug, float eps, float *o, cudaStream_t s) {
    size_t n = (size_t)R * V;
    if (R <= 0 || V <= 0) return;
    normalize_fwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, V, oaug, eps, o);
}
extern "C" void lk_normalize_backward(int R, int V, const float *oaug, float eps, const float *o, const float *d_o,
                                      float *doaug, cudaStream_t s) {
    if (R <= 0 || V < 0) return;
    normalize_bwd_kernel<<<(unsigned)((R + 7LL) / 8), 256, 0, s>>>(R, V, oaug, eps, o, d_o, doaug);
}
extern "C" void lk_drop_last_column(int R, int V, const float *xaug, float *x, cudaStream_t s) {
    size_t n = (size_t)R * V;
    if (R <= 0 || V <= 0) return;
    drop_last_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, V, xaug, x);
}

/* ======================= LM head rows, cross-entropy ======================= */

static __global__ void gather_rows_kernel(int D, const int32_t *rows, const float *x, float *xs) {
    const float *src = x + (size_t)rows[blockIdx.x] * D;
    float *dst = xs + (size_t)blockIdx.x * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dst[i] = src[i];
}
static __global__ void scatter_rows_kernel(int D, const int32_t *rows, const float *xs, float *x) {
    const float *src = xs + (size_t)blockIdx.x * D;
    float *dst = x + (size_t)rows[blockIdx.x] * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dst[i] = src[i];
}

/* One block per row (loss.c): p = expf(z - max) summed in double, p *= (float)(1 / sum);
 * loss = -log(max(p[target], 1e-30)) in double. */
#define CE_THREADS 512
static __global__ void __launch_bounds__(CE_THREADS)
ce_fwd_kernel(int V, float *logits, const int32_t *targets, float *loss) {
    __shared__ float shf[32];
    __shared__ double shd[32];
    const size_t row = blockIdx.x;
    float *z = logits + row * V;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
    mx = block_max(mx, shf);
    double sum = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float p = expf(z[i] - mx);
        z[i] = p;
        sum += p;
    }
    const float inv = (float)(1.0 / block_sum_d(sum, shd));
    for (int i = threadIdx.x; i < V; i += blockDim.x) z[i] *= inv;
    __syncthreads(); /* z[target] written by another thread */
    if (threadIdx.x == 0) {
        float pt = z[targets[row]];
        loss[row] = (float)-log(pt > 1e-30f ? (double)pt : 1e-30);
    }
}
/* dlogits = scale p - scale [i == target] */
static __global__ void ce_bwd_kernel(size_t n, int V, float *p, const int32_t *targets, float scale) {
    FOR_EACH(i, n) {
        const size_t r = i / V;
        float d = scale * p[i];
        if ((int)(i - r * V) == targets[r]) d -= scale;
        p[i] = d;
    }
}

extern "C" void lk_gather_rows(int S, int D, const int32_t *rows, const float *x, float *xs, cudaStream_t s) {
    if (S <= 0 || D <= 0) return;
    gather_rows_kernel<<<S, row_threads(D), 0, s>>>(D, rows, x, xs);
}
extern "C" void lk_scatter_rows(int S, int D, const int32_t *rows, const float *xs, float *x, cudaStream_t s) {
    if (S <= 0 || D <= 0) return;
    scatter_rows_kernel<<<S, row_threads(D), 0, s>>>(D, rows, xs, x);
}
extern "C" void lk_cross_entropy_forward(int S, int V, float *logits, const int32_t *targets, float *loss,
                                         cudaStream_t s) {
    if (S <= 0 || V <= 0) return;
    ce_fwd_kernel<<<S, V >= 4096 ? CE_THREADS : 256, 0, s>>>(V, logits, targets, loss);
}
extern "C" void lk_cross_entropy_backward(int S, int V, float *probs, const int32_t *targets, float scale,
                                          cudaStream_t s) {
    size_t n = (size_t)S * V;
    if (S <= 0 || V <= 0) return;
    ce_bwd_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, V, probs, targets, scale);
}

/* ======================= optimizer ======================= */

/* sum x^2 in double: per-thread and per-block sums in double, one double atomicAdd per block into
 * *out, which the launcher zeroes first (so the block order may change the last bits) */
static __global__ void sum_squares_kernel(size_t n, const float *x, double *out) {
    __shared__ double sh[32];
    double acc = 0;
    FOR_EACH(i, n) acc += (double)x[i] * x[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) atomicAdd(out, acc);
}
/* adamw.c, elementwise: decay == NULL means no weight decay anywhere */
static __global__ void adamw_kernel(size_t n, float *p, const float *g, float *m, float *v, const uint8_t *decay,
                                    float lr, float b1, float b2, float eps, float wd, float bc1, float bc2) {
    FOR_EACH(i, n) {
        const float gi = g[i];
        const float mi = m[i] = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float upd = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        if (decay && decay[i]) upd += wd * p[i];
        p[i] -= lr * upd;
    }
}

extern "C" void lk_sum_squares(size_t n, const float *x, double *out, cudaStream_t s) {
    cudaMemsetAsync(out, 0, sizeof(double), s);
    if (n) sum_squares_kernel<<<ew_grid(n) < 1024 ? ew_grid(n) : 1024, LK_THREADS, 0, s>>>(n, x, out);
}
extern "C" void lk_adamw_step(size_t n, float *p, const float *g, float *m, float *v, const uint8_t *decay, float lr,
                              float b1, float b2, float eps, float wd, float bc1, float bc2, cudaStream_t s) {
    if (n) adamw_kernel<<<ew_grid(n), LK_THREADS, 0, s>>>(n, p, g, m, v, decay, lr, b1, b2, eps, wd, bc1, bc2);
}
