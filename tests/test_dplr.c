/* The DPLR (RWKV-7) op: chunk form == the double-precision recurrent
 * reference (forward and backward), finite differences, varlen with an empty
 * sequence, h0/ht, pieces, decoding steps, threads, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

typedef struct {
    lina_dplr_desc d;
    float *r, *k, *v, *a, *b, *w, *h0, *o, *ht, *dout, *dht;
    size_t nk, nv, ns;
} problem;

/* RWKV-7-like inputs: a = -kk, b = kk * iclr with kk unit-norm, iclr in [0, 1]. */
static void problem_init(problem *p, lina_dplr_desc d, uint64_t seed, float wmin) {
    test_rng g;
    rng_seed(&g, seed);
    p->d = d;
    size_t rows = (size_t)d.B * d.T * d.H;
    p->nk = rows * d.K;
    p->nv = rows * d.V;
    p->ns = (size_t)lina_dplr_n_states(&d) * d.H * d.K * d.V;
    p->r = alloc_floats(p->nk), p->k = alloc_floats(p->nk), p->v = alloc_floats(p->nv);
    p->a = alloc_floats(p->nk), p->b = alloc_floats(p->nk), p->w = alloc_floats(p->nk);
    p->h0 = alloc_floats(p->ns), p->ht = alloc_floats(p->ns), p->dht = alloc_floats(p->ns);
    p->o = alloc_floats(p->nv), p->dout = alloc_floats(p->nv);
    fill_normal(&g, p->r, p->nk, 1.0f);
    fill_normal(&g, p->k, p->nk, 0.5f);
    fill_normal(&g, p->v, p->nv, 1.0f);
    for (size_t t = 0; t < rows; t++) {
        float *kk = p->a + t * d.K;
        fill_normal(&g, kk, d.K, 1.0f);
        double n = 0;
        for (int i = 0; i < d.K; i++) n += kk[i] * kk[i];
        for (int i = 0; i < d.K; i++) {
            kk[i] /= (float)sqrt(n);
            p->b[t * d.K + i] = kk[i] * rng_uniform(&g);
            kk[i] = -kk[i];
        }
    }
    fill_uniform(&g, p->w, p->nk, wmin, 0.0f);
    fill_normal(&g, p->h0, p->ns, 0.5f);
    fill_normal(&g, p->dout, p->nv, 1.0f);
    fill_normal(&g, p->dht, p->ns, 1.0f);
}

static void problem_free(problem *p) {
    free(p->r), free(p->k), free(p->v), free(p->a), free(p->b), free(p->w);
    free(p->h0), free(p->ht), free(p->dht), free(p->o), free(p->dout);
}

static lina_status forward(lina_ctx *ctx, problem *p) {
    lina_dplr_fwd_args a = {p->r, p->k, p->v, p->a, p->b, p->w, p->h0, p->o, p->ht};
    return lina_dplr_forward(ctx, &p->d, &a);
}

typedef struct {
    float *dr, *dk, *dv, *da, *db, *dw, *dh0;
} grads;

static grads grads_alloc(const problem *p) {
    grads g = {alloc_floats(p->nk), alloc_floats(p->nk), alloc_floats(p->nv), alloc_floats(p->nk),
               alloc_floats(p->nk), alloc_floats(p->nk), alloc_floats(p->ns)};
    return g;
}
static void grads_free(grads *g) {
    free(g->dr), free(g->dk), free(g->dv), free(g->da), free(g->db), free(g->dw), free(g->dh0);
}

static lina_status backward(lina_ctx *ctx, problem *p, grads *g) {
    lina_dplr_bwd_args a = {p->r,  p->k,  p->v,  p->a,  p->b,  p->w,  p->h0,  p->dout,
                            p->dht, g->dr, g->dk, g->dv, g->da, g->db, g->dw, g->dh0};
    return lina_dplr_backward(ctx, &p->d, &a);
}

