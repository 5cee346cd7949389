/* Parallel (quadratic, attention-like) form: the whole sequence at once.
 *
 * Notation for one job (T tokens, key dim K, value dim V): rows q_t, k_t (K),
 * v_t (V); log gates g_t (scalar, or per key channel for VECTOR); b the
 * inclusive cumulative log gate, b_t = g_0 + ... + g_t (kept in double, so
 * differences b_t - b_s stay exact even when b reaches -6000). Exponentials
 * are of differences of b, never of b alone above 0: nothing overflows.
 *
 * Decayed causal scores (the one kernel everything is built from):
 *   D(X, Y)_ts = sum_c x_tc y_sc exp(b_tc - b_sc)   for s <= t (s < t "strict"), 0 above.
 * For NONE/SCALAR the decay factors out of the dot product: D = (X Y^T) o mask,
 * one GEMM and a pairwise mask. For VECTOR it does not, and is factored
 * through reference tokens r:  exp(b_t - b_s) = exp(b_t - b_r) * exp(b_r - b_s).
 * A block of rows [r, i1) x columns [i0, r) (t >= r > s) has both factors <= 1:
 * one GEMM of rescaled copies, exact up to float rounding. A diagonal block
 * [i0, i1) with reference i0 has column factors >= 1, up to its decay span
 * max_c (b_i0 - b_{i1-1}); while that stays <= SPAN_MAX (e^40) the block is
 * one GEMM too (masked above the diagonal), else it is split in halves (two
 * diagonal blocks and one rectangle through the middle token), down to
 * PAIR_MIN tokens summed pair by pair with the exact exponent. Mild gates
 * thus cost one T x T x K GEMM; strong ones ~log2(T / PAIR_MIN) levels.
 *
 * ADD: S_t = G_t S_{t-1} + k_t v_t^T unrolls to
 *   S_t = e^{b_t} S0 + sum_{s<=t} (k_s o e^{b_t - b_s}) v_s^T, so
 *   O  = scale [ D(Q, K) V + (Q o e^b) S0 ]
 *   hT = e^{b_T} o S0 + (K o e^{b_T - b})^T V
 * DELTA (Yang et al. 2024, WY/UT form over one chunk = the whole sequence;
 * gated = Gated DeltaNet, vector gate = KDA): with the written values
 *   u_t = beta_t (v_t - (G_t S_{t-1})^T k_t)   the state is S_t = G_t S_{t-1} + k_t u_t^T,
 * i.e. the ADD recurrence with values U. Unrolling G_t S_{t-1} gives
 *   u_t = beta_t (x_t - sum_{s<t} M_ts u_s),  X = V - (K o e^b) S0,  M = D_strict(K, K)
 *   (I + diag(beta) M) U = diag(beta) X          (unit lower triangular: one strsm)
 * (in WY terms: T = (I + diag(beta) M)^-1 diag(beta), U = T V - W S0, W = T (K o e^b)),
 * and then O, hT are the ADD formulas with V replaced by U.
 *
 * Backward, with values Vals (= V or U):
 *   dVals = D(Q,K)^T dO + (K o e^{b_T-b}) dhT        dA = dO Vals^T (lower part)
 *   D-kernel backward: dx_t += sum_s dA_ts y_s o e^{b_t-b_s}, dy_s += sum_t dA_ts x_t o e^{b_t-b_s}
 *   S0 terms: dQ += scale (dO S0^T) o e^b, dS0 = scale (Q o e^b)^T dO + e^{b_T} o dhT
 *   DELTA: solve (I + diag(beta) M)^T dR = dU;  dV = diag(beta) dR;
 *          dbeta_t = dR_t . x_t - sum_{s<t} (dR U^T)_ts M_ts;  dM = -diag(beta) (dR U^T) (strict);
 *          dX = dV  =>  d(K o e^b) = -dV S0^T,  dS0 -= (K o e^b)^T dV.
 * Gate: every product exp(b_t - b_s) pairs a "query side" row t with a "key
 * side" row s, so with dx, dy the gradients of the query-side and key-side
 * roles of each input,
 *   db_t = q_t o dq_t + k_t o dk_t(query side) - k_t o dk_t(key side),
 *   db_{T-1} += rowsum(hT o dhT)          (every term of hT carries e^{b_T}),
 * summed over channels for a scalar gate, and dg_t = sum_{t' >= t} db_t'.
 * Terms without decay (s == t on the diagonal of D(Q, K); the last token's
 * k in hT) enter db_t with both signs and cancel exactly, but in floating
 * point their O(1) rounding noise would swamp a tiny dg under strong decay:
 * they are kept out of the gate sums (dQn, dKn below) and only decayed
 * terms, each as small as its decay, reach dg.
 *
 * Cost O(T^2 (K + V)) plus the T x T triangular solves; the workspace holds a
 * few T x T matrices, so this form is meant for short sequences (T <= ~64 by
 * default) but is exact for any T. inner_threads is not used: the GEMMs
 * (lina_sgemm_fixed) spread their tiles over the threads outside parallel regions.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "gemm_fixed.h"

#include "attn_internal.h"

/* VECTOR gate: a diagonal block whose decay (per channel, first to last
 * token) stays below SPAN_MAX factors through its first token: the column
 * factors exp(b_first - b_s) are then at most e^40 and the products stay
 * well inside the float range. Larger decays split the block in halves;
 * blocks of PAIR_MIN tokens or fewer go pair by pair. */
