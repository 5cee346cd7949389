/* Chunkwise delta rule (DeltaNet, Gated DeltaNet, KDA) against the recurrent
 * reference through the public API: outputs, final states and every gradient,
 * on odd sizes, strong gates, varlen with an empty sequence, grouped heads,
 * several chunk sizes; plus thread-count independence and pieces == whole. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

#define TOL 1e-5

typedef struct {
    lina_attn_desc d;
    float *q, *k, *v, *g, *beta, *h0, *dout, *dht;
    size_t nqk, nv, ng, nb, ns;
} problem;

typedef struct {
    float *o, *ht, *dq, *dk, *dv, *dg, *dbeta, *dh0;
} results;

/* keys: L2-normalized (knorm = 0) or N(0, knorm^2 / K) per entry;
 * log-gates uniform in [gmin, 0]; beta uniform in (0.05, 0.95). */
static void problem_init(problem *p, lina_attn_desc d, uint64_t seed, float gmin, float knorm) {
    test_rng r;
    rng_seed(&r, seed);
    p->d = d;
    int HV = d.HV ? d.HV : d.H;
    size_t tokens = (size_t)d.B * d.T;
    p->nqk = tokens * d.H * d.K;
    p->nv = tokens * HV * d.V;
    p->ng = lina_attn_gate_numel(&d);
    p->nb = tokens * HV;
    p->ns = (size_t)lina_attn_n_states(&d) * HV * d.K * d.V;
    p->q = alloc_floats(p->nqk), p->k = alloc_floats(p->nqk), p->v = alloc_floats(p->nv);
    p->g = alloc_floats(p->ng), p->beta = alloc_floats(p->nb), p->h0 = alloc_floats(p->ns);
    p->dout = alloc_floats(p->nv), p->dht = alloc_floats(p->ns);
    fill_normal(&r, p->q, p->nqk, 1.0f);
    if (knorm > 0) {
        fill_normal(&r, p->k, p->nqk, knorm / sqrtf((float)d.K));
    } else {
        fill_normal(&r, p->k, p->nqk, 1.0f);
        for (size_t t = 0; t < p->nqk / d.K; t++) {
            double n = 0;
            for (int i = 0; i < d.K; i++) n += (double)p->k[t * d.K + i] * p->k[t * d.K + i];
            for (int i = 0; i < d.K; i++) p->k[t * d.K + i] /= (float)sqrt(n);
        }
    }
    fill_normal(&r, p->v, p->nv, 1.0f);
    fill_uniform(&r, p->g, p->ng, gmin, 0.0f);
    fill_uniform(&r, p->beta, p->nb, 0.05f, 0.95f);
    fill_normal(&r, p->h0, p->ns, 0.5f);
    fill_normal(&r, p->dout, p->nv, 1.0f);
    fill_normal(&r, p->dht, p->ns, 1.0f);
}

static void problem_free(problem *p) {
    free(p->q), free(p->k), free(p->v), free(p->g), free(p->beta), free(p->h0);
    free(p->dout), free(p->dht);
}

static void results_alloc(const problem *p, results *r) {
    r->o = alloc_floats(p->nv), r->ht = alloc_floats(p->ns);
    r->dq = alloc_floats(p->nqk), r->dk = alloc_floats(p->nqk), r->dv = alloc_floats(p->nv);
    r->dg = alloc_floats(p->ng + 1), r->dbeta = alloc_floats(p->nb), r->dh0 = alloc_floats(p->ns);
}

static void results_free(results *r) {
    free(r->o), free(r->ht), free(r->dq), free(r->dk), free(r->dv), free(r->dg), free(r->dbeta);
    free(r->dh0);
}

/* Forward and backward in one form; use_h0 / use_dht select optional inputs. */
static int run(lina_ctx *ctx, const problem *p, lina_form form, int use_h0, int use_dht,
               results *r) {
    lina_attn_desc d = p->d;
    d.form = form;
    const float *h0 = use_h0 ? p->h0 : NULL;
    lina_attn_fwd_args fa = {p->q, p->k, p->v, p->g, p->beta, h0, r->o, r->ht};
    if (lina_attn_forward(ctx, &d, &fa) != LINA_OK) return 0;
    lina_attn_bwd_args ba = {p->q,     p->k,  p->v,  p->g,  p->beta,  h0,
                             p->dout,  use_dht ? p->dht : NULL,   r->dq, r->dk,
                             r->dv,    r->dg, r->dbeta, r->dh0};
    return lina_attn_backward(ctx, &d, &ba) == LINA_OK;
}

