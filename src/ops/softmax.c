/* Softmax attention, FlashAttention-style, in the [B, T, H, D] layout.
 *
 * Forward, per (sequence, query head, block of BQ queries), streaming over
 * blocks of BK keys with an online softmax (row max m, row sum l, output
 * accumulator acc):
 *   S   = scale * Q_i K_j^T                      (BQ, BK), masked -> -inf
 *         (in base 2: S log2(e), exponentials 2^x, lse converted back)
 *   m'  = max(m, rowmax S);  P = exp(S - m')
 *   l   = l e^(m - m') + rowsum P;   acc = acc e^(m - m') + P V_j
 *   o   = acc / l;  lse = m + log l
 * Memory is O(T D): the T x T score matrix never exists.
 *
 * Backward (FlashAttention-2), per (sequence, key/value head): for each key
 * block j, for each query head of the group and each query block i that sees j:
 *   P  = exp(scale Q_i K_j^T - lse_i)    (recomputed, masked -> 0)
 *   dV_j += P^T dO_i;   dP = dO_i V_j^T;   dS = P * (dP - D_i),  D_i = rowsum(dO_i * O_i)
 *   dK_j += scale dS^T Q_i;   dQ_i += scale dS K_j
 * A job owns the dk/dv rows of its kv head and the dq rows of its query heads,
 * so no two threads write the same value and the sums never depend on the
 * thread count. With fewer such jobs than threads the backward splits into a
 * pass over key blocks (dK, dV) and a pass over query blocks (dQ, recomputing
 * P and dS): same sums in the same order, bit-identical results.
 * All block products are NoTrans x NoTrans GEMMs on contiguous tiled copies of
 * k, v (and q, dout in the backward), see "tiled copies" below.
 *
 * Masks (positions local to a sequence, query t, key s, window w):
 *   causal:      s <= t, and s > t - w when w > 0
 *   bidirectional: all s, or |t - s| < w when w > 0
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "gemm_fixed.h"
#include "../core/internal.h"
#include "lina/softmax.h"

/* Block sizes (any values work; tests pass with 64..512). 64 x 64 keeps the
 * GEMMs on OpenBLAS's small-matrix kernels and short sequences parallel; larger
 * blocks measured within noise (+-7%) at T = 4096. */
#ifndef BQ
#define BQ 64 /* queries per block */
#endif
#ifndef BK
#define BK 64 /* keys per block */
#endif
#define LINA_SOFTMAX_MAX_DIM 65536

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

lina_softmax_desc lina_softmax_desc_default(void) {
    lina_softmax_desc d;
    memset(&d, 0, sizeof d);
    d.B = 1;
    d.causal = 1;
    return d;
}

/* ---- shape helpers ---- */

typedef struct {
    const lina_softmax_desc *d;
    int HKV, group; /* kv heads; query heads per kv head */
    float scale;  /* score scale */
    float scale2; /* scale * log2(e): scores are kept in base 2 */
    int n_seqs;
} plan_t;

static void seq_range(const lina_softmax_desc *d, int n, int64_t *bos, int *len) {
    if (d->cu_seqlens) {
        *bos = d->cu_seqlens[n];
        *len = (int)(d->cu_seqlens[n + 1] - d->cu_seqlens[n]);
    } else {
        *bos = (int64_t)n * d->T;
        *len = d->T;
    }
}

static int min_i(int a, int b) { return a < b ? a : b; }
static int max_i(int a, int b) { return a > b ? a : b; }

/* Keys [*lo, *hi) that some query in [t0, t1) may attend to (sequence of len L). */
static void key_range(const lina_softmax_desc *d, int L, int t0, int t1, int *lo, int *hi) {
    int w = d->window;
    *lo = w > 0 ? max_i(0, t0 - w + 1) : 0;
    *hi = d->causal ? t1 : (w > 0 ? min_i(L, t1 - 1 + w) : L);
}

/* Queries [*lo, *hi) that may attend to some key in [s0, s1). */
static void query_range(const lina_softmax_desc *d, int L, int s0, int s1, int *lo, int *hi) {
    int w = d->window;
    *lo = d->causal ? s0 : (w > 0 ? max_i(0, s0 - w + 1) : 0);
    *hi = w > 0 ? min_i(L, s1 - 1 + w) : L;
}

static int allowed(const lina_softmax_desc *d, int t, int s) {
    int w = d->window;
    if (d->causal) return s <= t && (w <= 0 || s > t - w);
    return w <= 0 || abs(t - s) < w;
}

