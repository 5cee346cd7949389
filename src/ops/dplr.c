/* The DPLR dispatcher: validates a descriptor and its buffers, then runs one
 * job per (sequence, head) in the chosen form (dplr_internal.h). */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/internal.h"
#include "dplr_internal.h"

#define LINA_DPLR_MAX_DIM 65536

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

lina_dplr_desc lina_dplr_desc_default(void) {
    lina_dplr_desc d;
    memset(&d, 0, sizeof d);
    d.B = 1;
    d.chunk = 64;
    return d;
}

int lina_dplr_n_states(const lina_dplr_desc *d) { return d->cu_seqlens ? d->n_seqs : d->B; }

static lina_status check_desc(const char *fn, const lina_dplr_desc *d) {
    if (!d) return lina_fail(LINA_ERR_INVALID_ARG, "%s: descriptor is NULL", fn);
#define DIM_CHECK(name, val)                                                                       \
    if ((val) < 1 || (val) > LINA_DPLR_MAX_DIM)                                                    \
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: " name " = %d out of range [1, %d]", fn,       \
                         (int)(val), LINA_DPLR_MAX_DIM);
    DIM_CHECK("B", d->B);
    DIM_CHECK("H", d->H);
    DIM_CHECK("K", d->K);
    DIM_CHECK("V", d->V);
#undef DIM_CHECK
    if (d->T < (d->cu_seqlens ? 0 : 1))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: T = %d must be >= 1", fn, d->T);
    if (d->form != LINA_FORM_AUTO && d->form != LINA_FORM_RECURRENT && d->form != LINA_FORM_CHUNK)
        return lina_fail(d->form == LINA_FORM_PARALLEL ? LINA_ERR_UNSUPPORTED : LINA_ERR_INVALID_ARG,
                         "%s: form = %d not available (AUTO, RECURRENT or CHUNK)", fn, (int)d->form);
    if (d->chunk < 0 || d->chunk > 1024)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: chunk = %d out of range [1, 1024]", fn, d->chunk);
    if (!isfinite(d->scale))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: scale = %g must be finite", fn, d->scale);
    double biggest = (double)d->B * d->T * d->H * (d->K > d->V ? d->K : d->V);
    if (biggest > 1e15)
        return lina_fail(LINA_ERR_OOM, "%s: B*T*H*max(K,V) = %.3g elements is too large", fn,
                         biggest);
    if (d->cu_seqlens) return lina_check_varlen(fn, d->B, d->T, d->cu_seqlens, d->n_seqs);
    return LINA_OK;
}

static lina_status check_decays(const char *fn, const float *w, size_t n) {
    if (!w) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer w is NULL", fn);
    for (size_t i = 0; i < n; i++)
        if (!(w[i] <= 0.0f) || !isfinite(w[i]))
            return lina_fail(LINA_ERR_INVALID_ARG, "%s: log-decay w[%zu] = %g must be finite and <= 0",
                             fn, i, w[i]);
    return LINA_OK;
}

/* Sizes: nk = B*T*H*K, nv = B*T*H*V, ns = N*H*K*V. */
static void sizes(const lina_dplr_desc *d, size_t *nk, size_t *nv, size_t *ns) {
    size_t rows = (size_t)d->B * d->T * d->H;
    *nk = rows * d->K;
    *nv = rows * d->V;
    *ns = (size_t)lina_dplr_n_states(d) * d->H * d->K * d->V;
}

static lina_status check_common(const char *fn, lina_ctx *ctx, const lina_dplr_desc *d,
                                const float *r, const float *k, const float *v, const float *a,
                                const float *b, const float *w, const float *h0) {
    TRY(check_desc(fn, d));
    size_t nk, nv, ns;
    sizes(d, &nk, &nv, &ns);
    TRY(lina_check_buffer(fn, ctx, "r", r, nk, 1));
    TRY(lina_check_buffer(fn, ctx, "k", k, nk, 1));
    TRY(lina_check_buffer(fn, ctx, "v", v, nv, 1));
    TRY(lina_check_buffer(fn, ctx, "a", a, nk, 1));
    TRY(lina_check_buffer(fn, ctx, "b", b, nk, 1));
    TRY(check_decays(fn, w, nk));
    TRY(lina_check_buffer(fn, ctx, "h0", h0, ns, 0));
    return LINA_OK;
}

