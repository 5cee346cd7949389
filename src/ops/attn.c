/* The attention dispatcher: validates a descriptor and its buffers, then runs
 * one job per (sequence, value head) in the chosen form (attn_internal.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/internal.h"
#include "attn_internal.h"

#define LINA_MAX_DIM 65536
#define LINA_PARALLEL_MIN_FLOPS 2e6

lina_attn_desc lina_attn_desc_default(void) {
    lina_attn_desc d;
    memset(&d, 0, sizeof d);
    d.B = 1;
    d.eps = 1e-6f;
    d.chunk = 64;
    return d;
}

int lina_attn_n_states(const lina_attn_desc *d) { return d->cu_seqlens ? d->n_seqs : d->B; }
int lina_attn_state_cols(const lina_attn_desc *d) { return d->V + (d->normalize ? 1 : 0); }

size_t lina_attn_gate_numel(const lina_attn_desc *d) {
    const size_t tokens = (size_t)d->B * d->T, hv = (size_t)(d->HV ? d->HV : d->H);
    switch (d->gate) {
    case LINA_GATE_CONST: return hv;
    case LINA_GATE_SCALAR: return tokens * hv;
    case LINA_GATE_VECTOR: return tokens * hv * d->K;
    default: return 0;
    }
}
static int value_heads(const lina_attn_desc *d) { return d->HV ? d->HV : d->H; }
static int chunk_size(const lina_attn_desc *d) { return d->chunk > 0 ? d->chunk : 64; }
static float scale_of(const lina_attn_desc *d) {
    return d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->K);
}

static int max_seq_len(const lina_attn_desc *d) {
    if (!d->cu_seqlens) return d->T;
    int64_t m = 0;
    for (int n = 0; n < d->n_seqs; n++)
        if (d->cu_seqlens[n + 1] - d->cu_seqlens[n] > m) m = d->cu_seqlens[n + 1] - d->cu_seqlens[n];
    return (int)m;
}

/* The recurrent form is the double-precision reference: never chosen
 * automatically. The parallel form wins up to one chunk (measured 1.2-1.5x at
 * T = 64 and 15-25x over the reference at T = 1), the chunk form beyond. */
lina_form lina_attn_resolve_form(const lina_attn_desc *d) {
    if (d->form != LINA_FORM_AUTO) return d->form;
    return max_seq_len(d) <= chunk_size(d) ? LINA_FORM_PARALLEL : LINA_FORM_CHUNK;
}

double lina_attn_flops(const lina_attn_desc *d, lina_form form) {
    double K = d->K, V = d->V + (d->normalize ? 1 : 0), C = chunk_size(d);
    double tokens = (double)d->B * d->T, heads = value_heads(d);
    int delta = d->update == LINA_UPDATE_DELTA;
    if (form == LINA_FORM_AUTO) form = lina_attn_resolve_form(d);
    double per_token;
    switch (form) {
    case LINA_FORM_RECURRENT: per_token = delta ? 8 * K * V : 4 * K * V; break;
    case LINA_FORM_PARALLEL: {
        double t = max_seq_len(d);
        per_token = t * (K + V) + (delta ? t * (K + V) + t * K : 0);
        break;
    }
    default:
        /* intra-chunk QK^T and AV (full C x C tiles), Q S, K^T V; delta adds
         * K K^T, the triangular solve, W = T K, U = T V and W S. */
        per_token = 2 * C * (K + V) + 4 * K * V;
        if (delta) per_token += 2 * C * K + C * C + 2 * C * (K + V) + 2 * K * V;
        break;
    }
    return per_token * tokens * heads;
}

/* ---- validation ---- */