#define SPAN_MAX 40.0
#define PAIR_MIN 8

/* exp(d) for d <= SPAN_MAX, to float accuracy for any |d| (expf of the
 * float-rounded argument alone would lose |d| * 6e-8 relative), flushed to 0
 * below the float normal range. Written to vectorize in omp simd loops, so
 * without branches (GCC does not if-convert a float compare under the default
 * -ftrapping-math) and without libm: d = n ln2 + r, |r| <= ln2/2, reduced in
 * double (n rounded by adding and subtracting 1.5 * 2^52), e^r by its Taylor
 * polynomial of degree 7 (truncation 6e-9), 2^n through the exponent bits.
 * Max relative error 1e-7 over [-87, 40]. d must be finite (b always is). */
#ifdef __FAST_MATH__
#error "attn_parallel.c: decay_of rounds with 1.5 * 2^52, which -ffast-math may fold away"
#endif
#pragma omp declare simd
static inline float decay_of(double d) {
    double live = (double)(d >= -87.0), dc = live * d + (1.0 - live) * -87.0;
    const double round_magic = 6755399441055744.0;
    double n = (dc * 1.4426950408889634 + round_magic) - round_magic;
    float r = (float)(dc - n * 0.6931471805599453);
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } two_n = {((int32_t)n + 127) * (1 << 23)};
    return p * two_n.f * (float)live;
}

typedef struct {
    lina_gate gate;
    int T, K;
    int gk;          /* channels of b: K (VECTOR), 1 (SCALAR), 0 (NONE) */
    const double *b; /* (T, gk) inclusive cumulative log gate */
} decay_t;

static const double *b_row(const decay_t *dc, int t) { return dc->b + (size_t)t * dc->gk; }

/* One log gate as it enters b. A gate below -GATE_FLOOR decays everything
 * before it to exactly 0 (e^-1000 is 0 even in double), so it is clamped
 * there: that changes no product, and it keeps b within T * 1000, where
 * double still resolves the small gates that follow (b = -1e30 would not:
 * -1e30 - 0.1 == -1e30). Its gradient is 0 either way. */
#define GATE_FLOOR 1000.0
#pragma omp declare simd
static inline double gate_term(float g) {
    double live = (double)(g >= -GATE_FLOOR); /* branch-free select, as in decay_of */
    return live * g + (1.0 - live) * -GATE_FLOOR;
}

/* b_t = g_0 + ... + g_t, per channel for VECTOR. */
static decay_t cumulative_gate(const lina_attn_job *j, double *b) {
    decay_t dc = {j->gate, j->T, j->K, 0, b};
    if (j->T == 0) return dc;
    if (j->gate == LINA_GATE_SCALAR) {
        dc.gk = 1;
        double acc = 0;
        for (int t = 0; t < j->T; t++) b[t] = acc += gate_term(j->g[t * j->sg]);
    } else if (j->gate == LINA_GATE_VECTOR) {
        dc.gk = j->K;
        for (int c = 0; c < j->K; c++) b[c] = gate_term(j->g[c]);
        for (int t = 1; t < j->T; t++)
#pragma omp simd
            for (int c = 0; c < j->K; c++)
                b[(size_t)t * j->K + c] =
                    b[(size_t)(t - 1) * j->K + c] + gate_term(j->g[t * j->sg + c]);
    }
    return dc;
}

/* out[(t - t0) K + c] = x_tc * exp(sign * (b_tc - ref_c)) for t in [t0, t1).
 * ref == NULL means b = 0 (before the first token). Callers pick ref and sign
 * so the exponent is <= 0 (sign = +1 with tokens at or after the reference
 * token, -1 with tokens at or before it), or at most SPAN_MAX (the column
 * factors of a factored diagonal block). */
static void decay_rows(const decay_t *dc, const float *x, ptrdiff_t sx, int t0, int t1,
                       const double *ref, int sign, float *out) {
    int K = dc->K;
    for (int t = t0; t < t1; t++) {
        const float *xt = x + t * sx;
        float *ot = out + (size_t)(t - t0) * K;
        if (dc->gate == LINA_GATE_NONE) {
            memcpy(ot, xt, sizeof(float) * K);
        } else if (dc->gate == LINA_GATE_SCALAR) {
            float e = decay_of(sign * (b_row(dc, t)[0] - (ref ? ref[0] : 0.0)));
#pragma omp simd
            for (int c = 0; c < K; c++) ot[c] = xt[c] * e;
        } else {
            const double *bt = b_row(dc, t);
            if (ref) {
#pragma omp simd
                for (int c = 0; c < K; c++) ot[c] = xt[c] * decay_of(sign * (bt[c] - ref[c]));
            } else {
#pragma omp simd
                for (int c = 0; c < K; c++) ot[c] = xt[c] * decay_of(sign * bt[c]);
            }
        }
    }
}