static int chunk_form(const lina_dplr_desc *d) { return d->form != LINA_FORM_RECURRENT; }

/* The job of sequence n, head h, without gradient pointers. */
static lina_dplr_job make_job(const lina_dplr_desc *d, int n, int h, const float *r, const float *k,
                              const float *v, const float *a, const float *b, const float *w,
                              const float *h0) {
    lina_dplr_job j;
    memset(&j, 0, sizeof j);
    int64_t bos = d->cu_seqlens ? d->cu_seqlens[n] : (int64_t)n * d->T;
    j.T = d->cu_seqlens ? (int)(d->cu_seqlens[n + 1] - d->cu_seqlens[n]) : d->T;
    j.K = d->K;
    j.V = d->V;
    j.chunk = d->chunk > 0 ? d->chunk : 64;
    j.scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->K);
    j.sk = (ptrdiff_t)d->H * d->K;
    j.sv = (ptrdiff_t)d->H * d->V;
    ptrdiff_t ok = (bos * d->H + h) * d->K, ov = (bos * d->H + h) * d->V;
    j.r = r + ok, j.k = k + ok, j.a = a + ok, j.b = b + ok, j.w = w + ok;
    j.v = v + ov;
    size_t so = ((size_t)n * d->H + h) * d->K * d->V;
    j.h0 = h0 ? h0 + so : NULL;
    return j;
}

