/* The parallel (quadratic) form against the recurrent reference, through the
 * public API: forward (o, ht) and backward (every gradient), both updates,
 * every gate, odd sizes, strong decays, varlen with an empty sequence, grouped
 * heads, normalization, ht aliasing h0. Tolerance: relative RMS 1e-5. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "lina.h"
#include "util/check.h"

#define TOL 1e-5

typedef struct {
    lina_attn_desc d;
    float *q, *k, *v, *g, *beta, *h0, *dout, *dht;
    size_t nqk, nv, ng, nb, ns;
} problem;

typedef struct {
    float *o, *ht;                         /* forward */
    float *dq, *dk, *dv, *dg, *dbeta, *dh0; /* backward */
} results;

/* Random inputs; log-gates gmin * u^2 (u uniform) cover ~0 down to gmin. */
static void problem_init(problem *p, lina_attn_desc d, uint64_t seed, float gmin) {
    test_rng r;
    rng_seed(&r, seed);
    p->d = d;
    int HV = d.HV ? d.HV : d.H;
    size_t tokens = (size_t)d.B * d.T;
    p->nqk = tokens * d.H * d.K;
    p->nv = tokens * HV * d.V;
    p->ng = lina_attn_gate_numel(&d);
    p->nb = d.update == LINA_UPDATE_DELTA ? tokens * HV : 0;
    p->ns = (size_t)lina_attn_n_states(&d) * HV * d.K * lina_attn_state_cols(&d);
    p->q = alloc_floats(p->nqk + 1);
    p->k = alloc_floats(p->nqk + 1);
    p->v = alloc_floats(p->nv + 1);
    p->g = alloc_floats(p->ng + 1);
    p->beta = alloc_floats(p->nb + 1);
    p->h0 = alloc_floats(p->ns + 1);
    p->dout = alloc_floats(p->nv + 1);
    p->dht = alloc_floats(p->ns + 1);
    fill_normal(&r, p->q, p->nqk, 1.0f);
    fill_normal(&r, p->k, p->nqk, 1.0f);
    if (d.update == LINA_UPDATE_DELTA) /* L2-normalized keys, as DeltaNet uses them */
        for (size_t t = 0; t < p->nqk / d.K; t++) {
            double n = 0;
            for (int i = 0; i < d.K; i++) n += (double)p->k[t * d.K + i] * p->k[t * d.K + i];
            for (int i = 0; i < d.K; i++) p->k[t * d.K + i] /= (float)sqrt(n);
        }
    if (d.normalize) /* positive features keep the denominator away from 0 */
        for (size_t i = 0; i < p->nqk; i++)
            p->q[i] = fabsf(p->q[i]) + 0.1f, p->k[i] = fabsf(p->k[i]) + 0.1f;
    fill_normal(&r, p->v, p->nv, 1.0f);
    for (size_t i = 0; i < p->ng; i++) {
        float u = rng_uniform(&r);
        p->g[i] = gmin * u * u;
    }
    fill_uniform(&r, p->beta, p->nb, 0.05f, 0.95f);
    fill_normal(&r, p->h0, p->ns, 0.5f);
    if (d.normalize) /* z column of the state stays positive */
        for (size_t i = d.V; i < p->ns; i += d.V + 1) p->h0[i] = fabsf(p->h0[i]) + 0.5f;
    fill_normal(&r, p->dout, p->nv, 1.0f);
    fill_normal(&r, p->dht, p->ns, 1.0f);
}

static void problem_free(problem *p) {
    free(p->q), free(p->k), free(p->v), free(p->g), free(p->beta), free(p->h0);
    free(p->dout), free(p->dht);
}