/* 1 if every (t, s) in [t0,t1) x [s0,s1) is allowed. */
static int block_full(const lina_softmax_desc *d, int t0, int t1, int s0, int s1) {
    int w = d->window;
    if (d->causal) return s1 - 1 <= t0 && (w <= 0 || s0 > t1 - 1 - w);
    return w <= 0 || max_i(t1 - 1 - s0, s1 - 1 - t0) < w;
}

/* S (nq, nk) with leading dimension BK: entries outside the mask -> -inf. */
static void apply_mask(const lina_softmax_desc *d, int t0, int nq, int s0, int nk, float *S) {
    if (block_full(d, t0, t0 + nq, s0, s0 + nk)) return;
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < nk; j++)
            if (!allowed(d, t0 + i, s0 + j)) S[i * BK + j] = -INFINITY;
}

/* S^T (nk, nq) with leading dimension BQ (keys as rows): entries outside the mask -> -inf. */
static void apply_mask_t(const lina_softmax_desc *d, int t0, int nq, int s0, int nk, float *St) {
    if (block_full(d, t0, t0 + nq, s0, s0 + nk)) return;
    for (int j = 0; j < nk; j++)
        for (int i = 0; i < nq; i++)
            if (!allowed(d, t0 + i, s0 + j)) St[j * BQ + i] = -INFINITY;
}

/* ---- exp over a row ---- */

/* Scores are kept in base 2 (the score GEMM's alpha is scale * log2(e)), so the
 * exponentials are 2^x: 2^x = 2^k 2^r, k = round(x), |r| <= 1/2, 2^r by its
 * degree-7 Taylor polynomial in r (relative error < 1e-8 before rounding), 2^k
 * applied by vscalefps. x is clamped at -150, so -inf gives exactly 0. */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f
#ifdef __AVX512F__
static inline __m512 exp2_512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-150.0f));
    __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(x, k);
    __m512 p = _mm512_set1_ps(1.525273380405984e-05f); // ln2^7 / 7!
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.5403530393381606e-04f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3333558146428443e-03f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.618129107628477e-03f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.550410866482158e-02f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.402265069591007e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.931471805599453e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}
#endif

/* x[j] = 2^(x[j] - m) for j < n (0 for x[j] = -inf); returns the sum. */
static float exp2_row(float *x, int n, float m) {
    int j = 0;
    float sum = 0.0f;
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps(), mv = _mm512_set1_ps(m);
    for (; j + 16 <= n; j += 16) {
        __m512 e = exp2_512(_mm512_sub_ps(_mm512_loadu_ps(x + j), mv));
        _mm512_storeu_ps(x + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (j < n) {
        __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
        __m512 e = exp2_512(_mm512_sub_ps(_mm512_mask_loadu_ps(mv, k, x + j), mv));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(x + j, k, e);
        acc = _mm512_add_ps(acc, e);
        j = n;
    }
    sum = _mm512_reduce_add_ps(acc);
#endif
    for (; j < n; j++) {
        x[j] = exp2f(x[j] - m);
        sum += x[j];
    }
    return sum;
}

/* x[i] = 2^(x[i] - sub[i]) for i < n (0 for x[i] = -inf). */
static void exp2_row_sub(float *x, int n, const float *sub) {
    int i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i,
                         exp2_512(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(sub + i))));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 y =
            _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, sub + i));
        _mm512_mask_storeu_ps(x + i, k, exp2_512(y));
        i = n;
    }
#endif
    for (; i < n; i++)
        x[i] = exp2f(x[i] - sub[i]);
}

/* x[i] *= a */
static void scale_row(float *x, int n, float a) {
    int i = 0;
#ifdef __AVX512F__
    __m512 av = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), av));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), av));
        i = n;
    }
#endif
    for (; i < n; i++)
        x[i] *= a;
}

/* p[i] *= dp[i] - D[i]  (dS = P (dP - D)) */
static void ds_row(float *p, const float *dp, const float *D, int n) {
    int i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(
            p + i, _mm512_mul_ps(_mm512_loadu_ps(p + i),
                                 _mm512_sub_ps(_mm512_loadu_ps(dp + i), _mm512_loadu_ps(D + i))));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_mul_ps(
            _mm512_maskz_loadu_ps(k, p + i),
            _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + i), _mm512_maskz_loadu_ps(k, D + i)));
        _mm512_mask_storeu_ps(p + i, k, x);
        i = n;
    }
#endif
    for (; i < n; i++)
        p[i] *= dp[i] - D[i];
}

static float max_row(const float *x, int n) {
    float m = -INFINITY;
    int j = 0;
#ifdef __AVX512F__
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (; j + 16 <= n; j += 16)
        mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + j));
    m = _mm512_reduce_max_ps(mv);