static size_t ws_of(const lina_dplr_desc *d, int backward) {
    lina_dplr_job shape;
    memset(&shape, 0, sizeof shape);
    int64_t T = d->T;
    if (d->cu_seqlens) {
        T = 0;
        for (int n = 0; n < d->n_seqs; n++)
            if (d->cu_seqlens[n + 1] - d->cu_seqlens[n] > T) T = d->cu_seqlens[n + 1] - d->cu_seqlens[n];
    }
    shape.T = (int)T;
    shape.K = d->K;
    shape.V = d->V;
    shape.chunk = d->chunk > 0 ? d->chunk : 64;
    return chunk_form(d) ? lina_dplr_chunk_ws_floats(&shape, backward)
                         : lina_dplr_recurrent_ws_floats(&shape, backward);
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

lina_status lina_dplr_forward(lina_ctx *ctx, const lina_dplr_desc *d, const lina_dplr_fwd_args *a) {
    static const char fn[] = "lina_dplr_forward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    if (!a) return lina_fail(LINA_ERR_INVALID_ARG, "%s: args is NULL", fn);
    TRY(check_common(fn, ctx, d, a->r, a->k, a->v, a->a, a->b, a->w, a->h0));
    if (!a->o) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer o is NULL", fn);
    int n_jobs = lina_dplr_n_states(d) * d->H, threads = lina_ctx_threads(ctx);
    int outer = threads < 1 ? 1 : (n_jobs < threads ? n_jobs : threads);
    TRY(lina_ctx_reserve(ctx, outer, ws_of(d, 0)));
    int use_chunk = chunk_form(d);
#pragma omp parallel for schedule(dynamic, 1) num_threads(outer) if (outer > 1)
    for (int job = 0; job < n_jobs; job++) {
        int n = job / d->H, h = job % d->H;
        lina_dplr_job j = make_job(d, n, h, a->r, a->k, a->v, a->a, a->b, a->w, a->h0);
        ptrdiff_t ov = j.v - a->v;
        j.o = a->o + ov;
        j.ht = a->ht ? a->ht + (size_t)job * d->K * d->V : NULL;
        j.ws = lina_ctx_thread_ws(ctx, thread_id());
        use_chunk ? lina_dplr_chunk_forward(&j) : lina_dplr_recurrent_forward(&j);
    }
    return LINA_OK;
}

lina_status lina_dplr_backward(lina_ctx *ctx, const lina_dplr_desc *d, const lina_dplr_bwd_args *a) {
    static const char fn[] = "lina_dplr_backward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    if (!a) return lina_fail(LINA_ERR_INVALID_ARG, "%s: args is NULL", fn);
    TRY(check_common(fn, ctx, d, a->r, a->k, a->v, a->a, a->b, a->w, a->h0));
    size_t nk, nv, ns;
    sizes(d, &nk, &nv, &ns);
    TRY(lina_check_buffer(fn, ctx, "dout", a->dout, nv, 1));
    TRY(lina_check_buffer(fn, ctx, "dht", a->dht, ns, 0));
    if (!a->dr || !a->dk || !a->dv || !a->da || !a->db || !a->dw)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: dr, dk, dv, da, db and dw are required", fn);
    int n_jobs = lina_dplr_n_states(d) * d->H, threads = lina_ctx_threads(ctx);
    int outer = threads < 1 ? 1 : (n_jobs < threads ? n_jobs : threads);
    TRY(lina_ctx_reserve(ctx, outer, ws_of(d, 1)));
    int use_chunk = chunk_form(d);
#pragma omp parallel for schedule(dynamic, 1) num_threads(outer) if (outer > 1)
    for (int job = 0; job < n_jobs; job++) {
        int n = job / d->H, h = job % d->H;
        lina_dplr_job j = make_job(d, n, h, a->r, a->k, a->v, a->a, a->b, a->w, a->h0);
        ptrdiff_t ok = j.r - a->r, ov = j.v - a->v;
        size_t so = (size_t)job * d->K * d->V;
        j.dout = a->dout + ov;
        j.dht = a->dht ? a->dht + so : NULL;
        j.dr = a->dr + ok, j.dk = a->dk + ok, j.da = a->da + ok, j.db = a->db + ok;
        j.dw = a->dw + ok;
        j.dv = a->dv + ov;
        j.dh0 = a->dh0 ? a->dh0 + so : NULL;
        j.ws = lina_ctx_thread_ws(ctx, thread_id());
        use_chunk ? lina_dplr_chunk_backward(&j) : lina_dplr_recurrent_backward(&j);
    }
    return LINA_OK;
}

/* One token: u = S^T a, S = diag(e^w) S + b u^T + k v^T, o = scale S^T r, in float. */
lina_status lina_dplr_step(lina_ctx *ctx, const lina_dplr_desc *d, const float *r, const float *k,
                           const float *v, const float *a, const float *b, const float *w,
                           float *state, float *o) {
    static const char fn[] = "lina_dplr_step";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    if (!d) return lina_fail(LINA_ERR_INVALID_ARG, "%s: descriptor is NULL", fn);
    lina_dplr_desc s = *d;
    s.T = 1;
    s.cu_seqlens = NULL;
    s.n_seqs = 0;
    TRY(check_common(fn, ctx, &s, r, k, v, a, b, w, state));
    if (!state || !o) return lina_fail(LINA_ERR_INVALID_ARG, "%s: state and o are required", fn);
    int K = d->K, V = d->V, n_jobs = d->B * d->H;
    float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)K);
    int threads = lina_ctx_threads(ctx), outer = n_jobs < threads ? n_jobs : threads;
    if (outer < 1) outer = 1;
    TRY(lina_ctx_reserve(ctx, outer, (size_t)V + 16));
#pragma omp parallel for schedule(static) num_threads(outer) if (outer > 1)
    for (int job = 0; job < n_jobs; job++) {
        const float *rj = r + (size_t)job * K, *kj = k + (size_t)job * K, *aj = a + (size_t)job * K;
        const float *bj = b + (size_t)job * K, *wj = w + (size_t)job * K, *vj = v + (size_t)job * V;
        float *S = state + (size_t)job * K * V, *oj = o + (size_t)job * V;
        float *u = lina_ctx_thread_ws(ctx, thread_id());
        for (int c = 0; c < V; c++) u[c] = 0;
        for (int i = 0; i < K; i++)
            for (int c = 0; c < V; c++) u[c] += S[i * V + c] * aj[i];
        for (int c = 0; c < V; c++) oj[c] = 0;
        for (int i = 0; i < K; i++) {
            float decay = expf(lina_dplr_w(wj[i]));
            for (int c = 0; c < V; c++) {
                float x = decay * S[i * V + c] + bj[i] * u[c] + kj[i] * vj[c];
                S[i * V + c] = x;
                oj[c] += scale * rj[i] * x;
            }
        }
    }
    return LINA_OK;
}