static void results_alloc(const problem *p, results *r) {
    r->o = alloc_floats(p->nv + 1);
    r->ht = alloc_floats(p->ns + 1);
    r->dq = alloc_floats(p->nqk + 1);
    r->dk = alloc_floats(p->nqk + 1);
    r->dv = alloc_floats(p->nv + 1);
    r->dg = alloc_floats(p->ng + 1);
    r->dbeta = alloc_floats(p->nb + 1);
    r->dh0 = alloc_floats(p->ns + 1);
}

static void results_free(results *r) {
    free(r->o), free(r->ht), free(r->dq), free(r->dk), free(r->dv), free(r->dg), free(r->dbeta);
    free(r->dh0);
}

/* Forward and backward in one form (ctx NULL: the default context);
 * with_state: h0, ht, dht and dh0 are used. */
static lina_status run_form_ctx(lina_ctx *ctx, const problem *p, lina_form form, int with_state,
                                results *r) {
    lina_attn_desc d = p->d;
    d.form = form;
    lina_attn_fwd_args fa = {p->q, p->k, p->v, p->g, p->beta, with_state ? p->h0 : NULL, r->o,
                             with_state ? r->ht : NULL};
    lina_status st = lina_attn_forward(ctx, &d, &fa);
    if (st != LINA_OK) return st;
    lina_attn_bwd_args ba = {p->q, p->k, p->v, p->g, p->beta, with_state ? p->h0 : NULL, p->dout,
                             with_state ? p->dht : NULL, r->dq, r->dk, r->dv, r->dg, r->dbeta,
                             with_state ? r->dh0 : NULL};
    return lina_attn_backward(ctx, &d, &ba);
}

static lina_status run_form(const problem *p, lina_form form, int with_state, results *r) {
    return run_form_ctx(NULL, p, form, with_state, r);
}

static const char *gate_name(lina_gate g) {
    static const char *names[] = {"none", "const", "scalar", "vector"};
    return names[g];
}

/* The CONST gate's gradient is the sum over tokens of per-token gradients,
 * each rounded to fp32 by the dispatcher, and those can cancel by orders of
 * magnitude (strong decays, the delta rule): no fp32 computation, the
 * reference included, gets |sum| to 1e-5 then. So the error is measured
 * against the scale of the terms, sum_t |dg_t|, with the per-token dg_t of the
 * reference on the same problem as a SCALAR gate broadcast over tokens. */
static void check_const_dg(const char *name, const problem *p, const float *got, const float *ref,
                           int with_state) {
    const lina_attn_desc *d = &p->d;
    int HV = d->HV ? d->HV : d->H;
    size_t tokens = (size_t)d->B * d->T;
    problem s = *p;
    s.d.gate = LINA_GATE_SCALAR;
    s.ng = tokens * HV;
    s.g = alloc_floats(s.ng + 1);
    for (size_t i = 0; i < s.ng; i++) s.g[i] = p->g[i % HV];
    results per;
    results_alloc(&s, &per);
    lina_status st = run_form(&s, LINA_FORM_RECURRENT, with_state, &per);
    double err = 0, scale = 0;
    for (int hv = 0; hv < HV; hv++) {
        double terms = 0;
        for (size_t t = 0; t < tokens; t++) terms += fabs(per.dg[t * HV + hv]);
        scale += terms * terms;
        err += ((double)got[hv] - ref[hv]) * ((double)got[hv] - ref[hv]);
    }
    double e = sqrt(err / (scale > 0 ? scale : 1));
    char what[260];
    snprintf(what, sizeof what, "%s: dg (const; error / sum_t |dg_t|)", name);
    if (st != LINA_OK || !isfinite(got[0]))
        test_report(0, what, "status %s, dg[0] = %g", lina_status_str(st), got[0]);
    else
        test_report(e <= TOL, what, "%.2e %s %.0e", e, e <= TOL ? "<=" : ">", TOL);
    results_free(&per);
    free(s.g);
}