/* dst_tc += src_tc * exp(sign * (b_tc - ref_c)) for t in [t0, t1); src, dst (., K). */
static void add_decayed_rows(const decay_t *dc, const float *src, int t0, int t1, const double *ref,
                             int sign, float *dst) {
    int K = dc->K;
    for (int t = t0; t < t1; t++) {
        const float *st = src + (size_t)(t - t0) * K;
        float *dt = dst + (size_t)t * K;
        if (dc->gate == LINA_GATE_NONE) {
#pragma omp simd
            for (int c = 0; c < K; c++) dt[c] += st[c];
        } else if (dc->gate == LINA_GATE_SCALAR) {
            float e = decay_of(sign * (b_row(dc, t)[0] - (ref ? ref[0] : 0.0)));
#pragma omp simd
            for (int c = 0; c < K; c++) dt[c] += st[c] * e;
        } else {
            const double *bt = b_row(dc, t);
            if (ref) {
#pragma omp simd
                for (int c = 0; c < K; c++) dt[c] += st[c] * decay_of(sign * (bt[c] - ref[c]));
            } else {
#pragma omp simd
                for (int c = 0; c < K; c++) dt[c] += st[c] * decay_of(sign * bt[c]);
            }
        }
    }
}

/* ---- decayed causal scores D(X, Y) and their backward ---- */

/* Zero A above the diagonal (and on it if strict); SCALAR: A_ts *= exp(b_t - b_s) below. */
static void mask_scores(const decay_t *dc, int strict, float *A) {
    int T = dc->T;
    for (int t = 0; t < T; t++) {
        float *At = A + (size_t)t * T;
        int last = strict ? t : t + 1; /* columns [0, last) are kept */
        if (dc->gate == LINA_GATE_SCALAR) {
            double bt = dc->b[t];
#pragma omp simd
            for (int s = 0; s < last; s++) At[s] *= decay_of(bt - dc->b[s]);
        }
        for (int s = last; s < T; s++) At[s] = 0.0f;
    }
}

/* Largest per-channel decay b_first - b_last (>= 0) across tokens [i0, i1). */
static double block_span(const decay_t *dc, int i0, int i1) {
    const double *first = b_row(dc, i0), *last = b_row(dc, i1 - 1);
    double m = 0;
    for (int c = 0; c < dc->K; c++)
        if (first[c] - last[c] > m) m = first[c] - last[c];
    return m;
}

/* VECTOR, pair by pair with the exact exponent: A_ts for i0 <= s <= t < i1. */
static void pair_scores(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                        ptrdiff_t sy, int i0, int i1, float scale, float *A) {
    int K = dc->K, T = dc->T;
    for (int t = i0; t < i1; t++) {
        const float *xt = x + t * sx;
        const double *bt = b_row(dc, t);
        for (int s = i0; s <= t; s++) {
            const float *ys = y + s * sy;
            const double *bs = b_row(dc, s);
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int c = 0; c < K; c++) acc += xt[c] * ys[c] * decay_of(bt[c] - bs[c]);
            A[(size_t)t * T + s] = scale * acc;
        }
    }
}

/* VECTOR: A[rows, cols] = scale (X_rows o e^{b - ref}) (Y_cols o e^{ref - b})^T
 * for rows [r0, r1), cols [c0, c1); ref = b at token `at`. xt, yt: scratch. */
static void factored_scores(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                            ptrdiff_t sy, int r0, int r1, int c0, int c1, int at, float scale,
                            float *A, float *xt, float *yt) {
    int K = dc->K;
    decay_rows(dc, x, sx, r0, r1, b_row(dc, at), +1, xt);
    decay_rows(dc, y, sy, c0, c1, b_row(dc, at), -1, yt);
    lina_sgemm_fixed(CblasNoTrans, CblasTrans, r1 - r0, c1 - c0, K, scale, xt, K, yt, K,
                0.0f, A + (size_t)r0 * dc->T + c0, dc->T);
}

/* VECTOR: the lower part of the diagonal block [i0, i1) of A (entries above
 * the diagonal inside factored blocks are garbage, masked later). An
 * off-diagonal rectangle goes through the reference token mid between its
 * rows (t >= mid) and columns (s < mid): both factors are <= 1. */
