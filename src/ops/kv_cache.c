/* KV cache and one-token softmax decoding.
 *
 * The cache holds, for each of n_seqs independent sequences, up to capacity
 * tokens of keys (capacity, HKV, K) and values (capacity, HKV, V). A decode
 * step appends one token per sequence and attends each query head h (kv head
 * h / (H / HKV); a group of query heads shares one GEMM) over all cached tokens s < len:
 *   p_s = softmax_s(scale * q . k_s),   o = sum_s p_s v_s
 * which is exactly the causal forward's last row (no window).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm_fixed.h"
#include "../core/internal.h"
#include "lina/softmax.h"

#define LINA_KV_MAX_DIM 65536

struct lina_kv_cache {
    int n_seqs, HKV, K, V, capacity;
    int *len; // (n_seqs) tokens cached per sequence
    float *k; // (n_seqs, capacity, HKV, K)
    float *v; // (n_seqs, capacity, HKV, V)
};

lina_status lina_kv_cache_create(int n_seqs, int HKV, int K, int V, int capacity,
                                 lina_kv_cache **out) {
    static const char fn[] = "lina_kv_cache_create";
    if (!out) return lina_fail(LINA_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (n_seqs < 1 || n_seqs > (1 << 24))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: n_seqs = %d out of range [1, %d]", fn, n_seqs,
                         1 << 24);
    if (HKV < 1 || HKV > LINA_KV_MAX_DIM)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: HKV = %d out of range [1, %d]", fn, HKV,
                         LINA_KV_MAX_DIM);
    if (K < 1 || K > LINA_KV_MAX_DIM || V < 1 || V > LINA_KV_MAX_DIM)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: K = %d, V = %d out of range [1, %d]", fn, K, V,
                         LINA_KV_MAX_DIM);
    if (capacity < 1 || capacity > (1 << 30))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: capacity = %d out of range [1, %d]", fn,
                         capacity, 1 << 30);
    size_t tok, nk, nv;
    if (!lina_mul_size((size_t)n_seqs * capacity, HKV, &tok) || !lina_mul_size(tok, K, &nk) ||
        !lina_mul_size(tok, V, &nv) || nk > SIZE_MAX / sizeof(float) ||
        nv > SIZE_MAX / sizeof(float))
        return lina_fail(LINA_ERR_OOM, "%s: n_seqs * capacity * HKV * max(K, V) overflows", fn);
    lina_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    c->n_seqs = n_seqs;
    c->HKV = HKV;
    c->K = K;
    c->V = V;
    c->capacity = capacity;
    c->len = calloc((size_t)n_seqs, sizeof *c->len);
    c->k = malloc(nk * sizeof(float));
    c->v = malloc(nv * sizeof(float));
    if (!c->len || !c->k || !c->v) {
        lina_kv_cache_free(c);
        return lina_fail(LINA_ERR_OOM, "%s: %zu + %zu floats: out of memory", fn, nk, nv);
    }
    *out = c;
    return LINA_OK;
}

void lina_kv_cache_free(lina_kv_cache *c) {
    if (!c) return;
    free(c->len);
    free(c->k);
    free(c->v);
    free(c);
}

int lina_kv_cache_len(const lina_kv_cache *c, int seq) {
    if (!c || seq < 0 || seq >= c->n_seqs) return -1;
    return c->len[seq];
}

void lina_kv_cache_reset(lina_kv_cache *c) {
    if (c) memset(c->len, 0, sizeof(int) * c->n_seqs);
}

static float *cache_k(const lina_kv_cache *c, int seq, int t) {
    return c->k + (((size_t)seq * c->capacity + t) * c->HKV) * c->K;
}
static float *cache_v(const lina_kv_cache *c, int seq, int t) {
    return c->v + (((size_t)seq * c->capacity + t) * c->HKV) * c->V;
}

static lina_status check_finite(const char *fn, const char *name, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return lina_fail(LINA_ERR_NONFINITE, "%s: %s[%zu] = %g is not finite", fn, name, i,
                             x[i]);
    return LINA_OK;
}

lina_status lina_kv_cache_append(lina_kv_cache *c, int seq, int n, const float *k, const float *v) {
    static const char fn[] = "lina_kv_cache_append";
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "%s: cache is NULL", fn);
    if (seq < 0 || seq >= c->n_seqs)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: seq = %d out of range [0, %d)", fn, seq,
                         c->n_seqs);
    if (n < 0) return lina_fail(LINA_ERR_INVALID_ARG, "%s: n = %d must be >= 0", fn, n);
    if (n > c->capacity - c->len[seq])
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "%s: sequence %d holds %d of %d tokens, no room for n = %d more", fn, seq,
                         c->len[seq], c->capacity, n);
    if (n == 0) return LINA_OK;
    if (!k || !v) return lina_fail(LINA_ERR_INVALID_ARG, "%s: k or v is NULL", fn);
    size_t nk = (size_t)n * c->HKV * c->K, nv = (size_t)n * c->HKV * c->V;
    lina_status st = check_finite(fn, "k", k, nk);
    if (st == LINA_OK) st = check_finite(fn, "v", v, nv);
    if (st != LINA_OK) return st;
    memcpy(cache_k(c, seq, c->len[seq]), k, nk * sizeof(float));
    memcpy(cache_v(c, seq, c->len[seq]), v, nv * sizeof(float));
    c->len[seq] += n;
    return LINA_OK;
}

/* One (sequence, kv head): the group's query heads at once,
 *   S = scale Q K^T (group, len),  P = softmax rows of S,  O = P V (group, V)
 * with Q rows q (group, K), the cache's keys/values of the head as strided rows.
 * P (group, capacity) is scratch. */