/* PARALLEL vs RECURRENT on one problem: o, ht and every gradient. */
static void compare(const char *tag, lina_attn_desc d, float gmin, int with_state, uint64_t seed) {
    problem p;
    problem_init(&p, d, seed, gmin);
    results ref, got;
    results_alloc(&p, &ref);
    results_alloc(&p, &got);
    char name[200];
    snprintf(name, sizeof name, "%s %s %s T=%d K=%d V=%d H=%d HV=%d g>=%g%s%s", tag,
             d.update == LINA_UPDATE_DELTA ? "delta" : "add", gate_name(d.gate), d.T, d.K, d.V, d.H,
             d.HV ? d.HV : d.H, gmin, with_state ? " h0/ht" : "", d.normalize ? " normalized" : "");
    lina_status s1 = run_form(&p, LINA_FORM_RECURRENT, with_state, &ref);
    lina_status s2 = run_form(&p, LINA_FORM_PARALLEL, with_state, &got);
    if (s1 != LINA_OK || s2 != LINA_OK) {
        test_report(0, name, "status recurrent %s, parallel %s: %s", lina_status_str(s1),
                    lina_status_str(s2), lina_last_error());
    } else {
        char what[260];
#define CMP(field, n)                                                                              \
    do {                                                                                           \
        snprintf(what, sizeof what, "%s: " #field, name);                                          \
        check_close(what, got.field, ref.field, n, TOL);                                           \
    } while (0)
        CMP(o, p.nv);
        if (with_state) CMP(ht, p.ns);
        CMP(dq, p.nqk);
        CMP(dk, p.nqk);
        CMP(dv, p.nv);
        if (d.gate == LINA_GATE_CONST) check_const_dg(name, &p, got.dg, ref.dg, with_state);
        else if (d.gate != LINA_GATE_NONE) CMP(dg, p.ng);
        if (d.update == LINA_UPDATE_DELTA) CMP(dbeta, p.nb);
        if (with_state) CMP(dh0, p.ns);
#undef CMP
    }
    results_free(&ref);
    results_free(&got);
    problem_free(&p);
}

static lina_attn_desc desc(int B, int T, int H, int HV, int K, int V, lina_gate gate,
                           lina_update update) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = B, d.T = T, d.H = H, d.HV = HV, d.K = K, d.V = V, d.gate = gate, d.update = update;
    return d;
}

/* Both updates x every gate on odd sizes, decays from ~0 to -20. */
static void test_matrix(void) {
    for (int u = 0; u < 2; u++)
        for (int g = 0; g < 4; g++) {
            lina_update up = (lina_update)u;
            lina_gate gate = (lina_gate)g;
            uint64_t seed = 100 + 10 * u + g;
            compare("T1", desc(2, 1, 1, 0, 60, 64, gate, up), -1.0f, 1, seed);
            compare("K1V1", desc(2, 9, 1, 2, 1, 1, gate, up), -1.0f, 1, seed + 6);
            compare("T2", desc(1, 2, 1, 0, 64, 60, gate, up), -1.0f, 1, seed + 1);
            compare("grouped", desc(1, 63, 2, 4, 64, 100, gate, up), -1.0f, 1, seed + 2);
            compare("decay20", desc(2, 65, 1, 0, 100, 60, gate, up), -20.0f, 1, seed + 3);
            compare("no-state", desc(1, 65, 1, 0, 60, 64, gate, up), -0.5f, 0, seed + 4);
            compare("long", desc(1, 300, 1, 0, 128, 64, gate, up), -0.05f, 1, seed + 5);
        }
    /* long sequences with strong decays and the widest head */
    compare("long", desc(1, 300, 1, 0, 64, 128, LINA_GATE_VECTOR, LINA_UPDATE_DELTA), -20.0f, 1, 7);
    compare("long", desc(1, 300, 1, 0, 128, 100, LINA_GATE_SCALAR, LINA_UPDATE_ADD), -3.0f, 1, 8);
}