static void vector_scores(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                          ptrdiff_t sy, int i0, int i1, float scale, float *A, float *tile) {
    float *xt = tile, *yt = tile + (size_t)dc->T * dc->K;
    if (block_span(dc, i0, i1) <= SPAN_MAX) {
        factored_scores(dc, x, sx, y, sy, i0, i1, i0, i1, i0, scale, A, xt, yt);
    } else if (i1 - i0 <= PAIR_MIN) {
        pair_scores(dc, x, sx, y, sy, i0, i1, scale, A);
    } else {
        int mid = i0 + (i1 - i0) / 2;
        vector_scores(dc, x, sx, y, sy, i0, mid, scale, A, tile);
        vector_scores(dc, x, sx, y, sy, mid, i1, scale, A, tile);
        factored_scores(dc, x, sx, y, sy, mid, i1, i0, mid, mid, scale, A, xt, yt);
    }
}

/* A (T, T) = scale * D(X, Y), zero above the diagonal (and on it if strict).
 * tile: (2T, K) scratch, VECTOR only. */
static void decayed_scores(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                           ptrdiff_t sy, int strict, float scale, float *A, float *tile) {
    int T = dc->T, K = dc->K;
    if (dc->gate == LINA_GATE_VECTOR)
        vector_scores(dc, x, sx, y, sy, 0, T, scale, A, tile);
    else
        lina_sgemm_fixed(CblasNoTrans, CblasTrans, T, T, K, scale, x, (int)sx, y, (int)sy,
                    0.0f, A, T);
    mask_scores(dc, strict, A);
}

/* VECTOR backward, pair by pair, i0 <= s <= t < i1 (dA already masked). */
static void pair_scores_backward(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                                 ptrdiff_t sy, int i0, int i1, float scale, const float *dA,
                                 float *dx, float *dy) {
    int K = dc->K, T = dc->T;
    for (int t = i0; t < i1; t++) {
        const float *xt = x + t * sx;
        const double *bt = b_row(dc, t);
        float *dxt = dx + (size_t)t * K;
        for (int s = i0; s <= t; s++) {
            float a = scale * dA[(size_t)t * T + s];
            if (a == 0.0f) continue;
            const float *ys = y + s * sy;
            const double *bs = b_row(dc, s);
            float *dys = dy + (size_t)s * K;
#pragma omp simd
            for (int c = 0; c < K; c++) {
                float ae = a * decay_of(bt[c] - bs[c]);
                dxt[c] += ae * ys[c];
                dys[c] += ae * xt[c];
            }
        }
    }
}

/* VECTOR backward of factored_scores: with X~ = X_rows o e^{b - ref},
 * Y~ = Y_cols o e^{ref - b}:  dX_rows += (scale dA Y~) o e^{b - ref},
 * dY_cols += (scale dA^T X~) o e^{ref - b}. xt, yt, tmp: scratch. */
static void factored_scores_backward(const decay_t *dc, const float *x, ptrdiff_t sx,
                                     const float *y, ptrdiff_t sy, int r0, int r1, int c0, int c1,
                                     int at, float scale, const float *dA, float *dx, float *dy,
                                     float *xt, float *yt, float *tmp) {
    int K = dc->K, T = dc->T;
    const double *ref = b_row(dc, at);
    const float *dAb = dA + (size_t)r0 * T + c0;
    decay_rows(dc, x, sx, r0, r1, ref, +1, xt);
    decay_rows(dc, y, sy, c0, c1, ref, -1, yt);
    lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, r1 - r0, K, c1 - c0, scale, dAb, T, yt, K,
                0.0f, tmp, K);
    add_decayed_rows(dc, tmp, r0, r1, ref, +1, dx);
    lina_sgemm_fixed(CblasTrans, CblasNoTrans, c1 - c0, K, r1 - r0, scale, dAb, T, xt, K,
                0.0f, tmp, K);
    add_decayed_rows(dc, tmp, c0, c1, ref, -1, dy);
}

/* VECTOR backward over the diagonal block [i0, i1), split as in vector_scores. */
static void vector_scores_backward(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                                   ptrdiff_t sy, int i0, int i1, float scale, const float *dA,
                                   float *dx, float *dy, float *tile) {
    size_t tk = (size_t)dc->T * dc->K;
    float *xt = tile, *yt = tile + tk, *tmp = tile + 2 * tk;
    if (block_span(dc, i0, i1) <= SPAN_MAX) {
        factored_scores_backward(dc, x, sx, y, sy, i0, i1, i0, i1, i0, scale, dA, dx, dy, xt, yt,
                                 tmp);
    } else if (i1 - i0 <= PAIR_MIN) {
        pair_scores_backward(dc, x, sx, y, sy, i0, i1, scale, dA, dx, dy);
    } else {
        int mid = i0 + (i1 - i0) / 2;
        vector_scores_backward(dc, x, sx, y, sy, i0, mid, scale, dA, dx, dy, tile);
        vector_scores_backward(dc, x, sx, y, sy, mid, i1, scale, dA, dx, dy, tile);
        factored_scores_backward(dc, x, sx, y, sy, mid, i1, i0, mid, mid, scale, dA, dx, dy, xt, yt,
                                 tmp);
    }
}