static lina_status check_desc(const char *fn, const lina_attn_desc *d) {
    if (!d) return lina_fail(LINA_ERR_INVALID_ARG, "%s: descriptor is NULL", fn);
#define DIM_CHECK(name, val, lo)                                                                   \
    if ((val) < (lo) || (val) > LINA_MAX_DIM)                                                      \
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: " name " = %d out of range [%d, %d]", fn,      \
                         (int)(val), (int)(lo), LINA_MAX_DIM);
    DIM_CHECK("B", d->B, 1);
    DIM_CHECK("H", d->H, 1);
    DIM_CHECK("K", d->K, 1);
    DIM_CHECK("V", d->V, 1);
#undef DIM_CHECK
    if (d->T < (d->cu_seqlens ? 0 : 1))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: T = %d must be >= 1", fn, d->T);
    if (d->HV < 0 || (d->HV && (d->HV % d->H != 0 || d->HV > LINA_MAX_DIM)))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: HV = %d must be a multiple of H = %d", fn,
                         d->HV, d->H);
    if ((unsigned)d->gate > LINA_GATE_VECTOR)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: gate = %d unknown", fn, (int)d->gate);
    if ((unsigned)d->update > LINA_UPDATE_DELTA)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: update = %d unknown", fn, (int)d->update);
    if ((unsigned)d->form > LINA_FORM_PARALLEL)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: form = %d unknown", fn, (int)d->form);
    if (d->normalize && d->update == LINA_UPDATE_DELTA)
        return lina_fail(LINA_ERR_UNSUPPORTED, "%s: normalize applies to the additive update only",
                         fn);
    if (d->chunk < 0 || d->chunk > 1024)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: chunk = %d out of range [1, 1024]", fn, d->chunk);
    if (!isfinite(d->scale) || !isfinite(d->eps) || d->eps < 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: scale = %g, eps = %g must be finite (eps >= 0)",
                         fn, d->scale, d->eps);
    /* every element count must fit comfortably in int64 and size_t */
    double tokens = (double)d->B * d->T, hv = value_heads(d);
    double biggest = tokens * hv * ((d->K > d->V + 1) ? d->K : d->V + 1);
    if (biggest > 1e15)
        return lina_fail(LINA_ERR_OOM, "%s: B*T*HV*max(K,V) = %.3g elements is too large", fn,
                         biggest);
    if (d->cu_seqlens) return lina_check_varlen(fn, d->B, d->T, d->cu_seqlens, d->n_seqs);
    return LINA_OK;
}

typedef struct {
    size_t qk, v, g, beta, state;
} sizes_t;

static sizes_t sizes_of(const lina_attn_desc *d) {
    sizes_t s;
    size_t tokens = (size_t)d->B * d->T, hv = value_heads(d);
    s.qk = tokens * d->H * d->K;
    s.v = tokens * hv * d->V;
    s.g = lina_attn_gate_numel(d);
    s.beta = d->update == LINA_UPDATE_DELTA ? tokens * hv : 0;
    s.state = (size_t)lina_attn_n_states(d) * hv * d->K * lina_attn_state_cols(d);
    return s;
}

/* Log-gates below this are clamped: exp(-1000) is 0 in float either way, and
 * chunk-local cumulative sums of -1e30 would wipe out their neighbours' bits. */
#define LINA_GATE_FLOOR (-1000.0f)

static lina_status check_gates(const char *fn, const lina_attn_desc *d, const float *g, size_t n,
                               int *needs_clamp) {
    *needs_clamp = 0;
    if (d->gate == LINA_GATE_NONE) return LINA_OK;
    if (!g) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer g is NULL with a gate", fn);
    /* one branch-free pass for the common case; the slow loop names the culprit */
    float lo = 0.0f, hi = -1.0f;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        float x = g[i];
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
        nan |= x != x;
    }
    if (!nan && hi <= 0.0f && isfinite(lo)) {
        *needs_clamp = lo < LINA_GATE_FLOOR;
        return LINA_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!(g[i] <= 0.0f) || !isfinite(g[i]))
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "%s: log-gate g[%zu] = %g must be finite and <= 0", fn, i, g[i]);
    return LINA_OK;
}

/* The gates every form sees: g itself, or (clamp set by check_gates) a copy
 * clamped at LINA_GATE_FLOOR. */