/* Packed varlen batch with an empty sequence. */
static void test_varlen(void) {
    static const int64_t cu[] = {0, 5, 5, 70, 71};
    for (int u = 0; u < 2; u++)
        for (int g = 0; g < 4; g++) {
            lina_attn_desc d = desc(1, 71, 2, 0, 60, 64, (lina_gate)g, (lina_update)u);
            d.cu_seqlens = cu;
            d.n_seqs = 4;
            compare("varlen", d, -2.0f, 1, 200 + 10 * u + g);
        }
}

/* Normalized additive attention (the dispatcher adds a ones column to v). */
static void test_normalized(void) {
    static const int64_t cu[] = {0, 0, 33, 99};
    for (int g = 0; g < 4; g++) {
        lina_attn_desc d = desc(1, 65, 2, 4, 64, 60, (lina_gate)g, LINA_UPDATE_ADD);
        d.normalize = 1;
        compare("norm", d, -0.5f, 1, 300 + g);
        d = desc(1, 99, 1, 0, 100, 64, (lina_gate)g, LINA_UPDATE_ADD);
        d.normalize = 1;
        d.cu_seqlens = cu;
        d.n_seqs = 3;
        compare("norm varlen", d, -1.0f, 1, 310 + g);
    }
}

/* ht may alias h0: the parallel form reads h0 before it writes ht. */
static void test_alias(void) {
    for (int u = 0; u < 2; u++) {
        lina_attn_desc d = desc(2, 37, 1, 2, 60, 64, LINA_GATE_VECTOR, (lina_update)u);
        problem p;
        problem_init(&p, d, 400 + u, -1.0f);
        float *o_ref = alloc_floats(p.nv), *ht_ref = alloc_floats(p.ns), *o = alloc_floats(p.nv);
        float *state = alloc_floats(p.ns);
        memcpy(state, p.h0, sizeof(float) * p.ns);
        d.form = LINA_FORM_RECURRENT;
        lina_attn_fwd_args a = {p.q, p.k, p.v, p.g, p.beta, p.h0, o_ref, ht_ref};
        lina_status s1 = lina_attn_forward(NULL, &d, &a);
        d.form = LINA_FORM_PARALLEL;
        lina_attn_fwd_args b = {p.q, p.k, p.v, p.g, p.beta, state, o, state};
        lina_status s2 = lina_attn_forward(NULL, &d, &b);
        char name[120];
        snprintf(name, sizeof name, "alias ht=h0 %s", u ? "delta" : "add");
        if (s1 != LINA_OK || s2 != LINA_OK) {
            test_report(0, name, "status %s / %s", lina_status_str(s1), lina_status_str(s2));
        } else {
            char what[160];
            snprintf(what, sizeof what, "%s: o", name);
            check_close(what, o, o_ref, p.nv, TOL);
            snprintf(what, sizeof what, "%s: ht", name);
            check_close(what, state, ht_ref, p.ns, TOL);
        }
        free(o_ref), free(ht_ref), free(o), free(state);
        problem_free(&p);
    }
}

/* Accumulation contract: dq/dk are summed over the value heads of a group and
 * the per-call gradients are overwritten, so calling backward twice on the
 * same buffers gives the same result. */
static void test_repeat(void) {
    lina_attn_desc d = desc(1, 40, 1, 3, 64, 60, LINA_GATE_SCALAR, LINA_UPDATE_DELTA);
    d.form = LINA_FORM_PARALLEL;
    problem p;
    problem_init(&p, d, 500, -1.0f);
    results a, b;
    results_alloc(&p, &a);
    results_alloc(&p, &b);
    lina_status s1 = run_form(&p, LINA_FORM_PARALLEL, 1, &a);
    memcpy(b.dq, a.dq, sizeof(float) * p.nqk); /* stale values that must be overwritten */
    lina_status s2 = run_form(&p, LINA_FORM_PARALLEL, 1, &b);
    int same = s1 == LINA_OK && s2 == LINA_OK && !memcmp(a.dq, b.dq, sizeof(float) * p.nqk) &&
               !memcmp(a.dk, b.dk, sizeof(float) * p.nqk) && !memcmp(a.dg, b.dg, sizeof(float) * p.ng);
    test_report(same, "repeated backward", "%s", same ? "bit-identical" : "results differ");
    results_free(&a);
    results_free(&b);
    problem_free(&p);
}