#endif
    for (; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* ---- OpenMP + OpenBLAS ---- */

static int n_threads(lina_ctx *ctx, int n_jobs) {
    int t = lina_ctx_threads(ctx);
    if (t < 1) t = 1;
    return n_jobs < t ? (n_jobs < 1 ? 1 : n_jobs) : t;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---- validation ---- */

static lina_status check_desc(const char *fn, const lina_softmax_desc *d) {
    if (!d) return lina_fail(LINA_ERR_INVALID_ARG, "%s: descriptor is NULL", fn);
#define DIM_CHECK(name, val, lo)                                                                   \
    if ((val) < (lo) || (val) > LINA_SOFTMAX_MAX_DIM)                                              \
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: " name " = %d out of range [%d, %d]", fn,      \
                         (int)(val), (int)(lo), LINA_SOFTMAX_MAX_DIM);
    DIM_CHECK("H", d->H, 1);
    DIM_CHECK("K", d->K, 1);
    DIM_CHECK("V", d->V, 1);
#undef DIM_CHECK
    if (d->B < 1 || d->B > (1 << 24))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: B = %d out of range [1, %d]", fn, d->B,
                         1 << 24);
    if (d->T < (d->cu_seqlens ? 0 : 1) || d->T > (1 << 30))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: T = %d out of range [%d, %d]", fn, d->T,
                         d->cu_seqlens ? 0 : 1, 1 << 30);
    if (d->HKV < 0 || d->HKV > d->H || (d->HKV && d->H % d->HKV != 0))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: HKV = %d must divide H = %d", fn, d->HKV, d->H);
    if (!isfinite(d->scale))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: scale = %g must be finite", fn, d->scale);
    if (d->causal != 0 && d->causal != 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: causal = %d must be 0 or 1", fn, d->causal);
    if (d->window < 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: window = %d must be >= 0", fn, d->window);
    double biggest = (double)d->B * d->T * d->H * (d->K > d->V ? d->K : d->V);
    if (biggest > 1e15)
        return lina_fail(LINA_ERR_OOM, "%s: B*T*H*max(K,V) = %.3g elements is too large", fn,
                         biggest);
    if (d->cu_seqlens) return lina_check_varlen(fn, d->B, d->T, d->cu_seqlens, d->n_seqs);
    return LINA_OK;
}


static lina_status check_common(const char *fn, lina_ctx *ctx, const lina_softmax_desc *d,
                                const float *q, const float *k, const float *v, plan_t *p) {
    TRY(check_desc(fn, d));
    p->d = d;
    p->HKV = d->HKV ? d->HKV : d->H;
    p->group = d->H / p->HKV;
    p->scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->K);
    p->scale2 = p->scale * LOG2E;
    p->n_seqs = d->cu_seqlens ? d->n_seqs : d->B;
    size_t tokens = (size_t)d->B * d->T;
    TRY(lina_check_buffer(fn, ctx, "q", q, tokens * d->H * d->K, 1));
    TRY(lina_check_buffer(fn, ctx, "k", k, tokens * p->HKV * d->K, 1));
    TRY(lina_check_buffer(fn, ctx, "v", v, tokens * p->HKV * d->V, 1));
    return LINA_OK;
}

/* ---- tiled copies ---- */

/* Every GEMM below is NoTrans x NoTrans (OpenBLAS's fastest small-matrix path)
 * and reads its freshly loaded operand from contiguous memory: operands are
 * copied once per call into tiles, O(T D) memory. Per (sequence n, head h of
 * nh), positions [bos, bos + len) are cut into tiles of `size`; tile j holds
 * X^T (D, size) (transposed) or X (size, D), contiguous (4-16 KB instead of D
 * rows 2-16 KB apart: measured +8% GEMM throughput). Sequence n starts at
 * (bos + n size) nh D floats, room for its padded last tile. */
typedef struct {
    float *base;
    int nh, D, size;
} tiles_t;

static size_t tiles_floats(const plan_t *p, int nh, int D, int size) {
    return ((size_t)p->d->B * p->d->T + (size_t)p->n_seqs * size) * nh * D + 1;
}

/* tile j of head h of sequence n (starting at token bos, len tokens) */
static float *tile_at(const tiles_t *t, int64_t bos, int n, int len, int h, int j) {
    size_t n_tiles = (size_t)(len + t->size - 1) / t->size;
    return t->base + ((size_t)(bos + (int64_t)n * t->size) * t->nh +
                      ((size_t)h * n_tiles + j) * t->size) *
                         t->D;
}

/* Fill the tiles of every (sequence, head) of x (tokens, nh, D) in parallel
 * (call inside a parallel region). */
static void fill_tiles(const plan_t *p, const float *x, const tiles_t *t, int transposed) {
    int nh = t->nh, D = t->D, size = t->size;
#pragma omp for schedule(dynamic, 1)
    for (int job = 0; job < p->n_seqs * nh; job++) {
        int64_t bos;
        int len, n = job / nh, h = job % nh;
        seq_range(p->d, n, &bos, &len);
        for (int j = 0; j * size < len; j++) {
            int rows = min_i(size, len - j * size);
            const float *src = x + ((bos + (int64_t)j * size) * nh + h) * D; // rows at stride nh*D
            float *dst = tile_at(t, bos, n, len, h, j);
            if (transposed) {
                for (int r = 0; r < rows; r++)
                    for (int i = 0; i < D; i++) dst[(size_t)i * size + r] = src[(size_t)r * nh * D + i];
            } else {
                for (int r = 0; r < rows; r++)
                    memcpy(dst + (size_t)r * D, src + (size_t)r * nh * D, sizeof(float) * D);
            }
        }
    }
}

/* ---- forward ---- */

typedef struct {
    int n, t0; /* sequence, first query of the block (local) */
} qblock_t;

/* The blocks of `size` positions of every sequence, last blocks first so that
 * dynamic scheduling balances the causal triangle. Caller frees. */
static qblock_t *list_blocks(const plan_t *p, int size, int *count) {
    const lina_softmax_desc *d = p->d;
    size_t total = 0;
    for (int n = 0; n < p->n_seqs; n++) {
        int64_t bos;
        int len;
        seq_range(d, n, &bos, &len);
        total += (size_t)(len + size - 1) / size;
    }
    qblock_t *list = malloc(sizeof *list * (total ? total : 1));
    if (!list) return NULL;
    size_t i = 0;
    for (int n = 0; n < p->n_seqs; n++) {
        int64_t bos;
        int len;
        seq_range(d, n, &bos, &len);
        for (int t0 = ((len - 1) / size) * size; len > 0 && t0 >= 0; t0 -= size) {
            list[i].n = n;
            list[i].t0 = t0;
            i++;
        }
    }
    *count = (int)total;
    return list;
}

/* Scratch per thread: S (BQ, BK), acc (BQ, V), m and l (BQ). */
static size_t fwd_ws_floats(const lina_softmax_desc *d) {
    return (size_t)BQ * BK + (size_t)BQ * d->V + 2 * BQ;
}

/* kt: K^T tiles (K, BK); vt: V tiles (BK, V) */
static void forward_block(const plan_t *p, int n, int h, int t0, const float *q, const tiles_t *kt,
                          const tiles_t *vt, float *o, float *lse, float *ws) {
    const lina_softmax_desc *d = p->d;
    int H = d->H, K = d->K, V = d->V, hk = h / p->group;
    int64_t bos;
    int L;
    seq_range(d, n, &bos, &L);
    int nq = min_i(BQ, L - t0);
    float *S = ws;                                            // (BQ, BK) scores, then probabilities
    float *acc = S + BQ * BK;                                 // (BQ, V) unnormalized output
    float *m = acc + (size_t)BQ * V;                          // (BQ) running row max
    float *l = m + BQ;                                        // (BQ) running row sum
    const float *Qi = q + ((bos + t0) * H + h) * K;           // (nq, K), stride H*K
    for (int i = 0; i < nq; i++)
        m[i] = -INFINITY, l[i] = 0.0f;
    memset(acc, 0, sizeof(float) * nq * V);

    int lo, hi;
    key_range(d, L, t0, t0 + nq, &lo, &hi);
    for (int s0 = (lo / BK) * BK; s0 < hi; s0 += BK) {
        int nk = min_i(BK, L - s0);
        const float *Kt = tile_at(kt, bos, n, L, hk, s0 / BK); // (K, nk), stride BK
        const float *Vj = tile_at(vt, bos, n, L, hk, s0 / BK); // (nk, V), stride V
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, K, p->scale2, Qi, H * K, Kt,
                    BK, 0.0f, S, BK);
        apply_mask(d, t0, nq, s0, nk, S);
        int any = 0;
        for (int i = 0; i < nq; i++) {
            float *Si = S + i * BK;
            float bm = max_row(Si, nk), mn = bm > m[i] ? bm : m[i];
            if (mn == -INFINITY) { /* nothing visible yet in this row */
                memset(Si, 0, sizeof(float) * nk);
                continue;
            }
            float alpha = m[i] == -INFINITY ? 0.0f : exp2f(m[i] - mn);
            l[i] = l[i] * alpha + exp2_row(Si, nk, mn);
            m[i] = mn;
            if (alpha != 1.0f) scale_row(acc + (size_t)i * V, V, alpha);
            any = 1;
        }
        if (any)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, V, nk, 1.0f, S, BK, Vj, V,
                        1.0f, acc, V);
    }
    for (int i = 0; i < nq; i++) {
        float *oi = o + ((bos + t0 + i) * H + h) * V;
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        for (int c = 0; c < V; c++)
            oi[c] = acc[(size_t)i * V + c] * inv;
        if (lse) lse[(bos + t0 + i) * H + h] = l[i] > 0.0f ? (m[i] + log2f(l[i])) * LN2 : -INFINITY;
    }
}