static lina_dplr_desc desc(int B, int T, int H, int K, int V, lina_form form) {
    lina_dplr_desc d = lina_dplr_desc_default();
    d.B = B, d.T = T, d.H = H, d.K = K, d.V = V, d.form = form, d.scale = 1.0f;
    return d;
}

static void compare_grads(const char *tag, const problem *p, const grads *got, const grads *ref,
                          double tol) {
    char name[160];
#define CMP(f, n)                                                                                  \
    snprintf(name, sizeof name, "chunk backward == recurrent: " #f " [%s]", tag);                  \
    check_close(name, got->f, ref->f, n, tol);
    CMP(dr, p->nk) CMP(dk, p->nk) CMP(dv, p->nv) CMP(da, p->nk) CMP(db, p->nk) CMP(dw, p->nk)
    CMP(dh0, p->ns)
#undef CMP
}

/* chunk == recurrent, forward (o, ht) and backward (every gradient). */
static void test_chunk_vs_recurrent(int B, int T, int K, int V, float wmin, double tol_f,
                                    double tol_b) {
    char tag[96], name[160];
    snprintf(tag, sizeof tag, "B=%d T=%d K=%d V=%d wmin=%g", B, T, K, V, wmin);
    problem p;
    problem_init(&p, desc(B, T, 2, K, V, LINA_FORM_RECURRENT), 100 + T + K, wmin);
    float *o_ref = alloc_floats(p.nv), *ht_ref = alloc_floats(p.ns);
    lina_status st = forward(NULL, &p);
    memcpy(o_ref, p.o, sizeof(float) * p.nv);
    memcpy(ht_ref, p.ht, sizeof(float) * p.ns);
    grads ref = grads_alloc(&p), got = grads_alloc(&p);
    if (st == LINA_OK) st = backward(NULL, &p, &ref);
    p.d.form = LINA_FORM_CHUNK;
    if (st == LINA_OK) st = forward(NULL, &p);
    if (st == LINA_OK) st = backward(NULL, &p, &got);
    snprintf(name, sizeof name, "dplr runs [%s]", tag);
    test_report(st == LINA_OK, name, "%s", lina_last_error());
    snprintf(name, sizeof name, "chunk == recurrent: o [%s]", tag);
    check_close(name, p.o, o_ref, p.nv, tol_f);
    snprintf(name, sizeof name, "chunk == recurrent: ht [%s]", tag);
    check_close(name, p.ht, ht_ref, p.ns, tol_f);
    compare_grads(tag, &p, &got, &ref, tol_b);
    grads_free(&ref), grads_free(&got);
    free(o_ref), free(ht_ref);
    problem_free(&p);
}

/* L = sum(o * dout) + sum(ht * dht) */
static double loss(problem *p) {
    if (forward(NULL, p) != LINA_OK) return NAN;
    double l = 0;
    for (size_t i = 0; i < p->nv; i++) l += (double)p->o[i] * p->dout[i];
    for (size_t i = 0; i < p->ns; i++) l += (double)p->ht[i] * p->dht[i];
    return l;
}

static void fd_check(const char *name, problem *p, float *x, size_t n, const float *grad) {
    float *fd = alloc_floats(n);
    for (size_t i = 0; i < n; i++) {
        float save = x[i], h = 1e-2f * fmaxf(1.0f, fabsf(save));
        if (x == p->w && save + h > 0) { /* one-sided stencil keeps w <= 0 */
            x[i] = save - 2 * h;
            double lm2 = loss(p);
            x[i] = save - h;
            double lm = loss(p);
            x[i] = save;
            double l0 = loss(p);
            fd[i] = (float)((3 * l0 - 4 * lm + lm2) / (2 * h));
        } else {
            x[i] = save + h;
            double lp = loss(p);
            x[i] = save - h;
            double lm = loss(p);
            fd[i] = (float)((lp - lm) / (2 * h));
        }
        x[i] = save;
    }
    check_close(name, grad, fd, n, 2e-3);
    free(fd);
}

/* Finite differences of the loss through the recurrent form, against both
 * backwards (chunk 3 so that several chunks and a partial one are crossed). */
static void test_finite_differences(lina_form form) {
    lina_dplr_desc d = desc(1, 7, 1, 3, 2, form);
    d.chunk = 3;
    problem p;
    problem_init(&p, d, 5, -1.5f);
    grads g = grads_alloc(&p);
    lina_status st = backward(NULL, &p, &g);
    const char *tag = form == LINA_FORM_CHUNK ? "chunk" : "recurrent";
    char name[128];
    snprintf(name, sizeof name, "backward runs [%s]", tag);
    test_report(st == LINA_OK, name, "%s", lina_last_error());
    p.d.form = LINA_FORM_RECURRENT;
#define FD(buf, n, grad)                                                                           \
    snprintf(name, sizeof name, "fd d%s [%s]", #buf, tag);                                         \
    fd_check(name, &p, p.buf, n, grad);
    FD(r, p.nk, g.dr) FD(k, p.nk, g.dk) FD(v, p.nv, g.dv) FD(a, p.nk, g.da) FD(b, p.nk, g.db)
    FD(w, p.nk, g.dw) FD(h0, p.ns, g.dh0)
#undef FD
    grads_free(&g);
    problem_free(&p);
}

/* Packed sequences (one empty) == each sequence run alone, forward and backward. */
static void test_varlen(lina_form form) {
    const int64_t cu[] = {0, 37, 37, 100, 165};
    int n_seqs = 4, H = 2, K = 20, V = 12;
    lina_dplr_desc d = desc(1, 165, H, K, V, form);
    d.cu_seqlens = cu, d.n_seqs = n_seqs, d.chunk = 16;
    problem p;
    problem_init(&p, d, 21, -2.0f);
    grads g = grads_alloc(&p);
    lina_status st = forward(NULL, &p);
    if (st == LINA_OK) st = backward(NULL, &p, &g);
    const char *tag = form == LINA_FORM_CHUNK ? "chunk" : "recurrent";
    char name[128];
    snprintf(name, sizeof name, "varlen runs [%s]", tag);
    test_report(st == LINA_OK, name, "%s", lina_last_error());
    float *o = alloc_floats(p.nv), *ht = alloc_floats(p.ns);
    grads s = grads_alloc(&p);
    size_t kv = (size_t)H * K * V;
    for (int n = 0; n < n_seqs && st == LINA_OK; n++) {
        int len = (int)(cu[n + 1] - cu[n]);
        if (len == 0) { /* an empty sequence passes its state through */
            memcpy(ht + n * kv, p.h0 + n * kv, sizeof(float) * kv);
            memcpy(s.dh0 + n * kv, p.dht + n * kv, sizeof(float) * kv);
            continue;
        }
        lina_dplr_desc one = desc(1, len, H, K, V, form);
        one.chunk = 16;
        size_t ok = (size_t)cu[n] * H * K, ov = (size_t)cu[n] * H * V;
        lina_dplr_fwd_args fa = {p.r + ok, p.k + ok, p.v + ov, p.a + ok, p.b + ok, p.w + ok,
                                 p.h0 + n * kv, o + ov, ht + n * kv};
        st = lina_dplr_forward(NULL, &one, &fa);
        lina_dplr_bwd_args ba = {p.r + ok,  p.k + ok,  p.v + ov,  p.a + ok,  p.b + ok,
                                 p.w + ok,  p.h0 + n * kv, p.dout + ov, p.dht + n * kv,
                                 s.dr + ok, s.dk + ok, s.dv + ov,  s.da + ok, s.db + ok,
                                 s.dw + ok, s.dh0 + n * kv};
        if (st == LINA_OK) st = lina_dplr_backward(NULL, &one, &ba);
    }
    snprintf(name, sizeof name, "varlen == separate: o [%s]", tag);
    check_close(name, p.o, o, p.nv, 1e-7);
    snprintf(name, sizeof name, "varlen == separate: ht incl. empty sequence [%s]", tag);
    check_close(name, p.ht, ht, p.ns, 1e-7);
    snprintf(name, sizeof name, "varlen == separate: gradients [%s]", tag);
    double e = rel_rms(g.dr, s.dr, p.nk) + rel_rms(g.dk, s.dk, p.nk) + rel_rms(g.dv, s.dv, p.nv) +
               rel_rms(g.da, s.da, p.nk) + rel_rms(g.db, s.db, p.nk) + rel_rms(g.dw, s.dw, p.nk) +
               rel_rms(g.dh0, s.dh0, p.ns);
    test_report(e <= 1e-7, name, "sum of rel_rms %.2e", e);
    free(o), free(ht);
    grads_free(&g), grads_free(&s);
    problem_free(&p);
}

/* Two pieces with the state carried == the whole sequence; ht may alias h0. */
static void test_pieces(void) {
    int T = 150, T1 = 70, H = 2, K = 16, V = 8;
    problem p;
    problem_init(&p, desc(1, T, H, K, V, LINA_FORM_CHUNK), 31, -1.0f);
    lina_status st = forward(NULL, &p);
    float *state = alloc_floats(p.ns), *o = alloc_floats(p.nv);
    memcpy(state, p.h0, sizeof(float) * p.ns);
    lina_dplr_desc d1 = desc(1, T1, H, K, V, LINA_FORM_CHUNK), d2 = desc(1, T - T1, H, K, V, LINA_FORM_CHUNK);
    size_t ok = (size_t)T1 * H * K, ov = (size_t)T1 * H * V;
    lina_dplr_fwd_args a1 = {p.r, p.k, p.v, p.a, p.b, p.w, state, o, state};
    lina_dplr_fwd_args a2 = {p.r + ok, p.k + ok, p.v + ov, p.a + ok, p.b + ok, p.w + ok, state, o + ov, state};
    if (st == LINA_OK) st = lina_dplr_forward(NULL, &d1, &a1);
    if (st == LINA_OK) st = lina_dplr_forward(NULL, &d2, &a2);
    test_report(st == LINA_OK, "pieces run", "%s", lina_last_error());
    check_close("pieces with state carried == whole: o", o, p.o, p.nv, 1e-6);
    check_close("pieces with state carried == whole: ht (aliasing h0)", state, p.ht, p.ns, 1e-6);
    free(state), free(o);
    problem_free(&p);
}

/* Decoding steps == the recurrent forward; B = 2 sequences. */
static void test_steps(void) {
    int B = 2, T = 11, H = 3, K = 7, V = 5;
    problem p;
    problem_init(&p, desc(B, T, H, K, V, LINA_FORM_RECURRENT), 41, -3.0f);
    lina_status st = forward(NULL, &p);
    float *state = alloc_floats(p.ns), *o = alloc_floats(p.nv);
    float *rt = alloc_floats(B * H * K), *kt = alloc_floats(B * H * K), *at = alloc_floats(B * H * K);
    float *bt = alloc_floats(B * H * K), *wt = alloc_floats(B * H * K), *vt = alloc_floats(B * H * V);
    float *ot = alloc_floats(B * H * V);
    memcpy(state, p.h0, sizeof(float) * p.ns);
    for (int t = 0; t < T && st == LINA_OK; t++) {
        for (int n = 0; n < B; n++) {
            size_t tok = (size_t)n * T + t, hk = (size_t)H * K, hv = (size_t)H * V;
            memcpy(rt + n * hk, p.r + tok * hk, sizeof(float) * hk);
            memcpy(kt + n * hk, p.k + tok * hk, sizeof(float) * hk);
            memcpy(at + n * hk, p.a + tok * hk, sizeof(float) * hk);
            memcpy(bt + n * hk, p.b + tok * hk, sizeof(float) * hk);
            memcpy(wt + n * hk, p.w + tok * hk, sizeof(float) * hk);
            memcpy(vt + n * hv, p.v + tok * hv, sizeof(float) * hv);
        }
        st = lina_dplr_step(NULL, &p.d, rt, kt, vt, at, bt, wt, state, ot);
        for (int n = 0; n < B; n++)
            memcpy(o + ((size_t)n * T + t) * H * V, ot + n * H * V, sizeof(float) * H * V);
    }
    test_report(st == LINA_OK, "steps run", "%s", lina_last_error());
    check_close("step x T == forward: o", o, p.o, p.nv, 1e-5);
    check_close("step x T == forward: state", state, p.ht, p.ns, 1e-5);
    free(state), free(o), free(rt), free(kt), free(at), free(bt), free(wt), free(vt), free(ot);
    problem_free(&p);
}

/* 1 and 2 threads give identical bits, across jobs (H = 3) and with one job. */
static void test_threads(int H) {
    lina_ctx *c1, *c2;
    lina_ctx_create(&c1), lina_ctx_create(&c2);
    lina_ctx_set_threads(c1, 1), lina_ctx_set_threads(c2, 2);
    problem p;
    problem_init(&p, desc(1, 200, H, 64, 64, LINA_FORM_CHUNK), 51, -1.0f);
    float *o1 = alloc_floats(p.nv);
    grads g1 = grads_alloc(&p), g2 = grads_alloc(&p);
    lina_status st = forward(c1, &p);
    memcpy(o1, p.o, sizeof(float) * p.nv);
    if (st == LINA_OK) st = forward(c2, &p);
    if (st == LINA_OK) st = backward(c1, &p, &g1);
    if (st == LINA_OK) st = backward(c2, &p, &g2);
    int same = st == LINA_OK && !memcmp(o1, p.o, sizeof(float) * p.nv) &&
               !memcmp(g1.dr, g2.dr, sizeof(float) * p.nk) && !memcmp(g1.dk, g2.dk, sizeof(float) * p.nk) &&
               !memcmp(g1.dv, g2.dv, sizeof(float) * p.nv) && !memcmp(g1.da, g2.da, sizeof(float) * p.nk) &&
               !memcmp(g1.db, g2.db, sizeof(float) * p.nk) && !memcmp(g1.dw, g2.dw, sizeof(float) * p.nk) &&
               !memcmp(g1.dh0, g2.dh0, sizeof(float) * p.ns);
    char name[96];
    snprintf(name, sizeof name, "1 vs 2 threads bit-identical (H=%d)", H);
    test_report(same, name, "%s", st != LINA_OK ? lina_last_error() : same ? "" : "outputs differ");
    free(o1);
    grads_free(&g1), grads_free(&g2);
    problem_free(&p);
    lina_ctx_free(c1), lina_ctx_free(c2);
}

/* Log-decays far below the floor (-1e30): the chunk form clamps, and still
 * matches the reference (e^{-1000} and e^{-1e30} are both 0 in float). */
static void test_huge_decays(void) {
    problem p;
    problem_init(&p, desc(1, 100, 1, 8, 6, LINA_FORM_RECURRENT), 71, -1.0f);
    for (size_t i = 0; i < p.nk; i += 37) p.w[i] = -1e30f;
    lina_status st = forward(NULL, &p);
    float *o_ref = alloc_floats(p.nv);
    memcpy(o_ref, p.o, sizeof(float) * p.nv);
    p.d.form = LINA_FORM_CHUNK;
    p.d.chunk = 16;
    if (st == LINA_OK) st = forward(NULL, &p);
    test_report(st == LINA_OK, "log-decays of -1e30 accepted", "%s", lina_last_error());
    check_close("chunk == recurrent with log-decays of -1e30", p.o, o_ref, p.nv, 1e-5);
    free(o_ref);
    problem_free(&p);
}

static void expect_error(const char *name, lina_status got, lina_status want, const char *needle) {
    const char *msg = lina_last_error();
    test_report(got == want && strstr(msg, needle) != NULL, name, "status %d (%s), message \"%s\"",
                got, lina_status_str(got), msg);
}

static void test_bad_input(void) {
    problem p;
    problem_init(&p, desc(1, 9, 2, 4, 3, LINA_FORM_CHUNK), 61, -1.0f);
    lina_dplr_desc d = p.d;
    lina_dplr_fwd_args a = {p.r, p.k, p.v, p.a, p.b, p.w, p.h0, p.o, p.ht};
    d.K = 0;
    expect_error("K = 0 rejected", lina_dplr_forward(NULL, &d, &a), LINA_ERR_INVALID_ARG, "K = 0");
    d = p.d, d.form = LINA_FORM_PARALLEL;
    expect_error("parallel form unsupported", lina_dplr_forward(NULL, &d, &a), LINA_ERR_UNSUPPORTED,
                 "form = 3");
    d = p.d;
    p.w[5] = 0.25f;
    expect_error("positive log-decay rejected", lina_dplr_forward(NULL, &d, &a), LINA_ERR_INVALID_ARG,
                 "w[5] = 0.25");
    p.w[5] = -0.1f;
    p.b[7] = NAN;
    expect_error("NaN in b rejected", lina_dplr_forward(NULL, &d, &a), LINA_ERR_NONFINITE, "b[7]");
    p.b[7] = 0.0f;
    a.o = NULL;
    expect_error("NULL o rejected", lina_dplr_forward(NULL, &d, &a), LINA_ERR_INVALID_ARG, "buffer o");
    a.o = p.o;
    int64_t cu[] = {0, 5, 4, 9};
    d.cu_seqlens = cu, d.n_seqs = 3;
    expect_error("non-monotonic cu_seqlens rejected", lina_dplr_forward(NULL, &d, &a),
                 LINA_ERR_INVALID_ARG, "cu_seqlens[2] = 4");
    int64_t cu2[] = {0, 9};
    d.cu_seqlens = cu2, d.n_seqs = 1, d.B = 2;
    expect_error("B = 2 with cu_seqlens rejected", lina_dplr_forward(NULL, &d, &a),
                 LINA_ERR_INVALID_ARG, "B = 2");
    d = p.d;
    grads g = grads_alloc(&p);
    lina_dplr_bwd_args b = {p.r,  p.k,  p.v,  p.a,  p.b,  p.w,  p.h0,  p.dout,
                            p.dht, g.dr, g.dk, g.dv, g.da, g.db, NULL, g.dh0};
    expect_error("backward without dw rejected", lina_dplr_backward(NULL, &d, &b),
                 LINA_ERR_INVALID_ARG, "dw");
    grads_free(&g);
    problem_free(&p);
}

int main(void) {
    /* chunk == recurrent: T = 1, 63, 65, 300; K, V in {60, 64} */
    test_chunk_vs_recurrent(1, 1, 60, 64, -1.0f, 1e-5, 1e-5);
    test_chunk_vs_recurrent(1, 63, 64, 60, -1.0f, 1e-5, 1e-5);
    test_chunk_vs_recurrent(2, 65, 60, 64, -1.0f, 1e-5, 1e-5);
    test_chunk_vs_recurrent(1, 300, 64, 64, -1.0f, 1e-5, 1e-5);
    /* strong decays (down to -20 per token): nothing overflows */
    test_chunk_vs_recurrent(1, 130, 60, 64, -20.0f, 1e-5, 1e-5);
    test_finite_differences(LINA_FORM_RECURRENT);
    test_finite_differences(LINA_FORM_CHUNK);
    test_varlen(LINA_FORM_CHUNK);
    test_varlen(LINA_FORM_RECURRENT);
    test_pieces();
    test_steps();
    test_threads(3);
    test_threads(1);
    test_huge_decays();
    test_bad_input();
    return test_finish();
}