/* Results do not depend on the thread count: 1 vs 2 threads, bit for bit, on
 * several jobs (threads across jobs) and on one job (BLAS threads inside). The
 * OpenMP default changes too, as `--threads` does: OpenBLAS (OpenMP build)
 * threads a call made outside a parallel region over omp_get_max_threads(). */
static void test_threads(void) {
    for (int many = 0; many < 2; many++) {
        lina_attn_desc d = many ? desc(3, 50, 2, 4, 64, 60, LINA_GATE_VECTOR, LINA_UPDATE_DELTA)
                                : desc(1, 200, 1, 0, 128, 128, LINA_GATE_SCALAR, LINA_UPDATE_DELTA);
        problem p;
        problem_init(&p, d, 800 + many, -1.0f);
        results r[2];
        lina_status st[2];
        for (int n = 0; n < 2; n++) {
            lina_ctx *ctx = NULL;
            results_alloc(&p, &r[n]);
            st[n] = lina_ctx_create(&ctx);
            if (st[n] == LINA_OK) st[n] = lina_ctx_set_threads(ctx, n + 1);
            int omp_before = omp_get_max_threads();
            omp_set_num_threads(n + 1);
            if (st[n] == LINA_OK) st[n] = run_form_ctx(ctx, &p, LINA_FORM_PARALLEL, 1, &r[n]);
            omp_set_num_threads(omp_before);
            lina_ctx_free(ctx);
        }
        int same = st[0] == LINA_OK && st[1] == LINA_OK;
#define SAME(field, n) same = same && !memcmp(r[0].field, r[1].field, sizeof(float) * (n))
        SAME(o, p.nv);
        SAME(ht, p.ns);
        SAME(dq, p.nqk);
        SAME(dk, p.nqk);
        SAME(dv, p.nv);
        SAME(dg, p.ng);
        SAME(dbeta, p.nb);
        SAME(dh0, p.ns);
#undef SAME
        test_report(same, many ? "1 vs 2 threads, 24 jobs" : "1 vs 2 threads, one job", "%s",
                    same ? "bit-identical" : "results differ");
        results_free(&r[0]);
        results_free(&r[1]);
        problem_free(&p);
    }
}

/* L = sum(o * dout) + sum(ht * dht) in double, forward in the parallel form. */
static double fd_loss(const problem *p, float *o, float *ht) {
    lina_attn_desc d = p->d;
    d.form = LINA_FORM_PARALLEL;
    lina_attn_fwd_args a = {p->q, p->k, p->v, p->g, p->beta, p->h0, o, ht};
    if (lina_attn_forward(NULL, &d, &a) != LINA_OK) return NAN;
    double l = 0;
    for (size_t i = 0; i < p->nv; i++) l += (double)o[i] * p->dout[i];
    for (size_t i = 0; i < p->ns; i++) l += (double)ht[i] * p->dht[i];
    return l;
}

/* The parallel backward on its own: central differences of its forward on a
 * tiny grouped problem (log-gates kept in [-1, -0.05] so g + h stays < 0). */