static void decode_group(const lina_kv_cache *c, int seq, int hk, int group, float scale,
                         const float *q, float *o, float *P) {
    int len = c->len[seq], K = c->K, V = c->V, HKV = c->HKV;
    const float *k0 = cache_k(c, seq, 0) + (size_t)hk * K; // (len, K), stride HKV*K
    const float *v0 = cache_v(c, seq, 0) + (size_t)hk * V; // (len, V), stride HKV*V
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, group, len, K, scale, q, K, k0, HKV * K,
                0.0f, P, len);
    for (int g = 0; g < group; g++) {
        float *p = P + (size_t)g * len, m = -INFINITY;
        for (int s = 0; s < len; s++)
            m = p[s] > m ? p[s] : m;
        double sum = 0;
        for (int s = 0; s < len; s++) {
            p[s] = expf(p[s] - m);
            sum += p[s];
        }
        float inv = (float)(1.0 / sum);
        for (int s = 0; s < len; s++)
            p[s] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, group, V, len, 1.0f, P, len, v0, HKV * V,
                0.0f, o, V);
}

lina_status lina_softmax_decode(lina_ctx *ctx, lina_kv_cache *c, int H, float scale, const float *q,
                                const float *k, const float *v, float *o) {
    static const char fn[] = "lina_softmax_decode";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "%s: cache is NULL", fn);
    if (H < 1 || H > LINA_KV_MAX_DIM || H % c->HKV != 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: H = %d must be a multiple of HKV = %d", fn, H,
                         c->HKV);
    if (!isfinite(scale))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: scale = %g must be finite", fn, scale);
    if (!q || !k || !v || !o)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: q, k, v and o are required", fn);
    int N = c->n_seqs;
    for (int n = 0; n < N; n++)
        if (c->len[n] >= c->capacity)
            return lina_fail(LINA_ERR_INVALID_ARG, "%s: cache of sequence %d is full (%d tokens)",
                             fn, n, c->capacity);
    if (lina_ctx_check_finite(ctx)) {
        lina_status st = check_finite(fn, "q", q, (size_t)N * H * c->K);
        if (st == LINA_OK) st = check_finite(fn, "k", k, (size_t)N * c->HKV * c->K);
        if (st == LINA_OK) st = check_finite(fn, "v", v, (size_t)N * c->HKV * c->V);
        if (st != LINA_OK) return st;
    }
    for (int n = 0; n < N; n++) {
        memcpy(cache_k(c, n, c->len[n]), k + (size_t)n * c->HKV * c->K,
               sizeof(float) * c->HKV * c->K);
        memcpy(cache_v(c, n, c->len[n]), v + (size_t)n * c->HKV * c->V,
               sizeof(float) * c->HKV * c->V);
        c->len[n]++;
    }
    if (scale == 0.0f) scale = 1.0f / sqrtf((float)c->K);
    int group = H / c->HKV, jobs = N * c->HKV, nt = lina_ctx_threads(ctx);
    if (nt > jobs) nt = jobs;
    if (nt < 1) nt = 1;
    double work = 0; /* a step is cheap: only go parallel once there is enough of it */
    for (int n = 0; n < N; n++)
        work += (double)c->len[n] * H * (c->K + c->V);
    if (work < 2e5) nt = 1;
    lina_status st = lina_ctx_reserve(ctx, nt, (size_t)group * c->capacity);
    if (st != LINA_OK) return st;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        lina_blas_one_thread();
        float *P = lina_ctx_thread_ws(ctx, omp_get_thread_num());
#else
        float *P = lina_ctx_thread_ws(ctx, 0);
#endif
#pragma omp for schedule(dynamic, 1)
        for (int job = 0; job < jobs; job++) {
            int n = job / c->HKV, hk = job % c->HKV;
            size_t row = (size_t)n * H + (size_t)hk * group; // first query head of the group
            decode_group(c, n, hk, group, scale, q + row * c->K, o + row * c->V, P);
        }
    }
    return LINA_OK;
}