lina_status lina_softmax_forward(lina_ctx *ctx, const lina_softmax_desc *d, const float *q,
                                 const float *k, const float *v, float *o, float *lse) {
    static const char fn[] = "lina_softmax_forward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    plan_t p;
    TRY(check_common(fn, ctx, d, q, k, v, &p));
    if (!o && d->T > 0) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer o is NULL", fn);
    tiles_t kt = {NULL, p.HKV, d->K, BK}, vt = {NULL, p.HKV, d->V, BK}; // K^T and V tiles
    kt.base = lina_ctx_shared_ws(ctx, 0, tiles_floats(&p, p.HKV, d->K, BK));
    vt.base = lina_ctx_shared_ws(ctx, 1, tiles_floats(&p, p.HKV, d->V, BK));
    if (!kt.base || !vt.base) return lina_fail(LINA_ERR_OOM, "%s: key/value tiles: out of memory", fn);
    int n_blocks = 0;
    qblock_t *blocks = list_blocks(&p, BQ, &n_blocks);
    if (!blocks) return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    int n_jobs = n_blocks * d->H, nt = n_threads(ctx, n_jobs);
    lina_status st = lina_ctx_reserve(ctx, nt, fwd_ws_floats(d));
    if (st == LINA_OK) {
#pragma omp parallel num_threads(nt)
        {
            lina_blas_one_thread();
            float *ws = lina_ctx_thread_ws(ctx, thread_id());
            fill_tiles(&p, k, &kt, 1);
            fill_tiles(&p, v, &vt, 0);
#pragma omp for schedule(dynamic, 1)
            for (int job = 0; job < n_jobs; job++) {
                const qblock_t *b = &blocks[job / d->H];
                forward_block(&p, b->n, job % d->H, b->t0, q, &kt, &vt, o, lse, ws);
            }
        }
    }
    free(blocks);
    return st;
}