static const float *effective_gates(lina_ctx *ctx, const lina_attn_desc *d, const float *g,
                                    int clamp) {
    if (!clamp) return g;
    size_t n = sizes_of(d).g;
    float *c = lina_ctx_shared_ws(ctx, 4, n);
    if (!c) return NULL;
    for (size_t i = 0; i < n; i++) c[i] = g[i] < LINA_GATE_FLOOR ? LINA_GATE_FLOOR : g[i];
    return c;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

/* *clamp: some log-gate is below LINA_GATE_FLOOR (see effective_gates). */
static lina_status check_common(const char *fn, lina_ctx *ctx, const lina_attn_desc *d,
                                const float *q, const float *k, const float *v, const float *g,
                                const float *beta, const float *h0, int *clamp) {
    TRY(check_desc(fn, d));
    sizes_t s = sizes_of(d);
    TRY(lina_check_buffer(fn, ctx, "q", q, s.qk, 1));
    TRY(lina_check_buffer(fn, ctx, "k", k, s.qk, 1));
    TRY(lina_check_buffer(fn, ctx, "v", v, s.v, 1));
    TRY(check_gates(fn, d, g, s.g, clamp));
    TRY(lina_check_buffer(fn, ctx, "beta", beta, s.beta, d->update == LINA_UPDATE_DELTA));
    TRY(lina_check_buffer(fn, ctx, "h0", h0, s.state, 0));
    return LINA_OK;
}

/* ---- job construction ---- */

typedef struct {
    const lina_attn_desc *d;
    int HV, Vs;       /* value heads; value columns seen by the jobs (V or V+1) */
    const float *v;   /* (tokens, HV, Vs) */
    float *o;         /* (tokens, HV, Vs) */
    const float *dout; /* (tokens, HV, Vs) */
    float *dv;        /* (tokens, HV, Vs) */
    float *dg;        /* CONST: (tokens, HV) per-token scratch; else user dg */
    lina_form form;
    float scale;
} plan_t;

static void seq_range(const lina_attn_desc *d, int n, int64_t *bos, int *len) {
    if (d->cu_seqlens) {
        *bos = d->cu_seqlens[n];
        *len = (int)(d->cu_seqlens[n + 1] - d->cu_seqlens[n]);
    } else {
        *bos = (int64_t)n * d->T;
        *len = d->T;
    }
}

static lina_attn_job make_job(const plan_t *p, int n, int hv, const float *q, const float *k,
                              const float *g, const float *beta, const float *h0, float *ht) {
    const lina_attn_desc *d = p->d;
    int h = hv / (p->HV / d->H);
    int64_t bos;
    int len;
    seq_range(d, n, &bos, &len);
    lina_attn_job j;
    memset(&j, 0, sizeof j);
    j.T = len;
    j.K = d->K;
    j.V = p->Vs;
    j.update = d->update;
    j.scale = p->scale;
    j.chunk = chunk_size(d);
    j.sqk = (ptrdiff_t)d->H * d->K;
    j.q = q + (bos * d->H + h) * d->K;
    j.k = k + (bos * d->H + h) * d->K;
    j.sv = (ptrdiff_t)p->HV * p->Vs;
    j.v = p->v + (bos * p->HV + hv) * p->Vs;
    j.so = j.sv;
    if (p->o) j.o = p->o + (bos * p->HV + hv) * p->Vs;
    switch (d->gate) {
    case LINA_GATE_NONE: j.gate = LINA_GATE_NONE; break;
    case LINA_GATE_CONST:
        j.gate = LINA_GATE_SCALAR;
        j.g = g + hv;
        j.sg = 0;
        break;
    case LINA_GATE_SCALAR:
        j.gate = LINA_GATE_SCALAR;
        j.g = g + bos * p->HV + hv;
        j.sg = p->HV;
        break;
    case LINA_GATE_VECTOR:
        j.gate = LINA_GATE_VECTOR;
        j.g = g + (bos * p->HV + hv) * d->K;
        j.sg = (ptrdiff_t)p->HV * d->K;
        break;
    }
    if (d->update == LINA_UPDATE_DELTA) {
        j.beta = beta + bos * p->HV + hv;
        j.sb = p->HV;
    }
    size_t state_off = ((size_t)n * p->HV + hv) * d->K * p->Vs;
    j.h0 = h0 ? h0 + state_off : NULL;
    j.ht = ht ? ht + state_off : NULL;
    return j;
}

static size_t ws_floats(lina_form form, const lina_attn_job *j, int backward) {
    switch (form) {
    case LINA_FORM_RECURRENT: return lina_recurrent_ws_floats(j, backward);
    case LINA_FORM_PARALLEL: return lina_parallel_ws_floats(j, backward);
    default:
        return j->update == LINA_UPDATE_DELTA ? lina_chunk_delta_ws_floats(j, backward)
                                              : lina_chunk_add_ws_floats(j, backward);
    }
}

static void run_job(lina_form form, const lina_attn_job *j, int backward) {
    if (form == LINA_FORM_RECURRENT) {
        backward ? lina_recurrent_backward(j) : lina_recurrent_forward(j);
    } else if (form == LINA_FORM_PARALLEL) {
        backward ? lina_parallel_backward(j) : lina_parallel_forward(j);
    } else if (j->update == LINA_UPDATE_DELTA) {
        backward ? lina_chunk_delta_backward(j) : lina_chunk_delta_forward(j);
    } else {
        backward ? lina_chunk_add_backward(j) : lina_chunk_add_forward(j);
    }
}

/* Reserve workspace for the largest job; decide between parallelism across
 * jobs and inside jobs. Returns the number of outer threads. */
static lina_status reserve(lina_ctx *ctx, const plan_t *p, int n_jobs, int backward,
                           int *outer, int *inner) {
    const lina_attn_desc *d = p->d;
    int threads = lina_ctx_threads(ctx);
    /* Small calls (decoding steps, short prompts) run on the calling thread:
     * waking a team costs more than the work, badly so on a loaded machine
     * (measured 200x on the recurrent tests at load 6). */
    if (threads < 1 || lina_attn_flops(d, p->form) < LINA_PARALLEL_MIN_FLOPS) threads = 1;
    *outer = n_jobs < threads ? (n_jobs < 1 ? 1 : n_jobs) : threads;
    *inner = n_jobs < threads ? threads : 1;
    if (*outer > 1 && *inner > 1) *inner = 1;
    lina_attn_job shape;
    memset(&shape, 0, sizeof shape);
    shape.T = max_seq_len(d);
    shape.K = d->K;
    shape.V = p->Vs;
    shape.gate = d->gate == LINA_GATE_NONE ? LINA_GATE_NONE
                 : d->gate == LINA_GATE_VECTOR ? LINA_GATE_VECTOR
                                               : LINA_GATE_SCALAR;
    shape.update = d->update;
    shape.chunk = chunk_size(d);
    shape.inner_threads = *inner;
    size_t need = ws_floats(p->form, &shape, backward);
    return lina_ctx_reserve(ctx, *outer, need);
}

/* v with a ones column appended: (tokens, HV, V+1). */
static float *augment_v(lina_ctx *ctx, const lina_attn_desc *d, int HV, const float *v) {
    size_t rows = (size_t)d->B * d->T * HV;
    float *va = lina_ctx_shared_ws(ctx, 0, rows * (d->V + 1));
    if (!va) return NULL;
    for (size_t r = 0; r < rows; r++) {
        memcpy(va + r * (d->V + 1), v + r * d->V, sizeof(float) * d->V);
        va[r * (d->V + 1) + d->V] = 1.0f;
    }
    return va;
}

static lina_status plan_init(lina_ctx *ctx, const lina_attn_desc *d, const float *v, float *o,
                             plan_t *p) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->HV = value_heads(d);
    p->Vs = lina_attn_state_cols(d);
    p->form = lina_attn_resolve_form(d);
    p->scale = scale_of(d);
    p->v = v;
    p->o = o;
    if (d->normalize) {
        size_t rows = (size_t)d->B * d->T * p->HV;
        float *va = augment_v(ctx, d, p->HV, v);
        p->o = lina_ctx_shared_ws(ctx, 1, rows * (d->V + 1));
        if (!va || !p->o) return lina_fail(LINA_ERR_OOM, "normalized attention: out of memory");
        p->v = va;
    }
    return LINA_OK;
}