/* Backward of A = scale * D(X, Y): given dA (T, T), accumulate dx, dy (T, K)
 * contiguous. dA is masked in place first (only its lower part counts; SCALAR
 * folds the decay in). Inclusive scores with diag != NULL: the diagonal terms
 * (no decay, so no gate gradient) are left out of dx, dy and dA_tt is stored
 * in diag[t]; the caller adds scale dA_tt y_t to dx_t and scale dA_tt x_t to
 * dy_t. This keeps the gate gradient free of their O(1) cancellation.
 * tile: (3T, K) scratch, VECTOR only. */
static void decayed_scores_backward(const decay_t *dc, const float *x, ptrdiff_t sx, const float *y,
                                    ptrdiff_t sy, int strict, float scale, float *dA, float *dx,
                                    float *dy, float *diag, float *tile) {
    int T = dc->T, K = dc->K;
    mask_scores(dc, strict, dA);
    if (diag && !strict)
        for (int t = 0; t < T; t++) diag[t] = dA[(size_t)t * T + t], dA[(size_t)t * T + t] = 0.0f;
    if (dc->gate == LINA_GATE_VECTOR) {
        vector_scores_backward(dc, x, sx, y, sy, 0, T, scale, dA, dx, dy, tile);
        return;
    }
    /* dx += scale P Y, dy += scale P^T X with P the masked, decayed dA */
    lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, T, K, T, scale, dA, T, y, (int)sy, 1.0f,
                dx, K);
    lina_sgemm_fixed(CblasTrans, CblasNoTrans, T, K, T, scale, dA, T, x, (int)sx, 1.0f, dy,
                K);
}

/* ---- workspace ---- */

typedef struct {
    double *b;    /* (T, gk) cumulative log gate */
    float *A;     /* (T, T) scale * D(Q, K); backward: then dA */
    float *M;     /* (T, T) DELTA: D_strict(K, K) */
    float *L;     /* (T, T) DELTA: strict lower part of I + diag(beta) M; backward: then dR U^T */
    float *X;     /* (T, V) DELTA: V - (K o e^b) S0 */
    float *U;     /* (T, V) DELTA: written values u_t */
    float *rows;  /* (T, K) decayed copies of Q or K, and (T, K) products */
    float *tile;  /* (3T, K) scratch of the VECTOR score kernels */
    float *dS0;   /* (K, V) backward */
    float *dU;    /* (T, V) backward DELTA: dU, solved in place into dR */
    /* Backward gradients of q and k split by role. The gate gradient is read
     * from the decayed roles only; the undecayed ones (diagonal of D(Q, K),
     * last token's k in hT) carry no gate gradient and are kept apart. */
    float *dQ;    /* (T, K) dq through decayed roles (off-diagonal D(Q, K), (Q o e^b) S0) */
    float *dKq;   /* (T, K) dk through decayed query-side roles (rows of M, (K o e^b) S0) */
    float *dKk;   /* (T, K) dk through decayed key-side roles (columns of D, hT) */
    float *dQn;   /* (T, K) dq through undecayed roles */
    float *dKn;   /* (T, K) dk through undecayed roles */
    float *diag;  /* (T) dA_tt of the inclusive scores */
    float *dbT;   /* (K) gradient w.r.t. b_T through hT, besides the key-side rows */
    float *db;    /* (T, gk) gradient w.r.t. b */
    double *acc;  /* (gk) running sums of db */
} buffers_t;

/* Lays the buffers out from base (NULL: only count); returns floats used. */
static size_t carve(const lina_attn_job *j, int backward, float *base, buffers_t *B) {
    size_t T = j->T, K = j->K, V = j->V, off = 0;
    size_t gk = j->gate == LINA_GATE_VECTOR ? K : j->gate == LINA_GATE_SCALAR ? 1 : 0;
    int delta = j->update == LINA_UPDATE_DELTA;
    memset(B, 0, sizeof *B);
#define TAKE(ptr, n)                                                                               \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (base && n_) (ptr) = (void *)(base + off);                                              \
        off += (n_ + 15) / 16 * 16; /* keep 64-byte alignment */                                   \
    } while (0)
    TAKE(B->b, 2 * T * gk); /* doubles */
    TAKE(B->A, T * T);
    TAKE(B->rows, T * K);
    TAKE(B->tile, j->gate == LINA_GATE_VECTOR ? 3 * T * K : 0);
    if (delta) {
        TAKE(B->M, T * T);
        TAKE(B->L, T * T);
        TAKE(B->X, T * V);
        TAKE(B->U, T * V);
    }
    if (backward) {
        TAKE(B->dS0, K * V);
        if (delta) TAKE(B->dU, T * V);
        TAKE(B->dQ, T * K);
        TAKE(B->dKq, T * K);
        TAKE(B->dKk, T * K);
        TAKE(B->dQn, T * K);
        TAKE(B->dKn, T * K);
        TAKE(B->diag, T);
        TAKE(B->dbT, K);
        TAKE(B->db, T * gk);
        TAKE(B->acc, 2 * gk); /* doubles */
    }