/* ---- backward ---- */

/* Scratch per thread: P^T and dP^T (BK, BQ), lse and D of a query block (BQ),
 * then dQ^T tiles (K, BQ): of every query block of the job's query heads in the
 * fused path, of one query block in the split path. */
#define BWD_BLOCK_WS ((size_t)2 * BQ * BK + 2 * BQ)
#define FUSED_MAX_WS (8.0 * 1024 * 1024) /* 32 MiB of dQ^T per thread */
static size_t fused_dq_floats(const plan_t *p, int max_len) {
    return (size_t)p->group * p->d->K * ((size_t)(max_len + BQ - 1) / BQ) * BQ;
}
static size_t bwd_ws_floats(const plan_t *p, int max_len, int fused) {
    return BWD_BLOCK_WS + (fused ? fused_dq_floats(p, max_len) : (size_t)p->d->K * BQ);
}

typedef struct {
    const float *k, *v, *lse; /* k, v as given: rows at stride HKV*D */
    tiles_t qt, qr;           /* Q^T (K, BQ) and Q (BQ, K) tiles */
    tiles_t dot, dor;         /* dO^T (V, BQ) and dO (BQ, V) tiles */
    tiles_t kt;               /* K^T (K, BK) tiles */
    const float *delta;       /* (tokens, H) rowsum(dO * O) */
    float *dq, *dk, *dv;
} bwd_args_t;

/* Everything is computed transposed (keys as rows) so that all five GEMMs are NN:
 *   S^T = K_j Q_i^T,  P^T = exp(S^T - lse),  dV_j += P^T dO_i,  dP^T = V_j dO_i^T,
 *   dS^T = P^T (dP^T - D),  dK_j += scale dS^T Q_i,  dQ_i^T += scale K_j^T dS^T.
 * block_grad does the first five for query block [t0, t0+nq) of head h and key
 * block [s0, s0+nk) of sequence n (bos, L): on return ws holds dS^T (nk, nq)
 * with leading dimension BQ; dV_j is updated when dVj is not NULL. */