/* Heads walked in lock-step by one thread at most (their chunk rows span G*K floats). */
#define LINA_LOCKSTEP_MAX_HEADS 16

/* VECTOR-gate additive chunk forward with one thread per job: jobs of G
 * neighbouring value heads of one sequence, walked chunk by chunk across the
 * heads (lina_chunk_add_forward_heads), so each pass reads G heads' slices of a
 * token row together rather than one. Sequences split into just enough head
 * groups to feed `outer` threads. Per head the arithmetic is the one-thread
 * job's, so results do not depend on the grouping or the thread count.
 * Returns 0 when the case is not this one. */
static int lockstep_forward(lina_ctx *ctx, const plan_t *p, const lina_attn_fwd_args *a, int outer,
                            int inner, lina_status *st) {
    const lina_attn_desc *d = p->d;
    if (p->form != LINA_FORM_CHUNK || d->update != LINA_UPDATE_ADD ||
        d->gate != LINA_GATE_VECTOR || inner > 1 || p->HV < 2)
        return 0;
    int N = lina_attn_n_states(d);
    int groups = (outer + N - 1) / N; /* head groups per sequence */
    int G = (p->HV + groups - 1) / groups;
    G = G > LINA_LOCKSTEP_MAX_HEADS ? LINA_LOCKSTEP_MAX_HEADS : G;
    groups = (p->HV + G - 1) / G;
    lina_attn_job shape = make_job(p, 0, 0, a->q, a->k, a->g, a->beta, a->h0, a->ht);
    shape.T = max_seq_len(d);
    *st = lina_ctx_reserve(ctx, outer, lina_chunk_add_heads_ws_floats(&shape, G));
    if (*st != LINA_OK) return 1;
    int n_jobs = N * groups;
#pragma omp parallel for schedule(dynamic, 1) num_threads(outer) if (outer > 1)
    for (int job = 0; job < n_jobs; job++) {
#ifdef _OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        lina_attn_job jobs[LINA_LOCKSTEP_MAX_HEADS];
        int n = job / groups, h0 = job % groups * G, nh = p->HV - h0 < G ? p->HV - h0 : G;
        for (int h = 0; h < nh; h++) {
            jobs[h] = make_job(p, n, h0 + h, a->q, a->k, a->g, a->beta, a->h0, a->ht);
            jobs[h].inner_threads = 1;
        }
        jobs[0].ws = lina_ctx_thread_ws(ctx, tid);
        lina_chunk_add_forward_heads(jobs, nh);
    }
    return 1;
}