#undef TAKE
    return off;
}

size_t lina_parallel_ws_floats(const lina_attn_job *j, int backward) {
    buffers_t B;
    return carve(j, backward, NULL, &B) + 16;
}

/* ---- shared pieces of forward and backward ---- */

/* DELTA: M = D_strict(K, K), X = V - (K o e^b) S0, L = strict(diag(beta) M),
 * U = (I + L)^-1 diag(beta) X. */
static void delta_values(const lina_attn_job *j, const decay_t *dc, const buffers_t *B) {
    int T = j->T, K = j->K, V = j->V;
    decayed_scores(dc, j->k, j->sqk, j->k, j->sqk, 1, 1.0f, B->M, B->tile);
    for (int t = 0; t < T; t++) memcpy(B->X + (size_t)t * V, j->v + t * j->sv, sizeof(float) * V);
    if (j->h0) {
        decay_rows(dc, j->k, j->sqk, 0, T, NULL, +1, B->rows);
        lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, T, V, K, -1.0f, B->rows, K, j->h0, V,
                    1.0f, B->X, V);
    }
    for (int t = 0; t < T; t++) {
        float beta = j->beta[t * j->sb];
        for (int s = 0; s < T; s++) B->L[(size_t)t * T + s] = beta * B->M[(size_t)t * T + s];
#pragma omp simd
        for (int c = 0; c < V; c++) B->U[(size_t)t * V + c] = beta * B->X[(size_t)t * V + c];
    }
    lina_strsm_fixed(CblasNoTrans, T, V, 1.0f, B->L, T, B->U, V);
}

/* out (K, V) = e^{b_T} o S0 + (K o e^{b_T - b})^T Vals; out may alias h0.
 * Leaves K o e^{b_T - b} in rows. */
static void final_state(const lina_attn_job *j, const decay_t *dc, const float *vals,
                        ptrdiff_t svals, float *rows, float *out) {
    int T = j->T, K = j->K, V = j->V;
    const double *bT = T && dc->gate != LINA_GATE_NONE ? b_row(dc, T - 1) : NULL;
    for (int c = 0; c < K; c++) {
        float e = !bT ? 1.0f : decay_of(bT[dc->gate == LINA_GATE_VECTOR ? c : 0]);
        for (int i = 0; i < V; i++)
            out[(size_t)c * V + i] = j->h0 ? e * j->h0[(size_t)c * V + i] : 0.0f;
    }
    if (T == 0) return;
    decay_rows(dc, j->k, j->sqk, 0, T, bT, -1, rows);
    lina_sgemm_fixed(CblasTrans, CblasNoTrans, K, V, T, 1.0f, rows, K, vals, (int)svals,
                1.0f, out, V);
}

/* ---- forward ---- */

void lina_parallel_forward(const lina_attn_job *j) {
    buffers_t B;
    carve(j, 0, j->ws, &B);
    decay_t dc = cumulative_gate(j, B.b);
    int T = j->T, K = j->K, V = j->V;
    const float *vals = j->v;
    ptrdiff_t svals = j->sv;
    if (T > 0 && j->update == LINA_UPDATE_DELTA) {
        delta_values(j, &dc, &B);
        vals = B.U, svals = V;
    }
    if (T > 0 && j->o) {
        /* O = scale D(Q, K) Vals + scale (Q o e^b) S0 */
        decayed_scores(&dc, j->q, j->sqk, j->k, j->sqk, 0, j->scale, B.A, B.tile);
        lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, T, V, T, 1.0f, B.A, T, vals,
                    (int)svals, 0.0f, j->o, (int)j->so);
        if (j->h0) {
            decay_rows(&dc, j->q, j->sqk, 0, T, NULL, +1, B.rows);
            lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, T, V, K, j->scale, B.rows, K,
                        j->h0, V, 1.0f, j->o, (int)j->so);
        }
    }
    if (j->ht) final_state(j, &dc, vals, svals, B.rows, j->ht);
}

/* ---- backward ---- */

/* db -> dg: db_t = q_t o dq_t + k_t o (dk_t(query side) - dk_t(key side)) over
 * the decayed roles, db_{T-1} += dbT; dg_t = sum_{t' >= t} db_t'. */