static const float *block_grad(const plan_t *p, const bwd_args_t *a, int n, int64_t bos, int L,
                               int h, int s0, int nk, int t0, int nq, float *dVj, float *ws) {
    const lina_softmax_desc *d = p->d;
    int H = d->H, HKV = p->HKV, K = d->K, V = d->V, hk = h / p->group, iq = t0 / BQ;
    float *Pt = ws;                                        // (BK, BQ) P^T, then dS^T
    float *dPt = Pt + BQ * BK;                             // (BK, BQ) dP^T
    float *lse_i = dPt + BQ * BK;                          // (BQ)
    float *D_i = lse_i + BQ;                               // (BQ)
    const float *Kj = a->k + ((bos + s0) * HKV + hk) * K;  // (nk, K), stride HKV*K
    const float *Vj = a->v + ((bos + s0) * HKV + hk) * V;  // (nk, V), stride HKV*V
    const float *Qt = tile_at(&a->qt, bos, n, L, h, iq);   // (K, nq), stride BQ
    const float *dOt = tile_at(&a->dot, bos, n, L, h, iq); // (V, nq), stride BQ
    const float *dOi = tile_at(&a->dor, bos, n, L, h, iq); // (nq, V), stride V
    for (int i = 0; i < nq; i++) {
        lse_i[i] = a->lse[(bos + t0 + i) * H + h] * LOG2E; // base 2, like the scores
        D_i[i] = a->delta[(bos + t0 + i) * H + h];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nk, nq, K, p->scale2, Kj, HKV * K, Qt,
                BQ, 0.0f, Pt, BQ);
    apply_mask_t(d, t0, nq, s0, nk, Pt);
    for (int j = 0; j < nk; j++)
        exp2_row_sub(Pt + j * BQ, nq, lse_i);
    if (dVj)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nk, V, nq, 1.0f, Pt, BQ, dOi, V,
                    1.0f, dVj, HKV * V);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nk, nq, V, 1.0f, Vj, HKV * V, dOt, BQ,
                0.0f, dPt, BQ);
    for (int j = 0; j < nk; j++)
        ds_row(Pt + j * BQ, dPt + j * BQ, D_i, nq);
    return Pt;
}

/* dK_j += scale dS^T Q_i (rows of dk at stride HKV*K) */
static void add_dk(const plan_t *p, const bwd_args_t *a, int n, int64_t bos, int L, int h, int s0,
                   int nk, int t0, int nq, const float *dSt) {
    int HKV = p->HKV, K = p->d->K, hk = h / p->group;
    const float *Qi = tile_at(&a->qr, bos, n, L, h, t0 / BQ); // (nq, K), stride K
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nk, K, nq, p->scale, dSt, BQ, Qi, K,
                1.0f, a->dk + ((bos + s0) * HKV + hk) * K, HKV * K);
}

/* dQ_i^T tile (K, nq), leading dimension BQ, += scale K_j^T dS^T */
static void add_dqt(const plan_t *p, const bwd_args_t *a, int n, int64_t bos, int L, int hk,
                    int s0, int nk, int nq, const float *dSt, float *dQt) {
    int K = p->d->K;
    const float *Kt = tile_at(&a->kt, bos, n, L, hk, s0 / BK); // (K, nk), stride BK
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, nq, nk, p->scale, Kt, BK, dSt, BQ,
                1.0f, dQt, BQ);
}

/* dq rows [t0, t0+nq) of head h <- dQ^T tile (K, BQ) */
static void store_dq(const plan_t *p, const bwd_args_t *a, int64_t bos, int h, int t0, int nq,
                     const float *dQt) {
    int H = p->d->H, K = p->d->K;
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < K; c++)
            a->dq[((bos + t0 + i) * H + h) * K + c] = dQt[(size_t)c * BQ + i];
}

/* Fused path, one job per (sequence n, kv head hk): all key blocks in order,
 * dQ^T tiles of the group's heads accumulated in scratch (group, n_qt, K, BQ). */