static lina_status forward_jobs(lina_ctx *ctx, const plan_t *p, const lina_attn_fwd_args *a) {
    const lina_attn_desc *d = p->d;
    int N = lina_attn_n_states(d), n_jobs = N * p->HV, outer, inner;
    TRY(reserve(ctx, p, n_jobs, 0, &outer, &inner));
    lina_status st = LINA_OK;
    if (lockstep_forward(ctx, p, a, outer, inner, &st)) return st;
#pragma omp parallel for schedule(dynamic, 1) num_threads(outer) if (outer > 1)
    for (int job = 0; job < n_jobs; job++) {
#ifdef _OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        lina_attn_job j = make_job(p, job / p->HV, job % p->HV, a->q, a->k, a->g, a->beta, a->h0,
                                   a->ht);
        j.ws = lina_ctx_thread_ws(ctx, tid);
        j.inner_threads = inner;
        run_job(p->form, &j, 0);
    }
    return LINA_OK;
}

/* o = num / (den + eps): the first V columns of the augmented output over the last. */
static void normalize_output(const lina_attn_desc *d, int HV, const float *oa, float *o) {
    size_t rows = (size_t)d->B * d->T * HV;
    int V = d->V;
    for (size_t r = 0; r < rows; r++) {
        float den = oa[r * (V + 1) + V] + d->eps;
        for (int c = 0; c < V; c++) o[r * V + c] = oa[r * (V + 1) + c] / den;
    }
}