static void test_finite_differences(void) {
    static const struct { lina_update u; lina_gate g; } cases[] = {
        {LINA_UPDATE_DELTA, LINA_GATE_VECTOR}, {LINA_UPDATE_DELTA, LINA_GATE_CONST},
        {LINA_UPDATE_ADD, LINA_GATE_SCALAR}, {LINA_UPDATE_ADD, LINA_GATE_VECTOR}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        problem p;
        problem_init(&p, desc(1, 7, 1, 2, 5, 4, cases[c].g, cases[c].u), 600 + c, -1.0f);
        for (size_t i = 0; i < p.ng; i++) p.g[i] = fminf(p.g[i], -0.05f);
        results r;
        results_alloc(&p, &r);
        lina_status st = run_form(&p, LINA_FORM_PARALLEL, 1, &r);
        struct { const char *name; float *x; size_t n; const float *grad; } wrt[] = {
            {"q", p.q, p.nqk, r.dq},   {"k", p.k, p.nqk, r.dk},          {"v", p.v, p.nv, r.dv},
            {"g", p.g, p.ng, r.dg},    {"beta", p.beta, p.nb, r.dbeta}, {"h0", p.h0, p.ns, r.dh0}};
        for (size_t w = 0; w < sizeof wrt / sizeof wrt[0]; w++) {
            if (!wrt[w].n) continue;
            char name[160];
            snprintf(name, sizeof name, "finite differences %s %s: d%s",
                     cases[c].u == LINA_UPDATE_DELTA ? "delta" : "add", gate_name(cases[c].g),
                     wrt[w].name);
            if (st != LINA_OK) {
                test_report(0, name, "backward: %s", lina_last_error());
                continue;
            }
            float *fd = alloc_floats(wrt[w].n);
            for (size_t i = 0; i < wrt[w].n; i++) {
                float save = wrt[w].x[i], h = 1e-2f * fmaxf(1.0f, fabsf(save));
                wrt[w].x[i] = save + h;
                double lp = fd_loss(&p, r.o, r.ht);
                wrt[w].x[i] = save - h;
                double lm = fd_loss(&p, r.o, r.ht);
                wrt[w].x[i] = save;
                fd[i] = (float)((lp - lm) / (2 * h));
            }
            check_close(name, wrt[w].grad, fd, wrt[w].n, 2e-3);
            free(fd);
        }
        results_free(&r);
        problem_free(&p);
    }
}

/* Log-gates of -1e30 next to 0 (decays that underflow to exactly 0). */
static void test_extreme_gates(void) {
    for (int u = 0; u < 2; u++)
        for (int g = 2; g < 4; g++) {
            lina_attn_desc d = desc(1, 50, 1, 0, 64, 60, (lina_gate)g, (lina_update)u);
            problem p;
            problem_init(&p, d, 700 + 10 * u + g, -0.1f);
            for (size_t i = 0; i < p.ng; i += 7) p.g[i] = -1e30f;
            results ref, got;
            results_alloc(&p, &ref);
            results_alloc(&p, &got);
            lina_status s1 = run_form(&p, LINA_FORM_RECURRENT, 1, &ref);
            lina_status s2 = run_form(&p, LINA_FORM_PARALLEL, 1, &got);
            char name[200];
            snprintf(name, sizeof name, "extreme gates %s %s", u ? "delta" : "add", gate_name(d.gate));
            if (s1 != LINA_OK || s2 != LINA_OK) {
                test_report(0, name, "status %s / %s", lina_status_str(s1), lina_status_str(s2));
            } else {
                char what[260];
                snprintf(what, sizeof what, "%s: o", name);
                check_close(what, got.o, ref.o, p.nv, TOL);
                snprintf(what, sizeof what, "%s: ht", name);
                check_close(what, got.ht, ref.ht, p.ns, TOL);
                snprintf(what, sizeof what, "%s: dk", name);
                check_close(what, got.dk, ref.dk, p.nqk, TOL);
                snprintf(what, sizeof what, "%s: dg", name);
                check_close(what, got.dg, ref.dg, p.ng, TOL);
            }
            results_free(&ref);
            results_free(&got);
            problem_free(&p);
        }
}

int main(void) {
    test_finite_differences();
    test_extreme_gates();
    test_matrix();
    test_varlen();
    test_normalized();
    test_alias();
    test_repeat();
    test_threads();
    return test_finish();
}