static void backward_kv_head(const plan_t *p, int n, int hk, const bwd_args_t *a, float *ws) {
    const lina_softmax_desc *d = p->d;
    int HKV = p->HKV, K = d->K, V = d->V;
    int64_t bos;
    int L;
    seq_range(d, n, &bos, &L);
    int n_qt = (L + BQ - 1) / BQ;
    float *dQt = ws + BWD_BLOCK_WS; // (group, n_qt, K, BQ)
    memset(dQt, 0, sizeof(float) * p->group * n_qt * K * BQ);
    for (int s0 = 0; s0 < L; s0 += BK) {
        int nk = min_i(BK, L - s0), lo, hi;
        float *dVj = a->dv + ((bos + s0) * HKV + hk) * V;
        query_range(d, L, s0, s0 + nk, &lo, &hi);
        for (int g = 0; g < p->group; g++) {
            int h = hk * p->group + g;
            for (int t0 = (lo / BQ) * BQ; t0 < hi; t0 += BQ) {
                int nq = min_i(BQ, L - t0);
                const float *dSt = block_grad(p, a, n, bos, L, h, s0, nk, t0, nq, dVj, ws);
                add_dk(p, a, n, bos, L, h, s0, nk, t0, nq, dSt);
                add_dqt(p, a, n, bos, L, hk, s0, nk, nq, dSt,
                        dQt + ((size_t)g * n_qt + t0 / BQ) * K * BQ);
            }
        }
    }
    for (int g = 0; g < p->group; g++)
        for (int iq = 0; iq < n_qt; iq++)
            store_dq(p, a, bos, hk * p->group + g, iq * BQ, min_i(BQ, L - iq * BQ),
                     dQt + ((size_t)g * n_qt + iq) * K * BQ);
}

/* Split path, for few (sequence, kv head) pairs and many threads: pass A, one
 * job per (sequence, kv head, key block) -> dK_j, dV_j; pass B, one job per
 * (sequence, head, query block) -> dQ_i, recomputing P and dS (7 GEMMs per
 * block pair instead of 5). Sums run in the same order as in the fused path. */
static void backward_key_block(const plan_t *p, int n, int hk, int s0, const bwd_args_t *a,
                               float *ws) {
    const lina_softmax_desc *d = p->d;
    int64_t bos;
    int L, lo, hi;
    seq_range(d, n, &bos, &L);
    int nk = min_i(BK, L - s0);
    float *dVj = a->dv + ((bos + s0) * p->HKV + hk) * d->V;
    query_range(d, L, s0, s0 + nk, &lo, &hi);
    for (int g = 0; g < p->group; g++) {
        int h = hk * p->group + g;
        for (int t0 = (lo / BQ) * BQ; t0 < hi; t0 += BQ) {
            int nq = min_i(BQ, L - t0);
            const float *dSt = block_grad(p, a, n, bos, L, h, s0, nk, t0, nq, dVj, ws);
            add_dk(p, a, n, bos, L, h, s0, nk, t0, nq, dSt);
        }
    }
}

static void backward_query_block(const plan_t *p, int n, int h, int t0, const bwd_args_t *a,
                                 float *ws) {
    const lina_softmax_desc *d = p->d;
    int hk = h / p->group;
    int64_t bos;
    int L, lo, hi;
    seq_range(d, n, &bos, &L);
    int nq = min_i(BQ, L - t0);
    float *dQt = ws + BWD_BLOCK_WS; // (K, BQ)
    memset(dQt, 0, sizeof(float) * d->K * BQ);
    key_range(d, L, t0, t0 + nq, &lo, &hi);
    for (int s0 = (lo / BK) * BK; s0 < hi; s0 += BK) {
        int nk = min_i(BK, L - s0);
        const float *dSt = block_grad(p, a, n, bos, L, h, s0, nk, t0, nq, NULL, ws);
        add_dqt(p, a, n, bos, L, hk, s0, nk, nq, dSt, dQt);
    }
    store_dq(p, a, bos, h, t0, nq, dQt);
}