static void gate_gradient(const lina_attn_job *j, const decay_t *dc, const buffers_t *B) {
    int T = j->T, K = j->K, gk = dc->gk;
    for (int t = 0; t < T; t++) {
        const float *q = j->q + t * j->sqk, *k = j->k + t * j->sqk;
        const float *dq = B->dQ + (size_t)t * K, *dkq = B->dKq + (size_t)t * K;
        const float *dkk = B->dKk + (size_t)t * K;
        float *db = B->db + (size_t)t * gk;
        if (gk == 1) {
            double sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int c = 0; c < K; c++) sum += q[c] * dq[c] + k[c] * (dkq[c] - dkk[c]);
            if (t == T - 1)
                for (int c = 0; c < K; c++) sum += B->dbT[c];
            db[0] = (float)sum;
        } else {
#pragma omp simd
            for (int c = 0; c < K; c++) db[c] = q[c] * dq[c] + k[c] * (dkq[c] - dkk[c]);
            if (t == T - 1)
                for (int c = 0; c < K; c++) db[c] += B->dbT[c];
        }
    }
    double *acc = B->acc; /* (gk) running sums, t from T-1 down */
    for (int c = 0; c < gk; c++) acc[c] = 0;
    for (int t = T - 1; t >= 0; t--) {
        const float *db = B->db + (size_t)t * gk;
        float *dg = j->dg + t * j->sdg;
#pragma omp simd
        for (int c = 0; c < gk; c++) {
            acc[c] += db[c];
            dg[c] = (float)acc[c];
        }
    }
}

/* Gradients through the final state hT = e^{b_T} o S0 + (K o e^{b_T - b})^T Vals:
 * dVals += (K o e^{b_T - b}) dhT, dk_s += (Vals dhT^T)_s o e^{b_T - b_s},
 * dS0 = e^{b_T} o dhT, and for the gate dbT = rowsum(e^{b_T} S0 o dhT) plus
 * the rows s < T-1 of k o dk (the row T-1 has no decay: its terms cancel). */
static void final_state_backward(const lina_attn_job *j, const decay_t *dc, const buffers_t *B,
                                 const float *vals, ptrdiff_t svals, float *dvals,
                                 ptrdiff_t sdvals) {
    int T = j->T, K = j->K, V = j->V;
    const double *bT = dc->gate != LINA_GATE_NONE ? b_row(dc, T - 1) : NULL;
    decay_rows(dc, j->k, j->sqk, 0, T, bT, -1, B->rows); /* K o e^{b_T - b} */
    lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, T, V, K, 1.0f, B->rows, K, j->dht, V,
                1.0f, dvals, (int)sdvals);
    lina_sgemm_fixed(CblasNoTrans, CblasTrans, T, K, V, 1.0f, vals, (int)svals, j->dht, V,
                0.0f, B->rows, K); /* rows = Vals dhT^T */
    add_decayed_rows(dc, B->rows, 0, T - 1, bT, -1, B->dKk);
    for (int c = 0; c < K; c++) B->dKn[(size_t)(T - 1) * K + c] += B->rows[(size_t)(T - 1) * K + c];
    for (int c = 0; c < K; c++) {
        float e = !bT ? 1.0f : decay_of(bT[dc->gate == LINA_GATE_VECTOR ? c : 0]);
        double acc = 0;
        for (int i = 0; i < V; i++) {
            float d = e * j->dht[(size_t)c * V + i];
            B->dS0[(size_t)c * V + i] = d;
            if (j->h0) acc += (double)d * j->h0[(size_t)c * V + i];
        }
        B->dbT[c] = (float)acc;
    }
    if (dc->gate == LINA_GATE_NONE) return;
    /* rows s < T-1 of k o dk(hT), read back from dKk before other roles add to it */
    for (int s = 0; s < T - 1; s++)
        for (int c = 0; c < K; c++)
            B->dbT[c] += j->k[s * j->sqk + c] * B->dKk[(size_t)s * K + c];
}