lina_status lina_attn_forward(lina_ctx *ctx, const lina_attn_desc *d, const lina_attn_fwd_args *a) {
    static const char fn[] = "lina_attn_forward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    if (!a) return lina_fail(LINA_ERR_INVALID_ARG, "%s: args is NULL", fn);
    int clamp;
    TRY(check_common(fn, ctx, d, a->q, a->k, a->v, a->g, a->beta, a->h0, &clamp));
    if (!a->o) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer o is NULL", fn);
    plan_t p;
    TRY(plan_init(ctx, d, a->v, a->o, &p));
    lina_attn_fwd_args fa = *a;
    fa.g = effective_gates(ctx, d, a->g, clamp);
    if (d->gate != LINA_GATE_NONE && !fa.g) return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    TRY(forward_jobs(ctx, &p, &fa));
    if (d->normalize) normalize_output(d, p.HV, p.o, a->o);
    return LINA_OK;
}

lina_status lina_attn_backward(lina_ctx *ctx, const lina_attn_desc *d, const lina_attn_bwd_args *a) {
    static const char fn[] = "lina_attn_backward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    if (!a) return lina_fail(LINA_ERR_INVALID_ARG, "%s: args is NULL", fn);
    int clamp;
    TRY(check_common(fn, ctx, d, a->q, a->k, a->v, a->g, a->beta, a->h0, &clamp));
    sizes_t s = sizes_of(d);
    TRY(lina_check_buffer(fn, ctx, "dout", a->dout, s.v, 1));
    TRY(lina_check_buffer(fn, ctx, "dht", a->dht, s.state, 0));
    if (!a->dq || !a->dk || !a->dv)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: dq, dk and dv are required", fn);
    if (d->gate != LINA_GATE_NONE && !a->dg)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: dg is required with a gate", fn);
    if (d->update == LINA_UPDATE_DELTA && !a->dbeta)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: dbeta is required with the delta rule", fn);

    plan_t p;
    TRY(plan_init(ctx, d, a->v, NULL, &p));
    const float *g = effective_gates(ctx, d, a->g, clamp);
    if (d->gate != LINA_GATE_NONE && !g) return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    size_t tokens = (size_t)d->B * d->T, rows = tokens * p.HV;
    p.dout = a->dout;
    p.dv = a->dv;
    if (d->normalize) {
        /* o = num/den: dnum = dout/den, dden = -sum(dout*num)/den^2 */
        lina_attn_fwd_args fa = {a->q, a->k, a->v, g, a->beta, a->h0, NULL, NULL};
        TRY(forward_jobs(ctx, &p, &fa));
        float *da = lina_ctx_shared_ws(ctx, 2, rows * (d->V + 1));
        float *dva = lina_ctx_shared_ws(ctx, 3, rows * (d->V + 1));
        if (!da || !dva) return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
        int V = d->V;
        for (size_t r = 0; r < rows; r++) {
            const float *num = p.o + r * (V + 1);
            float den = num[V] + d->eps, dot = 0;
            for (int c = 0; c < V; c++) {
                da[r * (V + 1) + c] = a->dout[r * V + c] / den;
                dot += a->dout[r * V + c] * num[c];
            }
            da[r * (V + 1) + V] = -dot / (den * den);
        }
        p.dout = da;
        p.dv = dva;
    }
    float *dg_tok = a->dg;
    if (d->gate == LINA_GATE_CONST) {
        dg_tok = malloc(sizeof(float) * (rows ? rows : 1));
        if (!dg_tok) return lina_fail(LINA_ERR_OOM, "%s: out of memory", fn);
    }
    memset(a->dq, 0, sizeof(float) * s.qk);
    memset(a->dk, 0, sizeof(float) * s.qk);

    int N = lina_attn_n_states(d), group = p.HV / d->H, n_groups = N * d->H, outer, inner;
    lina_status st = reserve(ctx, &p, n_groups, 1, &outer, &inner);
    if (st == LINA_OK) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(outer) if (outer > 1)
        for (int gi = 0; gi < n_groups; gi++) {
#ifdef _OPENMP
            int tid = omp_get_thread_num();
#else
            int tid = 0;
#endif
            int n = gi / d->H, h = gi % d->H;
            for (int hv = h * group; hv < (h + 1) * group; hv++) {
                lina_attn_job j = make_job(&p, n, hv, a->q, a->k, g, a->beta, a->h0, NULL);
                int64_t bos;
                int len;
                seq_range(d, n, &bos, &len);
                size_t state_off = ((size_t)n * p.HV + hv) * d->K * p.Vs;
                j.dout = p.dout + (bos * p.HV + hv) * p.Vs;
                j.sdo = j.sv;
                j.dht = a->dht ? a->dht + state_off : NULL;
                j.dq = a->dq + (bos * d->H + h) * d->K;
                j.dk = a->dk + (bos * d->H + h) * d->K;
                j.dv = p.dv + (bos * p.HV + hv) * p.Vs;
                j.sdv = j.sv;
                if (d->gate == LINA_GATE_VECTOR) {
                    j.dg = dg_tok + (bos * p.HV + hv) * d->K;
                    j.sdg = (ptrdiff_t)p.HV * d->K;
                } else if (d->gate != LINA_GATE_NONE) {
                    j.dg = dg_tok + bos * p.HV + hv;
                    j.sdg = p.HV;
                }
                if (d->update == LINA_UPDATE_DELTA) {
                    j.dbeta = a->dbeta + bos * p.HV + hv;
                    j.sdb = p.HV;
                }
                j.dh0 = a->dh0 ? a->dh0 + state_off : NULL;
                j.ws = lina_ctx_thread_ws(ctx, tid);
                j.inner_threads = inner;
                run_job(p.form, &j, 1);
            }
        }
        if (d->gate == LINA_GATE_CONST) {
            for (int hv = 0; hv < p.HV; hv++) {
                double acc = 0;
                for (size_t t = 0; t < tokens; t++) acc += dg_tok[t * p.HV + hv];
                a->dg[hv] = (float)acc;
            }
        }
        if (d->normalize) {
            for (size_t r = 0; r < rows; r++)
                memcpy(a->dv + r * d->V, p.dv + r * (d->V + 1), sizeof(float) * d->V);
        }
    }
    if (d->gate == LINA_GATE_CONST) free(dg_tok);
    return st;
}

lina_status lina_attn_step(lina_ctx *ctx, const lina_attn_desc *d, const float *q, const float *k,
                           const float *v, const float *g, const float *beta, float *state,
                           float *o) {
    static const char fn[] = "lina_attn_step";
    if (!d) return lina_fail(LINA_ERR_INVALID_ARG, "%s: descriptor is NULL", fn);
    if (!state) return lina_fail(LINA_ERR_INVALID_ARG, "%s: state is NULL", fn);
    /* One token per sequence is a batch of N sequences of length 1. */
    lina_attn_desc s = *d;
    s.T = 1;
    s.cu_seqlens = NULL;
    s.n_seqs = 0;
    s.form = LINA_FORM_PARALLEL; /* exact, float, handles ht aliasing h0; 15-25x the reference */
    lina_attn_fwd_args a = {q, k, v, g, beta, state, o, state};
    return lina_attn_forward(ctx, &s, &a);
}