static const char *gate_name(lina_gate g) {
    static const char *n[] = {"none", "const", "scalar", "vector"};
    return n[g];
}

/* A CONST gate's gradient is a sum over tokens whose terms cancel strongly
 * when the decay is strong (the sum can be 50x smaller than the sum of
 * magnitudes). Per-token gradients of the same gate given as SCALAR (recurrent
 * reference) give the scale: |dg - ref| <= TOL * sum_t |dg_t| per head. */
static void const_gate_check(const char *name, const problem *p, int use_h0, int use_dht,
                             const float *got, const float *ref) {
    lina_attn_desc d = p->d;
    int HV = d.HV ? d.HV : d.H;
    size_t tokens = (size_t)d.B * d.T;
    d.gate = LINA_GATE_SCALAR, d.form = LINA_FORM_RECURRENT;
    float *g = alloc_floats(tokens * HV), *dg = alloc_floats(tokens * HV);
    float *dq = alloc_floats(p->nqk), *dk = alloc_floats(p->nqk), *dv = alloc_floats(p->nv);
    float *db = alloc_floats(p->nb);
    for (size_t t = 0; t < tokens; t++)
        for (int h = 0; h < HV; h++) g[t * HV + h] = p->g[h];
    lina_attn_bwd_args ba = {p->q, p->k, p->v, g,  p->beta, use_h0 ? p->h0 : NULL, p->dout,
                             use_dht ? p->dht : NULL, dq, dk, dv, dg, db, NULL};
    int ok = lina_attn_backward(NULL, &d, &ba) == LINA_OK;
    double worst = 0;
    for (int h = 0; h < HV && ok; h++) {
        double mag = 0, sum = 0;
        for (size_t t = 0; t < tokens; t++) mag += fabs(dg[t * HV + h]), sum += dg[t * HV + h];
        double e = fabs((double)got[h] - ref[h]) / (mag > 0 ? mag : 1);
        if (e > worst) worst = e;
        if (fabs(sum - ref[h]) > 1e-6 * (mag > 0 ? mag : 1)) ok = 0; /* same reference, twice */
    }
    char sub[300];
    snprintf(sub, sizeof sub, "%s dg (const)", name);
    test_report(ok && worst <= TOL, sub, "error / sum_t |dg_t| = %.2e (tol %.0e)%s", worst, TOL,
                ok ? "" : ", reference mismatch");
    free(g), free(dg), free(dq), free(dk), free(dv), free(db);
}