lina_status lina_softmax_backward(lina_ctx *ctx, const lina_softmax_desc *d, const float *q,
                                  const float *k, const float *v, const float *o, const float *lse,
                                  const float *dout, float *dq, float *dk, float *dv) {
    static const char fn[] = "lina_softmax_backward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    plan_t p;
    TRY(check_common(fn, ctx, d, q, k, v, &p));
    size_t tokens = (size_t)d->B * d->T, rows = tokens * d->H;
    TRY(lina_check_buffer(fn, ctx, "o", o, rows * d->V, 1));
    TRY(lina_check_buffer(fn, ctx, "dout", dout, rows * d->V, 1));
    if (!lse && rows) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer lse is NULL", fn);
    if (lina_ctx_check_finite(ctx))
        for (size_t r = 0; r < rows; r++)
            if (isnan(lse[r]) || lse[r] == INFINITY)
                return lina_fail(LINA_ERR_NONFINITE, "%s: lse[%zu] = %g is not finite", fn, r,
                                 lse[r]);
    if ((!dq || !dk || !dv) && rows)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: dq, dk and dv are required", fn);

    bwd_args_t a = {k, v, lse, {NULL, d->H, d->K, BQ}, {NULL, d->H, d->K, BQ},
                    {NULL, d->H, d->V, BQ}, {NULL, d->H, d->V, BQ}, {NULL, p.HKV, d->K, BK},
                    NULL, dq, dk, dv};
    size_t nqt = tiles_floats(&p, d->H, d->K, BQ), nout = tiles_floats(&p, d->H, d->V, BQ);
    float *delta = lina_ctx_shared_ws(ctx, 0, rows + 1); // (tokens, H) rowsum(dO * O)
    float *qtiles = lina_ctx_shared_ws(ctx, 1, 2 * nqt);
    float *otiles = lina_ctx_shared_ws(ctx, 2, 2 * nout);
    a.kt.base = lina_ctx_shared_ws(ctx, 3, tiles_floats(&p, p.HKV, d->K, BK));
    if (!delta || !qtiles || !otiles || !a.kt.base)
        return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    a.delta = delta;
    a.qt.base = qtiles, a.qr.base = qtiles + nqt;
    a.dot.base = otiles, a.dor.base = otiles + nout;
    int max_len = 0;
    for (int n = 0; n < p.n_seqs; n++) {
        int64_t bos;
        int len;
        seq_range(d, n, &bos, &len);
        max_len = max_i(max_len, len);
    }
    /* Fused (5 GEMMs per block pair) unless too few (sequence, kv head) jobs
     * would leave threads idle, or its per-thread dQ^T scratch (group, K, len)
     * would pass FUSED_MAX_WS floats: then split (7 GEMMs, parallel over blocks,
     * (K, BQ) scratch). Both give the same bits. */
    int n_heads = p.n_seqs * p.HKV, threads = max_i(1, lina_ctx_threads(ctx));
    int rounds = (n_heads + threads - 1) / threads;
    int fused = (threads == 1 || (double)rounds * threads <= 1.4 * n_heads) &&
                (double)fused_dq_floats(&p, max_len) <= FUSED_MAX_WS;
    int n_kb = 0, n_qb = 0;
    qblock_t *kblocks = NULL, *qblocks = NULL; /* split path: key and query blocks */
    if (!fused &&
        (!(kblocks = list_blocks(&p, BK, &n_kb)) || !(qblocks = list_blocks(&p, BQ, &n_qb)))) {
        free(kblocks);
        return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    }
    int nt = n_threads(ctx, fused ? n_heads : n_qb * d->H);
    lina_status st = lina_ctx_reserve(ctx, nt, bwd_ws_floats(&p, max_len, fused));
    if (st != LINA_OK) {
        free(kblocks);
        free(qblocks);
        return st;
    }
    int V = d->V;
#pragma omp parallel num_threads(nt)
    {
        lina_blas_one_thread();
        float *ws = lina_ctx_thread_ws(ctx, thread_id());
#pragma omp for schedule(static)
        for (size_t r = 0; r < rows; r++) {
            double acc = 0;
            for (int c = 0; c < V; c++)
                acc += (double)dout[r * V + c] * o[r * V + c];
            delta[r] = (float)acc;
        }
#pragma omp for schedule(static)
        for (size_t t = 0; t < tokens; t++) {
            memset(dk + t * p.HKV * d->K, 0, sizeof(float) * p.HKV * d->K);
            memset(dv + t * p.HKV * d->V, 0, sizeof(float) * p.HKV * d->V);
        }
        fill_tiles(&p, q, &a.qt, 1);
        fill_tiles(&p, q, &a.qr, 0);
        fill_tiles(&p, dout, &a.dot, 1);
        fill_tiles(&p, dout, &a.dor, 0);
        fill_tiles(&p, k, &a.kt, 1);
        if (fused) {
#pragma omp for schedule(dynamic, 1)
            for (int job = 0; job < n_heads; job++)
                backward_kv_head(&p, job / p.HKV, job % p.HKV, &a, ws);
        } else {
#pragma omp for schedule(dynamic, 1)
            for (int job = 0; job < n_kb * p.HKV; job++) {
                const qblock_t *b = &kblocks[job / p.HKV];
                backward_key_block(&p, b->n, job % p.HKV, b->t0, &a, ws);
            }
#pragma omp for schedule(dynamic, 1)
            for (int job = 0; job < n_qb * d->H; job++) {
                const qblock_t *b = &qblocks[job / d->H];
                backward_query_block(&p, b->n, job % d->H, b->t0, &a, ws);
            }
        }
    }
    free(kblocks);
    free(qblocks);
    return LINA_OK;
}