void lina_parallel_backward(const lina_attn_job *j) {
    buffers_t B;
    carve(j, 1, j->ws, &B);
    decay_t dc = cumulative_gate(j, B.b);
    int T = j->T, K = j->K, V = j->V, delta = j->update == LINA_UPDATE_DELTA;
    size_t kv = (size_t)K * V, tk = (size_t)T * K;
    if (T == 0) {
        if (j->dh0)
            for (size_t i = 0; i < kv; i++) j->dh0[i] = j->dht ? j->dht[i] : 0.0f;
        return;
    }
    const float *vals = j->v;
    ptrdiff_t svals = j->sv;
    if (delta) {
        delta_values(j, &dc, &B);
        vals = B.U, svals = V;
    }
    float *dvals = delta ? B.dU : j->dv; /* gradient w.r.t. Vals */
    ptrdiff_t sdvals = delta ? V : j->sdv;
    memset(B.dQ, 0, sizeof(float) * tk);
    memset(B.dKq, 0, sizeof(float) * tk);
    memset(B.dKk, 0, sizeof(float) * tk);
    memset(B.dQn, 0, sizeof(float) * tk);
    memset(B.dKn, 0, sizeof(float) * tk);
    memset(B.dbT, 0, sizeof(float) * K);
    memset(B.dS0, 0, sizeof(float) * kv);

    /* dVals = D(Q,K)^T dO (+ the final state's part) */
    decayed_scores(&dc, j->q, j->sqk, j->k, j->sqk, 0, j->scale, B.A, B.tile);
    lina_sgemm_fixed(CblasTrans, CblasNoTrans, T, V, T, 1.0f, B.A, T, j->dout, (int)j->sdo,
                0.0f, dvals, (int)sdvals);
    if (j->dht) final_state_backward(j, &dc, &B, vals, svals, dvals, sdvals);

    /* dA = dO Vals^T, through the scores into dq and dk (key side); the
     * undecayed diagonal: dq_t += scale dA_tt k_t, dk_t += scale dA_tt q_t */
    lina_sgemm_fixed(CblasNoTrans, CblasTrans, T, T, V, 1.0f, j->dout, (int)j->sdo, vals,
                (int)svals, 0.0f, B.A, T);
    decayed_scores_backward(&dc, j->q, j->sqk, j->k, j->sqk, 0, j->scale, B.A, B.dQ, B.dKk, B.diag,
                            B.tile);
    for (int t = 0; t < T; t++) {
        const float *q = j->q + t * j->sqk, *k = j->k + t * j->sqk;
        float a = j->scale * B.diag[t];
#pragma omp simd
        for (int c = 0; c < K; c++) {
            B.dQn[(size_t)t * K + c] += a * k[c];
            B.dKn[(size_t)t * K + c] += a * q[c];
        }
    }

    if (j->h0) { /* O += scale (Q o e^b) S0 */
        lina_sgemm_fixed(CblasNoTrans, CblasTrans, T, K, V, j->scale, j->dout, (int)j->sdo,
                    j->h0, V, 0.0f, B.rows, K);
        add_decayed_rows(&dc, B.rows, 0, T, NULL, +1, B.dQ);
        decay_rows(&dc, j->q, j->sqk, 0, T, NULL, +1, B.rows);
        lina_sgemm_fixed(CblasTrans, CblasNoTrans, K, V, T, j->scale, B.rows, K, j->dout,
                    (int)j->sdo, 1.0f, B.dS0, V);
    }

    if (delta) {
        /* (I + L)^T dR = dU;  dV = diag(beta) dR;  dbeta_t = dR_t . x_t */
        lina_strsm_fixed(CblasTrans, T, V, 1.0f, B.L, T, B.dU, V);
        const float *dR = B.dU;
        for (int t = 0; t < T; t++) {
            float beta = j->beta[t * j->sb], dbeta = 0.0f;
            float *dv = j->dv + t * j->sdv;
#pragma omp simd reduction(+ : dbeta)
            for (int c = 0; c < V; c++) {
                dv[c] = beta * dR[(size_t)t * V + c];
                dbeta += dR[(size_t)t * V + c] * B.X[(size_t)t * V + c];
            }
            j->dbeta[t * j->sdb] = dbeta;
        }
        /* P = dR U^T (in L's buffer): dbeta_t -= sum_{s<t} P_ts M_ts, dM = -diag(beta) P */
        float *P = B.L;
        lina_sgemm_fixed(CblasNoTrans, CblasTrans, T, T, V, 1.0f, dR, V, B.U, V, 0.0f, P, T);
        for (int t = 0; t < T; t++) {
            float beta = j->beta[t * j->sb], acc = 0.0f;
            float *Pt = P + (size_t)t * T;
            const float *Mt = B.M + (size_t)t * T;
#pragma omp simd reduction(+ : acc)
            for (int s = 0; s < t; s++) {
                acc += Pt[s] * Mt[s];
                Pt[s] *= -beta;
            }
            j->dbeta[t * j->sdb] -= acc;
        }
        decayed_scores_backward(&dc, j->k, j->sqk, j->k, j->sqk, 1, 1.0f, P, B.dKq, B.dKk, NULL,
                                B.tile);
        if (j->h0) { /* X = V - (K o e^b) S0, dX = dV */
            lina_sgemm_fixed(CblasNoTrans, CblasTrans, T, K, V, -1.0f, j->dv, (int)j->sdv,
                        j->h0, V, 0.0f, B.rows, K);
            add_decayed_rows(&dc, B.rows, 0, T, NULL, +1, B.dKq);
            decay_rows(&dc, j->k, j->sqk, 0, T, NULL, +1, B.rows);
            lina_sgemm_fixed(CblasTrans, CblasNoTrans, K, V, T, -1.0f, B.rows, K, j->dv,
                        (int)j->sdv, 1.0f, B.dS0, V);
        }
    }

    if (dc.gate != LINA_GATE_NONE) gate_gradient(j, &dc, &B);
    for (int t = 0; t < T; t++) {
        float *dq = j->dq + t * j->sqk, *dk = j->dk + t * j->sqk;
#pragma omp simd
        for (int c = 0; c < K; c++) {
            size_t i = (size_t)t * K + c;
            dq[c] += B.dQ[i] + B.dQn[i];
            dk[c] += B.dKq[i] + B.dKk[i] + B.dKn[i];
        }
    }
    if (j->dh0) memcpy(j->dh0, B.dS0, sizeof(float) * kv);
}