/* chunk vs recurrent on one problem: o, ht and every gradient. */
static void compare(const char *tag, lina_attn_desc d, float gmin, float knorm, int use_h0,
                    int use_dht, uint64_t seed) {
    problem p;
    problem_init(&p, d, seed, gmin, knorm);
    results ref, got;
    results_alloc(&p, &ref);
    results_alloc(&p, &got);
    char name[256];
    snprintf(name, sizeof name, "chunk delta [%s gate=%s T=%d K=%d V=%d H=%d HV=%d C=%d gmin=%g%s%s]",
             tag, gate_name(d.gate), d.T, d.K, d.V, d.H, d.HV ? d.HV : d.H, d.chunk, gmin,
             use_h0 ? " h0" : "", use_dht ? " dht" : "");
    int ok = run(NULL, &p, LINA_FORM_RECURRENT, use_h0, use_dht, &ref) &&
             run(NULL, &p, LINA_FORM_CHUNK, use_h0, use_dht, &got);
    if (!ok) {
        test_report(0, name, "status error: %s", lina_last_error());
    } else {
        char sub[300];
#define CMP(field, n)                                                                              \
    snprintf(sub, sizeof sub, "%s " #field, name);                                                 \
    check_close(sub, got.field, ref.field, n, TOL);
        CMP(o, p.nv) CMP(ht, p.ns) CMP(dq, p.nqk) CMP(dk, p.nqk) CMP(dv, p.nv)
        CMP(dbeta, p.nb) CMP(dh0, p.ns)
        if (d.gate == LINA_GATE_CONST) const_gate_check(name, &p, use_h0, use_dht, got.dg, ref.dg);
        else if (d.gate != LINA_GATE_NONE) { CMP(dg, p.ng) }
#undef CMP
    }
    results_free(&ref);
    results_free(&got);
    problem_free(&p);
}

static lina_attn_desc desc(int T, int H, int HV, int K, int V, lina_gate gate, int chunk) {
    lina_attn_desc d = lina_attn_desc_default();
    d.T = T, d.H = H, d.HV = HV, d.K = K, d.V = V, d.gate = gate, d.chunk = chunk;
    d.update = LINA_UPDATE_DELTA;
    return d;
}

static void test_shapes(void) {
    static const lina_gate gates[] = {LINA_GATE_NONE, LINA_GATE_CONST, LINA_GATE_SCALAR,
                                      LINA_GATE_VECTOR};
    for (int gi = 0; gi < 4; gi++) {
        lina_gate g = gates[gi];
        compare("T=1", desc(1, 2, 0, 64, 60, g, 64), -1.0f, 0, 1, 1, 1);
        compare("odd", desc(63, 1, 2, 60, 100, g, 16), -0.5f, 0, 1, 1, 2);
        compare("odd", desc(65, 2, 0, 100, 64, g, 64), -3.0f, 0, 1, 0, 3);
        compare("odd chunk", desc(65, 1, 0, 64, 128, g, 13), -1e-3f, 0, 0, 1, 4);
    }
    compare("chunk 1", desc(9, 1, 0, 8, 6, LINA_GATE_SCALAR, 1), -1.0f, 0, 1, 1, 8);
    compare("chunk 1", desc(9, 1, 0, 8, 6, LINA_GATE_VECTOR, 1), -1.0f, 0, 1, 1, 9);
    compare("chunk > T", desc(70, 1, 0, 20, 12, LINA_GATE_VECTOR, 1024), -1.0f, 0, 1, 1, 10);
    compare("long", desc(1000, 1, 0, 128, 64, LINA_GATE_SCALAR, 64), -0.1f, 0, 1, 1, 5);
    compare("long", desc(1000, 1, 0, 64, 100, LINA_GATE_VECTOR, 64), -0.05f, 0, 1, 1, 6);
    compare("long", desc(1000, 1, 0, 60, 64, LINA_GATE_NONE, 16), 0, 0, 1, 1, 7);
}

/* log-gates down to -20 per token: no overflow, no NaN; vector gates take both
 * the factored and the exact diagonal sub-blocks. */
static void test_strong_gates(void) {
    compare("strong", desc(130, 1, 2, 64, 64, LINA_GATE_SCALAR, 64), -20.0f, 0, 1, 1, 11);
    compare("strong", desc(130, 1, 2, 64, 64, LINA_GATE_VECTOR, 64), -20.0f, 0, 1, 1, 12);
    compare("strong", desc(130, 1, 0, 64, 64, LINA_GATE_CONST, 64), -20.0f, 0, 1, 1, 13);
    compare("mid", desc(130, 1, 0, 64, 64, LINA_GATE_VECTOR, 64), -6.0f, 0, 1, 1, 14);
}

static void test_unnormalized_keys(void) {
    compare("unnormalized keys", desc(150, 1, 0, 64, 64, LINA_GATE_NONE, 64), 0, 1.2f, 1, 1, 21);
    compare("unnormalized keys", desc(150, 1, 0, 64, 64, LINA_GATE_VECTOR, 32), -0.3f, 1.2f, 1, 1, 22);
}

static void test_varlen(void) {
    static const lina_gate gates[] = {LINA_GATE_SCALAR, LINA_GATE_VECTOR, LINA_GATE_CONST};
    static int64_t cu[5] = {0, 70, 70, 71, 200};
    for (int gi = 0; gi < 3; gi++) {
        lina_attn_desc d = desc(200, 2, 4, 64, 60, gates[gi], 32);
        d.cu_seqlens = cu, d.n_seqs = 4;
        compare("varlen+empty", d, -2.0f, 0, 1, 1, 31 + gi);
    }
}

/* Same results with 1 and 2 threads, bit for bit: one job (the dispatcher
 * offers it inner threads) and several jobs (outer threads). */
static void test_threads(void) {
    for (int heads = 1; heads <= 3; heads += 2) {
        problem p;
        problem_init(&p, desc(300, heads, 0, 64, 64, LINA_GATE_VECTOR, 32), 41, -1.0f, 0);
        results a, b;
        results_alloc(&p, &a);
        results_alloc(&p, &b);
        lina_ctx *c1 = NULL, *c2 = NULL;
        lina_ctx_create(&c1), lina_ctx_create(&c2);
        lina_ctx_set_threads(c1, 1), lina_ctx_set_threads(c2, 2);
        int ok = run(c1, &p, LINA_FORM_CHUNK, 1, 1, &a) && run(c2, &p, LINA_FORM_CHUNK, 1, 1, &b);
        ok = ok && !memcmp(a.o, b.o, sizeof(float) * p.nv) && !memcmp(a.ht, b.ht, sizeof(float) * p.ns);
        ok = ok && !memcmp(a.dq, b.dq, sizeof(float) * p.nqk) && !memcmp(a.dk, b.dk, sizeof(float) * p.nqk);
        ok = ok && !memcmp(a.dv, b.dv, sizeof(float) * p.nv) && !memcmp(a.dg, b.dg, sizeof(float) * p.ng);
        ok = ok && !memcmp(a.dbeta, b.dbeta, sizeof(float) * p.nb) &&
             !memcmp(a.dh0, b.dh0, sizeof(float) * p.ns);
        char name[96];
        snprintf(name, sizeof name, "chunk delta: 1 thread == 2 threads bitwise (H=%d)", heads);
        test_report(ok, name, "%s", ok ? "" : "results differ");
        lina_ctx_free(c1), lina_ctx_free(c2);
        results_free(&a), results_free(&b);
        problem_free(&p);
    }
}

/* Every output of a and b equal bit for bit. */
static int same_bits(const problem *p, const results *a, const results *b) {
    return !memcmp(a->o, b->o, sizeof(float) * p->nv) && !memcmp(a->ht, b->ht, sizeof(float) * p->ns) &&
           !memcmp(a->dq, b->dq, sizeof(float) * p->nqk) && !memcmp(a->dk, b->dk, sizeof(float) * p->nqk) &&
           !memcmp(a->dv, b->dv, sizeof(float) * p->nv) && !memcmp(a->dg, b->dg, sizeof(float) * p->ng) &&
           !memcmp(a->dbeta, b->dbeta, sizeof(float) * p->nb) && !memcmp(a->dh0, b->dh0, sizeof(float) * p->ns);
}

/* 1 thread vs `threads` threads, bit for bit, forward and backward with h0 and
 * dht. One (sequence, head) job gets the threads inside it (chunks prepared in
 * parallel, state passes by column blocks; LINA_DELTA_INNER_THREADS=1, set in
 * main) when it has enough chunks: the chunk sizes below give T = 63 and 65
 * eight or nine chunks. */
static void threads_case(const char *tag, lina_attn_desc d, float gmin, int threads, uint64_t seed) {
    problem p;
    problem_init(&p, d, seed, gmin, 0);
    results a, b;
    results_alloc(&p, &a);
    results_alloc(&p, &b);
    lina_ctx *c1 = NULL, *cn = NULL;
    int ok = lina_ctx_create(&c1) == LINA_OK && lina_ctx_create(&cn) == LINA_OK;
    if (ok) lina_ctx_set_threads(c1, 1), lina_ctx_set_threads(cn, threads);
    ok = ok && run(c1, &p, LINA_FORM_CHUNK, 1, 1, &a) && run(cn, &p, LINA_FORM_CHUNK, 1, 1, &b);
    int same = ok && same_bits(&p, &a, &b);
    char name[256];
    snprintf(name, sizeof name,
             "chunk delta: 1 thread == %d threads bitwise [%s gate=%s T=%d K=%d V=%d H=%d HV=%d C=%d]",
             threads, tag, gate_name(d.gate), d.T, d.K, d.V, d.H, d.HV ? d.HV : d.H, d.chunk);
    test_report(same, name, "%s", !ok ? lina_last_error() : same ? "" : "results differ");
    lina_ctx_free(c1), lina_ctx_free(cn);
    results_free(&a), results_free(&b);
    problem_free(&p);
}

static void test_threads_inside_job(void) {
    static const lina_gate gates[] = {LINA_GATE_NONE, LINA_GATE_SCALAR, LINA_GATE_VECTOR,
                                      LINA_GATE_CONST};
    for (int gi = 0; gi < 4; gi++) {
        lina_gate g = gates[gi];
        uint64_t seed = 300 + 10 * gi;
        threads_case("T=1", desc(1, 1, 0, 60, 100, g, 64), -1.0f, 2, seed);
        threads_case("odd", desc(63, 1, 0, 100, 60, g, 8), -1.0f, 2, seed + 1);
        threads_case("odd", desc(65, 1, 0, 128, 100, g, 8), -2.0f, 2, seed + 2);
        threads_case("long", desc(1000, 1, 0, 60, 128, g, 64), -0.5f, 2, seed + 3);
        threads_case("long", desc(1000, 1, 0, 128, 128, g, 64), -0.1f, 2, seed + 4);
    }
    /* grouped heads: the backward runs both value heads of one key head in one job */
    threads_case("grouped", desc(1000, 1, 2, 100, 60, LINA_GATE_VECTOR, 64), -0.5f, 2, 350);
    /* odd chunk size, partial last chunk; three threads (rounds of six chunks) */
    threads_case("odd chunk", desc(1000, 1, 0, 64, 100, LINA_GATE_SCALAR, 37), -0.5f, 3, 351);
    threads_case("long", desc(1000, 1, 0, 128, 128, LINA_GATE_VECTOR, 64), -0.5f, 3, 352);
    /* varlen with an empty sequence: jobs in parallel (outer threads) */
    static int64_t cu[5] = {0, 400, 400, 401, 1000};
    static const lina_gate vg[] = {LINA_GATE_SCALAR, LINA_GATE_VECTOR};
    for (int gi = 0; gi < 2; gi++) {
        lina_attn_desc d = desc(1000, 1, 0, 100, 128, vg[gi], 64);
        d.cu_seqlens = cu, d.n_seqs = 4;
        threads_case("varlen+empty", d, -1.0f, 2, 360 + gi);
    }
}

/* The sequence fed in pieces with the state carried == the whole sequence. */
static void test_pieces(void) {
    int T = 200, H = 2, K = 64, V = 64;
    problem p;
    problem_init(&p, desc(T, H, 0, K, V, LINA_GATE_SCALAR, 64), 51, -1.0f, 0);
    results whole;
    results_alloc(&p, &whole);
    lina_attn_desc d = p.d;
    d.form = LINA_FORM_CHUNK;
    lina_attn_fwd_args fa = {p.q, p.k, p.v, p.g, p.beta, p.h0, whole.o, whole.ht};
    int ok = lina_attn_forward(NULL, &d, &fa) == LINA_OK;
    float *o = alloc_floats(p.nv), *state = alloc_floats(p.ns);
    memcpy(state, p.h0, sizeof(float) * p.ns);
    static const int cuts[] = {0, 70, 134, 135, 200};
    for (int i = 0; i < 4 && ok; i++) {
        int t0 = cuts[i], n = cuts[i + 1] - cuts[i];
        lina_attn_desc dp = d;
        dp.T = n;
        lina_attn_fwd_args pa = {p.q + (size_t)t0 * H * K, p.k + (size_t)t0 * H * K,
                                 p.v + (size_t)t0 * H * V, p.g + (size_t)t0 * H,
                                 p.beta + (size_t)t0 * H,  state,
                                 o + (size_t)t0 * H * V,   state};
        ok = lina_attn_forward(NULL, &dp, &pa) == LINA_OK;
    }
    if (ok) {
        check_close("chunk delta: pieces == whole (o)", o, whole.o, p.nv, TOL);
        check_close("chunk delta: pieces == whole (state)", state, whole.ht, p.ns, TOL);
    } else {
        test_report(0, "chunk delta: pieces == whole", "%s", lina_last_error());
    }
    free(o), free(state);
    results_free(&whole);
    problem_free(&p);
}

/* Central finite differences of L = sum(o dout) + sum(ht dht) through the
 * chunk form itself (independent of the recurrent backward), tiny sizes, two
 * chunks of 4 plus a partial one. */
static double chunk_loss(problem *p, float *o, float *ht) {
    lina_attn_desc d = p->d;
    d.form = LINA_FORM_CHUNK;
    lina_attn_fwd_args a = {p->q, p->k, p->v, p->g, p->beta, p->h0, o, ht};
    if (lina_attn_forward(NULL, &d, &a) != LINA_OK) return NAN;
    double l = 0;
    for (size_t i = 0; i < p->nv; i++) l += (double)o[i] * p->dout[i];
    for (size_t i = 0; i < p->ns; i++) l += (double)ht[i] * p->dht[i];
    return l;
}

static void fd_one(const char *name, problem *p, float *x, size_t n, const float *grad, float *o,
                   float *ht) {
    float *fd = alloc_floats(n);
    for (size_t i = 0; i < n; i++) {
        float save = x[i], h = 1e-2f * fmaxf(1.0f, fabsf(save));
        if (x == p->g && save + h > 0) { /* keep log-gates <= 0: one-sided, second order */
            x[i] = save - 2 * h;
            double lm2 = chunk_loss(p, o, ht);
            x[i] = save - h;
            double lm = chunk_loss(p, o, ht);
            x[i] = save;
            fd[i] = (float)((3 * chunk_loss(p, o, ht) - 4 * lm + lm2) / (2 * h));
        } else {
            x[i] = save + h;
            double lp = chunk_loss(p, o, ht);
            x[i] = save - h;
            fd[i] = (float)((lp - chunk_loss(p, o, ht)) / (2 * h));
        }
        x[i] = save;
    }
    check_close(name, grad, fd, n, 3e-3);
    free(fd);
}

static void test_finite_differences(lina_gate gate) {
    problem p;
    lina_attn_desc d = desc(11, 1, 2, 5, 3, gate, 4);
    problem_init(&p, d, 61, -1.0f, 0);
    results r;
    results_alloc(&p, &r);
    char name[96];
    if (!run(NULL, &p, LINA_FORM_CHUNK, 1, 1, &r)) {
        snprintf(name, sizeof name, "chunk delta fd [%s]", gate_name(gate));
        test_report(0, name, "%s", lina_last_error());
    } else {
        float *o = alloc_floats(p.nv), *ht = alloc_floats(p.ns);
#define FD(buf, n, grad)                                                                           \
    snprintf(name, sizeof name, "chunk delta fd d%s [%s]", #buf, gate_name(gate));                 \
    fd_one(name, &p, p.buf, n, r.grad, o, ht);
        FD(q, p.nqk, dq) FD(k, p.nqk, dk) FD(v, p.nv, dv) FD(beta, p.nb, dbeta) FD(h0, p.ns, dh0)
        if (gate != LINA_GATE_NONE) { FD(g, p.ng, dg) }
#undef FD
        free(o), free(ht);
    }
    results_free(&r);
    problem_free(&p);
}

/* Small random shapes, including K = 1, V = 1 and chunk 1 .. T+2. */
static void test_random_shapes(void) {
    test_rng r;
    rng_seed(&r, 71);
    for (int i = 0; i < 24; i++) {
        int T = 1 + (int)(rng_uniform(&r) * 40), K = 1 + (int)(rng_uniform(&r) * 9);
        int V = 1 + (int)(rng_uniform(&r) * 9), chunk = 1 + (int)(rng_uniform(&r) * (T + 2));
        lina_gate gate = (lina_gate)(i % 4);
        compare("random", desc(T, 1, 1 + i % 2, K, V, gate, chunk), -3.0f * rng_uniform(&r), 0,
                i % 3 != 0, i % 2 == 0, 100 + i);
    }
}

int main(void) {
    /* the threaded sweep inside one job is opt-in (attn_chunk_delta_sweep.c):
     * the thread tests below compare it with one thread */
    setenv("LINA_DELTA_INNER_THREADS", "1", 1);
    test_random_shapes();
    test_finite_differences(LINA_GATE_SCALAR);
    test_finite_differences(LINA_GATE_VECTOR);
    test_shapes();
    test_strong_gates();
    test_unnormalized_keys();
    test_varlen();
    test_threads();
    test_threads_inside_job();
    test_pieces();
    return test_finish();
}
